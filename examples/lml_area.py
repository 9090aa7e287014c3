"""The area under the MPT curve is the log marginal likelihood (paper exp. 2, Fig. 3).

For PPCA with D tokens, plots the per-size MPT score ``s_M`` (mean over examples)
against the mask rate ``M / D``; the area ``sum_M s_M`` (equivalently ``D`` times
the mean height) is the LML. Few masked tokens give high scores (much context),
many give low ones; a fixed rate picks one point of this curve.

    python examples/lml_area.py          # ~1 min CPU

Paper setting: PPCA N = 100 (default of its script), D = 200 tokens, K = 2, beta = 5,
one or more permutations per size, 5 seeds. Ours: the same, K masks per size in one
vmapped call, and the exact LML beside the area.
"""

from __future__ import annotations

import os

from mamjax import cli


def _import_heavy():
    """jax and the library, imported after the command line is parsed (``--help`` answers at once)."""
    global jax, jnp, np, lml, progress
    import jax
    import jax.numpy as jnp
    import numpy as np
    from mamjax import lml, progress


def main(argv=None):
    args, config = cli.parse(argv, example="lml_area", description=__doc__)
    _import_heavy()
    cli.save_config(args.workdir, config)
    os.makedirs(args.workdir, exist_ok=True)
    noise = 1.0 / config.beta
    k_w, k_x = jax.random.split(jax.random.key(0))
    w = jax.random.normal(k_w, (config.dim, config.latent))
    x = lml.ppca_sample(k_x, w, noise, config.n)
    truth = float(jnp.mean(lml.ppca_lml(x, w, noise)))
    cond = lml.ppca_cond_logpdf(w, noise)
    curves, rows = [], []
    for s in progress.bar(range(config.seeds), desc="area: seeds"):
        est = lml.cumulative_mpt(cond, x, jax.random.key(100 + s), config.masks)
        curve = np.asarray(jnp.mean(est.per_size, axis=0))
        curves.append(curve)
        rows.append((s, float(curve.sum()), float(jnp.sqrt(jnp.mean(est.stderr**2)))))
    rates = np.arange(1, config.dim + 1) / config.dim

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s, c in enumerate(curves):
        ax.fill_between(rates, c, 0.0, alpha=0.06, color=f"C{s}", step="mid")
        ax.plot(rates, c, lw=2, alpha=0.8, color=f"C{s}", label=f"seed {s}: area {c.sum():.2f}")
    ax.set_xlabel("mask rate M / D")
    ax.set_ylabel("MPT score s_M (nats per masked token)")
    ax.set_title(f"PPCA D={config.dim}, {config.masks} masks/size: area = LML ({truth:.2f})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = os.path.join(args.workdir, "area.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)

    print(f"\nPPCA N={config.n}, D={config.dim}, {config.masks} masks per size; exact mean LML {truth:.4f} nats/example.")
    print("| seed | area = sum_M s_M | area - LML | mean reported stderr (per example) |")
    print("|---|---|---|---|")
    for s, area, se in rows:
        print(f"| {s} | {area:.4f} | {area - truth:+.4f} | {se:.4f} |")
    for r in (0.15, 0.2, 0.5, 0.8):
        m = max(int(round(r * config.dim)), 1)
        print(f"fixed rate {r:.0%}: D * s_M = {config.dim * np.mean([c[m - 1] for c in curves]):.3f}")
    print(f"\nplot: {png}")
    return rows


if __name__ == "__main__":
    cli.run(main)
