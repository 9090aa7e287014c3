"""benchmarks.lml_bench's re-implementation of the official PyTorch loop scores what mamjax scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml


@pytest.mark.parametrize("route", ["low-rank", "ordering"])
def test_official_loop_on_our_masks_equals_our_estimate(route):
    torch = pytest.importorskip("torch")
    from benchmarks import lml_bench as bench

    d, k = 6, 3
    with jax.enable_x64(True):
        w = jax.random.normal(jax.random.key(0), (d, 2))
        x = lml.ppca_sample(jax.random.key(1), w, bench.NOISE_VAR, 40)
        key = jax.random.key(2)
        ours = float(jnp.mean(bench._estimate_fn(route, k)(w, x, key)))
        masks = bench._route_masks(route, d, k, key)
    perms = bench._perms(torch, masks)
    official = bench.official_mpt(torch, torch.from_numpy(np.array(x)), torch.from_numpy(np.array(w)), bench.BETA, k,
                                  perms).item()
    # rtol: the loop builds eye(D) / beta in float32 (as the official code does), the rest is float64.
    np.testing.assert_allclose(official, ours, rtol=1e-7)
