"""Train the rectified-Gaussian hierarchical VAE (Salimans 2016) on binarized MNIST.

    python examples/hvae_mnist.py --config configs/hvae_mnist.py:quick           # ~2-3 min on CPU
    python examples/hvae_mnist.py                                                # the paper's model and eval
    python examples/hvae_mnist.py --config configs/hvae_mnist.py:mean_field,quick --config.binarization=static

Settings come from ``configs/hvae_mnist.py`` (variants: paper, mean_field, vae1, vae2, conv, quick/cpu),
each field overridable with ``--config.KEY=VALUE`` (see ``--help``). Batches are split over all
devices (``--num_devices``); ``config.batch_size`` is the global batch. Killed and restarted with the
same command, a run resumes from its last Orbax checkpoint in ``--workdir`` (default
``runs/hvae_mnist``). Writes ``samples.png``, ``reconstructions.png``, ``sparsity.png``,
``curves.png``, ``results.json`` and ``config.json`` into the workdir and prints a table; every number
names the binarization.
"""

from __future__ import annotations

import json
import os

from mamjax import cli


def model_kwargs(config) -> dict:
    """``mamjax.hvae.build`` keyword arguments from ``config.model``."""
    m = config.model
    return dict(latent_sizes=tuple(m.latent_sizes), hidden_sizes=tuple(m.hidden_sizes), latent=m.latent,
                posterior=m.posterior, combine=m.combine, num_dense=m.num_dense, learned_prior=m.learned_prior,
                conv=m.conv, batch_norm=m.batch_norm)


def make_setup(config, data_dim: int = 784):
    """Model, optimizer state and jitted train step for ``config`` (:func:`mamjax.hvae.experiment.setup`)."""
    from mamjax import hvae

    return hvae.experiment.setup(data_dim, model_kwargs(config), lr=config.lr, seed=config.seed,
                                 free_bits=config.free_bits, iwae_k=config.train_iwae_k)


def kl_warmup_steps(config) -> int:
    return min(int(config.steps * config.kl_warmup_fraction), 10000)


def main(argv=None):
    args, config = cli.parse(argv, example="hvae_mnist", description=__doc__)
    import jax
    import numpy as np

    from mamjax import hvae, metrics, train

    mesh = cli.make_mesh(args.num_devices)
    cli.check_batch_size(config.batch_size, mesh, "config.batch_size")
    cli.save_config(args.workdir, config, may_change=("eval.*",))
    data = hvae.experiment.mnist_data(config.binarization, batch_size=config.batch_size, seed=config.seed,
                                      num_test=config.eval.num_test)
    side = data.test.shape[1]
    s = make_setup(config, side * side)
    warm = kl_warmup_steps(config)
    stream = hvae.with_kl_warmup(data.stream, warm) if warm else data.stream
    val = data.test[:config.eval.num_val]

    def eval_fn(state):  # quick ELBO on a few test images during training (running BN averages)
        r = hvae.evaluate(s.apply, state.params, state.model_state, val, jax.random.key(1), num_samples=0)
        return {"test_elbo": r["elbo"], **{k: v for k, v in r.items() if k.startswith(("active_l", "kl_l"))}}

    state, _ = train.fit(s.train_step, s.state, stream, num_steps=config.steps, key=jax.random.key(config.seed),
                         workdir=args.workdir, save_every=config.save_every, eval_fn=eval_fn,
                         eval_every=config.eval.every, log_every=config.log_every, mesh=mesh,
                         desc=f"hvae {config.preset}")
    k = config.eval.iwae_k
    res = hvae.evaluate(s.apply, state.params, state.model_state, data.test, jax.random.key(2),
                        num_samples=k, batch_size=config.eval.batch_size)
    tag = f"{config.binarization}-binarized MNIST"
    print(f"\n## {config.preset} on {tag}: {config.steps} steps, batch {config.batch_size}, "
          f"test {len(data.test)} images (nats per image)\n")
    print("| metric | value |\n|---|---|")
    print(f"| test ELBO ({config.binarization}) | {metrics.format_nll(-res['elbo'])} (as -ELBO) |")
    print(f"| test -IWAE bound K={k} ({config.binarization}) | {metrics.format_nll(-res[f'iwae_{k}'])} |")
    layers = sorted(int(key[len("kl_l"):]) for key in res if key.startswith("kl_l"))
    for i in layers:
        print(f"| layer z{i}: KL / zero fraction / active units ({config.binarization}) | "
              f"{res[f'kl_l{i}']:.2f} / {res[f'zero_frac_l{i}']:.3f} / {res[f'active_l{i}']} |")

    out = dict(res, preset=config.preset, binarization=config.binarization, steps=config.steps,
               num_test=len(data.test))
    if jax.process_index() == 0:
        with open(os.path.join(args.workdir, "results.json"), "w") as f:
            json.dump(out, f, indent=1)
        k1, k2 = jax.random.split(jax.random.key(3))
        samples = hvae.sample(s.apply, state.params, state.model_state, k1, 64)
        x = hvae.flatten_images(data.test[:32])
        recon = hvae.reconstruct(s.apply, state.params, state.model_state, x, k2)
        pairs = np.stack([np.asarray(x), np.asarray(recon)], 1).reshape(2 * x.shape[0], -1)
        hvae.plots.save_images(os.path.join(args.workdir, "samples.png"), samples,
                               f"{config.preset}: p(x|z) means of prior samples ({tag})")
        hvae.plots.save_images(os.path.join(args.workdir, "reconstructions.png"), pairs,
                               f"{config.preset}: test image | reconstruction mean ({tag})", rows=8)
        hvae.plots.save_layer_stats(os.path.join(args.workdir, "sparsity.png"), res,
                                    f"{config.preset}, {tag}, {len(data.test)} test images")
        train.plot_metrics(os.path.join(args.workdir, "metrics.jsonl"), os.path.join(args.workdir, "curves.png"),
                           keys=["elbo", "eval/test_elbo", "zero_frac_l1", "kl_l1"])
        print(f"\nplots, results.json and config.json in {args.workdir}")
    return res


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")  # the script chooses the backend; the library never does
    cli.run(main)
