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


def test_per_size_backward_gives_the_one_graph_gradient(monkeypatch):
    torch = pytest.importorskip("torch")
    from benchmarks import lml_bench as bench

    assert bench.official_backward_per_size(2000, 200, 20) and not bench.official_backward_per_size(2000, 200, 5)
    d, k = 5, 2
    w = jax.random.normal(jax.random.key(0), (d, 2))
    xt = torch.from_numpy(np.array(lml.ppca_sample(jax.random.key(1), w, bench.NOISE_VAR, 30)))
    grads, losses = [], []
    for graph_max in (1e30, 0.0):  # one graph, then one backward per size
        monkeypatch.setattr(bench, "OFFICIAL_GRAPH_MAX_FLOATS", graph_max)
        assert bench.official_backward_per_size(30, d, k) == (graph_max == 0.0)
        torch.manual_seed(3)
        wt = torch.nn.Parameter(torch.from_numpy(np.array(w)))
        losses.append(bench.official_train_step(torch, xt, wt, torch.optim.SGD([wt], lr=0.0), k))
        grads.append(wt.grad.numpy().copy())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)
