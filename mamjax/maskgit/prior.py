"""Bidirectional transformer priors over the tokens, trained with the MaskGIT objective.

Two stages, as in TimeVQVAE: the low-frequency prior models ``codes_l [B, N_l]``;
the high-frequency prior models ``codes_h [B, N_h]`` given all of ``codes_l``
(it reads the concatenation ``[codes_l, codes_h + K_l]`` with the low band always
observed). Both are :class:`mamjax.nn.TransformerEncoder`, class-conditional with
the null class ``num_classes`` for classifier-free guidance.

MaskGIT objective (Chang et al., 2022): per sequence draw ``r ~ U(0, 1)``, hide
``ceil(gamma(r) M)`` of the ``M`` maskable tokens uniformly at random, and
minimize the cross-entropy of the hidden tokens (``positions="hidden"``, the MaskGIT
paper) or of every maskable token (``positions="all"``, the official TimeVQVAE / ESS loss:
the prior also learns to reproduce the tokens it sees, which the official critical
resampling relies on when it redraws every token); the label is replaced by the null
class with probability ``p_uncond``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from mamjax import masks as masks_lib
from mamjax import nn as nn_lib

Array = jax.Array
LogitsFn = Callable[[Array, Array, Array | None], Array]

__all__ = ["maskgit_mask", "maskgit_loss", "make_priors", "lf_logits_fn", "leave_one_out_batch_size",
           "lf_leave_one_out_fn", "hf_logits_fn", "prior_loss"]


def maskgit_mask(key: jax.Array, maskable: Array, schedule: str = "cosine") -> Array:
    """One MaskGIT training mask: ``ceil(gamma(r) M)`` (>= 1) of the maskable positions hidden.

    Args:
      key: PRNG key.
      maskable: ``[L] bool`` positions that may be hidden (M of them).

    Returns:
      ``[L] bool``, True = observed.
    """
    masks_lib.check_mask(maskable, "maskable")
    k_rate, k_perm = jax.random.split(key)
    m = jnp.sum(maskable)
    r = jax.random.uniform(k_rate)
    num_hidden = jnp.clip(jnp.ceil(masks_lib.get_schedule(schedule)(r) * m), 1, m).astype(jnp.int32)
    scores = jax.random.uniform(k_perm, maskable.shape) + jnp.where(maskable, 0.0, 2.0)
    ranks = jnp.argsort(jnp.argsort(scores))
    return ranks >= num_hidden


def maskgit_loss(logits_fn: LogitsFn, tokens: Array, targets: Array, key: jax.Array, *,
                 labels: Array | None = None, maskable: Array | None = None, schedule: str = "cosine",
                 p_uncond: float = 0.2, null_label: int | None = None,
                 positions: str = "hidden") -> tuple[Array, dict]:
    """Mean cross-entropy of the hidden (or all maskable) tokens under a random MaskGIT mask.

    Args:
      logits_fn: ``(tokens [B, L], mask [B, L], labels) -> [B, L, K]``.
      tokens: ``[B, L] int`` network input.
      targets: ``[B, L] int`` in [0, K) at maskable positions.
      key: PRNG key.
      labels: ``[B]`` or None; dropped to ``null_label`` with probability ``p_uncond``.
      maskable: ``[L] bool`` (default all).
      positions: ``"hidden"`` (loss on the hidden tokens) or ``"all"`` (on every maskable token,
        observed ones included, as the official TimeVQVAE code).

    Returns:
      ``(loss, {"acc": masked-token accuracy})``.
    """
    if positions not in ("hidden", "all"):
        raise ValueError(f"`positions` must be one of ['all', 'hidden']; got {positions!r}.")
    if masks_lib.is_concrete(targets) and masks_lib.is_concrete(tokens):
        k = jax.eval_shape(logits_fn, tokens, jnp.ones(tokens.shape, bool), labels).shape[-1]
        masks_lib.check_token_ids(targets, k, "targets")
    b, l = tokens.shape
    maskable = jnp.ones((l,), bool) if maskable is None else maskable
    k_mask, k_drop = jax.random.split(key)
    mask = jax.vmap(maskgit_mask, in_axes=(0, None, None))(jax.random.split(k_mask, b), maskable, schedule)
    if labels is not None and p_uncond > 0:
        if null_label is None:
            raise ValueError("`null_label` is required when `p_uncond` > 0 with labels.")
        labels = jnp.where(jax.random.uniform(k_drop, (b,)) < p_uncond, null_label, labels)
    logits = logits_fn(tokens, mask, labels)
    logp = jax.nn.log_softmax(logits, axis=-1)
    counted = ~mask if positions == "hidden" else jnp.broadcast_to(maskable, mask.shape)
    safe_targets = jnp.where(counted, targets, 0)
    nll = -jnp.take_along_axis(logp, safe_targets[..., None], axis=-1)[..., 0]
    hidden = (~mask).astype(jnp.float32)
    loss = jnp.sum(nll * counted) / jnp.sum(counted)
    acc = jnp.sum((jnp.argmax(logits, -1) == targets) * hidden) / jnp.sum(hidden)
    return loss, {"acc": acc}


def make_priors(num_codes: int, len_l: int, len_h: int, *, num_classes: int | None, dim: int = 64,
                depth: int = 2, num_heads: int = 4, dim_h: int | None = None, depth_h: int | None = None,
                rngs: nnx.Rngs) -> dict[str, nn_lib.TransformerEncoder]:
    """The two priors ``{"lf": ..., "hf": ...}`` (both bands share the codebook size K)."""
    lf = nn_lib.TransformerEncoder(num_codes, len_l, dim=dim, depth=depth, num_heads=num_heads,
                                   num_classes=num_classes, rngs=rngs)
    hf = nn_lib.TransformerEncoder(2 * num_codes, len_l + len_h, dim=dim_h or dim, depth=depth_h or depth,
                                   num_heads=num_heads, out_features=num_codes, num_classes=num_classes,
                                   rngs=rngs)
    return {"lf": lf, "hf": hf}


def lf_logits_fn(apply: Callable, params: Any) -> LogitsFn:
    """The low-band prior as ``logits_fn(codes_l, mask, labels) -> [B, N_l, K]``."""
    return lambda tokens, mask, labels: apply(params, tokens, mask, labels)


def leave_one_out_batch_size(seq_len: int, dim: int = 64) -> int | None:
    """Sequences per chunk of the critic's leave-one-out pass (``TransformerEncoder.leave_one_out``).

    On CPU a chunk holds about 6,144 x 64 activations per layer (``seq_len`` copies of ``seq_len + 1``
    tokens of width ``dim`` per sequence), which keeps it in cache: at width 64, 1.7-1.9x faster than
    one chunk at N_l = 16-19 and about even at 10-13 (``benchmarks/critic_bench.py``); at the official
    GunPoint prior (N_l = 45, width 256) one sequence per chunk is about 1.5x faster than 8. At least
    one sequence. None (one chunk) on accelerators, where the whole batch runs in parallel.
    """
    for name, v in (("seq_len", seq_len), ("dim", dim)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    if jax.default_backend() != "cpu":
        return None
    return max(1, 6144 * 64 // (seq_len * (seq_len + 1) * dim))


def lf_leave_one_out_fn(apply_loo: Callable, params: Any):
    """The low-band prior's leave-one-out pass (the critic's forward) as ``fn(codes_l, labels) -> [B, N_l, K]``.

    ``apply_loo`` is ``nn.functional(prior, method="leave_one_out")[0]``.
    """
    return lambda tokens, labels: apply_loo(params, tokens, labels)


def hf_logits_fn(apply: Callable, params: Any, codes_l: Array, num_codes: int) -> LogitsFn:
    """The high-band prior given ``codes_l [B, N_l]`` as ``logits_fn(codes_h, mask, labels) -> [B, N_h, K]``."""
    def fn(tokens, mask, labels):
        n_l = codes_l.shape[1]
        full = jnp.concatenate([codes_l, tokens + num_codes], axis=1)
        full_mask = jnp.concatenate([jnp.ones_like(codes_l, bool), mask], axis=1)
        return apply(params, full, full_mask, labels)[:, n_l:]
    return fn


def prior_loss(apply_l: Callable, apply_h: Callable, num_codes: int, params: dict, batch: dict, key: jax.Array,
               *, num_classes: int | None, p_uncond: float = 0.2, schedule: str = "cosine",
               positions: str = "hidden") -> tuple[Array, dict]:
    """Sum of the two stages' MaskGIT losses on ``batch = {"codes_l", "codes_h", "label"}`` (``positions``:
    see :func:`maskgit_loss`)."""
    k_l, k_h = jax.random.split(key)
    labels = batch.get("label") if num_classes is not None else None
    codes_l, codes_h = batch["codes_l"], batch["codes_h"]
    loss_l, m_l = maskgit_loss(lf_logits_fn(apply_l, params["lf"]), codes_l, codes_l, k_l, labels=labels,
                               schedule=schedule, p_uncond=p_uncond, null_label=num_classes, positions=positions)
    n_l = codes_l.shape[1]
    full = jnp.concatenate([codes_l, codes_h + num_codes], axis=1)
    targets = jnp.concatenate([jnp.zeros_like(codes_l), codes_h], axis=1)
    maskable = jnp.arange(full.shape[1]) >= n_l
    loss_h, m_h = maskgit_loss(lambda t, m, y: apply_h(params["hf"], t, m, y), full, targets, k_h,
                               labels=labels, maskable=maskable, schedule=schedule, p_uncond=p_uncond,
                               null_label=num_classes, positions=positions)
    return loss_l + loss_h, {"loss_l": loss_l, "loss_h": loss_h, "acc_l": m_l["acc"], "acc_h": m_h["acc"]}
