"""Checkpointer: fallback past damaged steps, checksums, template mismatch, locks, bad arguments."""

import glob
import os
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import checkpoint as ckpt


def _state(s=0.0):
    return {"w": jnp.arange(600, dtype=jnp.float32) + s, "b": jnp.full((3,), s, jnp.float32)}


def _saved(tmp_path, steps=(1, 2, 3, 4)):
    d = tmp_path / "ck"
    with ckpt.Checkpointer(d, save_every=1, keep=10, async_save=False) as c:
        for s in steps:
            assert c.save(s, _state(s), {"x": s})
    return str(d)


def _array_files(d, step):
    """The data files of the state item of ``step`` (OCDBT chunks), largest first."""
    files = [f for f in glob.glob(os.path.join(d, str(step), "state", "**", "d", "*"), recursive=True)
             if os.path.isfile(f)]
    return sorted(files, key=os.path.getsize, reverse=True)


def _flip(f, n=64):
    """Flips ``n`` bytes in the middle of file ``f`` (bit rot, a bad copy)."""
    with open(f, "r+b") as fh:
        raw = bytearray(fh.read())
        mid = len(raw) // 2
        raw[mid:mid + n] = bytes(b ^ 0xFF for b in raw[mid:mid + n])
        fh.seek(0)
        fh.write(raw)


def _empty_meta(d, step):
    for f in glob.glob(os.path.join(d, str(step), "meta", "*")):
        if os.path.isfile(f):
            open(f, "w").close()


def _restore(d, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = ckpt.Checkpointer(d, keep=10).restore(_state(), **kw)
    return out, [str(x.message) for x in w]


def test_roundtrip_and_meta(tmp_path):
    d = _saved(tmp_path)
    (state, meta), msgs = _restore(d)
    assert meta["step"] == 4 and meta["x"] == 4 and not msgs
    np.testing.assert_array_equal(state["w"], np.arange(600) + 4.0)
    (state, meta), _ = _restore(d, step=2)
    assert meta["step"] == 2 and float(state["b"][0]) == 2.0


@pytest.mark.parametrize("damage", ["empty_dir", "truncated", "flipped", "empty_meta"])
def test_damaged_latest_falls_back_with_warning(tmp_path, damage):
    d = _saved(tmp_path)
    bad = 4
    if damage == "empty_dir":
        bad = 5
        os.makedirs(os.path.join(d, "5"))
    elif damage == "truncated":
        f = _array_files(d, 4)[0]
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)
    elif damage == "flipped":
        _flip(_array_files(d, 4)[0])
    elif damage == "empty_meta":
        _empty_meta(d, 4)
    (state, meta), msgs = _restore(d, quarantine=True)
    good = 4 if damage == "empty_dir" else 3
    assert meta["step"] == good
    np.testing.assert_array_equal(state["w"], np.arange(600) + good)
    assert any(f"step {bad}" in m and "cannot be restored" in m for m in msgs), msgs
    # Quarantined: the step can be saved again, and the damaged copy is kept aside for inspection.
    c = ckpt.Checkpointer(d, save_every=1, keep=10, async_save=False)
    assert bad not in c.all_steps() and os.listdir(d + ".corrupt")
    assert c.save(bad, _state(bad))
    c.close()


def test_flipped_bytes_with_explicit_step_raise(tmp_path):
    d = _saved(tmp_path)
    _flip(_array_files(d, 4)[0])
    with pytest.raises(ckpt.CheckpointError, match="step 4"):
        ckpt.Checkpointer(d).restore(_state(), step=4)


def test_no_step_restores_is_a_clear_error(tmp_path):
    d = _saved(tmp_path, steps=(1, 2))
    for s in (1, 2):
        _empty_meta(d, s)
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint .* can be restored(.|\n)*step 2(.|\n)*step 1"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ckpt.Checkpointer(d).restore(_state())


def test_missing_step_and_empty_directory(tmp_path):
    d = _saved(tmp_path, steps=(1,))
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint at step 7"):
        ckpt.Checkpointer(d).restore(_state(), step=7)
    assert ckpt.Checkpointer(tmp_path / "fresh").restore(_state()) is None


@pytest.mark.parametrize("template,match", [
    ({"w": jnp.zeros(600, jnp.bfloat16), "b": jnp.zeros(3)}, r"`state\['w'\]` is bfloat16\[600\] in the template "
                                                                r"but float32\[600\]"),
    ({"w": jnp.zeros(601), "b": jnp.zeros(3)}, r"float32\[601\] in the template"),
    ({"w": jnp.zeros(600)}, "different tree"),
])
def test_template_mismatch_is_refused(tmp_path, template, match):
    d = _saved(tmp_path, steps=(1,))
    with pytest.raises(ckpt.CheckpointMismatchError, match=match):
        ckpt.Checkpointer(d).restore(template)


def test_bad_arguments(tmp_path):
    c = ckpt.Checkpointer(tmp_path / "ck", async_save=False)
    with pytest.raises(ValueError, match="`step` must be an int >= 0"):
        c.save(-1, _state())
    with pytest.raises(ValueError, match="`step`"):
        c.save(2.0, _state())
    assert c.all_steps() == []
    c.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="`directory`"):
        ckpt.Checkpointer(tmp_path / "file")
    with pytest.raises(ValueError, match="`keep`"):
        ckpt.Checkpointer(tmp_path / "ck2", keep=0)
    with pytest.raises(TypeError, match="`key`"):
        ckpt.key_to_json(jnp.ones(2))
    with pytest.raises(TypeError, match="`key`"):
        ckpt.key_to_json(3)
    for key in (jax.random.key(3), jax.random.PRNGKey(3)):
        back = ckpt.key_from_json(ckpt.key_to_json(key))
        np.testing.assert_array_equal(jax.random.key_data(back) if back.dtype != jnp.uint32 else back,
                                      jax.random.key_data(key) if key.dtype != jnp.uint32 else key)


def test_directory_lock(tmp_path):
    with ckpt.DirectoryLock(tmp_path):
        with pytest.raises(ckpt.DirectoryLockedError, match=f"in use by another run \\(pid {os.getpid()}"):
            ckpt.DirectoryLock(tmp_path).acquire()
    with ckpt.DirectoryLock(tmp_path):  # released
        pass
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError, match="lock file of `workdir`"):
        ckpt.DirectoryLock(tmp_path / "f").acquire()
