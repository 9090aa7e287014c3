"""Naive MaskGIT decoding vs ESS on embedded UCR datasets, by the paper's protocol, at CPU scale.

    flock /tmp/mamjax_heavy.lock python -m reproduce.maskgit          # ~15 min on 2 CPU cores
    python -m reproduce.maskgit --datasets GunPoint --seeds 0 --tokenizer-steps 20 --prior-steps 20 \\
        --fcn-steps 10 --cas-steps 10 --num-samples 40 --workdir /tmp/mg --results-dir /tmp/mg   # smoke

Claim checked (Lee, Aune, Malacarne 2023): at the same trained TimeVQVAE prior, ESS (naive decoding ->
critical reverse sampling -> critical resampling) gives better samples than naive iterative
decoding: lower FID, higher IS and CAS. Per dataset: one FCN trained on the real training set
(seed 0, the feature extractor of every metric; its test accuracy is reported), then per seed a
tokenizer and a class-conditional prior with class dropout (p = 0.2), trained by default with the
official loss on every token (``--prior-loss all``; ``hidden`` = the MaskGIT loss on the hidden tokens).
Three samplers from that prior: naive decoding, ESS as the official code (critical resampling redraws
every token, ``ess_redraw``: the paper's protocol) and ESS keeping the kept tokens (``ess``, mamjax's
library default). All run on the one schedule of ``mamjax.maskgit.schedule`` (T = 10, cosine, temperature 4) from the same prior:
``max(N_test, 256)`` unconditional samples (the null class) for FID against the test set, FID against
the test set through the tokenizer round trip, and IS over 10 splits; ``--num-cas-samples``
class-conditional samples (training-set class proportions) for CAS (an FCN trained on them, tested on
the real test set). Real-vs-real floors beside them.

Dataset selection (the CPU budget): the embedded univariate datasets of length <= 300 with at most 100
training series: ArrowHead, Coffee, GunPoint, ItalyPowerDemand, Trace (ACSF1, OSULeaf and
PickupGestureWiimoteZ_eq are longer). The default runs the first ``--max-datasets`` in that order of
size that fit the budget.

Writes ``results/maskgit.json`` (after every dataset); ``python -m reproduce.readme`` renders it into
docs/maskgit.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

import jax
import numpy as np

from mamjax import data as mdata
from mamjax.data import ucr
from mamjax.maskgit import pipeline
from mamjax.maskgit.sample import METHODS, parse_method
from reproduce import common

LABELS = {"naive": "naive", "ess_redraw": "ESS (official: redraws kept tokens)", "ess": "ESS (keeps kept tokens)"}


def label(method: str) -> str:
    """Table label of a sampler; ``<ess method>_g<G>`` adds the grouped critic (not the official one)."""
    base, groups = parse_method(method)
    return LABELS[base] if groups is None else f"{LABELS[base]}, grouped critic G = {groups}"


def _method(name: str) -> str:
    try:
        parse_method(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return name

MAX_LENGTH, MAX_TRAIN = 300, 100
# TimeVQVAE paper (Lee, Malacarne, Aune 2023, arXiv:2303.04743), naive iterative decoding, as in the
# official repository's results/{FID,IS,CAS}; full results.csv at commit a9a3f82: mean, std.
PAPER_NAIVE = {
    "ArrowHead": {"fid": (2.0, 0.3), "is": (2.5, 0.1), "cas": (81.7, 4.0)},
    "Coffee": {"fid": (0.3, 0.2), "is": (1.9, 0.0), "cas": (100.0, 0.0)},
    "GunPoint": {"fid": (0.8, 0.4), "is": (1.9, 0.0), "cas": (99.1, 1.0)},
    "ItalyPowerDemand": {"fid": (1.6, 0.4), "is": (2.0, 0.0), "cas": (95.3, 1.2)},
    "Trace": {"fid": (5.7, 0.7), "is": (3.0, 0.1), "cas": (97.7, 2.5)},
}


def selected_datasets() -> list[str]:
    """Embedded datasets meeting the length / size criteria, smallest (length x train size) first."""
    out = []
    for name in ucr.list_ucr():
        tr = mdata.load(f"ucr/{name}", "train")
        if tr["x"].shape[1] <= MAX_LENGTH and len(tr["x"]) <= MAX_TRAIN:
            out.append((tr["x"].shape[1] * len(tr["x"]), name))
    return [n for _, n in sorted(out)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=None, help="default: the selection, see above")
    p.add_argument("--max-datasets", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--tokenizer-steps", type=int, default=300)
    p.add_argument("--prior-steps", type=int, default=500)
    p.add_argument("--fcn-steps", type=int, default=300)
    p.add_argument("--cas-steps", type=int, default=100)
    p.add_argument("--prior-loss", choices=("all", "hidden"), default="all",
                   help="prior loss on every token (the official TimeVQVAE loss) or on the hidden ones")
    p.add_argument("--methods", nargs="+", default=list(METHODS), type=_method,
                   help=f"samplers: {', '.join(METHODS)}, or an ESS method with the critic's G-pass grouped "
                        "approximation, e.g. ess_redraw_g4 (not the official critic)")
    p.add_argument("--num-samples", type=int, default=None, help="unconditional samples (default max(N_test, 256))")
    p.add_argument("--num-cas-samples", type=int, default=256)
    p.add_argument("--workdir", default="runs/reproduce_maskgit")
    p.add_argument("--results-dir", default=None)
    p.add_argument("--results-name", default="maskgit",
                   help="results file results/<name>.json (e.g. maskgit_long for a longer-trained variant)")
    p.add_argument("--from-results", type=float, default=None, metavar="WALL_MINUTES",
                   help="re-render results/maskgit.json from its own per-seed data (no training), stating "
                        "WALL_MINUTES as the measured wall time of the run that produced it")
    p.add_argument("--append", action="store_true",
                   help="keep the datasets already in results/maskgit.json (run with the same budget flags)")
    return p.parse_args(argv)


def _ms(values, digits=2):
    return common.mean_std(values, digits)


def summarize(runs: dict, args, seconds: float) -> dict:
    rows, floors = [], []
    for name, per_seed in runs.items():
        seeds = sorted(per_seed)
        methods = _methods(per_seed)
        for method in methods:
            s = [per_seed[k]["scores"][method] for k in seeds]
            paper = PAPER_NAIVE.get(name, {}) if method == "naive" else {}
            cell = lambda key: f"{paper[key][0]} ± {paper[key][1]}" if key in paper else "-"
            rows.append([name, label(method), _ms([r["fid"] for r in s]), _ms([r["fid_rt"] for r in s]),
                         _ms([r["is"] for r in s]) + f" (split std {np.mean([r['is_std'] for r in s]):.2f})",
                         _ms([100 * r["cas"] for r in s], 1), cell("fid"), cell("is"), cell("cas"),
                         _ms([per_seed[k]["t_star_mean"] for k in seeds], 1)
                         if parse_method(method) in (("ess", None), ("ess_redraw", None)) else "-"])
        r0 = per_seed[seeds[0]]["scores"]["naive"]
        floors.append([name, per_seed[seeds[0]]["length"], per_seed[seeds[0]]["num_test"],
                       f"{100 * r0['clf_test_acc']:.1f}", f"{r0['fid_floor']:.2f}",
                       _ms([per_seed[k]["scores"]["naive"]["fid_rt_floor"] for k in seeds]),
                       f"{r0['is_real']:.2f} ± {r0['is_real_std']:.2f}",
                       _ms([per_seed[k]["tokenizer_mse"] for k in seeds], 3),
                       " / ".join(_ms([100 * per_seed[k]["copy_rate"][w] for k in seeds], 0) if "copy_rate" in
                                  per_seed[seeds[0]] else "-" for w in ("observed", "hidden"))])
    main_table = common.table(
        "Naive iterative decoding vs ESS from the same prior (per dataset and seed: one tokenizer, one prior; "
        "mean ± std over seeds). FID (lower is better) of unconditional samples vs the test set and vs the test "
        "set through the tokenizer round trip; IS (higher) over 10 splits; CAS % (higher) of class-conditional "
        "samples. Paper: the TimeVQVAE paper's naive-decoding figures (see the notes; no ESS paper figures).",
        ["dataset", "sampler", "FID vs test", "FID vs round-trip test", "IS", "CAS %", "paper FID", "paper IS",
         "paper CAS %", "ESS t* (mean)"], rows)
    floor_table = common.table(
        "Reference points: the FCN's test accuracy (trained once per dataset on the real training set), FID of "
        "the real training set vs the test set, FID of the round-trip test set vs the test set (per seed's "
        "tokenizer), IS of the real test set (10 splits), tokenizer reconstruction MSE on the test set, and how "
        "often the trained low-band prior's arg-max reproduces a training token at observed / at hidden positions "
        "of a MaskGIT training mask (what redrawing kept tokens relies on).",
        ["dataset", "length", "test series", "FCN test acc %", "FID train vs test", "FID round trip vs test",
         "IS real test", "tokenizer test MSE", "prior arg-max = token %, observed / hidden"], floors)
    budget = (f"CPU, 2 shared cores under the shared lock: datasets of length <= {MAX_LENGTH} with "
              f"<= {MAX_TRAIN} training series, the smallest {len(runs)} of them ({', '.join(runs)}); per seed {args.tokenizer_steps} tokenizer + "
              f"{args.prior_steps} prior steps at batch 32 (loss on {args.prior_loss} tokens), FCN {args.fcn_steps} steps (once per dataset), CAS FCN "
              f"{args.cas_steps} steps; T = 10; {seconds / 60:.0f} min wall in all")
    notes = [
        "How this differs from the papers: the paper trains stage 1 for 2,000 epochs and stage 2 for 10,000 "
        "epochs on a GPU with 64-d, 4-block encoders and a 256-wide, 4-layer prior; here the CPU-default sizes "
        f"(configs/maskgit_ucr.py), {args.tokenizer_steps} tokenizer and {args.prior_steps} prior steps. The paper's FCN is pretrained per dataset "
        "(supervised_FCN) and its FID reference is the test set through the STFT -> ISTFT round trip (near "
        "identity); here the FCN is trained in the pipeline and FID is shown against the raw test set and "
        "against the test set through the full tokenizer (VQ) round trip. Our figures are therefore not the "
        "paper's measurement; the paper column is context only.",
        "All samplers use the same exact cosine schedule (no reveal-one clip), the same prior and the same number "
        "of samples; ESS uses one t* per batch from the batch-mean error, as the official code. The official "
        "critical resampling redraws every token at each step, the kept ones included; it relies on a prior "
        "trained with the loss on every token (the official loss), which learns to reproduce what it sees; with "
        "the MaskGIT loss on hidden tokens only the prior's logits at observed positions are untrained.",
        "Paper column: the TimeVQVAE paper's naive-decoding figures (official repository, results/*.csv at "
        "commit a9a3f82). The ESS paper's per-dataset tables are in neither the repository (README, results/) "
        "nor anywhere else available offline, so no ESS paper figure is shown.",
        "A rerun restores every stage already finished in --workdir with the same flags (tokenizer, prior, FCN, "
        "CAS classifiers) instead of retraining it; the wall time counts what the run computed.",
        *[f"{n}: the tokenizer round trip alone is at FID {f:.2f} vs the test set (real train vs test: {g:.2f}); "
          "the tokenizer is undertrained at this budget, which bounds every sampler's FID vs test (the "
          "round-trip column removes it)." for n, f, g in _weak_tokenizers(runs)],
        _datasets_note(list(runs)),
        *_machines_note(runs),
        *_grouped_note(runs),
        *_claim_note(runs),
    ]
    return {"budget": budget, "tables": [main_table, floor_table], "notes": notes}


def main(argv=None):
    args = parse_args(argv)
    # Same shapes for every seed: a persistent compilation cache skips recompiling them (script-level setting).
    jax.config.update("jax_compilation_cache_dir", os.path.join(args.workdir, "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    if args.from_results is not None:
        return _rerender(args)
    os.makedirs(args.workdir, exist_ok=True)
    names = args.datasets or selected_datasets()[: args.max_datasets]
    t0, runs, path = time.time(), {}, None
    command = _command(sys.argv[1:] if argv is None else argv)
    previous_seconds, here = 0.0, common.machine()
    if args.append:
        with open(os.path.join(args.results_dir or common.RESULTS_DIR, f"{args.results_name}.json")) as f:
            old_file = json.load(f)
        old, old_machine = old_file["data"], old_file["machine"]
        free = ("datasets", "append", "max_datasets", "methods", "results_name")  # a dataset's rows come from one run, all methods
        same = {k: v for k, v in old["args"].items() if k not in free}
        mine = {k: v for k, v in vars(args).items() if k not in free}
        if same != mine:
            raise SystemExit(f"--append: budget flags differ from the results file: {same} vs {mine}")
        runs = {n: {int(k): v for k, v in r.items()} for n, r in old["runs"].items()}
        for per_seed in runs.values():  # runs recorded before the per-run machine field ran on the file's machine
            for r in per_seed.values():
                r.setdefault("machine", old_machine)
        previous_seconds = float(old.get("seconds", sum(r["seconds"] for v in runs.values() for r in v.values())))
        command += " (appended to an earlier run's datasets)"
    for name in names:
        tr, te = mdata.load(f"ucr/{name}", "train"), mdata.load(f"ucr/{name}", "test")
        num_classes = int(tr["label"].max()) + 1
        wd = os.path.join(args.workdir, name)
        clf = pipeline.train_classifier(tr["x"], tr["label"], num_classes, num_steps=args.fcn_steps, seed=0,
                                        workdir=wd, progress=False)
        runs[name] = {}
        for seed in args.seeds:
            ts = time.time()
            out = pipeline.run_all(tr, te, workdir=os.path.join(wd, f"seed{seed}"), seed=seed,
                                   tokenizer_steps=args.tokenizer_steps, prior_steps=args.prior_steps,
                                   cas_steps=args.cas_steps, num_samples=args.num_samples,
                                   num_cas_samples=args.num_cas_samples, classifier=clf, progress=False,
                                   methods=tuple(args.methods), prior_loss_positions=args.prior_loss)
            rt = pipeline.round_trip(out["tokenizer"], te["x"])
            t_star = _ess_t_star(out, seed)
            runs[name][seed] = {"scores": out["scores"], "length": int(tr["x"].shape[1]), "num_test": len(te["x"]),
                                "tokenizer_mse": float(np.mean((rt - te["x"]) ** 2)), "t_star_mean": t_star,
                                "copy_rate": _copy_rate(out, tr["x"], seed), "machine": here,
                                "seconds": time.time() - ts}
            print(name, seed, json.dumps({m: {k: round(v, 3) for k, v in s.items()}
                                          for m, s in out["scores"].items()}), f"{time.time() - ts:.0f} s", flush=True)
        seconds = previous_seconds + time.time() - t0
        s = summarize(runs, args, seconds)
        path = common.write_results(
            args.results_name, title="Naive MaskGIT decoding vs ESS on UCR datasets (paper protocol, CPU scale).",
            command=command, budget=s["budget"], seeds=args.seeds, tables=s["tables"], notes=s["notes"],
            data={"runs": runs, "args": vars(args), "seconds": seconds}, results_dir=args.results_dir)
    print(f"wrote {path}; {time.time() - t0:.0f} s")


def _command(flags) -> str:
    """The command line a results file states for a run with these flags."""
    return f"flock /tmp/mamjax_heavy.lock python -m reproduce.maskgit {' '.join(map(shlex.quote, flags))}".strip()


def _rerender(args) -> None:
    path = os.path.join(args.results_dir or common.RESULTS_DIR, f"{args.results_name}.json")
    with open(path) as f:
        old = json.load(f)
    ran = argparse.Namespace(**{**vars(args), **old["data"]["args"]})
    runs = {n: {int(k): v for k, v in r.items()} for n, r in old["data"]["runs"].items()}
    s = summarize(runs, ran, 60 * args.from_results)
    command = _command(old["python_argv"][1:])
    out = common.write_results(
        args.results_name, title=old["title"], command=command, budget=s["budget"], seeds=old["seeds"], tables=s["tables"],
        notes=s["notes"], data=dict(old["data"], seconds=60 * args.from_results), results_dir=args.results_dir)
    with open(out) as f:  # the provenance of the run, not of this re-rendering
        new = json.load(f)
    new.update({k: old[k] for k in ("machine", "git_revision", "date", "python_argv")})
    with open(out, "w") as f:
        json.dump(new, f, indent=1)
    print(f"re-rendered {out}")


def _grouped_note(runs: dict) -> list[str]:
    """A note on the grouped-critic rows, where a dataset has them."""
    groups = sorted({parse_method(m)[1] for r in runs.values() for m in _methods(r)} - {None})
    if not groups:
        return []
    return [f"Grouped critic (G = {', '.join(map(str, groups))}): not the paper's sampler. The self-Token-Critic "
            "scores each token by the prior's arg-max with that token alone hidden (N prior passes, the official "
            "code); the grouped critic hides every G-th token at once (G passes), so each prediction sees fewer "
            "tokens. Same prior, same seeds; its rows show what the cheaper critic costs in sample quality "
            "(what it saves at each size, CPU default and official: the speed table, benchmarks/maskgit_bench.py). "
            "The t* column is measured for the exact critic only."]


def _methods(per_seed: dict) -> list[str]:
    """The samplers a dataset's run scored (every seed of a dataset scores the same ones)."""
    return list(next(iter(per_seed.values()))["scores"])


