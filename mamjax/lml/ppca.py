"""Probabilistic PCA: exact log marginal likelihood and latent-space conditionals.

Model (Tipping & Bishop, 1999): ``z ~ N(0, I_K)``, ``x = W z + mu + eps``,
``eps ~ N(0, sigma^2 I_D)``; marginally ``x ~ N(mu, W W^T + sigma^2 I)``.

The conditionals used by masked pre-training go through the latent posterior
given the observed coordinates, ``O(D K^2)`` per mask instead of the
``O(D^3)`` generic Gaussian route (:func:`mamjax.lml.gaussian.mvn_conditional`,
which the tests use as an independent check):

    z | x_O ~ N(m, C),  C = (I + W_O^T W_O / sigma^2)^{-1},  m = C W_O^T (x_O - mu_O) / sigma^2
    x_j | x_O ~ N(w_j^T m + mu_j,  w_j^T C w_j + sigma^2).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve

from mamjax.lml.gaussian import check_positive, mvn_logpdf, normal_logpdf

Array = jax.Array
CondLogpdf = Callable[[Array, Array], Array]

__all__ = ["ppca_cov", "ppca_lml", "ppca_conditional", "ppca_cond_logpdf", "ppca_sample", "ppca_mle"]


def _mean(w: Array, mean: Array | None) -> Array:
    return jnp.zeros(w.shape[0], w.dtype) if mean is None else mean


def ppca_cov(w: Array, noise_var) -> Array:
    """Marginal covariance ``W W^T + sigma^2 I``: ``w [D, K]`` -> ``[D, D]``."""
    return w @ w.T + noise_var * jnp.eye(w.shape[0], dtype=w.dtype)


def ppca_lml(x: Array, w: Array, noise_var, mean: Array | None = None) -> Array:
    """Exact ``log p(x) = log N(x; mu, W W^T + sigma^2 I)``.

    Args:
      x: ``[D]`` or ``[N, D]``.
      w: ``[D, K]`` loadings.
      noise_var: sigma^2 > 0, scalar.
      mean: ``[D]`` or None (zero).

    Returns:
      ``[]`` or ``[N]``.
    """
    check_positive(noise_var, "noise_var")
    return mvn_logpdf(x, _mean(w, mean), ppca_cov(w, noise_var))


def ppca_conditional(x: Array, mask: Array, w: Array, noise_var, mean: Array | None = None) -> tuple[Array, Array]:
    """Moments of ``p(x_j | x_O)`` for every j through the latent posterior.

    Args:
      x: ``[D]``; mask: ``[D] bool`` (True = observed); w: ``[D, K]``; noise_var: scalar.

    Returns:
      ``(mean [D], var [D])`` of the predictive of each coordinate given ``x_O``
      (for observed j this is the predictive *excluding* the observation itself).
    """
    mu = _mean(w, mean)
    k = w.shape[1]
    wo = w * mask.astype(w.dtype)[:, None]
    eye = jnp.eye(k, dtype=w.dtype)
    # C = (I + W_O^T W_O / s2)^{-1} depends on the mask only (K x K, eigenvalues in (0, 1]);
    # forming it once turns the per-example work into matrix-vector products under vmap.
    c = cho_solve((jnp.linalg.cholesky(eye + wo.T @ wo / noise_var), True), eye)
    m = c @ (wo.T @ (x - mu)) / noise_var  # [K]
    return w @ m + mu, jnp.sum(w.T * (c @ w.T), axis=0) + noise_var


def ppca_cond_logpdf(w: Array, noise_var, mean: Array | None = None) -> CondLogpdf:
    """``cond_logpdf(x, mask) -> [D]`` for the MPT estimator (0 at observed coordinates)."""

    check_positive(noise_var, "noise_var")

    def cond_logpdf(x: Array, mask: Array) -> Array:
        mu, var = ppca_conditional(x, mask, w, noise_var, mean)
        return jnp.where(mask, 0.0, normal_logpdf(x, mu, var))

    return cond_logpdf


def ppca_sample(key: jax.Array, w: Array, noise_var, num: int, mean: Array | None = None) -> Array:
    """``num`` draws ``x = W z + mu + sigma eps``: ``[num, D]``."""
    kz, ke = jax.random.split(key)
    d, k = w.shape
    z = jax.random.normal(kz, (num, k), w.dtype)
    eps = jax.random.normal(ke, (num, d), w.dtype)
    return z @ w.T + _mean(w, mean)[None, :] + jnp.sqrt(noise_var) * eps


def ppca_mle(x: Array, latent_dim: int, noise_var) -> Array:
    """Closed-form maximiser of the zero-mean PPCA LML with fixed noise (Tipping & Bishop, 1999).

    With ``S = X^T X / N`` and its top eigenpairs ``(lambda_k, u_k)``, ``W = U_K diag(max(lambda_k -
    sigma^2, 0))^{1/2}`` (unique up to a right rotation, so compare ``W W^T``).

    Args:
      x: ``[N, D]`` data; latent_dim: K; noise_var: ``sigma^2 > 0``.

    Returns:
      ``[D, K]`` loadings.
    """
    x = jnp.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"`x` must have shape [N, D]; got {tuple(x.shape)}.")
    if not 1 <= latent_dim <= x.shape[1]:
        raise ValueError(f"`latent_dim` must lie in [1, D={x.shape[1]}]; got {latent_dim}.")
    evals, evecs = jnp.linalg.eigh(x.T @ x / x.shape[0])  # ascending
    top = evals[::-1][:latent_dim]
    return evecs[:, ::-1][:, :latent_dim] * jnp.sqrt(jnp.maximum(top - noise_var, 0.0))[None, :]
