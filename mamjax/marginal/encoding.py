"""Network inputs for partially observed categorical data.

A partial observation is a pair ``(x, mask)``: ``x [..., D] int`` with values in
``{0, ..., K-1}`` and ``mask [..., D] bool`` (True = observed, see
:mod:`mamjax.masks`). Hidden entries of ``x`` may hold any value: they are never
read. The MLP backbones see the one-hot of ``x`` with one extra "?" channel set
where the entry is hidden, flattened to ``D * (K + 1)`` features.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mamjax import masks as masks_lib

Array = jax.Array

__all__ = ["encode_onehot", "check_partial", "censor"]


def check_partial(x: Array, mask: Array, num_dims: int | None = None) -> None:
    """Raises a clear error if ``(x, mask)`` is not a valid partial observation."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"`x` must be an integer array of category ids; got dtype {x.dtype}.")
    masks_lib.check_mask(mask, "mask", x.shape)
    if num_dims is not None and x.shape[-1] != num_dims:
        raise ValueError(f"`x` must have last dimension D = {num_dims}; got shape {x.shape}.")


def encode_onehot(x: Array, mask: Array, num_classes: int) -> Array:
    """One-hot of ``x`` plus a "?" channel where hidden, flattened.

    Args:
      x: ``[..., D] int`` category ids in ``[0, K)``.
      mask: ``[..., D] bool``, True = observed.
      num_classes: K.

    Returns:
      ``[..., D * (K + 1)] float32``: for each position either ``onehot(x_i)`` followed
      by 0 (observed) or K zeros followed by 1 (hidden).
    """
    masks_lib.check_mask(mask, "mask")  # an int mask would make the "?" channel ~1 = -2
    onehot = jax.nn.one_hot(x, num_classes, dtype=jnp.float32) * mask[..., None].astype(jnp.float32)
    unknown = (~mask)[..., None].astype(jnp.float32)
    feats = jnp.concatenate([onehot, unknown], axis=-1)
    return feats.reshape(*feats.shape[:-2], feats.shape[-2] * feats.shape[-1])


def censor(x: Array, mask: Array, fill: int = 0) -> Array:
    """Sets hidden entries of ``x`` to ``fill`` (for display / canonical form)."""
    return jnp.where(mask, x, jnp.asarray(fill, x.dtype))
