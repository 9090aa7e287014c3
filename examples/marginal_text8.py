"""Marginalization model (MaM) on character-level text with the text8 protocol (Liu et al. 2024, Sec. 6.2).

    python examples/marginal_text8.py --config configs/marginal_text8.py:cpu --config.data_path=/data/text8
    python examples/marginal_text8.py --config configs/marginal_text8.py:cpu,quick --config.data_path=/data/text8
    python examples/marginal_text8.py --config.data_path=/data/text8 --num_devices 8   # the paper's network

The two-stage recipe of ``examples/marginal_mnist.py`` on chunks of text (K = 27: space and a-z):
stage 1 trains the AO-ARM p_phi(x_i | x_S), a non-causal transformer over the chunk; stage 2 distills the
marginal network f_theta(x_S) (the same transformer, mean-pooled into an MLP head) by the self-consistency
loss on data and persistent Gibbs chains. Settings come from ``configs/marginal_text8.py`` (the paper's
network by default; ``cpu`` for this machine). ``--config.data_path`` names a local text8 file (90 / 5 / 5 %
split, non-overlapping chunks); mamjax does not download it.

Evaluation: test NLL in bits per character of AO-ARM-S, AO-ARM-E (5 orderings) and the marginal
network's unnormalized ``-(f(x) - f(empty))``; the paper's agreement protocol (censor 50/100/150/200 of
250 characters, scaled to the chunk length, complete with the AO-ARM, score with MaM and AO-ARM-E, drop
near-duplicates within 10 nats, per-chunk correlations) beside its |S|-only and censor-count controls;
the time of one marginal query against the AO-ARM's chain rule. Writes ``results.json`` and
``samples.txt`` to ``--workdir`` (default ``runs/marginal_text8``); a killed run resumes each stage from
its last checkpoint.
"""

from __future__ import annotations

import json
import os
import time

from mamjax import cli  # imports neither jax nor flax: --help answers at once


def _make_nets(config, key):
    """AO-ARM: the shared transformer with per-token logits; MaM: the same trunk mean-pooled into an MLP head."""
    import jax

    from mamjax.marginal import arm, experiment, marginal_net

    k_c, k_m = jax.random.split(key)
    sizes = dict(width=config.dim, depth=config.depth, num_heads=config.num_heads)
    cond_apply, cond_params = arm.make_conditional_net(k_c, config.seq_len, 27, backbone="transformer", **sizes)
    marg_apply, marg_params = marginal_net.make_marginal_net(k_m, config.seq_len, 27, backbone="transformer_pool",
                                                             **sizes)
    return experiment.Nets(marg_apply, cond_apply, {"marginal": marg_params, "conditional": cond_params},
                           config.seq_len, 27)


def _load(config, split: str):
    from mamjax.data import text

    if not config.data_path:
        raise cli.ConfigError("set --config.data_path to a local text8 file (the unzipped text8.zip of "
                              "mattmahoney.net/dc, or any [a-z ] text); mamjax does not download it.")
    return text.load_text8(config.data_path, split, config.seq_len, clean=config.clean)


