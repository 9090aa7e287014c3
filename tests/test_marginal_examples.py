"""The MaM examples through their configs: every variant loads, tiny runs end to end, paper-sized configs take
one train step on CPU at a tiny batch (shapes checked)."""

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example(name):
    spec = importlib.util.spec_from_file_location(f"_ex_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("spec", ["marginal_ising", "marginal_ising:ising30", "marginal_ising:layernorm,cpu",
                                  "marginal_ising:cpu,logp_mc", "marginal_ising:cpu,zero_z", "marginal_ising:quick", "marginal_mnist", "marginal_mnist:quick",
                                  "marginal_mnist:paper_optim", "marginal_mnist:mnist_unet",
                                  "marginal_mnist:unet_cpu", "marginal_mnist:unet_cpu,quick"])
def test_every_variant_loads(spec):
    c = cli.load_config(spec)
    assert c.steps > 0 if "ising" in spec else c.arm_steps > 0
    with pytest.raises(cli.ConfigError, match="unknown variant"):
        cli.load_config(spec.split(":")[0] + ":nope")


def test_ising_paper_configs_match_the_official_settings():
    c = cli.load_config("marginal_ising")
    assert (c.side, c.backbone, c.width, c.depth, c.num_chains, c.lr, c.clip, c.gibbs_steps, c.alpha,
            c.redraw_every, c.steps, c.logp_mc) == (10, "official_mlp", 2048, 4, 512, 5e-4, 0.0, 4, 4.0, 196, 39200,
                                                    False)
    assert cli.load_config("marginal_ising:cpu,logp_mc").logp_mc is True
    assert cli.load_config("marginal_ising:ising30").side == 30
    ex = _example("marginal_ising")
    assert cli.load_config("marginal_ising").f_empty == "official"  # the official code's fixed LogZ = D log K
    assert cli.load_config("marginal_ising:cpu,zero_z").f_empty == "zero"
    assert ex.f_empty_target("zero", 100) == 0.0
    np.testing.assert_allclose(ex.f_empty_target("official", 100), 100 * np.log(2))  # the official LogZ
    with pytest.raises(ValueError, match="f_empty"):
        ex.f_empty_target("one", 100)


@pytest.mark.slow  # ~15 s of CPU, mostly compilation
def test_ising_example_tiny_run_writes_results_and_kl_curve(tmp_path):
    wd = str(tmp_path / "wd")
    _example("marginal_ising").main([
        "--config", os.path.join(ROOT, "configs", "marginal_ising.py") + ":quick", "--workdir", wd,
        "--config.side=3", "--config.width=8", "--config.depth=2", "--config.num_chains=8", "--config.steps=20",
        "--config.redraw_every=10", "--config.log_every=10", "--config.eval.num_eval=16",
        "--config.eval.curve_every=10", "--config.eval.curve_samples=16", "--config.eval.gt_sweeps=10"])
    with open(os.path.join(wd, "results.json")) as f:
        res = json.load(f)
    assert [p["step"] for p in res["curve"]] == [10, 20]
    assert np.isfinite(res["kl_arm"]) and res["log_z"] is not None
    for png in ("kl_curve.png", "samples.png", "ground_truth.png"):
        assert os.path.getsize(os.path.join(wd, png)) > 1000


@pytest.mark.slow
def test_mnist_example_tiny_run(tmp_path):
    wd = str(tmp_path / "wd")
    _example("marginal_mnist").main([
        "--workdir", wd, "--config.resolution=7", "--config.width=16", "--config.depth=1", "--config.arm_steps=10",
        "--config.mam_steps=10", "--config.batch_size=8", "--config.eval.num_test=8", "--config.eval.num_subsets=8",
        "--config.eval.agreement_images=6", "--config.eval.ensemble=2"])
    with open(os.path.join(wd, "results.json")) as f:
        res = json.load(f)
    assert res["paper_agreement"]["num_censored"] == [6, 25, 44]  # 100/400/700 of 784, scaled to 49
    assert set(res["paper_agreement"]) >= {"mam", "ao_arm_s", "size_only", "censor_count"}


@pytest.mark.slow  # ~1-2 min of CPU: U-Net compilations of training, chain rule, completions
def test_mnist_example_unet_cpu_tiny_run(tmp_path):
    wd = str(tmp_path / "wd")
    _example("marginal_mnist").main([
        "--workdir", wd, "--config", os.path.join(ROOT, "configs", "marginal_mnist.py") + ":unet_cpu",
        "--config.resolution=7", "--config.arm_steps=3", "--config.mam_steps=3", "--config.batch_size=8",
        "--config.eval.num_test=4", "--config.eval.num_subsets=4", "--config.eval.agreement_images=3",
        "--config.eval.ensemble=2"])
    with open(os.path.join(wd, "results.json")) as f:
        res = json.load(f)
    assert res["config"]["backbone"] == "unet" and np.isfinite(res["ao_arm_e_nats"])
    assert set(res["paper_agreement"]) >= {"mam", "ao_arm_s", "size_only", "censor_count"}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["ising10", "ising30"])
def test_paper_ising_config_takes_one_train_step(variant):
    from mamjax.marginal import experiment

    c = cli.load_config(f"marginal_ising:{variant}")
    d = c.side ** 2
    log_f, *_ = experiment.ising_target(c.side)
    nets = experiment.make_nets(jax.random.key(0), d, 2, backbone=c.backbone, width=c.width, depth=c.depth)
    chains = jnp.zeros((4, d), jnp.int32)  # a tiny batch; the paper's is 512
    step, state = experiment.energy_stage(nets, log_f, chains, lr=c.lr, alpha=c.alpha, gibbs_steps=c.gibbs_steps,
                                          clip=c.clip, redraw=True)
    state, metrics = step(state, experiment.redraw_flags(4, c.redraw_every)(0), jax.random.key(1))
    assert state.model_state.shape == (4, d) and np.isfinite(float(metrics["loss"]))
    w = state.params["conditional"]["body"]["hidden"][0]["kernel"]
    assert w.shape == (2048, 2048)
