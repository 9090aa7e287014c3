"""Benchmark: TimeVQVAE-style MaskGIT on UCR, naive iterative decoding vs ESS.

For each dataset (GunPoint, ItalyPowerDemand, ArrowHead; quick: GunPoint only, tiny budget) one
tokenizer, one prior and one FCN are trained (checkpointed under $MAMJAX_BENCH_DIR, default
/tmp/mamjax_bench, so a rerun resumes), then class-conditional samples (one per test series) are
drawn with naive MaskGIT and with ESS and scored with FID / IS / CAS beside the real-vs-real floor and
the paper's TimeVQVAE figures. Sampling time per 1,000 series is measured for naive, ESS, and a
plain Python loop of the same model (the structure of the official PyTorch code: one forward call
per decoding step, host-side sampling and top-k, the critic as a loop with one forward call per
token). ESS uses one t* per batch (batch-mean error, as the official code) and the prior's
leave-one-out pass as the critic's forward; the per-sequence t* and the vmapped critic are timed
beside it.

    python benchmarks/maskgit_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import data, masks
from mamjax.maskgit import ess, pipeline, prior

# Lee, Aune, Malacarne (2023), Table (TimeVQVAE with ESS): FID / IS / CAS(%).
PAPER = {"GunPoint": (0.8, 1.9, 99.1), "ItalyPowerDemand": (1.6, 2.0, 95.3), "ArrowHead": (2.0, 2.5, 81.7)}
PAPER_BUDGET = ("paper/official config: stage 1 5k steps (batch 64-128), stage 2 50k steps (batch 256), "
                "128-d models, GPU; >= 1024 generated samples")


def budget(quick: bool) -> dict:
    if quick:
        return dict(tokenizer_steps=200, prior_steps=300, fcn_steps=80, cas_steps=40, num_samples=64,
                    sample_batch=64, timing_batch=32)
    return dict(tokenizer_steps=1000, prior_steps=2000, fcn_steps=400, cas_steps=300, num_samples=None,
                sample_batch=128, timing_batch=128)


def _python_loop_sampler(out, method: str, batch_size: int, num_steps: int = 10, temperature: float = 4.0):
    """The same model decoded PyTorch-style: a Python loop, one jitted forward call per model evaluation."""
    tok, pri = out["tokenizer"], out["prior"]
    cb = np.asarray(tok.fns["codebooks"](tok.params)[0])
    fwd_l = jax.jit(lambda p, t, m, y: pri.apply_l(p, t, m, y))
    fwd_h = jax.jit(lambda p, t, m, y: pri.apply_h(p, t, m, y))
    detok = jax.jit(tok.fns["detokenize"])
    k_codes = tok.num_codes

    def softmax(z):
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    def forward_l(t, m, y):
        return np.asarray(fwd_l(pri.params["lf"], jnp.asarray(np.where(m, t, 0), jnp.int32), jnp.asarray(m), y))

    def forward_h(s_l, t, m, y):
        full = np.concatenate([s_l, np.where(m, t, 0) + k_codes], 1)
        fm = np.concatenate([np.ones_like(s_l, bool), m], 1)
        return np.asarray(fwd_h(pri.params["hf"], jnp.asarray(full, jnp.int32), jnp.asarray(fm), y))[:, s_l.shape[1]:]

    def critic(t, y):  # official structure: one forward per masked position
        n = t.shape[1]
        scores = np.zeros(t.shape)
        for j in range(n):
            m = np.ones(t.shape, bool)
            m[:, j] = False
            pred = forward_l(t, m, y)[:, j].argmax(-1)
            scores[:, j] = -((cb[t[:, j]] - cb[pred]) ** 2).sum(-1)
        return np.log(softmax(scores) + 1e-20)

    def loop(rng, forward, n, y, start=None, t0=None, m0=None, conf_fn=None, t_begin=0):
        t = np.zeros((batch_size, n), np.int64) if t0 is None else t0.copy()
        m = np.zeros((batch_size, n), bool) if m0 is None else m0.copy()
        for step in range(t_begin, num_steps):
            logits = forward(t, m, y)
            p = softmax(logits)
            g = rng.gumbel(size=logits.shape)
            sampled = np.where(m, t, (logits + g).argmax(-1))
            if conf_fn is None:
                conf = np.log(np.take_along_axis(p, sampled[..., None], -1)[..., 0] + 1e-20)
                conf = np.where(m, np.inf, conf)
            else:
                conf = conf_fn(sampled, y)
            r = (step + 1) / num_steps
            k = int(masks.num_hidden_at(step, num_steps, n))
            if conf_fn is None:
                k = min(k, max(int((~m).sum(1).min()) - 1, 0))
            noisy = conf + temperature * (1 - r) * rng.gumbel(size=conf.shape)
            order = np.argsort(noisy, 1)
            m = np.ones_like(m)
            np.put_along_axis(m, order[:, :k], False, 1)
            t = np.where(m, sampled, 0)
        return t

    def sample(seed, labels):
        rng = np.random.default_rng(seed)
        y = jnp.asarray(labels)
        s_l = loop(rng, forward_l, tok.len_l, y)
        if method == "ess":
            n = tok.len_l
            c = critic(s_l, y)
            order = np.argsort(c, 1)
            counts = [int(masks.num_hidden_at(t, num_steps, n)) for t in range(num_steps)]
            t_star, prev, hist = 1, None, []
            for t in range(num_steps - 1, 0, -1):  # reverse walk, batch-level as in the official code
                if counts[t] == counts[t - 1]:
                    t_star = t
                    break
                m_prev = np.ones_like(s_l, bool)
                np.put_along_axis(m_prev, order[:, :counts[t - 1]], False, 1)
                pred = forward_l(s_l, m_prev, y).argmax(-1)
                rev = order[:, counts[t]:counts[t - 1]]
                err = np.mean((cb[np.take_along_axis(s_l, rev, 1)] - cb[np.take_along_axis(pred, rev, 1)]) ** 2)
                if t == num_steps - 1:
                    ma, prev = 0.0, err
                else:
                    hist = (hist + [err / (prev + 1e-5)])[-max(1, round(num_steps * 0.3)):]
                    ma, prev = np.mean(hist), err
                if (t != num_steps - 1 and ma > 1.0) or t == 1:
                    t_star = t
                    break
            m0 = np.ones_like(s_l, bool)
            np.put_along_axis(m0, order[:, :counts[t_star]], False, 1)
            s_l = loop(rng, forward_l, n, y, t0=s_l, m0=m0, conf_fn=critic, t_begin=t_star)
        s_h = loop(rng, lambda t, m, yy: forward_h(s_l, t, m, yy), tok.len_h, y)
        return np.asarray(detok(tok.params, jnp.asarray(s_l, jnp.int32), jnp.asarray(s_h, jnp.int32)))

    return sample


def _time_per_1000(fns: dict, repeats: int, batch: int) -> dict:
    """Seconds per 1,000 series of each ``fn(seed)``, interleaved over the same seeds (fair under drifting load)."""
    for fn in fns.values():
        fn(0)  # compile / warm up
    total = dict.fromkeys(fns, 0.0)
    for r in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(r + 1)
            total[name] += time.perf_counter() - t0
    return {name: t / (repeats * batch) * 1000.0 for name, t in total.items()}


def run_dataset(name: str, quick: bool, root: str) -> dict:
    b = budget(quick)
    tr, te = data.load(f"ucr/{name}", "train"), data.load(f"ucr/{name}", "test")
    workdir = os.path.join(root, "maskgit", f"{name}{'_quick' if quick else ''}")
    t0 = time.perf_counter()
    out = pipeline.run_all(tr, te, workdir=workdir, tokenizer_steps=b["tokenizer_steps"],
                           prior_steps=b["prior_steps"], fcn_steps=b["fcn_steps"], cas_steps=b["cas_steps"],
                           num_samples=b["num_samples"], sample_batch=b["sample_batch"], progress=False)
    wall = time.perf_counter() - t0
    tb = b["timing_batch"]
    labels = np.resize(te["label"], tb).astype(np.int32)
    reps = 3 if quick else 8
    variants = {  # name: (method, prior bundle, per-sequence t*)
        "naive": ("naive", out["prior"], False),
        "ess": ("ess", out["prior"], False),
        "ess_vmap_critic": ("ess", out["prior"]._replace(loo_l=None), False),
        "ess_per_seq": ("ess", out["prior"], True),
    }
    samplers = {}
    for variant, (method, pri, per_seq) in variants.items():
        sampler = pipeline.make_sampler(out["tokenizer"], pri, method=method, batch_size=tb,
                                        ess_per_sequence=per_seq)
        samplers[variant] = lambda r, f=sampler: np.asarray(f(jax.random.key(r), jnp.asarray(labels)))
    timing = _time_per_1000(samplers, reps, tb)
    loops = {f"loop_{m}": (lambda r, f=_python_loop_sampler(out, m, tb): f(r, labels)) for m in ("naive", "ess")}
    timing.update(_time_per_1000(loops, 1, tb))
    return {"scores": out["scores"], "timing": timing, "wall": wall, "t_star": _t_star(out, labels, reps),
            "n_gen": len(out["generated"]["naive"][1]), "len": (out["tokenizer"].len_l, out["tokenizer"].len_h)}


def _t_star(out, labels: np.ndarray, reps: int) -> float:
    """Mean t* of the (batch-level) reverse walk over ``reps`` batches."""
    tok, pri = out["tokenizer"], out["prior"]
    f_l = prior.lf_logits_fn(pri.apply_l, pri.params["lf"])
    loo = prior.lf_leave_one_out_fn(pri.loo_l, pri.params["lf"])
    run = jax.jit(lambda k: ess.ess_decode(f_l, k, tok.fns["codebooks"](tok.params)[0], batch_size=len(labels),
                                           seq_len=tok.len_l, labels=jnp.asarray(labels), leave_one_out_fn=loo,
                                           return_info=True)[1][1].t_star)
    return float(np.mean([np.asarray(run(jax.random.key(100 + r))).mean() for r in range(reps)]))


def main(quick: bool = False) -> str:
    root = os.environ.get("MAMJAX_BENCH_DIR", "/tmp/mamjax_bench")
    names = ["GunPoint"] if quick else ["GunPoint", "ItalyPowerDemand", "ArrowHead"]
    b = budget(quick)
    results = {n: run_dataset(n, quick, root) for n in names}
    lines = []
    emit = lines.append

    emit(f"\n## MaskGIT (TimeVQVAE-style) on UCR: naive decoding vs ESS ({'quick' if quick else 'full'})\n")
    emit(f"Ours: tokenizer {b['tokenizer_steps']} steps, prior {b['prior_steps']} steps (batch 32, 64-d, 2 layers), "
          f"FCN {b['fcn_steps']} steps, CAS-FCN {b['cas_steps']} steps, CPU (2 shared cores); class-conditional "
          f"samples = test labels. {PAPER_BUDGET}.\n")
    emit("| dataset | sampler | FID | IS | CAS % | FID floor (train vs test) | IS real test | paper FID / IS / CAS |")
    emit("|---|---|---|---|---|---|---|---|")
    for n, r in results.items():
        s = r["scores"]
        for m in ("naive", "ess"):
            emit(f"| {n} (N_gen={r['n_gen']}) | {m} | {s[m]['fid']:.2f} | {s[m]['is']:.2f} | {100 * s[m]['cas']:.1f} | "
                  f"{s[m]['fid_floor']:.2f} | {s[m]['is_real']:.2f} | {'%.1f / %.1f / %.1f' % PAPER[n]} |")
    emit("\nSampling time, seconds per 1,000 series (incl. the high band and detokenization), batch "
          f"{b['timing_batch']}, T = 10 steps; ESS critic = the prior's leave-one-out pass unless stated:\n")
    rows = [("naive", "naive MaskGIT (jit)"), ("ess", "ESS, one t* per batch (jit)"),
            ("ess_vmap_critic", "ESS, critic as vmap over N masked copies (jit)"),
            ("ess_per_seq", "ESS, t* per sequence (jit)"), ("loop_naive", "naive, Python loop (per step)"),
            ("loop_ess", "ESS, Python loop (critic: one call per token)")]
    emit("| dataset (N_l, N_h) | mean t* | sampler | s / 1,000 series | / naive (jit) |")
    emit("|---|---|---|---|---|")
    for n, r in results.items():
        t = r["timing"]
        for key, label in rows:
            emit(f"| {n} {r['len']} | {r['t_star']:.1f} | {label} | {t[key]:.2f} | {t[key] / t['naive']:.2f}x |")
    emit("\nRanking (lower FID, higher IS / CAS is better):")
    for n, r in results.items():
        s = r["scores"]
        wins = [k for k, better in (("FID", s["ess"]["fid"] < s["naive"]["fid"]),
                                    ("IS", s["ess"]["is"] > s["naive"]["is"]),
                                    ("CAS", s["ess"]["cas"] > s["naive"]["cas"])) if better]
        emit(f"- {n}: ESS better on {wins or 'none'}; naive better or equal on "
              f"{[k for k in ('FID', 'IS', 'CAS') if k not in wins] or 'none'} "
              f"(single seed; wall time {r['wall']:.0f} s).")
    out = "\n".join(lines)
    print(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
