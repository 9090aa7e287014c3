"""experiment.train_two_stages: the two-stage recipe of the MaM examples, its resume and its stage-1 budget."""

import os

import jax
import numpy as np
import pytest

from mamjax import train
from mamjax.data import BatchStream
from mamjax.marginal import experiment

D, ARM_STEPS, MAM_STEPS, EVERY = 8, 4, 6, 2


def _setup():
    data = np.asarray(jax.random.bernoulli(jax.random.key(5), 0.4, (64, D)), np.int32)
    nets = experiment.make_nets(jax.random.key(0), D, 2, width=16, depth=1)
    return nets, BatchStream(data, 8, seed=1), BatchStream(data, 4, seed=2)


class _Recorder:
    """A stream that records the steps asked of it and raises at ``stop_at`` (a killed run)."""

    def __init__(self, stream, stop_at=None):
        self.stream, self.stop_at, self.steps = stream, stop_at, []

    def __call__(self, i):
        self.steps.append(int(i))
        if self.stop_at is not None and i >= self.stop_at:
            raise RuntimeError(f"stopped at step {i}")
        return self.stream(i)


def _run(nets, s1, s2, **kw):
    kw = dict(dict(arm_steps=ARM_STEPS, mam_steps=MAM_STEPS, keys=jax.random.split(jax.random.key(3)), lr=3e-3,
                   mam_lr=1e-3, chain_weight=0.5, save_every=EVERY, log_every=EVERY, progress=False), **kw)
    return experiment.train_two_stages(nets, s1, mam_stream=s2, **kw)


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _by_hand(nets, s1, s2):
    """The examples' former inline code: arm_stage + fit, then mam_stage + fit."""
    k_arm, k_mam = jax.random.split(jax.random.key(3))
    step, state = experiment.arm_stage(nets, lr=3e-3)
    state, _ = train.fit(step, state, s1, num_steps=ARM_STEPS, key=k_arm, log_every=EVERY, progress=False)
    step2, state2 = experiment.mam_stage(nets, state.params, s2(0), lr=1e-3, chain_weight=0.5)
    state2, _ = train.fit(step2, state2, s2, num_steps=MAM_STEPS, key=k_mam, log_every=EVERY, progress=False)
    return state2.params


def test_resume_in_stage_two_matches_an_uninterrupted_run(tmp_path):
    nets, s1, s2 = _setup()
    reference = _by_hand(nets, s1, s2)
    tied = []
    full = _run(nets, s1, s2, workdir=tmp_path / "full", tie_shared=lambda p: tied.append(p) or p)
    assert len(tied) == 1 and full.arm_steps == ARM_STEPS
    assert int(full.arm_state.step) == ARM_STEPS and int(full.mam_state.step) == MAM_STEPS
    assert len(full.history["arm"]) == ARM_STEPS // EVERY and len(full.history["mam"]) == MAM_STEPS // EVERY
    _assert_same(full.params, reference)
    for stage in ("arm", "mam"):
        assert os.path.isdir(tmp_path / "full" / stage / "checkpoints")

    wd = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="stopped at step"):
        _run(nets, s1, _Recorder(s2, stop_at=5), workdir=wd)
    again1, again2 = _Recorder(s1), _Recorder(s2)
    resumed = _run(nets, again1, again2, workdir=wd)
    assert again1.steps == [], "stage 1 was retrained on resume"
    assert resumed.history["arm"] == []
    assert min(again2.steps[1:]) >= EVERY, "stage 2 restarted from scratch"  # [0]: the chains' first batch
    _assert_same(resumed.params, full.params)
    np.testing.assert_array_equal(np.asarray(resumed.mam_state.model_state), np.asarray(full.mam_state.model_state))


def test_stage_one_time_budget_stops_early_and_is_kept_on_restart(tmp_path):
    nets, s1, s2 = _setup()
    run = _run(nets, s1, s2, arm_seconds=0.0, workdir=tmp_path)
    assert run.arm_steps == EVERY and int(run.arm_state.step) == EVERY  # the first check stops it
    assert os.path.exists(tmp_path / "arm" / "stage1_done.json")
    again = _Recorder(s1)
    rerun = _run(nets, again, s2, arm_seconds=100.0, workdir=tmp_path)
    assert again.steps == [] and rerun.arm_steps == EVERY
    _assert_same(rerun.params, run.params)
    # Without a budget the helper runs exactly arm_steps.
    assert _run(nets, s1, s2, mam_steps=0).arm_steps == ARM_STEPS


def test_bad_arguments_are_named():
    nets, s1, s2 = _setup()
    with pytest.raises(ValueError, match="arm_seconds"):
        _run(nets, s1, s2, arm_seconds=-1.0)
    with pytest.raises(ValueError, match="keys"):
        _run(nets, s1, s2, keys=jax.random.split(jax.random.key(0), 3))