def _paired(per_seed: dict, method: str, base: str, key: str = "fid") -> tuple[float, float]:
    """Mean and std over seeds of ``score(method) - score(base)``: the same prior and seed, so paired."""
    d = [r["scores"][method][key] - r["scores"][base][key] for r in per_seed.values()]
    return float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else 0.0


def _claim_note(runs: dict) -> list[str]:
    """What the table says about the paper's claim (ESS lowers FID against naive decoding), from the data: per
    ESS variant, on how many datasets its mean FID vs test is below naive's, and the paired per-seed differences."""
    out = []
    for method in ("ess_redraw", "ess"):
        have = {n: p for n, p in runs.items() if method in _methods(p)}
        if not have:
            continue
        diffs = {n: _paired(p, method, "naive") for n, p in have.items()}
        better = [n for n, (m, _) in diffs.items() if m < 0]
        wins = {k: [n for n, p in have.items() if _paired(p, method, "naive", k)[0] > 0] for k in ("is", "cas")}
        out.append(f"Claim check, {label(method)} vs naive (FID vs test, paired per seed, ESS - naive, mean ± std; "
                   f"negative = ESS better): lower mean FID on {len(better)} of {len(have)} datasets"
                   f"{' (' + ', '.join(better) + ')' if better else ''}; "
                   + "; ".join(f"{n} {m:+.2f} ± {sd:.2f}" for n, (m, sd) in diffs.items())
                   + f". Higher mean IS on {len(wins['is'])} of {len(have)}, higher mean CAS on "
                     f"{len(wins['cas'])} of {len(have)}.")
    for base in ("ess_redraw", "ess"):
        grouped = sorted({m for p in runs.values() for m in _methods(p)
                          if parse_method(m)[0] == base and parse_method(m)[1] is not None})
        for method in grouped:
            have = {n: p for n, p in runs.items() if method in _methods(p)}
            out.append(f"Grouped vs exact critic, {label(method)} - {label(base)} (FID vs test, paired per seed): "
                       + "; ".join(f"{n} {m:+.2f} ± {sd:.2f}" for n, (m, sd) in
                                   ((n, _paired(p, method, base)) for n, p in have.items())) + ".")
    return out


