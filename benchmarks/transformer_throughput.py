"""Train-step throughput of the shared TransformerEncoder at two sizes.

Prints steps/s, tokens/s and achieved GFLOP/s (XLA's FLOP count of the step)
against the large-matmul peak measured in the same run.

    python benchmarks/transformer_throughput.py [--quick]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mamjax import masks, nn, train

try:
    from benchmarks import common
except ImportError:  # run as a script from the benchmarks folder
    import common

SIZES = {  # name: (seq_len, dim, depth, heads, batch)
    "small": (64, 128, 2, 4, 32),
    "medium": (196, 256, 4, 8, 32),
}


def _step_and_args(seq_len, dim, depth, heads, batch, vocab=32):
    apply, params = nn.functional(
        nn.TransformerEncoder(vocab, seq_len, dim=dim, depth=depth, num_heads=heads, rngs=nnx.Rngs(0)))

    def loss_fn(params, tokens, key):
        keys = jax.random.split(key, tokens.shape[0])
        mask = jax.vmap(masks.mask_by_rate, in_axes=(0, None, None))(keys, seq_len, 0.5)
        logp = jax.nn.log_softmax(apply(params, tokens, mask))
        nll = -jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]
        return jnp.sum(jnp.where(mask, 0.0, nll)) / jnp.maximum(jnp.sum(~mask), 1), {}

    opt = optax.adam(1e-3)
    step = train.make_train_step(loss_fn, opt, donate=False)
    state = train.TrainState.create(params, opt)
    tokens = jax.random.randint(jax.random.key(1), (batch, seq_len), 0, vocab)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    return step, (state, tokens, jax.random.key(2)), n_params


def main(quick: bool = False) -> str:
    min_time = 0.5 if quick else 2.0
    peak = common.matmul_peak_gflops(2048 if quick else 4096, min_time=min_time)
    rows = []
    for name, (seq_len, dim, depth, heads, batch) in SIZES.items():
        step, args, n_params = _step_and_args(seq_len, dim, depth, heads, batch)
        flops = common.flops_of(step, *args)
        sec = common.time_fn(lambda: step(*args), min_time=min_time)
        gflops = flops / sec / 1e9
        rows.append([name, f"L={seq_len} d={dim} depth={depth} B={batch}", n_params, 1 / sec,
                     batch * seq_len / sec, gflops, f"{100 * gflops / peak:.1f}%"])
    out = (f"## Transformer train-step throughput (backend: {jax.default_backend()}, "
           f"{jax.device_count()} device(s))\n\nMatmul peak measured in this run: {peak:.1f} GFLOP/s\n\n")
    out += common.table(["size", "shape", "params", "steps/s", "tokens/s", "GFLOP/s", "of peak"], rows)
    out += f"\n\npeak RSS: {common.peak_rss_mib():.0f} MiB\n"
    print(out)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    main(ap.parse_args().quick)
