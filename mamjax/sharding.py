"""Data-parallel sharding: one code path for one CPU, a GPU box or a TPU pod.

A 1-D ``Mesh`` with axis ``"data"`` spans every device (of every host), process
``p``'s devices forming block ``p`` of the axis. Batches are split along their
batch axis over ``"data"``; parameters and optimizer state are replicated.
``jax.jit`` then inserts the gradient all-reduce itself. Nothing here is
hard-coded to a device count.

Multi-host (TPU pods, multi-node GPU, several CPU processes): call
:func:`initialize_distributed` once at program start on every process, then build
the mesh as usual. The convention, shared with :class:`mamjax.data.stream.BatchStream`:
every process passes its LOCAL slice of the global batch to :func:`shard_batch`
(process ``p`` of ``P`` holds global rows ``[p * b, (p + 1) * b)``, ``b = B / P``)
and gets back the global ``[B, ...]`` array. On one process the local slice is the
global batch, so the same code runs unchanged.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Callable, Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

__all__ = ["DATA_AXIS", "initialize_distributed", "data_mesh", "shard_batch", "replicate", "batch_sharding",
           "prefetch"]


def initialize_distributed(**kwargs) -> None:
    """Starts the multi-host runtime (``jax.distributed.initialize``); no-op on one process.

    On Cloud TPU and SLURM/Open MPI clusters the coordinator is auto-detected;
    elsewhere pass ``coordinator_address``, ``num_processes`` and ``process_id``.
    Must run before any other JAX call. Several processes on CPU also need CPU
    collectives, e.g. ``jax.config.update("jax_cpu_collectives_implementation", "gloo")``
    before this call.
    """
    if kwargs or _looks_multi_host():
        jax.distributed.initialize(**kwargs)


def _looks_multi_host() -> bool:
    return any(v in os.environ for v in ("TPU_WORKER_HOSTNAMES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                                          "JAX_COORDINATOR_ADDRESS"))


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices of all hosts).

    Devices are ordered by ``(process_index, id)``, so each process's devices are one
    contiguous block of the data axis, in process order (what :func:`shard_batch`'s
    multi-host branch relies on).
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("`devices` is empty; pass at least one device (or None for all devices).")
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Sharding that splits axis ``batch_axis`` over the data axis (the others whole)."""
    return NamedSharding(mesh, P(*([None] * batch_axis), DATA_AXIS))


def shard_batch(batch: Any, mesh: Mesh, batch_axis: int = 0) -> Any:
    """Places every array of ``batch`` on the mesh, split along ``batch_axis`` over the data axis.

    Args:
      batch: a pytree of arrays ``[..., b, ...]`` (``b`` at ``batch_axis``): this
        process's rows of the global batch (on one process, the global batch).
      mesh: from :func:`data_mesh`.
      batch_axis: the axis to split (1 for batches stacked ``[steps, b, ...]``).

    Returns:
      The global batch as ``jax.Array`` s of ``b * process_count`` rows.

    Raises:
      ValueError: a scalar leaf, or ``b`` not divisible by this process's devices
        of the mesh, or a mesh whose devices are not in process order.
    """
    sharding = batch_sharding(mesh, batch_axis)
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim <= batch_axis:
            raise ValueError(f"`batch` leaves must have a batch axis {batch_axis}; got shape {tuple(x.shape)}"
                             + (" (a scalar)." if x.ndim == 0 else "."))
        if x.shape[batch_axis] % local_devices:
            raise ValueError(f"`batch` batch dimension {x.shape[batch_axis]} is not divisible by the "
                             f"{local_devices} devices of the data axis on this process.")
        if sharding.is_fully_addressable:
            return jax.device_put(x, sharding)
        out = jax.make_array_from_process_local_data(sharding, np.asarray(x))
        _check_process_order(out, batch_axis, x.shape[batch_axis])
        return out

    return jax.tree.map(put, batch)


def _check_process_order(x: jax.Array, axis: int, local_rows: int) -> None:
    starts = sorted({idx[axis].start or 0 for idx in x.sharding.addressable_devices_indices_map(x.shape).values()})
    if starts[0] != jax.process_index() * local_rows:
        raise ValueError(f"the mesh puts process {jax.process_index()}'s rows at global row {starts[0]}, not "
                         f"{jax.process_index() * local_rows}: build it with `sharding.data_mesh()` (devices in "
                         "process order), the layout `BatchStream` slices for.")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a full copy of every leaf of ``tree`` on every device of ``mesh``.

    On several processes every process must pass the same values (as a run that
    starts from the same seed does).
    """
    sharding = NamedSharding(mesh, P())
    if sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def put(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)  # already global (e.g. restored from a checkpoint)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, tree)


def prefetch(batches: Iterable[Any], put: Callable[[Any], Any], size: int = 2) -> Iterator[Any]:
    """Yields ``put(b)`` for each ``b`` of ``batches``, ``size - 1`` items ahead.

    With ``put = lambda b: shard_batch(b, mesh)`` the host-to-device copy of batch
    ``i + 1`` is issued before batch ``i`` is handed out, so it overlaps step ``i``
    (JAX dispatches asynchronously). Values are unchanged: a pure reordering.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"`size` must be an int >= 1; got {size!r}.")
    queue: collections.deque = collections.deque()
    for b in batches:
        queue.append(put(b))
        if len(queue) >= size:
            yield queue.popleft()
    while queue:
        yield queue.popleft()
