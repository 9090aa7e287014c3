"""Convergence of the cumulative MPT to the log marginal likelihood (paper exp. 1, Fig. 2).

PPCA with known parameters: the exact LML is closed form; the cumulative MPT
estimate with K Monte Carlo masks per mask size is unbiased, and its error
falls as 1/sqrt(K). One jitted, vmapped call per K evaluates all D sizes.

    python examples/lml_convergence.py      # ~1-2 min CPU

Paper setting: PPCA N = 100, D = 5 (and larger), K = 2 latent, beta = 5, up to 300
permutations per size, 5 seeds; the figure shows mean LML - mean MPT per example.
Ours: the same quantities, all sizes Monte Carlo (``exact=False``) so the figure shows
the estimator's convergence; the table also gives the reported standard error.
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
    args, config = cli.parse(argv, example="lml_convergence", description=__doc__)
    _import_heavy()
    cli.save_config(args.workdir, config)
    ks = [int(k) for k in config.masks.split(",")]
    os.makedirs(args.workdir, exist_ok=True)
    noise = 1.0 / config.beta
    rows, diffs = [], np.zeros((config.seeds, len(ks)))
    rmse = np.zeros(len(ks))
    for s in progress.bar(range(config.seeds), desc="convergence: seeds"):
        k_w, k_x, k_m = jax.random.split(jax.random.key(s), 3)
        w = jax.random.normal(k_w, (config.dim, config.latent))
        x = lml.ppca_sample(k_x, w, noise, config.n)
        truth = lml.ppca_lml(x, w, noise)
        cond = lml.ppca_cond_logpdf(w, noise)
        for i, k in enumerate(ks):
            est = lml.cumulative_mpt(cond, x, jax.random.fold_in(k_m, k), k, exact=False)
            diffs[s, i] = float(jnp.mean(truth) - jnp.mean(est.value))
            err = est.value - truth
            rmse[i] += float(jnp.mean(err**2)) / config.seeds
            if s == 0:
                rows.append((k, float(jnp.mean(jnp.abs(err))), float(jnp.mean(est.stderr))))
    rmse = np.sqrt(rmse)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for s in range(config.seeds):
        a.plot(ks, diffs[s], lw=3, alpha=0.5)
    a.axhline(0, ls="--", color="k")
    a.set_xscale("log", base=2)
    a.set_xlabel("masks per mask size K")
    a.set_ylabel("mean LML - mean MPT (nats/example)")
    a.set_title(f"PPCA D={config.dim}: convergence of MPT ({config.seeds} seeds)")
    b.loglog(ks, rmse, "o-", lw=2, label="per-example RMSE")
    b.loglog(ks, rmse[0] / np.sqrt(np.asarray(ks) / ks[0]), "k--", label="1/sqrt(K)")
    b.set_xscale("log", base=2)
    b.set_xlabel("masks per mask size K")
    b.set_ylabel("RMSE of the per-example estimate")
    b.legend()
    fig.tight_layout()
    png = os.path.join(args.workdir, "convergence.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)

    print(f"\nPPCA N={config.n}, D={config.dim}, K_latent={config.latent}, beta={config.beta}; all sizes Monte Carlo.")
    print("| masks/size | per-example RMSE (all seeds) | seed 0: mean abs error | seed 0: mean reported stderr |")
    print("|---|---|---|---|")
    for (k, mae, se), r in zip(rows, rmse):
        print(f"| {k} | {r:.4f} | {mae:.4f} | {se:.4f} |")
    print(f"\nplot: {png}")
    return rmse


if __name__ == "__main__":
    cli.run(main)
