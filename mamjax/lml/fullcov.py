"""Batch-mean cumulative MPT of a full-covariance Gaussian, independent masks, smaller-side algebra.

For ``N(mu, Sigma)`` with hidden set ``T`` (``|T| = m``) and observed set ``O`` (``|O| = D - m``)
each hidden coordinate's conditional ``p(x_j | x_O)`` needs one factorisation per mask, and it can be
taken on whichever side is smaller:

* **hidden side** (``m <= D - m``): with the precision ``L = Sigma^{-1}`` and ``C = (L_TT)^{-1}``,
  ``Var[x_j | x_O] = C_jj`` and the residual is ``r_T = C (L xc)_T``, so over a batch with second
  moment ``S = mean_n xc_n xc_n^T`` the mean squared residual is ``(C G_TT C)_jj`` with
  ``G = L S L`` (computed once per call);
* **observed side** (``m > D - m``): with ``B = Sigma_TO Sigma_OO^{-1}``,
  ``Var[x_j | x_O] = Sigma_jj - (B Sigma_OT)_jj`` and the mean squared residual is
  ``S_jj - 2 (B S_OT)_jj + (B S_OO B^T)_jj``.

So a mask costs ``O(min(m, D - m)^3 + D min(m, D - m)^2)`` instead of the ``O(D^3)`` of a padded
``D x D`` Cholesky, and no per-example work at all (the batch's second moment carries the data, as
in :mod:`mamjax.lml.moments`). Masks are grouped by side and by a padded width (the
:func:`mamjax.lml.estimator.mask_bucket` of ``min(m, D - m)``: 1, 2, 3, 4, 6, 8, 12, 16, 24, ...),
padding the gathered blocks with the identity, which leaves the real block's inverse unchanged.
For small ``D`` (``<= DENSE_MAX_DIMS``) those groups' many tiny gathers and inverses cost more in
per-op overhead than their arithmetic saves, so every mask takes the hidden-side formula on the
whole ``D x D`` precision instead, its observed rows and columns replaced by the identity
(``(L_TT)^{-1}`` is then the ``T`` block of the inverse): one batched inverse for all masks.
The inverses are a blocked Schur-complement recursion of batched matmuls down to an unrolled
Gauss-Jordan at width <= 16: no batched LAPACK kernel, so none of the XLA CPU pool deadlocks of
:func:`mamjax.lml.mvn_conditional_logpdf` (issue 20).

The masks are those of :func:`mamjax.lml.gaussian_mpt` for the same key, and the value is the mean
of its per-example estimates to rounding (tested, values and gradients).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mamjax.lml import estimator as est
from mamjax.lml import lowrank as lr
from mamjax.lml.moments import second_moment

Array = jax.Array

__all__ = ["gaussian_mpt_mean", "gauss_jordan_inverse", "spd_inverse_blocked", "size_groups", "DENSE_MAX_DIMS"]

_LOG_2PI = math.log(2.0 * math.pi)
DENSE_MAX_DIMS = 16  # ``algorithm="auto"``: one dense D x D group up to this D, smaller-side groups above
ALGORITHMS = ("auto", "dense", "blocks")


def gauss_jordan_inverse(a: Array) -> Array:
    """Inverse of a batch ``[..., w, w]`` of SPD matrices: Gauss-Jordan without pivoting as one
    ``lax.fori_loop`` over the pivots (one loop body whatever ``w``, so compile time does not grow
    with the width; differentiable, the trip count is static)."""
    w = a.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(w, dtype=a.dtype), a.shape)

    def pivot(i, carry):
        m, inv = carry
        row_m = jax.lax.dynamic_index_in_dim(m, i, axis=-2, keepdims=False)  # [..., w]
        row_inv = jax.lax.dynamic_index_in_dim(inv, i, axis=-2, keepdims=False)
        col = jax.lax.dynamic_index_in_dim(m, i, axis=-1, keepdims=True)  # [..., w, 1]
        piv = jax.lax.dynamic_index_in_dim(row_m, i, axis=-1, keepdims=True)  # [..., 1]
        row_m, row_inv = row_m / piv, row_inv / piv
        is_i = (jnp.arange(w) == i)[:, None]
        col = jnp.where(is_i, 0.0, col)  # the pivot row is replaced, not updated
        m = jnp.where(is_i, row_m[..., None, :], m - col * row_m[..., None, :])
        inv = jnp.where(is_i, row_inv[..., None, :], inv - col * row_inv[..., None, :])
        return m, inv

    return jax.lax.fori_loop(0, w, pivot, (a, eye))[1]


@jax.custom_jvp
def spd_inverse_blocked(a: Array) -> Array:
    """Inverse of a batch ``[..., w, w]`` of SPD matrices by Schur-complement blocks of batched matmuls.

    Widths ``<= 16`` use the unrolled Gauss-Jordan of :func:`mamjax.lml.lowrank.spd_inverse` (the
    looped :func:`gauss_jordan_inverse` compiles faster but ran 2-3x slower here); no LAPACK call at
    any width. No pivoting:
    meant for well-conditioned SPD blocks (covariances, precisions, their principal submatrices).
    Differentiated by its closed form ``d(A^{-1}) = -A^{-1} dA A^{-1}`` (two batched products)
    rather than through the unrolled elimination.
    """
    return _blocked_inverse(a)


@spd_inverse_blocked.defjvp
def _spd_inverse_blocked_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    c = _blocked_inverse(a)
    return c, -(c @ da @ c)


def _blocked_inverse(a: Array) -> Array:
    w = a.shape[-1]
    if w <= lr.MAX_UNROLLED_LATENTS:
        return lr.spd_inverse(a)
    h = w // 2
    a11, a12, a22 = a[..., :h, :h], a[..., :h, h:], a[..., h:, h:]
    i11 = _blocked_inverse(a11)
    p = i11 @ a12  # A11^{-1} A12
    schur = a22 - jnp.swapaxes(a12, -1, -2) @ p
    i22 = _blocked_inverse(0.5 * (schur + jnp.swapaxes(schur, -1, -2)))
    top_right = -p @ i22
    top_left = i11 - top_right @ jnp.swapaxes(p, -1, -2)
    top = jnp.concatenate([top_left, top_right], axis=-1)
    bottom = jnp.concatenate([jnp.swapaxes(top_right, -1, -2), i22], axis=-1)
    return jnp.concatenate([top, bottom], axis=-2)


def size_groups(num_hidden: np.ndarray, num_dims: int, algorithm: str = "blocks") -> tuple:
    """Static groups ``((side, width, rows), ...)`` of the plan's sizes: side ``"hidden"`` where
    ``m <= D - m``, else ``"observed"``; ``width`` the bucketed ``min(m, D - m)`` (>= 1).
    ``algorithm="dense"`` (or ``"auto"`` with ``D <= DENSE_MAX_DIMS``): one ``("dense", D, rows)`` group."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"`algorithm` must be one of {ALGORITHMS}; got {algorithm!r}.")
    if algorithm == "dense" or (algorithm == "auto" and num_dims <= DENSE_MAX_DIMS):
        return (("dense", num_dims, tuple(range(len(num_hidden)))),)
    groups: dict = {}
    for r, m in enumerate(np.asarray(num_hidden).tolist()):
        side = "hidden" if m <= num_dims - m else "observed"
        width = est.mask_bucket(max(1, min(m, num_dims - m)))
        groups.setdefault((side, width), []).append(r)
    return tuple((side, width, tuple(rows)) for (side, width), rows in sorted(groups.items()))


