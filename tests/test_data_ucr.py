"""Embedded UCR datasets: files, .ts parsing, official split shapes, labels, z-normalization."""

import hashlib

import numpy as np
import pytest

import mamjax.data as data
from mamjax.data import ucr

# (train size, test size, length, number of classes) of the official UCR splits, as published in the
# archive's summary (DataSummary.csv of the UCR 2018 archive; PickupGestureWiimoteZ is variable-length
# there, up to 361 samples: the embedded file is aeon's equal-length version).
OFFICIAL = {
    "ACSF1": (100, 100, 1460, 10),
    "ArrowHead": (36, 175, 251, 3),
    "Coffee": (28, 28, 286, 2),
    "GunPoint": (50, 150, 150, 2),
    "ItalyPowerDemand": (67, 1029, 24, 2),
    "OSULeaf": (200, 242, 427, 6),
    "PickupGestureWiimoteZ_eq": (50, 50, 361, 10),
    "Trace": (100, 100, 275, 4),
}
FILE_MD5 = {
    "ACSF1_TEST.ts": "8f1b297ec9583daad694b5890fffb78f",
    "ACSF1_TRAIN.ts": "3e40c2609d59dc2f34ad069333beff5c",
    "Coffee_TEST.txt": "14eae9e3683206426e17ca3d347145e7",
    "Coffee_TRAIN.txt": "6f12947b1ec9e3f4c588903d767b12ea",
    "OSULeaf_TEST.ts": "e8e9a5c1bff95a2bbcac1e024cd6be01",
    "OSULeaf_TRAIN.ts": "352ada2ec17753ad2f6908063f97bb94",
    "PickupGestureWiimoteZ_eq_TEST.ts": "25b22e943d63257da80c8fedb8f3778e",
    "PickupGestureWiimoteZ_eq_TRAIN.ts": "fa2bded69c9b19dce6c50697f4504bde",
    "Trace.npz": "c7a2ec854f5c0404ed27f778b9672d1c",
    "ArrowHead_TEST.ts": "23178830d6783546d363da685f593f5b",
    "ArrowHead_TRAIN.ts": "b18c59c3492e526b7d999e5e1b645c92",
    "GunPoint_TEST.ts": "29b4dcc6cc288913e3d4b9dc414844ad",
    "GunPoint_TRAIN.ts": "b7901fea64f1478306a5b2fd24bbadf3",
    "ItalyPowerDemand_TEST.ts": "5b922219fc85af1fa441fde521f7a25d",
    "ItalyPowerDemand_TRAIN.ts": "5b8ff57b23e07dfa4913ac19e402db52",
}


