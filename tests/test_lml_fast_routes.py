"""The linear-VAE matmul route, uniform-size masks (unbiased cumulative objective), the PPCA closed form, retraces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import linear_vae, objectives


def _vae(d=6, n=4):
    params = jax.tree.map(lambda a: a.astype(jnp.float64), linear_vae.init_params(jax.random.key(0), d))
    grid = lml.latent_grid(2, bins=5, limit=3.0, dtype=jnp.float64)
    x = (jax.random.uniform(jax.random.key(1), (n, d)) < 0.4).astype(jnp.float64)
    return params, grid, x


def test_linear_vae_matmul_route_equals_generic_route_and_exact_lml():
    with jax.enable_x64(True):
        params, grid, x = _vae()
        generic = lml.cumulative_mpt(lml.linear_vae_cond_logpdf(params, grid), x, jax.random.key(2), 3, exact=False)
        fast = lml.linear_vae_mpt(params, x, grid, jax.random.key(2), 3, exact=False, chunk_size=4)
        np.testing.assert_allclose(fast.per_size, generic.per_size, atol=1e-12)
        exact = lml.linear_vae_mpt(params, x, grid, jax.random.key(2), 20, exact=True)
        np.testing.assert_allclose(exact.value, lml.linear_vae_lml(params, x, grid), atol=1e-12)
        # the paper-code objective's subset marginal = the LML of the model restricted to those pixels
        hidden = jnp.array([[True, False, True, False, False, True]])
        idx = np.flatnonzero(hidden[0])
        ref = lml.linear_vae_lml({"w": params["w"][idx], "b": params["b"][idx]}, x[:, idx], grid)
        np.testing.assert_allclose(lml.linear_vae_subset_lml(params, x, grid, hidden)[:, 0], ref, atol=1e-12)


def test_uniform_size_masks_give_an_unbiased_lml_estimate():
    d = 4
    masks = lml.uniform_size_masks(jax.random.key(0), d, 4000)
    sizes = np.sum(~np.asarray(masks), axis=1)
    assert masks.shape == (4000, d) and sizes.min() == 1 and sizes.max() == d
    assert np.all(np.abs(np.bincount(sizes, minlength=d + 1)[1:] / 4000 - 1 / d) < 0.03)
    with jax.enable_x64(True):
        w = jax.random.normal(jax.random.key(1), (d, 2), jnp.float64)
        x = lml.ppca_sample(jax.random.key(2), w, 0.3, 3).astype(jnp.float64)
        s = jax.jit(lml.lowrank.lowrank_mask_scores)(x, masks, w, jnp.full((d,), 0.3))  # [N, S]
        est, se = d * jnp.mean(s, axis=1), d * jnp.std(s, axis=1) / np.sqrt(s.shape[1])
        err = np.asarray((est - lml.ppca_lml(x, w, 0.3)) / se)
        assert np.all(np.abs(err) < 4.5), err
    with pytest.raises(ValueError, match="num_masks"):
        lml.uniform_size_masks(jax.random.key(0), d, 0)


def test_ppca_mle_is_a_stationary_point_of_the_lml():
    with jax.enable_x64(True):
        w_true = jax.random.normal(jax.random.key(0), (6, 2), jnp.float64)
        x = lml.ppca_sample(jax.random.key(1), w_true, 0.2, 100).astype(jnp.float64)
        w = lml.ppca_mle(x, 2, 0.2)
        g = jax.grad(lambda w: jnp.mean(lml.ppca_lml(x, w, 0.2)))(w)
        assert float(jnp.max(jnp.abs(g))) < 1e-8
        other = w + 0.05 * jax.random.normal(jax.random.key(2), w.shape, jnp.float64)
        assert float(jnp.mean(lml.ppca_lml(x, w, 0.2))) > float(jnp.mean(lml.ppca_lml(x, other, 0.2)))
    with pytest.raises(ValueError, match="latent_dim"):
        lml.ppca_mle(x, 7, 0.2)


@pytest.mark.slow
def test_linear_vae_objectives_run_and_bad_names_raise():
    params, grid, x = (jax.tree.map(lambda a: a.astype(jnp.float32), t) if isinstance(t, dict) else t
                       for t in _vae())
    for obj in ("uniform", "joint:0.5", 0.5, "elbo", "lml"):
        loss, m = objectives.linear_vae_loss(obj, grid, 2)(params, {"x": x.astype(jnp.float32)}, jax.random.key(3))
        assert np.isfinite(float(loss)) and np.isfinite(float(m["lml"]))
    assert objectives.objective_name("joint:0.15") == "joint15"
    for bad in ("joint:2", "joint:x", "nope"):
        with pytest.raises(ValueError, match="objective"):
            objectives.linear_vae_loss(bad, grid)


def test_no_retrace_when_only_values_change():
    """Same K and the same number of sizes: one trace; a new K (a new [R, K, D] shape) retraces once."""
    traces = []
    w = jax.random.normal(jax.random.key(0), (8, 2))
    inner = lml.ppca_cond_logpdf(w, 0.2)

    def cond(x, mask):
        traces.append(1)  # runs only while tracing
        return inner(x, mask)

    x = lml.ppca_sample(jax.random.key(1), w, 0.2, 5)
    lml.cumulative_mpt(cond, x, jax.random.key(2), 3, rates=[0.25, 0.5])
    n = len(traces)
    lml.cumulative_mpt(cond, x + 1.0, jax.random.key(3), 3, rates=[0.25, 0.5])  # new values and key
    lml.cumulative_mpt(cond, x, jax.random.key(4), 3, rates=[0.5, 0.875])  # other sizes, same count
    assert len(traces) == n
    lml.cumulative_mpt(cond, x, jax.random.key(5), 4, rates=[0.25, 0.5])  # K = 4: a new shape
    assert len(traces) == 2 * n
