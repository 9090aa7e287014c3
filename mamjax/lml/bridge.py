"""The hook: an MPT log-likelihood estimate for any mamjax model that exposes conditionals.

The cumulative MPT identity holds for any joint, so a masked model that can
score hidden coordinates from observed ones gets a log-likelihood estimate by
handing its conditionals to :func:`mamjax.lml.cumulative_mpt`. Adapters turn the
usual model outputs into the ``cond_logpdf(x [D], mask [D]) -> [D]`` callable:

* :func:`categorical_cond_logpdf` — a masked token model's logits (the MaskGIT
  bidirectional transformer, an AO-ARM's per-position logits):
  ``logits_fn(tokens [D] int, mask [D] bool) -> [D, V]``, where position j's logits
  must depend only on the observed tokens (the model replaces hidden ones by MASK).
* :func:`bernoulli_cond_logpdf` — binary data, ``logits_fn(x, mask) -> [D]``.
* :func:`marginal_cond_logpdf` — a marginal network (``mamjax.marginal``):
  ``log_marginal_fn(x, mask) -> log p(x_O)``; ``log p(x_j | x_O) = log p(x_{O+j}) - log p(x_O)``.

Example (MaskGIT transformer ``apply(params, tokens[B,L], mask[B,L]) -> [B,L,V]``)::

    logits_fn = lambda x, m: apply(params, x[None], m[None])[0]
    est = mpt_log_likelihood(categorical_cond_logpdf(logits_fn), tokens, key, 8)
    est.value, est.stderr   # [B] nats per sequence

With ``mamjax.marginal`` (AO-ARM conditional net ``cond_apply`` and marginal net ``marg_apply``)::

    from mamjax import marginal
    arm_cond = lambda x, m: marginal.conditional_log_probs(cond_apply, cparams, x[None], m[None])[0]
    mam_cond = marginal_cond_logpdf(lambda x, m: marginal.log_marginal(marg_apply, mparams, x, m))
    mpt_log_likelihood(arm_cond, x_test, key, 8)   # or mam_cond; the normaliser f(empty) cancels

When the conditionals come from one joint, ``est.value`` is an unbiased
estimate of ``log p(x)`` (exact if every mask size is enumerated). A network
whose conditionals are not mutually consistent defines no single joint; then
the value is the MPT score averaged over orderings, the quantity MPT training
maximises, and a diagnostic rather than a bound.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from mamjax.lml.estimator import CondLogpdf, MPTEstimate, cumulative_mpt

Array = jax.Array

__all__ = ["mpt_log_likelihood", "categorical_cond_logpdf", "bernoulli_cond_logpdf", "marginal_cond_logpdf"]


def categorical_cond_logpdf(logits_fn: Callable[[Array, Array], Array]) -> CondLogpdf:
    """Adapts ``logits_fn(tokens [D] int, mask [D] bool) -> [D, V]`` to ``cond_logpdf``."""

    def cond_logpdf(x: Array, mask: Array) -> Array:
        logp = jax.nn.log_softmax(logits_fn(x, mask), axis=-1)
        picked = jnp.take_along_axis(logp, x.astype(jnp.int32)[:, None], axis=-1)[:, 0]
        return jnp.where(mask, 0.0, picked)

    return cond_logpdf


def bernoulli_cond_logpdf(logits_fn: Callable[[Array, Array], Array]) -> CondLogpdf:
    """Adapts ``logits_fn(x [D] in {0,1}, mask) -> [D]`` logits of ``p(x_j = 1 | x_O)``."""

    def cond_logpdf(x: Array, mask: Array) -> Array:
        a = logits_fn(x, mask)
        x = x.astype(a.dtype)
        lp = x * jax.nn.log_sigmoid(a) + (1.0 - x) * jax.nn.log_sigmoid(-a)
        return jnp.where(mask, 0.0, lp)

    return cond_logpdf


def marginal_cond_logpdf(log_marginal_fn: Callable[[Array, Array], Array]) -> CondLogpdf:
    """Adapts a marginal model ``log_marginal_fn(x [D], mask [D]) -> log p(x_O)`` to ``cond_logpdf``.

    Costs D + 1 marginal evaluations per mask (vmapped over the added coordinate).
    """

    def cond_logpdf(x: Array, mask: Array) -> Array:
        d = mask.shape[0]
        base = log_marginal_fn(x, mask)
        with_j = mask[None, :] | jnp.eye(d, dtype=bool)  # [D, D]: row j observes O and j
        lp = jax.vmap(log_marginal_fn, in_axes=(None, 0))(x, with_j) - base
        return jnp.where(mask, 0.0, lp)

    return cond_logpdf


def mpt_log_likelihood(cond_logpdf: CondLogpdf, x: Array, key: jax.Array, num_masks_per_rate: int = 16,
                       rates: Sequence[float] | None = None, *, exact: bool | str = "auto",
                       chunk_size: int | str | None = "auto") -> MPTEstimate:
    """MPT estimate of ``log p(x)`` from a model's conditionals (see the module docstring).

    Args:
      cond_logpdf: from an adapter above, or any ``(x [D], mask [D]) -> [D]``.
      x: ``[D]`` or ``[B, D]`` (tokens, binary or real).
      key: PRNG key for Monte Carlo masks.
      num_masks_per_rate: K masks per mask size.
      rates: mask rates; default all sizes 1..D (the log-likelihood estimate).
      exact: ``"auto"`` / True / False enumeration, as in :func:`cumulative_mpt`.
      chunk_size: masks vmapped at once, as in :func:`cumulative_mpt`.

    Returns:
      :class:`~mamjax.lml.estimator.MPTEstimate`; ``value`` in nats per example.
    """
    return cumulative_mpt(cond_logpdf, x, key, num_masks_per_rate, rates, exact=exact, chunk_size=chunk_size)
