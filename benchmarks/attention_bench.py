"""WS-RAM (K = 1, 5) vs REINFORCE RAM on 60x60 translated / cluttered MNIST, same CPU budget.

    python benchmarks/attention_bench.py            # full: 150 s of training per run, both datasets
    python benchmarks/attention_bench.py --quick    # 15 s per run, translated only

Every run uses the same glimpse settings (6 glimpses, 3 scales of 12x12, a 6x6 grid of
candidate locations, 128 hidden units), Adam 1e-3, batch 64, and the same wall-clock
training budget (evaluation excluded). Printed tables (markdown):

1. test error after the budget and at equal epochs, and the error curve over seconds (REINFORCE
   K=5 averages its update over 5 trajectories per image: the same sampling work as WS-RAM K=5);
2. gradient variance (trace of the covariance over keys, same batch, trained params) of
   WS-RAM with and without control variates and of REINFORCE with and without its baseline;
3. steps/s and per-step memory (XLA temp + arguments + outputs of the compiled step).

The published numbers are after full training on GPUs (RAM: 1.22% translated, 4.08%
cluttered, 6 glimpses, Mnih et al. 2014); a CPU budget of minutes reaches far less.
"""

from __future__ import annotations

import argparse
import time

try:
    from benchmarks.common import peak_rss_mib
except ImportError:  # run as a script from benchmarks/
    from common import peak_rss_mib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mamjax import train
from mamjax.attention import control_variates as cv
from mamjax.attention import data as att_data
from mamjax.attention import model as model_lib
from mamjax.attention import reinforce, rws, training
from mamjax.data.stream import BatchStream

PAPER = {"translated": 1.22, "cluttered": 4.08}
RUNS = (("wsram", 5), ("wsram", 1), ("reinforce", 1), ("reinforce", 5))


def _flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def _grad_variance(loss_fn, params, batch, n_keys, parts):
    """Total variance over keys of the gradient blocks ``parts`` (list of key paths)."""
    def one(key):
        g = jax.grad(lambda p: loss_fn(p, batch, key)[0])(params)
        out = []
        for path in parts:
            sub = g
            for k in path:
                sub = sub[k]
            out.append(_flat(sub))
        return out

    draws = jax.jit(lambda ks: jax.lax.map(one, ks))(jax.random.split(jax.random.key(123), n_keys))
    return [float(jnp.sum(jnp.var(d, axis=0, ddof=1))) for d in draws]


def run_dataset(dataset, *, seconds, num_train, num_test, n_keys, chunk, seed=0):
    cfg = model_lib.RAMConfig()
    tr = att_data.load(dataset, "train", num_examples=num_train)
    te = att_data.load(dataset, "test", num_examples=num_test)
    stream = BatchStream({"image": tr["image"], "label": tr["label"]}, 64, seed=seed)
    var_batch = {"image": jnp.asarray(te["image"][:16]), "label": jnp.asarray(te["label"][:16])}
    results = []
    for method, k in RUNS:
        ram, params, loss_fn = training.make_method(method, cfg, jax.random.key(seed), num_samples=k)
        opt = optax.adam(1e-3)
        state = train.TrainState.create(params, opt)
        step_fn = train.make_train_step(loss_fn, opt)
        batch0 = stream(0)
        mem = step_fn.lower(state, batch0, jax.random.key(0)).compile().memory_analysis()
        step_bytes = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        eval_key = jax.random.key(seed + 1)

        def eval_fn(st, ram=ram):
            return {"error": model_lib.error_rate(ram, st.params, te["image"], te["label"], eval_key)}

        state, curve = training.fit_for_seconds(step_fn, state, stream, seconds=seconds, key=jax.random.key(seed + 2),
                                                eval_fn=eval_fn, chunk=chunk)
        # Throughput after the first chunk (which includes compilation).
        c1, cl = curve[1], curve[-1]
        sps = (cl["step"] - c1["step"]) / max(cl["seconds"] - c1["seconds"], 1e-9) if len(curve) > 2 else float("nan")
        trained = state.params
        if method == "wsram":
            with_cv = lambda p, b, key, ram=ram, k=k: rws.wsram_loss(ram, p, b, key, num_samples=k)  # noqa: E731
            no_cv = lambda p, b, key, ram=ram, k=k: rws.wsram_loss(ram, p, b, key, num_samples=k,  # noqa: E731
                                                                   control_variates=False)
            parts = [("model", "policy"), ("model",), ("proposal",)]
            v_on = _grad_variance(with_cv, trained, var_batch, n_keys, parts)
            v_off = _grad_variance(no_cv, trained, var_batch, n_keys, parts)
            variance = {"on": v_on, "off": v_off, "names": ["policy", "model (all)", "proposal"], "cv": "control variates"}
        else:
            loss = lambda p, b, key, ram=ram, k=k: reinforce.reinforce_loss(ram, p, b, key, num_samples=k)  # noqa
            parts = [("model", "policy"), ("model",)]
            v_on = _grad_variance(loss, trained, var_batch, n_keys, parts)
            v_off = _grad_variance(loss, {"model": trained["model"]}, var_batch, n_keys, parts)
            variance = {"on": v_on, "off": v_off, "names": ["policy", "model (all)"], "cv": "learned baseline"}
        results.append({"name": f"{method} K={k}", "curve": curve, "steps": int(state.step), "sps": sps,
                        "epochs": int(state.step) / stream.steps_per_epoch, "step_mb": step_bytes / 2 ** 20,
                        "variance": variance})
    return results


