"""Marginalization model (MaM) on binarized MNIST: the two-stage MLE recipe of Liu et al. (2024).

    python examples/marginal_mnist.py --workdir runs/mam_mnist                   # a few minutes on a 2-core CPU
    python examples/marginal_mnist.py --config configs/marginal_mnist.py:quick   # ~1 minute smoke run
    python examples/marginal_mnist.py --config configs/marginal_mnist.py:unet_cpu   # the paper's U-Net, CPU size
    python examples/marginal_mnist.py --config configs/marginal_mnist.py:mnist_unet --num_devices 8   # paper (accelerators)
    python examples/marginal_mnist.py --config.resolution=28 --config.width=1024 --config.depth=3 \
        --config.arm_steps=20000 --config.mam_steps=20000 --config.eval.num_test=10000   # larger (accelerator)

Stage 1 trains an any-order autoregressive model (AO-ARM) p_phi(x_i | x_S) with the
order-agnostic loss; stage 2 distills a marginal network f_theta(x_S) = log p(x_S)
from it by the marginalization self-consistency loss, on data mixed with persistent
Gibbs chains re-sampled by p_phi. Then one network call scores any subset of pixels,
where the AO-ARM needs D calls.

Settings come from ``configs/marginal_mnist.py`` (see its docstring; ``--config.KEY=VALUE``
overrides). Default: 14x14 statically binarized MNIST (D = 196), ResidualMLP backbones; ``mnist_unet``
and ``unet_cpu`` use the paper's ARDM U-Net (:func:`mamjax.marginal.unet.make_unet_nets`: one trunk,
stage 2 trains only the marginal head).
Killed and restarted with the same command, each stage resumes from its last Orbax
checkpoint in ``--workdir`` (default ``runs/marginal_mnist``). Data-parallel over all devices
(``--num_devices``). Writes ``samples.png``, ``completions.png``, ``scatter.png`` (MaM vs
AO-ARM-E on the paper's agreement protocol), ``curves_*.png`` and ``results.json``, and prints
the results tables.
"""

from __future__ import annotations

import json
import os
import time

from mamjax import cli  # imports neither jax nor flax: --help answers at once


def _nll_rows(nll: dict, ensemble: int):
    names = {"ao_arm_s": ("AO-ARM-S (1 ordering)", "-"),
             "ao_arm_e": (f"AO-ARM-E ({ensemble} orderings)", "0.148 (28x28)"),
             "mam": ("MaM f(x) NLL, unnormalized: -(f(x) - f(empty))", "not comparable")}
    from mamjax import metrics

    for k, (name, paper) in names.items():
        nats, bpd = metrics.format_nll(nll[k + "_nats"]), metrics.format_nll(nll[k + "_bpd"], digits=4)
        yield f"| {name} | {nats} | {bpd} | {paper} |"


def _make_nets(config, key, side: int):
    """The two networks: the paper's U-Net pair (shared trunk, marginal head) or two ``make_nets`` backbones."""
    from mamjax.marginal import experiment, unet

    if config.backbone == "unet":
        u = config.unet
        return unet.make_unet_nets(key, side, 2, ch=u.ch, num_res_blocks=u.num_res_blocks, marg_hidden=u.marg_hidden,
                                   remat=u.remat)
    return experiment.make_nets(key, side * side, 2, backbone=config.backbone, width=config.width,
                                depth=config.depth, num_heads=config.num_heads)


def _describe(config) -> str:
    if config.backbone == "unet":
        u = config.unet
        return f"U-Net {u.ch} ch, {u.num_res_blocks} res blocks, marginal MLP {u.marg_hidden}"
    return f"{config.backbone} width {config.width} depth {config.depth}"


