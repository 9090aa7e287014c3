"""Embedded MNIST: file integrity, decoding, downsampling, static and dynamic binarization."""

import gzip
import hashlib

import jax
import numpy as np
import pytest

from mamjax.data import mnist
from mamjax.data.stream import BatchStream

# MD5 of the gzip files (as in MD5SUMS) and of the decompressed original IDX files
# (as published with MNIST); hard-coded so that a changed MD5SUMS cannot hide a bad file.
GZ_MD5 = {
    "t10k-images-idx3-ubyte.gz": "ecff87aa27c74fbc2c1f97e89c19221d",
    "t10k-labels-idx1-ubyte.gz": "a38049bc042dc6e683842a84160daae1",
    "train-images-idx3-ubyte.gz": "c7dfcf1bfd3481a40f7b3aedbdbd083c",
    "train-labels-idx1-ubyte.gz": "d289298a347a2cc65765a3c81043ba88",
}
RAW_MD5 = {
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_md5sums_file_matches_hard_coded_values():
    listed = {}
    for line in (mnist.MNIST_DIR / "MD5SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert listed == GZ_MD5


@pytest.mark.parametrize("name", sorted(GZ_MD5))
def test_embedded_file_md5(name):
    data = (mnist.MNIST_DIR / name).read_bytes()
    assert _md5(data) == GZ_MD5[name]
    assert _md5(gzip.decompress(data)) == RAW_MD5[name]


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_decoded_shapes_and_labels(split, n):
    d = mnist.load_mnist(split)
    assert d["image"].shape == (n, 28, 28) and d["image"].dtype == np.uint8
    assert d["label"].shape == (n,) and d["label"].dtype == np.int32
    assert d["label"].min() == 0 and d["label"].max() == 9
    assert len(np.unique(d["label"])) == 10
    assert d["image"].max() == 255 and d["image"].min() == 0


def test_train_mean_pixel_and_known_labels():
    d = mnist.load_mnist("train")
    assert round(float(d["image"].mean()), 3) == 33.318
    # First training labels of the original file: 5 0 4 1 9 2 1 3 1 4.
    np.testing.assert_array_equal(d["label"][:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(mnist.load_mnist("test")["label"][:5], [7, 2, 1, 0, 4])


def test_cached_and_read_only():
    a, b = mnist.load_mnist("test"), mnist.load_mnist("test")
    assert a["image"] is b["image"]
    with pytest.raises(ValueError):
        a["image"][0, 0, 0] = 1


def test_downsample_is_rounded_block_mean():
    imgs = np.array([[[0, 1, 255, 255], [0, 0, 255, 254], [10, 20, 3, 3], [30, 40, 3, 4]]], np.uint8)
    out = mnist.downsample(imgs, 2)
    # means 0.25 -> 0, 254.75 -> 255, 25 -> 25, 3.25 -> 3; half rounds up: 1.5 -> 2
    np.testing.assert_array_equal(out, [[[0, 255], [25, 3]]])
    np.testing.assert_array_equal(mnist.downsample(np.array([[[1, 2], [1, 2]]], np.uint8), 1), [[[2]]])
    d14 = mnist.load_mnist("test", resolution=14)
    assert d14["image"].shape == (10000, 14, 14) and d14["image"].dtype == np.uint8
    full = mnist.load_mnist("test")["image"].astype(np.float64)
    ref = full.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))
    assert np.abs(d14["image"] - ref).max() <= 0.5
    with pytest.raises(ValueError, match="`resolution`"):
        mnist.load_mnist("test", resolution=5)


def test_static_binarization_deterministic_and_calibrated():
    a = mnist.load_binarized("test")
    assert a["image"].shape == (10000, 28, 28) and a["image"].dtype == np.uint8
    assert set(np.unique(a["image"])) == {0, 1}
    # Recomputed from scratch with the documented seed: same bits.
    grey = mnist.load_mnist("test")["image"]
    again = mnist.static_binarize(grey, [mnist.STATIC_SEED, 1])
    np.testing.assert_array_equal(a["image"], again)
    # Pixels at 0 stay 0, pixels at 255 become 1, the mean matches grey / 255.
    assert np.all(a["image"][grey == 0] == 0) and np.all(a["image"][grey == 255] == 1)
    np.testing.assert_allclose(a["image"].mean(), grey.mean() / 255, atol=2e-3)
    # A different seed gives different bits; train and test use different streams.
    other = mnist.static_binarize(grey[:100], [mnist.STATIC_SEED + 1, 1])
    assert not np.array_equal(other, a["image"][:100])


def test_static_binarization_fingerprint():
    # Guards against silent changes of the draw (numpy stream, seed, comparison).
    # Values recorded when the binarization was defined (numpy 2.4, PCG64).
    a = mnist.load_binarized("test")["image"]
    assert int(a.sum()) == 1038876
    assert _md5(np.ascontiguousarray(a).tobytes()) == "64fe50cc2a36df7361bb86d54ad4cf7f"


def test_dynamic_binarize_dict_and_array():
    grey = mnist.load_mnist("test")["image"][:512]
    batch = {"image": grey, "label": np.arange(512)}
    k1, k2 = jax.random.key(0), jax.random.key(1)
    b1 = mnist.dynamic_binarize(batch, k1)
    b2 = mnist.dynamic_binarize(batch, k2)
    assert set(b1) == {"image", "label"} and b1["label"] is batch["label"]
    assert b1["image"].shape == grey.shape and b1["image"].dtype == np.uint8
    assert set(np.unique(np.asarray(b1["image"]))) == {0, 1}
    assert not np.array_equal(b1["image"], b2["image"])
    np.testing.assert_array_equal(b1["image"], mnist.dynamic_binarize(grey, k1))  # same key, same bits
    mean = np.mean([np.asarray(mnist.dynamic_binarize(grey, jax.random.key(i))).mean() for i in range(4)])
    np.testing.assert_allclose(mean, grey.mean() / 255, atol=3e-3)
    with pytest.raises(ValueError, match="image"):
        mnist.dynamic_binarize({"x": grey}, k1)


def test_dynamic_binarize_as_stream_transform():
    data = mnist.load_mnist("test")
    stream = BatchStream(data, batch_size=32, seed=3, transform=mnist.dynamic_binarize)
    s0, s0_again, s1 = stream(0), stream(0), stream(1)
    assert s0["image"].shape == (32, 28, 28)
    np.testing.assert_array_equal(s0["image"], s0_again["image"])  # pure function of (seed, step)
    assert not np.array_equal(s0["image"], s1["image"])


def test_bad_split_names_argument():
    with pytest.raises(ValueError, match="`split`"):
        mnist.load_mnist("validation")
    with pytest.raises(ValueError, match="`split`"):
        mnist.load_binarized("valid")
