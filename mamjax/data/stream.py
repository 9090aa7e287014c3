"""Deterministic batching: batch ``i`` is a pure function of ``(seed, i)``, each process's slice of it
a pure function of ``(seed, i, process index)``.

Because the position in the data is just the step number, a resumed run sees
exactly the batches an uninterrupted run would (no iterator state to pickle).

Multi-host convention (shared with :func:`mamjax.sharding.shard_batch`): ``batch_size``
is the GLOBAL batch; process ``p`` of ``P`` gets rows ``[p * b, (p + 1) * b)`` of the
global batch, ``b = batch_size / P``, and passes that local slice to ``shard_batch``,
which assembles the global array. The global batch, and so every number of a run,
does not depend on how many processes read it.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import numpy as np

__all__ = ["BatchStream"]


class BatchStream:
    """Shuffled mini-batches over in-memory numpy arrays, indexed by step.

    Each epoch uses a fresh permutation drawn from ``(seed, epoch)``; with
    ``drop_remainder`` every batch has exactly ``batch_size`` rows.

    Args:
      arrays: a numpy array or a dict of arrays sharing their first axis.
      batch_size: rows of the GLOBAL batch (summed over processes); divisible by
        ``process_count``.
      seed: integer seed of the shuffling (and of ``transform``'s key).
      transform: optional ``transform(batch, key) -> batch`` applied per batch
        with ``key = fold_in(PRNGKey(seed), step)`` (e.g. dynamic binarization).
        It is applied to the global batch, then the process's rows are taken, so
        the numbers do not depend on the process count (the price: each process
        transforms the whole batch; cheap for in-memory data).
      shuffle: permute rows each epoch.
      process_index: which slice to yield (default ``jax.process_index()``).
      process_count: how many processes share the batch (default ``jax.process_count()``).

    Usage: ``stream(step)`` returns this process's rows of batch number ``step``
    (0-based): ``batch_size // process_count`` rows.

    Raises:
      ValueError: ``batch_size`` not in ``[1, num_examples]`` or not divisible by
        ``process_count``; ``process_index`` outside ``[0, process_count)``.
    """

    def __init__(self, arrays: np.ndarray | Mapping[str, np.ndarray], batch_size: int, seed: int = 0,
                 transform: Callable[[Any, jax.Array], Any] | None = None, shuffle: bool = True, *,
                 process_index: int | None = None, process_count: int | None = None):
        self._single = not isinstance(arrays, Mapping)
        self.arrays = {"x": arrays} if self._single else dict(arrays)
        sizes = {k: len(v) for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"`arrays` must share their first dimension; got sizes {sizes}.")
        self.num_examples = next(iter(sizes.values()))
        if (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                or not 1 <= batch_size <= self.num_examples):
            raise ValueError(f"`batch_size` must be an int in [1, {self.num_examples}]; got {batch_size!r}.")
        count = jax.process_count() if process_count is None else process_count
        index = jax.process_index() if process_index is None else process_index
        for name, v in (("process_count", count), ("process_index", index)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"`{name}` must be an int; got {v!r}.")
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"`process_index` must be in [0, process_count) with process_count >= 1; "
                             f"got process_index={index}, process_count={count}.")
        if batch_size % count:
            raise ValueError(f"`batch_size` {batch_size} (the global batch) must be divisible by the "
                             f"{count} processes.")
        self.batch_size, self.seed, self.transform, self.shuffle = int(batch_size), int(seed), transform, shuffle
        self.process_index, self.process_count = int(index), int(count)
        self.local_batch_size = self.batch_size // self.process_count
        self.steps_per_epoch = self.num_examples // self.batch_size
        self._perm_epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            if self.shuffle:
                self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)
            else:
                self._perm = np.arange(self.num_examples)
            self._perm_epoch = epoch
        return self._perm

    def __call__(self, step: int):
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"`step` must be an int >= 0; got {step!r}.")
        epoch, i = divmod(int(step), self.steps_per_epoch)
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        local = slice(self.process_index * self.local_batch_size, (self.process_index + 1) * self.local_batch_size)
        idx = self._permutation(epoch)[rows]
        if self.transform is None:
            idx = idx[local]  # gather only this process's rows
        batch = {k: v[idx] for k, v in self.arrays.items()}
        if self.single_output:
            batch = batch["x"]
        if self.transform is not None:
            batch = self.transform(batch, jax.random.fold_in(jax.random.key(self.seed), step))
            if self.process_count > 1:
                batch = jax.tree.map(lambda x: x[local], batch)
        return batch

    @property
    def single_output(self) -> bool:
        return self._single
