"""mamjax.lml.ordering_mpt: the one-Cholesky-per-ordering route for any Gaussian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _problem(d=6, n=4):
    a = jax.random.normal(jax.random.key(0), (d, d))
    cov = a @ a.T / d + 0.3 * jnp.eye(d)  # a full covariance, not low-rank plus diagonal
    mean = jnp.linspace(-1.0, 1.0, d)
    x = jax.random.normal(jax.random.key(1), (n, d)) @ jnp.linalg.cholesky(cov).T + mean[None]
    return x, mean, cov


def _reference(x, mean, cov, masks):
    """The same masks scored by per-mask conditionals (mvn_conditional_logpdf), summed over sizes."""
    cond = lml.mvn_conditional_logpdf(mean, cov)
    return sum(lml.masked_pretraining_score(cond, x, masks[r]) for r in range(masks.shape[0]))


def test_masks_are_nested_one_of_every_size():
    m = np.asarray(lml.ordering_masks(jax.random.key(2), 7, 3))
    assert m.shape == (7, 3, 7)
    np.testing.assert_array_equal(np.sum(~m, -1), np.broadcast_to(np.arange(1, 8)[:, None], (7, 3)))
    hidden = ~m
    assert np.all(hidden[1:] >= hidden[:-1])  # each size hides the previous size's set and one more


def test_equals_per_mask_conditionals_on_the_same_masks():
    x, mean, cov = _problem()
    key = jax.random.key(3)
    est = lml.ordering_mpt(x, key, 3, mean, cov)
    ref = _reference(x, mean, cov, lml.ordering_masks(key, x.shape[1], 3))
    np.testing.assert_allclose(est.value, ref, rtol=1e-12, atol=1e-12)
    one = lml.ordering_mpt(x[0], key, 3, mean, cov)
    np.testing.assert_allclose(one.value, est.value[0], rtol=1e-12)


def test_gradient_equals_per_mask_route():
    x, mean, _ = _problem()
    w = jax.random.normal(jax.random.key(4), (x.shape[1], 2))
    key = jax.random.key(5)
    masks = lml.ordering_masks(key, x.shape[1], 2)
    g = jax.grad(lambda w: jnp.sum(lml.ordering_mpt(x, key, 2, mean, lml.ppca_cov(w, 0.2)).value))(w)
    g_ref = jax.grad(lambda w: jnp.sum(_reference(x, mean, lml.ppca_cov(w, 0.2), masks)))(w)
    np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-10)


def test_unbiased_for_the_log_marginal_likelihood():
    x, mean, cov = _problem(d=5, n=3)
    est = lml.ordering_mpt(x, jax.random.key(6), 4000, mean, cov)
    exact = lml.mvn_logpdf(x, mean, cov)
    z = (est.value - exact) / est.stderr
    assert np.all(np.isfinite(z)) and np.all(np.abs(z) < 4.5), z


def test_one_ordering_has_infinite_stderr_and_bad_input_is_named():
    x, mean, cov = _problem()
    assert np.all(np.isinf(lml.ordering_mpt(x, jax.random.key(0), 1, mean, cov).stderr))
    with pytest.raises(ValueError, match="num_orderings"):
        lml.ordering_mpt(x, jax.random.key(0), 0, mean, cov)
    with pytest.raises(ValueError, match="cov"):
        lml.ordering_mpt(x, jax.random.key(0), 2, mean, cov[:-1, :-1])
    with pytest.raises(ValueError, match="`x`"):
        lml.ordering_mpt(x[None], jax.random.key(0), 2, mean, cov)