def _gather_blocks(sel: Array, width: int, mats: tuple, fills: tuple) -> tuple[tuple, Array, Array]:
    """Per mask the ``width`` selected indices (``sel [S, D]`` bool), their validity and, per matrix,
    the ``[S, width, width]`` principal block with invalid rows/columns set to ``fill`` (1 on the
    diagonal for "eye", else 0)."""
    idx = jax.vmap(lambda r: jnp.nonzero(r, size=width, fill_value=0)[0])(sel)  # [S, w]
    valid = jnp.arange(width)[None] < jnp.sum(sel, axis=-1)[:, None]
    both = valid[:, :, None] & valid[:, None, :]
    out = []
    for mat, fill in zip(mats, fills):
        block = mat[idx[:, :, None], idx[:, None, :]]
        pad = jnp.eye(width, dtype=mat.dtype)[None] if fill == "eye" else jnp.zeros((), mat.dtype)
        out.append(jnp.where(both, block, pad))
    return tuple(out), idx, valid


def _mean_conditional_logpdf(var: Array, er2: Array, valid: Array, num_hidden: Array) -> Array:
    """``[S]``: per mask, the mean over its ``num_hidden`` coordinates of the batch-mean Gaussian log
    density with conditional variances ``var`` and mean squared residuals ``er2`` (``[S, w]``; entries
    outside ``valid`` are ignored)."""
    var = jnp.where(valid, var, 1.0)
    lp = -0.5 * (_LOG_2PI + jnp.log(var) + er2 / var)
    return jnp.sum(jnp.where(valid, lp, 0.0), axis=-1) / num_hidden


