"""Multivariate normal: log density and closed-form conditionals for any mask.

For ``x ~ N(mu, S)`` and an observed set ``O`` (mask True), every hidden
coordinate ``j`` has the Gaussian conditional

    x_j | x_O ~ N(mu_j + S_jO S_OO^{-1} (x_O - mu_O),  S_jj - S_jO S_OO^{-1} S_Oj).

Masks have static shape, so instead of slicing ``S_OO`` we factor the
``[D, D]`` matrix ``A = diag(m) S diag(m) + diag(1 - m)``, which equals
``S_OO`` on the observed block and the identity elsewhere; ``A^{-1}``
restricted to ``O`` is ``S_OO^{-1}`` and hidden rows/columns drop out. This
keeps one Cholesky per mask, jittable and vmappable over masks.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve, solve_triangular

Array = jax.Array
CondLogpdf = Callable[[Array, Array], Array]

__all__ = ["mvn_logpdf", "mvn_conditional", "mvn_conditional_logpdf", "normal_logpdf", "check_positive", "mvn_mask_terms",
           "mvn_mask_scores"]

_LOG_2PI = math.log(2.0 * math.pi)


def _concrete(v) -> bool:
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(v))


def check_positive(value, name: str, *, allow_zero: bool = False) -> None:
    """Raises ``ValueError`` naming ``name`` if a concrete ``value`` has an entry <= 0 (< 0 with
    ``allow_zero``) or a non-finite one; traced values are not checked (inside ``jit``)."""
    if not _concrete(value):
        return
    v = np.asarray(value, dtype=np.float64)
    bad = ~np.isfinite(v) | ((v < 0) if allow_zero else (v <= 0))
    if np.any(bad):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}; got {v.ravel()[np.flatnonzero(bad.ravel())[:3]].tolist()}.")


def normal_logpdf(x: Array, mean: Array, var: Array) -> Array:
    """Elementwise univariate normal log density ``log N(x; mean, var)``."""
    return -0.5 * (_LOG_2PI + jnp.log(var) + (x - mean) ** 2 / var)


def mvn_logpdf(x: Array, mean: Array, cov: Array) -> Array:
    """``log N(x; mean, cov)`` through one Cholesky factor.

    Args:
      x: ``[D]`` or ``[N, D]`` (one factorisation serves the whole batch).
      mean: ``[D]``.
      cov: ``[D, D]`` symmetric positive definite.

    Returns:
      ``[]`` or ``[N]`` log densities.
    """
    chol = jnp.linalg.cholesky(cov)
    if _concrete((cov, chol)) and not bool(jnp.all(jnp.isfinite(chol))):
        raise ValueError("`cov` is not symmetric positive definite (its Cholesky factorisation failed).")
    d = cov.shape[-1]
    resid = jnp.reshape(x, (-1, d)) - mean[None, :]
    z = solve_triangular(chol, resid.T, lower=True)  # [D, N]
    out = -0.5 * (d * _LOG_2PI + jnp.sum(z**2, axis=0)) - jnp.sum(jnp.log(jnp.diagonal(chol)))
    return out.reshape(x.shape[:-1])


def mvn_conditional(x: Array, mask: Array, mean: Array, cov: Array) -> tuple[Array, Array]:
    """Means and variances of every ``x_j`` given the observed ``x_O``.

    Args:
      x: ``[D]``; only observed entries are read.
      mask: ``[D] bool``, True = observed.
      mean: ``[D]``.
      cov: ``[D, D]``.

    Returns:
      ``(cond_mean [D], cond_var [D])``: for hidden ``j`` the moments of
      ``p(x_j | x_O)``; for observed ``j`` the value is ``x_j`` with variance 0
      (returned as computed, i.e. ~0; do not take its log).
    """
    m = mask.astype(cov.dtype)
    a = cov * m[:, None] * m[None, :] + jnp.diag(1.0 - m)
    chol = jnp.linalg.cholesky(a)
    v = solve_triangular(chol, m[:, None] * cov, lower=True)  # L^{-1} diag(m) S
    resid = m * (x - mean)
    alpha = cho_solve((chol, True), resid)
    cond_mean = mean + cov @ (m * alpha)
    cond_var = jnp.diagonal(cov) - jnp.sum(v**2, axis=0)
    return cond_mean, cond_var


def mvn_conditional_logpdf(mean: Array, cov: Array) -> CondLogpdf:
    """The conditional log-density callable of ``N(mean, cov)`` for the MPT estimator.

    Args:
      mean: ``[D]``.
      cov: ``[D, D]``.

    Returns:
      ``cond_logpdf(x [D], mask [D] bool) -> [D]``: ``log p(x_j | x_O)`` at hidden
      ``j`` and 0 at observed ones.
    """

    def cond_logpdf(x: Array, mask: Array) -> Array:
        mu, var = mvn_conditional(x, mask, mean, cov)
        # Observed variances are ~0: substitute 1 so the discarded branch stays finite.
        safe_var = jnp.where(mask, 1.0, var)
        return jnp.where(mask, 0.0, normal_logpdf(x, mu, safe_var))

    # Vmapped over masks, the Cholesky and solves become batched jaxlib LAPACK kernels, each of which
    # blocks an XLA pool thread until its parts finish; two independent ones (the two solves, or
    # their transposes in a backward pass) running at once deadlock a 2-thread pool (issue 20).
    # cumulative_mpt(chunk_size="auto") therefore maps such callables over masks one at a time.
    cond_logpdf.batched_lapack = True
    return cond_logpdf


def mvn_mask_terms(masks: Array, cov: Array) -> tuple[Array, Array]:
    """Mask-only parts of the conditionals of ``N(mu, cov)`` for ``[S, D]`` masks, in one batched call.

    Returns ``(bt [S, D, D], var [S, D])`` with ``E[x_j | x_O] - mu_j = ((x - mu) @ bt)_j`` and
    ``var_j = Var[x_j | x_O]`` for hidden ``j`` (the same padded-Cholesky construction as
    :func:`mvn_conditional`): ``bt = diag(m) A^{-1} diag(m) S``.
    """
    m = masks.astype(cov.dtype)  # [S, D]
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype)[None]
    a = cov[None] * m[:, :, None] * m[:, None, :] + eye * (1.0 - m)[:, None, :]
    ms = m[:, :, None] * cov[None]  # diag(m) S
    z = cho_solve((jnp.linalg.cholesky(a), True), ms)  # A^{-1} diag(m) S
    bt = m[:, :, None] * z
    var = jnp.diagonal(cov)[None] - jnp.sum(ms * z, axis=1)
    return bt, var


def mvn_mask_scores(xc: Array, masks: Array, cov: Array) -> Array:
    """Per-mask MPT scores ``[N, S]`` of centred ``xc [N, D]``: every mask's conditional means in one matmul."""
    bt, var = mvn_mask_terms(masks, cov)
    h = 1.0 - masks.astype(cov.dtype)
    safe_var = jnp.where(h > 0, var, 1.0)
    resid = xc[:, None, :] - jnp.einsum("nd,sde->nse", xc, bt)  # [N, S, D]
    lp = -0.5 * (_LOG_2PI + jnp.log(safe_var)[None] + resid**2 / safe_var[None])
    return jnp.sum(lp * h[None], axis=-1) / jnp.sum(h, axis=-1)[None]
