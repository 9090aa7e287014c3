"""text8-protocol character data from a local file, on a small text the test writes."""

import numpy as np
import pytest

from mamjax.data import text


def test_text8_splits_chunks_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    chars = rng.integers(0, 27, size=20000)
    s = text.decode_text(chars)
    path = tmp_path / "text8"
    path.write_text(s)
    tr, va, te = (text.load_text8(path, sp, seq_len=250) for sp in ("train", "validation", "test"))
    assert tr.shape == (72, 250) and va.shape == (4, 250) and te.shape == (4, 250)  # 18000 / 1000 / 1000 chars
    assert tr.dtype == np.int32 and tr.min() >= 0 and tr.max() <= 26
    np.testing.assert_array_equal(tr.reshape(-1), chars[:18000])
    np.testing.assert_array_equal(te.reshape(-1), chars[19000:20000])
    assert text.decode_text(text.encode_text("hello world")) == "hello world"


def test_text8_errors_name_the_argument(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("Hello, World " * 100)
    with pytest.raises(ValueError, match="offset 0"):
        text.load_text8(path, "train")
    assert text.load_text8(path, "train", seq_len=10, clean=True)[0].tolist()[:6] == [8, 5, 12, 12, 15, 0]
    with pytest.raises(ValueError, match="`split`"):
        text.load_text8(path, "dev")
    with pytest.raises(ValueError, match="`seq_len`"):
        text.load_text8(path, "train", seq_len=0)
    with pytest.raises(FileNotFoundError, match="`path`"):
        text.load_text8(tmp_path / "missing", "train")
    with pytest.raises(ValueError, match="fewer than"):
        text.load_text8(path, "test", seq_len=10000, clean=True)
    with pytest.raises(ValueError, match="`ids`"):
        text.decode_text([27])


def test_load_text8_through_the_registry(tmp_path):
    from mamjax import data

    path = tmp_path / "text8"
    path.write_text("ab " * 1000)
    out = data.load("text8", "validation", data_dir=path, seq_len=50)
    assert out["text"].shape == (3, 50) and "text8" in data.list_datasets()
    with pytest.raises(FileNotFoundError, match="data_dir"):
        data.load("text8", "train")
