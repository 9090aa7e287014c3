"""One process of a data-parallel ``train.fit`` run, on CPU, for tests/test_multiprocess.py.

Usage:
  python multiprocess_run.py --workdir W --out OUT.npz [--num-processes P --process-id I --port N]
                             [--devices D] [--mesh-devices M] [--steps S] [--kill-at K]
                             [--steps-per-dispatch k]

``--devices`` virtual CPU devices per process (XLA_FLAGS, set here before jax is
imported); with ``--num-processes > 1`` the processes meet through
``jax.distributed.initialize`` on ``localhost:PORT`` with gloo CPU collectives. The
mesh spans all devices of all processes, or the first ``--mesh-devices`` of this one.
``--kill-at K``: the process SIGKILLs itself when the stream reaches step K, once the
checkpoint before K is on disk (saves are asynchronous: a kill may otherwise come
before the last save is committed, and the test would resume from step 0). At the
end each process writes its final parameters (and step) to ``OUT`` with ``.pI``
inserted before ``.npz``.
"""

import argparse
import os
import signal
import sys
import time

SAVE_EVERY = 4

ap = argparse.ArgumentParser()
ap.add_argument("--workdir")
ap.add_argument("--out", required=True)
ap.add_argument("--num-processes", type=int, default=1)
ap.add_argument("--process-id", type=int, default=0)
ap.add_argument("--port", type=int, default=0)
ap.add_argument("--devices", type=int, default=1)
ap.add_argument("--mesh-devices", type=int, default=None)
ap.add_argument("--steps", type=int, default=12)
ap.add_argument("--kill-at", type=int, default=None)
ap.add_argument("--steps-per-dispatch", type=int, default=1)
args = ap.parse_args()

os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={args.devices} "
                           "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true")
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    from mamjax import sharding

    sharding.initialize_distributed(coordinator_address=f"localhost:{args.port}", num_processes=args.num_processes,
                                    process_id=args.process_id, initialization_timeout=60)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from mamjax import nn, sharding, train  # noqa: E402
from mamjax.data.stream import BatchStream  # noqa: E402


def main():
    assert jax.process_count() == args.num_processes and jax.local_device_count() == args.devices
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = (x @ rng.normal(size=(8, 1)).astype(np.float32)) + 0.1 * rng.normal(size=(256, 1)).astype(np.float32)
    base = BatchStream({"x": x, "y": y}, batch_size=32, seed=1)  # global batch 32; each process gets its rows

    def stream(step):
        if args.kill_at is not None and step == args.kill_at:
            last = os.path.join(args.workdir, "checkpoints", str(step // SAVE_EVERY * SAVE_EVERY))
            deadline = time.monotonic() + 60
            while step >= SAVE_EVERY and not os.path.isdir(last) and time.monotonic() < deadline:
                time.sleep(0.05)  # Orbax renames the finished save to its step number: committed
            os.kill(os.getpid(), signal.SIGKILL)
        return base(step)

    apply, params = nn.functional(nn.MLP(8, [32], 1, rngs=nnx.Rngs(0)))

    def loss_fn(params, batch, key):
        noise = 0.01 * jax.random.normal(key, batch["y"].shape)  # uses the per-step key
        return jnp.mean((apply(params, batch["x"]) - batch["y"] - noise) ** 2), {}

    opt = optax.sgd(0.05, momentum=0.9)
    devices = None if args.mesh_devices is None else jax.local_devices()[:args.mesh_devices]
    mesh = sharding.data_mesh(devices)
    state, _ = train.fit(train.make_train_step(loss_fn, opt), train.TrainState.create(params, opt), stream,
                         num_steps=args.steps, key=jax.random.key(7), workdir=args.workdir, save_every=SAVE_EVERY, keep=2,
                         log_every=2, mesh=mesh, progress=True, steps_per_dispatch=args.steps_per_dispatch)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(state.params)]
    out = args.out[:-len(".npz")] + f".p{jax.process_index()}.npz"
    np.savez(out, *leaves, step=np.asarray(state.step), mesh_size=mesh.size)
    print(f"done: process {jax.process_index()} of {jax.process_count()}, mesh of {mesh.size} devices", flush=True)


if __name__ == "__main__":
    main()
    sys.stdout.flush()
