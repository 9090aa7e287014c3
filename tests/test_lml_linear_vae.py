"""Bernoulli linear latent model on a grid: conditionals by brute force, MPT = grid LML."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import linear_vae


def test_conditionals_by_enumeration_and_exact_mpt_equals_grid_lml():
    d = 5
    with jax.enable_x64(True):
        params = linear_vae.init_params(jax.random.key(0), d)
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        grid = lml.latent_grid(2, bins=6, limit=3.0, dtype=jnp.float64)
        np.testing.assert_allclose(jnp.sum(jnp.exp(grid.log_prior)), 1.0, atol=1e-12)
        all_x = jnp.asarray(list(itertools.product([0, 1], repeat=d)), jnp.float64)
        log_p = lml.linear_vae_lml(params, all_x, grid)
        np.testing.assert_allclose(jax.nn.logsumexp(log_p), 0.0, atol=1e-12)  # a distribution

        x = all_x[13]
        mask = jnp.array([True, False, True, False, False])
        cond = lml.linear_vae_cond_logpdf(params, grid)(x, mask)

        def log_marg(obs):  # log p(x_obs) by summing the joint over all other coordinates
            keep = jnp.all((all_x == x[None, :]) | ~obs[None, :], axis=1)
            return jax.nn.logsumexp(jnp.where(keep, log_p, -jnp.inf))

        for j in np.flatnonzero(~np.asarray(mask)):
            ref = log_marg(mask.at[j].set(True)) - log_marg(mask)
            np.testing.assert_allclose(cond[j], ref, atol=1e-10)

        xs = all_x[jnp.array([3, 13, 30])]
        est = lml.cumulative_mpt(lml.linear_vae_cond_logpdf(params, grid), xs, jax.random.key(1), 10)
        assert bool(jnp.all(est.exact))
        np.testing.assert_allclose(est.value, lml.linear_vae_lml(params, xs, grid), atol=1e-10)


@pytest.mark.slow
def test_elbo_shapes_and_bound_on_a_fine_grid():
    d = 6
    params = linear_vae.init_params(jax.random.key(0), d)
    x = (jax.random.uniform(jax.random.key(1), (8, d)) < 0.5).astype(jnp.float32)
    elbo = jnp.mean(jax.vmap(lambda k: lml.linear_vae_elbo(params, x, k))(jax.random.split(jax.random.key(2), 64)),
                    axis=0)
    fine = lml.linear_vae_lml(params, x, lml.latent_grid(2, bins=80, limit=6.0))
    assert elbo.shape == (8,) and fine.shape == (8,)
    # The ELBO bounds the continuous-latent log-likelihood, which the fine grid approximates.
    assert bool(jnp.all(elbo <= fine + 1e-2))
