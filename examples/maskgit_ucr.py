"""TimeVQVAE-style masked generative modeling of UCR time series, naive MaskGIT vs ESS, by the paper's protocol.

Stages (each checkpointed in --workdir by mamjax.train.fit; rerun the same command to resume):
STFT VQ tokenizer -> class-conditional MaskGIT priors with class dropout (low / high band) -> FCN
classifier on the real training set (the feature extractor of every metric; its test accuracy is
printed) -> for naive decoding and ESS, on one schedule: unconditional samples (FID vs the test set
and vs the test set through the tokenizer round trip, IS over 10 splits) and class-conditional
samples (CAS) -> plots of real vs generated series.

    python examples/maskgit_ucr.py --config configs/maskgit_ucr.py:quick --workdir /tmp/maskgit_gunpoint
    python examples/maskgit_ucr.py --config.dataset=ItalyPowerDemand --workdir runs/maskgit_ipd
    python examples/maskgit_ucr.py --config configs/maskgit_ucr.py:official    # official sizes (accelerator)

Training is data-parallel over all devices (--num_devices); batch sizes are global.
"""

from __future__ import annotations

import json
import os
import time

from mamjax import cli


def plot_real_vs_generated(test_set, generated, path, per_plot=20):
    """One column per source (real test, each sampler's unconditional samples), ``per_plot`` series each."""
    import matplotlib.pyplot as plt
    import numpy as np

    cols = [("real test", test_set["x"])] + [(f"{m} (unconditional)", g["uncond"]) for m, g in generated.items()]
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 3.2), squeeze=False, sharey=True)
    for ax, (name, x) in zip(axes[0], cols):
        for row in np.asarray(x)[:per_plot]:
            ax.plot(row, lw=0.8, alpha=0.6)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("time step")
    axes[0, 0].set_ylabel("z-normalized value")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None):
    args, config = cli.parse(argv, example="maskgit_ucr", description=__doc__)
    import jax

    from mamjax import data, train
    from mamjax.maskgit import pipeline

    mesh = cli.make_mesh(args.num_devices)
    cli.check_batch_size(config.tokenizer.batch_size, mesh, "config.tokenizer.batch_size")
    cli.check_batch_size(config.prior.batch_size, mesh, "config.prior.batch_size")
    cli.save_config(args.workdir, config, may_change=("eval.*",))
    tr, te = data.load(f"ucr/{config.dataset}", "train"), data.load(f"ucr/{config.dataset}", "test")
    t0 = time.perf_counter()
    tk = config.tokenizer
    tok_kwargs = dict(batch_size=tk.batch_size, learning_rate=tk.learning_rate, hidden=tk.hidden,
                      code_dim=tk.code_dim, num_codes=tk.num_codes, n_fft=tk.n_fft, hop=tk.hop, window=tk.window,
                      padding=tk.padding, tokens_per_step=tk.tokens_per_step, floor_down=tk.floor_down,
                      down_l=tk.down_l, down_h=tk.down_h, codebook=tk.codebook, ema_decay=tk.ema_decay)
    ev, pr = config.eval, config.prior
    out = pipeline.run_all(
        tr, te, workdir=args.workdir, seed=config.seed, tokenizer_steps=tk.steps, prior_steps=pr.steps,
        fcn_steps=config.fcn_steps, cas_steps=ev.cas_steps, num_samples=ev.num_samples,
        num_cas_samples=ev.num_cas_samples, sample_batch=ev.sample_batch, num_decode_steps=ev.num_decode_steps,
        temperature=ev.temperature, guidance_scale=ev.guidance_scale, methods=tuple(ev.methods),
        prior_dim=pr.dim, prior_depth=pr.depth, prior_heads=pr.num_heads, prior_batch=pr.batch_size,
        prior_lr=pr.learning_rate, p_uncond=pr.p_uncond, prior_loss_positions=pr.loss_positions,
        tokenizer_kwargs=tok_kwargs, mesh=mesh, save_every=config.save_every)
    elapsed = time.perf_counter() - t0

    s = out["scores"]
    first = s[ev.methods[0]]
    n_uncond = len(out["generated"][ev.methods[0]]["uncond"])
    print(f"\n{config.dataset}: tokens {out['tokenizer'].len_l} low / {out['tokenizer'].len_h} high band, "
          f"{n_uncond} unconditional + {ev.num_cas_samples} class-conditional samples per sampler, "
          f"T={ev.num_decode_steps}, {elapsed:.0f} s in all")
    print(f"FCN (feature extractor) test accuracy: {100 * first['clf_test_acc']:.1f} %")
    print("| sampler | FID vs test (lower) | FID vs round-trip test | IS, 10 splits (higher) | CAS % (higher) |")
    print("|---|---|---|---|---|")
    for m in ev.methods:
        r = s[m]
        print(f"| {m} | {r['fid']:.2f} | {r['fid_rt']:.2f} | {r['is']:.2f} ± {r['is_std']:.2f} | "
              f"{100 * r['cas']:.1f} |")
    print(f"| real (floors) | {first['fid_floor']:.2f} (train vs test) | {first['fid_rt_floor']:.2f} "
          f"(round trip vs test) | {first['is_real']:.2f} ± {first['is_real_std']:.2f} (test) | - |")
    if jax.process_index() == 0:
        with open(os.path.join(args.workdir, "scores.json"), "w") as f:
            json.dump(s, f, indent=1)
        png = plot_real_vs_generated(te, out["generated"], os.path.join(args.workdir, "real_vs_generated.png"))
        for stage in ("tokenizer", "prior"):
            log = os.path.join(args.workdir, stage, "metrics.jsonl")
            if os.path.exists(log):
                train.plot_metrics(log, os.path.join(args.workdir, f"{stage}_metrics.png"))
        print(f"plots: {png}; scores.json and config.json in {args.workdir}")
    return out


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")  # the script chooses the backend; the library never does
    cli.run(main)