def print_tables(dataset, results, seconds, num_train, num_test) -> str:
    """Prints the dataset's tables and returns them."""
    lines = []
    lines.append(f"\n### 60x60 {dataset} MNIST: {seconds:.0f} s of CPU training per run "
                 f"({num_train} training digits, error on {num_test} test images, 1 sampled trajectory)\n")
    common = min(r["epochs"] for r in results)  # every run got at least this many epochs
    lines.append(f"| run | steps | epochs | test error % (same seconds) | test error % at {common:.2f} epochs "
                 "(interpolated) | paper (RAM, full training) |")
    lines.append("|---|---|---|---|---|---|")
    for r in results:
        ep = [c["step"] / r["steps"] * r["epochs"] for c in r["curve"]]
        at = np.interp(common, ep, [c["error"] for c in r["curve"]])
        lines.append(f"| {r['name']} | {r['steps']} | {r['epochs']:.2f} | {100 * r['curve'][-1]['error']:.2f} | "
                     f"{100 * at:.2f} | {PAPER[dataset]} |")
    lines.append("\nerror curve (test error % at training seconds):\n")
    lines.append("| run | seconds:error% |")
    lines.append("|---|---|")
    for r in results:
        pts = ", ".join(f"{c['seconds']:.0f}s:{100 * c['error']:.1f}" for c in r["curve"])
        lines.append(f"| {r['name']} | {pts} |")
    lines.append("\ngradient variance (trace of covariance over keys; trained params; 16 test images):\n")
    lines.append("| run | block | with | without | ratio with/without |")
    lines.append("|---|---|---|---|---|")
    for r in results:
        v = r["variance"]
        for name, on, off in zip(v["names"], v["on"], v["off"]):
            lines.append(f"| {r['name']} ({v['cv']}) | {name} | {on:.4g} | {off:.4g} | {on / off:.3f} |")
    lines.append("\n| run | steps/s (batch 64) | step memory MB (XLA temp+args+out) |")
    lines.append("|---|---|---|")
    for r in results:
        lines.append(f"| {r['name']} | {r['sps']:.1f} | {r['step_mb']:.1f} |")
    out = "\n".join(lines)
    print(out)
    return out


def main(quick: bool = False) -> str:
    if quick:
        settings = dict(seconds=15.0, num_train=5000, num_test=300, n_keys=16, chunk=50)
        datasets = ("translated",)
    else:
        settings = dict(seconds=150.0, num_train=60000, num_test=2000, n_keys=100, chunk=200)
        datasets = ("translated", "cluttered")
    t0 = time.time()
    parts = []

    def say(text: str) -> None:
        print(text)
        parts.append(text)

    say(f"# attention_bench (quick={quick}); jax {jax.__version__}, devices {jax.devices()}")
    say("Paper claim (Ba et al. 2015): WS-RAM learns much faster than REINFORCE-trained RAM; "
        "RAM's published errors: 1.22% (translated), 4.08% (cluttered), 6 glimpses.")
    for ds in datasets:
        results = run_dataset(ds, **settings)
        parts.append(print_tables(ds, results, settings["seconds"], settings["num_train"], settings["num_test"]))
    peak = peak_rss_mib()
    say(f"\nprocess peak RSS {peak:.0f} MB; total wall time {time.time() - t0:.0f} s "
        f"(shared 2-core CPU: other jobs ran at the same time, so absolute speeds vary).")
    return "\n".join(parts)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
