"""The ARDM U-Net of the MaM paper's binarized-MNIST experiments, with the paper's marginal head.

Architecture (as the official ``ARM_UNet`` with ``ch_mult = [1]``, ``weave_attn = True``; written
from its description, not copied): one 28x28 resolution, ``ch`` = 256 channels, ``num_res_blocks``
= 4 DDPM residual blocks (GroupNorm(32) -> SiLU -> 3x3 conv, + a projection of the time embedding,
GroupNorm -> SiLU -> zero-initialised 3x3 conv, skip), each followed by single-head self-attention
over all H * W = 784 positions (through :func:`jax.nn.dot_product_attention`, so accelerators use
their fused kernels); a middle block (res, attention, res); an up path of ``num_res_blocks + 1``
residual blocks on the concatenated skips, each followed by attention; GroupNorm -> SiLU -> 3x3 conv
to K logits per pixel. The "time" is ``|S|``, the number of observed pixels, embedded sinusoidally
and by a 2-layer MLP. The input is the float image and the mask (3x3 conv, 3/4 of the channels)
plus a learned embedding of the pixel value (1/4 of the channels).

Marginal head (paper Sec. 6.1): a duplicate of the up path from the middle block's output (its own
parameters, reading the same skips), a 3x3 conv to one channel, and an MLP
784 -> 4096 -> 4096 -> 1 (GELU). Stage 2 trains only the marginal parameters: the params tree
splits into ``"shared"`` (encoder, middle, conditional decoder) and ``"marginal"`` (the duplicate
decoder and the MLP), see :func:`make_unet_pair`.

For the two-stage recipe of :mod:`mamjax.marginal.experiment` (whose networks each take their own
params), :func:`make_unet_nets` builds the U-Net as :class:`~mamjax.marginal.experiment.Nets`: the
conditional network reads the shared trunk, the marginal network a frozen copy of it (under
``stop_gradient``) plus its own head; :func:`tie_shared` copies the trained trunk into the marginal
network's params between the stages.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from mamjax import nn as nn_lib

Array = jax.Array
PRNGKey = jax.Array

__all__ = ["UNetTrunk", "MarginalHead", "make_unet_pair", "make_unet_nets", "tie_shared", "timestep_embedding"]


def timestep_embedding(t: Array, dim: int, max_positions: float = 10000.0) -> Array:
    """Sinusoidal embedding of ``t [B]`` -> ``[B, dim]`` (DDPM / ARDM convention)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_positions) * jnp.arange(half, dtype=jnp.float32) / (half - 1))
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def _conv(cin, cout, rngs, zero=False):
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.variance_scaling(1.0, "fan_avg", "uniform")
    return nnx.Conv(cin, cout, (3, 3), padding="SAME", kernel_init=init, rngs=rngs)


class _ResBlock(nnx.Module):
    def __init__(self, cin: int, cout: int, temb_dim: int, rngs: nnx.Rngs):
        self.n0 = nnx.GroupNorm(cin, num_groups=32, epsilon=1e-6, rngs=rngs)
        self.c0 = _conv(cin, cout, rngs)
        self.t = nnx.Linear(temb_dim, cout, rngs=rngs)
        self.n1 = nnx.GroupNorm(cout, num_groups=32, epsilon=1e-6, rngs=rngs)
        self.c1 = _conv(cout, cout, rngs, zero=True)
        self.skip = nnx.Linear(cin, cout, rngs=rngs) if cin != cout else None

    def __call__(self, x: Array, temb: Array) -> Array:
        h = self.c0(jax.nn.silu(self.n0(x)))
        h = h + self.t(jax.nn.silu(temb))[:, None, None, :]
        h = self.c1(jax.nn.silu(self.n1(h)))
        return (x if self.skip is None else self.skip(x)) + h


class _Attention(nnx.Module):
    """Single-head self-attention over all positions, residual, zero-initialised output."""

    def __init__(self, ch: int, rngs: nnx.Rngs):
        self.norm = nnx.GroupNorm(ch, num_groups=32, epsilon=1e-6, rngs=rngs)
        self.qkv = nnx.Linear(ch, 3 * ch, rngs=rngs)
        self.out = nnx.Linear(ch, ch, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, x: Array) -> Array:
        b, h, w, c = x.shape
        q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 1, 3 * c), 3, axis=-1)
        a = jax.nn.dot_product_attention(q, k, v)  # [B, HW, 1, C]
        return x + self.out(a.reshape(b, h, w, c))


def _block(res: _ResBlock, attn: _Attention, h: Array, temb: Array) -> Array:
    return attn(res(h, temb))


# Rematerialised block: the backward pass recomputes its activations instead of storing them. JAX
# then saves 0.42 instead of 1.82 GiB of residuals (64 ch, 2 blocks, batch 32), but XLA's CPU
# backend does not turn that into a smaller compiled footprint (2.13 GiB of temporaries either way;
# jax-ml/jax#19822, open): the saving is for accelerator backends, unmeasured here.
_block_remat = nnx.remat(_block)


