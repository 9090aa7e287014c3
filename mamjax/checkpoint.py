"""Checkpoints: a thin layer over Orbax ``CheckpointManager``.

Each checkpoint holds two items: ``state`` (any pytree of arrays, e.g. a
:class:`mamjax.train.TrainState`) and ``meta`` (JSON: the step, the raw PRNG key
data, the data-stream seed, anything else the caller wants). Because batches and
per-step keys are pure functions of ``(seed, step)``, restoring these is all a
run needs to continue exactly where it stopped.

What this layer adds to Orbax, because a workdir gets damaged in practice:

* ``meta`` records the tree paths, shapes and dtypes of what was saved and a
  SHA-256 of every array's bytes; :meth:`Checkpointer.restore` refuses a
  template whose shapes or dtypes differ (:class:`CheckpointMismatchError`,
  instead of Orbax silently casting) and verifies the checksums (flipped bytes).
* Restoring the latest step falls back to the newest step that restores, with a
  warning naming each bad one (truncated array files, an empty step directory,
  an emptied ``meta`` file, a deleted ``_METADATA``); with ``quarantine=True``
  the bad step directories are moved aside so later saves can reuse their steps.
  If no step restores, :class:`CheckpointError` lists each step and its reason.
* :class:`DirectoryLock`: an exclusive ``flock`` on a directory, so a second run
  on the same workdir is refused. Orbax 0.12 has no such mechanism (its barriers
  synchronise the processes of one job, they do not exclude another job).

Several processes (``jax.distributed``): every process constructs the
:class:`Checkpointer` on the shared directory and calls ``save`` / ``restore``
together; Orbax writes each array's shards once and the JSON ``meta`` from the
primary process only; checksums cover replicated arrays (whole on every host).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import time
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "CheckpointError", "CheckpointMismatchError", "DirectoryLock", "DirectoryLockedError",
           "key_to_json", "key_from_json", "tree_fingerprint"]


class CheckpointError(RuntimeError):
    """A checkpoint (or every checkpoint of a directory) could not be restored."""


class CheckpointMismatchError(ValueError):
    """The restore template's tree, shapes or dtypes differ from what was saved."""


class DirectoryLockedError(RuntimeError):
    """Another process holds the lock of a directory."""


def key_to_json(key: jax.Array) -> dict:
    """A typed or raw PRNG key as JSON-serializable data (implementation + uint32 words).

    Raises:
      TypeError: if ``key`` is neither a typed key nor a raw ``uint32`` key array.
    """
    if not hasattr(key, "dtype"):
        raise TypeError(f"`key` must be a jax.random key; got {type(key).__name__}.")
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return {"impl": str(jax.random.key_impl(key)), "data": np.asarray(jax.random.key_data(key)).tolist(),
                "typed": True}
    if key.dtype != np.uint32 or key.ndim < 1:
        raise TypeError("`key` must be a typed key (jax.random.key) or a raw uint32 key array "
                        f"(jax.random.PRNGKey); got dtype {key.dtype} and shape {tuple(key.shape)}.")
    return {"impl": None, "data": np.asarray(key).tolist(), "typed": False}


def key_from_json(d: dict) -> jax.Array:
    """Inverse of :func:`key_to_json`."""
    data = np.asarray(d["data"], dtype=np.uint32)
    if d["typed"]:
        return jax.random.wrap_key_data(data, impl=d["impl"])
    return jax.numpy.asarray(data)


def _host_bytes(leaf) -> bytes | None:
    """The bytes of an array leaf (None when this host holds only part of it).

    A replicated array spread over several hosts (parameters of a multi-host run) is
    whole on every host: its first local copy is read.
    """
    if isinstance(leaf, jax.Array):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        if not leaf.is_fully_addressable:
            if not leaf.is_fully_replicated:
                return None
            leaf = leaf.addressable_data(0)
    return np.ascontiguousarray(np.asarray(leaf)).tobytes()


