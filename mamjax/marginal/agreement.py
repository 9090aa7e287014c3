"""The paper's marginal-agreement protocol (Liu, Ramadge, Adams 2024, Sec. 6.1; official ``eval_mam_quality``).

Pooled correlations over random subsets of random sizes are dominated by the subset size: a
"model" that knows only |S| already ranks such pairs well. The paper instead compares the two
models on *full* images that differ in their content:

1. for each test image draw one random ordering sigma and, for each censor count n in
   (100, 400, 700) for 28x28, hide the last n positions of sigma and re-sample them with the
   AO-ARM (:func:`censor_and_complete`): M completed images per test image;
2. score every completed image with the model under test (MaM ``f(x)``) and with the reference
   (AO-ARM-E over 5 orderings);
3. per test image, sort the completions by the reference score and drop those within
   ``threshold`` (5) nats of the previous kept one (:func:`drop_near_duplicates`);
4. Spearman and Pearson correlation of the two scores over the kept completions of each image
   (images with fewer than two kept completions are skipped), averaged over images weighted by
   the number kept (:func:`per_image_correlations`).

Controls through the same :func:`per_image_correlations`: a score that knows only |S|
(:func:`size_only_scores`; constant on full images, so it ranks nothing: correlation 0 by the
convention below) and one that knows only how many pixels were censored (the protocol's own
structure: :func:`censor_count_scores`), so a reader sees what the metric gives for free.

Convention: the correlation of a constant score vector is undefined (scipy returns NaN); it is
counted as 0 here (no ranking information), and said so wherever it is printed.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import masks as masks_lib
from mamjax.marginal import encoding
from mamjax.marginal import sampling

Array = jax.Array
PRNGKey = jax.Array
Params = Any

__all__ = ["PAPER_CENSOR_COUNTS", "scaled_censor_counts", "censor_and_complete", "drop_near_duplicates",
           "per_image_correlations", "size_only_scores", "censor_count_scores"]

PAPER_CENSOR_COUNTS = (100, 400, 700)  # of D = 784 (28x28 binarized MNIST)
_PAPER_DIMS = 784


def scaled_censor_counts(num_dims: int, counts: Sequence[int] = PAPER_CENSOR_COUNTS,
                         paper_dims: int = _PAPER_DIMS) -> tuple[int, ...]:
    """The paper's censor counts at the same fractions of D (exactly the paper's at D = ``paper_dims``).

    E.g. D = 196 (14x14) gives (25, 100, 175); text8's (50, 100, 150, 200) of ``paper_dims`` = 250
    characters become (6, 13, 19, 26) at 32.
    """
    if isinstance(num_dims, bool) or not isinstance(num_dims, (int, np.integer)) or num_dims < 2:
        raise ValueError(f"`num_dims` must be an int >= 2; got {num_dims!r}.")
    if isinstance(paper_dims, bool) or not isinstance(paper_dims, (int, np.integer)) or paper_dims < 2:
        raise ValueError(f"`paper_dims` must be an int >= 2; got {paper_dims!r}.")
    return tuple(int(min(num_dims - 1, max(1, round(c * num_dims / paper_dims)))) for c in counts)


def _check_counts(counts, num_dims: int) -> tuple[int, ...]:
    counts = tuple(counts)
    if not counts or any(isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 1 <= c <= num_dims
                         for c in counts):
        raise ValueError(f"`num_censored` must be a non-empty sequence of ints in [1, {num_dims}]; got {counts!r}.")
    return tuple(int(c) for c in counts)


def censor_and_complete(cond_apply: Callable, params: Params, x: Array, key: PRNGKey,
                        num_censored: Sequence[int] = PAPER_CENSOR_COUNTS) -> tuple[Array, Array]:
    """Censors the last n positions of one random ordering per image and re-samples them with p_phi.

    As the official code: the same ordering sigma serves every censor count of an image, so the
    completions of one image are nested (n = 100 hides a subset of what n = 400 hides).

    Args:
      cond_apply: conditional network ``(params, x [B, D], mask [B, D]) -> logits [B, D, K]``.
      params: its parameters.
      x: ``[B, D] int`` test images.
      key: PRNG key (orderings and draws).
      num_censored: the M censor counts, each in ``[1, D]`` (static).

    Returns:
      ``(completions [B, M, D] int, observed [B, M, D] bool)``: completion m of image b hides
      ``num_censored[m]`` positions (``observed`` False there) and fills them by ancestral sampling
      in sigma's order.
    """
    encoding.check_partial(x, jnp.ones(x.shape, bool))
    batch, num_dims = x.shape
    counts = _check_counts(num_censored, num_dims)
    k_order, k_fill = jax.random.split(key)
    orders = jax.vmap(masks_lib.random_ordering, in_axes=(0, None))(jax.random.split(k_order, batch), num_dims)
    observed = jnp.stack([jax.vmap(masks_lib.ordering_mask, in_axes=(0, None))(orders, num_dims - n)
                          for n in counts], axis=1)  # [B, M, D]
    flat_x = jnp.repeat(x, len(counts), axis=0)
    flat_obs = observed.reshape(-1, num_dims)
    comp = sampling.conditional_sample(cond_apply, params, flat_x, flat_obs, k_fill, num_steps=max(counts))
    return comp.reshape(batch, len(counts), num_dims), observed


def drop_near_duplicates(ref_scores: Array, threshold: float = 5.0) -> Array:
    """Keep-mask of the official ``preprocess_logp``: sorted by score, keep one per ``threshold`` nats.

    The highest-scoring completion is kept; going down the sorted scores, the next one is kept
    when it lies more than ``threshold`` below the last kept one.

    Args:
      ref_scores: ``[..., M]`` reference log-likelihoods of the M completions of each image.
      threshold: nats (paper: 5).

    Returns:
      ``[..., M] bool`` kept completions (at least one per image).
    """
    ref_scores = jnp.asarray(ref_scores)
    if masks_lib.is_concrete(threshold) and not float(threshold) >= 0:
        raise ValueError(f"`threshold` must be >= 0 nats; got {threshold!r}.")
    order = jnp.argsort(-ref_scores, axis=-1)
    sorted_s = jnp.take_along_axis(ref_scores, order, axis=-1)

    def one(s):
        def body(last, v):
            keep = last - v > threshold
            return jnp.where(keep, v, last), keep
        _, keep_rest = jax.lax.scan(body, s[0], s[1:])
        return jnp.concatenate([jnp.ones((1,), bool), keep_rest])

    flat = sorted_s.reshape(-1, sorted_s.shape[-1])
    keep_sorted = jax.vmap(one)(flat).reshape(sorted_s.shape)
    inverse = jnp.argsort(order, axis=-1)
    return jnp.take_along_axis(keep_sorted, inverse, axis=-1)


def _masked_pearson(a: np.ndarray, b: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Row-wise Pearson over the kept entries; 0 where either kept vector is constant."""
    n = keep.sum(-1)
    safe_n = np.maximum(n, 1)
    ma = np.where(keep, a, 0).sum(-1) / safe_n
    mb = np.where(keep, b, 0).sum(-1) / safe_n
    da, db = np.where(keep, a - ma[:, None], 0), np.where(keep, b - mb[:, None], 0)
    va, vb = (da ** 2).sum(-1), (db ** 2).sum(-1)
    # relative tolerance: a constant row stays constant up to rounding of its mean
    tiny = 1e-12 * np.maximum(np.where(keep, a ** 2, 0).sum(-1), 1e-300)
    tiny_b = 1e-12 * np.maximum(np.where(keep, b ** 2, 0).sum(-1), 1e-300)
    ok = (va > tiny) & (vb > tiny_b)
    return np.where(ok, (da * db).sum(-1) / np.sqrt(np.where(ok, va * vb, 1.0)), 0.0)


