"""Control variates for the WS-RAM gradient estimators, and a tool to measure them.

Both corrections subtract from the normalized importance weights ``w~_k`` a term whose
contribution to the gradient has expectation exactly zero, so the estimator's mean is
unchanged while its variance drops when the weights are near their reference values.

* Proposal (wake-q) update ``sum_k w~_k grad log q(a_k | x, y)``: since
  ``E_q[grad log q(a_k)] = 0`` for every k, any constant may be subtracted from
  ``w~_k``; we subtract ``1/K`` (the weight of a perfect proposal). With ``K = 1`` the
  wake-q update is then exactly zero -- it has mean zero anyway (``w~_1 = 1``).
* Prior-policy (wake) update ``sum_k w~_k grad log p(a_k | x)`` with ``a_k ~ q``:
  ``E_q[(p(a_k|x) / q(a_k|x,y)) grad log p(a_k|x)] = E_p[grad log p(a|x)] = 0``, so we
  subtract ``rho_k / K`` with ``rho_k = p(a_k|x) / q(a_k|x,y)``. The corrected weight is
  ``(rho_k / K) (p(y|a_k,x) / p^(y|x) - 1)``: a likelihood ratio "reward" minus its
  baseline 1. When ``q = p`` both corrections are ``w~_k - 1/K``.

These are our control variates in the spirit of Sec. 4 of Ba et al. (2015) (who also
use control variates to cut the variance of the WS-RAM updates); the learned baseline
of REINFORCE (Mnih et al., 2014) is in :mod:`mamjax.attention.reinforce`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["centered_proposal_weights", "centered_prior_weights", "estimator_moments", "total_variance"]


def centered_proposal_weights(weights: Array) -> Array:
    """``w~_k - 1/K`` for the wake-q update. weights: [..., K] normalized weights."""
    return weights - 1.0 / weights.shape[-1]


def centered_prior_weights(weights: Array, log_p: Array, log_q: Array) -> Array:
    """``w~_k - rho_k / K`` with ``rho_k = exp(log p(a_k|x) - log q(a_k|x,y))`` for the prior update.

    Args:
      weights: [..., K] normalized importance weights.
      log_p: [..., K] log p(a_k | x) of whole trajectories.
      log_q: [..., K] log q(a_k | x, y).
    """
    return weights - jnp.exp(log_p - log_q) / weights.shape[-1]


def estimator_moments(grad_fn: Callable[[Array], Any], keys: Array) -> tuple[Any, Any]:
    """Mean and per-coordinate variance of a stochastic gradient estimator over many keys.

    Args:
      grad_fn: ``grad_fn(key) -> pytree`` one draw of the estimator.
      keys: [N] keys (``jax.random.split(key, N)``).

    Returns:
      ``(mean, variance)`` pytrees (variance with ``ddof = 1``).
    """
    draws = jax.lax.map(grad_fn, keys)
    mean = jax.tree.map(lambda g: jnp.mean(g, axis=0), draws)
    var = jax.tree.map(lambda g: jnp.var(g, axis=0, ddof=1), draws)
    return mean, var


def total_variance(var_tree: Any) -> Array:
    """Sum of per-coordinate variances (trace of the covariance) of a pytree."""
    return sum(jnp.sum(v) for v in jax.tree.leaves(var_tree))
