"""Cumulative MPT estimator: exact enumeration = LML, MC unbiasedness, vmap = loop, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import estimator


def _ppca(key, d, k=2, noise=0.2, n=3):
    kw, kx = jax.random.split(key)
    w = jax.random.normal(kw, (d, k))
    x = lml.ppca_sample(kx, w, noise, n)
    return w, noise, x


def test_exact_enumeration_reproduces_ppca_lml_d10():
    with jax.enable_x64(True):
        w, noise, x = _ppca(jax.random.key(0), 10)
        est = lml.cumulative_mpt(lml.ppca_cond_logpdf(w, noise), x, jax.random.key(1), 1, exact=True)
        truth = lml.ppca_lml(x, w, noise)
        assert est.value.dtype == jnp.float64 and bool(jnp.all(est.exact))
        np.testing.assert_allclose(est.value, truth, rtol=0, atol=1e-10)
        np.testing.assert_array_equal(est.stderr, 0.0)
        assert est.per_size.shape == (3, 10)


@pytest.mark.parametrize("kernel", ["rbf", pytest.param("matern32", marks=pytest.mark.slow)])
def test_exact_enumeration_reproduces_gp_lml(kernel):
    with jax.enable_x64(True):
        t = jnp.linspace(0.0, 4.0, 7)
        hyp = dict(kernel=kernel, lengthscale=0.8, variance=1.5, noise_var=0.05)
        y = jnp.sin(2 * t) + 0.1 * jnp.cos(7 * t)
        est = lml.cumulative_mpt(lml.gp_cond_logpdf(t, **hyp), y, jax.random.key(0), 35)  # auto: C(7,3)=35
        assert bool(jnp.all(est.exact))
        np.testing.assert_allclose(est.value, lml.gp_lml(y, t, **hyp), rtol=0, atol=1e-10)


def test_auto_mode_enumerates_only_small_sizes():
    plan = lml.mpt_masks(8, 10, np.arange(1, 9))
    # C(8, M) <= 10 only for M in {1, 7, 8}.
    np.testing.assert_array_equal(plan.exact, [True, False, False, False, False, False, True, True])
    assert plan.masks.shape == (8, 10, 8)
    np.testing.assert_allclose(plan.weights[plan.exact].sum(-1), 1.0)
    e = plan.masks[0, :8]
    assert len({tuple(r) for r in e}) == 8 and np.all((~e).sum(-1) == 1)
    assert np.all((~plan.masks).sum(-1) >= 1)  # padding stays a valid mask


def test_monte_carlo_unbiased_calibrated_and_error_falls_with_masks():
    with jax.enable_x64(True):
        w, noise, x = _ppca(jax.random.key(3), 6, n=1)
        x = x[0]
        cond = lml.ppca_cond_logpdf(w, noise)
        truth = float(lml.ppca_lml(x, w, noise))
        keys = jax.random.split(jax.random.key(123), 400)
        rmse = {}
        for k in (2, 16):
            est = jax.jit(jax.vmap(lambda kk: lml.cumulative_mpt(cond, x, kk, k, exact=False)))(keys)
            vals = np.asarray(est.value)
            mean, sd = vals.mean(), vals.std(ddof=1)
            # Unbiased: the mean over 400 seeds is within 4 standard errors of the truth.
            assert abs(mean - truth) < 4 * sd / math.sqrt(vals.size), (k, mean, truth, sd)
            # The reported standard error estimates the spread over seeds.
            ratio = float(np.sqrt(np.mean(np.asarray(est.stderr) ** 2))) / sd
            assert 0.75 < ratio < 1.25, (k, ratio)
            rmse[k] = float(np.sqrt(np.mean((vals - truth) ** 2)))
        assert rmse[16] < rmse[2] / 2.0, rmse  # ~ 1/sqrt(K): expected ratio sqrt(8) = 2.8


def test_vmapped_equals_python_loop_and_traces_once():
    w, noise, x = _ppca(jax.random.key(5), 8, n=4)
    inner = lml.ppca_cond_logpdf(w, noise)
    traces = []

    def cond(x, mask):
        traces.append(1)
        return inner(x, mask)

    key = jax.random.key(6)
    a = lml.cumulative_mpt(cond, x, key, 5)
    lml.cumulative_mpt(cond, x, jax.random.key(7), 5)
    assert len(traces) == 1  # all sizes in one trace, no retrace for a new key
    b = lml.cumulative_mpt_loop(inner, x, key, 5)
    assert not bool(jnp.all(a.exact)) and bool(jnp.any(a.exact))
    np.testing.assert_allclose(a.per_size, b.per_size, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.value, b.value, rtol=1e-5)
    np.testing.assert_allclose(a.stderr, b.stderr, rtol=1e-4, atol=1e-5)
    # Chunking the masks (lax.map over vmapped chunks) changes nothing.
    c = lml.cumulative_mpt(inner, x, key, 5, chunk_size=7)
    np.testing.assert_allclose(c.per_size, a.per_size, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c.stderr, a.stderr, rtol=1e-4, atol=1e-6)
    # The batch shares masks, so one example alone gives the same numbers.
    one = lml.cumulative_mpt(inner, x[2], key, 5)
    np.testing.assert_allclose(one.value, a.value[2], rtol=1e-5)


def test_score_all_hidden_fixed_rate_and_gradient():
    with jax.enable_x64(True):
        w, noise, x = _ppca(jax.random.key(9), 5, n=4)
        cond = lml.ppca_cond_logpdf(w, noise)
        # An all-hidden mask is valid (the M = D term): the mean of the marginals.
        s = lml.masked_pretraining_score(cond, x, jnp.zeros((1, 5), bool))
        marg = lml.normal_logpdf(x, 0.0, jnp.diagonal(lml.ppca_cov(w, noise))[None, :])
        np.testing.assert_allclose(s, jnp.mean(marg, axis=-1), atol=1e-12)
        # A fixed rate: D times the exact score at that size (C(5,1) = 5 masks).
        est = lml.cumulative_mpt(cond, x, jax.random.key(0), 5, rates=[0.2])
        assert est.num_hidden.tolist() == [1] and bool(est.exact[0])
        s1 = lml.masked_pretraining_score(cond, x, jnp.asarray(estimator._enumerate_masks(5, 1)))
        np.testing.assert_allclose(est.value, 5 * s1, rtol=1e-12)
        # Gradients of the exact estimate are the gradients of the LML.
        f = lambda w: jnp.sum(lml.cumulative_mpt(lml.ppca_cond_logpdf(w, noise), x, jax.random.key(0), 10).value)
        g = lambda w: jnp.sum(lml.ppca_lml(x, w, noise))
        np.testing.assert_allclose(jax.jit(jax.grad(f))(w), jax.grad(g)(w), atol=1e-9)


def test_bad_masks_and_arguments_give_clear_errors():
    cond = lml.ppca_cond_logpdf(jnp.ones((4, 1)), 0.1)
    x = jnp.zeros((4,))
    with pytest.raises(ValueError, match="empty"):
        lml.masked_pretraining_score(cond, x, jnp.zeros((0, 4), bool))
    with pytest.raises(ValueError, match="hide no coordinate"):
        lml.masked_pretraining_score(cond, x, jnp.array([[True, False, True, True], [True] * 4]))
    with pytest.raises(TypeError, match="boolean"):
        lml.masked_pretraining_score(cond, x, jnp.ones((2, 4), jnp.int32))
    with pytest.raises(ValueError, match="D = 4"):
        lml.masked_pretraining_score(cond, x, jnp.zeros((2, 5), bool))
    with pytest.raises(ValueError, match=r"\[num_masks, D\]"):
        lml.masked_pretraining_score(cond, x, jnp.zeros((4,), bool))
    with pytest.raises(ValueError, match="weights"):
        lml.masked_pretraining_score(cond, x, jnp.zeros((2, 4), bool), jnp.ones(3))
    with pytest.raises(ValueError, match="rates"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 2, rates=[0.0])
    with pytest.raises(ValueError, match="rates"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 2, rates=[1.5])
    with pytest.raises(ValueError, match="num_masks_per_rate"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 0)
    with pytest.raises(ValueError, match="exact"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 2, exact="yes")
    with pytest.raises(ValueError, match="num_hidden"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 2, num_hidden=[5])
    with pytest.raises(ValueError, match="either"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 2, rates=[0.5], num_hidden=[2])
    with pytest.raises(ValueError, match="limit"):
        lml.mpt_masks(40, 2, [20], exact=True)
    with pytest.raises(ValueError, match="chunk_size"):
        lml.cumulative_mpt(cond, x, jax.random.key(0), 2, chunk_size=0)
    with pytest.raises(ValueError, match="`x`"):
        lml.cumulative_mpt(cond, jnp.zeros((1, 1, 4)), jax.random.key(0), 2)
