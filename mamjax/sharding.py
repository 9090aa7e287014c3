"""Data-parallel sharding: one code path for one CPU, a GPU box or a TPU pod.

A 1-D ``Mesh`` with axis ``"data"`` spans every device (of every host). Batches
are split along their leading axis over ``"data"``; parameters and optimizer
state are replicated. ``jax.jit`` then inserts the gradient all-reduce itself.
Nothing here is hard-coded to a device count.

Multi-host (TPU pods, multi-node GPU): call :func:`initialize_distributed` once
at program start on every host, then build the mesh as usual; each host feeds
its own slice of the global batch through :func:`shard_batch`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"

__all__ = ["DATA_AXIS", "initialize_distributed", "data_mesh", "shard_batch", "replicate", "batch_sharding"]


def initialize_distributed(**kwargs) -> None:
    """Starts the multi-host runtime (``jax.distributed.initialize``); no-op on one process.

    On Cloud TPU and SLURM/Open MPI clusters the coordinator is auto-detected;
    elsewhere pass ``coordinator_address``, ``num_processes`` and ``process_id``.
    Must run before any other JAX call.
    """
    if kwargs or _looks_multi_host():
        jax.distributed.initialize(**kwargs)


def _looks_multi_host() -> bool:
    import os
    return any(v in os.environ for v in ("TPU_WORKER_HOSTNAMES", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE",
                                          "JAX_COORDINATOR_ADDRESS"))


def data_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``"data"`` over ``devices`` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("`devices` is empty; pass at least one device (or None for all devices).")
    return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Splits every array of ``batch`` along its leading axis over the mesh's data axis.

    On several hosts each passes its *local* rows; the result is the global batch.
    The leading dimension (global) must be divisible by the number of devices.
    """
    sharding = batch_sharding(mesh)
    n = mesh.shape[DATA_AXIS]

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        if x.ndim == 0:
            raise ValueError("`batch` leaves must have a leading batch axis; got a scalar.")
        if jax.process_count() == 1:
            if x.shape[0] % n:
                raise ValueError(f"`batch` leading dimension {x.shape[0]} is not divisible by the "
                                 f"{n} devices of the data axis.")
            return jax.device_put(x, sharding)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree.map(put, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a full copy of every leaf of ``tree`` on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))
