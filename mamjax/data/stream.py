"""Deterministic batching: batch ``i`` is a pure function of ``(seed, i)``.

Because the position in the data is just the step number, a resumed run sees
exactly the batches an uninterrupted run would (no iterator state to pickle).
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
      batch_size: rows per batch.
      seed: integer seed of the shuffling (and of ``transform``'s key).
      transform: optional ``transform(batch, key) -> batch`` applied per batch
        with ``key = fold_in(PRNGKey(seed), step)`` (e.g. dynamic binarization).
      shuffle: permute rows each epoch.

    Usage: ``stream(step)`` returns batch number ``step`` (0-based).
    """

    def __init__(self, arrays: np.ndarray | Mapping[str, np.ndarray], batch_size: int, seed: int = 0,
                 transform: Callable[[Any, jax.Array], Any] | None = None, shuffle: bool = True):
        self._single = not isinstance(arrays, Mapping)
        self.arrays = {"x": arrays} if self._single else dict(arrays)
        sizes = {k: len(v) for k, v in self.arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"`arrays` must share their first dimension; got sizes {sizes}.")
        self.num_examples = next(iter(sizes.values()))
        if not isinstance(batch_size, (int, np.integer)) or not 1 <= batch_size <= self.num_examples:
            raise ValueError(f"`batch_size` must be an int in [1, {self.num_examples}]; got {batch_size!r}.")
        self.batch_size, self.seed, self.transform, self.shuffle = int(batch_size), int(seed), transform, shuffle
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
        idx = self._permutation(epoch)[i * self.batch_size:(i + 1) * self.batch_size]
        batch = {k: v[idx] for k, v in self.arrays.items()}
        if self.single_output:
            batch = batch["x"]
        if self.transform is not None:
            batch = self.transform(batch, jax.random.fold_in(jax.random.key(self.seed), step))
        return batch

    @property
    def single_output(self) -> bool:
        return self._single
