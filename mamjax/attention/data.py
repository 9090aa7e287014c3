"""Translated and cluttered MNIST (Mnih et al., 2014), generated deterministically from a seed.

* **translated**: each 28x28 digit pasted at a uniformly random position of an
  ``size x size`` black canvas (60x60 in the paper).
* **cluttered**: as translated, plus ``num_clutter`` pieces of ``clutter_size x clutter_size``
  (8x8, four of them for 60x60 in the paper) cut at random positions from other random
  digits of the same split and pasted at random canvas positions; overlaps keep the
  brighter pixel (max).

All randomness comes from ``numpy.random.default_rng(seed)`` (PCG64, stable across
machines and numpy versions), so the same seed gives the same images everywhere.
"""

from __future__ import annotations

import numpy as np

__all__ = ["translated", "cluttered", "load"]


def _check_digits(digits: np.ndarray, labels: np.ndarray, size: int) -> None:
    if digits.ndim != 3:
        raise ValueError(f"`digits` must be [N, h, w]; got shape {digits.shape}.")
    if labels.shape != digits.shape[:1]:
        raise ValueError(f"`labels` must be [N={digits.shape[0]}]; got shape {labels.shape}.")
    if size < max(digits.shape[1:]):
        raise ValueError(f"`size` ({size}) must be >= the digit side {digits.shape[1:]}.")


def _paste(canvas: np.ndarray, pieces: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """canvas[n, r:r+h, c:c+w] = max(canvas[...], pieces[n]) for every n (vectorized)."""
    n, h, w = pieces.shape
    rr = rows[:, None, None] + np.arange(h)[None, :, None]
    cc = cols[:, None, None] + np.arange(w)[None, None, :]
    idx = np.arange(n)[:, None, None]
    canvas[idx, rr, cc] = np.maximum(canvas[idx, rr, cc], pieces)


def translated(digits: np.ndarray, labels: np.ndarray, *, size: int = 60, seed: int = 0) -> dict:
    """Translated MNIST.

    Args:
      digits: uint8 [N, h, w] digit images (MNIST: 28x28).
      labels: int [N].
      size: canvas side.
      seed: generation seed.

    Returns:
      {"image": uint8 [N, size, size], "label": int32 [N], "offset": int32 [N, 2]} (the
      top-left corner of each digit).
    """
    digits, labels = np.asarray(digits), np.asarray(labels)
    _check_digits(digits, labels, size)
    n, h, w = digits.shape
    rng = np.random.default_rng([seed, 0])
    rows = rng.integers(0, size - h + 1, n)
    cols = rng.integers(0, size - w + 1, n)
    canvas = np.zeros((n, size, size), digits.dtype)
    _paste(canvas, digits, rows, cols)
    return {"image": canvas, "label": labels.astype(np.int32), "offset": np.stack([rows, cols], -1).astype(np.int32)}


def cluttered(digits: np.ndarray, labels: np.ndarray, *, size: int = 60, num_clutter: int = 4,
              clutter_size: int = 8, seed: int = 0) -> dict:
    """Cluttered translated MNIST: :func:`translated` plus clutter cut from other digits.

    Args:
      digits, labels, size, seed: as in :func:`translated` (the digit positions equal
        those of ``translated`` with the same seed).
      num_clutter: clutter pieces per image.
      clutter_size: side of a clutter piece.

    Returns:
      Same keys as :func:`translated`.
    """
    out = translated(digits, labels, size=size, seed=seed)
    digits = np.asarray(digits)
    n, h, w = digits.shape
    if not 1 <= clutter_size <= min(h, w):
        raise ValueError(f"`clutter_size` must be in [1, {min(h, w)}]; got {clutter_size}.")
    if n < 2 and num_clutter > 0:
        raise ValueError("cluttering needs at least 2 digits to cut pieces from other digits.")
    rng = np.random.default_rng([seed, 1])
    canvas = out["image"]
    for _ in range(num_clutter):
        # A uniformly random *other* digit: shift by 1..n-1 so it is never the digit itself.
        src = (np.arange(n) + rng.integers(1, n, n)) % n
        r0 = rng.integers(0, h - clutter_size + 1, n)
        c0 = rng.integers(0, w - clutter_size + 1, n)
        rr = r0[:, None, None] + np.arange(clutter_size)[None, :, None]
        cc = c0[:, None, None] + np.arange(clutter_size)[None, None, :]
        pieces = digits[src[:, None, None], rr, cc]
        _paste(canvas, pieces, rng.integers(0, size - clutter_size + 1, n),
               rng.integers(0, size - clutter_size + 1, n))
    return out


def load(kind: str, split: str, *, size: int = 60, seed: int | None = None, num_examples: int | None = None,
         resolution: int = 28, **kwargs) -> dict:
    """Translated / cluttered MNIST built from ``mamjax.data.load("mnist", split)``.

    Args:
      kind: "translated" or "cluttered".
      split: "train" or "test".
      size: canvas side.
      seed: generation seed (default: 0 for train, 1 for test).
      num_examples: keep the first N digits of the split (None: all).
      resolution: digit side (28, or e.g. 14 for 2x2-pooled digits on small canvases).
      **kwargs: passed to :func:`cluttered`.

    Returns:
      As :func:`translated`.
    """
    makers = {"translated": translated, "cluttered": cluttered}
    if kind not in makers:
        raise ValueError(f"`kind` must be one of {sorted(makers)}; got {kind!r}.")
    mnist = _load_mnist(split, resolution)
    digits, labels = mnist["image"], mnist["label"]
    if num_examples is not None:
        digits, labels = digits[:num_examples], labels[:num_examples]
    seed = {"train": 0, "test": 1}.get(split, 2) if seed is None else seed
    return makers[kind](digits, labels, size=size, seed=seed, **kwargs)


def _load_mnist(split: str, resolution: int = 28) -> dict:
    from mamjax import data as data_lib  # lazy: the data package reads files on first use

    if hasattr(data_lib, "load"):
        return data_lib.load("mnist", split, resolution=resolution)
    from mamjax.data import mnist as mnist_lib

    return mnist_lib.load_mnist(split, resolution=resolution)
