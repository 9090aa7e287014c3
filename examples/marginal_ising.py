"""Energy-based training of a marginalization model on the Ising model (Liu et al. 2024, Sec. 6).

    python examples/marginal_ising.py --workdir /tmp/mam_ising            # 6x6 lattice, a few minutes on CPU
    python examples/marginal_ising.py --workdir /tmp/mam_ising10 --side 10 --steps 20000 --width 2048 --depth 3
                                                                          # the paper's 10x10 set-up (accelerator)

Target: log f(x) = s^T J s + b^T s on an L x L periodic lattice (s = 2x - 1 spins,
J = 0.1 * adjacency, b = 0.2; :mod:`mamjax.data.ising`), exact log Z by transfer
matrix. No data: the marginal network f_theta and the conditional network p_phi are
trained together by the REINFORCE estimate of KL(p_theta || f/Z) plus alpha = 4
times the self-consistency penalty, on persistent chains re-sampled by p_phi.
Reports NLL of ground-truth (long Gibbs) samples, KL to the target with the exact
log Z, and the speed of one marginal query. Resumes from ``--workdir``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import train
from mamjax.marginal import experiment


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=6, help="lattice side L (paper: 10)")
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--num-chains", type=int, default=256, help="persistent chains = batch per step")
    p.add_argument("--gibbs-steps", type=int, default=4, help="positions re-sampled per chain per step (paper: 4)")
    p.add_argument("--alpha", type=float, default=4.0, help="weight of the self-consistency penalty (paper: 4)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--num-eval", type=int, default=1000, help="ground-truth and model samples for evaluation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None)
    p.add_argument("--quick", action="store_true", help="4x4 lattice, 500 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.side, args.steps, args.num_eval = 4, 500, 500
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    d = args.side ** 2
    log_f, _, _, log_z = experiment.ising_target(args.side)
    key = jax.random.key(args.seed)
    k_init, k_chain, k_train, k_true, k_eval, k_time = jax.random.split(key, 6)
    nets = experiment.make_nets(k_init, d, 2, width=args.width, depth=args.depth)
    chains = jax.random.bernoulli(k_chain, 0.5, (args.num_chains, d)).astype(jnp.int32)
    step, state = experiment.energy_stage(nets, log_f, chains, lr=args.lr, alpha=args.alpha,
                                          gibbs_steps=args.gibbs_steps)
    state, history = train.fit(step, state, lambda i: np.zeros((), np.float32), num_steps=args.steps, key=k_train,
                               workdir=args.workdir, save_every=500, log_every=50, desc=f"EB Ising {args.side}x{args.side}")
    t_train = time.perf_counter() - t0
    x_true = experiment.ising_ground_truth(args.side, k_true, args.num_eval)
    res = experiment.evaluate_energy_model(nets, state.params, log_f, log_z, x_true, k_eval, num_samples=args.num_eval)
    q_x = x_true[:16]
    q_mask = experiment.random_subsets(k_time, 16, d)
    timing = experiment.time_queries(nets, state.params, q_x, q_mask, min_time=0.5)
    rate = [h["steps_per_sec"] for h in history if "steps_per_sec" in h]

    print(f"\n## Energy-based MaM on the {args.side}x{args.side} Ising model (D = {d}, log Z = {log_z:.3f}); "
          f"{args.steps} steps x {args.num_chains} chains, width {args.width} depth {args.depth}\n")
    print("| metric | ours | paper (10x10) |\n|---|---|---|")
    print(f"| NLL of ground-truth samples, MaM (bpd) | {res['nll_mam_bpd']:.4f} | 0.80 |")
    print(f"| NLL of ground-truth samples, AO-ARM raster (bpd) | {res['nll_arm_bpd']:.4f} | 0.79 (ARM) |")
    print(f"| KL(p_phi raster || p), exact log Z (nats) | {res['kl_arm']:.4f} | - |")
    print(f"| KL plug-in with MaM log p (nats) | {res['kl_mam_plugin']:.4f} | - |")
    print(f"| MaM f(empty) (target 0) | {res['f_empty']:.4f} | - |")
    print(f"| score 16 subsets: MaM / AO-ARM ({d} calls) | {timing['mam_sec'] * 1e3:.3f} / "
          f"{timing['ao_arm_sec'] * 1e3:.2f} ms = {timing['speedup']:.0f}x | ~1400x |")
    if rate:
        print(f"| train steps/s | {np.median(rate):.1f} | - |")
    print(f"\n(wall time {time.perf_counter() - t0:.0f} s, training {t_train:.0f} s; ground truth: "
          f"{args.num_eval} checkerboard Gibbs chains x 1000 sweeps)")

    if args.workdir:
        experiment.save_image_grid(res["samples"][:32], os.path.join(args.workdir, "samples.png"), args.side,
                                   title="MaM / AO-ARM samples (raster order)")
        experiment.save_image_grid(np.asarray(x_true[:32]), os.path.join(args.workdir, "ground_truth.png"),
                                   args.side, title="ground-truth Gibbs samples")
        train.plot_metrics(os.path.join(args.workdir, "metrics.jsonl"), os.path.join(args.workdir, "curves.png"),
                           keys=["kl_plus_log_z", "sc_mse", "f_empty"])
        out = {k: v for k, v in res.items() if k != "samples"}
        out.update(timing, log_z=log_z, args=vars(args))
        with open(os.path.join(args.workdir, "results.json"), "w") as f:
            json.dump(out, f, indent=1)
        print(f"wrote plots and results.json to {args.workdir}")


if __name__ == "__main__":
    try:
        main()
    except train.NonFiniteError as e:  # e.g. a huge --lr: exit non-zero with the step, no tables of NaN
        raise SystemExit(f"error: {e}") from None