def _machines_note(runs: dict) -> list[str]:
    """Where the datasets ran on different machines (``--append``), which ran where: float results of the same
    seed differ between CPUs (XLA compiles for the host), so rows from two machines are two measurements."""
    where = common.by_machine((name, r) for name, per_seed in runs.items() for r in per_seed.values())
    if len(where) < 2:
        return []
    return ["Machines (datasets appended by later runs): " + "; ".join(
        f"{', '.join(names)} on {m}" for m, names in where.items()) + "."]


def _datasets_note(ran: list) -> str:
    sel = selected_datasets()
    rest = [n for n in sel if n not in ran]
    if not rest:
        return f"Datasets: all {len(ran)} of the selection ran ({', '.join(ran)})."
    if list(ran) == sel[: len(ran)]:
        return (f"Datasets: {', '.join(ran)}, the first {len(ran)} of the selection, fit this run's lock budget; "
                f"the rest ({', '.join(rest)}) did not run.")
    return f"Datasets: {', '.join(ran)} (chosen with --datasets); the rest of the selection ({', '.join(rest)}) did not run."


def _weak_tokenizers(runs: dict) -> list[tuple[str, float, float]]:
    """``(dataset, mean round-trip FID, train-vs-test FID)`` where the round trip is worse than twice the floor."""
    out = []
    for name, per_seed in runs.items():
        rt = float(np.mean([r["scores"]["naive"]["fid_rt_floor"] for r in per_seed.values()]))
        floor = float(next(iter(per_seed.values()))["scores"]["naive"]["fid_floor"])
        if rt > 2 * floor:
            out.append((name, rt, floor))
    return out


