"""The multi-resolution glimpse sensor of recurrent attention models (Mnih et al., 2014).

A glimpse at a location is a stack of ``num_scales`` square patches centred on it:
scale ``s`` covers ``patch * 2**s`` pixels per side and is average-pooled by ``2**s``
down to ``patch x patch``. Pixels outside the image read as zero. Locations are
*discrete*: integer pixel centres taken from a regular grid of candidates
(:func:`location_grid`), so a policy over locations is a categorical distribution.

Everything is jittable: the image is zero-padded once and each scale is one
``lax.dynamic_slice``; vmap over the batch and over K samples.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["location_grid", "normalized_locations", "extract_glimpse", "glimpse_size"]


def location_grid(image_size: int, grid_size: int) -> np.ndarray:
    """Centres of a ``grid_size x grid_size`` grid of candidate glimpse locations.

    Cell ``(i, j)`` of an even partition of the image has centre
    ``(floor((i + 1/2) * image_size / grid_size), floor((j + 1/2) * image_size / grid_size))``.
    Location index ``a = i * grid_size + j``.

    Args:
      image_size: side of the (square) image in pixels.
      grid_size: number of candidate centres per side.

    Returns:
      int32 [grid_size**2, 2] (row, col) pixel centres.
    """
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"`image_size` must be a positive int; got {image_size!r}.")
    if not isinstance(grid_size, (int, np.integer)) or not 1 <= grid_size <= image_size:
        raise ValueError(f"`grid_size` must be an int in [1, image_size={image_size}]; got {grid_size!r}.")
    c = np.floor((np.arange(grid_size) + 0.5) * image_size / grid_size).astype(np.int32)
    rows, cols = np.meshgrid(c, c, indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=-1)


def normalized_locations(centres: np.ndarray, image_size: int) -> np.ndarray:
    """Maps pixel centres to [-1, 1] coordinates (the location input of the glimpse network).

    Args:
      centres: int [..., 2] pixel centres.
      image_size: image side.

    Returns:
      float32 [..., 2], ``2 * (c + 1/2) / image_size - 1``.
    """
    return (2.0 * (np.asarray(centres, np.float32) + 0.5) / image_size - 1.0).astype(np.float32)


def glimpse_size(patch: int, num_scales: int) -> int:
    """Number of values in one glimpse: ``num_scales * patch**2``."""
    return num_scales * patch * patch


def extract_glimpse(image: Array, centre: Array, *, patch: int, num_scales: int) -> Array:
    """Multi-resolution glimpse of one image.

    Scale ``s`` is the window of side ``L = patch * 2**s`` whose top-left pixel is
    ``centre - L // 2`` (zero outside the image), average-pooled over non-overlapping
    ``2**s x 2**s`` blocks.

    Args:
      image: [H, W] float image.
      centre: int [2] (row, col) pixel centre (may be traced).
      patch: side of every returned patch.
      num_scales: number of scales.

    Returns:
      [num_scales, patch, patch] float, finest scale first.
    """
    if image.ndim != 2:
        raise ValueError(f"`image` must be [H, W]; got shape {image.shape}.")
    if patch < 1 or num_scales < 1:
        raise ValueError(f"`patch` and `num_scales` must be >= 1; got {patch}, {num_scales}.")
    largest = patch * 2 ** (num_scales - 1)
    pad = largest  # enough for any window whose centre lies inside the image
    padded = jnp.pad(image, pad)
    centre = jnp.asarray(centre, jnp.int32)
    outs = []
    for s in range(num_scales):
        side, f = patch * 2 ** s, 2 ** s
        start = centre - side // 2 + pad
        win = jax.lax.dynamic_slice(padded, (start[0], start[1]), (side, side))
        outs.append(win.reshape(patch, f, patch, f).mean(axis=(1, 3)))
    return jnp.stack(outs)
