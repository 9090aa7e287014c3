"""Training with masked pre-training (paper exp. 3): PPCA and GP hyperparameters.

Fits the same model by maximising (a) the exact log marginal likelihood, (b) the
cumulative MPT (all mask sizes, K masks per size), (c) fixed-rate MPT at 20% and
80%, and compares the optima and the training curves (exact LML tracked for all).

    python examples/lml_train_ppca.py --config configs/lml_train_ppca.py:cpu   # 400 steps, ~2-3 min CPU
    python examples/lml_train_ppca.py                                         # the paper's 1000 epochs

Paper setting: N = 2000, D = 10, K = 2, precision beta = 5, Adam lr 1e-2, full batch,
one mask per size per step, 1000 epochs. The paper's code generates data with one
noise draw shared by all D coordinates; here the data follow the PPCA model itself.
Runs resume from ``--workdir`` (Orbax checkpoints through ``mamjax.train.fit``).
"""

from __future__ import annotations

import os

from mamjax import cli


def _import_heavy():
    """jax and the library, imported after the command line is parsed (``--help`` answers at once)."""
    global jax, jnp, np, optax, scipy, lml, train, objectives
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    import scipy.linalg
    from mamjax import lml, train
    from mamjax.lml import objectives

OBJECTIVES = ("lml", "cumulative", 0.2, 0.8)


def _full_batch(x):
    return lambda step: {"x": x}


