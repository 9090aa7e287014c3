"""MaM / AO-ARM on the 10x10 Ising model at the official network size, against the official PyTorch loop.

    flock /tmp/mamjax_heavy.lock python benchmarks/ising_bench.py          # official size (minutes)
    python -m benchmarks.run ising_bench --quick                           # width 256, batch 64

The official Ising network (PrincetonLIPS/MaM ``mam/config/config_ising_eb.yaml`` and
``models/nn.py``): ``MLPResDual`` = two ``MLPRes`` (``n_layers: 4`` = input layer, 3 hidden
2048 x 2048 residual LeakyReLU layers, output layer) on the one-hot + "?" input of D = 100 sites,
batch 512. The same network in mamjax is ``backbone="official_mlp", width=2048, depth=4``.

Timed, interleaved (mamjax, then PyTorch, each repetition), float32, the same thread count, median:

1. **chain rule**: ``log p_sigma(x)`` of a batch along one random ordering each, D conditionals.
   PyTorch *as written* is ``MAM.est_logp``: D calls of the dual network, so it also evaluates the
   marginal net at every step; *lean* calls the conditional net only (the fair baseline).
2. **MaM f(x)**: the marginal network on the batch plus the empty row (``MAM.eval_ll``; as written
   through the dual network, lean through the marginal one only).
3. **MaM training step** (energy-based, KL objective, alpha 4, 4 Gibbs positions, Adam 5e-4): as
   written is ``MAM.forward`` (objective KL) + backward + Adam, including its dual-net calls and the
   self-consistency loss on the pseudo-data batch that it computes but does not use; lean computes
   what ``mamjax.marginal.losses.energy_loss`` computes.
4. **AO-ARM training step**: the order-agnostic likelihood step (one call of the conditional net at
   a random prefix per example, weight D / (D - t), as ``mamjax.marginal.arm.arm_loss``) + Adam.
   The official Ising ARM is trained energy-based (``arm_eb.py``: an ancestral sample and a
   D-call chain rule with gradients per step), which mamjax does not implement; not timed.
5. **one hidden layer**: ``leaky_relu(a @ W) + a`` at ``[batch, width] x [width, width]``, the product
   that dominates every row above: what each framework's matrix product gives on this CPU, the bound on
   any ratio at equal flops.

The PyTorch code is re-written from the official code's description (not copied). Without torch
the PyTorch rows say "official: torch not installed".
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.common import table  # noqa: E402
from mamjax.marginal import arm as arm_lib  # noqa: E402
from mamjax.marginal import experiment  # noqa: E402
from reproduce.common import machine  # noqa: E402

SIDE, K, LAYERS = 10, 2, 4


def _load() -> str:
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def _interleaved(fns: dict, reps: int) -> dict:
    """Median seconds of each zero-argument callable, called in turn ``reps`` times (after one warm-up each)."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


# ----------------------------------------------------------------------------------------- mamjax side
def _mamjax_fns(width: int, batch: int, chunks) -> dict:
    d = SIDE * SIDE
    nets = experiment.make_nets(jax.random.key(0), d, K, backbone="official_mlp", width=width, depth=LAYERS)
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (batch, d)).astype(jnp.int32)
    full = jnp.ones(x.shape, bool)
    cp, mp = nets.params["conditional"], nets.params["marginal"]
    fns = {}
    for c in chunks:
        ens = jax.jit(functools.partial(arm_lib.arm_log_marginal_ensemble, nets.cond_apply, num_orderings=1,
                                        **({} if c == "default" else {"chunk_size": c})))
        fns[f"chain rule, mamjax chunk_size={c}"] = (lambda e=ens: jax.block_until_ready(
            e(cp, x, full, jax.random.key(2))))
    fx = jax.jit(lambda p, a, m: nets.marg_apply(p, a, m))
    xe = jnp.concatenate([x, jnp.zeros((1, d), jnp.int32)])
    me = jnp.concatenate([full, jnp.zeros((1, d), bool)])
    fns["MaM f(x), mamjax"] = lambda: jax.block_until_ready(fx(mp, xe, me))

    log_f, *_ = experiment.ising_target(SIDE)
    mam_step, mam_state = experiment.energy_stage(nets, log_f, x, lr=5e-4, alpha=4.0, gibbs_steps=4, clip=0.0)
    arm_step, arm_state = experiment.arm_stage(nets, lr=5e-4, clip=0.0)
    flags = np.zeros((batch,), bool)
    box = {"mam": mam_state, "arm": arm_state, "i": 0}

    def run_mam():
        box["i"] += 1
        box["mam"], m = mam_step(box["mam"], flags, jax.random.key(box["i"]))
        jax.block_until_ready(m["loss"])

    def run_arm():
        box["i"] += 1
        box["arm"], m = arm_step(box["arm"], x, jax.random.key(box["i"]))
        jax.block_until_ready(m["loss"])

    a = jax.random.normal(jax.random.key(3), (batch, width))
    w = jax.random.normal(jax.random.key(4), (width, width)) / np.sqrt(width)
    layer = jax.jit(lambda a, w: jax.nn.leaky_relu(a @ w, 0.01) + a)
    fns["one hidden layer, mamjax"] = lambda: jax.block_until_ready(layer(a, w))
    fns["MaM train step, mamjax"] = run_mam
    fns["AO-ARM train step, mamjax"] = run_arm
    return fns


