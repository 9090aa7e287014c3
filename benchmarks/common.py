"""Small shared helpers for benchmark scripts: timing, peak FLOP/s, memory, tables."""

from __future__ import annotations

import resource
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp


def time_fn(fn: Callable[[], object], *, min_time: float = 1.0, min_reps: int = 3, warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` (its result blocked on), after ``warmup`` calls."""
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def flops_of(jitted, *args) -> float:
    """FLOPs XLA counts for one call of a jitted function (0 if the backend does not say)."""
    cost = jitted.lower(*args).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    return float((cost or {}).get("flops", 0.0))


def matmul_peak_gflops(n: int = 4096, min_time: float = 2.0) -> float:
    """Achieved GFLOP/s of an n x n float32 matmul under jit: the practical peak of this machine."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    return 2 * n**3 / time_fn(lambda: f(a, b), min_time=min_time) / 1e9


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats get 4 significant digits."""
    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