def _masked_ranks(a: np.ndarray, keep: np.ndarray) -> np.ndarray:
    from scipy import stats

    filled = np.where(keep, a, np.nan)
    return stats.rankdata(filled, axis=-1, nan_policy="omit")  # ties share their mean rank, as spearmanr


def per_image_correlations(scores: Array, ref_scores: Array, keep: Array | None = None) -> dict:
    """Spearman / Pearson of ``scores`` vs ``ref_scores`` per image, averaged as the official code.

    Images with fewer than two kept completions are skipped; the mean is weighted by the number
    kept per image (the official ``update_epoch_metrics``). A constant kept vector counts as 0.

    Args:
      scores: ``[B, M]`` scores of the model under test (any monotone offset is irrelevant).
      ref_scores: ``[B, M]`` reference scores (AO-ARM-E).
      keep: ``[B, M] bool`` completions kept (default all).

    Returns:
      ``{"spearman", "pearson", "num_images" (used), "num_pairs" (kept completions of used images),
      "spearman_per_image" [B] and "pearson_per_image" [B] (NaN where skipped)}``.
    """
    a, b = np.asarray(scores, np.float64), np.asarray(ref_scores, np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"`scores` and `ref_scores` must both be [B, M]; got shapes {a.shape} and {b.shape}.")
    keep = np.ones(a.shape, bool) if keep is None else np.asarray(keep)
    if keep.shape != a.shape or keep.dtype != np.bool_:
        raise ValueError(f"`keep` must be a [B, M] bool array like `scores`; got {keep.dtype} {keep.shape}.")
    if not (np.all(np.isfinite(a[keep])) and np.all(np.isfinite(b[keep]))):
        raise ValueError("`scores` and `ref_scores` must be finite where kept.")
    n = keep.sum(-1)
    used = n >= 2
    pearson = _masked_pearson(a, b, keep)
    spearman = _masked_pearson(_masked_ranks(a, keep), _masked_ranks(b, keep), keep)
    w = np.where(used, n, 0).astype(np.float64)
    total = w.sum()

    def avg(v):
        return float((w * v).sum() / total) if total > 0 else float("nan")

    return {"spearman": avg(spearman), "pearson": avg(pearson), "num_images": int(used.sum()),
            "num_pairs": int(total), "spearman_per_image": np.where(used, spearman, np.nan),
            "pearson_per_image": np.where(used, pearson, np.nan)}


def size_only_scores(observed: Array) -> Array:
    """The |S|-only control ``-|S|`` (``f = -|S| * mean entropy``; correlations ignore the scale).

    Args:
      observed: ``[..., D] bool`` subsets scored.

    Returns:
      ``[...] float32``.
    """
    masks_lib.check_mask(observed, "observed")
    return -jnp.sum(observed, axis=-1).astype(jnp.float32)


def censor_count_scores(num_censored: Sequence[int], batch: int) -> Array:
    """The censor-count-only control: completion m scores ``-num_censored[m]``: ``[batch, M]``.

    It knows nothing about the images, only how much of each was re-sampled.
    """
    counts = jnp.asarray(tuple(num_censored), jnp.float32)
    return jnp.broadcast_to(-counts, (batch, counts.shape[0]))
