"""Sampling through the conditional network p_phi (ancestral, conditional, persistent Gibbs) and through
the marginal network alone (:func:`marginal_sample`, with the importance-sampling correction).

All samplers are written per example around one primitive -- fill a list of
positions one at a time from ``p_phi(x_i | x_S)`` with ``lax.scan`` -- and vmapped
over the batch with one key per example.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import masks as masks_lib
from mamjax.marginal import arm as arm_lib
from mamjax.marginal import encoding

Array = jax.Array
PRNGKey = jax.Array
Params = Any
CondApply = Callable[[Params, Array, Array], Array]

__all__ = ["fill_in_order", "sample", "conditional_sample", "gibbs_step", "marginal_sample", "importance_log_weights"]


def fill_in_order(cond_apply: CondApply, params: Params, x: Array, mask: Array, positions: Array,
                  key: PRNGKey, temperature: float = 1.0) -> Array:
    """Samples ``positions`` one after another, each from ``p_phi(x_i | x_observed-so-far)``.

    Positions already observed in ``mask`` are left as they are.

    Args:
      x: ``[D] int`` one example.
      mask: ``[D] bool`` observed at the start.
      positions: ``[T] int`` visiting order (T network calls).
      key: PRNG key.
      temperature: softmax temperature of each draw.

    Returns:
      ``[D] int`` with every visited position filled.

    Raises:
      ValueError: (eager, concrete ``positions`` only) when ``positions`` is not 1-D, holds
        ids outside ``[0, D)`` or repeats a position.
    """
    _check_positions(positions, x.shape[-1])

    def body(carry, inp):
        xc, mc = carry
        pos, k = inp
        logits = cond_apply(params, xc[None], mc[None])[0, pos]
        value = jax.random.categorical(k, logits / temperature).astype(xc.dtype)
        xc = xc.at[pos].set(jnp.where(mc[pos], xc[pos], value))
        return (xc, mc.at[pos].set(True)), None

    keys = jax.random.split(key, positions.shape[0])
    (x, _), _ = jax.lax.scan(body, (x, mask), (positions, keys))
    return x


def _check_positions(positions, num_dims: int) -> None:
    """Eager check (concrete input only): ``positions`` are distinct ids in ``[0, num_dims)``."""
    if getattr(positions, "ndim", None) != 1:
        raise ValueError(f"`positions` must be a 1-D array of positions; got shape {getattr(positions, 'shape', None)}.")
    masks_lib.check_token_ids(positions, num_dims, "positions")
    if masks_lib.is_concrete(positions) and np.unique(np.asarray(positions)).size != positions.size:
        raise ValueError(f"`positions` must not repeat a position; got {np.asarray(positions).tolist()[:10]}.")


def _check_inputs(cond_apply, params, x, mask, temperature=1.0) -> None:
    """Eager checks (concrete inputs only): ids in [0, K) with K from the network's output, temperature > 0."""
    if masks_lib.is_concrete(x):
        k = jax.eval_shape(cond_apply, params, x, jnp.ones(x.shape, bool)).shape[-1]
        masks_lib.check_token_ids(x if mask is None else jnp.where(mask, x, 0), k, "x")
    if masks_lib.is_concrete(temperature) and not np.all(np.asarray(temperature) > 0):
        raise ValueError(f"`temperature` must be > 0; got {temperature!r}.")


def conditional_sample(cond_apply: CondApply, params: Params, x: Array, mask: Array, key: PRNGKey, *,
                       num_steps: int | None = None, temperature: float = 1.0) -> Array:
    """Completes each partial observation by ancestral sampling of its hidden entries.

    The hidden positions are visited in a uniformly random order (a fresh one per
    example), which samples exactly from the AO-ARM's ``p_tau(x_hidden | x_S)``.

    Args:
      x: ``[B, D] int``; mask: ``[B, D] bool`` observed.
      key: PRNG key.
      num_steps: network calls per example, static; at least the largest number of hidden
        entries (default D).

    Returns:
      ``[B, D] int`` completions (observed entries unchanged).

    Observed ids in ``[0, K)`` and ``temperature > 0`` are checked eagerly when concrete.
    """
    encoding.check_partial(x, mask)
    _check_inputs(cond_apply, params, x, mask, temperature)
    batch, num_dims = x.shape
    num_steps = num_dims if num_steps is None else int(num_steps)

    def one(xi, mi, k):
        k_order, k_fill = jax.random.split(k)
        order = arm_lib.subset_first_ordering(masks_lib.random_ordering(k_order, num_dims), ~mi)
        return fill_in_order(cond_apply, params, xi, mi, order[:num_steps], k_fill, temperature)

    return jax.vmap(one)(x, mask, jax.random.split(key, batch))


