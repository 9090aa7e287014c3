"""Step time and memory of every attention estimator at batch 64 and K = 1, 5, 10 trajectories per image.

    flock /tmp/mamjax_heavy.lock python benchmarks/attention_bench.py          # ~4 min
    python benchmarks/attention_bench.py --quick                               # K = 1, 5; fewer rows

One full training step (loss, gradient, Adam update) of the paper-sized model (60x60 images,
6 glimpses of 3 scales of 12x12, 6x6 location grid, 128 hidden units), timed in one process after
compilation, on random uint8 images. The K trajectories of
the 64 images run as one batched computation (``B * K`` rows through one ``lax.scan``; on the grid the
glimpse features of all 36 locations are computed once per image and gathered). The row "per-glimpse
features" turns that table off (``feature_table=False``) to show what it buys. Columns: ms per step at
each K, the ratio to a REINFORCE step (K = 1) measured in the same run, and the step's XLA memory
(temp + arguments + outputs of the compiled step); the process's peak RSS is printed at the end.
Accuracy-versus-updates comparisons are in ``reproduce/attention.py``.

The machine is shared, so the steps are timed **interleaved**: every round calls each compiled step once, and a
step's time is its fastest round (the least disturbed; the median is printed too). Ratios therefore compare
steps measured under the same load. A second table times the glimpse sensor alone: the reference
``extract_glimpse`` vmapped over glimpses against the batched sensors the model uses (``grid_glimpses`` for the
36-location feature table, ``extract_glimpses`` for K x 64 glimpses at traced centres) -- extracting glimpses,
not the networks, was what made a WS-RAM step cost 5.3 REINFORCE steps.
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
import jax.numpy as jnp
import numpy as np
import optax

from mamjax import progress, train
from mamjax.attention import glimpse
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


def build_step(name: str, k: int, batch: dict):
    """``(call, step MB)`` of one compiled training step, or None where the estimator needs K >= 2."""
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
    call = lambda: step(state, batch, key)[0].params  # noqa: E731
    jax.block_until_ready(call())  # compile outside the timed rounds
    return call, mb


def interleaved(calls: dict, rounds: int) -> dict:
    """``name -> (fastest, median)`` seconds per call, each round calling every function once."""
    times = {n: [] for n in calls}
    for _ in range(rounds):
        for n, f in calls.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            times[n].append(time.perf_counter() - t0)
    return {n: (min(v), float(np.median(v))) for n, v in times.items()}


def sensor_calls(images: jax.Array, k: int) -> dict:
    """The glimpses of one step, by the reference sensor (vmapped) and by the batched ones."""
    c = model_lib.RAMConfig()
    grid = glimpse.location_grid(c.image_size, c.grid_size)
    kw = dict(patch=c.patch, num_scales=c.num_scales)
    ref_table = jax.jit(lambda x: jax.vmap(jax.vmap(lambda im, ce: glimpse.extract_glimpse(im, ce, **kw),
                                                    in_axes=(None, 0)), in_axes=(0, None))(x, jnp.asarray(grid)))
    new_table = jax.jit(lambda x: glimpse.grid_glimpses(x, np.unique(grid[:, 0]), **kw))
    idx = jnp.repeat(jnp.arange(images.shape[0]), k)
    centres = jax.random.randint(jax.random.key(0), (len(idx), 2), 0, c.image_size)
    ref_traj = jax.jit(lambda x: jax.vmap(lambda i, ce: glimpse.extract_glimpse(x[i], ce, **kw))(idx, centres))
    new_traj = jax.jit(lambda x: glimpse.extract_glimpses(glimpse.pad_images(x, **kw), idx, centres, **kw))
    calls = {"36-location table, reference (vmapped extract_glimpse)": ref_table,
             "36-location table, grid_glimpses (pooling matmuls)": new_table,
             f"{len(idx)} glimpses at traced centres, reference (vmapped extract_glimpse)": ref_traj,
             f"{len(idx)} glimpses at traced centres, extract_glimpses (padded once)": new_traj}
    for f in calls.values():
        jax.block_until_ready(f(images))
    return {n: functools.partial(f, images) for n, f in calls.items()}


def main(quick: bool = False) -> str:
    t0, load0 = time.time(), os.getloadavg()
    ks = (1, 5) if quick else (1, 5, 10)
    names = QUICK if quick else tuple(ESTIMATORS)
    rounds = 3 if quick else 7
    rng = np.random.default_rng(0)
    batch = {"image": rng.integers(0, 256, (64, 60, 60)).astype(np.uint8),
             "label": rng.integers(0, 10, 64).astype(np.int32)}
    built = {}
    for name in progress.bar(names, desc="compile"):
        for k in ks:
            built[name, k] = build_step(name, k, batch)
    calls = {nk: b[0] for nk, b in built.items() if b is not None}
    timed = interleaved(calls, rounds)
    ref = timed[names[0], 1][0]
    rows = []
    for name in names:
        row = [name]
        for k in ks:
            if built[name, k] is None:
                row += ["n/a (K >= 2)", "", ""]
            else:
                fast, med = timed[name, k]
                row += [f"{1000 * fast:.1f} ({1000 * med:.1f})", f"{fast / ref:.2f}", f"{built[name, k][1]:.0f}"]
        rows.append(row)
    headers = ["estimator"]
    for k in ks:
        headers += [f"ms/step K={k} fastest (median)", "x REINFORCE K=1", f"step MB K={k}"]
    images = model_lib.float_images(batch["image"])
    sensors = interleaved(sensor_calls(images, 5), 3 * rounds)
    sensor_rows = [[n, f"{1000 * f:.2f}", f"{1000 * m:.2f}"] for n, (f, m) in sensors.items()]
    r5 = timed.get(("WS-RAM inference net + CV (wake-q)", 5))
    lines = [f"# attention_bench (quick={quick}); jax {jax.__version__}, {jax.devices()[0].platform} x"
             f"{len(jax.devices())}; batch 64, 60x60, 6 glimpses, 6x6 grid, 128 hidden; {rounds} interleaved rounds",
             "", table(headers, rows), "",
             "Glimpse sensor alone (one step's glimpses of the 64 images, K = 5; fastest / median of "
             f"{3 * rounds} interleaved rounds):", "", table(["sensor", "ms fastest", "ms median"], sensor_rows), ""]
    if r5:
        lines.append(f"K=5 WS-RAM (inference net + CV) / REINFORCE step-time ratio: {r5[0] / ref:.2f} "
                     f"(fastest rounds; medians {r5[1] / timed[names[0], 1][1]:.2f}; 5 independent REINFORCE steps "
                     "would be 5.00).")
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
