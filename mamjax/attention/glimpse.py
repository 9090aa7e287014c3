"""The multi-resolution glimpse sensor of recurrent attention models (Mnih et al., 2014).

A glimpse at a location is a stack of ``num_scales`` square patches centred on it:
scale ``s`` covers ``patch * 2**s`` pixels per side and is average-pooled by ``2**s``
down to ``patch x patch``. Pixels outside the image read as zero. Locations are
*discrete*: integer pixel centres taken from a regular grid of candidates
(:func:`location_grid`), so a policy over locations is a categorical distribution.

Everything is jittable. :func:`extract_glimpse` is the one-image reference (the image is
zero-padded once and each scale is one ``lax.dynamic_slice``). Two batched forms give the same
numbers at a fraction of the cost (measured in ``benchmarks/attention_bench.py``: extracting the
glimpses, not the networks, dominated a training step):

* :func:`extract_glimpses`: ``N`` glimpses at traced centres from a batch padded **once**
  (:func:`pad_images`), one windowed gather per scale -- vmapping :func:`extract_glimpse` over
  trajectories instead copies and pads a whole image per trajectory;
* :func:`grid_glimpses`: the glimpses of a whole product grid of centres as two small matmuls
  per scale with constant pooling matrices (``patch = R_i X R_j^T``), no gather at all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["location_grid", "normalized_locations", "extract_glimpse", "glimpse_size", "pad_images",
           "extract_glimpses", "pooling_matrices", "grid_glimpses"]


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


def _check_sensor(patch: int, num_scales: int) -> None:
    if patch < 1 or num_scales < 1:
        raise ValueError(f"`patch` and `num_scales` must be >= 1; got {patch}, {num_scales}.")


def pad_images(images: Array, *, patch: int, num_scales: int) -> Array:
    """Zero-pads [B, H, W] images by the largest window side on every edge (once per batch).

    Returns:
      [B, H + 2P, W + 2P] with ``P = patch * 2**(num_scales - 1)``, the input of :func:`extract_glimpses`.
    """
    if images.ndim != 3:
        raise ValueError(f"`images` must be [B, H, W]; got shape {images.shape}.")
    _check_sensor(patch, num_scales)
    pad = patch * 2 ** (num_scales - 1)
    return jnp.pad(images, ((0, 0), (pad, pad), (pad, pad)))


def extract_glimpses(padded: Array, image_index: Array, centres: Array, *, patch: int, num_scales: int) -> Array:
    """``N`` glimpses at traced centres, equal to :func:`extract_glimpse` of ``images[image_index[n]]``.

    Args:
      padded: [B, H + 2P, W + 2P] from :func:`pad_images` (same ``patch`` / ``num_scales``).
      image_index: int [N], which image each glimpse looks at.
      centres: int [N, 2] (row, col) pixel centres (may be traced).

    Returns:
      [N, num_scales, patch, patch], finest scale first.
    """
    _check_sensor(patch, num_scales)
    if padded.ndim != 3:
        raise ValueError(f"`padded` must be [B, H + 2P, W + 2P]; got shape {padded.shape}.")
    if centres.shape != (*image_index.shape, 2) or image_index.ndim != 1:
        raise ValueError(f"`image_index` must be [N] and `centres` [N, 2]; got {image_index.shape}, {centres.shape}.")
    pad = patch * 2 ** (num_scales - 1)
    centres = jnp.asarray(centres, jnp.int32)
    image_index = jnp.asarray(image_index, jnp.int32)
    outs = []
    for s in range(num_scales):
        side, f = patch * 2 ** s, 2 ** s
        start = centres - side // 2 + pad
        # One windowed gather over the padded batch: no per-glimpse copy of the whole image.
        win = jax.vmap(lambda i, r, c: jax.lax.dynamic_slice(padded, (i, r, c), (1, side, side))[0])(
            image_index, start[:, 0], start[:, 1])
        outs.append(win.reshape(-1, patch, f, patch, f).mean(axis=(2, 4)))
    return jnp.stack(outs, axis=1)


def pooling_matrices(centres_1d, size: int, *, patch: int, num_scales: int) -> np.ndarray:
    """Constant matrices ``R[s, i]`` [patch, size] with ``(R[s, i] @ v)[p]`` the mean of the ``2**s``
    pixels of block ``p`` of the scale-``s`` window centred on ``centres_1d[i]`` (zeros outside ``[0, size)``).

    Returns:
      float32 [num_scales, len(centres_1d), patch, size].
    """
    _check_sensor(patch, num_scales)
    centres_1d = np.asarray(centres_1d, np.int64)
    out = np.zeros((num_scales, len(centres_1d), patch, size), np.float32)
    pix = np.arange(size)
    for s in range(num_scales):
        side, f = patch * 2 ** s, 2 ** s
        for i, c in enumerate(centres_1d):
            rel = pix - (c - side // 2)
            inside = (rel >= 0) & (rel < side)
            out[s, i, rel[inside] // f, pix[inside]] = 1.0 / f
    return out


def grid_glimpses(images: Array, centres_1d, *, patch: int, num_scales: int) -> Array:
    """The glimpses at every centre ``(centres_1d[i], centres_1d[j])`` of a square product grid.

    Pooling a window is linear and separable, so the scale-``s`` patch at ``(i, j)`` is
    ``R[s, i] X R[s, j]^T`` (:func:`pooling_matrices`); all of them are two matmuls per scale.

    Args:
      images: [B, S, S] float.
      centres_1d: the grid's centres along one axis (numpy; e.g. the distinct rows of :func:`location_grid`).

    Returns:
      [B, n * n, num_scales, patch, patch] in the order ``a = i * n + j`` of :func:`location_grid`.
    """
    if images.ndim != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"`images` must be [B, S, S]; got shape {images.shape}.")
    b, size, n = images.shape[0], images.shape[1], len(centres_1d)
    r = jnp.asarray(pooling_matrices(centres_1d, size, patch=patch, num_scales=num_scales), images.dtype)
    rows = jnp.einsum("sipr,brc->bsipc", r, images)           # [B, S, n, p, size]
    out = jnp.einsum("bsipc,sjqc->bijspq", rows, r)           # [B, n, n, S, p, p]
    return out.reshape(b, n * n, num_scales, patch, patch)