def _precision_block_scores(lam_t: Array, g_t: Array, valid: Array, num_hidden: Array) -> Array:
    """Scores from ``[S, w, w]`` hidden blocks of the precision and of ``G = L S L`` (padded with the
    identity and with zeros): ``C = lam_t^{-1}``, ``Var = C_jj``, mean squared residual ``(C G C)_jj``."""
    c = spd_inverse_blocked(lam_t)
    er2 = jnp.sum((c @ g_t) * c, axis=-1)  # (C G C)_jj
    return _mean_conditional_logpdf(jnp.diagonal(c, axis1=-2, axis2=-1), er2, valid, num_hidden)


def hidden_side_scores(masks: Array, lam: Array, g: Array, width: int) -> Array:
    """``[S]`` batch-mean scores of ``[S, D]`` masks (True = observed) hiding at most ``width``."""
    hidden = ~masks
    (lam_t, g_t), _, valid = _gather_blocks(hidden, width, (lam, g), ("eye", "zero"))
    return _precision_block_scores(lam_t, g_t, valid, jnp.sum(hidden, axis=-1))


def dense_scores(masks: Array, lam: Array, g: Array) -> Array:
    """``[S]`` batch-mean scores of ``[S, D]`` masks (True = observed), any hidden count: the
    hidden-side formula on the ``D x D`` precision with observed rows/columns set to the identity."""
    hidden = ~masks
    both = hidden[:, :, None] & hidden[:, None, :]
    eye = jnp.eye(lam.shape[-1], dtype=lam.dtype)
    return _precision_block_scores(jnp.where(both, lam, eye), jnp.where(both, g, 0.0), hidden,
                                   jnp.sum(hidden, axis=-1))


def observed_side_scores(masks: Array, cov: Array, s2: Array, width: int) -> Array:
    """``[S]`` batch-mean scores of ``[S, D]`` masks (True = observed) observing at most ``width``."""
    hidden = ~masks
    (cov_oo, s_oo), idx, valid = _gather_blocks(masks, width, (cov, s2), ("eye", "zero"))
    rows = valid[:, :, None]
    cov_od = jnp.where(rows, cov[idx], 0.0)  # [S, w, D]: Sigma_{O, :}
    s_od = jnp.where(rows, s2[idx], 0.0)
    bt = spd_inverse_blocked(cov_oo) @ cov_od  # B^T = Sigma_OO^{-1} Sigma_{O, :}
    var = jnp.diagonal(cov)[None] - jnp.sum(bt * cov_od, axis=1)  # [S, D]
    er2 = jnp.diagonal(s2)[None] - 2.0 * jnp.sum(bt * s_od, axis=1) + jnp.sum(bt * (s_oo @ bt), axis=1)
    return _mean_conditional_logpdf(var, er2, hidden, jnp.sum(hidden, axis=-1))