def test_embedded_files_and_md5():
    assert ucr.list_ucr() == sorted(OFFICIAL)
    assert [n for n in data.list_datasets() if n.startswith("ucr/")] == [f"ucr/{n}" for n in sorted(OFFICIAL)]
    listed = dict(reversed(line.split()) for line in (ucr.UCR_DIR / "MD5SUMS").read_text().splitlines())
    assert listed == FILE_MD5
    for name, digest in FILE_MD5.items():
        assert hashlib.md5((ucr.UCR_DIR / name).read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_split_shapes_and_labels(name):
    n_train, n_test, length, n_classes = OFFICIAL[name]
    for split, n in (("train", n_train), ("test", n_test)):
        d = data.load(f"ucr/{name}", split)
        assert d["x"].shape == (n, length) and d["x"].dtype == np.float32
        assert d["label"].shape == (n,) and d["label"].dtype == np.int32
        assert len(d["classes"]) == n_classes
        assert d["label"].min() == 0 and d["label"].max() == n_classes - 1
        raw = _raw_labels(name, split)  # independent count from the file as shipped
        for c, original in enumerate(d["classes"]):
            assert int((d["label"] == c).sum()) == sum(r == original for r in raw)


def _raw_labels(name, split):
    ts, txt = ucr.UCR_DIR / f"{name}_{split.upper()}.ts", ucr.UCR_DIR / f"{name}_{split.upper()}.txt"
    if ts.exists():  # lines ending in ':<original label>'
        lines = [ln for ln in ts.read_text().splitlines() if ln and ln[0] not in "#@"]
        return [ln.rsplit(":", 1)[1].strip() for ln in lines]
    if txt.exists():  # the label is the first field, written as a float
        return [str(int(float(ln.split()[0]))) for ln in txt.read_text().splitlines() if ln.strip()]
    return [str(v) for v in np.load(ucr.UCR_DIR / f"{name}.npz")[f"y_{split}"]]


def test_values_and_label_mapping_match_the_file():
    raw = data.load("ucr/GunPoint", "train", znorm=False)
    first = (ucr.UCR_DIR / "GunPoint_TRAIN.ts").read_text().split("@data")[1].strip().splitlines()[0]
    values, label = first.rsplit(":", 1)
    np.testing.assert_allclose(raw["x"][0], np.array(values.split(","), np.float64), rtol=1e-6)
    assert list(raw["classes"]) == ["1", "2"]
    assert raw["classes"][raw["label"][0]] == label
    np.testing.assert_allclose(raw["x"][0, :3], [-0.6478854, -0.64199155, -0.63818632], rtol=1e-6)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_znormalization(name):
    d = data.load(f"ucr/{name}", "test")
    x = d["x"].astype(np.float64)
    np.testing.assert_allclose(x.mean(1), 0.0, atol=1e-5)
    np.testing.assert_allclose(x.std(1), 1.0, atol=1e-4)
    raw = data.load(f"ucr/{name}", "test", znorm=False)["x"].astype(np.float64)
    ref = (raw - raw.mean(1, keepdims=True)) / raw.std(1, keepdims=True)
    np.testing.assert_allclose(x, ref, atol=1e-4)
    np.testing.assert_array_equal(d["label"], data.load(f"ucr/{name}", "test", znorm=False)["label"])


def test_znormalize_constant_series_is_zero():
    out = ucr.znormalize(np.array([[2.0, 2.0, 2.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_array_equal(out[0], 0.0)
    np.testing.assert_allclose(out[1], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])


def test_parse_ts_small_text():
    text = "# comment\n@problemName Toy\n@classLabel true b a\n@data\n1,2,3:a\n4,5,6:b\n\n"
    x, labels, header = ucr.parse_ts(text)
    np.testing.assert_array_equal(x, [[1, 2, 3], [4, 5, 6]])
    assert labels == ["a", "b"] and header["problemname"] == "Toy"
    with pytest.raises(ValueError, match="univariate"):
        ucr.parse_ts("@data\n1,2:3,4:a\n")
    with pytest.raises(ValueError, match="unequal"):
        ucr.parse_ts("@data\n1,2:a\n1,2,3:b\n")
    with pytest.raises(ValueError, match="no data"):
        ucr.parse_ts("@problemName x\n")


def test_parse_ucr_txt_small_text():
    x, labels = ucr.parse_ucr_txt("  1.0000000e+00  0.5 -1\n2,3,4\n\n")
    np.testing.assert_array_equal(x, [[0.5, -1], [3, 4]])
    assert labels == ["1", "2"]
    with pytest.raises(ValueError, match="unequal"):
        ucr.parse_ucr_txt("1 2 3\n1 2\n")


def test_bad_name_and_split():
    with pytest.raises(ValueError, match="`name`.*ucr/GunPoint"):
        data.load("ucr/Wafer", "train")
    with pytest.raises(ValueError, match="`split`"):
        data.load("ucr/GunPoint", "validation")
    with pytest.raises(TypeError, match="resolution"):
        data.load("ucr/GunPoint", "train", resolution=14)
    with pytest.raises(ValueError, match="`data_dir`"):
        data.load("ucr/GunPoint", "train", data_dir="/tmp")
