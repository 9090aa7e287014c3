"""Likelihood metrics: NLL in nats and bits/dim, importance-weighted bounds, running means."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

Array = jax.Array

__all__ = ["nats_to_bits_per_dim", "bits_per_dim", "log_mean_exp", "iw_bound", "RunningMean", "format_nll"]


def nats_to_bits_per_dim(nll_nats, num_dims: int):
    """Converts a per-example NLL in nats to bits per dimension: ``nll / (D ln 2)``."""
    if isinstance(num_dims, bool) or not isinstance(num_dims, (int, np.integer)) or num_dims < 1:
        raise ValueError(f"`num_dims` must be an int >= 1; got {num_dims!r}.")
    return nll_nats / (num_dims * math.log(2.0))


def bits_per_dim(log_prob, num_dims: int):
    """Mean negative ``log_prob`` (nats, per example) in bits per dimension."""
    return nats_to_bits_per_dim(-jnp.mean(log_prob), num_dims)


def format_nll(nll: float, *, digits: int = 2, floor: float = 0.0, floor_name: str = "0, discrete data") -> str:
    """An NLL for a printed table, flagged when it is impossible rather than printed plainly.

    The NLL of discrete data (binary pixels, tokens) is ``>= 0``; where the data's entropy
    is known (e.g. an exact ``log Z``), pass it as ``floor``. A value below ``floor`` means a
    bug or an unnormalised score, and is printed as e.g. ``"-3.10 (impossible: < 0, discrete data)"``.

    Args:
      nll: the negative log-likelihood (nats or bits/dim; the same unit as ``floor``).
      digits: decimals printed.
      floor: the smallest possible value.
      floor_name: how the floor is named in the flag.
    """
    value = float(nll)
    if not math.isfinite(value):
        return f"{value} (non-finite)"
    text = f"{value:.{digits}f}"
    return f"{text} (impossible: < {floor_name})" if value < float(floor) else text


def log_mean_exp(x: Array, axis: int | None = None, keepdims: bool = False) -> Array:
    """``log(mean(exp(x)))`` without overflow: ``logsumexp(x) - log(n)``."""
    x = jnp.asarray(x)
    n = x.size if axis is None else x.shape[axis]
    if n == 0:
        raise ValueError(f"`x` has no entries along axis {axis} (shape {x.shape}); the mean of nothing is undefined.")
    return logsumexp(x, axis=axis, keepdims=keepdims) - jnp.log(n)


def iw_bound(log_weights: Array, axis: int = -1) -> Array:
    """Importance-weighted lower bound on ``log p(x)`` from K log-weights.

    ``L_K = log (1/K) sum_k w_k`` with ``log w_k = log p(x, z_k) - log q(z_k | x)``,
    ``z_k ~ q`` (Burda et al., 2016). ``L_1`` is the ELBO; ``L_K`` rises with K.

    Args:
      log_weights: ``[..., K, ...]`` log importance weights.
      axis: the K axis.
    """
    return log_mean_exp(log_weights, axis=axis)


class RunningMean:
    """Running means of scalar metrics (host side, float64, order independent of batching)."""

    def __init__(self):
        self._sum: dict[str, float] = {}
        self._count: dict[str, float] = {}

    def update(self, metrics: dict, weight: float = 1.0) -> None:
        for k, v in metrics.items():
            self._sum[k] = self._sum.get(k, 0.0) + float(np.asarray(v, np.float64)) * weight
            self._count[k] = self._count.get(k, 0.0) + weight

    def result(self) -> dict[str, float]:
        return {k: self._sum[k] / self._count[k] for k in self._sum}

    def reset(self) -> None:
        self._sum.clear()
        self._count.clear()
