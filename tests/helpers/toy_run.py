"""A tiny regression run driven by ``mamjax.train.fit``; used by the kill-and-resume test.

Usage: python toy_run.py WORKDIR NUM_STEPS OUT_NPZ [KILL_AT_STEP]
With KILL_AT_STEP the process SIGKILLs itself when the data stream reaches that step.
"""

import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mamjax import nn, train
from mamjax.data.stream import BatchStream


def main():
    workdir, num_steps, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else None
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32))[:, None] + 0.1 * rng.normal(size=(256, 1)).astype(np.float32)
    base = BatchStream({"x": x, "y": y}, batch_size=32, seed=1)

    def stream(step):
        if kill_at is not None and step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return base(step)

    apply, params = nn.functional(nn.MLP(4, [16], 1, rngs=nnx.Rngs(0)))

    def loss_fn(params, batch, key):
        noise = 0.01 * jax.random.normal(key, batch["y"].shape)  # uses the per-step key
        err = apply(params, batch["x"]) - batch["y"] - noise
        return jnp.mean(err**2), {}

    opt = optax.adam(1e-2)
    step_fn = train.make_train_step(loss_fn, opt)
    state = train.TrainState.create(params, opt)
    state, _ = train.fit(step_fn, state, stream, num_steps=num_steps, key=jax.random.key(7), workdir=workdir,
                         save_every=5, keep=2, log_every=5, progress=False)
    leaves = [np.asarray(l) for l in jax.tree.leaves(state.params)]
    np.savez(out, *leaves, step=np.asarray(state.step))


if __name__ == "__main__":
    main()