def run_ppca(config, workdir, mesh=None):
    key = jax.random.key(config.seed)
    k_true, k_data, k_init, k_train = jax.random.split(key, 4)
    noise = 1.0 / config.beta
    w_true = jax.random.normal(k_true, (config.dim, config.latent))
    x = np.asarray(lml.ppca_sample(k_data, w_true, noise, config.n))
    true_lml = float(jnp.mean(lml.ppca_lml(x, w_true, noise)))
    optimizer = optax.adam(config.lr)
    results, histories = [], {}
    for obj in OBJECTIVES:
        name = objectives.objective_name(obj)
        params = {"w": jax.random.normal(k_init, (config.dim, config.latent))}  # same init for every objective
        loss_fn = objectives.ppca_loss(obj, noise, config.masks)
        workdir = os.path.join(workdir, f"ppca_{name}")
        state, _ = train.fit(train.make_train_step(loss_fn, optimizer), train.TrainState.create(params, optimizer),
                             _full_batch(x), num_steps=config.steps, key=k_train, workdir=workdir,
                             save_every=config.save_every, log_every=max(config.steps // 50, 1),
                             desc=f"ppca {name}", mesh=mesh)
        histories[name] = train.read_metrics(os.path.join(workdir, "metrics.jsonl"))  # whole run, also if resumed
        w = np.asarray(state.params["w"])
        angle = float(np.degrees(np.max(scipy.linalg.subspace_angles(w, np.asarray(w_true)))))
        _, metrics = loss_fn(state.params, {"x": x}, jax.random.fold_in(k_train, config.steps))
        results.append((name, float(metrics["objective"]), float(metrics["lml"]), angle))
    return true_lml, results, histories


def run_gp(config, workdir, mesh=None):
    key = jax.random.key(config.seed + 1)
    k_data, k_train = jax.random.split(key)
    t = jnp.linspace(0.0, 5.0, config.dim)
    truth = {"lengthscale": 0.7, "variance": 1.5, "noise_var": 0.1}
    cov = lml.gp_cov(t, kernel="rbf", **truth)
    y = np.asarray(jax.random.multivariate_normal(k_data, jnp.zeros(config.dim), cov, (config.gp_draws,)))
    true_lml = float(jnp.mean(lml.gp_lml(y, t, kernel="rbf", **truth)))
    optimizer = optax.adam(config.gp_lr)
    results, histories = [], {}
    for obj in OBJECTIVES:
        name = objectives.objective_name(obj)
        params = {"log_lengthscale": jnp.zeros(()), "log_variance": jnp.zeros(()), "log_noise": -jnp.ones(())}
        loss_fn = objectives.gp_loss(obj, t, "rbf", config.masks)
        workdir = os.path.join(workdir, f"gp_{name}")
        state, _ = train.fit(train.make_train_step(loss_fn, optimizer), train.TrainState.create(params, optimizer),
                             _full_batch(y), num_steps=config.gp_steps, key=k_train, workdir=workdir,
                             save_every=config.gp_save_every, log_every=max(config.gp_steps // 50, 1),
                             desc=f"gp {name}", mesh=mesh)
        histories[name] = train.read_metrics(os.path.join(workdir, "metrics.jsonl"))
        hyp = {k: float(v) for k, v in objectives.gp_hyperparameters(state.params).items()}
        final_lml = float(jnp.mean(lml.gp_lml(y, t, kernel="rbf", **hyp)))
        results.append((name, final_lml, hyp))
    return truth, true_lml, results, histories


def plot(histories, true_lml, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, hist) in enumerate(histories.items()):
        steps = [r["step"] for r in hist if "lml" in r]
        c = f"C{i}"
        ax.plot(steps, [r["lml"] for r in hist if "lml" in r], color=c, lw=2, label=f"{name}: LML")
        ax.plot(steps, [r["objective"] for r in hist if "lml" in r], color=c, lw=3, alpha=0.25,
                label=f"{name}: objective")
    ax.axhline(true_lml, ls="--", color="k", label="true model LML")
    lo = min(r["lml"] for h in histories.values() for r in h if "lml" in r)
    ax.set_ylim(max(lo, true_lml - 15), true_lml + 3)
    ax.set_xlabel("step (full batch)")
    ax.set_ylabel("per-example nats")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv=None):
    args, config = cli.parse(argv, example="lml_train_ppca", description=__doc__)
    _import_heavy()
    mesh = cli.make_mesh(args.num_devices)
    cli.check_batch_size(config.n, mesh, "config.n")  # full batch, sharded over the data mesh
    cli.save_config(args.workdir, config, may_change=("save_every", "gp_save_every"))
    os.makedirs(args.workdir, exist_ok=True)
    true_lml, results, hist = run_ppca(config, args.workdir, mesh)
    png = plot(hist, true_lml, os.path.join(args.workdir, "ppca_training.png"),
               f"PPCA N={config.n} D={config.dim} K={config.latent}: exact LML during training")
    print(f"\nPPCA, N={config.n}, D={config.dim}, K={config.latent}, beta={config.beta}, {config.steps} steps, "
          f"Adam lr {config.lr}, {config.masks} mask(s)/size/step. True-model LML {true_lml:.4f} nats/example.")
    print("| objective | final objective | final exact LML | max principal angle to true W (deg) |")
    print("|---|---|---|---|")
    for name, o, l, a in results:
        print(f"| {name} | {o:.4f} | {l:.4f} | {a:.2f} |")
    truth, gp_true, gp_res, gp_hist = run_gp(config, args.workdir)  # 50 draws: too few to shard
    gp_png = plot(gp_hist, gp_true, os.path.join(args.workdir, "gp_training.png"),
                  f"GP (RBF) hyperparameters, {config.gp_draws} draws at D={config.dim} inputs")
    print(f"\nGP RBF, {config.gp_draws} draws x D={config.dim}, Adam lr {config.gp_lr}, {config.gp_steps} steps. "
          f"True hyperparameters {truth}, true LML {gp_true:.4f}.")
    print("| objective | final exact LML | lengthscale | variance | noise var |")
    print("|---|---|---|---|---|")
    for name, l, h in gp_res:
        print(f"| {name} | {l:.4f} | {h['lengthscale']:.3f} | {h['variance']:.3f} | {h['noise_var']:.4f} |")
    print(f"\nplots: {png}, {gp_png}")
    return results, gp_res


if __name__ == "__main__":
    cli.run(main)