def main(argv=None):
    args, config = cli.parse(argv, example="marginal_text8", description=__doc__)
    x_train, x_test = _load(config, "train"), _load(config, "test")
    import jax
    import jax.numpy as jnp
    import numpy as np

    from mamjax import metrics
    from mamjax.data import BatchStream
    from mamjax.data import text
    from mamjax.marginal import agreement, experiment, sampling

    mesh = cli.make_mesh(args.num_devices)
    cli.check_batch_size(config.batch_size, mesh, "config.batch_size")
    cli.check_batch_size(config.mam_batch_size, mesh, "config.mam_batch_size")
    workdir = args.workdir
    cli.save_config(workdir, config, may_change=("eval.*",))
    ev = config.eval
    t_start = time.perf_counter()
    d = config.seq_len
    k_init, k_arm, k_mam, k_eval = jax.random.split(jax.random.key(config.seed), 4)
    nets = _make_nets(config, k_init)
    stream = BatchStream(x_train, config.batch_size, seed=config.seed)
    stream2 = BatchStream(x_train, config.mam_batch_size, seed=config.seed + 1)

    run = experiment.train_two_stages(nets, stream, mam_stream=stream2, arm_steps=config.arm_steps,
                                      mam_steps=config.mam_steps, keys=(k_arm, k_mam), lr=config.lr, clip=config.clip,
                                      chain_weight=config.chain_weight, gibbs_steps=config.gibbs_steps,
                                      workdir=workdir or None, save_every=config.save_every,
                                      log_every=config.log_every, mesh=mesh)
    params = run.params
    t_train = time.perf_counter() - t_start

    k_nll, k_agree, k_time, k_samp = jax.random.split(k_eval, 4)
    nll = experiment.evaluate_nll(nets, params, jnp.asarray(x_test[: ev.num_test]), k_nll, num_orderings=ev.ensemble)
    counts = agreement.scaled_censor_counts(d, tuple(ev.censor), paper_dims=250)
    paper = experiment.paper_agreement(nets, params, jnp.asarray(x_test[: ev.agreement_chunks]), k_agree,
                                       num_censored=counts, num_orderings=ev.ensemble, threshold=ev.threshold)
    q_x = jnp.asarray(x_test[:16])
    timing = experiment.time_queries(nets, params, q_x, experiment.random_subsets(k_time, q_x.shape[0], d),
                                     min_time=0.5)
    t_total = time.perf_counter() - t_start

    print(f"\n## MaM on text8-protocol chunks of {d} characters (K = 27); transformer d = {config.dim}, "
          f"{config.depth} layers, {config.num_heads} heads; {config.arm_steps} AO-ARM + {config.mam_steps} MaM "
          f"steps\n")
    print("| model | test NLL (nats / chunk) | bits / char |\n|---|---|---|")
    for k, name in (("ao_arm_s", "AO-ARM-S (1 ordering)"), ("ao_arm_e", f"AO-ARM-E ({ev.ensemble} orderings)"),
                    ("mam", "MaM f(x) NLL, unnormalized: -(f(x) - f(empty))")):
        print(f"| {name} | {metrics.format_nll(nll[k + '_nats'])} | {metrics.format_nll(nll[k + '_bpd'], digits=4)} |")
    print(f"\n| agreement with AO-ARM-E (censor {'/'.join(map(str, counts))} of {d}) | Spearman | Pearson |"
          "\n|---|---|---|")
    for name, label in (("mam", "MaM f(x)"), ("ao_arm_s", "AO-ARM-S"), ("size_only", "control: |S| only"),
                        ("censor_count", "control: censor count only")):
        print(f"| {label} | {paper[name]['spearman']:.4f} | {paper[name]['pearson']:.4f} |")
    print(f"\n| query of 16 subsets | MaM {timing['mam_sec'] * 1e3:.2f} ms | AO-ARM {timing['ao_arm_sec'] * 1e3:.2f} "
          f"ms | {timing['speedup']:.0f}x |")
    print(f"\n(wall time: training {t_train:.0f} s, total {t_total:.0f} s)")

    if workdir:
        samples = sampling.sample(nets.cond_apply, params["conditional"], k_samp, 8, d)
        with open(os.path.join(workdir, "samples.txt"), "w") as f:
            f.write("\n".join(repr(text.decode_text(s)) for s in np.asarray(samples)) + "\n")
        res = {"nll": nll, "query_time": timing, "config": config.to_dict(),
               "paper_agreement": {k: v for k, v in paper.items() if k != "scores"},
               "seconds": {"train": t_train, "total": t_total}}
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote samples.txt and results.json to {workdir}")
    return nll, paper


if __name__ == "__main__":
    cli.run(main)
