"""MNIST from the embedded original IDX files: grey levels, downsampling, binarization.

The four gzip IDX files of LeCun, Cortes & Burges ship inside the package
(``mamjax/data/files/mnist/``, about 11 MB). Nothing is read at import time; the
decoded arrays are cached per process the first time a split is requested.

Binarization, both ways:

* **static** (:func:`load_binarized`): one fixed Bernoulli draw of ``grey / 255``
  per pixel, from ``numpy.random.default_rng([STATIC_SEED, split_id])`` with
  ``STATIC_SEED = 0`` and ``split_id`` 0 for "train", 1 for "test". numpy's PCG64
  stream and ``Generator.random`` are stable across machines and numpy versions,
  so every user gets the same binary images.
* **dynamic** (:func:`dynamic_binarize`): a fresh Bernoulli draw from a JAX key,
  meant as a per-step ``BatchStream`` transform.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "FILES",
    "MNIST_DIR",
    "SPLITS",
    "STATIC_SEED",
    "downsample",
    "dynamic_binarize",
    "load_binarized",
    "load_mnist",
    "read_idx",
    "static_binarize",
]

MNIST_DIR = Path(__file__).parent / "files" / "mnist"
SPLITS = ("train", "test")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
STATIC_SEED = 0
_SPLIT_ID = {"train": 0, "test": 1}
_HOW_TO_GET = (
    "The MNIST files ship inside the mamjax package (mamjax/data/files/mnist/*.gz). "
    "Reinstall mamjax from a full clone (`pip install .`), or copy the four original "
    "gzip IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into that folder."
)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS} for MNIST; got {split!r}.")
    return split


def read_idx(path: str | Path) -> np.ndarray:
    """Decodes a (gzip) IDX file: big-endian header (magic, dims) then raw uint8 data.

    Args:
      path: an ``.idx?-ubyte`` file, gzip-compressed if its name ends with ``.gz``.

    Returns:
      uint8 array of the shape stored in the header, e.g. [60000, 28, 28].
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"MNIST file {path} is missing. {_HOW_TO_GET}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    if magic >> 8 != 0x08:  # 0x08 = unsigned byte data
        raise ValueError(f"{path} is not a uint8 IDX file (magic {magic:#x}).")
    ndim = magic & 0xFF
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    if len(data) - offset != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape} but holds {len(data) - offset} bytes.")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape)


def _readonly(x: np.ndarray) -> np.ndarray:
    x.flags.writeable = False
    return x


