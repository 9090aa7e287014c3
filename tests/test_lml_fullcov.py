"""Full-covariance batch-mean MPT equals the mean of the per-example route (same key, same masks)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import fullcov


def _problem(d=9, n=200, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    cov = a @ a.T / d + 0.5 * np.eye(d)
    mu = rng.normal(size=d)
    x = rng.multivariate_normal(mu, cov, size=n)
    return jnp.asarray(x, jnp.float32), jnp.asarray(mu, jnp.float32), jnp.asarray(cov, jnp.float32)


@pytest.mark.parametrize("algorithm", ["blocks", "dense"])
@pytest.mark.parametrize("kwargs", [dict(), dict(exact=False), dict(rates=[0.2, 0.7]), dict(num_hidden=[1, 4, 8, 9])])
def test_mean_equals_mean_of_gaussian_mpt(kwargs, algorithm):
    x, mu, cov = _problem()
    key = jax.random.key(2)
    per = lml.gaussian_mpt(x, key, 3, mu, cov, **kwargs)
    mean = lml.gaussian_mpt_mean(x, key, 3, mu, cov, algorithm=algorithm, **kwargs)
    assert mean.value.shape == ()
    np.testing.assert_allclose(float(mean.value), float(jnp.mean(per.value)), rtol=2e-5)
    np.testing.assert_allclose(np.asarray(mean.per_size), np.asarray(jnp.mean(per.per_size, 0)), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("algorithm", ["blocks", "dense"])
def test_exact_value_is_the_log_likelihood_and_gradients_match_under_jit(algorithm):
    x, mu, cov = _problem(d=5, n=50)
    exact = lml.gaussian_mpt_mean(x, jax.random.key(0), 1, mu, cov, exact=True, algorithm=algorithm)
    np.testing.assert_allclose(float(exact.value), float(jnp.mean(lml.mvn_logpdf(x, mu, cov))), rtol=1e-5)
    assert float(exact.stderr) == 0.0

    key = jax.random.key(4)
    a = jnp.linalg.cholesky(cov)

    def loss(fn, a, mu, **kw):
        return fn(x, key, 2, mu, a @ a.T, exact=False, **kw).value

    g_mean = jax.jit(jax.grad(lambda a, mu: loss(lml.gaussian_mpt_mean, a, mu, algorithm=algorithm),
                              argnums=(0, 1)))(a, mu)
    g_per = jax.grad(lambda a, mu: jnp.mean(loss(lml.gaussian_mpt, a, mu)), argnums=(0, 1))(a, mu)
    for gm, gp in zip(g_mean, g_per):
        np.testing.assert_allclose(np.asarray(gm), np.asarray(gp), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("width", [3, 16, 17, 40])
def test_inverses_match_numpy(width):
    rng = np.random.default_rng(width)
    a = rng.normal(size=(4, width, width))
    a = a @ a.transpose(0, 2, 1) / width + np.eye(width)
    ref = np.linalg.inv(a)
    a = jnp.asarray(a, jnp.float32)
    np.testing.assert_allclose(np.asarray(fullcov.spd_inverse_blocked(a)), ref, atol=2e-4)
    np.testing.assert_allclose(np.asarray(fullcov.gauss_jordan_inverse(a)), ref, atol=2e-4)


def test_size_groups_pick_the_smaller_side():
    groups = fullcov.size_groups(np.array([1, 2, 5, 6, 9, 10]), 10)
    got = {(side, width): rows for side, width, rows in groups}
    assert got == {("hidden", 1): (0,), ("hidden", 2): (1,), ("hidden", 6): (2,),
                   ("observed", 4): (3,), ("observed", 1): (4, 5)}
    assert fullcov.size_groups(np.array([1, 2, 5]), 10, "dense") == (("dense", 10, (0, 1, 2)),)
    assert fullcov.size_groups(np.array([1, 2]), fullcov.DENSE_MAX_DIMS, "auto")[0][0] == "dense"
    assert fullcov.size_groups(np.array([1, 2]), fullcov.DENSE_MAX_DIMS + 1, "auto")[0][0] == "hidden"


def test_bad_input_names_the_argument():
    x, mu, cov = _problem(d=4, n=10)
    with pytest.raises(ValueError, match="`x`"):
        lml.gaussian_mpt_mean(x[0], jax.random.key(0), 1, mu, cov)
    with pytest.raises(ValueError, match="`cov`"):
        lml.gaussian_mpt_mean(x, jax.random.key(0), 1, mu, cov[:3, :3])
    with pytest.raises(ValueError, match="`algorithm`"):
        lml.gaussian_mpt_mean(x, jax.random.key(0), 1, mu, cov, algorithm="cholesky")
