"""Masked pre-training (MPT) scores and the cumulative MPT estimator of log p(x).

Moreno-Muñoz, Recasens & Hauberg, "On Masked Pre-training and the Marginal
Likelihood" (NeurIPS 2023), eq. (5): for any joint ``p(x)`` over D coordinates,

    log p(x) = sum_{M=1..D} s_M(x),
    s_M(x)   = 1/C(D,M) sum_{|T|=M} 1/M sum_{j in T} log p(x_j | x_{not T}),

i.e. the masked pre-training score at mask size M (hidden set ``T``, every
hidden coordinate predicted from the observed ones only), summed over all mask
sizes. It is the chain rule averaged over orderings, grouped by how many
coordinates are still hidden. A fixed mask rate gives ``D * s_M``, a biased
estimate of ``log p(x)`` whose maximiser is still an LML maximiser.

Conventions: a mask is ``[D] bool``, True = observed, False = hidden. Models
enter as a callable ``cond_logpdf(x [D], mask [D]) -> [D]`` returning
``log p(x_j | x_observed)`` at hidden ``j`` (values at observed positions are
ignored). Everything is per example; batches of ``x`` are vmapped, and masks
are shared across the batch so mask-only work (e.g. a Cholesky per mask) is
done once per mask.
"""

from __future__ import annotations

import functools
import itertools
import math
from functools import partial
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import masks as masks_lib

Array = jax.Array
PRNGKey = jax.Array
CondLogpdf = Callable[[Array, Array], Array]

__all__ = [
    "MPTEstimate",
    "MPTMasks",
    "check_mpt_masks",
    "masked_pretraining_score",
    "rates_to_num_hidden",
    "mpt_masks",
    "cumulative_mpt",
    "cumulative_mpt_loop",
    "size_coefficients",
    "draw_masks",
    "reduce_scores",
    "plan_arrays",
    "uniform_size_masks",
    "mask_bucket",
    "bucketed_plan_arrays",
    "call_plan_arrays",
    "map_mask_chunks",
    "slot_mean_stderr",
]

# Above this many subsets of one size, exact enumeration is refused (memory).
MAX_EXACT_MASKS = 1 << 16
# chunk_size="auto": masks per vmapped chunk so that masks x batch x D stays near this many elements.
MASK_CHUNK_ELEMENTS = 1 << 22


def _is_traced(*xs) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(xs))


class MPTEstimate(NamedTuple):
    """Result of :func:`cumulative_mpt` (leading ``[B]`` axis when ``x`` is ``[B, D]``).

    Attributes:
      value: ``[]``/``[B]`` estimate of ``log p(x)``: ``sum_M s_M`` when the sizes cover
        1..D (the cumulative MPT, the log marginal likelihood in expectation), else the
        Riemann sum ``D * mean_r s_{M_r}`` (biased; :func:`size_coefficients`).
      stderr: standard error of ``value`` (0 when every size was enumerated; ``inf`` when a
        Monte Carlo size has K = 1 mask, where the spread cannot be estimated).
      per_size: ``[R]``/``[B, R]`` the per-size scores ``s_{M_r}``.
      per_size_stderr: their standard errors.
      num_hidden: ``[R] int`` mask sizes M_r.
      exact: ``[R] bool`` whether size ``r`` was enumerated exactly.
    """

    value: Array
    stderr: Array
    per_size: Array
    per_size_stderr: Array
    num_hidden: Array
    exact: Array


class MPTMasks(NamedTuple):
    """Static (numpy) part of the estimator: enumerated masks padded to one shape.

    Attributes:
      num_hidden: ``[R] int32`` mask size per rate.
      exact: ``[R] bool`` whether the size is enumerated.
      masks: ``[R, K, D] bool`` enumerated masks (rows of MC sizes are placeholders).
      weights: ``[R, K]`` float64 weights: ``1/C(D,M)`` for enumerated masks, 0 for padding,
        ``1/K`` for Monte Carlo slots.
    """

    num_hidden: np.ndarray
    exact: np.ndarray
    masks: np.ndarray
    weights: np.ndarray


