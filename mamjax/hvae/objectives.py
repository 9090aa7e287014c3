"""Bounds, sampling and the training loss of :mod:`mamjax.hvae`, as pure functions.

Everything takes the pure ``apply(params, state, method, ...)`` from
:func:`mamjax.hvae.build` (``mamjax.nn.functional_with_state`` of an :class:`HVAE`).

Two estimators of ``log p(x)``:

* ``elbo``: ``E_q[log p(x | z_1)] - sum_l E_q[KL(q(z_l | z_{l+1}, x) || p(z_l | z_{l+1}))]``
  with one path-wise sample of the chain and each conditional KL in closed form.
  This is the training objective: its gradient is unbiased. (Differentiating
  ``log p(z) - log q(z)`` at a rectified sample instead would be biased: that
  integrand jumps where a unit leaves zero, and path-wise gradients miss the jump.)
* ``iwae_bound``: ``log (1/K) sum_k p(x, z_k) / q(z_k | x)``, ``z_k ~ q`` (Burda et al.
  2016), computed with ``logsumexp``. Rectified densities are taken w.r.t.
  ``delta_0 + Lebesgue`` for both ``p`` and ``q``, so the weights are exact and the
  bound is valid; it is used for evaluation, not training. ``E[iwae_bound(K)]``
  rises with ``K`` to ``log p(x)``; ``K = 1`` has the ELBO's expectation.

With batch normalisation, ``train=True`` normalises with the batch and returns
updated running averages; evaluation (``train=False``, the default here) uses the
running averages, so each example's bound does not depend on its batch-mates (the
K importance samples are laid out along the batch axis, which is only valid for
this reason).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mamjax.metrics import iw_bound
from mamjax import progress as progress_lib

Array = jax.Array
Apply = Callable[..., Any]

__all__ = ["elbo", "log_weights", "iwae_bound", "sample", "reconstruct", "make_loss_fn", "kl_warmup",
           "with_kl_warmup", "flatten_images", "evaluate"]


def flatten_images(images: Array) -> Array:
    """``[B, H, W]`` (or ``[B, D]``) binary images -> float32 ``[B, H*W]``."""
    images = jnp.asarray(images)
    return images.reshape(images.shape[0], -1).astype(jnp.float32)


def elbo(apply: Apply, params, state, x: Array, key: jax.Array, *, train: bool = False, shuffle=None):
    """Per-example ELBO (nats) with closed-form conditional KLs.

    Args:
      x: ``[B, D]`` binary.
      shuffle: optional ``[B]`` permutation: each posterior sees ``z_{l+1}`` permuted
        across the batch (the top-down check of :meth:`HVAE.infer`); still a valid bound.

    Returns:
      ``(elbo [B], out, new_state)`` with ``out`` the dict of :meth:`HVAE.infer`.
    """
    if shuffle is None:
        out, new_state = apply(params, state, "infer", x, key, train=train)
    else:
        out, new_state = apply(params, state, "infer", x, key, train=train, shuffle=shuffle)
    return out["log_px"] - jnp.sum(out["kl"], axis=-1), out, new_state


def log_weights(apply: Apply, params, state, x: Array, key: jax.Array, num_samples: int) -> Array:
    """``log p(x, z_k) - log q(z_k | x)`` for ``K`` posterior samples (evaluation mode).

    The K samples are stacked along the batch axis (``[K * B, D]``), valid because
    batch norm uses running averages here.

    Returns:
      ``[K, B]`` log importance weights.
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1; got {num_samples}.")
    B = x.shape[0]
    xr = jnp.tile(x, (num_samples, 1))
    out, _ = apply(params, state, "infer", xr, key, train=False)
    lw = out["log_px"] + jnp.sum(out["log_p"] - out["log_q"], axis=-1)
    return lw.reshape(num_samples, B)


def iwae_bound(apply: Apply, params, state, x: Array, key: jax.Array, num_samples: int) -> Array:
    """Importance-weighted bound ``L_K`` per example (nats), ``[B]``; stable log-mean-exp."""
    return iw_bound(log_weights(apply, params, state, x, key, num_samples), axis=0)


def sample(apply: Apply, params, state, key: jax.Array, num: int) -> Array:
    """Pixel probabilities ``sigmoid(logits)`` of ``num`` ancestral samples, ``[num, D]``."""
    out, _ = apply(params, state, "generate", key, num=num, train=False)
    return jax.nn.sigmoid(out["logits"])


def reconstruct(apply: Apply, params, state, x: Array, key: jax.Array) -> Array:
    """``p(x' = 1 | z_1)`` with ``z ~ q(z | x)``: ``[B, D]`` probabilities."""
    out, _ = apply(params, state, "infer", x, key, train=False)
    return jax.nn.sigmoid(out["logits"])


