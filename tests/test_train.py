import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mamjax import nn, train
from mamjax.data.stream import BatchStream

HELPER = os.path.join(os.path.dirname(__file__), "helpers", "toy_run.py")


def _toy_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 3)).astype(np.float32)
    y = (x @ np.array([1.0, -1.0, 2.0], np.float32))[:, None]
    apply, params = nn.functional(nn.MLP(3, [16], 1, rngs=nnx.Rngs(0)))

    def loss_fn(params, batch, key):
        del key
        return jnp.mean((apply(params, batch["x"]) - batch["y"]) ** 2), {"mse": 0.0}

    return BatchStream({"x": x, "y": y}, batch_size=16, seed=0), params, loss_fn


def test_fit_lowers_loss_and_logs(tmp_path):
    stream, params, loss_fn = _toy_problem()
    opt = optax.adam(1e-2)
    state = train.TrainState.create(params, opt)
    state, history = train.fit(train.make_train_step(loss_fn, opt), state, stream, num_steps=200,
                               key=jax.random.key(0), workdir=tmp_path, save_every=100, log_every=20,
                               eval_fn=lambda s: {"n": 1.0}, progress=False)
    assert int(state.step) == 200
    assert history[-1]["loss"] < 0.1 * history[0]["loss"]
    log = train.read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in log] == list(range(20, 201, 20))
    assert "eval/n" in log[-1]
    png = train.plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "curves.png", keys=["loss"])
    assert os.path.getsize(png) > 1000


def test_fit_resumes_and_rejects_other_key(tmp_path):
    stream, params, loss_fn = _toy_problem()
    opt = optax.sgd(1e-2)
    step_fn = train.make_train_step(loss_fn, opt)
    state, _ = train.fit(step_fn, train.TrainState.create(params, opt), stream, num_steps=10,
                         key=jax.random.key(0), workdir=tmp_path, save_every=5, progress=False)
    # Same num_steps again: restored at 10, nothing more to do.
    state2, hist = train.fit(step_fn, train.TrainState.create(params, opt), stream, num_steps=10,
                             key=jax.random.key(0), workdir=tmp_path, save_every=5, progress=False)
    assert hist == [] and int(state2.step) == 10
    chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), state.params, state2.params)
    assert all(jax.tree.leaves(chex_equal))
    with pytest.raises(ValueError, match="key"):
        train.fit(step_fn, train.TrainState.create(params, opt), stream, num_steps=12,
                  key=jax.random.key(1), workdir=tmp_path, progress=False)


def test_stateful_step_threads_model_state():
    opt = optax.sgd(0.1)

    def loss_fn(params, model_state, batch, key):
        del key
        return jnp.sum((params["w"] - batch) ** 2), ({}, model_state + 1)

    step = train.make_train_step(loss_fn, opt, stateful=True)
    state = train.TrainState.create({"w": jnp.zeros(2)}, opt, model_state=jnp.zeros((), jnp.int32))
    state, metrics = step(state, jnp.ones(2), jax.random.key(0))
    assert int(state.model_state) == 1 and float(metrics["loss"]) == 2.0
    np.testing.assert_allclose(state.params["w"], 0.2 * np.ones(2))


def test_killed_run_resumes_bit_identical(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="")

    def run(workdir, out, kill_at=None):
        cmd = [sys.executable, HELPER, str(workdir), "40", str(out)] + ([str(kill_at)] if kill_at else [])
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)

    full = run(tmp_path / "a", tmp_path / "a.npz")
    assert full.returncode == 0, full.stderr
    killed = run(tmp_path / "b", tmp_path / "b.npz", kill_at=23)
    assert killed.returncode == -9, killed.stderr  # really died mid-run
    assert not (tmp_path / "b.npz").exists()
    resumed = run(tmp_path / "b", tmp_path / "b.npz")
    assert resumed.returncode == 0, resumed.stderr
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert int(b["step"]) == 40
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])  # bit-identical, not merely close
    steps = [r["step"] for r in train.read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 40