def _fullcov_mean_estimate(groups: tuple, x: Array, mean: Array, cov: Array, key, plan_masks, weights, is_exact,
                           num_hidden, coef, num_valid=None) -> est.MPTEstimate:
    r, k, num_dims = plan_masks.shape
    masks = est.draw_masks(key, plan_masks, is_exact, num_hidden, num_valid)  # [R, K, D]
    s2 = second_moment(x, mean)
    lam = spd_inverse_blocked(cov)
    lam = 0.5 * (lam + lam.T)
    g = lam @ s2 @ lam
    s = jnp.zeros((r, k), cov.dtype)
    for side, width, rows in groups:
        rows_a = np.asarray(rows)
        mg = masks[rows_a].reshape(-1, num_dims)
        if side == "dense":
            sc = dense_scores(mg, lam, g)
        elif side == "hidden":
            sc = hidden_side_scores(mg, lam, g, width)
        else:
            sc = observed_side_scores(mg, cov, s2, width)
        s = s.at[rows_a].set(sc.reshape(len(rows), k))
    return est.reduce_scores(s, weights, is_exact, num_hidden, coef, num_valid)


_fullcov_mean_estimate_jit = jax.jit(_fullcov_mean_estimate, static_argnums=(0,))


def gaussian_mpt_mean(x: Array, key: jax.Array, num_masks_per_rate: int, mean: Array, cov: Array,
                      rates: Sequence[float] | None = None, *, num_hidden: Sequence[int] | None = None,
                      exact: bool | str = "auto", algorithm: str = "auto") -> est.MPTEstimate:
    """Batch mean of :func:`mamjax.lml.gaussian_mpt` (same key, same masks) for any ``N(mean, cov)``.

    Args:
      x: ``[B, D]`` batch.
      key, num_masks_per_rate, rates, num_hidden, exact: as in :func:`mamjax.lml.cumulative_mpt`.
      mean: ``[D]``; cov: ``[D, D]`` SPD.
      algorithm: ``"blocks"`` (each mask on its smaller side, grouped by padded width), ``"dense"``
        (every mask on the whole ``D x D`` precision: fewer, larger ops) or ``"auto"`` (dense for
        ``D <= DENSE_MAX_DIMS``). The same value to rounding.

    Returns:
      :class:`mamjax.lml.MPTEstimate` with a scalar ``value`` (``mean(gaussian_mpt(...).value)`` to
      rounding) and the Monte Carlo standard error of that batch mean; ``per_size`` is ``[R]``.
      One compilation per grouping of the sizes (side and padded width), mask-count bucket and shape.
      The groups' inverses are unrolled, so compilation grows fast with ``D``: seconds at ``D = 10``,
      10-20 s at ``D = 50``, 1-1.3 min for a train step at ``D = 200`` (2 CPU cores); for large ``D``
      prefer :func:`mamjax.lml.ordering_mpt_mean` or the per-example :func:`mamjax.lml.gaussian_mpt`.
    """
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"`x` must have shape [B, D] with B >= 1; got {tuple(x.shape)}.")
    num_dims = x.shape[-1]
    cov = jnp.asarray(cov)
    if cov.shape != (num_dims, num_dims):
        raise ValueError(f"`cov` must have shape [{num_dims}, {num_dims}]; got {tuple(cov.shape)}.")
    mean = jnp.broadcast_to(jnp.asarray(mean, cov.dtype), (num_dims,))
    traced = est._is_traced(x, key, mean, cov)
    plan, arrays = est.call_plan_arrays(num_dims, num_masks_per_rate, rates, num_hidden, exact, key, traced)
    groups = size_groups(plan.num_hidden, num_dims, algorithm)
    fn = _fullcov_mean_estimate if traced else _fullcov_mean_estimate_jit
    return fn(groups, x, mean, cov, key, *arrays)
