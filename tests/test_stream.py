"""BatchStream: a pure function of (seed, step); each process's rows a slice of the global batch."""

import jax
import numpy as np
import pytest

from mamjax.data import dynamic_binarize
from mamjax.data.stream import BatchStream


def _data(n=40):
    return {"x": np.arange(n * 3, dtype=np.float32).reshape(n, 3), "y": np.arange(n)}


def test_deterministic_and_epoch_permutations():
    s = BatchStream(_data(), batch_size=8, seed=3)
    np.testing.assert_array_equal(s(7)["y"], BatchStream(_data(), 8, seed=3)(7)["y"])  # a fresh object agrees
    epoch = np.concatenate([s(i)["y"] for i in range(5)])
    assert sorted(epoch) == list(range(40))  # one epoch covers every row once
    assert not np.array_equal(epoch, np.concatenate([s(i)["y"] for i in range(5, 10)]))  # new permutation
    np.testing.assert_array_equal(s(3)["x"][:, 0], 3 * s(3)["y"])  # rows stay aligned across arrays


@pytest.mark.parametrize("count", [2, 4])
def test_process_slices_concatenate_to_the_global_batch(count):
    ref = BatchStream(_data(), batch_size=8, seed=5, process_index=0, process_count=1)
    parts = [BatchStream(_data(), batch_size=8, seed=5, process_index=p, process_count=count) for p in range(count)]
    for step in (0, 4, 9):  # 9: second epoch
        local = [p(step) for p in parts]
        assert all(b["y"].shape == (8 // count,) for b in local)
        np.testing.assert_array_equal(np.concatenate([b["y"] for b in local]), ref(step)["y"])


def test_transform_applied_to_the_global_batch():
    images = np.random.default_rng(0).integers(0, 256, size=(32, 4, 4)).astype(np.uint8)
    ref = BatchStream({"image": images}, 16, seed=2, transform=dynamic_binarize, process_count=1, process_index=0)
    halves = [BatchStream({"image": images}, 16, seed=2, transform=dynamic_binarize, process_count=2,
                          process_index=p)(1)["image"] for p in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), ref(1)["image"])  # the same draw, split


def test_defaults_to_jax_process_and_bare_arrays():
    s = BatchStream(np.arange(10), 4, seed=0)
    assert (s.process_index, s.process_count) == (jax.process_index(), jax.process_count())
    assert s(0).shape == (4,) and s.local_batch_size == 4


@pytest.mark.parametrize("kw,match", [
    (dict(batch_size=6, process_count=4), "divisible by the 4 processes"),
    (dict(batch_size=8, process_count=2, process_index=2), "process_index"),
    (dict(batch_size=8, process_count=0, process_index=0), "process_count >= 1"),
    (dict(batch_size=8, process_count=2.0), "`process_count` must be an int"),
    (dict(batch_size=True), "`batch_size`"),
])
def test_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        BatchStream(_data(), seed=0, **kw)
