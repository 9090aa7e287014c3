"""Vector quantization with the straight-through estimator (van den Oord et al., 2017).

``z_q = z + stop_gradient(e_k - z)`` with ``k = argmin_j ||z - e_j||^2``: the forward
pass sees the codebook vector, the backward pass copies the gradient to the
encoder output unchanged (identity Jacobian). The codebook learns from
``||sg(z) - e_k||^2`` and the encoder is kept close by the commitment term
``beta ||z - sg(e_k)||^2``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from mamjax import masks as masks_lib

Array = jax.Array

__all__ = ["Quantized", "nearest_codes", "lookup", "quantize", "ema_update"]


class Quantized(NamedTuple):
    """Output of :func:`quantize`.

    Attributes:
      z_q: ``[..., d]`` straight-through quantized vectors (forward = codebook rows).
      codes: ``[...] int32`` code indices.
      codebook_loss: scalar ``mean ||sg(z) - e||^2``.
      commitment_loss: scalar ``mean ||z - sg(e)||^2`` (not yet multiplied by beta).
      perplexity: scalar ``exp(entropy)`` of the code usage in this batch.
    """

    z_q: Array
    codes: Array
    codebook_loss: Array
    commitment_loss: Array
    perplexity: Array


def nearest_codes(z: Array, codebook: Array) -> Array:
    """Index of the nearest codebook row for every vector.

    Args:
      z: ``[..., d]`` vectors.
      codebook: ``[K, d]``.

    Returns:
      ``[...] int32``.
    """
    if codebook.ndim != 2 or z.shape[-1] != codebook.shape[1]:
        raise ValueError(f"`codebook` must be [K, {z.shape[-1]}]; got shape {codebook.shape}.")
    c2 = jnp.sum(codebook**2, -1).reshape((1,) * (z.ndim - 1) + (-1,))
    d2 = jnp.sum(z**2, -1, keepdims=True) - 2.0 * z @ codebook.T + c2
    return jnp.argmin(d2, axis=-1).astype(jnp.int32)


def lookup(codes: Array, codebook: Array) -> Array:
    """Codebook rows ``e_codes``: ``[...] int -> [..., d]``; ids in ``[0, K)`` checked eagerly when concrete."""
    masks_lib.check_token_ids(codes, codebook.shape[0], "codes")
    return jnp.take(codebook, codes, axis=0)


def quantize(z: Array, codebook: Array) -> Quantized:
    """Quantizes ``z`` to its nearest codebook rows with a straight-through gradient.

    Args:
      z: ``[..., d]`` encoder outputs.
      codebook: ``[K, d]``.

    Returns:
      :class:`Quantized`.
    """
    codes = nearest_codes(jax.lax.stop_gradient(z), codebook)
    e = lookup(codes, codebook)
    codebook_loss = jnp.mean((jax.lax.stop_gradient(z) - e) ** 2)
    commitment_loss = jnp.mean((z - jax.lax.stop_gradient(e)) ** 2)
    z_q = z + jax.lax.stop_gradient(e - z)
    usage = jnp.mean(jax.nn.one_hot(codes, codebook.shape[0]).reshape(-1, codebook.shape[0]), axis=0)
    perplexity = jnp.exp(-jnp.sum(usage * jnp.log(jnp.maximum(usage, 1e-10))))
    return Quantized(z_q, codes, codebook_loss, commitment_loss, perplexity)


def ema_update(count: Array, total: Array, z: Array, codes: Array, decay: float, eps: float = 1e-5):
    """EMA codebook update (van den Oord et al. 2017, appendix; the official TimeVQVAE ``decay`` 0.8).

    ``N_k <- decay N_k + (1 - decay) n_k``, ``m_k <- decay m_k + (1 - decay) sum_{i: k_i = k} z_i`` and
    ``e_k = m_k / N~_k`` with the Laplace-smoothed count ``N~_k = (N_k + eps) / (N + K eps) N``.

    Args:
      count: ``[K]`` running counts ``N_k``.
      total: ``[K, d]`` running sums ``m_k``.
      z: ``[..., d]`` encoder outputs (gradients stopped here).
      codes: ``[...] int`` their nearest codes.
      decay: in ``[0, 1)``.

    Returns:
      ``(count [K], total [K, d], codebook [K, d])``.
    """
    k = count.shape[0]
    z = jax.lax.stop_gradient(z).reshape(-1, z.shape[-1])
    onehot = jax.nn.one_hot(codes.reshape(-1), k, dtype=z.dtype)  # [M, K]
    count = decay * count + (1 - decay) * onehot.sum(0)
    total = decay * total + (1 - decay) * onehot.T @ z
    n = count.sum()
    smoothed = (count + eps) / (n + k * eps) * n
    return count, total, total / smoothed[:, None]
