"""Named datasets as dicts of numpy arrays, offline by default.

``load(name, split)`` is the single entry point:

=====================  ==========================================================
name                   returns
=====================  ==========================================================
"mnist"                {"image": uint8 [N, 28, 28] 0..255, "label": int32 [N]};
                       "train" 60000, "test" 10000 (embedded original IDX files).
"binarized_mnist"      {"image": uint8 {0, 1}, "label": int32}: static binarization,
                       one fixed draw (seed in :mod:`mamjax.data.mnist`).
"ucr/<Name>"           {"x": float32 [N, T], "label": int32 [N], "classes": str [C]};
                       official UCR train/test splits shipped with mamjax.
"text8"                {"text": int32 [N, 250] ids in [0, 27)}: the text8 protocol
                       (90/5/5 % split "train"/"validation"/"test") of the local
                       file given as ``data_dir`` (not shipped; :mod:`mamjax.data.text`).
=====================  ==========================================================

Options: ``resolution=14`` (MNIST, 2x2 mean pooling), ``znorm=False`` (UCR).
With ``data_dir=...`` the MNIST datasets are read from a tensorflow-datasets
folder prepared in the ``array_record`` format (no TensorFlow needed, no
download). Batching lives in :class:`mamjax.data.stream.BatchStream`;
``dynamic_binarize`` is a ready-made stream transform; the Ising target is in
:mod:`mamjax.data.ising`. Nothing is read at import time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mamjax.data import ising, mnist, text, tfds_source, ucr
from mamjax.data.mnist import STATIC_SEED, downsample, dynamic_binarize
from mamjax.data.stream import BatchStream

__all__ = [
    "BatchStream",
    "STATIC_SEED",
    "downsample",
    "dynamic_binarize",
    "ising",
    "list_datasets",
    "load",
    "text",
]


def list_datasets() -> list[str]:
    """The names :func:`load` accepts."""
    return ["mnist", "binarized_mnist", "text8"] + [f"ucr/{n}" for n in ucr.list_ucr()]


def _take(options: dict, name: str, allowed: dict[str, Any]) -> list[Any]:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"load({name!r}, ...) got unknown option(s) {unknown}; allowed: {sorted(allowed)}.")
    return [options.get(k, v) for k, v in allowed.items()]


def _check_resolution(resolution: Any) -> int:
    if not isinstance(resolution, (int, np.integer)) or resolution < 1 or 28 % resolution:
        raise ValueError(f"`resolution` must be an int dividing 28 (28, 14, 7, 4, 2, 1); got {resolution!r}.")
    return int(resolution)


def _from_tfds(name: str, split: str, data_dir: Any) -> dict[str, np.ndarray]:
    raw = tfds_source.load_tfds(name, split, data_dir)
    out = {"image": raw["image"].reshape(raw["image"].shape[0], 28, 28)}
    if "label" in raw:
        out["label"] = raw["label"].astype(np.int32)
    return out


def load(name: str, split: str, *, data_dir: Any = None, **options: Any) -> dict[str, np.ndarray]:
    """Loads a named dataset split as a dict of numpy arrays (deterministic, offline).

    Args:
      name: one of :func:`list_datasets` ("mnist", "binarized_mnist", "ucr/GunPoint", ...).
      split: "train" or "test" (with a TFDS ``data_dir``: any split TFDS knows,
        e.g. "validation" for binarized_mnist).
      data_dir: optional folder with the dataset prepared by tensorflow-datasets in
        the ``array_record`` format; used instead of the embedded copy (MNIST only).
      **options: ``resolution`` (MNIST; 28 or a divisor such as 14 — 2x2 mean pooling
        of grey levels rounded half up, see :func:`mamjax.data.mnist.downsample`);
        ``znorm`` (UCR; default True: each series scaled to mean 0, std 1).

    Returns:
      dict of arrays sharing their first axis, plus the per-dataset "classes" [C]
      for UCR (leave it out when building a ``BatchStream``). Arrays may be cached
      and read-only; copy before modifying in place.

    Raises:
      ValueError: unknown ``name`` or ``split`` (the message lists the allowed values).
      FileNotFoundError: the data is missing (the message says how to get it).
    """
    if not isinstance(name, str):
        raise ValueError(f"`name` must be a string, one of {list_datasets()}; got {name!r}.")
    if name == "mnist":
        (resolution,) = _take(options, name, {"resolution": 28})
        resolution = _check_resolution(resolution)
        if data_dir is None:
            return mnist.load_mnist(split, resolution)
        data = _from_tfds("mnist", split, data_dir)
        return {**data, "image": downsample(data["image"], resolution)}
    if name == "binarized_mnist":
        (resolution,) = _take(options, name, {"resolution": 28})
        resolution = _check_resolution(resolution)
        if data_dir is None:
            return mnist.load_binarized(split, resolution)
        if resolution != 28:
            raise ValueError("`resolution` other than 28 is not available for the TFDS binarized_mnist "
                             "(already binary); omit `data_dir` to binarize downsampled grey levels.")
        return _from_tfds("binarized_mnist", split, data_dir)
    if name == "text8":
        seq_len, clean = _take(options, name, {"seq_len": 250, "clean": False})
        if data_dir is None:
            raise FileNotFoundError("load('text8', ...) needs `data_dir`: the path of the unzipped text8 file "
                                    "(mamjax does not download it).")
        return {"text": text.load_text8(data_dir, split, seq_len, clean=clean)}
    if name.startswith("ucr/"):
        (znorm,) = _take(options, name, {"znorm": True})
        if data_dir is not None:
            raise ValueError("`data_dir` is not supported for UCR datasets (they ship with mamjax).")
        return ucr.load_ucr(name[len("ucr/"):], split, znorm=znorm)
    raise ValueError(f"`name` must be one of {list_datasets()}; got {name!r}.")
