"""Batch-mean MPT from the second moment equals the mean of the per-example routes (same masks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import moments



def _problem(d=7, n=300, k=2, seed=0):
    w = jax.random.normal(jax.random.key(seed), (d, k))
    x = lml.ppca_sample(jax.random.key(seed + 1), w, 0.3, n) + 0.5
    return w, x


@pytest.mark.parametrize("kwargs", [dict(), dict(exact=False), dict(rates=[0.2, 0.5]), dict(num_hidden=[1, 3, 7])])
def test_lowrank_mean_equals_mean_of_per_example(kwargs):
    w, x = _problem()
    psi = jnp.linspace(0.2, 0.6, 7)
    mu = jnp.full(7, 0.4)
    key = jax.random.key(3)
    per = lml.lowrank_mpt(x, key, 3, w, psi, mu, **kwargs)
    mean = moments.lowrank_mpt_mean(x, key, 3, w, psi, mu, **kwargs)
    assert mean.value.shape == ()
    np.testing.assert_allclose(float(mean.value), float(jnp.mean(per.value)), rtol=2e-5)
    np.testing.assert_allclose(np.asarray(mean.per_size), np.asarray(jnp.mean(per.per_size, 0)), rtol=2e-5, atol=1e-5)


def test_lowrank_mean_exact_equals_ppca_lml_and_stderr_is_that_of_the_batch_mean():
    w, x = _problem(d=6)
    exact = moments.lowrank_mpt_mean(x, jax.random.key(0), 1, w, 0.3, exact=True)
    np.testing.assert_allclose(float(exact.value), float(jnp.mean(lml.ppca_lml(x, w, 0.3))), rtol=1e-5)
    assert float(exact.stderr) == 0.0
    # Monte Carlo: the spread over keys of the batch mean matches its reported standard error.
    vals, ses = [], []
    draw = jax.jit(lambda key: moments.lowrank_mpt_mean(x, key, 4, w, 0.3, exact=False)[:2])
    for i in range(40):
        v, se = draw(jax.random.key(10 + i))
        vals.append(float(v))
        ses.append(float(se))
    ratio = np.std(vals, ddof=1) / np.sqrt(np.mean(np.square(ses)))
    assert 0.7 < ratio < 1.4, ratio


def test_lowrank_mean_gradient_equals_per_example_gradient_and_chunking_is_invisible():
    w, x = _problem(d=5, n=100)
    key = jax.random.key(5)

    def per(w):
        return jnp.mean(lml.lowrank_mpt(x, key, 2, w, 0.3, exact=False).value)

    def mean(w, chunk="auto"):
        return moments.lowrank_mpt_mean(x, key, 2, w, 0.3, exact=False, chunk_size=chunk).value

    g_per, g_mean = jax.jit(jax.grad(per))(w), jax.jit(jax.grad(mean))(w)
    np.testing.assert_allclose(np.asarray(g_mean), np.asarray(g_per), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(float(mean(w, 4)), float(mean(w)), rtol=1e-6)
    # inside a caller's jit (static K, no padding) the same number
    np.testing.assert_allclose(float(jax.jit(mean)(w)), float(mean(w)), rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3])
def test_ordering_mean_equals_mean_of_per_example(k):
    w, x = _problem(d=8)
    cov = lml.ppca_cov(w, 0.3)
    mu = jnp.full(8, 0.2)
    key = jax.random.key(k)
    per = lml.ordering_mpt(x, key, k, mu, cov)
    mean = moments.ordering_mpt_mean(x, key, k, mu, cov)
    np.testing.assert_allclose(float(mean.value), float(jnp.mean(per.value)), rtol=2e-5)
    assert (k == 1) == bool(jnp.isinf(mean.stderr))
    jitted = jax.jit(lambda c: moments.ordering_mpt_mean(x, key, k, mu, c).value)(cov)
    np.testing.assert_allclose(float(jitted), float(mean.value), rtol=1e-5)
    g = jax.jit(jax.grad(lambda c: moments.ordering_mpt_mean(x, key, k, mu, c).value))(cov)
    g_ref = jax.jit(jax.grad(lambda c: jnp.mean(lml.ordering_mpt(x, key, k, mu, c).value)))(cov)
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-3, atol=1e-4)


def test_bad_inputs_name_the_argument():
    w, x = _problem()
    with pytest.raises(ValueError, match="`x`"):
        moments.lowrank_mpt_mean(x[0], jax.random.key(0), 1, w, 0.3)
    with pytest.raises(ValueError, match="`w`"):
        moments.lowrank_mpt_mean(x, jax.random.key(0), 1, w[:3], 0.3)
    with pytest.raises(ValueError, match="`num_orderings`"):
        moments.ordering_mpt_mean(x, jax.random.key(0), 0, jnp.zeros(7), jnp.eye(7))
    with pytest.raises(ValueError, match="`cov`"):
        moments.ordering_mpt_mean(x, jax.random.key(0), 1, jnp.zeros(7), jnp.eye(6))