def kl_warmup(step, warmup_steps: int):
    """KL weight ``beta = min(1, step / warmup_steps)`` (1 when ``warmup_steps == 0``)."""
    if warmup_steps <= 0:
        return jnp.float32(1.0)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def with_kl_warmup(stream: Callable[[int], dict], warmup_steps: int) -> Callable[[int], dict]:
    """Wraps ``stream(step) -> batch`` to add ``batch["beta"]``: ``kl_warmup(step, warmup_steps)`` per example.

    ``beta`` is ``[B]`` float32 (the same value in every row) so that the batch shards over a data mesh
    like the images (:func:`mamjax.sharding.shard_batch` splits every leaf on its leading axis). The
    weight is a pure function of the step, so resumed runs stay bit-identical.
    """
    def wrapped(step: int) -> dict:
        batch = stream(step)
        if not isinstance(batch, dict):
            batch = {"image": batch}
        rows = len(next(iter(batch.values())))
        return {**batch, "beta": np.full((rows,), kl_warmup(step, warmup_steps), np.float32)}
    return wrapped


def make_loss_fn(apply: Apply, *, image_key: str = "image", free_bits: float = 0.0, iwae_k: int = 1):
    """The stateful loss for :func:`mamjax.train.make_train_step` (``stateful=True``).

    ``iwae_k == 1``: ``loss = -mean_b [log p(x_b | z_1) - beta * sum_l max(KL_l, free_bits)]``
    with ``beta`` the mean of ``batch.get("beta", 1)`` (KL warm-up, see :func:`with_kl_warmup`) and
    ``KL_l`` the batch-mean closed-form KL of layer ``l``; ``free_bits`` (nats per
    stochastic layer, IAF's "free bits" per group) stops pushing a layer's KL below
    that floor. ``iwae_k > 1``: ``loss = -mean_b L_K`` (Burda et al.) with the K samples
    along the batch axis; beta and free bits do not apply. For rectified latents the
    path-wise gradient of ``L_K`` misses the jump of ``log q`` where a unit leaves zero
    (biased; see the module docstring): prefer it for Gaussian latents.

    Metrics: ``elbo`` (always with beta = 1, nats per image of the binarized training
    batch), ``log_px``, ``kl_l{i}`` and ``zero_frac_l{i}`` per layer ``i = 1..L``
    (bottom to top), and ``iwae`` when ``iwae_k > 1``.

    Returns:
      ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))``.
    """
    if free_bits < 0 or not np.isfinite(free_bits):
        raise ValueError(f"`free_bits` must be a finite number >= 0; got {free_bits!r}.")
    if not isinstance(iwae_k, int) or iwae_k < 1:
        raise ValueError(f"`iwae_k` must be an int >= 1; got {iwae_k!r}.")

    def loss_fn(params, model_state, batch, key):
        images = batch[image_key] if isinstance(batch, dict) else batch
        x = flatten_images(images)
        beta = jnp.mean(jnp.asarray(batch.get("beta", 1.0))) if isinstance(batch, dict) else 1.0  # [B] or scalar
        if iwae_k > 1:
            B = x.shape[0]
            out, new_state = apply(params, model_state, "infer", jnp.tile(x, (iwae_k, 1)), key, train=True)
            lw = (out["log_px"] + jnp.sum(out["log_p"] - out["log_q"], axis=-1)).reshape(iwae_k, B)
            iw = jnp.mean(iw_bound(lw, axis=0))
            bound = out["log_px"] - jnp.sum(out["kl"], axis=-1)
            loss = -iw
        else:
            bound, out, new_state = elbo(apply, params, model_state, x, key, train=True)
        kl = jnp.mean(out["kl"], axis=0)
        log_px = jnp.mean(out["log_px"])
        if iwae_k == 1:
            loss = -(log_px - beta * jnp.sum(jnp.maximum(kl, free_bits)))
        metrics = {"elbo": jnp.mean(bound), "log_px": log_px}
        if iwae_k > 1:
            metrics["iwae"] = iw
        for i in range(kl.shape[0]):
            metrics[f"kl_l{i + 1}"] = kl[i]
            metrics[f"zero_frac_l{i + 1}"] = jnp.mean(out["zero_frac"][:, i])
        return loss, (metrics, new_state)
    return loss_fn


ACTIVE_THRESHOLD = 0.01  # Burda et al. (2016): a unit is active if Cov_x(E_q[u | x]) > 0.01


