"""The examples stop with the non-finite message and a non-zero exit on a NaN / huge learning rate (issue 18)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(script, *args, cwd, **extra_env):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="", CI="1", PYTHONPATH=ROOT, **extra_env)
    return subprocess.run([sys.executable, os.path.join(ROOT, "examples", script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("lr", ["nan", pytest.param("1e30", marks=pytest.mark.slow)])
def test_marginal_ising_stops_on_nonfinite(tmp_path, lr):
    out = _run("marginal_ising.py", "--config", os.path.join(ROOT, "configs", "marginal_ising.py:quick"),
               "--config.side=3", "--config.steps=60", "--config.num_chains=8", "--config.width=8",
               "--config.depth=1", "--config.eval.num_eval=10", f"--config.lr={lr}",
               "--workdir", str(tmp_path / "wd"), cwd=tmp_path)
    assert out.returncode != 0, out.stdout[-2000:]
    assert "error: non-finite" in out.stderr and "at step" in out.stderr, out.stderr[-2000:]
    assert "nan" not in out.stdout.lower(), out.stdout[-2000:]  # no tables of NaN


@pytest.mark.slow
def test_marginal_mnist_stops_on_nonfinite(tmp_path):
    out = _run("marginal_mnist.py", "--config", os.path.join(ROOT, "configs", "marginal_mnist.py:quick"),
               "--config.arm_steps=60", "--config.mam_steps=10", "--config.width=8", "--config.depth=1",
               "--config.batch_size=8", "--config.eval.num_test=8", "--config.eval.num_subsets=8",
               "--config.eval.agreement_images=4", "--config.lr=nan", "--num_devices=1",
               "--workdir", str(tmp_path / "wd"), cwd=tmp_path)
    assert out.returncode != 0 and "error: non-finite" in out.stderr, (out.stdout[-2000:], out.stderr[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("script,args", [
    ("hvae_mnist.py", ["--config", os.path.join(ROOT, "configs", "hvae_mnist.py:quick"), "--config.steps=30",
                       "--config.eval.num_test=20", "--num_devices=1"]),
    ("attention_mnist.py", ["--config", os.path.join(ROOT, "configs", "attention_mnist.py:quick"),
                            "--config.steps=20", "--config.runs=reinforce:1", "--config.num_train=640",
                            "--config.eval.num_test=64", "--num_devices=1"]),
])
def test_hvae_and_attention_examples_stop_on_nonfinite(tmp_path, script, args):
    env = {"PYTHONPATH": ROOT}  # the example imports mamjax from this checkout, whatever is installed
    out = _run(script, *args, "--config.lr=nan", "--workdir", str(tmp_path / "wd"), cwd=tmp_path, **env)
    assert out.returncode != 0 and "error: non-finite" in out.stderr, (out.stdout[-2000:], out.stderr[-2000:])
    assert "nan" not in out.stdout.lower(), out.stdout[-2000:]
