"""Exact references: MVN conditionals, PPCA, GP kernels and LML against scipy / tinygp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from mamjax import lml


def _np_conditional(x, mask, mu, cov):
    o, h = np.flatnonzero(mask), np.flatnonzero(~mask)
    k = cov[np.ix_(h, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
    return mu[h] + k @ (x[o] - mu[o]), np.diag(cov[np.ix_(h, h)] - k @ cov[np.ix_(o, h)]), h


def test_mvn_logpdf_and_conditionals_match_scipy_and_slicing():
    rng = np.random.default_rng(0)
    d = 6
    a = rng.normal(size=(d, d))
    cov, mu = a @ a.T + 0.3 * np.eye(d), rng.normal(size=d)
    x = rng.multivariate_normal(mu, cov, size=4)
    with jax.enable_x64(True):
        np.testing.assert_allclose(lml.mvn_logpdf(jnp.asarray(x), mu, cov),
                                   multivariate_normal(mu, cov).logpdf(x), atol=1e-10)
        cond = jax.jit(lml.mvn_conditional_logpdf(jnp.asarray(mu), jnp.asarray(cov)))
        for mask in ([True, False, True, True, False, False], [False] * 6, [True] * 5 + [False]):
            mask = np.array(mask)
            m_ref, v_ref, h = _np_conditional(x[0], mask, mu, cov)
            m, v = lml.mvn_conditional(jnp.asarray(x[0]), jnp.asarray(mask), mu, cov)
            np.testing.assert_allclose(m[h], m_ref, atol=1e-10)
            np.testing.assert_allclose(v[h], v_ref, atol=1e-10)
            lp = cond(jnp.asarray(x[0]), jnp.asarray(mask))
            np.testing.assert_allclose(lp[h], norm(m_ref, np.sqrt(v_ref)).logpdf(x[0][h]), atol=1e-10)
            np.testing.assert_array_equal(lp[mask], 0.0)


def test_ppca_latent_route_matches_generic_gaussian_and_lml():
    with jax.enable_x64(True):
        w = jax.random.normal(jax.random.key(0), (7, 3), jnp.float64)
        mean = jnp.arange(7.0) / 7
        x = lml.ppca_sample(jax.random.key(1), w, 0.3, 5, mean)
        mask = jnp.array([1, 0, 0, 1, 1, 0, 1], bool)
        m1, v1 = lml.ppca_conditional(x[0], mask, w, 0.3, mean)
        m2, v2 = lml.mvn_conditional(x[0], mask, mean, lml.ppca_cov(w, 0.3))
        np.testing.assert_allclose(m1[~mask], m2[~mask], atol=1e-10)
        np.testing.assert_allclose(v1[~mask], v2[~mask], atol=1e-10)
        cov = np.asarray(w @ w.T) + 0.3 * np.eye(7)
        np.testing.assert_allclose(lml.ppca_lml(x, w, 0.3, mean),
                                   multivariate_normal(np.asarray(mean), cov).logpdf(np.asarray(x)), atol=1e-10)


def test_kernels_closed_forms_and_finite_gradients_at_zero():
    t = jnp.array([0.0, 0.5, 2.0])
    r = np.abs(np.asarray(t)[:, None] - np.asarray(t)[None, :]) / 0.7
    s3, s5 = np.sqrt(3) * r, np.sqrt(5) * r
    expect = {
        "rbf": np.exp(-0.5 * r**2), "matern12": np.exp(-r),
        "matern32": (1 + s3) * np.exp(-s3), "matern52": (1 + s5 + s5**2 / 3) * np.exp(-s5),
    }
    for name, ref in expect.items():
        np.testing.assert_allclose(lml.kernel_matrix(t, t, kernel=name, lengthscale=0.7, variance=2.0),
                                   2.0 * ref, rtol=1e-5, atol=1e-6)
        g = jax.grad(lambda ls: lml.gp_lml(jnp.sin(t), t, kernel=name, lengthscale=ls))(0.7)
        assert np.isfinite(g)
    with pytest.raises(ValueError, match="kernel"):
        lml.kernel_matrix(t, t, kernel="cosine")


@pytest.mark.parametrize("kernel", ["rbf", "matern32", "matern52"])
def test_gp_lml_agrees_with_tinygp(kernel):
    tinygp = pytest.importorskip("tinygp")
    cls = {"rbf": tinygp.kernels.ExpSquared, "matern32": tinygp.kernels.Matern32,
           "matern52": tinygp.kernels.Matern52}[kernel]
    with jax.enable_x64(True):
        t = jnp.linspace(0.0, 5.0, 10)
        y = jnp.sin(t) + 0.3 * jnp.cos(3 * t)
        ours = lml.gp_lml(y, t, kernel=kernel, lengthscale=0.9, variance=1.7, noise_var=0.05, mean=0.2)
        gp = tinygp.GaussianProcess(1.7 * cls(scale=0.9), t, diag=0.05, mean=0.2)
        np.testing.assert_allclose(ours, gp.log_probability(y), atol=1e-10)


def test_ard_lengthscale_per_input_dimension_when_n_equals_d():
    from scipy.spatial.distance import cdist
    rng = np.random.default_rng(0)
    ls = np.array([0.5, 1.0, 3.0])
    for n in (3, 5):  # n == d is where a [d] lengthscale used to broadcast along the wrong axis
        t = rng.normal(size=(n, 3))
        r = cdist(t, t, "seuclidean", V=ls**2)  # scipy's standardised Euclidean distance
        with jax.enable_x64(True):
            ours = lml.kernel_matrix(jnp.asarray(t), jnp.asarray(t), kernel="rbf", lengthscale=jnp.asarray(ls),
                                     variance=2.0)
            np.testing.assert_allclose(ours, 2.0 * np.exp(-0.5 * r**2), atol=1e-12)
            m52 = lml.kernel_matrix(jnp.asarray(t), jnp.asarray(t), kernel="matern52", lengthscale=jnp.asarray(ls))
            s5 = np.sqrt(5) * r
            np.testing.assert_allclose(m52, (1 + s5 + s5**2 / 3) * np.exp(-s5), atol=1e-10)
            y = jnp.asarray(rng.normal(size=n))
            cov = 2.0 * np.exp(-0.5 * r**2) + 0.1 * np.eye(n)
            np.testing.assert_allclose(lml.gp_lml(y, jnp.asarray(t), lengthscale=jnp.asarray(ls), variance=2.0,
                                                  noise_var=0.1),
                                       multivariate_normal(np.zeros(n), cov).logpdf(np.asarray(y)), atol=1e-10)


def test_bad_scales_variances_and_covariances_raise_naming_the_argument():
    t = jnp.linspace(0.0, 1.0, 4)
    for kw, name in ((dict(lengthscale=0.0), "lengthscale"), (dict(lengthscale=-1.0), "lengthscale"),
                     (dict(variance=0.0), "variance"), (dict(noise_var=-0.1), "noise_var")):
        with pytest.raises(ValueError, match=name):
            lml.gp_cov(t, **kw)
    with pytest.raises(ValueError, match="lengthscale"):
        lml.kernel_matrix(jnp.zeros((3, 2)), jnp.zeros((3, 2)), lengthscale=jnp.ones(3))
    w = jnp.ones((4, 1))
    for bad in (0.0, -0.5):
        with pytest.raises(ValueError, match="noise_var"):
            lml.ppca_lml(jnp.zeros(4), w, bad)
        with pytest.raises(ValueError, match="noise_var"):
            lml.ppca_cond_logpdf(w, bad)
    with jax.debug_nans(False), pytest.raises(ValueError, match="positive definite"):
        lml.mvn_logpdf(jnp.zeros(2), jnp.zeros(2), jnp.array([[1.0, 2.0], [2.0, 1.0]]))
    # Inside jit nothing is checked eagerly, and valid inputs still work.
    assert np.isfinite(jax.jit(lambda s: lml.ppca_lml(jnp.zeros(4), w, s))(0.3))
