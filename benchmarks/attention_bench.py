"""Step time and memory of every attention estimator at batch 64 and K = 1, 5, 10 trajectories per image.

    flock /tmp/mamjax_heavy.lock python benchmarks/attention_bench.py          # ~3 min
    python benchmarks/attention_bench.py --quick                               # K = 1, 5; fewer rows

One full training step (loss, gradient, Adam update) of the paper-sized model (60x60 images,
6 glimpses of 3 scales of 12x12, 6x6 location grid, 128 hidden units), timed back to back in one
process (median of repeated calls after compilation), on random uint8 images. The K trajectories of
the 64 images run as one batched computation (``B * K`` rows through one ``lax.scan``; on the grid the
glimpse features of all 36 locations are computed once per image and gathered). The row "per-glimpse
features" turns that table off (``feature_table=False``) to show what it buys. Columns: ms per step at
each K, the ratio to a REINFORCE step (K = 1) measured in the same run, and the step's XLA memory
(temp + arguments + outputs of the compiled step); the process's peak RSS is printed at the end.
Accuracy-versus-updates comparisons are in ``reproduce/attention.py``.
"""

from __future__ import annotations

import argparse
import functools
import os
import time

try:
    from benchmarks.common import peak_rss_mib, table, time_fn
except ImportError:  # run as a script from benchmarks/
    from common import peak_rss_mib, table, time_fn

import jax
import numpy as np
import optax

from mamjax import train
from mamjax.attention import model as model_lib
from mamjax.attention import rws, training

# name -> (make_method kwargs, RAMConfig overrides, loss overrides)
ESTIMATORS = {
    "REINFORCE 0/1 reward + baseline": (dict(method="reinforce", reward="accuracy"), {}, {}),
    "REINFORCE log-lik reward + baseline": (dict(method="reinforce", reward="log_likelihood"), {}, {}),
    "WS-RAM q = prior": (dict(method="wsram", proposal=False), {}, {}),
    "WS-RAM inference net + CV (wake-q)": (dict(method="wsram"), {}, {}),
    "WS-RAM inference net, no CV": (dict(method="wsram", control_variates=False), {}, {}),
    "WS-RAM inference net + CV, wake+sleep-q": (dict(method="wsram", proposal_update="wake+sleep"), {}, {}),
    "WS-RAM inference net + CV + learned prior baseline": (dict(method="wsram", prior_baseline=True), {}, {}),
    "WS-RAM bound estimator (VIMCO baselines)": (dict(method="wsram", estimator="bound", control_variates=False),
                                                 {}, {}),
    "WS-RAM inference net + CV, per-glimpse features": (dict(method="wsram"), {}, dict(feature_table=False)),
    "WS-RAM inference net + CV, Gaussian locations": (dict(method="wsram"), dict(locations="gaussian"), {}),
    "WS-RAM inference net + CV, LSTM core": (dict(method="wsram"), dict(core="lstm"), {}),
}
QUICK = ("REINFORCE 0/1 reward + baseline", "WS-RAM q = prior", "WS-RAM inference net + CV (wake-q)",
         "WS-RAM inference net + CV, per-glimpse features")


def step_cost(name: str, k: int, batch: dict, *, min_time: float):
    spec, cfg_over, loss_over = ESTIMATORS[name]
    spec = dict(spec)
    if spec.get("estimator") == "bound" and k < 2:
        return None
    cfg = model_lib.RAMConfig(**cfg_over)
    ram, params, loss_fn = training.make_method(spec.pop("method"), cfg, jax.random.key(0), num_samples=k, **spec)
    if loss_over.get("feature_table") is False:
        loss_fn = functools.partial(rws.wsram_loss, ram, num_samples=k, feature_table=False)
    opt = optax.adam(1e-3)
    state = train.TrainState.create(params, opt)
    step = train.make_train_step(loss_fn, opt, donate=False)
    key = jax.random.key(1)
    mem = step.lower(state, batch, key).compile().memory_analysis()
    mb = (mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes) / 2 ** 20
    sec = time_fn(lambda: step(state, batch, key)[0].params, min_time=min_time)
    return 1000 * sec, mb


def main(quick: bool = False) -> str:
    t0, load0 = time.time(), os.getloadavg()
    ks = (1, 5) if quick else (1, 5, 10)
    names = QUICK if quick else tuple(ESTIMATORS)
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (64, 60, 60)).astype(np.uint8),
             "label": rng.integers(0, 10, 64).astype(np.int32)}
    results = {}
    for name in names:
        for k in ks:
            results[name, k] = step_cost(name, k, batch, min_time=0.5 if quick else 2.0)
            print(f"  {name} K={k}: {results[name, k]}", flush=True)
    ref = results[names[0], 1][0]
    rows = []
    for name in names:
        row = [name]
        for k in ks:
            r = results[name, k]
            row += ["n/a (K >= 2)", "", ""] if r is None else [f"{r[0]:.1f}", f"{r[0] / ref:.2f}", f"{r[1]:.0f}"]
        rows.append(row)
    headers = ["estimator"]
    for k in ks:
        headers += [f"ms/step K={k}", "x REINFORCE K=1", f"step MB K={k}"]
    r5 = results.get(("WS-RAM inference net + CV (wake-q)", 5))
    lines = [f"# attention_bench (quick={quick}); jax {jax.__version__}, {jax.devices()[0].platform} x"
             f"{len(jax.devices())}; batch 64, 60x60, 6 glimpses, 6x6 grid, 128 hidden", "",
             table(headers, rows), ""]
    if r5:
        lines.append(f"K=5 WS-RAM (inference net + CV) / REINFORCE step-time ratio: {r5[0] / ref:.2f} "
                     f"(5 independent REINFORCE steps would be 5.00).")
    load1 = os.getloadavg()
    lines.append(f"process peak RSS {peak_rss_mib():.0f} MiB; wall {time.time() - t0:.0f} s; 1-minute load average "
                 f"{load0[0]:.2f} at start, {load1[0]:.2f} at end (this benchmark alone adds up to ~2 on 2 cores; "
                 "absolute times move between runs; ratios are from one run).")
    out = "\n".join(lines)
    print(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
