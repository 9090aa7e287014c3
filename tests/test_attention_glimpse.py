"""Glimpse sensor vs a plain numpy crop; location grid; translated / cluttered MNIST generation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax.attention import data, glimpse


def numpy_glimpse(image, centre, patch, num_scales):
    """Reference: explicit zero-filled crop, then block means, one scale at a time."""
    h, w = image.shape
    out = np.zeros((num_scales, patch, patch))
    for s in range(num_scales):
        side, f = patch * 2 ** s, 2 ** s
        r0, c0 = centre[0] - side // 2, centre[1] - side // 2
        win = np.zeros((side, side))
        for i in range(side):
            for j in range(side):
                r, c = r0 + i, c0 + j
                if 0 <= r < h and 0 <= c < w:
                    win[i, j] = image[r, c]
        for i in range(patch):
            for j in range(patch):
                out[s, i, j] = win[i * f:(i + 1) * f, j * f:(j + 1) * f].mean()
    return out


@pytest.mark.parametrize("patch,num_scales", [(2, 3), (3, 2), (4, 1)])
def test_glimpse_equals_numpy_crop_batched(patch, num_scales):
    rng = np.random.default_rng(0)
    b, k, size = 3, 4, 13
    images = rng.random((b, size, size)).astype(np.float32)
    # Centres everywhere, including corners and edges.
    centres = rng.integers(0, size, (b, k, 2)).astype(np.int32)
    centres[0, 0] = (0, 0)
    centres[1, 1] = (size - 1, size - 1)
    centres[2, 2] = (0, size - 1)
    fn = jax.jit(jax.vmap(jax.vmap(lambda im, c: glimpse.extract_glimpse(im, c, patch=patch, num_scales=num_scales),
                                   in_axes=(None, 0)), in_axes=(0, 0)))
    got = np.asarray(fn(jnp.asarray(images), jnp.asarray(centres)))
    assert got.shape == (b, k, num_scales, patch, patch)
    for i in range(b):
        for j in range(k):
            np.testing.assert_allclose(got[i, j], numpy_glimpse(images[i], centres[i, j], patch, num_scales),
                                       rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("patch,num_scales", [(2, 3), (3, 2)])
def test_batched_sensors_equal_the_numpy_crop(patch, num_scales):
    """extract_glimpses (padded once, traced centres) and grid_glimpses (pooling matmuls) vs the reference."""
    rng = np.random.default_rng(1)
    b, size = 3, 13
    images = rng.random((b, size, size)).astype(np.float32)
    idx = np.array([0, 2, 2, 1, 0], np.int32)
    centres = np.array([[0, 0], [12, 12], [0, 12], [6, 3], [11, 1]], np.int32)
    padded = glimpse.pad_images(jnp.asarray(images), patch=patch, num_scales=num_scales)
    got = np.asarray(jax.jit(lambda p, i, c: glimpse.extract_glimpses(p, i, c, patch=patch, num_scales=num_scales))(
        padded, jnp.asarray(idx), jnp.asarray(centres)))
    assert got.shape == (5, num_scales, patch, patch)
    for n in range(5):
        np.testing.assert_allclose(got[n], numpy_glimpse(images[idx[n]], centres[n], patch, num_scales), atol=1e-6)
    grid = glimpse.location_grid(size, 4)
    table = np.asarray(glimpse.grid_glimpses(jnp.asarray(images), np.unique(grid[:, 0]), patch=patch,
                                             num_scales=num_scales))
    assert table.shape == (b, 16, num_scales, patch, patch)
    for i in range(b):
        for a in range(16):
            np.testing.assert_allclose(table[i, a], numpy_glimpse(images[i], grid[a], patch, num_scales), atol=1e-6)
    with pytest.raises(ValueError, match="centres"):
        glimpse.extract_glimpses(padded, jnp.zeros(5, jnp.int32), jnp.zeros((4, 2), jnp.int32), patch=patch,
                                 num_scales=num_scales)


def test_location_grid_and_normalization():
    g = glimpse.location_grid(60, 6)
    assert g.shape == (36, 2)
    np.testing.assert_array_equal(np.unique(g[:, 0]), [5, 15, 25, 35, 45, 55])
    np.testing.assert_array_equal(g[7], [15, 15])  # a = i * grid + j
    loc = glimpse.normalized_locations(g, 60)
    np.testing.assert_allclose(loc[0], [-1 + 11 / 60, -1 + 11 / 60], rtol=1e-6)
    assert np.all(np.abs(loc) < 1)
    with pytest.raises(ValueError, match="grid_size"):
        glimpse.location_grid(8, 9)


def _digits(n=6, side=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, (n, side, side)).astype(np.uint8), np.arange(n) % 10


def test_translated_places_digit_and_is_deterministic():
    digits, labels = _digits()
    out = data.translated(digits, labels, size=24, seed=3)
    again = data.translated(digits, labels, size=24, seed=3)
    np.testing.assert_array_equal(out["image"], again["image"])
    assert not np.array_equal(out["image"], data.translated(digits, labels, size=24, seed=4)["image"])
    for n in range(len(digits)):
        r, c = out["offset"][n]
        np.testing.assert_array_equal(out["image"][n, r:r + 10, c:c + 10], digits[n])
        assert out["image"][n].sum(dtype=np.int64) == digits[n].sum(dtype=np.int64)  # black elsewhere


def test_cluttered_adds_bounded_clutter_from_other_digits():
    digits, labels = _digits()
    base = data.translated(digits, labels, size=24, seed=5)
    out = data.cluttered(digits, labels, size=24, num_clutter=3, clutter_size=4, seed=5)
    np.testing.assert_array_equal(out["offset"], base["offset"])
    assert np.all(out["image"] >= base["image"])
    changed = (out["image"] != base["image"]).reshape(len(digits), -1).sum(1)
    assert np.all(changed <= 3 * 16) and changed.sum() > 0
    # Every clutter pixel value occurs in some other digit.
    for n in range(len(digits)):
        new = out["image"][n][out["image"][n] != base["image"][n]]
        others = np.concatenate([digits[m].ravel() for m in range(len(digits)) if m != n])
        assert np.isin(new, others).all()
    np.testing.assert_array_equal(out["image"], data.cluttered(digits, labels, size=24, num_clutter=3,
                                                               clutter_size=4, seed=5)["image"])
