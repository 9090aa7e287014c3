"""Training objectives for the paper's experiments: exact LML, cumulative MPT, fixed-rate MPT.

Each builder returns ``loss_fn(params, batch, key) -> (loss, metrics)`` for
:func:`mamjax.train.make_train_step`; ``batch`` is ``{"x": [B, D]}``. The
objective is chosen by ``objective``:

* ``"lml"`` — exact log marginal likelihood (the reference optimum);
* ``"cumulative"`` — cumulative MPT over all mask sizes (K masks per size);
* a float rate in (0, 1] — fixed-rate MPT, ``D * s_M`` with ``M = round(rate D)``;

and, for the linear VAE, ``"elbo"`` (the paper's amortised baseline), ``"uniform"`` (the cumulative
MPT with K masks of uniformly drawn sizes per step, ``D * mean_s score``: unbiased for the LML
at the cost of K masks; :func:`mamjax.lml.estimator.uniform_size_masks`) and ``"joint:<rate>"``
(the objective of the paper's exp.-5 code: ``D / M log p(x_T)``, the hidden pixels scored jointly
by their marginal, not conditioned on the observed ones). Losses
are negated per-example means; ``metrics["lml"]`` is always the exact (or
grid) log marginal likelihood per example, so runs are compared on the same scale.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mamjax.lml import gp as gp_lib
from mamjax.lml import linear_vae as lvae
from mamjax.lml import ppca as ppca_lib
from mamjax.lml.estimator import cumulative_mpt, uniform_size_masks
from mamjax.masks import mask_by_count
from mamjax.lml.lowrank import lowrank_mpt

Array = jax.Array
LossFn = Callable[[dict, dict, jax.Array], tuple[Array, dict]]

__all__ = ["objective_name", "mpt_objective", "exact_ppca_objective", "ppca_loss", "gp_loss", "gp_hyperparameters", "linear_vae_loss"]


def objective_name(objective) -> str:
    """A short label: ``"lml"``, ``"cumulative"``, ``"elbo"`` or ``"rate20"`` for 0.2."""
    if _joint_rate(objective) is not None:
        return f"joint{round(100 * _joint_rate(objective))}"
    if isinstance(objective, str):
        return objective
    return f"rate{round(100 * float(objective))}"


def _by_objective(estimate, objective) -> Array:
    """``estimate(rates)`` for ``"cumulative"`` (rates None) or a fixed rate; else a clear error."""
    if objective == "cumulative":
        return estimate(None)
    if isinstance(objective, (int, float)) and not isinstance(objective, bool):
        return estimate([float(objective)])
    raise ValueError(f"`objective` must be 'lml', 'cumulative' or a mask rate in (0, 1]; got {objective!r}.")


def mpt_objective(cond_logpdf, x: Array, key: jax.Array, objective, num_masks_per_rate: int) -> Array:
    """Per-example MPT objective ``[B]`` for ``"cumulative"`` or a fixed rate."""
    return _by_objective(lambda rates: cumulative_mpt(cond_logpdf, x, key, num_masks_per_rate, rates=rates).value,
                         objective)


def _ppca_mpt(x, w, noise_var, key, objective, num_masks_per_rate):
    """The PPCA MPT objective through the low-rank route (same masks and values as the generic one)."""
    return _by_objective(lambda rates: lowrank_mpt(x, key, num_masks_per_rate, w, noise_var, rates=rates).value,
                         objective)


def exact_ppca_objective(x: Array, w: Array, noise_var, objective) -> Array:
    """Per-example ``[B]`` PPCA objective with every mask of each size enumerated (no Monte Carlo).

    ``"lml"`` and ``"cumulative"`` both give the exact LML; a rate gives ``D s_M`` exactly. Needs
    ``C(D, M)`` masks per size (small D only; :data:`mamjax.lml.estimator.MAX_EXACT_MASKS`).
    """
    if objective == "lml":
        return ppca_lib.ppca_lml(x, w, noise_var)
    return _by_objective(lambda rates: lowrank_mpt(x, jax.random.key(0), 1, w, noise_var, rates=rates,
                                                   exact=True).value, objective)


def ppca_loss(objective, noise_var: float, num_masks_per_rate: int = 1) -> LossFn:
    """PPCA with fixed noise ``sigma^2``; params ``{"w": [D, K]}`` (paper exp. 3)."""

    def loss_fn(params, batch, key):
        x = batch["x"]
        lml = ppca_lib.ppca_lml(x, params["w"], noise_var)
        if objective == "lml":
            obj = lml
        else:
            obj = _ppca_mpt(x, params["w"], noise_var, key, objective, num_masks_per_rate)
        return -jnp.mean(obj), {"objective": jnp.mean(obj), "lml": jnp.mean(lml)}

    return loss_fn


def gp_hyperparameters(params: dict) -> dict:
    """``{"log_lengthscale", "log_variance", "log_noise"}`` -> positive hyperparameters."""
    return {"lengthscale": jnp.exp(params["log_lengthscale"]), "variance": jnp.exp(params["log_variance"]),
            "noise_var": jnp.exp(params["log_noise"])}


def gp_loss(objective, t: Array, kernel: str = "rbf", num_masks_per_rate: int = 1) -> LossFn:
    """GP hyperparameters in log space; ``batch["x"]`` holds ``[B, D]`` draws at inputs ``t``."""

    def loss_fn(params, batch, key):
        x = batch["x"]
        hyp = gp_hyperparameters(params)
        lml = gp_lib.gp_lml(x, t, kernel=kernel, **hyp)
        if objective == "lml":
            obj = lml
        else:
            obj = mpt_objective(gp_lib.gp_cond_logpdf(t, kernel=kernel, **hyp), x, key, objective,
                                num_masks_per_rate)
        return -jnp.mean(obj), {"objective": jnp.mean(obj), "lml": jnp.mean(lml), **hyp}

    return loss_fn


def _joint_rate(objective):
    """The rate of ``"joint:<rate>"``, else None."""
    if isinstance(objective, str) and objective.startswith("joint:"):
        try:
            rate = float(objective.split(":", 1)[1])
        except ValueError:
            rate = -1.0
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"`objective` 'joint:<rate>' needs a rate in (0, 1]; got {objective!r}.")
        return rate
    return None


def linear_vae_loss(objective, grid: lvae.LatentGrid, num_masks_per_rate: int = 1) -> LossFn:
    """Bernoulli linear latent model (paper exp. 5).

    ``objective``: ``"elbo"``, ``"lml"``, ``"cumulative"`` (all D sizes, K masks each), ``"uniform"``
    (K masks of uniformly random sizes, unbiased), a fixed rate, or ``"joint:<rate>"`` (see the
    module docstring). The MPT objectives go through :func:`mamjax.lml.linear_vae_mpt` (matmuls).
    """
    joint = _joint_rate(objective)
    if not (objective in ("lml", "elbo", "cumulative", "uniform") or joint is not None
            or (isinstance(objective, (int, float)) and not isinstance(objective, bool))):
        raise ValueError("`objective` must be 'lml', 'elbo', 'cumulative', 'uniform', 'joint:<rate>' or a mask "
                         f"rate in (0, 1]; got {objective!r}.")

    def loss_fn(params, batch, key):
        x = batch["x"].astype(params["w"].dtype)
        num_dims = x.shape[-1]
        lml = lvae.linear_vae_lml(params, x, grid)
        if objective == "lml":
            obj = lml
        elif objective == "elbo":
            obj = lvae.linear_vae_elbo(params, x, key)
        elif objective == "uniform":
            masks = uniform_size_masks(key, num_dims, num_masks_per_rate)
            s = lvae.linear_vae_mask_scores(x, masks, params["w"], params["b"], grid.z, grid.log_prior)
            obj = num_dims * jnp.mean(s, axis=-1)
        elif joint is not None:
            m = int(max(1, round(joint * num_dims)))
            keys = jax.random.split(key, num_masks_per_rate)
            hidden = ~jax.vmap(mask_by_count, in_axes=(0, None, None))(keys, num_dims, m)
            obj = num_dims / m * jnp.mean(lvae.linear_vae_subset_lml(params, x, grid, hidden), axis=-1)
        else:
            obj = _by_objective(lambda rates: lvae.linear_vae_mpt(params, x, grid, key, num_masks_per_rate,
                                                                  rates=rates).value, objective)
        return -jnp.mean(obj), {"objective": jnp.mean(obj), "lml": jnp.mean(jax.lax.stop_gradient(lml))}

    return loss_fn