def check_mpt_masks(masks, num_dims: int | None = None, name: str = "masks") -> None:
    """Raises a clear error if ``masks`` cannot be scored.

    Checks dtype (bool), rank (``[K, D]``), emptiness (``K = 0``) and, when the
    values are concrete, that every mask hides at least one coordinate (an
    all-observed mask predicts nothing, so ``1/M`` is undefined). An all-hidden
    mask is valid: it is the ``M = D`` term, the product of the marginals.
    """
    masks_lib.check_mask(masks, name)
    if masks.ndim != 2:
        raise ValueError(f"`{name}` must have shape [num_masks, D]; got {tuple(masks.shape)}.")
    if masks.shape[0] == 0:
        raise ValueError(f"`{name}` is empty (shape {tuple(masks.shape)}): pass at least one mask.")
    if num_dims is not None and masks.shape[1] != num_dims:
        raise ValueError(f"`{name}` must have D = {num_dims} columns to match `x`; got {masks.shape[1]}.")
    if not isinstance(masks, jax.core.Tracer):
        hidden = np.sum(~np.asarray(masks), axis=1)
        bad = np.flatnonzero(hidden == 0)
        if bad.size:
            raise ValueError(
                f"`{name}` rows {bad[:5].tolist()} hide no coordinate (all True = all observed): "
                "MPT needs at least one hidden (False) entry per mask."
            )


def _score_one_mask(cond_logpdf: CondLogpdf, x: Array, mask: Array) -> Array:
    """``1/M sum_{j hidden} log p(x_j | x_O)`` for one example and one mask."""
    lp = cond_logpdf(x, mask)
    hidden = ~mask
    total = jnp.sum(jnp.where(hidden, lp, 0.0))
    return total / jnp.maximum(jnp.sum(hidden), 1).astype(total.dtype)


def _scores(cond_logpdf: CondLogpdf, x: Array, masks: Array) -> Array:
    """Per-mask scores ``[..., K]`` for ``x`` ``[D]`` or ``[B, D]`` and masks ``[K, D]``.

    Masks are the outer vmap so that work depending on the mask only is not
    repeated over the batch.
    """
    per_example = partial(_score_one_mask, cond_logpdf)
    if x.ndim == 2:
        per_example = jax.vmap(per_example, in_axes=(0, None))
    out = jax.vmap(per_example, in_axes=(None, 0))(x, masks)  # [K] or [K, B]
    return jnp.moveaxis(out, 0, -1)


def masked_pretraining_score(cond_logpdf: CondLogpdf, x: Array, masks: Array, weights: Array | None = None) -> Array:
    """The masked pre-training score of ``x`` averaged over a set of masks.

    ``sum_k w_k (1/M_k) sum_{j hidden in k} log p(x_j | x_{O_k})`` with
    ``w_k = 1/K`` by default: for masks of one size M this is ``s_M`` (exactly, over
    all C(D,M) masks, or a Monte Carlo estimate over sampled ones).

    Args:
      cond_logpdf: ``(x [D], mask [D] bool) -> [D]`` conditional log densities.
      x: ``[D]`` one example or ``[B, D]`` a batch (masks shared across the batch).
      masks: ``[K, D] bool``, True = observed; each must hide at least one coordinate.
      weights: optional ``[K]`` mask weights (need not sum to 1, e.g. 0 for padding).

    Returns:
      ``[]`` or ``[B]`` score.
    """
    x = jnp.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"`x` must have shape [D] or [B, D]; got {tuple(x.shape)}.")
    check_mpt_masks(masks, x.shape[-1])
    if weights is None:
        weights = jnp.full((masks.shape[0],), 1.0 / masks.shape[0])
    weights = jnp.asarray(weights)
    if weights.shape != (masks.shape[0],):
        raise ValueError(f"`weights` must have shape [{masks.shape[0]}]; got {tuple(weights.shape)}.")
    fn = _weighted_score if _is_traced(x, masks, weights) else _weighted_score_jit
    return fn(cond_logpdf, x, masks, weights)


def _weighted_score(cond_logpdf: CondLogpdf, x: Array, masks: Array, weights: Array) -> Array:
    s = _scores(cond_logpdf, x, masks)
    return s @ weights.astype(s.dtype)


_weighted_score_jit = jax.jit(_weighted_score, static_argnums=(0,))


