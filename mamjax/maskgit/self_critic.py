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

__all__ = ["leave_one_out_logits", "leave_one_out_argmax", "critic_log_probs", "critic_confidence_fn"]


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
    n = tokens.shape[1]
    copy_masks = ~jnp.eye(n, dtype=bool)  # row n hides position n only

    def one_copy(m):
        return logits_fn(tokens, jnp.broadcast_to(m, tokens.shape), labels)  # [B, N, K]

    logits = jax.vmap(one_copy, out_axes=1)(copy_masks)  # [B, N copies, N positions, K]
    return jnp.moveaxis(jnp.diagonal(logits, axis1=1, axis2=2), 1, 2)  # [B, N, K]


def leave_one_out_argmax(logits_fn: LogitsFn, tokens: Array, labels: Array | None,
                         leave_one_out_fn: LeaveOneOutFn | None = None) -> Array:
    """``a[b, n] = argmax_k logits_fn(s with n hidden)[b, n, k]``: ``[B, N] int32`` (see :func:`leave_one_out_logits`)."""
    return jnp.argmax(leave_one_out_logits(logits_fn, tokens, labels, leave_one_out_fn), axis=-1).astype(jnp.int32)


def critic_log_probs(logits_fn: LogitsFn, tokens: Array, labels: Array | None, codebook: Array,
                     leave_one_out_fn: LeaveOneOutFn | None = None) -> Array:
    """Log-probabilities of the self-Token-Critic over positions.

    ``log softmax_n(-||e(s_n) - e(a_n)||^2)`` with ``a`` from :func:`leave_one_out_argmax`.

    Args:
      tokens: ``[B, N] int`` full sequences.
      codebook: ``[K, d]`` codebook embeddings of the tokens.
      leave_one_out_fn: see :func:`leave_one_out_logits`.

    Returns:
      ``[B, N]`` (each row logsumexps to 0); higher = more realistic token.

    ``tokens`` must hold ids in ``[0, K)``: checked eagerly when concrete (a gather
    from the codebook would clamp them silently).
    """
    masks_lib.check_token_ids(tokens, codebook.shape[0], "tokens")
    pred = leave_one_out_argmax(logits_fn, tokens, labels, leave_one_out_fn)
    dist = jnp.sum((vq.lookup(tokens, codebook) - vq.lookup(pred, codebook)) ** 2, axis=-1)
    return jax.nn.log_softmax(-dist, axis=-1)


def critic_confidence_fn(logits_fn: LogitsFn, codebook: Array, leave_one_out_fn: LeaveOneOutFn | None = None):
    """The critic as a decoder ``confidence_fn(sampled, labels) -> [B, N]``."""
    return lambda sampled, labels: critic_log_probs(logits_fn, sampled, labels, codebook, leave_one_out_fn)