def tree_fingerprint(tree: Any, checksums: bool = True) -> list[list]:
    """``[[path, shape, dtype, sha256 or None], ...]`` of the leaves of ``tree``.

    The checksums are over the raw bytes of each array (skipped for arrays split
    over several hosts, and when ``checksums`` is False).
    """
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        shape, dtype = tuple(np.shape(leaf)), str(getattr(leaf, "dtype", np.asarray(leaf).dtype))
        digest = None
        if checksums:
            raw = _host_bytes(leaf)
            digest = None if raw is None else hashlib.sha256(raw).hexdigest()
        out.append([jax.tree_util.keystr(path), list(shape), dtype, digest])
    return out


class DirectoryLock:
    """An exclusive advisory lock (``fcntl.flock``) on ``directory/.lock``.

    The lock file holds the owner's pid (for the message). The operating system
    releases the lock when the process exits, also when it is killed, so a
    crashed run never leaves a stale lock. Use as a context manager or call
    :meth:`acquire` / :meth:`release`.

    Raises:
      DirectoryLockedError: from :meth:`acquire` if another process (or another
        open lock in this process) holds it.
      PermissionError / NotADirectoryError: if ``directory`` cannot hold the lock
        file (not writable, or a regular file).
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self.directory, ".lock")
        self._fd = None

    def acquire(self) -> "DirectoryLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise type(e)(e.errno, f"cannot create the lock file of `workdir` {self.directory} "
                                   f"({e.strerror}); is it a writable directory?") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DirectoryLockedError(
                    f"{self.directory} is in use by another run (pid {owner}, lock {self.path}); wait for it "
                    "to finish or use another workdir.") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


class Checkpointer:
    """Save every ``save_every`` steps, keep the last ``keep``, restore the latest that restores.

    Args:
      directory: where checkpoints live (created if missing); made absolute.
      save_every: save only at steps that are multiples of this (``force=True`` overrides).
      keep: how many recent checkpoints to keep.
      async_save: write in a background thread (Orbax async checkpointing).
      checksums: record a SHA-256 of every saved array (costs one device-to-host
        copy of the state per save) and verify it on restore.

    Raises:
      NotADirectoryError: if ``directory`` exists and is not a directory.
      ValueError: for ``save_every`` or ``keep`` below 1.
    """

    def __init__(self, directory: str | os.PathLike, save_every: int = 1000, keep: int = 2,
                 async_save: bool = True, checksums: bool = True):
        for name, v in (("save_every", save_every), ("keep", keep)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"`{name}` must be an int >= 1; got {v!r}.")
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise NotADirectoryError(f"`directory` {self.directory} exists and is not a directory.")
        self.save_every, self.checksums = int(save_every), checksums
        options = ocp.CheckpointManagerOptions(
            max_to_keep=int(keep), save_interval_steps=1, create=True,
            enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def due(self, step: int, force: bool = False) -> bool:
        """Whether :meth:`save` at ``step`` would write (a multiple of ``save_every`` or forced, not on disk)."""
        return (force or step % self.save_every == 0) and step not in self._manager.all_steps()

    def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False) -> bool:
        """Saves ``state`` and ``meta`` at ``step`` if due (or ``force``). Returns whether it saved.

        ``meta`` gets ``step`` and ``leaves`` (the :func:`tree_fingerprint` of ``state``).
        """
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"`step` must be an int >= 0; got {step!r}.")
        if not self.due(int(step), force):
            return False
        meta = dict(meta or {}, step=int(step), leaves=tree_fingerprint(state, self.checksums))
        return self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True)

    def restore(self, template: Any, step: int | None = None, *, quarantine: bool = False
                ) -> tuple[Any, dict] | None:
        """Restores ``(state, meta)`` into ``template``'s structure.

        With ``step=None`` tries the steps newest first and returns the first that
        restores, warning (``UserWarning``) about each newer one that does not;
        with ``quarantine`` those are moved to ``<directory>.corrupt/``. With an
        explicit ``step`` only that one is tried.

        Args:
          template: a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the
            target shapes, dtypes and shardings.
          step: the step to restore (default: the newest that restores).
          quarantine: move steps that fail to restore out of ``directory``.

        Returns:
          ``(state, meta)``, or None if there is no checkpoint.

        Raises:
          CheckpointMismatchError: the template's tree, shapes or dtypes differ from
            the checkpoint's (not a damaged checkpoint: no fallback).
          CheckpointError: the requested step, or every step, fails to restore.
        """
        self._manager.wait_until_finished()
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(f"no checkpoint at step {step} in {self.directory}; steps on disk: {steps}.")
            try:
                return self._restore_step(step, template)
            except CheckpointMismatchError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure of a damaged checkpoint
                raise CheckpointError(f"checkpoint step {step} in {self._step_dir(step)} cannot be restored: "
                                      f"{_short(e)}") from e
        if not steps:
            return None
        failures = []
        for s in reversed(steps):
            try:
                out = self._restore_step(s, template)
            except CheckpointMismatchError:
                raise
            except Exception as e:  # noqa: BLE001
                failures.append((s, _short(e)))
                warnings.warn(f"checkpoint step {s} in {self._step_dir(s)} cannot be restored ({_short(e)}); "
                              "trying an earlier step.", stacklevel=2)
                continue
            if quarantine and failures:
                self._quarantine([f for f, _ in failures])
            return out
        raise CheckpointError(f"no checkpoint in {self.directory} can be restored:\n" +
                              "\n".join(f"  step {s}: {why}" for s, why in failures) +
                              "\nDelete the directory (or use another workdir) to start afresh.")

    def _step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def _restore_step(self, step: int, template: Any) -> tuple[Any, dict]:
        meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if not isinstance(meta, dict):
            raise CheckpointError(f"`meta` of step {step} is {type(meta).__name__}, not a JSON object")
        meta = dict(meta)
        saved = meta.get("leaves")
        if saved is not None:
            _check_template(template, saved, step, self._step_dir(step))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        state = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))["state"]
        if saved is not None and self.checksums:
            for (path, _, _, want), (_, _, _, got) in zip(saved, tree_fingerprint(state)):
                if want is not None and got is not None and want != got:
                    raise CheckpointError(f"checksum mismatch in `state{path}` (the array files were changed "
                                          "after the save)")
        return state, meta

    def _quarantine(self, steps: list[int]) -> None:
        if jax.process_index() != 0:  # one mover for the directory all processes share
            self._manager.reload()
            return
        dest_root = self.directory.rstrip(os.sep) + ".corrupt"
        os.makedirs(dest_root, exist_ok=True)
        for s in steps:
            src = self._step_dir(s)
            if os.path.exists(src):
                dest = os.path.join(dest_root, f"{s}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
                shutil.move(src, dest)
                warnings.warn(f"moved the unrestorable checkpoint step {s} to {dest}.", stacklevel=3)
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _short(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"{type(e).__name__}: {msg[0][:300] if msg else ''}"


def _check_template(template: Any, saved: list, step: int, where: str) -> None:
    want = tree_fingerprint(template, checksums=False)
    if [p for p, *_ in want] != [p for p, *_ in saved]:
        missing = sorted(set(p for p, *_ in saved) - set(p for p, *_ in want))
        extra = sorted(set(p for p, *_ in want) - set(p for p, *_ in saved))
        raise CheckpointMismatchError(
            f"the state to restore has a different tree than checkpoint step {step} in {where}: "
            f"saved but not in the template {missing[:5]}, in the template but not saved {extra[:5]}.")
    for (path, shape, dtype, _), (_, sshape, sdtype, _) in zip(want, saved):
        if list(shape) != list(sshape) or dtype != sdtype:
            raise CheckpointMismatchError(
                f"`state{path}` is {dtype}{list(shape)} in the template but {sdtype}{list(sshape)} in checkpoint "
                f"step {step} in {where}; resume with the settings of the saved run or use a fresh workdir.")
