"""Gaussian-process regression: kernels, exact log marginal likelihood, conditionals.

The ``D`` observations ``y = f(t) + eps`` at inputs ``t`` are one draw of
``N(mean, K(t, t) + sigma^2 I)``, so the LML is a multivariate normal log
density (Cholesky) and the masked conditionals are the usual GP predictive at
hidden inputs from observed ones (:mod:`mamjax.lml.gaussian`). Compute exact
references in float64 (``with jax.enable_x64(True):``).

Kernels, with ``r = |t - t'| / lengthscale`` and amplitude ``variance``:
``rbf`` ``v exp(-r^2 / 2)``; ``matern12`` ``v exp(-r)``;
``matern32`` ``v (1 + sqrt3 r) exp(-sqrt3 r)``;
``matern52`` ``v (1 + sqrt5 r + 5 r^2 / 3) exp(-sqrt5 r)``.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp

from mamjax.lml.gaussian import check_positive, mvn_conditional_logpdf, mvn_logpdf

Array = jax.Array
CondLogpdf = Callable[[Array, Array], Array]

__all__ = ["KERNELS", "get_kernel", "kernel_matrix", "gp_cov", "gp_lml", "gp_cond_logpdf"]


def _sq_dist(t1: Array, t2: Array) -> Array:
    t1 = t1[:, None] if t1.ndim == 1 else t1
    t2 = t2[:, None] if t2.ndim == 1 else t2
    return jnp.sum((t1[:, None, :] - t2[None, :, :]) ** 2, axis=-1)


def _safe_sqrt(r2: Array) -> Array:
    # sqrt has an infinite derivative at 0 (the diagonal): keep gradients finite.
    pos = r2 > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, r2, 1.0)), 0.0)


def rbf(r2: Array) -> Array:
    """Squared-exponential profile of the squared scaled distance."""
    return jnp.exp(-0.5 * r2)


def matern12(r2: Array) -> Array:
    return jnp.exp(-_safe_sqrt(r2))


def matern32(r2: Array) -> Array:
    r = math.sqrt(3.0) * _safe_sqrt(r2)
    return (1.0 + r) * jnp.exp(-r)


def matern52(r2: Array) -> Array:
    r = math.sqrt(5.0) * _safe_sqrt(r2)
    return (1.0 + r + r**2 / 3.0) * jnp.exp(-r)


KERNELS: dict[str, Callable[[Array], Array]] = {
    "rbf": rbf, "matern12": matern12, "matern32": matern32, "matern52": matern52,
}


def get_kernel(name: str) -> Callable[[Array], Array]:
    """A stationary kernel profile by name: one of ``rbf``, ``matern12``, ``matern32``, ``matern52``."""
    try:
        return KERNELS[name]
    except KeyError:
        raise ValueError(f"`kernel` must be one of {sorted(KERNELS)}; got {name!r}.") from None


def kernel_matrix(t1: Array, t2: Array, *, kernel: str = "rbf", lengthscale=1.0, variance=1.0) -> Array:
    """``K(t1, t2)``: inputs ``[N]`` or ``[N, d]`` and ``[M]`` or ``[M, d]`` -> ``[N, M]``.

    ``lengthscale`` is a scalar or a ``[d]`` vector (ARD): each input dimension is divided by its
    own lengthscale before the distance is taken.
    """
    profile = get_kernel(kernel)
    check_positive(lengthscale, "lengthscale")
    check_positive(variance, "variance")
    t1 = t1[:, None] if t1.ndim == 1 else t1
    t2 = t2[:, None] if t2.ndim == 1 else t2
    ls = jnp.asarray(lengthscale)
    if ls.ndim > 1 or (ls.ndim == 1 and ls.shape[0] not in (1, t1.shape[1])):
        raise ValueError(f"`lengthscale` must be a scalar or have shape [d={t1.shape[1]}]; got {tuple(ls.shape)}.")
    ls = ls.reshape(1, -1) if ls.ndim == 1 else ls
    return variance * profile(_sq_dist(t1 / ls, t2 / ls))


def gp_cov(t: Array, *, kernel: str = "rbf", lengthscale=1.0, variance=1.0, noise_var=1e-2) -> Array:
    """Covariance of the noisy observations, ``K(t, t) + sigma^2 I``: ``[D, D]``."""
    check_positive(noise_var, "noise_var", allow_zero=True)
    k = kernel_matrix(t, t, kernel=kernel, lengthscale=lengthscale, variance=variance)
    return k + noise_var * jnp.eye(k.shape[0], dtype=k.dtype)


def gp_lml(y: Array, t: Array, *, kernel: str = "rbf", lengthscale=1.0, variance=1.0, noise_var=1e-2,
           mean=0.0) -> Array:
    """GP regression log marginal likelihood ``log N(y; mean, K + sigma^2 I)``.

    Args:
      y: ``[D]`` observations (or ``[N, D]``: N independent draws at the same inputs).
      t: ``[D]`` or ``[D, d]`` inputs.
      kernel, lengthscale, variance, noise_var: hyperparameters (scalars, differentiable).
      mean: constant (or ``[D]``) prior mean.

    Returns:
      ``[]`` or ``[N]``.
    """
    cov = gp_cov(t, kernel=kernel, lengthscale=lengthscale, variance=variance, noise_var=noise_var)
    return mvn_logpdf(y, jnp.broadcast_to(jnp.asarray(mean, cov.dtype), cov.shape[:1]), cov)


def gp_cond_logpdf(t: Array, *, kernel: str = "rbf", lengthscale=1.0, variance=1.0, noise_var=1e-2,
                   mean=0.0) -> CondLogpdf:
    """``cond_logpdf(y [D], mask) -> [D]``: GP predictive log densities of hidden observations."""
    cov = gp_cov(t, kernel=kernel, lengthscale=lengthscale, variance=variance, noise_var=noise_var)
    return mvn_conditional_logpdf(jnp.broadcast_to(jnp.asarray(mean, cov.dtype), cov.shape[:1]), cov)
