"""Bernoulli log-likelihood from logits, stable for large |logits|."""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["bernoulli_log_prob"]


def bernoulli_log_prob(logits: Array, x: Array) -> Array:
    """Elementwise ``log Bern(x; sigmoid(logits))`` = ``-softplus(-l) x - softplus(l) (1 - x)``.

    Args:
      logits: ``[...]`` real logits.
      x: ``[...]`` values in {0, 1} (floats allowed; broadcast against ``logits``).
    """
    x = jnp.asarray(x, jnp.result_type(logits, float))
    return -(x * jax.nn.softplus(-logits) + (1.0 - x) * jax.nn.softplus(logits))