def rates_to_num_hidden(rates, num_dims: int) -> np.ndarray:
    """Mask rates in (0, 1] to mask sizes ``M = clip(round(rate * D), 1, D)``; ``None`` -> 1..D."""
    if rates is None:
        return np.arange(1, num_dims + 1, dtype=np.int32)
    r = np.atleast_1d(np.asarray(rates, dtype=np.float64))
    if r.ndim != 1 or r.size == 0:
        raise ValueError(f"`rates` must be a non-empty 1-D sequence of mask rates; got {rates!r}.")
    if np.any(~np.isfinite(r)) or np.any(r <= 0) or np.any(r > 1):
        raise ValueError(f"`rates` must lie in (0, 1] (fraction of hidden coordinates); got {rates!r}.")
    return np.clip(np.rint(r * num_dims), 1, num_dims).astype(np.int32)


def _check_num_hidden(num_hidden, num_dims: int) -> np.ndarray:
    m = np.atleast_1d(np.asarray(num_hidden))
    if not np.issubdtype(m.dtype, np.integer) or m.ndim != 1 or m.size == 0:
        raise TypeError(f"`num_hidden` must be a non-empty 1-D sequence of ints; got {num_hidden!r}.")
    if np.any(m < 1) or np.any(m > num_dims):
        raise ValueError(f"`num_hidden` must lie in [1, {num_dims}]; got {num_hidden!r}.")
    return m.astype(np.int32)


def _enumerate_masks(num_dims: int, num_hidden: int) -> np.ndarray:
    """All C(D, M) masks hiding exactly M coordinates: ``[C, D] bool``."""
    idx = np.array(list(itertools.combinations(range(num_dims), num_hidden)), dtype=np.int64)
    out = np.ones((idx.shape[0], num_dims), dtype=bool)
    out[np.arange(idx.shape[0])[:, None], idx] = False
    return out


def mpt_masks(num_dims: int, num_masks_per_rate: int, num_hidden, exact: bool | str = "auto") -> MPTMasks:
    """Precomputes (in numpy) which sizes are enumerated and their padded masks.

    Args:
      num_dims: D.
      num_masks_per_rate: K, Monte Carlo masks per size (static).
      num_hidden: ``[R]`` mask sizes.
      exact: ``"auto"`` enumerates a size when ``C(D, M) <= K`` (never more
        evaluations than Monte Carlo); ``True`` enumerates every size (K grows to
        ``max C(D, M)``); ``False`` never enumerates.

    Returns:
      :class:`MPTMasks` with ``masks`` of shape ``[R, K', D]``.
    """
    if not isinstance(num_masks_per_rate, (int, np.integer)) or num_masks_per_rate < 1:
        raise ValueError(f"`num_masks_per_rate` must be a positive int; got {num_masks_per_rate!r}.")
    if exact not in ("auto", True, False):
        raise ValueError(f"`exact` must be 'auto', True or False; got {exact!r}.")
    num_hidden = _check_num_hidden(num_hidden, num_dims)
    counts = np.array([math.comb(num_dims, int(m)) for m in num_hidden], dtype=object)
    if exact == "auto":
        is_exact = np.array([c <= num_masks_per_rate for c in counts], dtype=bool)
        k = int(num_masks_per_rate)
    elif exact is True:
        if max(counts) > MAX_EXACT_MASKS:
            raise ValueError(
                f"exact enumeration needs C(D, M) = {max(counts)} masks for one size (D = {num_dims}); "
                f"the limit is {MAX_EXACT_MASKS}. Use exact='auto' or False (Monte Carlo)."
            )
        is_exact = np.ones(num_hidden.shape, dtype=bool)
        k = int(max(counts))
    else:
        is_exact = np.zeros(num_hidden.shape, dtype=bool)
        k = int(num_masks_per_rate)
    r = num_hidden.shape[0]
    masks = np.zeros((r, k, num_dims), dtype=bool)
    masks[:, :, 0] = False  # placeholders hide coordinate 0, so they remain valid masks
    masks[:, :, 1:] = True
    weights = np.full((r, k), 1.0 / k)
    for i, m in enumerate(num_hidden):
        if is_exact[i]:
            e = _enumerate_masks(num_dims, int(m))
            masks[i, : e.shape[0]] = e
            masks[i, e.shape[0]:] = e[0]  # padding: a valid mask with weight 0
            weights[i] = 0.0
            weights[i, : e.shape[0]] = 1.0 / e.shape[0]
    return MPTMasks(num_hidden, is_exact, masks, weights)


def _sample_masks_impl(key: PRNGKey, num_dims: int, num_hidden: Array, k: int) -> Array:
    """``[R, K, D]`` uniformly random masks with exactly ``num_hidden[r]`` hidden."""
    return _masks_of_keys(jax.random.split(key, (num_hidden.shape[0], k)), num_dims, num_hidden)


