"""Cumulative MPT: mamjax's routes vs the official PyTorch loop (pmorenoz/MPT-LML), estimate and training step.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.lml_bench           # D = 10, 50, 200; masks/rate 1, 5, 20
    OPENBLAS_NUM_THREADS=1 python -m benchmarks.lml_bench --quick   # D = 10, 50; masks/rate 1, 5

Problem (the issue-20 protocol): PPCA, N = 2000 examples sharing the masks, K = 2 latents, beta = 5
(noise variance 0.2), float32, every mask size 1..D with ``k`` random masks per size.

Routes timed here, same masks for the same key:

* ``low-rank``: :func:`mamjax.lml.lowrank_mpt` (latent posterior / Woodbury, every mask in one
  matrix product, LAPACK-free K x K inverse);
* ``full-cov``: :func:`mamjax.lml.gaussian_mpt` (any covariance: one batched Cholesky per chunk of
  masks, every conditional mean in one matrix product);
* ``general``: :func:`mamjax.lml.cumulative_mpt` with :func:`mamjax.lml.mvn_conditional_logpdf`
  (one D x D Cholesky and two solves per mask, the official code's algorithm).

The two full-covariance routes run only where ``D * k <= 1000``.

A training step is value-and-grad of the mean estimate plus one Adam update, jitted. PyTorch is
not a dependency: the official figures are the issue's stored measurements (medians of 5, 2
threads, interleaved in one run on a quiet machine, 2026-12-01), so ratios mix two runs; this
machine is shared (load average printed). Set ``OPENBLAS_NUM_THREADS=1`` before starting: jaxlib's
CPU LAPACK calls (the general route) use scipy's OpenBLAS, whose own threads oversubscribe XLA's.
"""

from __future__ import annotations

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks.common import table, time_fn
from mamjax import lml

# Official loop (pmorenoz/MPT-LML, PyTorch CPU, 2 threads), estimate only, seconds; issue 20's
# table, measured 2026-12-01. Training-step figures were stored only as ratios, so none here.
OFFICIAL_ESTIMATE_S = {
    (10, 1): 6.4e-3, (10, 5): 35e-3, (10, 20): 142e-3,
    (50, 1): 74e-3, (50, 5): 403e-3, (50, 20): 1.190,
    (200, 1): 1.10, (200, 5): 5.19, (200, 20): 21.5,
}
NOISE_VAR = 0.2
N = 2000


def _problem(d: int):
    w = jax.random.normal(jax.random.key(d), (d, 2), jnp.float32)
    x = lml.ppca_sample(jax.random.key(d + 1), w, NOISE_VAR, N)
    return w, x


def _estimate_fn(route: str, k: int):
    if route == "low-rank":
        return lambda w, x, key: lml.lowrank_mpt(x, key, k, w, NOISE_VAR, exact=False).value
    if route == "full-cov":
        return lambda w, x, key: lml.gaussian_mpt(x, key, k, jnp.zeros(w.shape[0], w.dtype), lml.ppca_cov(w, NOISE_VAR),
                                                  exact=False).value
    if route == "general":
        def f(w, x, key):
            cond = lml.mvn_conditional_logpdf(jnp.zeros(w.shape[0], w.dtype), lml.ppca_cov(w, NOISE_VAR))
            return lml.cumulative_mpt(cond, x, key, k, exact=False).value
        return f
    raise ValueError(f"`route` must be 'low-rank', 'full-cov' or 'general'; got {route!r}.")


def _train_step(route: str, k: int):
    est = _estimate_fn(route, k)
    opt = optax.adam(1e-2)

    @jax.jit
    def step(w, opt_state, x, key):
        loss, g = jax.value_and_grad(lambda w: -jnp.mean(est(w, x, key)))(w)
        upd, opt_state = opt.update(g, opt_state, w)
        return optax.apply_updates(w, upd), opt_state, loss

    return step, opt


def _ratio(official, ours) -> str:
    return "-" if official is None else f"{official / ours:.1f}x"


def measure(dims, ks, min_time: float = 0.5) -> list[list]:
    rows = []
    for d in dims:
        w, x = _problem(d)
        truth = float(jnp.mean(lml.ppca_lml(x, w, NOISE_VAR)))
        for k in ks:
            off = OFFICIAL_ESTIMATE_S.get((d, k))
            for route in ("low-rank", "full-cov", "general"):
                if route != "low-rank" and d * k > 1000:
                    rows.append([d, k, route, "not run (D x masks > 1000)", "-", "-", "-", "-", off and f"{off * 1e3:,.1f}"])
                    continue
                f = jax.jit(_estimate_fn(route, k))
                key = jax.random.key(0)
                val = float(jnp.mean(f(w, x, key)))
                t_est = time_fn(lambda: f(w, x, key), min_time=min_time)
                step, opt = _train_step(route, k)
                state = opt.init(w)
                t_step = time_fn(lambda: step(w, state, x, key), min_time=min_time)
                rows.append([d, k, route, f"{t_est * 1e3:,.2f}", f"{t_step * 1e3:,.2f}", f"{t_step / t_est:.1f}",
                             f"{val - truth:+.3f}", _ratio(off, t_est), "-" if off is None else f"{off * 1e3:,.1f}"])
                print(rows[-1], flush=True)
    return rows


def main(quick: bool = False) -> str:
    dims = (10, 50) if quick else (10, 50, 200)
    ks = (1, 5) if quick else (1, 5, 20)
    load = os.getloadavg()[0]
    head = (f"Load average at start: {load:.1f} on {os.cpu_count()} CPUs; jax {jax.__version__}; "
            f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}.\n\n"
            f"PPCA N={N}, K=2, beta=5, float32, all D sizes, k masks per size (medians, compile excluded):\n")
    rows = measure(dims, ks, min_time=0.3 if quick else 0.5)
    hdr = ["D", "masks/size", "route", "estimate (ms)", "train step (ms)", "step / estimate",
           "mean estimate - LML (nats)", "official / ours (estimate)", "official estimate (ms, stored)"]
    text = head + "\n" + table(hdr, rows) + (
        "\n\nOfficial figures: issue 20's stored PyTorch measurements (2026-12-01), not re-run here "
        "(PyTorch absent); its training-step times were stored only as ratios, so the step column has no "
        "official counterpart.")
    print(text)
    return text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
