"""Self-Token-Critic (Lee, Aune, Malacarne, 2023): the trained prior scores its own tokens.

For a full token sequence ``s`` of length ``N``, hide position ``n`` alone, take
the prior's arg-max ``a_n`` there and score ``-||e(s_n) - e(a_n)||^2`` in the
codebook embedding space; a softmax over positions gives the critic's
probabilities ``p_critic(n | s)``. No training: the critic is the prior.
The ``N`` singly-masked copies run as **one** batched forward pass: ``jax.vmap``
over the masks for any ``logits_fn``, or the model's own leave-one-out pass
(``leave_one_out_fn``, e.g. :meth:`mamjax.nn.TransformerEncoder.leave_one_out`,
which computes the same logits with about half the flops: it shares what the
copies have in common and evaluates the last block only at each copy's hidden
position).

``num_groups = G`` (optional, not in the official code) trades the exact critic for a cheaper one:
the positions are split into ``G`` interleaved groups (position n in group ``n mod G``), each
group is hidden at once in one copy, and each position is scored by the copy that hides its group:
``G`` sequence passes instead of ``N``. ``G = N`` is the exact critic; a smaller ``G`` gives each
prediction less context (``N - ceil(N / G)`` visible tokens instead of ``N - 1``), so its scores are
an approximation whose effect on the samples is measured, not assumed
(``benchmarks/maskgit_bench.py`` for the cost, ``reproduce.maskgit`` for FID / IS / CAS).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mamjax import masks as masks_lib
from mamjax.maskgit import vq

Array = jax.Array
LogitsFn = Callable[[Array, Array, Array | None], Array]
LeaveOneOutFn = Callable[[Array, Array | None], Array]

__all__ = ["leave_one_out_logits", "grouped_leave_out_logits", "leave_one_out_argmax", "critic_log_probs",
           "critic_confidence_fn"]


def leave_one_out_logits(logits_fn: LogitsFn, tokens: Array, labels: Array | None,
                         leave_one_out_fn: LeaveOneOutFn | None = None) -> Array:
    """``out[b, n] = logits_fn(s with only n hidden)[b, n]`` for every n, in one forward pass.

    Args:
      logits_fn: ``(tokens [B, N], mask [B, N], labels) -> [B, N, K]``.
      tokens: ``[B, N] int`` full sequences.
      labels: ``[B]`` or None.
      leave_one_out_fn: ``(tokens, labels) -> [B, N, K]`` computing the same thing
        (e.g. the prior's :meth:`~mamjax.nn.TransformerEncoder.leave_one_out`); None = vmap of ``logits_fn``
        over the ``N`` singly-masked copies.

    Returns:
      ``[B, N, K]``.
    """
    if leave_one_out_fn is not None:
        return leave_one_out_fn(tokens, labels)
    return grouped_leave_out_logits(logits_fn, tokens, labels, tokens.shape[1])  # N groups of one: copy n hides n


def check_num_groups(num_groups, seq_len: int) -> None:
    """``num_groups`` must be None or an int in ``[1, seq_len]``."""
    if num_groups is None:
        return
    if isinstance(num_groups, bool) or not isinstance(num_groups, int) or not 1 <= num_groups <= seq_len:
        raise ValueError(f"`num_groups` must be None (exact leave-one-out) or an int in [1, {seq_len}] "
                         f"(the sequence length); got {num_groups!r}.")


def grouped_leave_out_logits(logits_fn: LogitsFn, tokens: Array, labels: Array | None, num_groups: int) -> Array:
    """``out[b, n] = logits_fn(s with group n mod G hidden)[b, n]``: the critic's ``G``-pass approximation.

    Position ``n`` belongs to group ``n mod G``; copy ``g`` hides every position of group ``g`` (and
    only those), and each position takes its logits from the copy that hides it. The ``G`` copies
    run as one batched call (``jax.vmap``). ``G = N`` equals :func:`leave_one_out_logits`;
    ``G = 1`` is the prior's prediction with everything hidden.

    Args:
      logits_fn: ``(tokens [B, N], mask [B, N], labels) -> [B, N, K]`` (mask True = observed).
      tokens: ``[B, N] int`` full sequences.
      labels: ``[B]`` or None.
      num_groups: G in ``[1, N]`` (static).

    Returns:
      ``[B, N, K]``.
    """
    n = tokens.shape[1]
    check_num_groups(num_groups, n)
    group = jnp.arange(n) % num_groups
    copy_masks = group[None, :] != jnp.arange(num_groups)[:, None]  # [G, N]: row g hides group g

    def one_copy(m):
        return logits_fn(tokens, jnp.broadcast_to(m, tokens.shape), labels)  # [B, N, K]

    logits = jax.vmap(one_copy)(copy_masks)  # [G, B, N, K]
    picked = logits[group, :, jnp.arange(n)]  # [N, B, K]: position n from copy n mod G
    return jnp.moveaxis(picked, 0, 1)


def leave_one_out_argmax(logits_fn: LogitsFn, tokens: Array, labels: Array | None,
                         leave_one_out_fn: LeaveOneOutFn | None = None, num_groups: int | None = None) -> Array:
    """``a[b, n] = argmax_k logits_fn(s with n hidden)[b, n, k]``: ``[B, N] int32`` (see :func:`leave_one_out_logits`;
    ``num_groups``: the grouped approximation, :func:`grouped_leave_out_logits`)."""
    if num_groups is not None and num_groups < tokens.shape[1]:
        logits = grouped_leave_out_logits(logits_fn, tokens, labels, num_groups)
    else:
        check_num_groups(num_groups, tokens.shape[1])
        logits = leave_one_out_logits(logits_fn, tokens, labels, leave_one_out_fn)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def critic_log_probs(logits_fn: LogitsFn, tokens: Array, labels: Array | None, codebook: Array,
                     leave_one_out_fn: LeaveOneOutFn | None = None, num_groups: int | None = None) -> Array:
    """Log-probabilities of the self-Token-Critic over positions.

    ``log softmax_n(-||e(s_n) - e(a_n)||^2)`` with ``a`` from :func:`leave_one_out_argmax`.

    Args:
      tokens: ``[B, N] int`` full sequences.
      codebook: ``[K, d]`` codebook embeddings of the tokens.
      leave_one_out_fn: see :func:`leave_one_out_logits`.
      num_groups: None (default) or ``N``: the exact critic of the official code; ``G < N``: the
        ``G``-pass grouped approximation (:func:`grouped_leave_out_logits`; ``leave_one_out_fn`` unused).

    Returns:
      ``[B, N]`` (each row logsumexps to 0); higher = more realistic token.

    ``tokens`` must hold ids in ``[0, K)``: checked eagerly when concrete (a gather
    from the codebook would clamp them silently).
    """
    masks_lib.check_token_ids(tokens, codebook.shape[0], "tokens")
    pred = leave_one_out_argmax(logits_fn, tokens, labels, leave_one_out_fn, num_groups)
    dist = jnp.sum((vq.lookup(tokens, codebook) - vq.lookup(pred, codebook)) ** 2, axis=-1)
    return jax.nn.log_softmax(-dist, axis=-1)


def critic_confidence_fn(logits_fn: LogitsFn, codebook: Array, leave_one_out_fn: LeaveOneOutFn | None = None,
                         num_groups: int | None = None):
    """The critic as a decoder ``confidence_fn(sampled, labels) -> [B, N]``."""
    return lambda sampled, labels: critic_log_probs(logits_fn, sampled, labels, codebook, leave_one_out_fn,
                                                    num_groups)
