"""Distributions follow the distrax / TFP signatures; checked against scipy, enumeration and (if installed) distrax."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from mamjax.distributions import Bernoulli, Normal, RectifiedGaussian, as_distrax, bernoulli_log_prob


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_signatures_shapes_and_keyword_seed():
    for d in (RectifiedGaussian(jnp.zeros(3), jnp.ones(3)), Normal(jnp.zeros(3), 2.0), Bernoulli(jnp.zeros(3))):
        assert d.batch_shape == (3,) and d.event_shape == ()
        assert d.sample(seed=jax.random.key(0), sample_shape=4).shape == (4, 3)
        assert d.sample(seed=jax.random.key(0), sample_shape=(2, 5)).shape == (2, 5, 3)
        assert d.sample(seed=0).shape == (3,)  # an int seed, as distrax allows
        z, lp = d.sample_and_log_prob(seed=jax.random.key(1), sample_shape=(2,))
        np.testing.assert_allclose(lp, d.log_prob(z), rtol=1e-6)
        assert d.entropy().shape == (3,) and d.kl_divergence(d).shape == (3,)
        with pytest.raises(TypeError):
            d.sample(jax.random.key(0))  # distrax: seed is keyword-only
    with pytest.raises(TypeError, match="sample_shape"):
        Normal(0.0, 1.0).sample(seed=0, sample_shape="3")


def test_normal_against_scipy(x64):
    loc, scale = np.array([-1.0, 0.5, 3.0]), np.array([0.3, 1.0, 2.5])
    z = np.array([0.2, -4.0, 10.0])
    d, e = Normal(jnp.asarray(loc), jnp.asarray(scale)), Normal(jnp.asarray(loc[::-1]), jnp.asarray(scale[::-1]))
    np.testing.assert_allclose(d.log_prob(z), stats.norm.logpdf(z, loc, scale), rtol=1e-12)
    np.testing.assert_allclose(d.entropy(), stats.norm.entropy(loc, scale), rtol=1e-12)
    for i in range(3):  # KL by quadrature of p log(p/q)
        f = lambda t: stats.norm.pdf(t, loc[i], scale[i]) * (stats.norm.logpdf(t, loc[i], scale[i])  # noqa: E731
                                                              - stats.norm.logpdf(t, loc[::-1][i], scale[::-1][i]))
        ref = integrate.quad(f, loc[i] - 40 * scale[i], loc[i] + 40 * scale[i], limit=200)[0]
        np.testing.assert_allclose(float(d.kl_divergence(e)[i]), ref, rtol=1e-8, atol=1e-10)


def test_rectified_gaussian_slab_is_the_normal_density(x64):
    d = RectifiedGaussian(jnp.array([0.5, -2.0]), jnp.array([1.5, 0.7]))
    np.testing.assert_allclose(d.log_prob(jnp.array([0.3, 2.0])), stats.norm.logpdf([0.3, 2.0], [0.5, -2.0], [1.5, 0.7]),
                               rtol=1e-12)
    np.testing.assert_allclose(d.log_prob(0.0), stats.norm.logcdf(0.0, [0.5, -2.0], [1.5, 0.7]), rtol=1e-12)


def test_bernoulli_against_scipy_and_enumeration(x64):
    logits = np.array([-30.0, -2.0, 0.0, 0.7, 25.0])
    p = 1.0 / (1.0 + np.exp(-logits))
    d, e = Bernoulli(jnp.asarray(logits)), Bernoulli(jnp.asarray(logits[::-1]))
    mid = slice(1, 4)  # scipy rounds 1 - p for |logits| >> 1; there the reference is -logaddexp(0, -/+l)
    for x in (0, 1):
        np.testing.assert_allclose(d.log_prob(jnp.full(5, x))[mid], stats.bernoulli.logpmf(x, p)[mid], rtol=1e-12)
        np.testing.assert_allclose(d.log_prob(jnp.full(5, x)), -np.logaddexp(0, -logits if x else logits), rtol=1e-12)
    np.testing.assert_allclose(d.entropy()[mid], stats.bernoulli.entropy(p)[mid], rtol=1e-10)
    def logpmf(x, lg):
        return -np.logaddexp(0, -lg if x else lg)
    kl = sum(np.exp(logpmf(x, logits)) * (logpmf(x, logits) - logpmf(x, logits[::-1])) for x in (0, 1))
    np.testing.assert_allclose(d.kl_divergence(e), kl, rtol=1e-10)  # enumeration of the two outcomes
    # stable where sigmoid rounds to 0 / 1: log P(x = 0 | l = 100) = -100, not -inf
    np.testing.assert_allclose(bernoulli_log_prob(jnp.array([100.0, -100.0]), jnp.array([0.0, 1.0])), [-100.0, -100.0])
    freq = np.mean(np.asarray(d.sample(seed=jax.random.key(3), sample_shape=40000)), axis=0)
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / 40000) + 1e-9), (freq, p)
    with pytest.raises(ValueError, match="`x`"):
        d.log_prob(jnp.full(5, 2.0))


def test_distrax_interop():
    distrax = pytest.importorskip("distrax", reason="distrax is optional (pip install distrax and tfp-nightly)")
    loc, scale = jnp.array([[0.3, -1.0, 2.0]]), jnp.array([[1.0, 0.5, 2.0]])
    rg = RectifiedGaussian(loc, scale)
    layer = distrax.Independent(as_distrax(rg), 1)  # one event = a layer of 3 units
    assert layer.event_shape == (3,) and layer.batch_shape == (1,)
    z = layer.sample(seed=jax.random.key(0), sample_shape=4)
    assert z.shape == (4, 1, 3) and bool(jnp.all(z >= 0))
    np.testing.assert_allclose(layer.log_prob(z), rg.log_prob(z).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(layer.entropy(), rg.entropy().sum(-1), rtol=1e-6)
    other = RectifiedGaussian(jnp.zeros((1, 3)), jnp.ones((1, 3)))
    np.testing.assert_allclose(as_distrax(rg).kl_divergence(as_distrax(other)), rg.kl_divergence(other), rtol=1e-6)
    ref = distrax.Normal(loc, scale)  # our Normal and distrax's agree
    x = jnp.array([[0.1, 0.2, -3.0]])
    np.testing.assert_allclose(Normal(loc, scale).log_prob(x), ref.log_prob(x), rtol=1e-6)
    np.testing.assert_allclose(Normal(loc, scale).entropy(), ref.entropy(), rtol=1e-6)
    np.testing.assert_allclose(Bernoulli(loc).log_prob(jnp.array([[1, 0, 1]])),
                               distrax.Bernoulli(logits=loc).log_prob(jnp.array([[1, 0, 1]])), rtol=1e-6)
    jitted = jax.jit(lambda d, v: d.log_prob(v))(layer, z)  # the wrapper is a pytree: passes through jit
    np.testing.assert_allclose(jitted, layer.log_prob(z), rtol=1e-6)
