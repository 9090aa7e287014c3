"""The attention example: config variants, run list errors, one sharded step of each paper-sized setting."""

import importlib.util
import os

import jax
import numpy as np
import optax
import pytest

from mamjax import cli, sharding, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example():
    spec = importlib.util.spec_from_file_location("attention_mnist",
                                                  os.path.join(ROOT, "examples", "attention_mnist.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_variants_and_run_list():
    mod = _example()
    c = cli.load_config("attention_mnist")
    assert (c.dataset, c.size, c.model.num_glimpses, c.model.num_scales, c.model.patch) == ("translated", 60, 6, 3, 12)
    assert c.num_train == 60000 and c.eval.num_test == 10000 and c.eval.samples == 5
    cl = cli.load_config("attention_mnist:cluttered100,quick")
    assert (cl.dataset, cl.size, cl.num_clutter, cl.steps) == ("cluttered", 100, 8, 800)
    assert mod.parse_runs("wsram:5, reinforce:1") == [("wsram", 5), ("reinforce", 1)]
    for bad in ("wsram", "wsram:0", "ram:1", "wsram:x"):
        with pytest.raises(cli.ConfigError, match="config.runs"):
            mod.parse_runs(bad)
    with pytest.raises(cli.ConfigError, match="unknown variant"):
        cli.load_config("attention_mnist:huge")


@pytest.mark.slow  # compile of the 8-device step: ~10-30 s each on a loaded 2-core CPU
@pytest.mark.parametrize("variant,run", [("translated", "wsram:5"), ("translated", "reinforce:1"),
                                         ("cluttered100", "wsram:5"), ("gaussian,lstm", "wsram:2")])
def test_paper_sized_config_runs_one_sharded_step(variant, run):
    mod = _example()
    config = cli.load_config(f"attention_mnist:{variant}")
    (method, k), = mod.parse_runs(run)
    ram, params, loss_fn = mod.make_run(config, method, k, jax.random.key(0))
    assert ram.config.image_size == config.size and ram.config.num_glimpses == config.model.num_glimpses
    mesh = cli.make_mesh(None)
    n = int(mesh.devices.size)
    data = mod.load_data(config, "test", 2 * n)
    assert data["image"].shape == (2 * n, config.size, config.size)
    opt = optax.adam(config.lr)
    step = train.make_train_step(loss_fn, opt)
    state, m = step(sharding.replicate(train.TrainState.create(params, opt), mesh),
                    sharding.shard_batch({"image": data["image"], "label": data["label"]}, mesh), jax.random.key(1))
    assert int(state.step) == 1 and np.isfinite(float(m["loss"]))
