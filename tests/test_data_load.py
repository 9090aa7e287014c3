"""``mamjax.data.load``: dispatch, options, errors, and the TFDS ``data_dir`` path (no TensorFlow)."""

import io

import numpy as np
import pytest

import mamjax.data as data


def test_list_datasets():
    names = data.list_datasets()
    assert names[:3] == ["mnist", "binarized_mnist", "text8"]
    assert all(n.startswith("ucr/") for n in names[3:])


def test_load_mnist_and_resolution():
    d = data.load("mnist", "test")
    assert d["image"].shape == (10000, 28, 28) and d["image"].dtype == np.uint8
    assert d["label"].dtype == np.int32
    d14 = data.load("mnist", "test", resolution=14)
    assert d14["image"].shape == (10000, 14, 14)
    b14 = data.load("binarized_mnist", "test", resolution=14)
    assert b14["image"].shape == (10000, 14, 14) and set(np.unique(b14["image"])) == {0, 1}
    b = data.load("binarized_mnist", "test")
    assert b["image"].shape == (10000, 28, 28) and set(np.unique(b["image"])) == {0, 1}
    np.testing.assert_array_equal(b["label"], d["label"])


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="`name`.*mnist"):
        data.load("cifar10", "train")
    with pytest.raises(ValueError, match="`name`"):
        data.load(3, "train")
    with pytest.raises(ValueError, match="`split`.*train"):
        data.load("mnist", "validation")
    with pytest.raises(ValueError, match="`split`"):
        data.load("binarized_mnist", "dev")
    with pytest.raises(ValueError, match="`resolution`"):
        data.load("mnist", "train", resolution=10)
    with pytest.raises(TypeError, match="resolutoin"):
        data.load("mnist", "train", resolutoin=14)
    with pytest.raises(ValueError, match="`name`.*ucr/"):
        data.load("ucr/NoSuchSet", "train")


def test_missing_tfds_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="tfds build mnist"):
        data.load("mnist", "train", data_dir=tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="array_record"):
        data.load("binarized_mnist", "train", data_dir=tmp_path)
    # no download was attempted: nothing was written
    assert list(tmp_path.iterdir()) == []


def _png(img: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(img, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _prepare_fake(tfds, name, data_dir, with_label, sizes):
    """Prepares a tiny `name` dataset with the official features, array_record, offline, no TF."""
    version = tfds.builder_cls(name).VERSION

    class Fake(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = version

        def _info(self):
            feats = {"image": tfds.features.Image(shape=(28, 28, 1))}
            if with_label:
                feats["label"] = tfds.features.ClassLabel(num_classes=10)
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(feats))

        def _split_generators(self, dl_manager):
            return {s: self._generate_examples(s, n) for s, n in sizes.items()}

        def _generate_examples(self, split, n):
            rng = np.random.default_rng(len(split))
            for i in range(n):
                hi = 256 if with_label else 2
                ex = {"image": _png(rng.integers(0, hi, (28, 28), dtype=np.uint8))}
                if with_label:
                    ex["label"] = i % 10
                yield i, ex

    Fake.name = name
    Fake(data_dir=str(data_dir), file_format="array_record").download_and_prepare()


def test_tfds_data_dir_path(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("PIL")
    _prepare_fake(tfds, "binarized_mnist", tmp_path, False, {"train": 5, "validation": 3, "test": 4})
    _prepare_fake(tfds, "mnist", tmp_path, True, {"train": 6, "test": 4})
    b = data.load("binarized_mnist", "validation", data_dir=tmp_path)
    assert set(b) == {"image"} and b["image"].shape == (3, 28, 28) and b["image"].dtype == np.uint8
    assert set(np.unique(b["image"])) <= {0, 1}
    m = data.load("mnist", "train", data_dir=tmp_path)
    assert m["image"].shape == (6, 28, 28) and m["label"].dtype == np.int32
    np.testing.assert_array_equal(np.sort(m["label"]), np.sort(np.arange(6) % 10))
    m14 = data.load("mnist", "train", data_dir=tmp_path, resolution=14)
    assert m14["image"].shape == (6, 14, 14)
    # the decoded pixels are the ones written (order may be shuffled by TFDS)
    rng = np.random.default_rng(len("train"))
    written = [rng.integers(0, 256, (28, 28), dtype=np.uint8) for _ in range(6)]
    for img, lab in zip(m["image"], m["label"]):
        np.testing.assert_array_equal(img, written[lab])
    with pytest.raises(ValueError, match="`split`"):
        data.load("binarized_mnist", "bogus", data_dir=tmp_path)
    with pytest.raises(ValueError, match="`resolution`"):
        data.load("binarized_mnist", "train", data_dir=tmp_path, resolution=14)
