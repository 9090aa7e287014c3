"""Datasets prepared by tensorflow-datasets, read without TensorFlow.

``tfds.data_source`` gives random access to a dataset prepared in the
``array_record`` format; it needs neither TensorFlow nor network access. mamjax
never downloads here (``download=False``): the user prepares the data once and
passes its ``data_dir``. ``tensorflow_datasets`` is imported inside the function
so that ``import mamjax.data`` stays light.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

__all__ = ["how_to_prepare", "load_tfds"]


def how_to_prepare(name: str, data_dir: Any) -> str:
    """The instructions printed when a TFDS dataset is missing from ``data_dir``."""
    return (
        f"Prepare it once in the array_record format on a machine with network access and "
        f"TensorFlow (the MNIST builders encode PNGs with it; reading back needs neither): "
        f"`tfds build {name} --data_dir={data_dir} --file_format=array_record`, or in Python "
        f"`tfds.builder({name!r}, data_dir={str(data_dir)!r}, file_format='array_record')"
        f".download_and_prepare()`. Or call mamjax.data.load without `data_dir` to use the "
        f"copy embedded in mamjax."
    )


@functools.lru_cache(maxsize=8)
def _load_cached(name: str, split: str, data_dir: str) -> dict[str, np.ndarray]:
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:  # tfds is the optional `tfds` extra
        raise ImportError(
            f"Reading {name!r} from data_dir={data_dir!r} needs tensorflow-datasets: "
            "`pip install 'mamjax[tfds]'` (or `pip install tensorflow-datasets`).") from e
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"`data_dir` {data_dir!r} does not exist. {how_to_prepare(name, data_dir)}")
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except ValueError as e:
        if "split" in str(e).lower():
            raise ValueError(f"`split` {split!r} is not a split of TFDS {name!r}: {e}") from e
        raise FileNotFoundError(
            f"No prepared TFDS dataset {name!r} in data_dir={data_dir!r} ({e}). "
            f"{how_to_prepare(name, data_dir)}") from e
    except Exception as e:  # tfds raises assorted errors for a missing / wrongly formatted dataset
        raise FileNotFoundError(
            f"No TFDS dataset {name!r} in the array_record format in data_dir={data_dir!r} "
            f"({type(e).__name__}: {e}). {how_to_prepare(name, data_dir)}") from e
    n = len(source)
    records = source.__getitems__(list(range(n))) if n else []
    if not records:
        raise ValueError(f"TFDS {name!r} split {split!r} in {data_dir!r} is empty.")
    out = {}
    for key in records[0]:
        arr = np.stack([np.asarray(r[key]) for r in records])
        arr.flags.writeable = False
        out[key] = arr
    return out


def load_tfds(name: str, split: str, data_dir: Any) -> dict[str, np.ndarray]:
    """All examples of a prepared TFDS split as numpy arrays (cached per process).

    Args:
      name: TFDS dataset name, e.g. "mnist" or "binarized_mnist".
      split: any TFDS split string ("train", "test", "validation", "train[:10%]").
      data_dir: the folder holding ``<name>/<version>/`` prepared as ``array_record``.

    Returns:
      a dict of read-only numpy arrays, one per feature, stacked over examples.
    """
    return _load_cached(name, str(split), os.fspath(os.path.abspath(os.path.expanduser(os.fspath(data_dir)))))
