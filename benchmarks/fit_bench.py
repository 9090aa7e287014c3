"""``train.fit`` steps/s with 1 vs 8 steps per dispatch (``lax.scan``), on the smallest models.

For a step of a few microseconds of compute, Python and dispatch overhead dominate; scanning
k steps in one dispatch removes k - 1 of them. The rate is the ``steps_per_sec`` that fit
logs (compilation excluded), over the second half of the run.

    python benchmarks/fit_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys

if os.path.dirname(os.path.dirname(os.path.abspath(__file__))) not in sys.path:  # run as a script
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

STEPS = 2000
COLUMNS = ["model", "steps/s, 1 per dispatch", "steps/s, 8 per dispatch", "speed-up"]


def measure(names=("mlp", "residual_mlp"), steps: int = STEPS, ks=(1, 8)) -> dict:
    """``{model: {k: steps/s}}`` of fit over ``steps`` steps (rate of the last log interval)."""
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks.sharding_bench import _problem
    from mamjax import train

    out = {}
    for name in names:
        loss_fn, params, batch = _problem(name)
        out[name] = {}
        for k in ks:
            opt = optax.adam(1e-3)
            fresh = jax.tree.map(jnp.copy, params)  # the step donates its state: each run gets its own copy
            _, hist = train.fit(train.make_train_step(loss_fn, opt), train.TrainState.create(fresh, opt),
                                lambda step: batch, num_steps=steps, key=jax.random.key(0), log_every=steps // 2,
                                progress=False, steps_per_dispatch=k)
            out[name][k] = hist[-1]["steps_per_sec"]
    return out


def rows(result: dict) -> list[list]:
    return [[name, r[1], r[8], f"{r[8] / r[1]:.2f}x"] for name, r in result.items()]


def main(quick: bool = False) -> str:
    from benchmarks import common

    result = measure(steps=400 if quick else STEPS)
    out = ("## fit: steps per dispatch 1 vs 8\n\n" f"load before: {os.getloadavg()[0]:.2f}\n\n"
           + common.table(COLUMNS, rows(result)) + "\n")
    print(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
