"""Enhanced sampling scheme (ESS; Lee, Aune, Malacarne, arXiv:2309.07945).

``ess_decode`` = naive MaskGIT decoding -> **critical reverse sampling** (walk the
schedule backwards from the full sample, re-masking the tokens the
self-Token-Critic finds least likely, and stop at ``t*`` where the moving
average of the error ratio exceeds one) -> **critical resampling** (decode
forward again from step ``t*`` with the critic as the confidence that decides
which tokens are kept). The reverse walk follows the official TimeVQVAE code
(``critical_reverse_sampling``): the error at step ``t`` is the mean squared
codebook distance, over the tokens revealed at ``t``, between the sample and
the prior's arg-max given the sample masked as at step ``t - 1``; the ratio is
``err_t / (err_{t+1} + 1e-5)``, averaged over the last ``round(T * ma_rate)``
ratios. As in the official code the error is averaged over the batch and one ``t*``
serves the whole batch (``per_sequence=False``, the default: the resampling loop
then runs only ``T - t*`` steps); ``per_sequence=True`` gives each sequence its own
``t*`` (the loop then runs from the smallest one).

Cost, in prior calls on a batch: naive decoding ``T``; the critic ``N`` (one pass
over the ``N`` singly-masked copies, about ``N / 2`` in flops with the prior's own
``leave_one_out_fn``, ``benchmarks/critic_bench.py``); the reverse walk ``T - t*`` (it stops where the official loop
breaks; ``early_exit=False`` predicts all ``T - 1`` retractions in one batched pass
instead, fewer sequential calls on wide accelerators); critical resampling ``T - t*``
prior calls plus one critic per step that hides a token (the last step hides none).
``critic_groups = G`` replaces the exact critic (``N`` copies) by a ``G``-pass approximation, not in
the official code (:mod:`mamjax.maskgit.self_critic`).

Critical resampling, two variants (``redraw_kept``): the official code samples a token at
*every* position from the prior at each step, the tokens kept from ``s_{t*}`` included, and the
critic then decides which to hide again (``redraw_kept=True``); mamjax's default keeps the kept
tokens and samples only the hidden ones (``False``). The official variant suits a prior trained
with the loss on every position (``prior.maskgit_loss(..., positions="all")``, the official
loss), which learns to reproduce the tokens it sees; a prior trained on the hidden tokens only
(the MaskGIT loss, mamjax's default) has untrained logits at observed positions, and redrawing
from them replaces kept tokens by near-arbitrary ones (a GunPoint prior of the reproduction
reproduced 20 % of its observed tokens by arg-max, against 62 % of its hidden ones).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from mamjax.maskgit.decoding import MASK_ID, decode, random_ranks
from mamjax.maskgit import schedule as schedule_lib
from mamjax.maskgit import self_critic, vq

Array = jax.Array
PRNGKey = jax.Array
LogitsFn = Callable[[Array, Array, Array | None], Array]
LeaveOneOutFn = self_critic.LeaveOneOutFn

__all__ = ["ReverseResult", "critical_reverse_sampling", "critical_resampling", "ess_decode",
           "stopping_step"]


class ReverseResult(NamedTuple):
    """Output of :func:`critical_reverse_sampling`.

    Attributes:
      t_star: ``[B] int32`` step t* to resume decoding from.
      tokens: ``[B, N]`` s_{t*} (hidden slots hold ``MASK_ID``).
      mask: ``[B, N] bool``, True = observed (``schedule.hidden_counts(T, N)[t*]`` hidden).
      errors: ``[B, T]`` error per step (index t; entry 0 unused, NaN-free zeros where undefined).
    """

    t_star: Array
    tokens: Array
    mask: Array
    errors: Array


def _hidden_sets(ranks: Array, counts: Array) -> Array:
    """``H[t, b, n]``: position n among the ``counts[t]`` least critic-likely of row b (``ranks [B, N]``)."""
    return ranks[None] < counts[:, None, None]


def _stop_init(window: int) -> tuple:
    """Carry of the stopping rule: ``(stopped, t_star, prev_error, ratio_buffer, num_ratios)``."""
    return (jnp.bool_(False), jnp.int32(1), jnp.float32(0.0), jnp.zeros((window,), jnp.float32), jnp.int32(0))


def _stop_update(carry: tuple, t: Array, err: Array, no_diff_t: Array, num_steps: int, window: int,
                 threshold: float) -> tuple:
    """One step ``t`` of the official stopping rule (a stopped carry stays as it is)."""
    stopped, t_star, prev, buf, count = carry
    first = t == num_steps - 1
    ratio = err / (prev + 1e-5)
    buf_new = jnp.where(first, buf, buf.at[count % window].set(ratio))
    count_new = jnp.where(first, count, count + 1)
    ma = jnp.where(first, 0.0, jnp.sum(buf_new) / jnp.maximum(jnp.minimum(count_new, window), 1))
    stop_here = no_diff_t | ((~first) & (ma > threshold)) | (t == 1)
    return (stopped | stop_here, jnp.where(stopped, t_star, t), jnp.where(stopped, prev, err),
            jnp.where(stopped, buf, buf_new), jnp.where(stopped, count, count_new))


def _window(num_steps: int, ma_rate: float) -> int:
    return max(1, round(num_steps * ma_rate))


def stopping_step(errors: Array, no_diff: Array, num_steps: int, ma_rate: float = 0.3,
                  threshold: float = 1.0) -> Array:
    """t* from per-step errors, walking t = T-1, ..., 1 (one sequence).

    Args:
      errors: ``[T]`` error at step t (index 0 unused).
      no_diff: ``[T] bool``, step t reveals no token (stop there).

    Returns:
      int32 scalar t* in [1, T-1].
    """
    window = _window(num_steps, ma_rate)

    def body(carry, t):
        return _stop_update(carry, t, errors[t], no_diff[t], num_steps, window, threshold), None

    carry, _ = jax.lax.scan(body, _stop_init(window), jnp.arange(num_steps - 1, 0, -1))
    return carry[1]


def critical_reverse_sampling(logits_fn: LogitsFn, tokens: Array, labels: Array | None, codebook: Array,
                              key: PRNGKey, *,
                              num_steps: int = 10, schedule: str = "cosine", ma_rate: float = 0.3,
                              threshold: float = 1.0, critic_logp: Array | None = None,
                              per_sequence: bool = False, early_exit: bool = True,
                              leave_one_out_fn: LeaveOneOutFn | None = None,
                              critic_groups: int | None = None) -> ReverseResult:
    """Retracts a naive sample ``s_T`` to ``s_{t*}`` by re-masking the critic's least likely tokens.

    Args:
      logits_fn: ``(tokens, mask, labels) -> [B, N, K]``.
      tokens: ``[B, N] int`` full samples.
      labels: ``[B]`` or None.
      codebook: ``[K, d]``.
      key: PRNG key that orders the critic's ties (every token the prior reproduces scores the
        same): tied tokens are re-masked in a random order, not the earliest first. One ranking
        serves every step of the walk, so the hidden sets stay nested.
      num_steps: T of the decoding schedule (>= 2).
      critic_logp: ``[B, N]`` precomputed critic scores of ``tokens`` (else computed here).
      per_sequence: one t* per sequence (True) or one for the batch from the batch-mean error
        (False, as in the official code).
      early_exit: walk ``t = T-1, ..., 1`` one prior call per step and stop at t*, as the official loop
        (True); or predict all ``T - 1`` retractions in one batched pass, then apply the rule (False).
        Both give the same t* and the same errors at the steps the walk reaches.
      leave_one_out_fn: the prior's leave-one-out pass for the critic (see
        :func:`mamjax.maskgit.self_critic.leave_one_out_logits`).
      critic_groups: None (the official exact critic) or G: the critic's G-pass grouped
        approximation (:func:`mamjax.maskgit.self_critic.grouped_leave_out_logits`).

    Returns:
      :class:`ReverseResult`; ``errors[b, t]`` is 0 at steps the walk did not reach.
    """
    if num_steps < 2:
        raise ValueError(f"`num_steps` must be >= 2 for critical reverse sampling; got {num_steps}.")
    b, n = tokens.shape
    if critic_logp is None:
        critic_logp = self_critic.critic_log_probs(logits_fn, tokens, labels, codebook, leave_one_out_fn,
                                                   critic_groups)
    counts = jnp.asarray(schedule_lib.hidden_counts(num_steps, n, schedule))  # the decoder's own schedule
    counts_prev = jnp.concatenate([jnp.array([n], jnp.int32), counts[:-1]])  # hidden before step t
    ranks = random_ranks(key, critic_logp)  # [B, N], ties in a random order
    hidden = _hidden_sets(ranks, counts)  # [T, B, N] hidden after step t
    hidden_prev = _hidden_sets(ranks, counts_prev)  # [T, B, N] hidden after step t - 1
    no_diff = counts == counts_prev  # [T]
    emb = vq.lookup(tokens, codebook)  # [B, N, d]

    def step_errors(h, h_prev):
        """``[B]`` mean squared codebook error of the tokens revealed between ``h_prev`` and ``h``."""
        pred = jnp.argmax(logits_fn(tokens, ~h_prev, labels), axis=-1)  # [B, N]
        revealed = h_prev & ~h
        sq = jnp.sum((emb - vq.lookup(pred, codebook)) ** 2, axis=-1)  # [B, N]
        num_rev = jnp.sum(revealed, axis=-1)
        return jnp.sum(jnp.where(revealed, sq, 0.0), -1) / jnp.maximum(num_rev, 1) / codebook.shape[1]

    window = _window(num_steps, ma_rate)
    update = lambda carry, t, err: _stop_update(carry, t, err, no_diff[t], num_steps, window, threshold)
    init = _stop_init(window)
    if per_sequence:
        init = jax.tree.map(lambda x: jnp.broadcast_to(x, (b,) + x.shape), init)
        update = jax.vmap(update, in_axes=(0, None, 0))
    if early_exit:
        def body(c):
            t, carry, errors = c
            err = jax.lax.cond(no_diff[t], lambda: jnp.zeros((b,), jnp.float32),
                               lambda: step_errors(hidden[t], hidden_prev[t]).astype(jnp.float32))
            carry = update(carry, t, err if per_sequence else jnp.mean(err))
            return t - 1, carry, errors.at[:, t].set(err)

        cond = lambda c: (c[0] >= 1) & ~jnp.all(c[1][0])
        _, carry, errors = jax.lax.while_loop(
            cond, body, (jnp.int32(num_steps - 1), init, jnp.zeros((b, num_steps), jnp.float32)))
    else:  # every candidate retraction in one batched pass (vmap over steps)
        errors = jax.vmap(step_errors)(hidden, hidden_prev).T.astype(jnp.float32)  # [B, T]
        carry, _ = jax.lax.scan(lambda c, t: (update(c, t, errors[:, t] if per_sequence else
                                                     jnp.mean(errors[:, t])), None),
                                init, jnp.arange(num_steps - 1, 0, -1))
    t_star = jnp.broadcast_to(carry[1], (b,))
    mask = ~jnp.take_along_axis(jnp.moveaxis(hidden, 0, 1), t_star[:, None, None], axis=1)[:, 0]
    return ReverseResult(t_star, jnp.where(mask, tokens, MASK_ID), mask, errors)


def critical_resampling(logits_fn: LogitsFn, reverse: ReverseResult, labels: Array | None, codebook: Array,
                        key: PRNGKey, *, num_steps: int = 10, schedule: str = "cosine", temperature: float = 4.0,
                        guidance_scale: float = 1.0, null_label: int | None = None,
                        leave_one_out_fn: LeaveOneOutFn | None = None, redraw_kept: bool = False,
                        critic_groups: int | None = None) -> Array:
    """Decodes ``s_{t*}`` forward from step ``t*`` with the critic as the confidence.

    At each step all hidden tokens (``redraw_kept=True``: all tokens, kept ones included, as the
    official code) are sampled from the (guided) prior, the critic scores the whole candidate
    sequence, and the ``schedule.hidden_counts(T, N)[t]`` lowest (Gumbel-noised) scores are hidden
    again - previously kept tokens included. The loop runs steps ``min(t*), ..., T - 1`` only.
    ``critic_groups``: see :func:`critical_reverse_sampling`.

    Returns:
      ``[B, N] int32`` tokens.
    """
    n = reverse.tokens.shape[1]
    return decode(
        logits_fn, reverse.tokens, reverse.mask, key, labels=labels, num_steps=num_steps, schedule=schedule,
        temperature=temperature, guidance_scale=guidance_scale, null_label=null_label,
        confidence_fn=self_critic.critic_confidence_fn(logits_fn, codebook, leave_one_out_fn, critic_groups),
        start_step=reverse.t_star, num_initial_hidden=jnp.int32(n), lock_observed=False,
        redraw_observed=redraw_kept)


def ess_decode(logits_fn: LogitsFn, key: PRNGKey, codebook: Array, *, batch_size: int, seq_len: int,
               labels: Array | None = None, num_steps: int = 10, schedule: str = "cosine",
               temperature: float = 4.0, guidance_scale: float = 1.0, null_label: int | None = None,
               ma_rate: float = 0.3, threshold: float = 1.0, per_sequence: bool = False, early_exit: bool = True,
               leave_one_out_fn: LeaveOneOutFn | None = None, redraw_kept: bool = False,
               critic_groups: int | None = None, return_info: bool = False):
    """Unconditional (or class-conditional) generation with ESS.

    Args:
      logits_fn: the prior, ``(tokens, mask, labels) -> [B, N, K]``.
      key: PRNG key.
      codebook: ``[K, d]`` embeddings of the tokens.
      batch_size, seq_len: B, N (static).
      labels: ``[B]`` or None.
      threshold, per_sequence, early_exit: see :func:`critical_reverse_sampling` (``threshold = inf``
        walks back to t = 1 or to a step that reveals nothing: the costliest ESS).
      leave_one_out_fn: ``(tokens, labels) -> [B, N, K]``, the prior's leave-one-out logits for the
        critic (e.g. ``TransformerEncoder.leave_one_out``); None = vmap of ``logits_fn`` over the copies.
      critic_groups: None (default: the official exact critic, N copies) or G: the critic's G-pass
        grouped approximation, cheaper when G < N (see :mod:`mamjax.maskgit.self_critic`).

    Returns:
      ``[B, N] int32`` (and ``(naive_tokens, ReverseResult)`` if ``return_info``).
    """
    for name, v in (("batch_size", batch_size), ("seq_len", seq_len), ("num_steps", num_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    self_critic.check_num_groups(critic_groups, seq_len)
    k_naive, k_reverse, k_resample = jax.random.split(key, 3)
    blank = jnp.full((batch_size, seq_len), MASK_ID, jnp.int32)
    hidden = jnp.zeros((batch_size, seq_len), bool)
    naive = decode(logits_fn, blank, hidden, k_naive, labels=labels, num_steps=num_steps, schedule=schedule,
                   temperature=temperature, guidance_scale=guidance_scale, null_label=null_label)
    reverse = critical_reverse_sampling(logits_fn, naive, labels, codebook, k_reverse, num_steps=num_steps,
                                        schedule=schedule, ma_rate=ma_rate, threshold=threshold,
                                        per_sequence=per_sequence,
                                        early_exit=early_exit, leave_one_out_fn=leave_one_out_fn,
                                        critic_groups=critic_groups)
    out = critical_resampling(logits_fn, reverse, labels, codebook, k_resample, num_steps=num_steps,
                              schedule=schedule, temperature=temperature, guidance_scale=guidance_scale,
                              null_label=null_label, leave_one_out_fn=leave_one_out_fn, redraw_kept=redraw_kept,
                              critic_groups=critic_groups)
    return (out, (naive, reverse)) if return_info else out
