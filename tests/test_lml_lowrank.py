"""Low-rank (latent-posterior) MPT route and the rate-grid rule, against the exact references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import estimator, lowrank


def _fa(d=9, k=3, n=5):
    w = jax.random.normal(jax.random.key(0), (d, k), jnp.float64)
    psi = 0.1 + jax.random.uniform(jax.random.key(1), (d,), jnp.float64)
    mu = jnp.linspace(-1.0, 1.0, d)
    x = jax.random.multivariate_normal(jax.random.key(2), mu, w @ w.T + jnp.diag(psi), (n,))
    return w, psi, mu, x


def test_lowrank_equals_generic_gaussian_route_same_masks():
    with jax.enable_x64(True):
        w, psi, mu, x = _fa()
        cond = lml.mvn_conditional_logpdf(mu, w @ w.T + jnp.diag(psi))
        for kw in (dict(), dict(rates=[0.2, 0.5]), dict(num_hidden=[1, 4, 9])):
            a = lowrank.lowrank_mpt(x, jax.random.key(3), 6, w, psi, mu, chunk_size=5, **kw)
            b = lml.cumulative_mpt(cond, x, jax.random.key(3), 6, **kw)
            np.testing.assert_allclose(a.per_size, b.per_size, atol=1e-11)
            np.testing.assert_allclose(a.value, b.value, atol=1e-10)
            np.testing.assert_allclose(a.stderr, b.stderr, atol=1e-10)
            g = lml.gaussian_mpt(x, jax.random.key(3), 6, mu, w @ w.T + jnp.diag(psi), chunk_size=4, **kw)
            np.testing.assert_allclose(g.per_size, b.per_size, atol=1e-11)
            np.testing.assert_allclose(g.stderr, b.stderr, atol=1e-10)
        # Exact enumeration of every size is the LML (scipy-checked mvn_logpdf).
        e = lowrank.lowrank_mpt(x, jax.random.key(0), 1, w, psi, mu, exact=True)
        np.testing.assert_allclose(e.value, lml.mvn_logpdf(x, mu, w @ w.T + jnp.diag(psi)), atol=1e-10)


def test_lowrank_ppca_float32_and_gradient_match_closed_form_route():
    w = jax.random.normal(jax.random.key(4), (20, 2))
    x = lml.ppca_sample(jax.random.key(5), w, 0.2, 16)

    def f_fast(w):
        return jnp.mean(lowrank.lowrank_mpt(x, jax.random.key(6), 3, w, 0.2).value)

    def f_ref(w):
        return jnp.mean(lml.cumulative_mpt(lml.ppca_cond_logpdf(w, 0.2), x, jax.random.key(6), 3).value)

    def f_full(w):
        cov = lml.ppca_cov(w, 0.2)
        return jnp.mean(lml.gaussian_mpt(x, jax.random.key(6), 3, jnp.zeros(20), cov).value)

    np.testing.assert_allclose(f_fast(w), f_ref(w), rtol=1e-4)
    np.testing.assert_allclose(f_full(w), f_ref(w), rtol=1e-4)
    np.testing.assert_allclose(jax.jit(jax.grad(f_full))(w), jax.grad(f_ref)(w), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(jax.jit(jax.grad(f_fast))(w), jax.grad(f_ref)(w), rtol=2e-3, atol=2e-3)


def test_spd_inverse_and_errors():
    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.key(0), (4, 5, 5))
        spd = jnp.eye(5)[None] + jnp.einsum("bij,bkj->bik", a, a)
        np.testing.assert_allclose(lowrank.spd_inverse(spd), np.linalg.inv(np.asarray(spd)), atol=1e-9)
    with pytest.raises(ValueError, match="psi"):
        lowrank.lowrank_mpt(jnp.zeros((2, 3)), jax.random.key(0), 1, jnp.ones((3, 1)), 0.0)
    with pytest.raises(ValueError, match="`w`"):
        lowrank.lowrank_mpt(jnp.zeros((2, 3)), jax.random.key(0), 1, jnp.ones((4, 1)), 1.0)


def test_rate_grid_is_riemann_sum_biased_unless_it_covers_every_size():
    with jax.enable_x64(True):
        w, psi, mu, x = _fa(d=8, n=3)
        cov = w @ w.T + jnp.diag(psi)
        truth = lml.mvn_logpdf(x, mu, cov)
        full = lowrank.lowrank_mpt(x, jax.random.key(0), 1, w, psi, mu, exact=True)
        s = np.asarray(full.per_size)  # exact s_M, M = 1..8
        # A coarse grid: D * mean of the grid's s_M, off from the LML by exactly that Riemann error.
        grid = [0.25, 0.5, 0.75, 1.0]  # sizes 2, 4, 6, 8
        coarse = lowrank.lowrank_mpt(x, jax.random.key(0), 1, w, psi, mu, rates=grid, exact=True)
        np.testing.assert_array_equal(coarse.num_hidden, [2, 4, 6, 8])
        riemann = 8 * s[:, [1, 3, 5, 7]].mean(-1)
        np.testing.assert_allclose(coarse.value, riemann, atol=1e-10)
        bias = np.asarray(coarse.value - truth)
        assert np.all(np.abs(bias) > 0.05), bias  # the grid is biased
        # A grid that covers every size (with duplicates) is the exact cumulative form, = LML.
        fine = lowrank.lowrank_mpt(x, jax.random.key(0), 1, w, psi, mu, rates=np.linspace(0.05, 1, 30), exact=True)
        assert sorted(set(np.asarray(fine.num_hidden).tolist())) == list(range(1, 9))
        np.testing.assert_allclose(fine.value, truth, atol=1e-10)
        np.testing.assert_allclose(estimator.size_coefficients([1, 1, 2, 3], 3), [0.5, 0.5, 1, 1])
        np.testing.assert_allclose(estimator.size_coefficients([1, 3], 3), [1.5, 1.5])