@functools.lru_cache(maxsize=32)
def _eval_fns(apply: Apply, num_samples: int):
    @jax.jit
    def one(params, state, x, key):
        k1, k2 = jax.random.split(key)
        bound, out, _ = elbo(apply, params, state, x, k1, train=False)
        if num_samples > 0:
            B = x.shape[0]
            o, _ = apply(params, state, "infer", jnp.tile(x, (num_samples, 1)), k2, train=False)
            lw = (o["log_px"] + jnp.sum(o["log_p"] - o["log_q"], axis=-1)).reshape(num_samples, B)
            iw = iw_bound(lw, axis=0)
            means = tuple(jnp.mean(m.reshape(num_samples, B, -1), axis=0) for m in o["q_mean"])
        else:
            iw, means = bound, out["q_mean"]
        return bound, iw, out["kl"], out["zero_frac"], means
    return one


def evaluate(apply: Apply, params, state, images, key: jax.Array, *, num_samples: int = 100,
             batch_size: int = 100, progress: bool | None = None) -> dict[str, float]:
    """Test-set averages of the ELBO, ``L_K`` (``K = num_samples``), per-layer KL, sparsity and activity.

    Runs in evaluation mode (batch norm running averages); batches of
    ``batch_size`` images (the last one padded and the padding ignored); the K
    samples of a batch are one ``[K * batch_size, D]`` pass, so choose
    ``batch_size`` to bound memory.

    Active units (Burda et al. 2016): unit ``u`` of layer ``l`` is active when the
    variance over test images of ``E_q[z_lu | x]`` exceeds 0.01. ``E_q[z_lu | x]`` is
    estimated by the mean of ``q(z_l | z_{l+1}, x)`` averaged over the K samples of
    the chain above (one sample when ``num_samples == 0``).

    Args:
      images: ``[N, H, W]`` or ``[N, D]`` binary images (numpy or jax), values in {0, 1}.
      num_samples: K of the importance-weighted bound (0 to skip it).
      progress: a progress bar over the batches (default: :func:`mamjax.progress.enabled`;
        a K = 5000 evaluation of the test set takes minutes on a CPU).

    Returns:
      dict of floats: ``elbo``, ``iwae_{K}``, ``kl_l{i}``, ``zero_frac_l{i}`` (nats per image)
      and ``active_l{i}`` (number of active units) for layers ``i = 1..L``.
    """
    if num_samples < 0:
        raise ValueError(f"`num_samples` must be >= 0; got {num_samples}.")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1; got {batch_size}.")
    images = np.asarray(images)
    if images.ndim < 2 or images.shape[0] == 0 or images[0].size == 0:
        raise ValueError(f"`images` must be a non-empty [N, H, W] or [N, D] array; got shape {images.shape}.")
    x = images.reshape(len(images), -1).astype(np.float32)
    if not np.all((x == 0) | (x == 1)):
        raise ValueError("`images` must be binary (values in {0, 1}); binarize first "
                         "(e.g. mamjax.data.dynamic_binarize).")
    n = x.shape[0]
    batch_size = min(int(batch_size), n)  # no padding beyond the data
    fn = _eval_fns(apply, int(num_samples))
    sums, msum, msq = None, None, None
    starts = range(0, n, batch_size)
    for i, start in enumerate(progress_lib.bar(starts, desc=f"eval K={num_samples}", progress=progress)):
        chunk = x[start:start + batch_size]
        m = chunk.shape[0]
        if m < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - m, x.shape[1]), np.float32)])
        b, iw, kl, zf, means = fn(params, state, chunk, jax.random.fold_in(key, i))
        b, iw, kl, zf = (np.asarray(a, np.float64)[:m] for a in (b, iw, kl, zf))
        means = [np.asarray(a, np.float64)[:m] for a in means]
        part = [b.sum(), iw.sum(), kl.sum(axis=0), zf.sum(axis=0)]
        sums = part if sums is None else [s + p for s, p in zip(sums, part)]
        ms, mq = [a.sum(0) for a in means], [np.square(a).sum(0) for a in means]
        msum = ms if msum is None else [s + p for s, p in zip(msum, ms)]
        msq = mq if msq is None else [s + p for s, p in zip(msq, mq)]
    res = {"elbo": sums[0] / n}
    if num_samples > 0:
        res[f"iwae_{num_samples}"] = sums[1] / n
    for i in range(len(sums[2])):
        res[f"kl_l{i + 1}"] = sums[2][i] / n
        res[f"zero_frac_l{i + 1}"] = sums[3][i] / n
        var = msq[i] / n - np.square(msum[i] / n)
        res[f"active_l{i + 1}"] = int(np.sum(var > ACTIVE_THRESHOLD))
    return {k: (v if isinstance(v, int) else float(v)) for k, v in res.items()}
