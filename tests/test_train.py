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
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    # One device (no forced device count), with the suite's cheap compiler options: all three runs compile alike.
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))  # this checkout's mamjax

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


# --- NaN, damaged workdirs, locks, bad arguments (issue 18) ---------------------------------------

import json
import warnings

from mamjax import checkpoint as ckpt_lib


def _strict_log(path):
    """Parses metrics.jsonl as strict JSON (NaN / Infinity are not JSON)."""
    def no_constants(name):
        raise ValueError(f"non-JSON constant {name}")
    with open(path) as f:
        return [json.loads(line, parse_constant=no_constants) for line in f]


def _poisoned(stream, from_step):
    """The stream with NaN inputs from ``from_step`` on."""
    def s(step):
        b = dict(stream(step))
        if step >= from_step:
            b["x"] = np.full_like(b["x"], np.nan)
        return b
    return s


def _fit(tmp_path, stream, opt=None, params=None, loss_fn=None, **kw):
    base, p0, lf = _toy_problem()
    opt = opt or optax.adam(1e-2)
    kw = dict(dict(num_steps=30, key=jax.random.key(0), workdir=tmp_path, save_every=5, keep=2, log_every=4,
                   progress=False), **kw)
    return train.fit(train.make_train_step(loss_fn or lf, opt), train.TrainState.create(params or p0, opt),
                     stream or base, **kw)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    base, _, _ = _toy_problem()
    with pytest.raises(train.NonFiniteError, match=r"non-finite loss \(nan\) at step 13(.|\n)*step 10") as err:
        _fit(tmp_path, _poisoned(base, 13))
    assert err.value.step == 13
    c = ckpt_lib.Checkpointer(tmp_path / "checkpoints")
    assert c.all_steps() == [5, 10]  # keep=2 never deleted the last finite one for a NaN one
    c.close()
    log = _strict_log(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in log] == [4, 8, 12] and all(np.isfinite(r["loss"]) for r in log)
    # Rerun with clean data: resumes from the last good step and finishes.
    state, _ = _fit(tmp_path, base)
    assert int(state.step) == 30


def test_huge_learning_rate_never_checkpoints_nonfinite_params(tmp_path):
    # lr 1e39 is inf in float32: the loss and gradient of step 0 are finite, the parameters after it are not.
    with pytest.raises(train.NonFiniteError, match="non-finite parameters after the update at step 0") as err:
        _fit(tmp_path / "a", None, opt=optax.sgd(1e39), save_every=1)
    assert "No checkpoint was written" in str(err.value)
    assert ckpt_lib.Checkpointer(tmp_path / "a" / "checkpoints").all_steps() == []
    with pytest.raises(train.NonFiniteError, match="at step 1"):
        _fit(tmp_path / "b", None, opt=optax.sgd(1e38), save_every=1)
    c = ckpt_lib.Checkpointer(tmp_path / "b" / "checkpoints")
    assert c.all_steps() == [1]
    state, _ = c.restore(train.TrainState.create(_toy_problem()[1], optax.sgd(1e38)))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))
    c.close()


def test_nonfinite_eval_metric_is_null_in_strict_log(tmp_path):
    _, history = _fit(tmp_path, None, num_steps=8, eval_fn=lambda s: {"kl": float("inf")}, eval_every=4)
    log = _strict_log(tmp_path / "metrics.jsonl")
    assert [r["eval/kl"] for r in log] == [None, None] and history[-1]["eval/kl"] == float("inf")


def test_resume_past_damage_and_torn_log(tmp_path, capsys):
    _fit(tmp_path, None, num_steps=20, keep=3)  # checkpoints 10, 15, 20
    ck = tmp_path / "checkpoints"
    for f in (ck / "20").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncated array files
    os.makedirs(ck / "25")  # an empty step directory
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"loss": 0.1, "st')  # torn by a kill during a write
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        state, _ = _fit(tmp_path, None, num_steps=30, keep=3)
    msgs = [str(x.message) for x in w]
    assert any("step 25" in m for m in msgs) and any("step 20" in m for m in msgs), msgs
    assert "resumed from step 15" in capsys.readouterr().err
    assert int(state.step) == 30
    steps = [r["step"] for r in _strict_log(tmp_path / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    # The resumed run matches an uninterrupted one.
    ref, _ = _fit(tmp_path / "ref", None, num_steps=30)
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)


def test_deleted_metadata_of_train_state(tmp_path):
    _fit(tmp_path, None, num_steps=10)
    os.remove(tmp_path / "checkpoints" / "10" / "state" / "_METADATA")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state, _ = _fit(tmp_path, None, num_steps=12)  # step 10 restores or falls back to 5: never wrong
    ref, _ = _fit(tmp_path / "ref", None, num_steps=12)
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)


