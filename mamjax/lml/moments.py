"""Batch-mean cumulative MPT of Gaussians from the data's second moment: no per-example work per mask.

For a Gaussian model every mask's MPT score is a quadratic form in the centred example
``xc = x - mu`` plus a constant (:mod:`mamjax.lml.lowrank`, :mod:`mamjax.lml.ordering`):
``s_M(x) = (c_M - 1/2 xc^T Q_M xc) / |M|``. Its mean over a batch therefore needs only the batch's
second moment ``S = mean_n xc_n xc_n^T``:

    mean_n s_M(x_n) = (c_M - 1/2 tr(Q_M S)) / |M|.

A training loss is such a mean, so a training step can replace the ``O(N D K)`` per-example products
of every mask with one ``O(N D^2)`` moment and ``O(D^2 K)`` (low-rank) or ``O(D^2)`` (ordering) work
per mask: the cost of a step no longer grows with ``N x masks``. The value is the mean of the
per-example estimates of :func:`mamjax.lml.lowrank_mpt` / :func:`mamjax.lml.ordering_mpt` for the
same key (same masks), to rounding; its standard error is the Monte Carlo error **of the batch
mean** (spread over masks of each mask's batch-mean score), which is what an optimiser sees. Use
the per-example routes when per-example estimates are needed.

For the low-rank model ``W W^T + diag(psi)`` with latent posterior ``C``, ``A = C W^T diag(o/psi)``,
hidden weights ``a = (1 - o) / v``, ``B = W^T diag(a)`` and ``G = B W`` (see :mod:`mamjax.lml.lowrank`),

    tr(Q S) = a . diag(S) - 2 tr(B S A^T) + tr(G A S A^T),

so each mask costs one ``[K, D] x [D, D]`` product (``T = A S``) and a few ``K x D`` reductions.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from mamjax.lml import estimator as est
from mamjax.lml import lowrank as lr
from mamjax.lml import ordering as od

Array = jax.Array

__all__ = ["second_moment", "lowrank_mpt_mean", "ordering_mpt_mean", "lowrank_moment_scores"]

# Masks per lax.map chunk: keep the [chunk, 2K + 1, D] mask terms near this many elements.
CHUNK_ELEMENTS = 1 << 21


def second_moment(x: Array, mean: Array) -> Array:
    """``[D, D]`` batch second moment ``mean_n (x_n - mean)(x_n - mean)^T`` of ``x [N, D]``."""
    xc = x - mean[None]
    return xc.T @ xc / x.shape[0]


def lowrank_moment_scores(s2: Array, masks: Array, w: Array, psi: Array) -> Array:
    """``[S]`` batch-mean scores ``mean_n 1/M sum_{j hidden} log p(x_nj | x_nO)`` of ``[S, D]`` masks."""
    k = w.shape[1]
    proj, g, const, num_hidden = lr._mask_terms(masks, w, psi)  # proj: [S, 2K+1, D] = (a, A, B)
    a, a_mat, b = proj[:, 0], proj[:, 1:k + 1], proj[:, k + 1:]
    t = jnp.einsum("skd,de->ske", a_mat, s2)  # A S
    quad = (a @ jnp.diagonal(s2) - 2.0 * jnp.einsum("ske,ske->s", b, t)
            + jnp.einsum("skl,ske,sle->s", g, t, a_mat))  # tr(G A S A^T)
    return (const - 0.5 * quad) / num_hidden


def _lowrank_mean_estimate(chunk: int, x: Array, w: Array, psi: Array, mean: Array, key, plan_masks, weights,
                           is_exact, num_hidden, coef, num_valid=None) -> est.MPTEstimate:
    r, k, num_dims = plan_masks.shape
    masks = est.draw_masks(key, plan_masks, is_exact, num_hidden, num_valid).reshape(r * k, num_dims)
    s2 = second_moment(x, mean)
    s = est.map_mask_chunks(lambda m: lowrank_moment_scores(s2, m, w, psi), masks, chunk).reshape(r, k)
    return est.reduce_scores(s, weights, is_exact, num_hidden, coef, num_valid)


_lowrank_mean_estimate_jit = jax.jit(_lowrank_mean_estimate, static_argnums=(0,))


def _check_batch(x) -> Array:
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"`x` must have shape [B, D] with B >= 1; got {tuple(x.shape)}.")
    return x


def lowrank_mpt_mean(x: Array, key: jax.Array, num_masks_per_rate: int, w: Array, psi, mean: Array | None = None,
                     rates: Sequence[float] | None = None, *, num_hidden: Sequence[int] | None = None,
                     exact: bool | str = "auto", chunk_size: int | str = "auto") -> est.MPTEstimate:
    """Batch mean of :func:`mamjax.lml.lowrank_mpt` from the batch's second moment (same key, same masks).

    Args:
      x: ``[B, D]`` batch.
      key, num_masks_per_rate, w, psi, mean, rates, num_hidden, exact: as in ``lowrank_mpt``.
      chunk_size: masks per ``lax.map`` chunk; ``"auto"`` keeps ``chunk x (2K + 1) x D`` near
        ``CHUNK_ELEMENTS``. Results do not depend on it.

    Returns:
      :class:`mamjax.lml.MPTEstimate` with a scalar ``value`` (``mean(lowrank_mpt(...).value)`` to
      rounding) and the Monte Carlo standard error of that batch mean; ``per_size`` is ``[R]``.
    """
    x = _check_batch(x)
    num_dims = x.shape[-1]
    w, psi, mean = lr.check_lowrank(num_dims, w, psi, mean)
    traced = est._is_traced(x, key, w, psi, mean)
    _, arrays = est.call_plan_arrays(num_dims, num_masks_per_rate, rates, num_hidden, exact, key, traced)
    num_masks = arrays[0].shape[0] * arrays[0].shape[1]
    if chunk_size == "auto":
        chunk = max(1, min(num_masks, CHUNK_ELEMENTS // ((2 * w.shape[1] + 1) * num_dims)))
    else:
        chunk = lr.chunk_for(chunk_size, 1, 1, num_masks)
    fn = _lowrank_mean_estimate if traced else _lowrank_mean_estimate_jit
    return fn(chunk, x, w, psi, mean, key, *arrays)


def _ordering_mean(x: Array, key: jax.Array, num_orderings: int, mean: Array, cov: Array, num_valid=None):
    mats, consts = od.ordering_quadratics(cov, od.slot_orderings(key, x.shape[-1], num_orderings, num_valid))
    s = consts - 0.5 * jnp.einsum("kde,de->k", mats, second_moment(x, mean))
    return est.slot_mean_stderr(s, num_valid)


_ordering_mean_jit = jax.jit(_ordering_mean, static_argnums=(2,))


def ordering_mpt_mean(x: Array, key: jax.Array, num_orderings: int, mean: Array, cov: Array) -> od.OrderingEstimate:
    """Batch mean of :func:`mamjax.lml.ordering_mpt` from the batch's second moment (same key, same orderings).

    Args: as in ``ordering_mpt``, with ``x`` a ``[B, D]`` batch.

    Returns:
      :class:`mamjax.lml.OrderingEstimate` with scalar ``value`` (``mean(ordering_mpt(...).value)``
      to rounding) and the standard error of that batch mean over the orderings.
    """
    x = _check_batch(x)
    d = x.shape[-1]
    mean, cov = od.check_ordering_args(d, num_orderings, mean, cov)
    return od.OrderingEstimate(*od.run_ordering_estimate(_ordering_mean, _ordering_mean_jit, x, key, num_orderings,
                                                         mean, cov))