def _masks_of_keys(keys: Array, num_dims: int, num_hidden: Array) -> Array:
    """``[R, K, D]`` masks, ``keys[r, j]`` giving a uniform mask with ``num_hidden[r]`` hidden.

    Selection sampling (:func:`mamjax.masks.selection_masks`), not a sort per mask: drawing the
    ``D * K`` masks of a cumulative estimate through ``jax.random.permutation`` took 131 ms of a
    ~175 ms batch-mean estimate at D = 200, K = 20 on a 2-core CPU; selection sampling 16-19 ms.
    """
    u = jax.vmap(jax.vmap(lambda kk: jax.random.uniform(kk, (num_dims,))))(keys)  # [R, K, D]
    return masks_lib.selection_masks(u, num_hidden[:, None])


_sample_masks = jax.jit(_sample_masks_impl, static_argnums=(1, 3))


def mask_bucket(num_masks: int) -> int:
    """The padded mask count for ``num_masks``: the smallest ``2^n`` or ``3 * 2^(n-1)`` >= it.

    The jitted estimators compile once per bucket, not once per mask count (1, 2, 3, 4, 6, 8, 12,
    16, 24, ...), at most 1.5x the masks' work.
    """
    if isinstance(num_masks, bool) or not isinstance(num_masks, (int, np.integer)) or num_masks < 1:
        raise ValueError(f"`num_masks` must be a positive int; got {num_masks!r}.")
    p = 1 << (int(num_masks) - 1).bit_length()  # smallest power of two >= num_masks
    return 3 * p // 4 if p >= 4 and 3 * p // 4 >= num_masks else p


