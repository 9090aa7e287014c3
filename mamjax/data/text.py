"""Character-level text with the text8 protocol (Mahoney's text8; as used by ARDM and MaM), from a local file.

text8 is 10^8 characters of lower-case letters and spaces. The protocol: the first 90M characters
train, the next 5M validation, the last 5M test; K = 27 classes (space = 0, ``a``..``z`` = 1..26);
non-overlapping chunks of 250 characters. mamjax does not download it: pass the path of the
unzipped ``text8`` file (or any text; characters outside ``[a-z ]`` raise unless ``clean=True``,
which lower-cases and maps every other character to a space, as the text8 preprocessing did).
The split fractions 0.9 / 0.05 / 0.05 apply to any length, so the tests run on a small text they
generate. MOSES / SMILES: no PyPI package ships the data set (``moses`` installs code that downloads
it), so it is not provided.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["TEXT8_ALPHABET", "TEXT8_SPLITS", "encode_text", "decode_text", "load_text8"]

TEXT8_ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # id 0 is the space
TEXT8_SPLITS = {"train": (0.0, 0.9), "validation": (0.9, 0.95), "test": (0.95, 1.0)}  # 90M / 5M / 5M of 100M
_LUT = np.full(256, -1, np.int16)
for _i, _c in enumerate(TEXT8_ALPHABET):
    _LUT[ord(_c)] = _i


def encode_text(text: str | bytes, clean: bool = False) -> np.ndarray:
    """Characters -> ids in ``[0, 27)``: ``[N] uint8``.

    Raises:
      ValueError: a character outside ``[a-z ]`` (naming the first one and its offset) unless
        ``clean``, which lower-cases and maps the others to spaces.
    """
    raw = text.encode("latin-1", "replace") if isinstance(text, str) else bytes(text)
    b = np.frombuffer(raw, np.uint8)
    if clean:
        b = np.frombuffer(raw.lower(), np.uint8)
        ids = _LUT[b]
        return np.where(ids < 0, 0, ids).astype(np.uint8)
    ids = _LUT[b]
    bad = np.flatnonzero(ids < 0)
    if bad.size:
        raise ValueError(f"`text` holds a character outside [a-z ] at offset {bad[0]} ({chr(b[bad[0]])!r}); "
                         "pass clean=True to map it to a space.")
    return ids.astype(np.uint8)


def decode_text(ids) -> str:
    """Ids in ``[0, 27)`` -> the string."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(TEXT8_ALPHABET)):
        raise ValueError(f"`ids` must lie in [0, {len(TEXT8_ALPHABET)}); got range [{ids.min()}, {ids.max()}].")
    return "".join(TEXT8_ALPHABET[i] for i in ids.reshape(-1))


def load_text8(path: str | os.PathLike, split: str, seq_len: int = 250, *, clean: bool = False) -> np.ndarray:
    """The text8 split of the file at ``path`` as ``[N, seq_len] int32`` chunks (ids in ``[0, 27)``).

    The split is the contiguous slice ``TEXT8_SPLITS[split]`` of the characters (90 / 5 / 5 %);
    chunks do not overlap and a last partial chunk is dropped.

    Raises:
      FileNotFoundError: ``path`` missing (the message says where text8 comes from).
      ValueError: unknown ``split``, ``seq_len`` < 1, or a split shorter than one chunk.
    """
    if split not in TEXT8_SPLITS:
        raise ValueError(f"`split` must be one of {list(TEXT8_SPLITS)}; got {split!r}.")
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"`seq_len` must be a positive int; got {seq_len!r}.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"`path` {path} is not a file; text8 is the unzipped text8.zip of "
                                "mattmahoney.net/dc (100,000,000 characters), which mamjax does not download.")
    ids = encode_text(path.read_bytes().rstrip(b"\n"), clean=clean)
    lo, hi = TEXT8_SPLITS[split]
    part = ids[int(round(lo * ids.size)):int(round(hi * ids.size))]
    n = part.size // seq_len
    if n == 0:
        raise ValueError(f"the {split!r} split of {path} has {part.size} characters, fewer than `seq_len` = {seq_len}.")
    return part[:n * seq_len].reshape(n, seq_len).astype(np.int32)
