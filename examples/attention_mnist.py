"""Train WS-RAM (Ba et al., 2015) and the REINFORCE RAM baseline on 60x60 translated / cluttered MNIST.

    python examples/attention_mnist.py --workdir /tmp/attention            # quick (~3 min on CPU)
    python examples/attention_mnist.py --workdir /tmp/attention --steps 20000 --num-train 60000 \
        --runs wsram:5,wsram:1,reinforce:1 --dataset cluttered

Each run checkpoints into ``<workdir>/<method>_k<K>`` (Orbax, resumed automatically when
the same command is run again) and logs ``metrics.jsonl``. Plots in the workdir:
``glimpses_<run>.png`` (sampled glimpse paths on test images) and ``error_curves.png``
(test error against epochs and against training seconds). A table is printed at the end.
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np
import optax

from mamjax import train
from mamjax.attention import data as att_data
from mamjax.attention import model as model_lib
from mamjax.attention import plotting, training
from mamjax.data.stream import BatchStream

PAPER = {"translated": ("RAM 6 glimpses (Mnih et al.)", 1.22), "cluttered": ("RAM 6 glimpses (Mnih et al.)", 4.08)}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True)
    p.add_argument("--dataset", choices=("translated", "cluttered"), default="translated")
    p.add_argument("--runs", default="wsram:5,reinforce:1", help="comma list of method:K")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-train", type=int, default=10000, help="MNIST training digits used")
    p.add_argument("--num-test", type=int, default=1000, help="test images used for the error curves")
    p.add_argument("--glimpses", type=int, default=6)
    p.add_argument("--scales", type=int, default=3)
    p.add_argument("--grid", type=int, default=6)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--no-control-variates", action="store_true")
    p.add_argument("--locations", choices=model_lib.LOCATIONS, default="grid", help="categorical grid or Gaussian (RAM)")
    p.add_argument("--core", choices=model_lib.CORES, default="relu")
    p.add_argument("--proposal-update", choices=("wake", "sleep", "wake+sleep"), default="wake")
    p.add_argument("--estimator", choices=("rws", "bound"), default="rws", help="WS-RAM: RWS or VIMCO bound gradient")
    p.add_argument("--prior-baseline", action="store_true", help="WS-RAM: learned baseline for the prior update")
    p.add_argument("--reward", choices=("accuracy", "log_likelihood"), default="accuracy", help="REINFORCE reward")
    p.add_argument("--eval-samples", type=int, default=5, help="M prior trajectories averaged per test image")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.workdir, exist_ok=True)
    cfg = model_lib.RAMConfig(num_glimpses=args.glimpses, num_scales=args.scales, grid_size=args.grid,
                              hidden=args.hidden, locations=args.locations, core=args.core)
    tr = att_data.load(args.dataset, "train", num_examples=args.num_train)
    te = att_data.load(args.dataset, "test", num_examples=args.num_test)
    stream = BatchStream({"image": tr["image"], "label": tr["label"]}, args.batch_size, seed=args.seed)
    runs = [(m, int(k)) for m, k in (r.split(":") for r in args.runs.split(","))]
    curves, rows = {}, []
    for method, k in runs:
        name = f"{method}_k{k}"
        wd = os.path.join(args.workdir, name)
        wsram = dict(proposal_update=args.proposal_update, estimator=args.estimator,
                     prior_baseline=args.prior_baseline) if method == "wsram" else {}
        ram, params, loss_fn = training.make_method(method, cfg, jax.random.key(args.seed), num_samples=k,
                                                    control_variates=not args.no_control_variates,
                                                    reward=args.reward, **wsram)
        opt = optax.adam(args.lr)
        state = train.TrainState.create(params, opt)
        eval_key = jax.random.key(args.seed + 1)

        def eval_fn(st, ram=ram):
            return {"error": model_lib.error_rate(ram, st.params, te["image"], te["label"], eval_key,
                                                  num_samples=args.eval_samples)}

        try:
            state, _ = train.fit(train.make_train_step(loss_fn, opt), state, stream, num_steps=args.steps,
                                 key=jax.random.key(args.seed + 2), workdir=wd, save_every=args.eval_every,
                                 eval_fn=eval_fn, eval_every=args.eval_every, log_every=args.eval_every, desc=name)
        except train.NonFiniteError as e:  # e.g. a huge --lr: exit non-zero with the step, no tables of NaN
            raise SystemExit(f"error: {e}") from None
        records = train.read_metrics(os.path.join(wd, "metrics.jsonl"))
        curves[name] = plotting.error_curve(records, stream.steps_per_epoch)
        plotting.plot_glimpse_paths(ram, state.params, te["image"][:16], jax.random.key(3),
                                    os.path.join(args.workdir, f"glimpses_{name}.png"), labels=te["label"][:16],
                                    title=f"{name}: predicted (true)")
        final = model_lib.error_rate(ram, state.params, te["image"], te["label"], eval_key,
                                     num_samples=args.eval_samples)
        sps = [r["steps_per_sec"] for r in records if "steps_per_sec" in r]
        rows.append((name, int(state.step), curves[name]["seconds"][-1] if len(curves[name]["seconds"]) else 0.0,
                     float(np.median(sps)) if sps else float("nan"), 100 * final))
    label, ref = PAPER[args.dataset]
    plotting.plot_error_curves(curves, os.path.join(args.workdir, "error_curves.png"),
                               title=f"60x60 {args.dataset} MNIST, {args.glimpses} glimpses",
                               reference={f"{label} {ref}%": ref})
    print(f"\n| run | steps | train s | steps/s | test error % ({len(te['label'])} test images, "
          f"M={args.eval_samples} averaged predictive) |")
    print("|---|---|---|---|---|")
    for name, steps, secs, sps, err in rows:
        print(f"| {name} | {steps} | {secs:.0f} | {sps:.1f} | {err:.2f} |")
    print(f"| {label} (paper, full training) | | | | {ref} |")
    print(f"\nplots: {args.workdir}/error_curves.png, {args.workdir}/glimpses_*.png")


if __name__ == "__main__":
    main()
