"""Cumulative MPT: mamjax's routes vs the official PyTorch loop (pmorenoz/MPT-LML), in one interleaved run.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.lml_bench           # D = 10, 50, 200; masks/size 1, 5, 20
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.lml_bench --quick   # D = 10, 50; masks/size 1, 5
    ... --write                                                     # also write results/lml_speed.json

Problem (the issue-20 protocol): PPCA, N = 2000 examples sharing the masks, K = 2 latents, beta = 5
(noise variance 0.2), float32, every mask size 1..D with ``k`` random masks per size, PyTorch on 2
threads. The official loop (``exp_3_training_fig1.py``: for every size and mask a permutation, the
inverse of the observed block, the hidden conditionals) is re-implemented here in PyTorch in its
own structure; its training step is forward, ``backward()`` and ``torch.optim.Adam``.

Routes, each timed for the estimate and for a jitted training step (value-and-grad of the mean
estimate plus one optax Adam update):

* ``low-rank``: :func:`mamjax.lml.lowrank_mpt` (latent posterior / Woodbury, every mask in one product);
* ``ordering``: :func:`mamjax.lml.ordering_mpt`, the general-Gaussian route (any covariance; one
  Cholesky per random ordering gives a mask of every size, so ``k`` orderings = ``k`` masks per size);
* ``low-rank mean`` / ``ordering mean``: :func:`mamjax.lml.lowrank_mpt_mean` /
  :func:`~mamjax.lml.ordering_mpt_mean`, the same masks and the batch mean of the two routes
  above from the batch's second moment (a Gaussian's mask score is a quadratic form, so its batch
  mean needs ``mean_n xc_n xc_n^T`` only). The official estimate and loss are batch means too, so
  these return what the official loop returns; the per-example routes return ``[N]`` estimates;
* ``full-cov mean``: :func:`mamjax.lml.gaussian_mpt_mean`, the batch mean for any covariance with
  independent masks (each mask factorised on its smaller side, hidden or observed), only where
  ``D <= 50``: its train step compiles for 1-1.3 min per cell at D = 200;
* ``full-cov``: :func:`mamjax.lml.gaussian_mpt` (one batched Cholesky per chunk of masks) and
  ``general``: :func:`mamjax.lml.cumulative_mpt` with :func:`mamjax.lml.mvn_conditional_logpdf`
  (per-mask Cholesky, the official algorithm), only where ``D * k <= 50`` (they are slow).

Timing: after one warm-up call (compilation excluded), the functions of one (D, k) cell run round
robin, ``reps`` rounds, each round as many calls as fill ~20 ms; medians per call. The official
loop gets fewer rounds where one call is long (``official reps`` column; a call over 2 s has its
warm-up call counted, PyTorch compiles nothing) to fit a shared machine. PyTorch runs on 2 threads
unless 1 thread is faster for the first cell of a D (``torch threads``): on a loaded machine 2
OpenMP threads can be 15x slower than 1, which would inflate every ratio.

Like for like: the official loop fed the masks a mamjax route draws must give that route's
estimate (``|official - ours|, same masks``, float32 rounding); with its own ``torch.randperm``
masks it must be within Monte Carlo error of the exact LML (``official own masks - LML`` against
the spread of the low-rank estimate over 8 keys). Without PyTorch the official columns say so.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import table
from mamjax import lml
from mamjax.lml import estimator as est
from mamjax.lml.ordering import ordering_masks, ordering_mpt

NOISE_VAR = 0.2
BETA = 1.0 / NOISE_VAR
N = 2000
SLOW_ROUTES_MAX_DK = 50
FULLCOV_MEAN_MAX_D = 50  # gaussian_mpt_mean's train step compiles for 1-1.3 min per cell at D = 200
LONG_CALL_S = 2.0  # an official call this long: its warm-up call is a sample, no agreement re-runs
ROUND_S = 0.02
OFFICIAL_GRAPH_MAX_FLOATS = 2e9  # 8 GB of float32 autograd graph: see official_backward_per_size
OFFICIAL_BUDGET_S = 12.0  # per official function and cell: fewer rounds when one call is long
ROUTES = ("low-rank", "low-rank mean", "ordering", "ordering mean", "full-cov mean", "full-cov", "general")


def _problem(d: int):
    w = jax.random.normal(jax.random.key(d), (d, 2), jnp.float32)
    x = lml.ppca_sample(jax.random.key(d + 1), w, NOISE_VAR, N)
    return w, x


def _estimate_fn(route: str, k: int):
    """``f(w, x, key) -> [N]`` estimates of one route."""
    if route == "low-rank":
        return lambda w, x, key: lml.lowrank_mpt(x, key, k, w, NOISE_VAR, exact=False).value
    if route == "ordering":
        return lambda w, x, key: ordering_mpt(x, key, k, jnp.zeros(w.shape[0], w.dtype), lml.ppca_cov(w, NOISE_VAR)).value
    if route == "full-cov":
        return lambda w, x, key: lml.gaussian_mpt(x, key, k, jnp.zeros(w.shape[0], w.dtype), lml.ppca_cov(w, NOISE_VAR),
                                                  exact=False).value
    if route == "full-cov mean":
        return lambda w, x, key: lml.gaussian_mpt_mean(x, key, k, jnp.zeros(w.shape[0], w.dtype),
                                                       lml.ppca_cov(w, NOISE_VAR), exact=False).value
    if route == "low-rank mean":
        return lambda w, x, key: lml.lowrank_mpt_mean(x, key, k, w, NOISE_VAR, exact=False).value
    if route == "ordering mean":
        return lambda w, x, key: lml.ordering_mpt_mean(x, key, k, jnp.zeros(w.shape[0], w.dtype),
                                                           lml.ppca_cov(w, NOISE_VAR)).value
    if route == "general":
        def f(w, x, key):
            cond = lml.mvn_conditional_logpdf(jnp.zeros(w.shape[0], w.dtype), lml.ppca_cov(w, NOISE_VAR))
            return lml.cumulative_mpt(cond, x, key, k, exact=False).value
        return f
    raise ValueError(f"`route` must be one of {ROUTES}; got {route!r}.")


def _route_masks(route: str, d: int, k: int, key) -> np.ndarray:
    """``[D, k, D] bool`` masks (row r hides r + 1) the route draws for ``key``."""
    if route == "ordering":
        return np.asarray(ordering_masks(key, d, k))
    plan, arrays = est.plan_arrays(d, k, None, None, False)
    return np.asarray(est.draw_masks(key, arrays[0], arrays[2], arrays[3]))


def _train_step(route: str, k: int):
    f = _estimate_fn(route, k)
    opt = optax.adam(1e-2)

    @jax.jit
    def step(w, opt_state, x, key):
        loss, g = jax.value_and_grad(lambda w: -jnp.mean(f(w, x, key)))(w)
        upd, opt_state = opt.update(g, opt_state, w)
        return optax.apply_updates(w, upd), opt_state, loss

    return step, opt


# ---------------------------------------------------------------- the official loop, in PyTorch

def official_size_terms(torch, x, w, beta: float, k: int, perms=None):
    """The official cumulative MPT's loop (sizes, then masks), one size's term at a time.

    For hidden count ``m = 1..D`` and each of ``k`` permutations (``torch.randperm``, or
    ``perms[m - 1, p]`` given), the first ``m`` permuted coordinates are predicted from the rest
    through ``inverse(S_OO)``; the hidden log densities are summed and divided by ``k m``. Yields
    each size's 0-d term (mean over examples, differentiable in ``w``); their sum is the estimate.
    """
    n, d = x.shape
    eye = torch.eye(d)
    for m in range(1, d + 1):
        per_example = x.new_zeros(n)
        for p in range(k):
            perm = torch.randperm(d) if perms is None else perms[m - 1, p]
            wp, xp = w[perm], x[:, perm]
            cov = wp @ wp.T + eye / beta
            s_hh, s_ho, s_oo = cov[:m, :m], cov[:m, m:], cov[m:, m:]
            gain = s_ho @ torch.inverse(s_oo)  # [m, D - m]
            mean = xp[:, m:] @ gain.T
            var = torch.diagonal(s_hh - gain @ s_ho.T)
            logp = -0.5 * (torch.log(var) + math.log(2 * math.pi) + (xp[:, :m] - mean) ** 2 / var)
            per_example = per_example + logp.sum(1)
        yield (per_example / (k * m)).sum() / n


def official_mpt(torch, x, w, beta: float, k: int, perms=None):
    """The official cumulative MPT (mean over examples): the sum of :func:`official_size_terms`."""
    total = x.new_zeros(())
    for term in official_size_terms(torch, x, w, beta, k, perms):
        total = total + term
    return total


def official_backward_per_size(n: int, d: int, k: int) -> bool:
    """Whether the official train step must backpropagate size by size to fit in memory.

    Its autograd graph keeps a few ``[N, D]`` tensors per mask: about ``5 N D^2 k`` floats for the
    whole cumulative score, over 20 GB at ``D = 200``, ``k = 20`` (the cell was killed for memory on
    a 24 GiB machine). Above ``OFFICIAL_GRAPH_MAX_FLOATS`` the step calls ``backward()`` once per
    size instead (the same gradient, accumulated, and the same forward and backward arithmetic; one
    size's graph alive at a time).
    """
    return 5 * n * d * d * k > OFFICIAL_GRAPH_MAX_FLOATS


def _perms(torch, masks: np.ndarray):
    """Our ``[D, k, D]`` masks as the official loop's permutations (hidden coordinates first)."""
    return torch.from_numpy(np.argsort(masks, axis=-1, kind="stable").astype(np.int64))


def official_train_step(torch, x, w, opt, k: int) -> float:
    """One official training step on ``-official_mpt``: ``backward()`` (per size where
    :func:`official_backward_per_size`) and ``opt.step()``; returns the loss."""
    opt.zero_grad()
    if official_backward_per_size(*x.shape, k):
        loss = 0.0
        for term in official_size_terms(torch, x, w, BETA, k):
            (-term).backward()
            loss -= term.item()
    else:
        loss = -official_mpt(torch, x, w, BETA, k)
        loss.backward()
        loss = loss.item()
    opt.step()
    return loss


def _official_fns(torch, w, x, k: int):
    xt = torch.from_numpy(np.array(x))
    wt = torch.nn.Parameter(torch.from_numpy(np.array(w)))
    opt = torch.optim.Adam([wt], lr=1e-2)

    def estimate():
        with torch.no_grad():
            return official_mpt(torch, xt, wt, BETA, k).item()

    def step():
        return official_train_step(torch, xt, wt, opt, k)

    def same_masks(masks):
        with torch.no_grad():
            return official_mpt(torch, xt, torch.from_numpy(np.array(w)), BETA, k, _perms(torch, masks)).item()

    return estimate, step, same_masks


def _torch():
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    return torch


# ---------------------------------------------------------------- timing

def _block(v):
    return jax.block_until_ready(v)


def interleaved_medians(fns: dict, reps: int = 5, budgets: dict | None = None) -> tuple[dict, dict]:
    """Median seconds per call of each ``fns[name]()`` over round-robin rounds (after one warm-up call).

    ``budgets[name]`` caps that function's rounds at ``budget / first call`` (at least 1); such a
    function's warm-up call counts as a round when it took over ``LONG_CALL_S`` (nothing to compile).
    Returns ``(medians, rounds)``.
    """
    calls, rounds, times = {}, {}, {name: [] for name in fns}
    for name, f in fns.items():
        t0 = time.perf_counter()
        _block(f())
        first = time.perf_counter() - t0
        calls[name] = max(1, math.ceil(ROUND_S / max(first, 1e-6)))
        cap = (budgets or {}).get(name)
        rounds[name] = reps if cap is None else int(min(reps, max(1, cap // max(first, 1e-9))))
        if cap is not None and first > LONG_CALL_S:
            times[name].append(first)
    for r in range(reps):
        for name, f in fns.items():
            if len(times[name]) >= rounds[name]:
                continue
            t0 = time.perf_counter()
            for _ in range(calls[name]):
                _block(f())
            times[name].append((time.perf_counter() - t0) / calls[name])
    return {n: statistics.median(t) for n, t in times.items()}, rounds


def _faster_threads(torch, fn) -> int:
    """1 or 2 PyTorch threads, whichever runs ``fn`` faster (each timed once after a warm call)."""
    best = {}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        fn()
        t0 = time.perf_counter()
        fn()
        best[threads] = time.perf_counter() - t0
    threads = min(best, key=best.get)
    torch.set_num_threads(threads)
    return threads


def _spread(route: str, w, x, k: int, keys: int = 8) -> float:
    f = jax.jit(_estimate_fn(route, k))
    vals = [float(jnp.mean(f(w, x, jax.random.key(100 + i)))) for i in range(keys)]
    return float(np.std(vals, ddof=1))


def measure(dims, ks, reps: int = 5, progress=None) -> tuple[list, list]:
    """Timing rows and agreement rows for every (D, k)."""
    torch = _torch()
    rows, checks = [], []
    for d in dims:
        w, x = _problem(d)
        truth = float(jnp.mean(lml.ppca_lml(x, w, NOISE_VAR)))
        threads = None if torch is None else _faster_threads(torch, _official_fns(torch, w, x, ks[0])[0])
        for k in ks:
            key = jax.random.key(0)
            routes = (list(ROUTES[:4]) + (["full-cov mean"] if d <= FULLCOV_MEAN_MAX_D else [])
                      + (list(ROUTES[5:]) if d * k <= SLOW_ROUTES_MAX_DK else []))
            fns, values = {}, {}
            for route in routes:
                f = jax.jit(_estimate_fn(route, k))
                step, opt = _train_step(route, k)
                state = opt.init(w)
                values[route] = float(jnp.mean(f(w, x, key)))
                fns[(route, "estimate")] = (lambda f=f: f(w, x, key))
                fns[(route, "step")] = (lambda step=step, state=state: step(w, state, x, key))
            budgets = {}
            if torch is not None:
                off_est, off_step, off_same = _official_fns(torch, w, x, k)
                fns[("official", "estimate")], fns[("official", "step")] = off_est, off_step
                budgets = {("official", "estimate"): OFFICIAL_BUDGET_S, ("official", "step"): OFFICIAL_BUDGET_S}
            med, rounds = interleaved_medians(fns, reps, budgets)
            off = (med.get(("official", "estimate")), med.get(("official", "step")))
            for route in routes:
                t_e, t_s = med[(route, "estimate")], med[(route, "step")]
                rows.append([d, k, route, f"{t_e * 1e3:,.2f}", f"{t_s * 1e3:,.2f}", _ms(off[0]), _ms(off[1]),
                             _ratio(off[0], t_e), _ratio(off[1], t_s),
                             "-" if torch is None else f"{rounds[('official', 'estimate')]}/{rounds[('official', 'step')]}",
                             "-" if torch is None else threads])
                print(rows[-1], flush=True)
            long = torch is not None and off[0] > LONG_CALL_S
            checks.append(_agreement(torch, d, k, w, x, key, truth, values,
                                     None if torch is None else off_same, long) + _mean_routes_agree(values))
            print(checks[-1], flush=True)
            if progress is not None:
                progress.update()
    return rows, checks


def _agreement(torch, d, k, w, x, key, truth, values, off_same, long: bool) -> list:
    sd = _spread("low-rank", w, x, k)
    row = [d, k, f"{values['low-rank'] - truth:+.3f}", f"{values['ordering'] - truth:+.3f}", f"{sd:.3f}"]
    if torch is None:
        return row + ["official: torch not installed"] * 3
    if long:
        return row + [f"not re-run (one official call > {LONG_CALL_S:g} s)"] * 3
    torch.manual_seed(d * 100 + k)
    own = _official_fns(torch, w, x, k)[0]()
    same = {r: abs(off_same(_route_masks(r, d, k, key)) - values[r]) for r in ("low-rank", "ordering")}
    return row + [f"{own - truth:+.3f} ({(own - truth) / sd:+.1f} sd)", f"{same['low-rank']:.1e}", f"{same['ordering']:.1e}"]


def _mean_routes_agree(values) -> list:
    """|batch-mean route - mean of its per-example route| (same masks): the moment form is exact."""
    full = ("-" if "full-cov mean" not in values or "full-cov" not in values
            else f"{abs(values['full-cov mean'] - values['full-cov']):.1e}")
    return [f"{abs(values['low-rank mean'] - values['low-rank']):.1e}",
            f"{abs(values['ordering mean'] - values['ordering']):.1e}", full]


def _ms(t) -> str:
    return "torch not installed" if t is None else f"{t * 1e3:,.1f}"


def _ratio(official, ours) -> str:
    return "-" if official is None else f"{official / ours:.1f}x"


TIMING_HEADERS = ["D", "masks/size", "route", "ours: estimate (ms)", "ours: train step (ms)",
                  "official: estimate (ms)", "official: train step (ms)", "estimate speed-up", "train-step speed-up",
                  "official reps (est/step)", "torch threads"]
CHECK_HEADERS = ["D", "masks/size", "low-rank - LML (nats)", "ordering - LML", "sd of low-rank over 8 keys",
                 "official own masks - LML", "|official - low-rank|, same masks", "|official - ordering|, same masks",
                 "|low-rank mean - low-rank|", "|ordering mean - ordering|", "|full-cov mean - full-cov|"]


def main(quick: bool = False, write: bool = False) -> str:
    from mamjax.progress import bar

    dims = (10, 50) if quick else (10, 50, 200)
    ks = (1, 5) if quick else (1, 5, 20)
    torch = _torch()
    load0 = os.getloadavg()
    with bar(total=len(dims) * len(ks), desc="lml_bench cells") as progress:
        rows, checks = measure(dims, ks, reps=3 if quick else 5, progress=progress)
    load1 = os.getloadavg()
    head = (f"Load average (1/5/15 min) at start {load0[0]:.1f}/{load0[1]:.1f}/{load0[2]:.1f}, at end "
            f"{load1[0]:.1f}/{load1[1]:.1f}/{load1[2]:.1f}, on {os.cpu_count()} CPUs; jax {jax.__version__}; "
            f"torch {torch.__version__ if torch else 'not installed'}; "
            f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.")
    caption = (f"PPCA N = {N}, K = 2, beta = 5, float32, every size 1..D with k masks per size; medians of "
               f"{3 if quick else 5} interleaved rounds, compilation excluded; speed-up = official / ours.")
    text = "\n\n".join([head, caption, table(TIMING_HEADERS, rows), "Like for like (mean over the N examples):",
                        table(CHECK_HEADERS, checks)])
    print(text)
    if write:
        _write(rows, checks, head, caption, quick)
    return text


def _write(rows, checks, head, caption, quick):
    from reproduce import common

    path = common.write_results(
        "lml_speed", title="Cumulative MPT speed: mamjax routes vs the official PyTorch loop, one interleaved run.",
        command="OPENBLAS_NUM_THREADS=1 python -m benchmarks.lml_bench --write" + (" --quick" if quick else ""),
        budget="one benchmark run, " + head, seeds=[0],
        tables=[common.table(caption, TIMING_HEADERS, rows),
                common.table("Like for like: estimates against the exact LML and against each other "
                             "(the official loop fed the masks each mamjax route drew).", CHECK_HEADERS, checks)],
        notes=["The official loop is re-implemented in PyTorch from pmorenoz/MPT-LML's exp_3_training_fig1.py "
               "(its structure, not its code); the machine is shared by several agents, so figures move between "
               "runs, the ratios within one run less so.",
               "Where 5 N D^2 k > OFFICIAL_GRAPH_MAX_FLOATS (here D = 200 with 20 masks per size) the official train "
               "step calls backward() once per size instead of once (the same gradient, accumulated): its one "
               "autograd graph needs over 20 GB there and the run was killed for memory on a 24 GiB machine."])
    print("wrote", path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--write", action="store_true", help="write results/lml_speed.json")
    a = ap.parse_args()
    main(quick=a.quick, write=a.write)
