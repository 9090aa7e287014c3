"""Overhead of data-parallel sharding on one CPU: train-step steps/s on 1 vs 8 virtual devices.

Each device count runs in its own subprocess (``XLA_FLAGS=--xla_force_host_platform_device_count``
must be set before jax is imported). The 8 "devices" share this machine's cores, so the
figure is the overhead of splitting a step over a mesh (and the all-reduce it adds), not a
speed-up; on a real 8-accelerator host the same code runs one shard per chip.

    python benchmarks/sharding_bench.py [--quick]
    python benchmarks/sharding_bench.py --write-results   # also fit_bench and the FLOP table:
                                                           # results/scale.json -> docs/scale.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script: `benchmarks` and `reproduce` import from the checkout
    sys.path.insert(0, ROOT)

MODELS = {  # name: what it is (the shared modules at the sizes the CPU examples use)
    "mlp": "MLP 8-32-1 regression, batch 32 (the smallest step)",
    "residual_mlp": "ResidualMLP 196-512x2 masked Bernoulli, batch 128 (marginal_mnist's MLP backbone at 14x14)",
    "transformer": "TransformerEncoder L=64 d=128 depth 2, batch 32 (transformer_throughput 'small')",
}


def _problem(name: str):
    """``(loss_fn, params, batch)`` of one benchmark model (numpy batch, global)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from mamjax import masks, nn

    rng = np.random.default_rng(0)
    if name == "mlp":
        apply, params = nn.functional(nn.MLP(8, [32], 1, rngs=nnx.Rngs(0)))
        x = rng.normal(size=(32, 8)).astype(np.float32)
        batch = {"x": x, "y": x[:, :1] * 2.0}

        def loss_fn(p, b, key):
            return jnp.mean((apply(p, b["x"]) - b["y"]) ** 2), {}
    elif name == "residual_mlp":
        apply, params = nn.functional(nn.ResidualMLP(2 * 196, 512, 2, 196, rngs=nnx.Rngs(0)))
        batch = (rng.random((128, 196)) < 0.3).astype(np.float32)

        def loss_fn(p, b, key):
            m = jax.random.bernoulli(key, 0.5, b.shape)
            logits = apply(p, jnp.concatenate([b * m, m.astype(jnp.float32)], -1))
            nll = jnp.logaddexp(0.0, logits) - b * logits
            return jnp.mean(jnp.sum(jnp.where(m, 0.0, nll), -1)), {}
    elif name == "transformer":
        apply, params = nn.functional(nn.TransformerEncoder(32, 64, dim=128, depth=2, num_heads=4, rngs=nnx.Rngs(0)))
        batch = rng.integers(0, 32, size=(32, 64)).astype(np.int32)

        def loss_fn(p, b, key):
            keys = jax.random.split(key, b.shape[0])
            mask = jax.vmap(masks.mask_by_rate, in_axes=(0, None, None))(keys, 64, 0.5)
            logp = jax.nn.log_softmax(apply(p, b, mask))
            nll = -jnp.take_along_axis(logp, b[..., None], -1)[..., 0]
            return jnp.sum(jnp.where(mask, 0.0, nll)) / jnp.maximum(jnp.sum(~mask), 1), {}
    else:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    return loss_fn, params, batch


def _worker(names: list[str], min_time: float) -> dict:
    """In a process with N devices: seconds per sharded train step of each model."""
    import jax
    import optax

    from benchmarks import common
    from mamjax import sharding, train

    mesh = sharding.data_mesh()
    out = {"devices": jax.device_count()}
    for name in names:
        loss_fn, params, batch = _problem(name)
        opt = optax.adam(1e-3)
        step = train.make_train_step(loss_fn, opt, donate=False)
        state = sharding.replicate(train.TrainState.create(params, opt), mesh)
        b = sharding.shard_batch(batch, mesh)
        key = jax.random.key(0)
        out[name] = common.time_fn(lambda: step(state, b, key), min_time=min_time)
    return out