@functools.lru_cache(maxsize=None)
def _raw(split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = FILES[split]
    images = read_idx(MNIST_DIR / image_file)
    labels = read_idx(MNIST_DIR / label_file).astype(np.int32)
    return _readonly(images), _readonly(labels)


def downsample(images: np.ndarray, resolution: int) -> np.ndarray:
    """Mean-pools grey levels over non-overlapping ``k x k`` blocks, ``k = 28 // resolution``.

    The block mean is rounded half up to the nearest integer (exact integer
    arithmetic: ``(sum + k*k // 2) // (k*k)``), so the result is deterministic uint8.

    Args:
      images: uint8 [N, H, H] with ``H`` divisible by ``resolution``.
      resolution: output side length (e.g. 14 for 2x2 pooling).

    Returns:
      uint8 [N, resolution, resolution].
    """
    n, h, w = images.shape
    if not isinstance(resolution, (int, np.integer)) or resolution < 1 or h % resolution or w % resolution:
        raise ValueError(f"`resolution` must be a positive int dividing {h}; got {resolution!r}.")
    k = h // resolution
    if k == 1:
        return images
    blocks = images.reshape(n, resolution, k, resolution, k).astype(np.uint32).sum(axis=(2, 4))
    return ((blocks + (k * k) // 2) // (k * k)).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _grey(split: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _raw(split)
    if resolution != images.shape[1]:
        images = _readonly(downsample(images, resolution))
    return images, labels


def load_mnist(split: str, resolution: int = 28) -> dict[str, np.ndarray]:
    """Grey-level MNIST from the embedded files.

    Args:
      split: "train" (60000 images) or "test" (10000).
      resolution: 28 (original) or a divisor of 28 such as 14 (2x2 mean pooling,
        see :func:`downsample`).

    Returns:
      {"image": uint8 [N, resolution, resolution] in 0..255, "label": int32 [N] in 0..9}.
      The arrays are cached and read-only; copy them before writing in place.
    """
    _check_split(split)
    if not isinstance(resolution, (int, np.integer)):
        raise ValueError(f"`resolution` must be an int dividing 28; got {resolution!r}.")
    images, labels = _grey(split, int(resolution))
    return {"image": images, "label": labels}


def _check_grey(images, name: str) -> None:
    """Eager check that concrete grey levels lie in [0, 255] (a Bernoulli of p > 1 or < 0 is silent)."""
    if isinstance(images, jax.core.Tracer):
        return
    v = np.asarray(images)
    if v.size and (not np.all(np.isfinite(v)) or v.min() < 0 or v.max() > 255):
        raise ValueError(f"`{name}` must hold grey levels in [0, 255]; got values in [{v.min()}, {v.max()}].")


def static_binarize(images: np.ndarray, seed: Any) -> np.ndarray:
    """One Bernoulli draw of ``images / 255`` from ``numpy.random.default_rng(seed)``.

    Args:
      images: uint8 [N, ...] grey levels.
      seed: anything ``numpy.random.default_rng`` accepts (int or list of ints).

    Returns:
      uint8 array of 0/1, same shape as ``images``.
    """
    _check_grey(images, "images")
    u = np.random.default_rng(seed).random(images.shape)
    return (u < images / 255.0).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _binarized(split: str, resolution: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _grey(split, resolution)
    return _readonly(static_binarize(images, [seed, _SPLIT_ID[split]])), labels


def load_binarized(split: str, resolution: int = 28, seed: int = STATIC_SEED) -> dict[str, np.ndarray]:
    """Statically binarized MNIST: one fixed draw, the same on every machine.

    Pixel ``(n, i, j)`` is 1 with probability ``grey / 255`` using
    ``numpy.random.default_rng([seed, split_id]).random(shape) < grey / 255``
    (``seed = STATIC_SEED = 0`` by default; ``split_id`` 0 train, 1 test). With
    ``resolution < 28`` the pooled grey levels are binarized.

    Note: this is not the Larochelle & Murray (2011) 50000/10000/10000 split; pass
    a ``data_dir`` with a prepared TFDS ``binarized_mnist`` to :func:`mamjax.data.load`
    to use that one.

    Returns:
      {"image": uint8 [N, resolution, resolution] in {0, 1}, "label": int32 [N]} (read-only).
    """
    _check_split(split)
    if not isinstance(resolution, (int, np.integer)):
        raise ValueError(f"`resolution` must be an int dividing 28; got {resolution!r}.")
    images, labels = _binarized(split, int(resolution), int(seed))
    return {"image": images, "label": labels}


def dynamic_binarize(batch: Any, key: jax.Array) -> Any:
    """Fresh Bernoulli binarization of grey levels, ``P(pixel = 1) = grey / 255``.

    Use as a ``BatchStream`` transform (the stream passes a fresh key per step):
    ``BatchStream(load("mnist", "train"), 128, seed=0, transform=dynamic_binarize)``.

    Args:
      batch: a dict with an "image" entry (other entries pass through unchanged)
        or a bare array, grey levels in 0..255 of any shape and dtype.
      key: a JAX PRNG key; use a new one for every batch.

    Returns:
      the same structure with the images replaced by uint8 {0, 1} arrays (jax arrays).
    """
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"`batch` dict must have an 'image' entry; got keys {sorted(batch)}.")
        return {**batch, "image": dynamic_binarize(batch["image"], key)}
    _check_grey(batch, "batch")
    grey = jnp.asarray(batch, jnp.float32) / 255.0
    return jax.random.bernoulli(key, grey).astype(jnp.uint8)
