"""Control variates for the WS-RAM gradient estimators, and a tool to measure them.

Each correction subtracts from the RWS update a term whose expectation is exactly zero,
so the estimator's mean is unchanged while its variance drops when the normalized
weights ``w~_k`` are near ``1/K`` (a good proposal).

* Proposal (wake-q) update ``sum_k w~_k grad log q(a_k | x, y)``: since
  ``E_q[grad log q(a_k)] = 0`` for every k, a constant may be subtracted from each
  weight; we use ``w~_k - 1/K`` (:func:`centered_proposal_weights`). With ``K = 1`` the
  wake-q update is then exactly zero -- it has mean zero anyway (``w~_1 = 1``).
* Prior-policy (wake) update ``sum_k w~_k grad log p(a_k | x)`` with ``a_k ~ q``: given
  the history, step t's score has the computable expectation
  ``m_{k,t} = E_{a ~ q(.|h_{k,t-1})}[grad log p(a | h_{k,t-1})]`` (a sum over the G
  locations), so ``(1/K) sum_k sum_t (grad log p(a_{k,t} | h_{k,t-1}) - m_{k,t})`` is a sum of
  martingale differences with mean zero. Subtracting it gives

      sum_k (w~_k - 1/K) grad log p(a_k | x) + (1/K) sum_k sum_t m_{k,t},

  which, when the weights are uniform, is the analytic gradient pulling each step of the
  prior towards the proposal -- no sampling noise from the location choice at all.
  (A likelihood-ratio variant, subtracting ``(p(a_k)/q(a_k)) / K * grad log p(a_k)``, is
  also unbiased but we measured it exploding when q and p disagree; not used.)

These are our control variates in the spirit of Ba et al. (2015), who also reduce the
variance of the WS-RAM updates with control variates; REINFORCE's learned baseline
(Mnih et al., 2014) is in :mod:`mamjax.attention.reinforce`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array
sg = jax.lax.stop_gradient

__all__ = ["centered_proposal_weights", "prior_surrogate", "estimator_moments", "total_variance"]


def centered_proposal_weights(weights: Array) -> Array:
    """``w~_k - 1/K`` for the wake-q update. weights: [..., K] normalized weights."""
    return weights - 1.0 / weights.shape[-1]


def prior_surrogate(weights: Array, log_p: Array, expected_log_p: Array | None = None,
                    baseline: Array | None = None) -> Array:
    """Surrogate (to maximize) for the prior-policy part of the wake update.

    Without ``expected_log_p``: ``sum_k sg(w~_k) log p(a_k | x)`` (plain RWS).
    With it (control variate): ``sum_k sum_t sg(w~_k - c_{k,t}) log p(a_{k,t} | h_{k,t-1}) + c_{k,t} E_{k,t}``
    with ``E_{k,t} = sum_a sg(q(a | h_{k,t-1})) log p(a | h_{k,t-1})`` and coefficient
    ``c_{k,t} = 1/K``, or with a learned ``baseline`` ``c_{k,t} = sg(b(h_{k,t-1})) / K``. Any
    ``c_{k,t}`` that depends only on the history ``h_{k,t-1}`` keeps the estimator unbiased
    (``E[grad log p(a_t | h) - grad E_t | h] = 0``); the learned ``b`` is fit to ``K w~_k``.

    Args:
      weights: [..., K] normalized importance weights.
      log_p: [..., K] log p(a_k | x) summed over steps, or [..., K, T] per step.
      expected_log_p: ``E`` of the same shape as ``log_p``, or None.
      baseline: [..., K, T] ``b(h_{k,t-1})`` (needs per-step ``log_p``), or None for ``b = 1``.

    Returns:
      [...] surrogate.
    """
    w = sg(weights)
    steps = log_p.ndim == weights.ndim + 1
    if steps:
        w = w[..., None]
    axes = (-2, -1) if steps else -1
    if expected_log_p is None:
        if baseline is not None:
            raise ValueError("`baseline` needs `expected_log_p` (the control variate it scales).")
        return jnp.sum(w * log_p, axis=axes)
    if expected_log_p.shape != log_p.shape:
        raise ValueError(f"`expected_log_p` {expected_log_p.shape} must have the shape of `log_p` {log_p.shape}.")
    k = weights.shape[-1]
    if baseline is None:
        coef = 1.0 / k
    else:
        if not steps or baseline.shape != log_p.shape:
            raise ValueError(f"`baseline` must be [..., K, T] like a per-step `log_p`; got {baseline.shape}, "
                             f"log_p {log_p.shape}.")
        coef = sg(baseline) / k
    return jnp.sum((w - coef) * log_p + coef * expected_log_p, axis=axes)


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
