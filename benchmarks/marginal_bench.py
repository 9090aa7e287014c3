"""Marginalization models: marginal-query cost, MNIST quality, Ising, beside the paper (Liu et al. 2024).

    python benchmarks/marginal_bench.py [--quick]
    python -m benchmarks.run marginal_bench [--quick]

1. Time to score a batch of 16 random subsets: MaM (one network call on 16 rows) vs
   AO-ARM (D conditionals per subset, batched as one call on 16 * D rows), same
   ResidualMLP backbone, untrained weights (cost does not depend on them), for
   D = 64, 256, 784; plus train steps/s of both stages and peak memory.
2. Quality on binarized MNIST: the README's example run (14x14, CPU budget) with its
   NLLs and MaM-vs-AO-ARM-E correlations, beside the paper's 28x28 numbers.
3. Energy-based training on a small Ising lattice: NLL, KL with exact log Z, speed-up.
4. The paper's ARDM U-Net (28x28, 256 channels, 4 blocks, marginal head 784 -> 4096 -> 4096 -> 1):
   forward and stage-1 train step at batch 16 and 128 (seconds; GFLOP/s from XLA's compiled cost
   analysis against the matmul peak measured in the same run; compiled memory analysis), and the
   MaM-vs-AO-ARM query time at D = 784 (``--train-batches 16``: the train step at batch 16 only, where
   batch 128's would not fit the time at hand). ``--part unet`` runs only this part and writes
   ``results/marginal_networks.json`` (rendered into docs/marginal_networks.md by
   ``python -m reproduce.readme docs/marginal_networks.md``).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import matmul_peak_gflops, peak_rss_mib, table, time_fn  # noqa: E402
from mamjax import progress  # noqa: E402
from mamjax.marginal import arm, experiment, unet  # noqa: E402


def _load_example(name):
    path = os.path.join(os.path.dirname(HERE), "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_example_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _config(example: str, variant: str) -> str:
    return os.path.join(os.path.dirname(HERE), "configs", f"{example}.py") + ":" + variant


def query_cost(dims=(64, 256, 784), width: int = 512, depth: int = 2, min_time: float = 1.0) -> list[list]:
    rows = []
    for d in dims:
        nets = experiment.make_nets(jax.random.key(d), d, 2, width=width, depth=depth)
        x = jax.random.bernoulli(jax.random.key(1), 0.5, (16, d)).astype(jnp.int32)
        mask = experiment.random_subsets(jax.random.key(2), 16, d)
        t = experiment.time_queries(nets, nets.params, x, mask, min_time=min_time)
        rows.append([d, t["mam_sec"] * 1e3, t["ao_arm_sec"] * 1e3, t["speedup"]])
    return rows


def train_rates(d: int = 196, width: int = 512, batch: int = 128, min_time: float = 2.0) -> list[list]:
    nets = experiment.make_nets(jax.random.key(0), d, 2, width=width, depth=2)
    x = jax.random.bernoulli(jax.random.key(1), 0.3, (batch, d)).astype(jnp.int32)
    out = []

    def rate(step, state, key):
        holder = [state]

        def run():  # the step donates its state: thread it through
            holder[0], metrics = step(holder[0], x, key)
            return metrics["loss"]
        return 1.0 / time_fn(run, min_time=min_time)

    fresh = jax.tree.map(jnp.copy, nets.params)  # stage 1's step donates (deletes) nets.params
    out.append(["stage 1 AO-ARM", rate(*experiment.arm_stage(nets), jax.random.key(2))])
    out.append(["stage 2 MaM (w = 0.5 chains)",
                rate(*experiment.mam_stage(nets, fresh, x, chain_weight=0.5, gibbs_steps=1), jax.random.key(3))])
    return out


def _available_bytes() -> float:
    """MemAvailable of /proc/meminfo (inf where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


class _Budget:
    """Wall-clock budget of part 4: a call whose time, estimated from its FLOPs at the last measured
    FLOP rate, would end past the deadline is skipped (and said so) instead of being run."""

    def __init__(self, seconds: float = float("inf")):
        self.deadline, self.rate = time.perf_counter() + seconds, None

    def refuse(self, flops: float, reps: int) -> str | None:
        if self.rate is None or not flops:
            return None
        est = reps * flops / self.rate
        left = self.deadline - time.perf_counter()
        return f"skipped: ~{est:.0f} s estimated, {max(left, 0):.0f} s of the budget left" if est > left else None


def _compiled_run(fn, args, reps: int, label: str, budget: _Budget | None = None, mem_fraction: float = 0.5,
                  flops_hint: float = 0.0, warmup: int = 0) -> dict:
    """Compiles ``fn`` ahead of time, reads XLA's FLOP count and memory, then times ``reps`` calls
    after ``warmup`` untimed ones (the result's ``reps`` and ``warmup`` say how many ran).

    Compilation is timed apart (never in ``sec``). A call whose compiled footprint (arguments +
    outputs + temporaries) exceeds ``mem_fraction`` of the available memory, or whose estimated
    time exceeds what is left of ``budget``, is not run (with ``flops_hint``, e.g. scaled from a smaller
    batch, the estimate is made before compiling, and a refused call is not compiled either).
    """
    budget = budget or _Budget()
    refused = budget.refuse(flops_hint, reps + warmup)
    if refused:
        return {"label": label, "flops": flops_hint, "compile_sec": None, "xla_bytes": None, "temp_bytes": None,
                "sec": None, "reps": 0, "warmup": 0,
                "skipped": refused + " (FLOPs scaled from the smaller batch; not compiled)"}
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_sec = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = (cost[0] if cost else {}) if isinstance(cost, (list, tuple)) else (cost or {})
    mem = compiled.memory_analysis()
    need = sum(float(getattr(mem, a, 0) or 0) for a in
               ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes")) if mem else 0.0
    flops = float(cost.get("flops", 0.0))
    out = {"label": label, "flops": flops, "compile_sec": compile_sec, "xla_bytes": need,
           "temp_bytes": float(getattr(mem, "temp_size_in_bytes", 0) or 0) if mem else 0.0, "sec": None,
           "reps": 0, "warmup": 0, "skipped": None}
    if need > mem_fraction * _available_bytes():
        out["skipped"] = f"skipped: needs {need / 2**30:.1f} GiB, {_available_bytes() / 2**30:.1f} GiB available"
        return out
    out["skipped"] = budget.refuse(flops, reps + warmup)
    if out["skipped"]:
        return out
    for _ in range(warmup):
        jax.block_until_ready(compiled(*args))
    times = []
    for _ in progress.bar(range(reps), desc=label):
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    out["sec"] = float(np.median(times))
    out["reps"], out["warmup"] = len(times), warmup
    if flops:
        budget.rate = flops / out["sec"]
    return out


def unet_cost(batches=(16, 128), ch: int = 256, num_res_blocks: int = 4, marg_hidden: int = 4096,
              reps=(3, 1), budget: _Budget | None = None, warmup=None, train_batches=None) -> list[dict]:
    """Forward (both heads) and stage-1 AO-ARM train step of the U-Net at each batch size.

    ``reps`` / ``warmup``: timed / untimed calls per batch size (warmup None: none). ``train_batches``:
    the batch sizes whose train step is timed (None: all); at the others the row says it was not run.
    """
    if len(reps) != len(batches) or (warmup is not None and len(warmup) != len(batches)):
        raise ValueError(f"`reps` {reps} and `warmup` {warmup} need one entry per batch size of {batches}.")
    warmup = (0,) * len(batches) if warmup is None else tuple(warmup)
    train_batches = set(batches if train_batches is None else train_batches)
    nets, raw_step, state = _unet_train_step(ch, num_res_blocks, marg_hidden, remat=False)

    def forward(params, x, mask):
        return nets.cond_apply(params["conditional"], x, mask), nets.marg_apply(params["marginal"], x, mask)

    rows, prev = [], {}
    for b, r, w in zip(batches, reps, warmup):
        x = jax.random.bernoulli(jax.random.key(b), 0.5, (b, 784)).astype(jnp.int32)
        mask = experiment.random_subsets(jax.random.key(b + 1), b, 784)
        for what, fn, args in (("forward", forward, (nets.params, x, mask)),
                               ("train step (stage 1)", raw_step, (state, x, jax.random.key(3)))):
            hint = prev[what][0] * b / prev[what][1] if what in prev else 0.0  # FLOPs grow with the batch
            if what != "forward" and b not in train_batches:
                rows.append({"label": f"{what} b{b}", "flops": hint, "compile_sec": None, "xla_bytes": None,
                             "temp_bytes": None, "sec": None, "reps": 0, "warmup": 0, "batch": b, "what": what,
                             "skipped": f"not run (--train-batches {' '.join(map(str, sorted(train_batches)))}; "
                                        "GFLOP scaled from the smaller batch)"})
                continue
            row = dict(_compiled_run(fn, args, r, f"{what} b{b}", budget, flops_hint=hint, warmup=w),
                       batch=b, what=what)
            prev[what] = (row["flops"], b)
            rows.append(row)
            if what != "forward" and (row["skipped"] or "").startswith("skipped: needs"):
                rows.append(_remat_train_row(b, r, w, x, budget, ch, num_res_blocks, marg_hidden))
    return rows


def _unet_train_step(ch: int, num_res_blocks: int, marg_hidden: int, remat: bool):
    """``(nets, raw_step, state)``: the paper-size-shaped U-Net pair and its stage-1 step (Adam, clip 100)."""
    nets = unet.make_unet_nets(jax.random.key(0), 28, 2, ch=ch, num_res_blocks=num_res_blocks,
                               marg_hidden=marg_hidden, remat=remat)
    step, state = experiment.arm_stage(nets, lr=1e-4, clip=100.0)
    return nets, step.__wrapped__, state  # the step without jit's state donation: the same state is timed twice


def _remat_train_row(b: int, reps: int, warmup: int, x, budget, ch: int, num_res_blocks: int,
                     marg_hidden: int) -> dict:
    """The stage-1 train step with every U-Net block rematerialised (``remat=True``), for a batch
    whose stored activations do not fit: same step and numbers, one extra forward pass of compute."""
    _, raw_step, state = _unet_train_step(ch, num_res_blocks, marg_hidden, remat=True)
    what = "train step (stage 1, remat)"
    row = _compiled_run(raw_step, (state, x, jax.random.key(3)), reps, f"{what} b{b}", budget, warmup=warmup)
    return dict(row, batch=b, what=what)


def unet_query(ch: int = 256, num_res_blocks: int = 4, marg_hidden: int = 4096, num_subsets: int = 16,
               direct_subsets: int = 0, reps: int = 3, budget: _Budget | None = None) -> dict:
    """MaM vs AO-ARM time to score ``num_subsets`` random subsets of 784 pixels with the U-Net.

    MaM: one marginal-network call, measured. AO-ARM: D = 784 conditional-network calls per subset;
    measured directly (``direct_subsets`` subsets, their 784 rows each batched into one call) where
    affordable, and always estimated as D x the measured time of one conditional call on the batch.
    """
    nets = unet.make_unet_nets(jax.random.key(0), 28, 2, ch=ch, num_res_blocks=num_res_blocks,
                               marg_hidden=marg_hidden)
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (num_subsets, 784)).astype(jnp.int32)
    mask = experiment.random_subsets(jax.random.key(2), num_subsets, 784)
    mam = _compiled_run(nets.marg_apply, (nets.params["marginal"], x, mask), reps, "MaM query", budget)
    one = _compiled_run(nets.cond_apply, (nets.params["conditional"], x, mask), reps, "one conditional call", budget)
    if mam["sec"] is None or one["sec"] is None:
        raise RuntimeError(f"the query timing was skipped: {mam['skipped'] or one['skipped']}")
    out = {"ch": ch, "num_subsets": num_subsets, "mam_sec": mam["sec"], "cond_call_sec": one["sec"],
           "ao_arm_est_sec": 784 * one["sec"], "mam_flops": mam["flops"], "cond_flops": one["flops"],
           "direct_subsets": direct_subsets}
    if direct_subsets:
        xs, ms = x[:direct_subsets], mask[:direct_subsets]
        chain = lambda p, a, m: arm.arm_log_marginal_ensemble(nets.cond_apply, p, a, m, jax.random.key(0), 1)
        direct = _compiled_run(chain, (nets.params["conditional"], xs, ms), 1, "AO-ARM query (direct)")
        mam_d = _compiled_run(nets.marg_apply, (nets.params["marginal"], xs, ms), 3, "MaM query (direct)")
        one_d = _compiled_run(nets.cond_apply, (nets.params["conditional"], xs, ms), 3, "one call (direct)")
        out.update(direct_ao_arm_sec=direct["sec"], direct_mam_sec=mam_d["sec"],
                   direct_ao_arm_est_sec=784 * one_d["sec"], direct_ao_arm_flops=direct["flops"])
    return out


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def unet_part(quick: bool = False, write: bool = True, max_seconds: float = 330.0, train_batches=None) -> str:
    """Part 4: the U-Net's cost and the MaM-vs-AO-ARM query at D = 784; writes results/marginal_networks.json.

    The cost table gets ``max_seconds`` of wall time from its start (network set-up and compilation
    included); calls estimated to overrun it are skipped, and the table says so.
    """
    from reproduce import common as rc

    load_before = _load()
    size = dict(ch=32, num_res_blocks=1, marg_hidden=256) if quick else dict(ch=256, num_res_blocks=4, marg_hidden=4096)
    n_peak = 2048 if quick else 4096
    peak = matmul_peak_gflops(n=n_peak, min_time=0.5 if quick else 2.0)
    # Query first (cheap at batch 16, and its conditional call primes the budget's FLOP rate).
    query = unet_query(**size, num_subsets=4 if quick else 16, direct_subsets=0, reps=3 if quick else 1)
    budget = _Budget(max_seconds)
    budget.rate = query["cond_flops"] / query["cond_call_sec"]
    # Warm-up call at the small batch only: a second batch-128 call would double the largest cost; by then the
    # process's thread pools and allocator are warm and the AOT-compiled executable needs no further compilation.
    cost = unet_cost((2, 4) if quick else (16, 128), reps=(2, 1) if quick else (1, 1), warmup=(1, 0),
                     budget=budget, train_batches=train_batches, **size)
    # A direct 784-call query costs 784 rows per subset (~40 s for one subset at 32 channels here): not in --quick.
    small = None if quick else unet_query(ch=32, num_res_blocks=1, marg_hidden=256, num_subsets=1, direct_subsets=1)
    peak_mib = peak_rss_mib()
    load_after = _load()
    gflops = lambda r: None if r["sec"] is None else r["flops"] / r["sec"] / 1e9
    rows = [[r["what"], r["batch"], r["flops"] / 1e9, r["skipped"] or r["sec"], r["warmup"], r["reps"],
             "-" if r["sec"] is None else gflops(r), "-" if r["sec"] is None else gflops(r) / peak,
             "-" if r["compile_sec"] is None else r["compile_sec"],
             "-" if r["xla_bytes"] is None else r["xla_bytes"] / 2**30] for r in cost]
    name = "U-Net " + ("32 ch, 1 block, marginal MLP 256 (--quick)" if quick else
                       "28x28, 256 ch, 4 blocks, marginal MLP 4096 (paper size)")
    q_rows = [[name, query["num_subsets"], query["mam_sec"] * 1e3, "-", query["ao_arm_est_sec"] * 1e3,
               query["ao_arm_est_sec"] / query["mam_sec"]]]
    if small is not None:
        q_rows.append(["U-Net 32 ch, 1 block (direct check)", small["direct_subsets"], small["direct_mam_sec"] * 1e3,
                       small["direct_ao_arm_sec"] * 1e3, small["direct_ao_arm_est_sec"] * 1e3,
                       small["direct_ao_arm_sec"] / small["direct_mam_sec"]])
    tables = [
        rc.table(f"{name}: one call, float32, {jax.devices()[0].platform}; matmul peak measured in the same run: "
                 f"{peak:.0f} GFLOP/s ({n_peak}^2 jit matmul)",
                 ["computation", "batch", "GFLOP (XLA)", "seconds", "warm-up calls", "timed calls", "GFLOP/s",
                  "of matmul peak", "compile s",
                  "XLA memory GiB"], rows),
        rc.table("Scoring random subsets at D = 784: MaM (1 marginal-network call) vs AO-ARM (784 conditional "
                 "calls per subset)",
                 ["network", "subsets", "MaM ms", "AO-ARM ms (measured)", "AO-ARM ms (784 x one call)",
                  "AO-ARM / MaM (measured, else estimated)"], q_rows),
    ]
    notes = [f"Load average (1/5/15 min) {load_before} before, {load_after} after; 2 CPU cores shared with other "
             "jobs, so absolute seconds move between runs; the ratios are taken within this run.",
             "Train step = the stage-1 AO-ARM step (order-agnostic loss on the conditional network, Adam, clip 100); "
             "where it does not fit, the 'remat' row tries the same step with every residual + attention block "
             "rematerialised (unet remat=True: activations recomputed in the backward pass; XLA's CPU backend does "
             "not shrink its compiled footprint, see docs/marginal_networks.md); "
             "GFLOP are XLA's count for the compiled call; XLA memory = arguments + outputs + temporaries of the "
             "compiled call (compiled memory analysis); a call needing over half the available memory, or estimated "
             f"(FLOPs at the last measured rate) to overrun the cost table's {max_seconds:.0f} s of wall time "
             "(set-up and compilation included), is skipped.",
             "AO-ARM at paper size is estimated as 784 x the measured conditional call on the same batch (a direct "
             "784-call query of 16 subsets is ~12,500 U-Net rows, hours on this CPU); the 32-channel row (full runs "
             "only) checks the estimate against a direct chain-rule query with its 784 rows batched in one call.",
             f"Peak resident memory of the benchmark process: {peak_mib:.0f} MiB (ru_maxrss)."]
    if write and not quick:  # --quick sizes are a smoke run, not results
        tb = "" if train_batches is None else " --train-batches " + " ".join(map(str, train_batches))
        rc.write_results("marginal_networks",
                         command=f"python benchmarks/marginal_bench.py --part unet --max-seconds {max_seconds:g}{tb}",
                         title="The MaM paper's networks on this CPU: U-Net cost and marginal-query time",
                         budget="timing runs, 1-3 calls per cell after ahead-of-time compilation",
                         seeds=[0], tables=tables, notes=notes,
                         data={"cost": cost, "query": query, "query_small": small, "peak_gflops": peak,
                               "peak_rss_mib": peak_mib, "load_before": load_before, "load_after": load_after})
    out = "\n\n".join("### " + t["caption"] + "\n\n" + table(t["columns"], t["rows"]) for t in tables)
    return out + "\n\n" + "\n".join("- " + n for n in notes)


def main(quick: bool = False) -> str:
    t0 = time.perf_counter()
    parts = []
    dims = (64, 256) if quick else (64, 256, 784)
    rows = query_cost(dims, min_time=0.3 if quick else 1.0)
    parts.append("### 1. Scoring 16 random subsets (ms), ResidualMLP width 512 depth 2, same backbone\n\n"
                 + table(["D", "MaM: 1 call", "AO-ARM: D conditionals", "ratio"], rows)
                 + "\n\nPaper: ~7,400x at D = 784 (U-Net, GPU). Ratio here ~ D x (batching gain of 16*D rows);"
                 " both networks see the same one-hot input, the AO-ARM's D conditionals run as one batched"
                 " call (fewer dispatches than D sequential calls, same FLOPs).")
    rates = train_rates(min_time=0.5 if quick else 2.0)
    parts.append("### Train steps/s (D = 196, batch 128, width 512)\n\n" + table(["stage", "steps/s"], rates))

    mnist = _load_example("marginal_mnist")
    with tempfile.TemporaryDirectory() as wd:
        argv = ["--workdir", wd] + (["--config", _config("marginal_mnist", "quick")] if quick else [])
        mnist.main(argv)
        with open(os.path.join(wd, "results.json")) as f:
            r = json.load(f)
    a = r["config"]
    budget = (f"{a['resolution']}x{a['resolution']} static-binarized MNIST, MLP width {a['width']}, "
              f"{a['arm_steps']} + {a['mam_steps']} steps at batch {a['batch_size']}, {r['train_seconds']:.0f} s "
              f"training on this CPU; first {a['eval']['num_test']} test images")
    pa = r["paper_agreement"]
    parts.append("### 2. Binarized MNIST quality (ours: " + budget + "; paper: 28x28, U-Net, GPU days)\n\n" + table(
        ["metric", "ours", "paper"],
        [["AO-ARM-E NLL (bpd)", r["ao_arm_e_bpd"], 0.148],
         ["AO-ARM-S NLL (bpd)", r["ao_arm_s_bpd"], "-"], ["AO-ARM-E NLL (nats)", r["ao_arm_e_nats"], "-"],
         ["MaM f(x) NLL, unnormalized (nats)", r["mam_nats"], "not comparable (paper's 0.149 bpd uses p_phi)"],
         ["Spearman MaM vs AO-ARM-E (paper protocol)", pa["mam"]["spearman"], 0.992],
         ["Pearson MaM vs AO-ARM-E (paper protocol)", pa["mam"]["pearson"], 0.993],
         ["Spearman, control: censor count only (paper protocol)", pa["censor_count"]["spearman"], "-"],
         ["Spearman MaM vs AO-ARM-E (pooled random subsets)", r["spearman"], "-"],
         ["Spearman, control: |S| only (pooled random subsets)", r["size_only_spearman"], "-"],
         ["query speed-up (16 subsets, D = %d)" % (a["resolution"] ** 2), r["speedup"], "~7400 (D=784, GPU)"]]))

    ising = _load_example("marginal_ising")
    with tempfile.TemporaryDirectory() as wd:
        argv = ["--workdir", wd, "--config", _config("marginal_ising", "quick" if quick else "cpu")]
        ising.main(argv + ([] if quick else ["--config.steps=1000"]))
        with open(os.path.join(wd, "results.json")) as f:
            s = json.load(f)
    side = s["config"]["side"]
    parts.append(f"### 3. Energy-based MaM, {side}x{side} Ising ({s['config']['steps']} steps x "
                 f"{s['config']['num_chains']} chains, {s['config']['backbone']} width {s['config']['width']}; "
                 "paper: 10x10)\n\n" + table(
                     ["metric", "ours", "paper (10x10)"],
                     [["NLL ground truth, MaM (bpd)", s["nll_mam_bpd"], 0.80],
                      ["NLL ground truth, AO-ARM (bpd)", s["nll_arm_bpd"], 0.79],
                      ["KL(p_phi || p), exact log Z (nats)", s["kl_arm"], "~0.9 (MaM, log Z added back)"],
                      ["KL plug-in, MaM (nats)", s["kl_mam_plugin"], "-"],
                      ["marginal query speed-up", s["speedup"], "~1400"]]))
    parts.append("### 4. The paper's U-Net\n\n" + unet_part(quick, write=not quick))
    parts.append(f"Peak RSS {peak_rss_mib():.0f} MiB; benchmark wall time {time.perf_counter() - t0:.0f} s "
                 f"on {os.cpu_count()} CPU cores ({jax.devices()[0].platform}).")
    out = "\n\n".join(parts)
    print(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--part", choices=["all", "unet"], default="all",
                    help="'unet': only part 4 (writes results/marginal_networks.json unless --quick)")
    ap.add_argument("--train-batches", type=int, nargs="+", default=None,
                    help="part 4: batch sizes whose train step is timed (default: all, i.e. 16 and 128)")
    ap.add_argument("--max-seconds", type=float, default=330.0,
                    help="part 4: wall seconds of the U-Net cost table; calls estimated to overrun it are skipped")
    a = ap.parse_args()
    if a.part == "unet":
        print(unet_part(quick=a.quick, max_seconds=a.max_seconds, train_batches=a.train_batches))
    else:
        main(quick=a.quick)
