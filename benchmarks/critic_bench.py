"""Benchmark: the self-Token-Critic's forward pass (the prior's logits at every position with it alone hidden).

Three ways to get the ``N`` singly-masked predictions of a class-conditional MaskGIT prior (the
maskgit pipeline's size: 64-d, 2 layers, 4 heads, 32 codes) on a batch of full sequences, timed in
one run: ``vmap`` of the plain forward over the ``N`` masked copies (what the issue asks for: one
batched pass), ``TransformerEncoder.leave_one_out`` in one chunk (block 1 shares LayerNorm / QKV
across the copies, the last block computes only each copy's hidden query) and in the chunks
``prior.leave_one_out_batch_size`` picks on CPU. Ratios are against one plain forward of the batch;
the largest deviation of each from the vmap reference is printed beside it.

    python -m benchmarks.run [--quick] critic_bench
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from benchmarks import common
from mamjax import nn as nn_lib
from mamjax.maskgit import prior as prior_lib
from mamjax.maskgit import self_critic


def main(quick: bool = False) -> str:
    lengths, batch, min_time = ((10, 13), 32, 0.3) if quick else ((10, 13, 16, 19), 128, 1.5)
    rows = []
    for n in lengths:
        model = nn_lib.TransformerEncoder(32, n, dim=64, depth=2, num_heads=4, num_classes=3, rngs=nnx.Rngs(n))
        apply, params = nn_lib.functional(model)
        loo, _ = nn_lib.functional(model, method="leave_one_out")
        tokens = jax.random.randint(jax.random.key(0), (batch, n), 0, 32)
        labels = jax.random.randint(jax.random.key(1), (batch,), 0, 3)
        chunk = prior_lib.leave_one_out_batch_size(n)
        fns = {
            "one forward": jax.jit(lambda p, t: apply(p, t, jnp.ones_like(t, bool), labels)),
            "vmap": jax.jit(lambda p, t: self_critic.leave_one_out_logits(
                lambda tt, m, y: apply(p, tt, m, y), t, labels)),
            "loo": jax.jit(lambda p, t: loo(p, t, labels)),
            "loo chunked": jax.jit(lambda p, t: loo(p, t, labels, batch_size=chunk)),
        }
        ref = fns["vmap"](params, tokens)
        ms = {k: 1e3 * common.time_fn(lambda f=f: f(params, tokens), min_time=min_time) for k, f in fns.items()}
        dev = max(float(jnp.max(jnp.abs(fns[k](params, tokens) - ref))) for k in ("loo", "loo chunked"))
        one = ms["one forward"]
        rows.append([n, batch, chunk, one, ms["vmap"], ms["loo"], ms["loo chunked"], f"{ms['vmap'] / one:.1f}x",
                     f"{ms['loo'] / one:.1f}x", f"{ms['loo chunked'] / one:.1f}x",
                     f"{ms['vmap'] / ms['loo chunked']:.2f}x", f"{dev:.1e}"])
    out = common.table(["N", "batch", "chunk", "forward ms", "vmap ms", "loo ms", "loo chunked ms", "vmap / fwd",
                         "loo / fwd", "chunked / fwd", "vmap / chunked", "max |diff|"], rows)
    print(out)
    return out


if __name__ == "__main__":
    main()
