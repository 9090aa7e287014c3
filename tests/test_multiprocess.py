"""Two processes x 4 CPU devices (jax.distributed, gloo) train like one process with 8 devices or 1.

Every run is a subprocess of tests/helpers/multiprocess_run.py (XLA_FLAGS must be set before
jax is imported, and jax.distributed can be initialized once per process). Subprocess
timeouts turn a hang (a collective waiting for a dead peer) into a failure.
"""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from mamjax import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELPER = os.path.join(ROOT, "tests", "helpers", "multiprocess_run.py")
TIMEOUT = 240  # seconds per run; a healthy run takes a few seconds
STEPS = 12

pytestmark = pytest.mark.slow  # ~7 process starts (about 60 s on 2 cores): CI runs it explicitly


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
    env.update(PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]), CI="")
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _cmd(workdir, out, *extra):
    return [sys.executable, HELPER, "--workdir", str(workdir), "--out", str(out), "--steps", str(STEPS), *map(str, extra)]


def _run_one(workdir, out, *extra):
    r = subprocess.run(_cmd(workdir, out, *extra), env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def _run_two(workdir, out, *extra, expect_kill=False):
    """Starts processes 0 and 1 of one job; returns their (returncode, stderr).

    With ``expect_kill`` the first process to exit must have been SIGKILLed, and the other
    one is killed then (its collectives would wait for the dead peer).
    """
    port = _free_port()
    procs = [subprocess.Popen(_cmd(workdir, out, "--num-processes", 2, "--process-id", i, "--port", port,
                                   "--devices", 4, *extra), env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    deadline = time.monotonic() + TIMEOUT
    try:
        if expect_kill:
            while all(p.poll() is None for p in procs):
                assert time.monotonic() < deadline, "the killed run did not die"
                time.sleep(0.05)
            first = next(p for p in procs if p.poll() is not None)
            assert first.returncode == -9, first.communicate()[1][-3000:]
            for p in procs:
                if p.poll() is None:
                    p.kill()
        results = [p.communicate(timeout=max(deadline - time.monotonic(), 1)) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if not expect_kill:
        for p, (_, err) in zip(procs, results):
            assert p.returncode == 0, err[-3000:]
    return [(p.returncode, err) for p, (_, err) in zip(procs, results)]


def _params(path):
    z = np.load(path)
    return [z[f"arr_{i}"] for i in range(len(z.files) - 2)], int(z["step"]), int(z["mesh_size"])


def _assert_close(a, b):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=2e-5, atol=2e-6)


def test_two_processes_equal_one_process_and_resume(tmp_path):
    # One process with 8 devices, and with a 1-device mesh.
    _run_one(tmp_path / "w8", tmp_path / "eight.npz", "--devices", 8)
    _run_one(tmp_path / "w1", tmp_path / "one.npz", "--devices", 8, "--mesh-devices", 1)
    eight, step8, size8 = _params(tmp_path / "eight.p0.npz")
    one, step1, size1 = _params(tmp_path / "one.p0.npz")
    assert (step8, size8, step1, size1) == (STEPS, 8, STEPS, 1)
    init = _params_of_untrained()
    assert max(np.max(np.abs(a - b)) for a, b in zip(eight, init)) > 1e-2  # training moved the parameters
    _assert_close(one, eight)

    # Two processes x 4 devices: the same numbers; both processes hold them; only process 0 writes.
    runs = _run_two(tmp_path / "w2", tmp_path / "two.npz")
    for i in range(2):
        two, step, size = _params(tmp_path / f"two.p{i}.npz")
        assert (step, size) == (STEPS, 8)
        _assert_close(two, eight)
    assert "train:" in runs[0][1] and "train:" not in runs[1][1]  # the progress bar: process 0 only
    log = train.read_metrics(tmp_path / "w2" / "metrics.jsonl")
    assert [r["step"] for r in log] == list(range(2, STEPS + 1, 2))  # one line per log step, not two
    ref = train.read_metrics(tmp_path / "w8" / "metrics.jsonl")
    np.testing.assert_allclose([r["loss"] for r in log], [r["loss"] for r in ref], rtol=1e-5)
    assert sorted(os.listdir(tmp_path / "w2" / "checkpoints")) == ["12", "8"]

    # Killed mid-way (both processes SIGKILL themselves at step 7), resumed as two processes
    # from the step-4 checkpoint, with 2 steps per dispatch: the same final parameters.
    _run_two(tmp_path / "wk", tmp_path / "killed.npz", "--kill-at", 7, expect_kill=True)
    assert not list(tmp_path.glob("killed.p*.npz"))
    resumed = _run_two(tmp_path / "wk", tmp_path / "killed.npz", "--steps-per-dispatch", 2)
    assert "resumed from step 4" in resumed[0][1] and "resumed from step" not in resumed[1][1]
    for i in range(2):
        got, step, _ = _params(tmp_path / f"killed.p{i}.npz")
        assert step == STEPS
        _assert_close(got, eight)
    steps = [r["step"] for r in train.read_metrics(tmp_path / "wk" / "metrics.jsonl")]
    assert steps == list(range(2, STEPS + 1, 2))


def _params_of_untrained():
    import jax
    from flax import nnx

    from mamjax import nn

    _, params = nn.functional(nn.MLP(8, [32], 1, rngs=nnx.Rngs(0)))
    return [np.asarray(x) for x in jax.tree.leaves(params)]
