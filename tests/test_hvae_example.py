"""The MNIST example: its config variants, one train step of the paper-sized model, and (slow) a run end to end."""

import importlib.util
import os

import jax
import numpy as np
import pytest

from mamjax import cli, sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example():
    spec = importlib.util.spec_from_file_location("hvae_mnist", os.path.join(ROOT, "examples", "hvae_mnist.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_config_variants_and_errors():
    paper = cli.load_config("hvae_mnist")
    assert paper.model.latent_sizes == (300, 200, 100, 50) and paper.model.posterior == "structured"
    assert paper.eval.iwae_k == 500 and paper.eval.num_test == 10000 and paper.batch_size == 100
    mf = cli.load_config("hvae_mnist:mean_field,quick")
    assert mf.model.posterior == "mean_field" and mf.steps == 600 and mf.eval.iwae_k == 50
    assert cli.load_config("hvae_mnist:vae2").model.latent == "gaussian"
    assert cli.load_config("hvae_mnist:conv").model.conv
    with pytest.raises(cli.ConfigError, match="unknown variant 'fast'"):
        cli.load_config("hvae_mnist:fast")


def _one_sharded_step(config):
    mod = _example()
    s = mod.make_setup(config)
    kernels = [a.shape for a in jax.tree.leaves(s.state.params) if a.ndim == 2]
    for n in config.model.latent_sizes:  # every stochastic layer's posterior head is there, at its width
        assert any(shape[1] == n for shape in kernels), (n, kernels)
    mesh = cli.make_mesh(None)
    batch = {"image": (np.random.default_rng(0).random((8, 28, 28)) < 0.3).astype(np.float32),
             "beta": np.full((8,), 0.5, np.float32)}
    state, m = s.train_step(sharding.replicate(s.state, mesh), sharding.shard_batch(batch, mesh), jax.random.key(0))
    assert int(state.step) == 1 and np.isfinite(float(m["elbo"]))
    assert {f"kl_l{i + 1}" for i in range(len(config.model.latent_sizes))} <= set(m)


@pytest.mark.slow  # ~15 s on the loaded 2-core CPU (compile of the 8-device step)
def test_config_drives_the_example_step_at_small_widths():
    """The config's code path (config -> example's make_setup -> sharded step), widths shrunk to stay fast."""
    config = cli.load_config("hvae_mnist:vae1")  # the 1-layer Gaussian model compiles in seconds
    config.model.latent_sizes, config.model.hidden_sizes = (4,), (8,)
    _one_sharded_step(config)


@pytest.mark.slow  # ~1 min on a loaded 2-core CPU (build ~20 s, compile of the 8-device step ~40 s)
@pytest.mark.parametrize("variant", ["paper", "conv", "mean_field"])
def test_paper_sized_config_runs_one_sharded_step(variant):
    """The paper's model builds from its config and takes one data-parallel step at batch 8 (one row per virtual
    device) on CPU."""
    _one_sharded_step(cli.load_config(f"hvae_mnist:{variant}"))


@pytest.mark.slow
def test_example_runs_resumes_and_plots(tmp_path):
    mod = _example()
    base = ["--config", os.path.join(ROOT, "configs", "hvae_mnist.py:vae1,quick"), "--config.eval.num_test=30", "--config.eval.iwae_k=5",
            "--config.eval.every=10", "--num_devices=1", "--workdir", str(tmp_path)]
    first = mod.main(base + ["--config.steps=20"])
    for name in ("samples.png", "reconstructions.png", "sparsity.png", "curves.png", "results.json", "config.json"):
        assert (tmp_path / name).exists(), name
    again = mod.main(base + ["--config.steps=20"])  # resumes at step 20: no training, same evaluation
    assert again == first
    with pytest.raises(cli.ConfigMismatchError, match="steps"):  # a different config is refused on resume
        mod.main(base + ["--config.steps=30"])