def _copy_rate(out: dict, x_train: np.ndarray, seed: int) -> dict:
    """How often the low-band prior's arg-max equals the training token, at observed and hidden positions."""
    from mamjax.maskgit import prior as prior_lib
    import jax.numpy as jnp

    tok, pri = out["tokenizer"], out["prior"]
    codes = jnp.asarray(pipeline.tokenize(tok, x_train)[0])
    keys = jax.random.split(jax.random.key(seed + 7), len(codes))
    mask = jax.vmap(prior_lib.maskgit_mask, in_axes=(0, None))(keys, jnp.ones(codes.shape[1], bool))
    logits = prior_lib.lf_logits_fn(pri.apply_l, pri.params["lf"])(codes, mask,
                                                                   jnp.full((len(codes),), pri.num_classes))
    hit = np.asarray(jnp.argmax(logits, -1) == codes)
    m = np.asarray(mask)
    return {"observed": float(hit[m].mean()), "hidden": float(hit[~m].mean())}


def _ess_t_star(out: dict, seed: int) -> float:
    """Mean t* of critical reverse sampling over a few unconditional batches of the trained prior."""
    from mamjax.maskgit import ess, prior as prior_lib
    import jax.numpy as jnp

    tok, pri = out["tokenizer"], out["prior"]
    cb = tok.fns["codebooks"](tok.params)[0]
    f_l = prior_lib.lf_logits_fn(pri.apply_l, pri.params["lf"])
    null = jnp.full((64,), pri.num_classes, jnp.int32)
    run = jax.jit(lambda k: ess.ess_decode(f_l, k, cb, batch_size=64, seq_len=tok.len_l, labels=null,
                                           return_info=True)[1][1].t_star)
    return float(np.mean([np.asarray(run(jax.random.key(seed * 100 + i)))[0] for i in range(4)]))


if __name__ == "__main__":
    main()
