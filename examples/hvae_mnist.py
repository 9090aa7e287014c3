"""Train the rectified-Gaussian hierarchical VAE (Salimans 2016) on binarized MNIST.

    python examples/hvae_mnist.py --workdir /tmp/hvae --quick          # ~2-3 min on CPU
    python examples/hvae_mnist.py --workdir /tmp/hvae --steps 50000    # the paper's set-up, longer
    python examples/hvae_mnist.py --preset rg_mean_field --binarization static ...

Killed and restarted with the same command, a run resumes from its last Orbax
checkpoint in ``--workdir`` (``mamjax.train.fit``). Writes ``samples.png``,
``reconstructions.png``, ``sparsity.png``, ``curves.png`` and ``results.json``
into the workdir and prints a table; every number names the binarization.
"""

from __future__ import annotations

import argparse
import json
import os

import jax
import numpy as np

from mamjax import hvae, train


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="rg_structured", choices=sorted(hvae.PRESETS))
    p.add_argument("--binarization", default="dynamic", choices=hvae.experiment.BINARIZATIONS)
    p.add_argument("--steps", type=int, default=None, help="training steps (default 20000; 600 with --quick)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3, help="Adamax learning rate")
    p.add_argument("--kl-warmup", type=int, default=None,
                   help="steps of linear KL warm-up (0: none; default: a fifth of --steps, at most 10000)")
    p.add_argument("--combine", default=None, choices=hvae.COMBINES,
                   help="combination rule of the structured posterior (default: the preset's)")
    p.add_argument("--free-bits", type=float, default=0.0, help="free bits, nats per stochastic layer")
    p.add_argument("--train-iwae-k", type=int, default=1, help="K > 1: train on the IWAE bound")
    p.add_argument("--learned-prior", action="store_true", help="learned top-layer prior")
    p.add_argument("--num-dense", type=int, default=None, help="deterministic layers per stochastic layer")
    p.add_argument("--conv", action="store_true", help="convolutional first feature and decoder (28x28)")
    p.add_argument("--iwae-k", type=int, default=100, help="K of the final importance-weighted bound")
    p.add_argument("--num-test", type=int, default=1000, help="test images evaluated (first N)")
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", default=None)
    p.add_argument("--quick", action="store_true", help="600 steps, 500 test images, K=50 (unless given)")
    args = p.parse_args(argv)
    given = {a.split("=")[0] for a in (argv if argv is not None else __import__("sys").argv[1:])}
    if args.quick:
        for flag, attr, value in [("--num-test", "num_test", 500), ("--iwae-k", "iwae_k", 50),
                                  ("--eval-every", "eval_every", 300)]:
            if flag not in given:
                setattr(args, attr, value)
    if args.steps is None:
        args.steps = 600 if args.quick else 20000
    if args.kl_warmup is None:
        args.kl_warmup = min(args.steps // 5, 10000)
    return args


def main(argv=None):
    args = parse_args(argv)
    data = hvae.experiment.mnist_data(args.binarization, batch_size=args.batch_size, seed=args.seed,
                                      num_test=args.num_test)
    side = data.test.shape[1]
    cfg = dict(hvae.PRESETS[args.preset])
    for name, value in [("combine", args.combine), ("num_dense", args.num_dense)]:
        if value is not None:
            cfg[name] = value
    if args.learned_prior:
        cfg["learned_prior"] = True
    if args.conv:
        cfg["conv"] = True
    s = hvae.experiment.setup(side * side, cfg, lr=args.lr, seed=args.seed, free_bits=args.free_bits,
                              iwae_k=args.train_iwae_k)
    stream = hvae.with_kl_warmup(data.stream, args.kl_warmup) if args.kl_warmup else data.stream
    val = data.test[:200]

    def eval_fn(state):  # quick ELBO on 200 test images during training (running BN averages)
        r = hvae.evaluate(s.apply, state.params, state.model_state, val, jax.random.key(1), num_samples=0)
        return {"test_elbo": r["elbo"], **{k: v for k, v in r.items() if k.startswith(("active_l", "kl_l"))}}

    try:
        state, _ = train.fit(s.train_step, s.state, stream, num_steps=args.steps, key=jax.random.key(args.seed),
                             workdir=args.workdir, save_every=max(args.steps // 10, 100), eval_fn=eval_fn,
                             eval_every=args.eval_every, log_every=100, desc=f"hvae {args.preset}")
    except train.NonFiniteError as e:  # e.g. a huge --lr: exit non-zero with the step, no tables of NaN
        raise SystemExit(f"error: {e}") from None
    res = hvae.evaluate(s.apply, state.params, state.model_state, data.test, jax.random.key(2),
                        num_samples=args.iwae_k, batch_size=max(1, 10000 // args.iwae_k))
    tag = f"{args.binarization}-binarized MNIST"
    print(f"\n## {args.preset} on {tag}: {args.steps} steps, batch {args.batch_size}, "
          f"test subset {len(data.test)} images (nats per image)\n")
    print("| metric | value |\n|---|---|")
    print(f"| test ELBO ({args.binarization}) | {-res['elbo']:.2f} (as -ELBO) |")
    print(f"| test -IWAE bound K={args.iwae_k} ({args.binarization}) | {-res[f'iwae_{args.iwae_k}']:.2f} |")
    layers = sorted(int(k[len("kl_l"):]) for k in res if k.startswith("kl_l"))
    for i in layers:
        print(f"| layer z{i}: KL / zero fraction / active units ({args.binarization}) | "
              f"{res[f'kl_l{i}']:.2f} / {res[f'zero_frac_l{i}']:.3f} / {res[f'active_l{i}']} |")

    if args.workdir:
        out = dict(res, preset=args.preset, binarization=args.binarization, steps=args.steps,
                   num_test=len(data.test))
        with open(os.path.join(args.workdir, "results.json"), "w") as f:
            json.dump(out, f, indent=1)
        k1, k2 = jax.random.split(jax.random.key(3))
        samples = hvae.sample(s.apply, state.params, state.model_state, k1, 64)
        x = hvae.flatten_images(data.test[:32])
        recon = hvae.reconstruct(s.apply, state.params, state.model_state, x, k2)
        pairs = np.stack([np.asarray(x), np.asarray(recon)], 1).reshape(2 * x.shape[0], -1)
        hvae.plots.save_images(os.path.join(args.workdir, "samples.png"), samples,
                               f"{args.preset}: p(x|z) means of prior samples ({tag})")
        hvae.plots.save_images(os.path.join(args.workdir, "reconstructions.png"), pairs,
                               f"{args.preset}: test image | reconstruction mean ({tag})", rows=8)
        hvae.plots.save_layer_stats(os.path.join(args.workdir, "sparsity.png"), res,
                                    f"{args.preset}, {tag}, test subset")
        train.plot_metrics(os.path.join(args.workdir, "metrics.jsonl"), os.path.join(args.workdir, "curves.png"),
                           keys=["elbo", "eval/test_elbo", "zero_frac_l1", "kl_l1"])
        print(f"\nplots and results.json in {args.workdir}")
    return res


if __name__ == "__main__":
    main()
