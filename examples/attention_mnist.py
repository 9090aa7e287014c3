"""Train WS-RAM (Ba et al., 2015) and the REINFORCE RAM baseline on 60x60 translated / cluttered MNIST.

    python examples/attention_mnist.py --config configs/attention_mnist.py:quick          # ~3 min on CPU
    python examples/attention_mnist.py --config configs/attention_mnist.py:cluttered,quick \
        --config.runs=wsram:5,wsram:1,reinforce:1
    python examples/attention_mnist.py                              # translated 60x60, 20,000 updates

Settings come from ``configs/attention_mnist.py`` (variants: translated, cluttered, cluttered100, gaussian,
lstm, quick/cpu), each field overridable with ``--config.KEY=VALUE`` (see ``--help``). Batches are split
over all devices (``--num_devices``; ``config.batch_size`` is global). Each run checkpoints into
``<workdir>/<method>_k<K>`` (Orbax, resumed automatically when the same command is run again; default
workdir ``runs/attention_mnist``) and logs ``metrics.jsonl``. Plots in the workdir:
``glimpses_<run>.png`` (sampled glimpse paths on test images) and ``error_curves.png`` (test error
against epochs and against training seconds). A table is printed at the end.
"""

from __future__ import annotations

import os

from mamjax import cli

PAPER = {"translated": ("RAM 6 glimpses (Mnih et al.)", 1.22), "cluttered": ("RAM 6 glimpses (Mnih et al.)", 4.08)}


def ram_config(config):
    """:class:`mamjax.attention.model.RAMConfig` from ``config.model`` and the canvas size."""
    from mamjax.attention import model as model_lib

    m = config.model
    return model_lib.RAMConfig(image_size=config.size, patch=m.patch, num_glimpses=m.num_glimpses,
                               num_scales=m.num_scales, grid_size=m.grid_size, hidden=m.hidden,
                               proposal_view=m.proposal_view, locations=m.locations, core=m.core)


def parse_runs(text: str) -> list[tuple[str, int]]:
    """``"wsram:5,reinforce:1"`` -> ``[("wsram", 5), ("reinforce", 1)]``; a ConfigError names ``config.runs``."""
    runs = []
    for item in text.split(","):
        method, _, k = item.strip().partition(":")
        if method not in ("wsram", "reinforce") or not k.isdigit() or int(k) < 1:
            raise cli.ConfigError(f"`config.runs` must be a comma list of method:K with method wsram or reinforce "
                                  f"and K >= 1; got {item!r} in {text!r}.")
        runs.append((method, int(k)))
    return runs


def make_run(config, method: str, k: int, key):
    """``(ram, params, loss_fn)`` of one run (:func:`mamjax.attention.training.make_method`)."""
    from mamjax.attention import training

    w = config.wsram
    wsram = dict(proposal_update=w.proposal_update, estimator=w.estimator,
                 prior_baseline=w.prior_baseline) if method == "wsram" else {}
    return training.make_method(method, ram_config(config), key, num_samples=k,
                                control_variates=w.control_variates, reward=config.reinforce.reward, **wsram)


def load_data(config, split: str, num: int) -> dict:
    from mamjax.attention import data as att_data

    extra = dict(num_clutter=config.num_clutter, clutter_size=config.clutter_size) if config.dataset == "cluttered" \
        else {}
    return att_data.load(config.dataset, split, size=config.size, num_examples=num, **extra)


def main(argv=None):
    args, config = cli.parse(argv, example="attention_mnist", description=__doc__)
    runs = parse_runs(config.runs)
    if config.dataset not in PAPER:
        raise cli.ConfigError(f"`config.dataset` must be one of {sorted(PAPER)}; got {config.dataset!r}.")
    import jax
    import numpy as np
    import optax

    from mamjax import train
    from mamjax.attention import model as model_lib
    from mamjax.attention import plotting
    from mamjax.data.stream import BatchStream

    mesh = cli.make_mesh(args.num_devices)
    cli.check_batch_size(config.batch_size, mesh, "config.batch_size")
    cli.save_config(args.workdir, config, may_change=("eval.*",))
    tr = load_data(config, "train", config.num_train)
    te = load_data(config, "test", config.eval.num_test)
    stream = BatchStream({"image": tr["image"], "label": tr["label"]}, config.batch_size, seed=config.seed)
    curves, rows = {}, []
    for method, k in runs:
        name = f"{method}_k{k}"
        wd = os.path.join(args.workdir, name)
        ram, params, loss_fn = make_run(config, method, k, jax.random.key(config.seed))
        opt = optax.adam(config.lr)
        state = train.TrainState.create(params, opt)
        eval_key = jax.random.key(config.seed + 1)

        def eval_fn(st, ram=ram):
            return {"error": model_lib.error_rate(ram, st.params, te["image"], te["label"], eval_key,
                                                  num_samples=config.eval.samples)}

        state, _ = train.fit(train.make_train_step(loss_fn, opt), state, stream, num_steps=config.steps,
                             key=jax.random.key(config.seed + 2), workdir=wd, save_every=config.save_every,
                             eval_fn=eval_fn, eval_every=config.eval.every, log_every=config.log_every, mesh=mesh,
                             desc=name)
        records = train.read_metrics(os.path.join(wd, "metrics.jsonl"))
        curves[name] = plotting.error_curve(records, stream.steps_per_epoch)
        if jax.process_index() == 0:
            plotting.plot_glimpse_paths(ram, state.params, te["image"][:16], jax.random.key(3),
                                        os.path.join(args.workdir, f"glimpses_{name}.png"), labels=te["label"][:16],
                                        title=f"{name}: predicted (true)")
        final = model_lib.error_rate(ram, state.params, te["image"], te["label"], eval_key,
                                     num_samples=config.eval.samples)
        sps = [r["steps_per_sec"] for r in records if "steps_per_sec" in r]
        rows.append((name, int(state.step), curves[name]["seconds"][-1] if len(curves[name]["seconds"]) else 0.0,
                     float(np.median(sps)) if sps else float("nan"), 100 * final))
    label, ref = PAPER[config.dataset]
    where = f"{config.size}x{config.size} {config.dataset} MNIST"
    if jax.process_index() == 0:
        plotting.plot_error_curves(curves, os.path.join(args.workdir, "error_curves.png"),
                                   title=f"{where}, {config.model.num_glimpses} glimpses",
                                   reference={f"{label} {ref}% (60x60)": ref})
    print(f"\n{where}\n\n| run | steps | train s | steps/s | test error % ({len(te['label'])} test images, "
          f"M={config.eval.samples} averaged predictive) |")
    print("|---|---|---|---|---|")
    for name, steps, secs, sps, err in rows:
        print(f"| {name} | {steps} | {secs:.0f} | {sps:.1f} | {err:.2f} |")
    print(f"| {label} (paper, 60x60, full training) | | | | {ref} |")
    print(f"\nplots: {args.workdir}/error_curves.png, {args.workdir}/glimpses_*.png")
    return rows


if __name__ == "__main__":
    import matplotlib

    matplotlib.use("Agg")  # the script chooses the backend; the library never does
    cli.run(main)
