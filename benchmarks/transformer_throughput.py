"""Train-step throughput of the shared TransformerEncoder at two sizes.

Prints steps/s, tokens/s and achieved GFLOP/s (XLA's FLOP count of the step)
against the large-matmul peak measured in the same run; with ``--flops``, the
compiled FLOPs of one train step at larger sizes (abstract shapes: nothing is
allocated or run) and the step time they predict at stated accelerator peaks.

    python benchmarks/transformer_throughput.py [--quick] [--flops]
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


def _step_and_args(seq_len, dim, depth, heads, batch, vocab=32, abstract=False):
    make = lambda: nn.TransformerEncoder(vocab, seq_len, dim=dim, depth=depth, num_heads=heads, rngs=nnx.Rngs(0))
    apply, params = nn.functional(nnx.eval_shape(make) if abstract else make())

    def loss_fn(params, tokens, key):
        keys = jax.random.split(key, tokens.shape[0])
        mask = jax.vmap(masks.mask_by_rate, in_axes=(0, None, None))(keys, seq_len, 0.5)
        logp = jax.nn.log_softmax(apply(params, tokens, mask))
        nll = -jnp.take_along_axis(logp, tokens[..., None], -1)[..., 0]
        return jnp.sum(jnp.where(mask, 0.0, nll)) / jnp.maximum(jnp.sum(~mask), 1), {}

    opt = optax.adam(1e-3)
    step = train.make_train_step(loss_fn, opt, donate=False)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    if abstract:
        state = jax.eval_shape(lambda p: train.TrainState.create(p, opt), params)
        return step, (state, jax.ShapeDtypeStruct((batch, seq_len), jnp.int32), jax.random.key(2)), n_params
    state = train.TrainState.create(params, opt)
    tokens = jax.random.randint(jax.random.key(1), (batch, seq_len), 0, vocab)
    return step, (state, tokens, jax.random.key(2)), n_params


# Larger configurations for the FLOP count: name -> (what, vocab, seq_len, dim, depth, heads, batch).
FLOP_SIZES = {
    "ucr-prior": ("the size of maskgit_ucr's official-variant prior: 190 tokens, 256 wide, 4 layers, batch 256",
                  64, 190, 256, 4, 2, 256),
    "pixels-28": ("a pixel transformer over 28x28 binary MNIST: 784 tokens, 512 wide, 2 layers, batch 24",
                  2, 784, 512, 2, 4, 24),
    "large": ("24 layers, 768 wide, 8 heads, 256 tokens, vocab 1024, batch 256", 1024, 256, 768, 24, 8, 256),
}
PEAKS_TFLOPS = {"H100 SXM bf16 dense": 989.0, "TPU v5e bf16": 197.0}  # vendors' spec-sheet peaks
FLOP_COLUMNS = ["config", "what", "params", "XLA GFLOP/step", "analytic GFLOP/step (3x forward)",
                *[f"predicted ms/step at {k} peak ({v:.0f} TFLOP/s)" for k, v in PEAKS_TFLOPS.items()]]


def analytic_train_flops(vocab, seq_len, dim, depth, heads, batch, mlp_ratio=4) -> float:
    """3 x the forward matmul FLOPs: ``2 B L (depth (4 d^2 + 2 r d^2) + d V) + 4 B L^2 d depth``."""
    del heads
    fwd = 2 * batch * seq_len * (depth * (4 + 2 * mlp_ratio) * dim**2 + dim * vocab)
    fwd += 4 * batch * seq_len**2 * dim * depth
    return 3.0 * fwd


def flops_rows(names=None) -> list[list]:
    """One row per :data:`FLOP_SIZES` entry (or per name of ``names``): XLA's count of the compiled
    step, the analytic one, and the predicted step times."""
    rows = []
    for name in names or list(FLOP_SIZES):
        what, vocab, seq_len, dim, depth, heads, batch = FLOP_SIZES[name]
        step, args, n_params = _step_and_args(seq_len, dim, depth, heads, batch, vocab=vocab, abstract=True)
        flops = common.flops_of(step, *args)
        rows.append([name, what, n_params, flops / 1e9,
                     analytic_train_flops(vocab, seq_len, dim, depth, heads, batch) / 1e9,
                     *[1e3 * flops / (peak * 1e12) for peak in PEAKS_TFLOPS.values()]])
    return rows


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
    ap.add_argument("--flops", action="store_true", help="only the FLOP table of the larger sizes")
    a = ap.parse_args()
    if a.flops:
        print("No accelerator here: predicted times are FLOPs / peak.\n")
        print(common.table(FLOP_COLUMNS, flops_rows()))
    else:
        main(a.quick)