def measure(names=tuple(MODELS), device_counts=(1, 8), min_time: float = 2.0) -> dict:
    """``{n: {model: seconds per step}}`` from one subprocess per device count."""
    out = {}
    for n in device_counts:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}", JAX_PLATFORMS="cpu",
                   PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
        cmd = [sys.executable, "-m", "benchmarks.sharding_bench", "--worker", ",".join(names),
               "--min-time", str(min_time)]
        r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if r.returncode:
            raise RuntimeError(f"worker with {n} devices failed:\n{r.stderr[-3000:]}")
        out[n] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def rows(result: dict) -> list[list]:
    one, eight = result[1], result[8]
    return [[name, MODELS[name], 1 / one[name], 1 / eight[name], f"{100 * (eight[name] / one[name] - 1):+.0f}%"]
            for name in MODELS if name in one]


COLUMNS = ["model", "what", "steps/s, 1 device", "steps/s, 8 virtual devices", "time per step, 8 vs 1"]


def main(quick: bool = False) -> str:
    from benchmarks import common

    result = measure(min_time=0.5 if quick else 2.0)
    out = ("## Sharding overhead on one CPU: train step on 1 vs 8 virtual devices\n\n"
           f"load before: {os.getloadavg()[0]:.2f}\n\n" + common.table(COLUMNS, rows(result)) + "\n")
    print(out)
    return out


def write_results(quick: bool = False) -> str:
    """Runs this benchmark, fit_bench and the FLOP table; writes results/scale.json.

    ``quick``: 0.5 s per timing, 400 fit steps, the FLOPs of the two smaller configurations only.
    """
    from benchmarks import fit_bench, transformer_throughput
    from reproduce import common as rc

    load0 = os.getloadavg()[0]
    min_time, fit_steps = (0.5, 400) if quick else (2.0, fit_bench.STEPS)
    shard = measure(min_time=min_time)
    fit = fit_bench.measure(steps=fit_steps)
    flops = transformer_throughput.flops_rows(["ucr-prior", "pixels-28"] if quick else None)
    load1 = os.getloadavg()[0]
    tables = [
        rc.table("Train step on 1 vs 8 virtual CPU devices (one process each; the 8 share the same cores, "
                 "so this is the sharding overhead, not a speed-up).", COLUMNS, rows(shard)),
        rc.table("`train.fit` on one device, steps per dispatch 1 vs 8 (rate after compilation, from "
                 "metrics.jsonl's steps_per_sec; no checkpoints).", fit_bench.COLUMNS, fit_bench.rows(fit)),
        rc.table("Compiled FLOPs of one train step (XLA cost analysis of the CPU compile) and the step time it "
                 "predicts at an accelerator's peak. No accelerator was used: predictions, not measurements.",
                 transformer_throughput.FLOP_COLUMNS, flops),
    ]
    return rc.write_results(
        "scale", title="Sharding overhead, steps per dispatch, and FLOPs per step.",
        command="python benchmarks/sharding_bench.py --write-results" + (" --quick" if quick else ""),
        budget=f"median step time over >= {min_time} s per cell; fit runs of {fit_steps} steps; "
               f"1-minute load average {load0:.2f} before, {load1:.2f} after (a shared 2-core machine: "
               "figures under load are lower than on an idle one)",
        seeds=[0], tables=tables,
        notes=["Timings are wall-clock on a CPU shared with other jobs; compare the columns of one row, "
               "not rows across machines.",
               "Predicted times are FLOPs / peak: a lower bound that assumes 100% of the peak; real steps of "
               "these small models reach a fraction of it (memory traffic, kernel launches)."],
        data={"sharding_seconds_per_step": shard, "fit": fit, "loadavg": [load0, load1]})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write-results", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--min-time", type=float, default=2.0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(_worker(a.worker.split(","), a.min_time)))
    elif a.write_results:
        print(write_results(a.quick))
    else:
        main(a.quick)