def main(argv=None):
    args, config = cli.parse(argv, example="marginal_mnist", description=__doc__)
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mamjax import train
    from mamjax.data import BatchStream, dynamic_binarize
    from mamjax.marginal import experiment, sampling, unet

    mesh = cli.make_mesh(args.num_devices)
    mam_batch = config.mam_batch_size or config.batch_size
    cli.check_batch_size(config.batch_size, mesh, "config.batch_size")
    cli.check_batch_size(mam_batch, mesh, "config.mam_batch_size")
    workdir = args.workdir
    cli.save_config(workdir, config, may_change=("eval.*",))
    ev = config.eval
    t_start = time.perf_counter()
    side = config.resolution
    x_train, x_test = experiment.mnist_arrays(side, config.binarization)
    d = side * side
    key = jax.random.key(config.seed)
    k_init, k_arm, k_mam, k_eval = jax.random.split(key, 4)
    nets = _make_nets(config, k_init, side)
    transform = None
    if config.binarization == "dynamic":
        def transform(batch, k):
            return dynamic_binarize(batch, k).astype(jnp.int32)
    stream = BatchStream(x_train, config.batch_size, seed=config.seed, transform=transform)
    stream2 = stream if mam_batch == config.batch_size else BatchStream(x_train, mam_batch, seed=config.seed,
                                                                        transform=transform)

    # Stage 1: AO-ARM; stage 2: MaM distillation (conditional frozen), chains started from a data batch.
    run = experiment.train_two_stages(nets, stream, mam_stream=stream2, arm_steps=config.arm_steps,
                                      mam_steps=config.mam_steps, keys=(k_arm, k_mam), lr=config.lr,
                                      mam_lr=config.mam_lr, clip=config.clip, chain_weight=config.chain_weight,
                                      gibbs_steps=config.gibbs_steps,
                                      tie_shared=unet.tie_shared if config.backbone == "unet" else None,
                                      workdir=workdir or None, save_every=config.save_every,
                                      log_every=config.log_every, mesh=mesh)
    t_arm = run.arm_seconds
    params = run.params
    t_train = time.perf_counter() - t_start

    # Evaluation.
    k_nll, k_sub, k_time, k_samp, k_comp, k_agree = jax.random.split(k_eval, 6)
    nll = experiment.evaluate_nll(nets, params, jnp.asarray(x_test[: ev.num_test]), k_nll, num_orderings=ev.ensemble)
    pooled = experiment.subset_agreement(nets, params, jnp.asarray(x_test[-ev.num_subsets:]), k_sub,
                                         num_orderings=ev.ensemble)
    paper = experiment.paper_agreement(nets, params, jnp.asarray(x_test[: ev.agreement_images]), k_agree,
                                       num_orderings=ev.ensemble, threshold=ev.threshold)
    q_x = jnp.asarray(x_test[:16])
    q_mask = experiment.random_subsets(k_time, 16, d)
    timing = experiment.time_queries(nets, params, q_x, q_mask, min_time=0.5)
    t_total = time.perf_counter() - t_start

    print(f"\n## MaM on {side}x{side} {config.binarization}-binarized MNIST (D = {d}), {_describe(config)}; "
          f"{config.arm_steps} AO-ARM + {config.mam_steps} MaM steps at "
          f"batch {config.batch_size}\n")
    print("| model | test NLL (nats) | bits/dim | paper (bpd) |\n|---|---|---|---|")
    print("\n".join(_nll_rows(nll, ev.ensemble)))
    print(f"\n(first {ev.num_test} test images; MaM f(empty) = {nll['f_empty']:.3f}; the paper's MaM NLL is the "
          "conditional network's, i.e. the AO-ARM rows)\n")
    counts = "/".join(map(str, paper["num_censored"]))
    print(f"| agreement with AO-ARM-E ({ev.ensemble} orderings) | Spearman | Pearson | paper |\n|---|---|---|---|")
    for name, label in (("mam", "MaM f(x)"), ("ao_arm_s", "AO-ARM-S (1 ordering)"),
                        ("size_only", "control: |S| only"), ("censor_count", "control: censor count only")):
        r = paper[name]
        ref = {"mam": "0.992 / 0.993"}.get(name, "-")
        print(f"| paper protocol, {label} | {r['spearman']:.4f} | {r['pearson']:.4f} | {ref} |")
    print(f"| pooled random subsets, MaM | {pooled['spearman']:.4f} | {pooled['pearson']:.4f} | - |")
    print(f"| pooled random subsets, control: |S| only | {pooled['size_only_spearman']:.4f} | "
          f"{pooled['size_only_pearson']:.4f} | - |")
    print(f"\n(paper protocol: {paper['mam']['num_images']} of {ev.agreement_images} test images kept >= 2 distinct "
          f"completions ({paper['mam']['num_pairs']} in all) after censoring {counts} of {d} pixels; a constant score "
          "counts as correlation 0)\n")
    print("| query time | ours |\n|---|---|")
    print(f"| score 16 subsets: MaM (1 call) | {timing['mam_sec'] * 1e3:.3f} ms |")
    print(f"| score 16 subsets: AO-ARM ({d} calls) | {timing['ao_arm_sec'] * 1e3:.3f} ms |")
    print(f"| speed-up | {timing['speedup']:.0f}x |")
    print(f"\n(wall time: training {t_train:.0f} s (stage 1 {t_arm:.0f} s), total {t_total:.0f} s)")

    if workdir:
        samples = sampling.sample(nets.cond_apply, params["conditional"], k_samp, 32, d)
        experiment.save_image_grid(np.asarray(samples), os.path.join(workdir, "samples.png"), side,
                                   title="AO-ARM samples (random orderings)")
        upper = jnp.arange(d) < d // 2
        x_c = jnp.repeat(jnp.asarray(x_test[:4]), 7, axis=0)
        comp = sampling.conditional_sample(nets.cond_apply, params["conditional"], x_c,
                                           jnp.broadcast_to(upper, x_c.shape), k_comp, num_steps=d - d // 2)
        grid = np.concatenate([np.asarray(x_test[:4])[:, None], np.asarray(comp).reshape(4, 7, d)], axis=1)
        experiment.save_image_grid(grid.reshape(-1, d), os.path.join(workdir, "completions.png"), side,
                                   title="original | 7 completions of the lower half given the upper half")
        sc = paper["scores"]
        keep = sc["keep"]
        experiment.save_scatter(sc["ao_arm_e"][keep], sc["mam"][keep] - nll["f_empty"],
                                os.path.join(workdir, "scatter.png"), "AO-ARM-E log p(x) (nats)",
                                "MaM f(x) - f(empty) (nats)",
                                f"AO-ARM completions of {counts} censored pixels\nper-image Spearman "
                                f"{paper['mam']['spearman']:.3f} (paper protocol)")
        for stage in ("arm", "mam"):
            log = os.path.join(workdir, stage, "metrics.jsonl")
            if os.path.exists(log):
                train.plot_metrics(log, os.path.join(workdir, f"curves_{stage}.png"),
                                   keys=["loss"] + (["sc_mse_data", "sc_mse_chains"] if stage == "mam" else []))
        res = dict(nll, **{k: v for k, v in pooled.items() if np.ndim(v) == 0}, **timing,
                   paper_agreement={k: v for k, v in paper.items() if k != "scores"},
                   config=config.to_dict(), train_seconds=t_train, total_seconds=t_total)
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote plots and results.json to {workdir}")
    return nll, paper


if __name__ == "__main__":
    cli.run(main)
