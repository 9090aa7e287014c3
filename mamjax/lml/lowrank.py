"""Fast cumulative MPT for low-rank-plus-diagonal Gaussians (PPCA, factor analysis): all masks as matmuls.

For ``x ~ N(mu, W W^T + diag(psi))`` (``W [D, K]``, ``psi > 0``; PPCA is ``psi = sigma^2``) the
conditionals given an observed set O go through the latent posterior (Woodbury):

    C = (I_K + W^T diag(o / psi) W)^{-1},   m = C W^T diag(o / psi) (x - mu) = A (x - mu),
    x_j | x_O ~ N(mu_j + w_j^T m,  v_j = w_j^T C w_j + psi_j),

with ``o`` the observed indicator. ``C``, ``A`` and ``v`` depend on the mask only. The sum of the
hidden log densities of one mask is a quadratic form in ``xc = x - mu`` whose per-example part
needs only ``2K + 1`` inner products with ``xc``: with ``a = (1 - o) / v``, ``B = W^T diag(a)``
and ``G = B W``,

    sum_{j hidden} (xc_j - w_j^T m)^2 / v_j = a . xc^2 - 2 (B xc) . m + m^T G m.

So every mask's score for every example is one ``[N, D] x [D, masks * (2K + 1)]`` matrix product
plus ``K x K`` work per mask, instead of a ``D``-vector conditional per mask and example. The
``K x K`` inverse is an unrolled Gauss-Jordan elimination (``I + P`` is SPD with eigenvalues
>= 1, no pivoting needed) in plain ``jnp``: no LAPACK call (so no batched-LAPACK thread-pool
waits, see :func:`mamjax.lml.estimator._chunked_scores`) and a backward pass of the same cost.
Masks are drawn exactly as :func:`mamjax.lml.cumulative_mpt` draws them for the same key, so the
two agree to rounding (the tests check it against :func:`mamjax.lml.ppca_cond_logpdf`).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from mamjax.lml import estimator as est
from mamjax.lml.gaussian import check_positive, mvn_mask_scores

Array = jax.Array

__all__ = ["lowrank_mpt", "gaussian_mpt", "lowrank_mask_scores", "spd_inverse", "run_matmul_route", "scores_chunked"]

_LOG_2PI = math.log(2.0 * math.pi)
# Masks per lax.map chunk: keep the [N, chunk, 2K+1] projections near this many elements.
CHUNK_ELEMENTS = 1 << 19
# Latent sizes above this use a Cholesky solve instead of the unrolled elimination.
MAX_UNROLLED_LATENTS = 16


def spd_inverse(a: Array) -> Array:
    """Inverse of a batch ``[..., K, K]`` of well-conditioned SPD matrices (Gauss-Jordan, unrolled).

    No pivoting: meant for ``I + W^T diag(c) W`` (eigenvalues >= 1). ``K > MAX_UNROLLED_LATENTS``
    falls back to ``cho_solve``.
    """
    k = a.shape[-1]
    if k > MAX_UNROLLED_LATENTS:
        eye = jnp.broadcast_to(jnp.eye(k, dtype=a.dtype), a.shape)
        return jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(a), True), eye)
    m = a
    inv = jnp.broadcast_to(jnp.eye(k, dtype=a.dtype), a.shape)
    for i in range(k):
        piv = m[..., i, i][..., None]
        row_m, row_inv = m[..., i, :] / piv, inv[..., i, :] / piv
        col = m[..., :, i][..., :, None]
        m = (m - col * row_m[..., None, :]).at[..., i, :].set(row_m)
        inv = (inv - col * row_inv[..., None, :]).at[..., i, :].set(row_inv)
    return inv


def _mask_terms(masks: Array, w: Array, psi: Array):
    """Mask-only parts for ``[S, D]`` masks: projections ``[S, 2K+1, D]``, ``G [S, K, K]``, constants."""
    o = masks.astype(w.dtype)  # [S, D]
    h = 1.0 - o
    wp = w / psi[:, None]  # [D, K]
    p = jnp.einsum("sd,dk,dl->skl", o, wp, w)
    c = spd_inverse(jnp.eye(w.shape[1], dtype=w.dtype)[None] + p)  # [S, K, K]
    a_mat = jnp.einsum("skl,dl,sd->skd", c, wp, o)  # A = C W^T diag(o / psi)
    v = jnp.einsum("dk,skl,dl->sd", w, c, w) + psi[None]  # predictive variances
    a = h / v  # hidden weights
    b = w.T[None] * a[:, None, :]  # B = W^T diag(a): [S, K, D]
    g = jnp.einsum("skd,dl->skl", b, w)
    num_hidden = jnp.sum(h, axis=-1)
    const = -0.5 * jnp.sum(h * (_LOG_2PI + jnp.log(v)), axis=-1)  # [S]
    proj = jnp.concatenate([a[:, None, :], a_mat, b], axis=1)  # [S, 2K+1, D]
    return proj, g, const, num_hidden


def lowrank_mask_scores(xc: Array, masks: Array, w: Array, psi: Array) -> Array:
    """Per-mask MPT scores ``[N, S]``: ``1/M sum_{j hidden} log p(x_j | x_O)`` for centred ``xc [N, D]``."""
    k = w.shape[1]
    proj, g, const, num_hidden = _mask_terms(masks, w, psi)
    q0 = (xc * xc) @ proj[:, 0].T  # [N, S]
    if k > MAX_UNROLLED_LATENTS:
        y = jnp.einsum("nd,sed->nse", xc, proj[:, 1:])  # [N, S, 2K]: m = A xc, b = B xc
        m, b = y[..., :k], y[..., k:]
        quad = q0 - 2.0 * jnp.sum(b * m, -1) + jnp.einsum("nsk,skl,nsl->ns", m, g, m)
    else:
        # One [N, 2K * S] product, projection-major, then [N, S] column blocks and elementwise
        # updates: XLA's CPU code for [N, S, 2K] intermediates with a minor axis of 2K (or batched
        # [K, K] dots over S) was 3-6x slower (34 ms vs 5-8 ms at D = 50, 5 masks per size, N = 2000).
        s = masks.shape[0]
        y = xc @ jnp.swapaxes(proj[:, 1:], 0, 1).reshape(2 * k * s, -1).T
        ys = [y[:, i * s:(i + 1) * s] for i in range(2 * k)]  # m_i = (A xc)_i, then b_i = (B xc)_i
        quad = q0
        for i in range(k):
            quad = quad - 2.0 * ys[k + i] * ys[i]
            for j in range(k):
                quad = quad + ys[i] * g[None, :, i, j] * ys[j]
    return (const[None] - 0.5 * quad) / num_hidden[None]


def _full_mask_scores(xc: Array, masks: Array, cov: Array) -> Array:
    return mvn_mask_scores(xc, masks, cov)


def scores_chunked(score_fn, xc: Array, masks: Array, params: tuple, chunk: int) -> Array:
    """``score_fn(xc [N, D], masks [S, D], *params) -> [N, S]`` over ``lax.map`` chunks of ``chunk`` masks."""
    return est.map_mask_chunks(lambda m: score_fn(xc, m, *params), masks, chunk)


def _matmul_estimate(score_fn, chunk: int, x: Array, params: tuple, mean: Array, key, plan_masks, weights,
                     is_exact, num_hidden, coef, num_valid=None) -> est.MPTEstimate:
    r, k, num_dims = plan_masks.shape
    masks = est.draw_masks(key, plan_masks, is_exact, num_hidden, num_valid).reshape(r * k, num_dims)
    xb = x.reshape(-1, num_dims) - mean[None]
    s = scores_chunked(score_fn, xb, masks, params, chunk).reshape(x.shape[:-1] + (r, k))
    return est.reduce_scores(s, weights, is_exact, num_hidden, coef, num_valid)


_matmul_estimate_jit = jax.jit(_matmul_estimate, static_argnums=(0, 1))


def run_matmul_route(score_fn, x, key, num_masks_per_rate, params, mean, rates, num_hidden, exact, chunk_size,
                     per_mask_width) -> est.MPTEstimate:
    """The shared driver of the matmul routes: the plan of :func:`mamjax.lml.cumulative_mpt`, scores by ``score_fn``.

    ``score_fn(xc [N, D], masks [S, D], *params) -> [N, S]`` must be a module-level function (it is a
    static argument of the jitted call). ``per_mask_width`` is the per-example, per-mask working width
    that ``chunk_size="auto"`` keeps ``N x chunk x width`` near ``CHUNK_ELEMENTS`` with.
    """
    num_dims = x.shape[-1]
    traced = est._is_traced(x, key, params, mean)
    plan, arrays = est.call_plan_arrays(num_dims, num_masks_per_rate, rates, num_hidden, exact, key, traced)
    num_masks = arrays[0].shape[0] * arrays[0].shape[1]
    chunk = chunk_for(chunk_size, x.size // num_dims, per_mask_width, num_masks)
    fn = _matmul_estimate if traced else _matmul_estimate_jit
    return fn(score_fn, chunk, x, params, mean, key, *arrays)


def chunk_for(chunk_size, batch: int, per_mask_width: int, num_masks: int) -> int:
    """Masks per chunk: ``"auto"`` keeps ``batch x chunk x per_mask_width`` near ``CHUNK_ELEMENTS``."""
    if chunk_size == "auto":
        per_mask = max(1, batch * per_mask_width)
        return max(1, min(num_masks, CHUNK_ELEMENTS // per_mask))
    if isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1:
        return chunk_size
    raise ValueError(f"`chunk_size` must be 'auto' or a positive int; got {chunk_size!r}.")


def check_lowrank(num_dims: int, w, psi, mean) -> tuple[Array, Array, Array]:
    """``(w [D, K], psi [D] > 0, mean [D])`` checked and broadcast; ``mean=None`` is zero."""
    w = jnp.asarray(w)
    if w.ndim != 2 or w.shape[0] != num_dims:
        raise ValueError(f"`w` must have shape [D={num_dims}, K]; got {tuple(w.shape)}.")
    psi = jnp.broadcast_to(jnp.asarray(psi, w.dtype), (num_dims,))
    check_positive(psi, "psi")
    mean = jnp.zeros(num_dims, w.dtype) if mean is None else jnp.broadcast_to(jnp.asarray(mean, w.dtype), (num_dims,))
    return w, psi, mean


def _check_x(x) -> Array:
    x = jnp.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"`x` must have shape [D] or [B, D]; got {tuple(x.shape)}.")
    return x


def gaussian_mpt(x: Array, key: jax.Array, num_masks_per_rate: int, mean: Array, cov: Array,
                 rates: Sequence[float] | None = None, *, num_hidden: Sequence[int] | None = None,
                 exact: bool | str = "auto", chunk_size: int | str = "auto") -> est.MPTEstimate:
    """:func:`mamjax.lml.cumulative_mpt` for a full-covariance ``N(mean, cov)``, conditional means as matmuls.

    Same masks and result as ``cumulative_mpt`` with :func:`mamjax.lml.mvn_conditional_logpdf`
    (same key); per chunk of masks one batched Cholesky and one ``[N, D] x [D, chunk * D]`` product
    instead of two triangular solves per mask and example. ``O(D^3)`` per mask remains: use
    :func:`lowrank_mpt` when the covariance is low-rank plus diagonal.

    Args:
      x: ``[D]`` or ``[B, D]``; mean: ``[D]``; cov: ``[D, D]`` SPD.
      key, num_masks_per_rate, rates, num_hidden, exact: as in ``cumulative_mpt``.
      chunk_size: masks per ``lax.map`` chunk; ``"auto"`` keeps ``B x chunk x D`` near ``CHUNK_ELEMENTS``.
    """
    x = _check_x(x)
    num_dims = x.shape[-1]
    cov = jnp.asarray(cov)
    if cov.shape != (num_dims, num_dims):
        raise ValueError(f"`cov` must have shape [{num_dims}, {num_dims}]; got {tuple(cov.shape)}.")
    mean = jnp.broadcast_to(jnp.asarray(mean, cov.dtype), (num_dims,))
    return run_matmul_route(_full_mask_scores, x, key, num_masks_per_rate, (cov,), mean, rates, num_hidden, exact,
                            chunk_size, num_dims)


def lowrank_mpt(x: Array, key: jax.Array, num_masks_per_rate: int, w: Array, psi, mean: Array | None = None,
                rates: Sequence[float] | None = None, *, num_hidden: Sequence[int] | None = None,
                exact: bool | str = "auto", chunk_size: int | str = "auto") -> est.MPTEstimate:
    """:func:`mamjax.lml.cumulative_mpt` for ``N(mean, W W^T + diag(psi))``, all masks as matmuls.

    Same masks, sizes, exact enumeration, rate-grid rule and result as ``cumulative_mpt`` with
    :func:`mamjax.lml.ppca_cond_logpdf` (same key), at ``O(N D K)`` per mask in one matrix product.

    Args:
      x: ``[D]`` or ``[B, D]``.
      key: PRNG key for the Monte Carlo masks.
      num_masks_per_rate: K masks per size (static).
      w: ``[D, K]`` loadings.
      psi: noise variance(s) > 0: scalar (PPCA) or ``[D]`` (factor analysis).
      mean: ``[D]`` or None (zero).
      rates, num_hidden, exact: as in ``cumulative_mpt``.
      chunk_size: masks per ``lax.map`` chunk; ``"auto"`` keeps ``B x chunk x (2K+1)`` near
        ``CHUNK_ELEMENTS``. Results do not depend on it.

    Returns:
      :class:`mamjax.lml.MPTEstimate`.
    """
    x = _check_x(x)
    num_dims = x.shape[-1]
    w, psi, mean = check_lowrank(num_dims, w, psi, mean)
    return run_matmul_route(lowrank_mask_scores, x, key, num_masks_per_rate, (w, psi), mean, rates, num_hidden, exact,
                            chunk_size, 2 * w.shape[1] + 1)
