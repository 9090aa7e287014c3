"""MaskGIT iterative decoding as a pure function (Chang et al., 2022).

One decoding step ``t`` of ``T``: the prior predicts every hidden token in
parallel, a token is sampled at every hidden position, each position gets a
confidence (naive MaskGIT: the log-probability of its sampled token; ESS: the
self-Token-Critic's score), Gumbel noise with temperature ``tau * (1 - r)``,
``r = (t + 1) / T``, is added, and the ``floor(N0 * gamma(r))`` least confident
positions stay (or become) hidden. ``N0`` is the number of hidden tokens at the
start; the count comes from :mod:`mamjax.maskgit.schedule`, the one exact schedule
that naive decoding and both ESS stages share. Ties of the noisy confidence (e.g.
the critic's equal scores at zero temperature) are broken at random from the step's key.

The loop is a ``lax.while_loop`` over a :class:`DecodeState` pytree. Naive
decoding (``lock_observed=True``) never re-masks a revealed token (as in the
official TimeVQVAE code there is no "reveal at least one token per step" clip: a
step whose count does not change reveals none); the ESS resampling stage
(``lock_observed=False``) lets its confidence re-mask any token and starts at a
per-row step. With ``redraw_observed=True`` (the official critical resampling) every
step samples a token at *every* position from the prior, the kept ones included, instead of
keeping the tokens already observed; that relies on a prior whose logits at observed
positions are trained (the official loss covers all positions; ``prior.maskgit_loss`` with
``positions="all"``).

Mask convention: ``True`` = observed. Hidden token slots hold :data:`MASK_ID`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mamjax import masks as masks_lib
from mamjax.maskgit import schedule as schedule_lib

Array = jax.Array
PRNGKey = jax.Array
LogitsFn = Callable[[Array, Array, Array | None], Array]
ConfidenceFn = Callable[[Array, Array | None], Array]

MASK_ID = -1

__all__ = ["MASK_ID", "DecodeState", "guided_logits", "mask_by_random_topk", "random_ranks", "scheduled_hidden",
           "decode_step", "decode"]


class DecodeState(NamedTuple):
    """The loop carry.

    Attributes:
      step: int32 scalar, the next step to run.
      tokens: ``[B, L] int32``; hidden slots hold ``MASK_ID``.
      mask: ``[B, L] bool``, True = observed.
      key: PRNG key of the next step.
      history: ``[T, B, L] bool``: the mask after each step (rows not yet started keep theirs).
    """

    step: Array
    tokens: Array
    mask: Array
    key: PRNGKey
    history: Array


def guided_logits(logits_fn: LogitsFn, tokens: Array, mask: Array, labels: Array | None,
                  guidance_scale: float = 1.0, null_label: int | None = None) -> Array:
    """Classifier-free guidance: ``u + w (c - u)`` with ``c`` conditional and ``u`` null-class logits.

    ``w = 1`` (or no labels) is the plain conditional prior, one forward pass.
    """
    logits = logits_fn(tokens, mask, labels)
    if labels is None or guidance_scale == 1.0:
        return logits
    if null_label is None:
        raise ValueError("`null_label` (the encoder's num_classes) is required when guidance_scale != 1.")
    uncond = logits_fn(tokens, mask, jnp.full_like(labels, null_label))
    return uncond + guidance_scale * (logits - uncond)


def mask_by_random_topk(key: PRNGKey, num_hidden: Array, confidence: Array, temperature) -> Array:
    """Hides exactly ``num_hidden[b]`` positions: the lowest ``confidence + temperature * Gumbel``.

    Ties (equal noisy confidences, e.g. at ``temperature = 0``) are broken by a uniform
    random order drawn from ``key``, never by position.

    Args:
      key: PRNG key.
      num_hidden: ``[B] int`` in [0, L].
      confidence: ``[B, L]`` (``+inf`` = never hidden while fewer than the finite count are asked).
      temperature: scalar >= 0.

    Returns:
      ``[B, L] bool`` mask, True = observed.
    """
    if masks_lib.is_concrete(num_hidden):
        n = np.asarray(num_hidden)
        if n.size and (n.min() < 0 or n.max() > confidence.shape[-1]):
            raise ValueError(f"`num_hidden` must lie in [0, {confidence.shape[-1]}]; got {n.tolist()}.")
    k_gumbel, k_tie = jax.random.split(key)
    noisy = confidence + temperature * jax.random.gumbel(k_gumbel, confidence.shape)
    return random_ranks(k_tie, noisy) >= num_hidden[:, None]


def random_ranks(key: PRNGKey, scores: Array) -> Array:
    """``[B, L] int32`` rank of each score in its row (0 = lowest), ties in a random order from ``key``."""
    tie = jax.random.uniform(key, scores.shape)
    order = jnp.lexsort((tie, scores), axis=-1)  # primary key: scores; secondary: the random draw
    return jnp.argsort(order, axis=-1).astype(jnp.int32)


def scheduled_hidden(step: Array, num_steps: int, num_initial_hidden: Array, seq_len: int,
                     schedule: str = "cosine") -> Array:
    """``floor(N0 * gamma((step + 1) / T))`` per row, exact: ``[B] int32`` (:func:`mamjax.maskgit.schedule.num_hidden`)."""
    return schedule_lib.num_hidden(step, num_steps, num_initial_hidden, seq_len, schedule)


def decode_step(state: DecodeState, logits_fn: LogitsFn, *, labels: Array | None, num_steps: int,
                num_initial_hidden: Array, start_step: Array, schedule: str, temperature: float,
                guidance_scale: float, null_label: int | None, confidence_fn: ConfidenceFn | None,
                lock_observed: bool, redraw_observed: bool = False) -> DecodeState:
    """One decoding step (see the module docstring); rows with ``step < start_step`` are left as they are."""
    key, k_sample, k_noise = jax.random.split(state.key, 3)
    logits = guided_logits(logits_fn, state.tokens, state.mask, labels, guidance_scale, null_label)
    sampled = jax.random.categorical(k_sample, logits, axis=-1).astype(jnp.int32)
    if not redraw_observed:
        sampled = jnp.where(state.mask, state.tokens, sampled)
    num_hidden = scheduled_hidden(state.step, num_steps, num_initial_hidden, state.tokens.shape[1], schedule)
    active = (state.step >= start_step)[:, None]
    if confidence_fn is None:
        logp = jax.nn.log_softmax(logits, axis=-1)
        confidence = jnp.take_along_axis(logp, sampled[..., None], axis=-1)[..., 0]
    else:  # a critic may cost many prior calls: skip it at steps that hide nothing (e.g. the last one)
        needed = jnp.any((num_hidden > 0) & active[:, 0])
        confidence = jax.lax.cond(needed, lambda: confidence_fn(sampled, labels).astype(logits.dtype),
                                  lambda: jnp.zeros(sampled.shape, logits.dtype))
    if lock_observed:  # the schedule never asks for more hidden tokens than there are: revealed ones stay
        confidence = jnp.where(state.mask, jnp.inf, confidence)
    ratio = (state.step.astype(jnp.float32) + 1.0) / num_steps
    new_mask = mask_by_random_topk(k_noise, num_hidden, confidence, temperature * (1.0 - ratio))
    mask = jnp.where(active, new_mask, state.mask)
    tokens = jnp.where(active, jnp.where(new_mask, sampled, MASK_ID), state.tokens)
    history = state.history.at[state.step].set(mask)
    return DecodeState(state.step + 1, tokens, mask, key, history)


def decode(logits_fn: LogitsFn, tokens: Array, mask: Array, key: PRNGKey, *, labels: Array | None = None,
           num_steps: int = 10, schedule: str = "cosine", temperature: float = 4.0,
           guidance_scale: float = 1.0, null_label: int | None = None,
           confidence_fn: ConfidenceFn | None = None, start_step: Array | None = None,
           num_initial_hidden: Array | None = None, lock_observed: bool = True,
           redraw_observed: bool = False, return_state: bool = False):
    """MaskGIT iterative decoding of the hidden tokens.

    Args:
      logits_fn: ``logits_fn(tokens [B, L] int, mask [B, L] bool, labels [B] | None) -> [B, L, K]``.
      tokens: ``[B, L] int`` (values at hidden positions are ignored).
      mask: ``[B, L] bool``, True = observed; all False for unconditional generation.
      key: PRNG key (one decode; ``jax.vmap`` over keys for independent decodes).
      labels: ``[B] int32`` class labels, or None.
      num_steps: T, static.
      schedule: ``"cosine"`` or ``"linear"``.
      temperature: tau of the Gumbel noise on the confidence, annealed as ``tau * (1 - r)``.
      guidance_scale: classifier-free guidance weight (1 = conditional prior).
      null_label: the null class id (``num_classes`` of the encoder), needed when guidance_scale != 1.
      confidence_fn: ``fn(sampled [B, L], labels) -> [B, L]``; None = log-prob of the sampled token.
      start_step: ``[B] int32`` first step per row (default 0); earlier steps leave the row unchanged.
      num_initial_hidden: ``[B] int32`` N0 of the schedule (default: hidden count of ``mask``).
      lock_observed: never re-mask observed tokens (naive MaskGIT) if True.
      redraw_observed: sample every position from the prior at every active step, observed ones
        included (the official ESS critical resampling); False keeps observed tokens as they are.
        Needs ``lock_observed=False``.
      return_state: also return the final :class:`DecodeState` (with the per-step mask history).

    Returns:
      ``tokens [B, L] int32`` with every position decoded (and the state if asked).

    Raises:
      ValueError: eagerly, when the inputs are concrete (not under ``jit``): observed
        token ids outside ``[0, K)`` (K from ``logits_fn``'s output shape),
        ``start_step`` outside ``[0, num_steps]``, ``num_initial_hidden`` outside ``[0, L]``.
    """
    chex.assert_rank(tokens, 2, custom_message="`tokens` must be [batch, seq_len]")
    masks_lib.check_mask(mask, "mask", tokens.shape)
    if not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive int; got {num_steps!r}.")
    if schedule not in schedule_lib.SCHEDULES:
        raise ValueError(f"`schedule` must be one of {list(schedule_lib.SCHEDULES)}; got {schedule!r}.")
    if masks_lib.is_concrete(temperature) and not np.all(np.asarray(temperature) >= 0):
        raise ValueError(f"`temperature` must be >= 0; got {temperature!r}.")
    if null_label is None and isinstance(guidance_scale, (int, float)) and guidance_scale != 1:
        raise ValueError(f"`null_label` is required with `guidance_scale` != 1; got guidance_scale={guidance_scale}.")
    if redraw_observed and lock_observed:
        raise ValueError("`redraw_observed=True` needs `lock_observed=False` (a locked token cannot be redrawn).")
    b, l = tokens.shape
    if labels is not None:
        chex.assert_shape(labels, (b,), custom_message="`labels` must be [batch]")
    _check_decode_inputs(logits_fn, tokens, mask, labels, num_steps, start_step, num_initial_hidden)
    tokens = jnp.where(mask, tokens.astype(jnp.int32), MASK_ID)
    start = jnp.zeros((b,), jnp.int32) if start_step is None else jnp.broadcast_to(start_step, (b,)).astype(jnp.int32)
    n0 = jnp.sum(~mask, axis=-1).astype(jnp.int32) if num_initial_hidden is None else \
        jnp.broadcast_to(num_initial_hidden, (b,)).astype(jnp.int32)
    first = jnp.clip(jnp.min(start), 0, num_steps)
    history = jnp.broadcast_to(mask, (num_steps, b, l))
    state = DecodeState(first, tokens, mask, key, history)

    def body(s):
        return decode_step(s, logits_fn, labels=labels, num_steps=num_steps, num_initial_hidden=n0,
                           start_step=start, schedule=schedule, temperature=temperature,
                           guidance_scale=guidance_scale, null_label=null_label,
                           confidence_fn=confidence_fn, lock_observed=lock_observed,
                           redraw_observed=redraw_observed)

    state = jax.lax.while_loop(lambda s: s.step < num_steps, body, state)
    return (state.tokens, state) if return_state else state.tokens


def _check_decode_inputs(logits_fn, tokens, mask, labels, num_steps, start_step, num_initial_hidden) -> None:
    """Eager value checks of :func:`decode` (skipped for traced inputs)."""
    if masks_lib.is_concrete(tokens) and masks_lib.is_concrete(mask):
        k = jax.eval_shape(logits_fn, tokens, mask, labels).shape[-1]
        masks_lib.check_token_ids(jnp.where(mask, tokens, 0), k, "tokens")
    for name, v, hi in (("start_step", start_step, num_steps), ("num_initial_hidden", num_initial_hidden,
                                                                 tokens.shape[1])):
        if v is not None and masks_lib.is_concrete(v):
            a = np.asarray(v)
            if a.size and (a.min() < 0 or a.max() > hi):
                raise ValueError(f"`{name}` must lie in [0, {hi}]; got values in [{a.min()}, {a.max()}].")