def test_all_checkpoints_damaged_is_a_clear_error(tmp_path):
    _fit(tmp_path, None, num_steps=10)
    for f in (tmp_path / "checkpoints").rglob("*"):
        if f.is_file() and f.parent.name == "meta":
            f.write_text("")
    with pytest.raises(ckpt_lib.CheckpointError, match="no checkpoint .* can be restored"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _fit(tmp_path, None, num_steps=12)


def test_resume_with_other_dtype_is_refused(tmp_path):
    _fit(tmp_path, None, num_steps=5)
    _, params, loss_fn = _toy_problem()
    bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    with pytest.raises(ckpt_lib.CheckpointMismatchError, match="bfloat16.* in the template but float32"):
        _fit(tmp_path, None, params=bf16, num_steps=10)


def test_second_run_on_same_workdir_is_refused(tmp_path):
    with ckpt_lib.DirectoryLock(tmp_path):  # what a concurrent run holds
        with pytest.raises(ckpt_lib.DirectoryLockedError, match="in use by another run"):
            _fit(tmp_path, None, num_steps=5)
    assert not (tmp_path / "checkpoints").exists()
    _fit(tmp_path, None, num_steps=5)  # released by the refused call and by a finished run
    _fit(tmp_path, None, num_steps=6)


def test_second_process_on_same_workdir_is_refused(tmp_path):
    code = ("import sys, time; from mamjax.checkpoint import DirectoryLock; "
            "l = DirectoryLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ckpt_lib.DirectoryLockedError, match=f"pid {holder.pid}"):
            _fit(tmp_path, None, num_steps=5)
    finally:
        holder.kill()
        holder.wait()
    _fit(tmp_path, None, num_steps=5)  # the OS released the killed holder's lock


@pytest.mark.parametrize("kw,err,match", [
    (dict(log_every=2.5), TypeError, "`log_every` must be an int"),
    (dict(log_every=0), ValueError, "`log_every` must be >= 1"),
    (dict(eval_every=-1), ValueError, "`eval_every` must be >= 0"),
    (dict(eval_every=1.5), TypeError, "`eval_every`"),
    (dict(num_steps=-1), ValueError, "`num_steps`"),
    (dict(num_steps=3.0), TypeError, "`num_steps`"),
    (dict(save_every=0), ValueError, "`save_every`"),
    (dict(keep=0), ValueError, "`keep`"),
])
def test_fit_bad_arguments(tmp_path, kw, err, match):
    with pytest.raises(err, match=match):
        _fit(tmp_path, None, **kw)


def test_fit_bad_workdir(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="`workdir`"):
        _fit(tmp_path / "file", None, num_steps=2)
    with pytest.raises(NotADirectoryError, match="`workdir`"):  # fails before any step runs
        _fit(tmp_path / "file" / "sub", None, num_steps=2)


# --- fit options (issue 13): steps per dispatch, prefetch, compile time, TensorBoard -----------------

def _noisy_problem():
    """The toy regression with a loss that reads the per-step key (so keys must match step by step)."""
    stream, params, _ = _toy_problem()
    apply, _ = nn.functional(nn.MLP(3, [16], 1, rngs=nnx.Rngs(0)))

    def loss_fn(params, batch, key):
        noise = 0.1 * jax.random.normal(key, batch["y"].shape)
        return jnp.mean((apply(params, batch["x"]) - batch["y"] - noise) ** 2), {}

    return stream, params, loss_fn


def _run(workdir, **kw):
    stream, params, loss_fn = _noisy_problem()
    opt = optax.adam(1e-2)
    kw = dict(dict(num_steps=18, key=jax.random.key(0), workdir=workdir, save_every=8, keep=5, log_every=4,
                   progress=False), **kw)
    return train.fit(train.make_train_step(loss_fn, opt), train.TrainState.create(params, opt), stream, **kw)


def test_steps_per_dispatch_equals_one_step_at_a_time(tmp_path):
    ref, ref_hist = _run(tmp_path / "k1")
    got, hist = _run(tmp_path / "k4", steps_per_dispatch=4, eval_fn=lambda s: {"step": s.step}, eval_every=6)
    assert int(got.step) == 18
    for a, b in zip(jax.tree.leaves(ref.params), jax.tree.leaves(got.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    log = [r["step"] for r in hist if "loss" in r]
    assert log == [r["step"] for r in ref_hist] == [4, 8, 12, 16, 18]  # logs land on the same steps
    assert [r["eval/step"] for r in hist if "eval/step" in r] == [6, 12, 18]  # evaluated at those steps' states
    np.testing.assert_allclose([r["loss"] for r in hist if "loss" in r], [r["loss"] for r in ref_hist], rtol=1e-5)
    for d in ("k1", "k4"):
        assert ckpt_lib.Checkpointer(tmp_path / d / "checkpoints").all_steps() == [8, 16, 18]


def test_prefetch_depth_and_compile_time(tmp_path):
    a, hist = _run(tmp_path, num_steps=8, log_every=4, prefetch=1)
    assert hist[0]["compile_sec"] > 0 and "compile_sec" not in hist[1]  # once, in the first record
    assert all(r["steps_per_sec"] > 0 for r in hist)
    b, hist = _run(None, num_steps=8, log_every=1, prefetch=3)
    assert "steps_per_sec" not in hist[0] and "steps_per_sec" in hist[1]  # the compiling dispatch is not timed
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)  # prefetch depth (and logging) do not change the numbers


def test_multistep_nonfinite_names_the_first_bad_step(tmp_path):
    stream, _, _ = _noisy_problem()
    with pytest.raises(train.NonFiniteError, match="at step 10") as err:
        _fit(tmp_path, _poisoned(stream, 10), steps_per_dispatch=4, log_every=8, save_every=4)
    assert err.value.step == 10
    assert ckpt_lib.Checkpointer(tmp_path / "checkpoints").all_steps() == [4, 8]


def test_tensorboard_events_beside_the_log(tmp_path):
    pytest.importorskip("tensorboardX")
    _run(tmp_path, num_steps=8, tensorboard=True)
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    with pytest.raises(ValueError, match="`tensorboard=True` needs a `workdir`"):
        _run(None, num_steps=2, tensorboard=True)


def test_tensorboard_without_tensorboardx_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="pip install tensorboardX"):
        _run(tmp_path, num_steps=2, tensorboard=True)


def test_plot_metrics_leaves_the_backend_alone(tmp_path):
    import matplotlib

    _run(tmp_path, num_steps=8)
    before = matplotlib.get_backend()
    png = train.plot_metrics(tmp_path / "metrics.jsonl", tmp_path / "c.png")
    assert matplotlib.get_backend() == before and os.path.getsize(png) > 1000
    src = open(train.__file__).read()
    assert "matplotlib.use(" not in src


def test_make_multi_step_bad_count():
    with pytest.raises(ValueError, match="`num_steps`"):
        train.make_multi_step(lambda s, b, k: (s, {}), 0)


def test_multistep_compiles_once_across_fit_calls():
    stream, params, loss_fn = _noisy_problem()
    traces = []

    def counted(p, b, k):
        traces.append(1)
        return loss_fn(p, b, k)

    opt = optax.sgd(1e-2)
    step_fn = train.make_train_step(counted, opt)
    state, _ = train.fit(step_fn, train.TrainState.create(params, opt), stream, num_steps=8, key=jax.random.key(0),
                         log_every=4, progress=False, steps_per_dispatch=4)
    n = len(traces)
    state, _ = train.fit(step_fn, state, stream, num_steps=16, key=jax.random.key(0), log_every=4, progress=False,
                         steps_per_dispatch=4)  # e.g. a loop of fit calls to growing targets
    assert int(state.step) == 16 and len(traces) == n == 1