def _run_block(remat: bool, res, attn, h, temb):
    return (_block_remat if remat else _block)(res, attn, h, temb)


class _Decoder(nnx.Module):
    def __init__(self, ch: int, num_blocks: int, temb_dim: int, out_ch: int, rngs: nnx.Rngs, remat: bool = False):
        self.remat = remat
        self.res = nnx.List([_ResBlock(2 * ch, ch, temb_dim, rngs) for _ in range(num_blocks + 1)])
        self.attn = nnx.List([_Attention(ch, rngs) for _ in range(num_blocks + 1)])
        self.norm = nnx.GroupNorm(ch, num_groups=32, epsilon=1e-6, rngs=rngs)
        self.conv = _conv(ch, out_ch, rngs, zero=True)

    def __call__(self, h: Array, skips: list, temb: Array) -> Array:
        skips = list(skips)
        for res, attn in zip(self.res, self.attn):
            h = _run_block(self.remat, res, attn, jnp.concatenate([h, skips.pop()], axis=-1), temb)
        return self.conv(jax.nn.silu(self.norm(h)))


class UNetTrunk(nnx.Module):
    """Encoder, middle block and conditional decoder of the ARDM U-Net (the paper's stage-1 network).

    Call: ``(x [B, D] int, mask [B, D] bool) -> logits [B, D, K]`` with ``D = side * side``;
    :meth:`encode` returns what the marginal head reads. ``remat=True`` rematerialises every
    residual + attention block in the backward pass (``nnx.remat``): same values and gradients,
    only the blocks' inputs saved as residuals, one extra forward pass of compute (on XLA's CPU
    backend the compiled memory does not shrink; see ``_block_remat``).
    """

    def __init__(self, side: int = 28, num_classes: int = 2, ch: int = 256, num_res_blocks: int = 4,
                 max_time: float = 1000.0, *, rngs: nnx.Rngs, remat: bool = False):
        if ch % 32:
            raise ValueError(f"`ch` must be a multiple of 32 (GroupNorm groups); got {ch!r}.")
        self.side, self.num_classes, self.ch, self.max_time, self.remat = side, num_classes, ch, max_time, remat
        temb_dim = 4 * ch
        self.t0, self.t1 = nnx.Linear(ch, temb_dim, rngs=rngs), nnx.Linear(temb_dim, temb_dim, rngs=rngs)
        self.inp = _conv(2, ch * 3 // 4, rngs)
        self.embed = nnx.Embed(num_classes, ch // 4, rngs=rngs)
        self.down = nnx.List([_ResBlock(ch, ch, temb_dim, rngs) for _ in range(num_res_blocks)])
        self.down_attn = nnx.List([_Attention(ch, rngs) for _ in range(num_res_blocks)])
        self.mid = nnx.List([_ResBlock(ch, ch, temb_dim, rngs), _ResBlock(ch, ch, temb_dim, rngs)])
        self.mid_attn = _Attention(ch, rngs)
        self.cond_decoder = _Decoder(ch, num_res_blocks, temb_dim, num_classes, rngs, remat)

    def encode(self, x: Array, mask: Array) -> tuple[Array, list, Array]:
        """``(h [B, s, s, ch], skips, temb [B, 4 ch])``: the middle block's output, the skips, the |S| embedding."""
        b, d = x.shape
        s = self.side
        if d != s * s:
            raise ValueError(f"`x` must have D = {s * s} positions; got shape {x.shape}.")
        xo = jnp.where(mask, x, 0).astype(jnp.int32)
        t = jnp.sum(mask, axis=-1)
        temb = self.t1(jax.nn.silu(self.t0(timestep_embedding(t, self.ch, self.max_time))))
        xf = jnp.where(mask, 2.0 * xo / max(self.num_classes - 1, 1) - 1.0, 0.0)
        img = jnp.stack([xf, mask.astype(jnp.float32)], -1).reshape(b, s, s, 2)
        h = jnp.concatenate([self.inp(img), self.embed(xo).reshape(b, s, s, -1)], axis=-1)
        skips = [h]
        for res, attn in zip(self.down, self.down_attn):
            h = _run_block(self.remat, res, attn, h, temb)
            skips.append(h)
        h = self.mid[1](self.mid_attn(self.mid[0](h, temb)), temb)
        return h, skips, temb

    def __call__(self, x: Array, mask: Array) -> Array:
        h, skips, temb = self.encode(x, mask)
        return self.cond_decoder(h, skips, temb).reshape(*x.shape, self.num_classes)


class MarginalHead(nnx.Module):
    """The paper's marginal head: a duplicate decoder path to one channel, then MLP D -> H -> H -> 1 (GELU)."""

    def __init__(self, side: int = 28, ch: int = 256, num_res_blocks: int = 4, marg_hidden: int = 4096, *,
                 rngs: nnx.Rngs, remat: bool = False):
        self.decoder = _Decoder(ch, num_res_blocks, 4 * ch, 1, rngs, remat)
        self.mlp = nn_lib.MLP(side * side, [marg_hidden, marg_hidden], 1, activation="gelu", rngs=rngs)

    def __call__(self, h: Array, skips: list, temb: Array) -> Array:
        return self.mlp(self.decoder(h, skips, temb).reshape(h.shape[0], -1))[:, 0]


def _build(key: PRNGKey, side: int, num_classes: int, ch: int, num_res_blocks: int, marg_hidden: int,
           remat: bool = False):
    if not isinstance(side, int) or side < 1:
        raise ValueError(f"`side` must be a positive int; got {side!r}.")
    if not isinstance(num_res_blocks, int) or num_res_blocks < 1:
        raise ValueError(f"`num_res_blocks` must be a positive int; got {num_res_blocks!r}.")
    k_t, k_h = jax.random.split(key)
    if not isinstance(remat, bool):
        raise ValueError(f"`remat` must be a bool; got {remat!r}.")
    trunk_def, trunk = nnx.split(UNetTrunk(side, num_classes, ch, num_res_blocks, rngs=nnx.Rngs(params=k_t),
                                           remat=remat))
    head_def, head = nnx.split(MarginalHead(side, ch, num_res_blocks, marg_hidden, rngs=nnx.Rngs(params=k_h),
                                            remat=remat))

    def cond_apply(shared, x, mask):
        return nnx.merge(trunk_def, shared)(x, mask)

    def marg_from(shared, head_params, x, mask):
        return nnx.merge(head_def, head_params)(*nnx.merge(trunk_def, shared).encode(x, mask))

    return cond_apply, marg_from, trunk, head


def make_unet_pair(key: PRNGKey, side: int = 28, num_classes: int = 2, *, ch: int = 256, num_res_blocks: int = 4,
                   marg_hidden: int = 4096, remat: bool = False) -> tuple[Callable, Callable, dict]:
    """The U-Net as the conditional and the marginal network of a MaM, sharing the encoder.

    Returns:
      ``(cond_apply, marg_apply, params)`` with ``params = {"shared": ..., "marginal": ...}``;
      ``cond_apply(params, x [B, D], mask [B, D]) -> [B, D, K]`` reads ``params["shared"]`` and
      ``marg_apply(params, x, mask) -> [B]`` reads both. Stage 1 trains ``"shared"``; stage 2 trains
      ``"marginal"`` only (freeze ``"shared"`` with ``optax.multi_transform``), as the paper.
    """
    cond, marg_from, trunk, head = _build(key, side, num_classes, ch, num_res_blocks, marg_hidden, remat)

    def cond_apply(params, x, mask):
        return cond(params["shared"], x, mask)

    def marg_apply(params, x, mask):
        return marg_from(params["shared"], params["marginal"], x, mask)

    return cond_apply, marg_apply, {"shared": trunk, "marginal": head}


def make_unet_nets(key: PRNGKey, side: int = 28, num_classes: int = 2, *, ch: int = 256, num_res_blocks: int = 4,
                   marg_hidden: int = 4096, remat: bool = False):
    """The U-Net pair as :class:`mamjax.marginal.experiment.Nets` for ``arm_stage`` / ``mam_stage``.

    ``params = {"conditional": trunk, "marginal": {"shared": trunk copy, "head": head}}``. The
    marginal network reads its trunk copy under ``stop_gradient``, so stage 2 (which trains
    ``params["marginal"]``) moves only the head, as the paper's stage 2 trains only the ``marg*``
    parameters; call :func:`tie_shared` after stage 1 so that the copy is the trained trunk.
    """
    from mamjax.marginal.experiment import Nets  # experiment does not import this module: no cycle

    cond, marg_from, trunk, head = _build(key, side, num_classes, ch, num_res_blocks, marg_hidden, remat)

    def marg_apply(mp, x, mask):
        return marg_from(jax.lax.stop_gradient(mp["shared"]), mp["head"], x, mask)

    marg_apply.num_classes = num_classes  # read by log_marginal's eager value check
    copy = jax.tree.map(jnp.copy, trunk)
    return Nets(marg_apply, cond, {"conditional": trunk, "marginal": {"shared": copy, "head": head}}, side * side,
                num_classes)


def tie_shared(params: dict) -> dict:
    """``params`` of :func:`make_unet_nets` with the marginal network's trunk set to (a copy of) the conditional's."""
    marg = dict(params["marginal"], shared=jax.tree.map(jnp.copy, params["conditional"]))
    return dict(params, marginal=marg)
