"""Bernoulli log-likelihood from logits, stable for large |logits|."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["bernoulli_log_prob"]


def bernoulli_log_prob(logits: Array, x: Array) -> Array:
    """Elementwise ``log Bern(x; sigmoid(logits))`` = ``-softplus(-l) x - softplus(l) (1 - x)``.

    Args:
      logits: ``[...]`` real logits.
      x: ``[...]`` values in {0, 1} (floats allowed; broadcast against ``logits``);
        checked eagerly when concrete (``ValueError`` for e.g. grey levels 0..255),
        not when traced.
    """
    if not isinstance(x, jax.core.Tracer):
        v = np.asarray(x)
        if v.size and not np.all((v == 0) | (v == 1)):
            raise ValueError(f"`x` must hold binary values in {{0, 1}}; got values in [{v.min()}, {v.max()}] "
                             "(binarize grey levels first).")
    x = jnp.asarray(x, jnp.result_type(logits, float))
    return -(x * jax.nn.softplus(-logits) + (1.0 - x) * jax.nn.softplus(logits))