# ---------------------------------------------------------------------------------------- PyTorch side
def torch_nets(width: int, params: dict | None = None):
    """The official ``MLPResDual`` halves in PyTorch: ``(ar, marg)``; with ``params`` (mamjax ``nets.params`` of
    an ``official_mlp`` of the same width), the mamjax weights are loaded (input rows re-ordered from mamjax's
    [one-hot, "?"] to the official [unknown, values 1..K] one-hot), so both compute the same function."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    d = SIDE * SIDE

    class ResMLP(nn.Module):  # models/nn.py MLPRes: act(in), act(W h) + h for n_layers - 1, out
        def __init__(self, num_in, out, layers):
            super().__init__()
            self.inp = nn.Linear(num_in, width)
            self.hidden = nn.ModuleList([nn.Linear(width, width) for _ in range(layers - 1)])
            self.out = nn.Linear(width, out)

        def forward(self, h):
            h = F.leaky_relu(self.inp(h))
            for layer in self.hidden:
                h = F.leaky_relu(layer(h)) + h
            return self.out(h)

    if params is None:
        return ResMLP(d * (K + 1), d * K, LAYERS), ResMLP(d * (K + 1), 1, LAYERS)

    def load(p):
        body = p["body"]
        num_in = np.asarray(body["inp"]["kernel"]).shape[0]
        c = np.arange(num_in) % (K + 1)  # official channel: 0 unknown, k + 1 value k
        perm = (np.arange(num_in) // (K + 1)) * (K + 1) + np.where(c == 0, K, c - 1)
        layers = [body["inp"]] + [body["hidden"][i] for i in range(len(body["hidden"]))] + [body["out"]]
        net = ResMLP(num_in, np.asarray(body["out"]["kernel"]).shape[1], len(layers) - 1)
        mods = [net.inp, *net.hidden, net.out]
        with torch.no_grad():
            for i, (mod, lp) in enumerate(zip(mods, layers)):
                w = np.asarray(lp["kernel"])
                w = w[perm] if i == 0 else w
                mod.weight.copy_(torch.tensor(w.T.copy()))
                mod.bias.copy_(torch.tensor(np.asarray(lp["bias"])))
        return net

    return load(params["conditional"]), load(params["marginal"])


def torch_chain_rule(ar, x, sigma):
    """The official ``MAM.est_logp`` loop with the conditional net ``ar``: ``x [B, D]`` values 1..K, ``sigma [B, D]``
    the step at which each position is revealed; returns ``[B]`` log-likelihoods."""
    import torch
    import torch.nn.functional as F

    batch, d = x.shape
    ll = torch.zeros(batch)
    with torch.no_grad():
        for i in range(d):
            seen, pick = sigma < i, sigma == i
            h = F.one_hot((x * seen).long(), K + 1).float().flatten(-2, -1)
            logits = ar(h).reshape(batch, d, K)[pick]
            ll = ll + F.log_softmax(logits, -1)[torch.arange(batch), (x[pick] - 1).long()]
    return ll


def _torch_fns(width: int, batch: int) -> dict:
    """The official computations, re-written in PyTorch (values 1..K observed, 0 unknown, as there)."""
    import torch
    import torch.nn.functional as F

    d = SIDE * SIDE
    torch.manual_seed(0)

    def encode(v):
        return F.one_hot(v.long(), K + 1).float().flatten(-2, -1)

    ar, marg = torch_nets(width)

    def dual(v):  # MLPResDual.forward: both networks on every call
        h = encode(v)
        return marg(h)[:, 0], ar(h).reshape(v.shape[0], d, K)

    def cond(v):
        return ar(encode(v)).reshape(v.shape[0], d, K)

    def f_only(v):
        return marg(encode(v))[:, 0]

    J, b = (torch.tensor(a, dtype=torch.float32) for a in experiment.ising_target(SIDE)[1:3])

    def score(v):  # LatticeIsingModel on values 1..K
        s = 2.0 * (v - 1.0) - 1.0
        return ((s @ J) * s).sum(-1) + s @ b

    def order(n):
        return torch.argsort(torch.rand(n, d), dim=-1)

    x = torch.randint(1, K + 1, (batch, d)).float()

    unknown = torch.zeros(1, d)

    def fx(fn):
        with torch.no_grad():
            return fn(torch.cat([x, unknown]))

    def censor_and_sample(v, sigma, steps, logits_fn):
        v = v * (sigma < d - steps)
        for i in reversed(range(steps)):
            pick = sigma == d - 1 - i
            logits = logits_fn(v)[pick]
            v = v + pick * (torch.distributions.Categorical(logits=logits).sample()[:, None] + 1.0)
        return v

    def mb_loss_dual(v, sigma):  # MAM.eval_mar_bl_loss
        ind = torch.randint(1, d + 1, (v.shape[0], 1))
        f_curr, _ = dual(v * (sigma < ind))
        f_prev, logits = dual(v * (sigma < ind - 1))
        pick = sigma == ind - 1
        lp = F.log_softmax(logits[pick], -1)[torch.arange(v.shape[0]), (v[pick] - 1).long()]
        return F.mse_loss(f_curr, lp + f_prev)

    def mb_loss_lean(v, sigma):  # what losses.self_consistency_penalty computes: one marginal call on 2B rows
        n = v.shape[0]
        ind = torch.randint(1, d + 1, (n, 1))
        f = f_only(torch.cat([v * (sigma < ind), v * (sigma < ind - 1)]))
        pick = sigma == ind - 1
        lp = F.log_softmax(cond(v * (sigma < ind - 1))[pick], -1)[torch.arange(n), (v[pick] - 1).long()]
        return F.mse_loss(f[:n], lp + f[n:])

    log_z0 = torch.tensor(0.0)
    chains = {"v": x.clone()}
    opt = torch.optim.Adam(list(ar.parameters()) + list(marg.parameters()), lr=5e-4)
    eps = float(np.finfo(np.float32).eps)

    def mam_step(written: bool):
        sigma = order(batch)
        with torch.no_grad():
            chains["v"] = censor_and_sample(chains["v"], sigma, 4, (lambda v: dual(v)[1]) if written else cond)
            energies = -score(chains["v"])
        logp = dual(chains["v"])[0] if written else f_only(chains["v"])
        diff = logp.detach() + energies
        r = (diff - diff.mean()) / (diff.std() + eps)
        if written:
            mb = mb_loss_dual(chains["v"], sigma)
            begin = F.mse_loss(dual(unknown)[0], log_z0[None])
            mb_loss_dual(x, order(batch))  # computed and unused in the official KL objective
        else:
            mb = mb_loss_lean(chains["v"], sigma)
            begin = F.mse_loss(f_only(unknown), log_z0[None])
        loss = 4.0 * (d * mb + begin) + (r * logp).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    def arm_step():
        sigma = order(batch)
        t = torch.randint(0, d, (batch, 1))
        seen = sigma < t
        lp = torch.distributions.Categorical(logits=cond(x * seen)).log_prob((x - 1).long())
        loss = -(d / (d - t[:, 0]).float() * (lp * ~seen).sum(-1)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    class Dual(torch.nn.Module):  # the chain rule through MLPResDual: both halves at every step
        def forward(self, h):
            marg(h)
            return ar(h)

    a, w = torch.randn(batch, width), torch.randn(width, width) / width ** 0.5

    def layer():
        with torch.no_grad():
            return F.leaky_relu(a @ w, 0.01) + a

    return {"one hidden layer, PyTorch": layer,
            "chain rule, PyTorch as written (dual net)": lambda: torch_chain_rule(Dual(), x, order(batch)),
            "chain rule, PyTorch lean (conditional net)": lambda: torch_chain_rule(ar, x, order(batch)),
            "MaM f(x), PyTorch as written (dual net)": lambda: fx(lambda v: dual(v)[0]),
            "MaM f(x), PyTorch lean (marginal net)": lambda: fx(f_only),
            "MaM train step, PyTorch as written": lambda: mam_step(True),
            "MaM train step, PyTorch lean": lambda: mam_step(False),
            "AO-ARM train step, PyTorch": arm_step}


def _flops(width: int, batch: int) -> dict:
    """Analytic forward FLOPs (multiply-adds x 2) of the nets each computation calls; backward = 2x forward."""
    d = SIDE * SIDE
    body = d * (K + 1) * width + (LAYERS - 1) * width * width
    cond, marg = 2 * (body + width * d * K), 2 * (body + width)
    b = batch
    return {"chain rule, mamjax": d * b * cond, "chain rule, PyTorch as written (dual net)": d * b * (cond + marg),
            "chain rule, PyTorch lean (conditional net)": d * b * cond,
            "MaM f(x), mamjax": (b + 1) * marg, "MaM f(x), PyTorch as written (dual net)": (b + 1) * (cond + marg),
            "MaM f(x), PyTorch lean (marginal net)": (b + 1) * marg,
            # gibbs 4 cond; f(x) marg; penalty 2B marg + B cond; empty row; backward of all but gibbs
            "MaM train step, mamjax": 4 * b * cond + 3 * (b * marg + 2 * b * marg + b * cond),
            "MaM train step, PyTorch lean": 4 * b * cond + 3 * (b * marg + 2 * b * marg + b * cond),
            # gibbs 4 dual; net(samples) dual; mb on samples 2 dual; mb on data 2 dual (forward);
            # backward through marg(samples), marg x 2 and cond on the samples' prefixes
            "MaM train step, PyTorch as written": 9 * b * (cond + marg) + 2 * (3 * b * marg + b * cond),
            "AO-ARM train step, mamjax": 3 * b * cond, "AO-ARM train step, PyTorch": 3 * b * cond,
            "one hidden layer, mamjax": 2 * b * width * width, "one hidden layer, PyTorch": 2 * b * width * width}


def _group(name: str) -> str:
    return name.split(",")[0]


def run(width: int, batch: int, reps: int, chunks, threads: int) -> tuple[list[list], dict]:
    info = {"load_before": _load(), "width": width, "batch": batch, "reps": reps, "threads": threads,
            "machine": machine()}
    fns = _mamjax_fns(width, batch, chunks)
    try:
        import torch

        torch.set_num_threads(threads)
        fns.update(_torch_fns(width, batch))
        have_torch = True
    except ImportError:
        have_torch = False
    secs = _interleaved(fns, reps)
    info["load_after"] = _load()
    flops = _flops(width, batch)
    rows = []
    for group in dict.fromkeys(_group(k) for k in fns):
        names = [k for k in secs if _group(k) == group]
        ours = [k for k in names if "mamjax" in k]
        best_ours = min(secs[k] for k in ours)
        for k in names:
            fl = flops.get(k, flops.get(f"{group}, mamjax"))
            ratio = "-" if "mamjax" in k else f"{secs[k] / best_ours:.2f}x"
            rows.append([k, f"{secs[k]:.3f}", f"{fl / secs[k] / 1e9:.0f}", ratio])
        if not have_torch:
            rows.append([f"{group}, official", "official: torch not installed", "-", "-"])
    return rows, info


def main(quick: bool = False, argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--chunks", default="default", help="comma-separated chunk_size values of the mamjax chain rule")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--json", default=None, help="also write {caption, headers, rows, info} here "
                                                 "(read by `python -m reproduce.marginal --ising-bench`)")
    args = ap.parse_args([] if argv is None else argv)
    width = args.width or (256 if quick else 2048)
    batch = args.batch or (64 if quick else 512)
    reps = args.reps or (3 if quick else 5)
    chunks = [c if c == "default" else (None if c == "none" else int(c)) for c in args.chunks.split(",")]
    rows, info = run(width, batch, reps, chunks, args.threads)
    head = (f"10x10 Ising (D = 100, K = 2), official_mlp width {width}, {LAYERS} layers (3 hidden {width}x{width} "
            f"per network), batch {batch}, float32, {info['threads']} threads, median of {reps} interleaved "
            f"repetitions; load average {info['load_before']} before, {info['load_after']} after "
            f"(2-core CPU shared with other jobs); {info['machine']}. Ratio = PyTorch seconds / fastest mamjax "
            f"seconds.\n\n")
    headers = ["computation", "seconds", "GFLOP/s (analytic)", "official / mamjax"]
    out = head + table(headers, rows)
    print(out)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"caption": head.strip(), "headers": headers, "rows": rows, "info": info}, f, indent=1)
    return out


if __name__ == "__main__":
    ap_quick = "--quick" in sys.argv
    main(quick=ap_quick, argv=[a for a in sys.argv[1:] if a != "--quick"])