def sample(cond_apply: CondApply, params: Params, key: PRNGKey, num_samples: int, num_dims: int, *,
           temperature: float = 1.0) -> Array:
    """Ancestral samples from the AO-ARM along random orderings: ``[num_samples, D] int32``."""
    for name, v in (("num_samples", num_samples), ("num_dims", num_dims)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    x = jnp.zeros((num_samples, num_dims), jnp.int32)
    return conditional_sample(cond_apply, params, x, jnp.zeros((num_samples, num_dims), bool), key,
                              temperature=temperature)


def gibbs_step(cond_apply: CondApply, params: Params, x: Array, key: PRNGKey, num_resample: int = 1) -> Array:
    """One block-Gibbs update of persistent chains ("censor and re-sample", as in MaM).

    For each chain: draw an ordering sigma, hide its last ``num_resample`` positions, and
    re-sample them in order from p_phi given the rest. If p_phi is self-consistent this
    leaves its joint distribution invariant.

    Args:
      x: ``[B, D] int`` chain states.
      key: PRNG key.
      num_resample: positions re-sampled per chain (static; that many network calls).

    Returns:
      ``[B, D]`` new chain states.
    """
    batch, num_dims = x.shape
    _check_inputs(cond_apply, params, x, None)  # chain states in [0, K), eagerly when concrete
    if not 1 <= num_resample <= num_dims:
        raise ValueError(f"`num_resample` must lie in [1, {num_dims}]; got {num_resample}.")

    def one(xi, k):
        k_order, k_fill = jax.random.split(k)
        sigma = masks_lib.random_ordering(k_order, num_dims)
        keep = masks_lib.ordering_mask(sigma, num_dims - num_resample)
        return fill_in_order(cond_apply, params, xi, keep, sigma[num_dims - num_resample:], k_fill)

    return jax.vmap(one)(x, jax.random.split(key, batch))


def marginal_sample(marg_apply: Callable, params: Params, key: PRNGKey, num_samples: int, num_dims: int,
                    num_classes: int = 2, ordering: Array | None = None) -> tuple[Array, Array]:
    """Ancestral samples from the marginal network alone (the paper's eq. 6), with their proposal log-density.

    Along a random ordering sigma (one per sample), position sigma(d) is drawn from
    ``q(x_i = v | x_<d) = softmax_v f_theta(x_<d, x_i = v)``: K network rows per step, D steps, no
    conditional network. If f_theta is self-consistent, q equals ``exp(f(x) - f(empty))``; otherwise
    :func:`importance_log_weights` corrects the samples towards it.

    Args:
      marg_apply: marginal network ``(params, x [B, D], mask [B, D]) -> [B]``.
      params: its parameters.
      key: PRNG key.
      num_samples, num_dims, num_classes: N, D, K.
      ordering: ``[D] int`` one ordering for every sample (e.g. ``jnp.arange(D)``, raster): q is then
        one distribution and ``log_q`` its exact log-density; None = a random ordering per sample
        (``log_q`` is then the density along the sample's own ordering, not the mixture's).

    Returns:
      ``(x [N, D] int32, log_q [N])``: the samples and ``log q(x)`` along their own ordering.
    """
    for name, v in (("num_samples", num_samples), ("num_dims", num_dims), ("num_classes", num_classes)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")
    values = jnp.arange(num_classes, dtype=jnp.int32)
    if ordering is not None:
        ordering = jnp.asarray(ordering)
        masks_lib._check_ordering(ordering)  # a 1-D integer permutation (checked when concrete)
        if ordering.shape != (num_dims,):
            raise ValueError(f"`ordering` must have shape ({num_dims},); got {ordering.shape}.")
        ordering = ordering.astype(jnp.int32)

    def one(k):
        k_order, k_draw = jax.random.split(k)
        order = masks_lib.random_ordering(k_order, num_dims) if ordering is None else ordering

        def body(carry, inp):
            xc, mc, lq = carry
            pos, kk = inp
            cand = jnp.broadcast_to(xc, (num_classes, num_dims)).at[:, pos].set(values)
            cmask = jnp.broadcast_to(mc.at[pos].set(True), (num_classes, num_dims))
            logq = jax.nn.log_softmax(marg_apply(params, cand, cmask))
            v = jax.random.categorical(kk, logq)
            return (xc.at[pos].set(v), mc.at[pos].set(True), lq + logq[v]), None

        init = (jnp.zeros((num_dims,), jnp.int32), jnp.zeros((num_dims,), bool), jnp.zeros((), jnp.float32))
        (x, _, lq), _ = jax.lax.scan(body, init, (order, jax.random.split(k_draw, num_dims)))
        return x, lq

    return jax.vmap(one)(jax.random.split(key, num_samples))


def importance_log_weights(marg_apply: Callable, params: Params, x: Array, log_q: Array) -> Array:
    """``log w = f(x) - f(empty) - log q(x)``: importance weights from the proposal of
    :func:`marginal_sample` to the marginal network's own ``p_theta(x) ∝ exp f(x)``.

    Self-normalized (``softmax(log w)``) they give consistent estimates of expectations under
    ``exp f(x) / sum_x exp f(x)`` (the normalizer cancels); all zero when f is self-consistent.

    Args:
      x: ``[N, D] int`` samples; log_q: ``[N]`` their proposal log-densities.

    Returns:
      ``[N]`` log weights.
    """
    encoding.check_partial(x, jnp.ones(x.shape, bool))
    full = marg_apply(params, x, jnp.ones(x.shape, bool))
    empty = marg_apply(params, jnp.zeros((1, x.shape[-1]), x.dtype), jnp.zeros((1, x.shape[-1]), bool))[0]
    return full - empty - log_q