def split_is_prefix_stable(key: PRNGKey) -> bool:
    """Whether ``split(key, n)[i]`` does not depend on ``n`` (threefry with ``jax_threefry_partitionable``).

    Bucketing draws the Monte Carlo masks from ``split(key, R * bucket)`` at the indices that
    ``split(key, (R, K))`` uses, which gives the same masks only then.
    """
    if not jax.config.jax_threefry_partitionable:
        return False
    impl = jax.random.key_impl(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else \
        jax.config.jax_default_prng_impl
    return "threefry" in str(impl)


def _sample_masks_valid(key: PRNGKey, num_dims: int, num_hidden: Array, k: int, num_valid: Array) -> Array:
    """``[R, k, D]`` masks whose first ``num_valid`` per row are ``_sample_masks(key, D, num_hidden, num_valid)``.

    ``split(key, (R, K))[r, j]`` is ``split(key, R * K)[r * K + j]`` and, with a prefix-stable split,
    that entry of any longer split; padding slots reuse the row's first key (they carry no weight).
    """
    r = num_hidden.shape[0]
    flat = jax.random.split(key, r * k)
    j = jnp.arange(k)[None, :]
    idx = jnp.arange(r)[:, None] * num_valid + jnp.where(j < num_valid, j, 0)
    return _masks_of_keys(flat[idx], num_dims, num_hidden)  # keys [R, k]


def map_mask_chunks(fn: Callable[[Array], Array], masks: Array, chunk: int) -> Array:
    """``fn(masks [c, D]) -> [..., c]`` over ``lax.map`` chunks of ``chunk`` of the ``[S, D]`` masks: ``[..., S]``."""
    n = masks.shape[0]
    if chunk >= n:
        return fn(masks)
    # Pad to a whole number of chunks (repeats of a valid mask, dropped below) instead of letting
    # ``lax.map(batch_size=...)`` vmap the remainder separately: that remainder is a second batched
    # call, independent of the scan, and XLA's CPU runtime may run both at once. jaxlib's batched
    # LAPACK kernels (Cholesky) split their batch over XLA's intra-op pool and block a pool thread
    # until the parts finish, so two of them running concurrently on a 2-thread pool wait for each
    # other forever (the D = 50 hang of issue 20, seen in gdb: both pool threads in
    # ``jax::ParallelBatchMap`` inside ``lapack_spotrf_ffi``).
    num_chunks = -(-n // chunk)
    pad = num_chunks * chunk - n
    padded = jnp.concatenate([masks, jnp.broadcast_to(masks[:1], (pad, masks.shape[1]))]) if pad else masks
    per_chunk = jax.lax.map(fn, padded.reshape(num_chunks, chunk, masks.shape[1]))  # [C, ..., chunk]
    per_chunk = jnp.moveaxis(per_chunk, 0, -2)  # [..., C, chunk]
    return per_chunk.reshape(per_chunk.shape[:-2] + (num_chunks * chunk,))[..., :n]


def _chunked_scores(cond_logpdf: CondLogpdf, x: Array, masks: Array, chunk: int) -> Array:
    """:func:`_scores` over ``[N, D]`` masks, vmapped within chunks of ``chunk`` masks (``lax.map``).

    One vmap over thousands of masks times a batch materialises ``[N, B, D]``
    intermediates that no longer fit in cache; chunks keep it one compiled call.
    """
    return map_mask_chunks(lambda m: _scores(cond_logpdf, x, m), masks, chunk)


def _auto_chunk(x_shape: tuple, num_masks: int, chunk_size: int | str | None) -> int:
    if chunk_size is None:
        return num_masks
    if chunk_size == "auto":
        per_mask = int(np.prod(x_shape))  # elements of one mask's batch of examples
        return max(1, min(num_masks, MASK_CHUNK_ELEMENTS // max(per_mask, 1)))
    if isinstance(chunk_size, (int, np.integer)) and chunk_size >= 1:
        return int(chunk_size)
    raise ValueError(f"`chunk_size` must be 'auto', None or a positive int; got {chunk_size!r}.")


def size_coefficients(num_hidden, num_dims: int) -> np.ndarray:
    """Coefficients ``c_r`` of the per-rate scores in the returned value ``sum_r c_r s_{M_r}``.

    The cumulative score is ``sum_{M=1..D} s_M``. A grid of R rates is a Riemann sum of it,
    ``(D / R) sum_r s_{M_r}``, biased unless the sizes are evenly spread over 1..D (``s_M``
    falls with M, so a grid that over-weights small or large sizes is off by ``D * mean_r s_{M_r}
    - sum_M s_M``). When the grid covers every size 1..D (after rounding, duplicates allowed),
    the exact cumulative form is used instead: each size counts once, its duplicates averaged
    (``c_r = 1 / #{r': M_r' = M_r}``).
    """
    m = np.asarray(num_hidden)
    uniq, inv, counts = np.unique(m, return_inverse=True, return_counts=True)
    if uniq.size == num_dims:
        return 1.0 / counts[inv]
    return np.full(m.shape, num_dims / m.size)


def uniform_size_masks(key: PRNGKey, num_dims: int, num_masks: int) -> Array:
    """``[S, D]`` masks whose sizes are drawn uniformly from 1..D, then a uniform mask of that size.

    A mask of a uniformly drawn size M is a draw from ``s_M``'s mask distribution with probability
    ``1/D``, so ``D * mean_s score(mask_s)`` is an **unbiased** estimate of the cumulative score
    ``sum_M s_M = log p(x)`` at the cost of S masks instead of ``D * K`` (the training objective
    ``"uniform"`` of :mod:`mamjax.lml.objectives`). ``num_dims`` and ``num_masks`` are static.
    """
    if not isinstance(num_masks, (int, np.integer)) or num_masks < 1:
        raise ValueError(f"`num_masks` must be a positive int; got {num_masks!r}.")
    k_size, k_mask = jax.random.split(key)
    sizes = jax.random.randint(k_size, (num_masks,), 1, num_dims + 1)
    return jax.vmap(masks_lib.mask_by_count, in_axes=(0, None, 0))(jax.random.split(k_mask, num_masks), num_dims,
                                                                    sizes)


def draw_masks(key: PRNGKey, plan_masks: Array, is_exact: Array, num_hidden: Array,
               num_valid: Array | None = None) -> Array:
    """``[R, K, D]`` masks: enumerated rows of the plan, uniform random masks of each size elsewhere.

    ``num_valid`` (traced int, from :func:`bucketed_plan_arrays`): only the first ``num_valid``
    Monte Carlo slots are real, drawn as the unpadded plan of ``num_valid`` masks draws them.
    """
    r, k, num_dims = plan_masks.shape
    if num_valid is None:
        sampled = _sample_masks(key, num_dims, num_hidden, k)
    else:
        sampled = _sample_masks_valid(key, num_dims, num_hidden, k, num_valid)
    return jnp.where(is_exact[:, None, None], plan_masks, sampled)


def slot_mean_stderr(s: Array, num_valid: Array | None = None) -> tuple[Array, Array]:
    """Mean over the last axis of ``s [..., K]`` and its standard error (``inf`` for one slot).

    ``num_valid`` (traced int): only the first ``num_valid`` slots count; the rest are padding.
    """
    k = s.shape[-1]
    if num_valid is None:
        mean = jnp.mean(s, axis=-1)
        if k == 1:
            return mean, jnp.full(mean.shape, jnp.inf, s.dtype)
        return mean, jnp.sqrt(jnp.var(s, axis=-1, ddof=1) / k)
    valid = jnp.arange(k) < num_valid
    kv = num_valid.astype(s.dtype)
    mean = jnp.sum(jnp.where(valid, s, 0.0), axis=-1) / kv
    ss = jnp.sum(jnp.where(valid, (s - mean[..., None]) ** 2, 0.0), axis=-1)
    return mean, jnp.where(num_valid > 1, jnp.sqrt(ss / jnp.maximum(kv - 1.0, 1.0) / kv), jnp.inf)


def reduce_scores(s: Array, weights: Array, is_exact: Array, num_hidden: Array, coef: Array,
                  num_valid: Array | None = None) -> MPTEstimate:
    """Per-mask scores ``[..., R, K]`` -> :class:`MPTEstimate` (``value = sum_r coef_r s_{M_r}``).

    ``num_valid``: Monte Carlo slots beyond it are padding (zero weight, left out of the stderr).
    """
    per_size = jnp.einsum("...rk,rk->...r", s, weights.astype(s.dtype))  # [..., R]
    # Monte Carlo standard error of the mean of K iid masks; 0 for enumerated sizes.
    _, se = slot_mean_stderr(s, num_valid)
    se = jnp.where(jnp.broadcast_to(is_exact, se.shape), 0.0, se)
    coef = coef.astype(s.dtype)
    value = per_size @ coef
    stderr = jnp.sqrt((se**2) @ coef**2)
    return MPTEstimate(value, stderr, per_size, se, num_hidden, is_exact)


def _estimate(cond_logpdf: CondLogpdf, chunk: int, x: Array, key: PRNGKey, plan_masks: Array, weights: Array,
              is_exact: Array, num_hidden: Array, coef: Array, num_valid: Array | None = None) -> MPTEstimate:
    num_dims = x.shape[-1]
    r, k, _ = plan_masks.shape
    masks = draw_masks(key, plan_masks, is_exact, num_hidden, num_valid)
    s = _chunked_scores(cond_logpdf, x, masks.reshape(r * k, num_dims), chunk)  # [..., R*K]
    return reduce_scores(s.reshape(s.shape[:-1] + (r, k)), weights, is_exact, num_hidden, coef, num_valid)


def _plan_sizes(num_dims: int, rates, num_hidden) -> np.ndarray:
    if rates is not None and num_hidden is not None:
        raise ValueError("pass either `rates` or `num_hidden`, not both.")
    return rates_to_num_hidden(rates, num_dims) if num_hidden is None else _check_num_hidden(num_hidden, num_dims)


@functools.lru_cache(maxsize=64)
def _cached_plan(num_dims: int, num_masks_per_rate: int, sizes: tuple, exact, bucketed: bool):
    """Plan and device arrays per (D, K, sizes, exact, bucketing): a repeated call re-uses them
    instead of rebuilding the plan and copying five arrays to the device (~1.8 ms per call at D = 10)."""
    plan = mpt_masks(num_dims, num_masks_per_rate, np.asarray(sizes, np.int32), exact)
    masks, weights = plan.masks, plan.weights
    tail = ()
    if bucketed:
        k = masks.shape[1]
        pad = mask_bucket(k) - k
        masks = np.concatenate([masks, np.repeat(masks[:, :1], pad, axis=1)], axis=1)
        weights = np.concatenate([weights, np.zeros((weights.shape[0], pad))], axis=1)
        tail = (np.int32(k),)
    for a in plan:
        a.flags.writeable = False  # shared by every call with this plan
    with jax.ensure_compile_time_eval():  # concrete device arrays even when first built under a trace
        arrays = (jnp.asarray(masks), jnp.asarray(weights), jnp.asarray(plan.exact), jnp.asarray(plan.num_hidden),
                  jnp.asarray(size_coefficients(plan.num_hidden, num_dims))) + tuple(jnp.asarray(t) for t in tail)
    return plan, arrays


def _plan_call(num_dims: int, num_masks_per_rate: int, rates, num_hidden, exact, bucketed: bool):
    sizes = _plan_sizes(num_dims, rates, num_hidden)
    if not isinstance(num_masks_per_rate, (int, np.integer)) or isinstance(num_masks_per_rate, bool) \
            or num_masks_per_rate < 1:
        raise ValueError(f"`num_masks_per_rate` must be a positive int; got {num_masks_per_rate!r}.")
    if not (exact == "auto" if isinstance(exact, str) else isinstance(exact, (bool, np.bool_))):
        raise ValueError(f"`exact` must be 'auto', True or False; got {exact!r}.")
    return _cached_plan(int(num_dims), int(num_masks_per_rate), tuple(int(m) for m in sizes), 
                        exact if isinstance(exact, str) else bool(exact), bucketed)


def plan_arrays(num_dims: int, num_masks_per_rate: int, rates, num_hidden, exact) -> tuple[MPTMasks, tuple]:
    """Validated sizes -> (plan, device arrays ``(masks, weights, exact, num_hidden, coef)``)."""
    return _plan_call(num_dims, num_masks_per_rate, rates, num_hidden, exact, False)


def bucketed_plan_arrays(num_dims: int, num_masks_per_rate: int, rates, num_hidden, exact,
                         key: PRNGKey) -> tuple[MPTMasks, tuple]:
    """:func:`plan_arrays` with the mask axis padded to :func:`mask_bucket` (for the library's own jit).

    Returns ``(plan, arrays + (num_valid,))``: padding slots are copies of a valid mask with weight 0
    and ``num_valid`` (an int32 array, not a static value) the real Monte Carlo count, so one compiled
    function serves every mask count of a bucket with the unpadded result (to rounding). Falls back to
    the unpadded arrays with ``num_valid=None`` where the key's split is not prefix-stable.
    """
    if not split_is_prefix_stable(key):
        plan, arrays = plan_arrays(num_dims, num_masks_per_rate, rates, num_hidden, exact)
        return plan, arrays + (None,)
    return _plan_call(num_dims, num_masks_per_rate, rates, num_hidden, exact, True)


def call_plan_arrays(num_dims: int, num_masks_per_rate: int, rates, num_hidden, exact, key: PRNGKey,
                     traced: bool) -> tuple[MPTMasks, tuple]:
    """The arrays an estimator runs on: inside a caller's jit (``traced``) :func:`plan_arrays` with its
    static K and no padding work; for the library's own jit :func:`bucketed_plan_arrays` (one
    compilation per mask-count bucket)."""
    if traced:
        return plan_arrays(num_dims, num_masks_per_rate, rates, num_hidden, exact)
    return bucketed_plan_arrays(num_dims, num_masks_per_rate, rates, num_hidden, exact, key)


_estimate_jit = jax.jit(_estimate, static_argnums=(0, 1))


def cumulative_mpt(cond_logpdf: CondLogpdf, x: Array, key: PRNGKey, num_masks_per_rate: int,
                   rates: Sequence[float] | None = None, *, num_hidden: Sequence[int] | None = None,
                   exact: bool | str = "auto", chunk_size: int | str | None = "auto") -> MPTEstimate:
    """Cumulative masked pre-training estimate of ``log p(x)``, one jitted call.

    Evaluates ``s_M`` for every requested mask size with masks and sizes both
    vmapped (one ``[R * K]`` batch of masks, no Python loop over rates). A size
    with ``C(D, M) <= K`` is enumerated exactly (masks precomputed in numpy,
    padded to K with zero weights); other sizes use K uniformly random masks of
    that size (Monte Carlo, unbiased). With the default ``rates=None`` (all sizes
    ``M = 1..D``) the value is the cumulative MPT ``sum_M s_M``, equal in expectation
    (exactly, if every size is enumerated) to ``log p(x)``. A grid of rates that
    covers every size after rounding gives the same exact cumulative form (each size
    once, duplicates averaged). Any other grid gives the Riemann sum
    ``D * mean_r s_{M_r}``, which is **biased** for ``log p(x)`` (by ``D mean_r s_{M_r}
    - sum_M s_M``; see :func:`size_coefficients`); e.g. ``rates=[0.15]`` is the
    fixed-rate objective ``D s_M``.

    Args:
      cond_logpdf: ``(x [D], mask [D] bool) -> [D]``, ``log p(x_j | x_O)`` at hidden j.
        Pass the same callable across calls to reuse the compiled function
        (or call this inside your own ``jax.jit``).
      x: ``[D]`` or ``[B, D]`` (masks shared across the batch).
      key: PRNG key for the Monte Carlo masks.
      num_masks_per_rate: K, static.
      rates: mask rates in (0, 1] (M = round(rate * D)); ``None`` = all sizes 1..D.
      num_hidden: alternatively, the mask sizes M directly (exclusive with ``rates``).
      exact: ``"auto"``, ``True`` (enumerate all) or ``False`` (always Monte Carlo).
      chunk_size: masks vmapped at once inside the single call (``lax.map`` over chunks);
        ``"auto"`` keeps ``chunk x B x D`` near ``MASK_CHUNK_ELEMENTS`` (one mask at a time for
        callables marked ``batched_lapack``, e.g. :func:`mvn_conditional_logpdf`), ``None`` vmaps all
        ``R * K`` masks at once. Results do not depend on it.

    Returns:
      :class:`MPTEstimate` (value, stderr, per-size scores and stderrs, sizes, exact flags).
    """
    x = jnp.asarray(x)
    if x.ndim not in (1, 2):
        raise ValueError(f"`x` must have shape [D] or [B, D]; got {tuple(x.shape)}.")
    traced = _is_traced(x, key)
    plan, arrays = call_plan_arrays(x.shape[-1], num_masks_per_rate, rates, num_hidden, exact, key, traced)
    if chunk_size == "auto" and getattr(cond_logpdf, "batched_lapack", False):
        chunk_size = 1  # see mvn_conditional_logpdf: batched LAPACK kernels can deadlock XLA's CPU pool
    chunk = _auto_chunk(tuple(x.shape), arrays[0].shape[0] * arrays[0].shape[1], chunk_size)
    fn = _estimate if traced else _estimate_jit
    return fn(cond_logpdf, chunk, x, key, *arrays)


def _one_rate(cond_logpdf: CondLogpdf, x: Array, masks: Array, weights: Array) -> tuple[Array, Array]:
    s = _scores(cond_logpdf, x, masks)
    k = masks.shape[0]
    se = jnp.std(s, axis=-1, ddof=1) / math.sqrt(k) if k > 1 else jnp.full(s.shape[:-1], jnp.inf, s.dtype)
    return s @ weights.astype(s.dtype), se


_one_rate_jit = jax.jit(_one_rate, static_argnums=(0,))


def cumulative_mpt_loop(cond_logpdf: CondLogpdf, x: Array, key: PRNGKey, num_masks_per_rate: int,
                        rates: Sequence[float] | None = None, *, num_hidden: Sequence[int] | None = None,
                        exact: bool | str = "auto") -> MPTEstimate:
    """Reference implementation: a Python loop over mask sizes (as in the paper's code).

    Uses exactly the masks :func:`cumulative_mpt` draws for the same ``key``, so the
    two agree to rounding; exists for tests and the benchmark, not for use.
    """
    x = jnp.asarray(x)
    num_dims = x.shape[-1]
    sizes = rates_to_num_hidden(rates, num_dims) if num_hidden is None else _check_num_hidden(num_hidden, num_dims)
    plan = mpt_masks(num_dims, num_masks_per_rate, sizes, exact)
    k = plan.masks.shape[1]
    sampled = _sample_masks(key, num_dims, jnp.asarray(plan.num_hidden), k)
    per_size, ses = [], []
    for r in range(sizes.shape[0]):
        masks = jnp.asarray(plan.masks[r]) if plan.exact[r] else sampled[r]
        score, se = _one_rate_jit(cond_logpdf, x, masks, jnp.asarray(plan.weights[r]))
        per_size.append(score)
        ses.append(jnp.zeros_like(se) if plan.exact[r] else se)
    per_size = jnp.stack(per_size, axis=-1)
    se = jnp.stack(ses, axis=-1)
    coef = jnp.asarray(size_coefficients(plan.num_hidden, num_dims), per_size.dtype)
    return MPTEstimate(per_size @ coef, jnp.sqrt(se**2 @ coef**2), per_size, se,
                       jnp.asarray(plan.num_hidden), jnp.asarray(plan.exact))
