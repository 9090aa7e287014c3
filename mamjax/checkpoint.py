"""Checkpoints: a thin layer over Orbax ``CheckpointManager``.

Each checkpoint holds two items: ``state`` (any pytree of arrays, e.g. a
:class:`mamjax.train.TrainState`) and ``meta`` (JSON: the step, the raw PRNG key
data, the data-stream seed, anything else the caller wants). Because batches and
per-step keys are pure functions of ``(seed, step)``, restoring these is all a
run needs to continue exactly where it stopped.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["Checkpointer", "key_to_json", "key_from_json"]


def key_to_json(key: jax.Array) -> dict:
    """A typed or raw PRNG key as JSON-serializable data (implementation + uint32 words)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return {"impl": str(jax.random.key_impl(key)), "data": np.asarray(jax.random.key_data(key)).tolist(),
                "typed": True}
    return {"impl": None, "data": np.asarray(key).tolist(), "typed": False}


def key_from_json(d: dict) -> jax.Array:
    """Inverse of :func:`key_to_json`."""
    data = np.asarray(d["data"], dtype=np.uint32)
    if d["typed"]:
        return jax.random.wrap_key_data(data, impl=d["impl"])
    return jax.numpy.asarray(data)


class Checkpointer:
    """Save every ``save_every`` steps, keep the last ``keep``, restore the latest.

    Args:
      directory: where checkpoints live (created if missing); made absolute.
      save_every: save only at steps that are multiples of this (``force=True`` overrides).
      keep: how many recent checkpoints to keep.
      async_save: write in a background thread (Orbax async checkpointing).
    """

    def __init__(self, directory: str | os.PathLike, save_every: int = 1000, keep: int = 2,
                 async_save: bool = True):
        if save_every < 1:
            raise ValueError(f"`save_every` must be >= 1; got {save_every}.")
        if keep < 1:
            raise ValueError(f"`keep` must be >= 1; got {keep}.")
        self.directory = os.path.abspath(os.fspath(directory))
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, save_interval_steps=1, create=True,
            enable_async_checkpointing=async_save)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "meta"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False) -> bool:
        """Saves ``state`` and ``meta`` at ``step`` if due (or ``force``). Returns whether it saved."""
        if not force and step % self.save_every:
            return False
        if step in self._manager.all_steps():
            return False
        meta = dict(meta or {}, step=int(step))
        return self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True)

    def restore(self, template: Any, step: int | None = None) -> tuple[Any, dict] | None:
        """Restores ``(state, meta)`` at ``step`` (default latest) into ``template``'s structure.

        ``template`` is a pytree of arrays (or ``jax.ShapeDtypeStruct``) with the
        target shapes, dtypes and shardings. Returns None if there is no checkpoint.
        """
        self._manager.wait_until_finished()
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        out = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        return out["state"], dict(out["meta"])

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
