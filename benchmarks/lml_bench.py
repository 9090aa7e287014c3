"""Cumulative MPT estimator: one vmapped jit call vs Python loops over rates, and error vs time.

    python -m benchmarks.lml_bench            # D = 10, 50, 200  (~3-5 min on a shared 2-core CPU)
    python -m benchmarks.lml_bench --quick    # D = 10, 50

Model: PPCA (K = 2 latent, beta = 5) with closed-form conditionals, N = 100
examples sharing the masks, all D mask sizes, K masks per size. Three ways to
compute the same estimate from the same masks:

* ``vmapped``  — ``lml.cumulative_mpt``: one jitted call, vmapped over masks and sizes;
* ``loop/rate`` — ``lml.cumulative_mpt_loop``: a Python loop over the D sizes, each a
  jitted call vmapped over its K masks;
* ``loop/rate x mask`` — a Python loop over sizes and masks (one jitted call per
  mask), the structure of the paper's reference code (pmorenoz/MPT-LML, PyTorch).

Throughput is (masks x sizes) per second of wall-clock, compile excluded (median of
repeated calls). Error vs wall-clock: RMSE of the per-example estimate against the
exact PPCA LML, for growing K. The paper reports no timings; its figures use
D = 5..200 tokens and up to 300 permutations per size. The machine is shared (load
average printed); compare ratios within one run.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import table, time_fn
from mamjax import lml
from mamjax.lml import estimator


def _setup(d: int, n: int = 100):
    kw, kx = jax.random.split(jax.random.key(d))
    w = jax.random.normal(kw, (d, 2))
    x = lml.ppca_sample(kx, w, 0.2, n)
    return x, lml.ppca_cond_logpdf(w, 0.2), lml.ppca_lml(x, w, 0.2)


def _loop_rate_mask(cond, x, key, k):
    """Python loop over sizes and masks, as in the reference code (masks as ``cumulative_mpt`` draws them)."""
    d = x.shape[-1]
    sizes = np.arange(1, d + 1)
    plan = lml.mpt_masks(d, k, sizes, exact=False)
    sampled = estimator._sample_masks(key, d, jnp.asarray(plan.num_hidden), k)
    total = 0.0
    for r in range(d):
        acc = 0.0
        for j in range(k):
            acc = acc + estimator._weighted_score_jit(cond, x, sampled[r, j][None], jnp.ones((1,)))
        total = total + acc / k
    return total


def throughput(dims, k: int) -> tuple[str, list]:
    rows = []
    for d in dims:
        x, cond, _ = _setup(d)
        key = jax.random.key(0)
        f_vmap = lambda: lml.cumulative_mpt(cond, x, key, k, exact=False).value
        f_loop = lambda: lml.cumulative_mpt_loop(cond, x, key, k, exact=False).value
        f_ref = lambda: _loop_rate_mask(cond, x, key, k)
        np.testing.assert_allclose(f_vmap(), f_loop(), rtol=1e-4)
        np.testing.assert_allclose(f_vmap(), f_ref(), rtol=1e-4)
        t0 = time.perf_counter()
        jax.block_until_ready(lml.cumulative_mpt(cond, x, jax.random.key(1), k + 1, exact=False).value)
        compile_s = time.perf_counter() - t0
        t_v = time_fn(f_vmap, min_time=1.0)
        t_l = time_fn(f_loop, min_time=1.0)
        t_r = time_fn(f_ref, min_time=1.0, min_reps=2)
        work = d * k
        rows.append([d, k, work, f"{work / t_v:,.0f}", f"{work / t_l:,.0f}", f"{work / t_r:,.0f}",
                     f"{t_l / t_v:.1f}x", f"{t_r / t_v:.1f}x", f"{compile_s:.1f}"])
    hdr = ["D", "K masks/size", "masks x sizes", "vmapped (/s)", "loop/rate (/s)", "loop/rate x mask (/s)",
           "vmapped vs loop/rate", "vmapped vs loop/rate x mask", "first call incl. compile (s)"]
    return table(hdr, rows), rows


def error_vs_time(d: int, ks) -> str:
    x, cond, truth = _setup(d)
    rows = []
    for k in ks:
        keys = [jax.random.key(100 + s) for s in range(8)]
        vals = [lml.cumulative_mpt(cond, x, kk, k, exact=False) for kk in keys]
        rmse = float(jnp.sqrt(jnp.mean(jnp.stack([(v.value - truth) ** 2 for v in vals]))))
        se = float(jnp.sqrt(jnp.mean(jnp.stack([v.stderr**2 for v in vals]))))
        t_v = time_fn(lambda: lml.cumulative_mpt(cond, x, keys[0], k, exact=False).value, min_time=0.5)
        t_l = time_fn(lambda: lml.cumulative_mpt_loop(cond, x, keys[0], k, exact=False).value, min_time=0.5)
        rows.append([k, f"{rmse:.4f}", "n/a (K=1)" if not np.isfinite(se) else f"{se:.4f}", f"{1e3 * t_v:.2f}", f"{1e3 * t_l:.2f}"])
    hdr = ["K masks/size", "RMSE vs exact LML (nats/example)", "mean reported stderr", "vmapped (ms)",
           "loop/rate (ms)"]
    return f"Error vs wall-clock, PPCA D={d}, N=100 (8 seeds):\n\n" + table(hdr, rows)


def main(quick: bool = False) -> str:
    dims = (10, 50) if quick else (10, 50, 200)
    k = 4 if quick else 8
    load = os.getloadavg()[0]
    out = [f"Load average at start: {load:.1f} on {os.cpu_count()} CPUs; jax {jax.__version__}, "
           f"backend {jax.default_backend()}.", "",
           f"Throughput (masks x sizes per second), PPCA, N=100 examples sharing masks, all D sizes, K={k}:", ""]
    tab, _ = throughput(dims, k)
    out.append(tab)
    out.append("")
    out.append(error_vs_time(10, (1, 4, 16) if quick else (1, 4, 16, 64)))
    if not quick:
        out.append("")
        out.append(error_vs_time(50, (1, 4, 16)))
    out.append("")
    out.append("Paper (Moreno-Muñoz et al. 2023): no timings reported; convergence figure D=5, up to 300 "
               "permutations/size, 5 seeds; area figure D=200. Reference code: Python loops over sizes and "
               "permutations (PyTorch), the 'loop/rate x mask' column's structure.")
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    main(quick=ap.parse_args().quick)
