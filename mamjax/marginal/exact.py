"""Exact marginals and conditionals of a small, fully enumerated distribution.

For D * log2(K) up to ~20 the K^D states fit in memory and every marginal is a
``logsumexp`` over the states that agree with ``x`` on S. The functions here have the
same signatures as the networks (``apply(params, x, mask)``) with ``params`` the
table of log-probabilities, so an exact, self-consistent pair can stand in for a
trained MaM and AO-ARM (ground truth in tests, Ising KL evaluation).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

Array = jax.Array

__all__ = ["enumerate_states", "table_log_marginal", "table_conditional_logits", "normalize_table",
           "kl_divergence"]

_NEG = -1e30


def enumerate_states(num_dims: int, num_classes: int = 2) -> np.ndarray:
    """All K^D states, ``[K^D, D] int32``, row r is the base-K digits of r (first dim most significant)."""
    if num_classes ** num_dims > 2 ** 24:
        raise ValueError(f"K^D = {num_classes}^{num_dims} states is too many to enumerate.")
    return np.array(list(itertools.product(range(num_classes), repeat=num_dims)), np.int32).reshape(-1, num_dims)


def normalize_table(log_weights: Array) -> Array:
    """``log p = log w - logsumexp(log w)`` over the enumerated states."""
    return log_weights - logsumexp(log_weights)


def table_log_marginal(table: tuple[Array, Array], x: Array, mask: Array) -> Array:
    """Exact ``log p(x_S)``: ``table = (log_probs [N], states [N, D])``; ``x, mask [B, D]`` -> ``[B]``."""
    log_probs, states = table
    agree = jnp.all((states[None, :, :] == x[:, None, :]) | ~mask[:, None, :], axis=-1)  # [B, N]
    return logsumexp(jnp.where(agree, log_probs[None, :], _NEG), axis=-1)


def table_conditional_logits(table: tuple[Array, Array], x: Array, mask: Array, num_classes: int = 2) -> Array:
    """Exact conditional logits ``log p(x_S, x_i = v)`` for every position i and value v: ``[B, D, K]``.

    ``log_softmax`` over v gives ``log p(x_i = v | x_S)`` for hidden i.
    """
    num_dims = x.shape[-1]

    def at(i, v):
        xi = x.at[:, i].set(v)
        mi = mask.at[:, i].set(True)
        return table_log_marginal(table, xi, mi)

    values = jnp.arange(num_classes, dtype=x.dtype)  # x's dtype: no int64 -> int32 scatter under x64
    grid = jax.vmap(lambda i: jax.vmap(lambda v: at(i, v))(values))(jnp.arange(num_dims))
    return jnp.transpose(grid, (2, 0, 1))  # [D, K, B] -> [B, D, K]


def kl_divergence(log_p: Array, log_q: Array) -> Array:
    """``KL(p || q) = sum p (log p - log q)`` over enumerated, normalized log-probabilities."""
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q))
