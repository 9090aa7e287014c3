"""The marginal network of a marginalization model (MaM): f_theta(x_S) = log p_theta(x_S).

One network evaluation scores any partial observation: hidden entries read as "?".
A MaM is trained so that its marginals are self-consistent with a conditional
network (see :mod:`mamjax.marginal.losses`); then ``log p(x_S)`` costs one call,
where an AO-ARM needs |S| (D with fixed shapes).

Networks are callables ``marg_apply(params, x [B, D] int, mask [B, D] bool) -> [B]``.
The MLP backbone adds a linear term of the one-hot + "?" encoding to a ResidualMLP:
the linear part alone is an exactly self-consistent fully factorized model
(``sum_{i in S} log p_i(x_i)``), which the residual part corrects.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from mamjax import masks as masks_lib
from mamjax import nn as nn_lib
from mamjax.marginal import encoding
from mamjax.marginal.official_mlp import LeakyResMLP

Array = jax.Array
PRNGKey = jax.Array
Params = Any
MargApply = Callable[[Params, Array, Array], Array]

__all__ = ["make_marginal_net", "log_marginal", "log_marginal_many_masks", "log_normalizer"]


class _MarginalMLP(nnx.Module):
    def __init__(self, num_dims: int, num_classes: int, width: int, depth: int, rngs: nnx.Rngs):
        self.num_classes = num_classes
        features = num_dims * (num_classes + 1)
        self.body = nn_lib.ResidualMLP(features, width, depth, 1, rngs=rngs)
        self.linear = nnx.Linear(features, 1, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        h = encoding.encode_onehot(x, mask, self.num_classes)
        return (self.body(h) + self.linear(h))[..., 0]


class _MarginalOfficialMLP(nnx.Module):
    """The official marginal net: LeakyResMLP over the one-hot + "?" encoding to one number."""

    def __init__(self, num_dims: int, num_classes: int, width: int, depth: int, rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.body = LeakyResMLP(num_dims * (num_classes + 1), width, 1, depth, rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        return self.body(encoding.encode_onehot(x, mask, self.num_classes))[..., 0]


class _MarginalTransformer(nnx.Module):
    """TransformerEncoder with one output per token, summed: f(x_S) = sum_i g_i(x_S)."""

    def __init__(self, num_dims: int, num_classes: int, dim: int, depth: int, num_heads: int, rngs: nnx.Rngs):
        self.body = nn_lib.TransformerEncoder(num_classes, num_dims, dim=dim, depth=depth, num_heads=num_heads,
                                              out_features=1, rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        return jnp.sum(self.body(x.astype(jnp.int32), mask)[..., 0], axis=-1)


class _MarginalTransformerPooled(nnx.Module):
    """The paper's text8 / MOSES marginal head: the shared non-causal transformer, mean-pooled over
    positions, then an MLP ``dim -> 4 dim -> 4 dim -> 1`` (paper: 768 -> 3072 -> 3072 -> 1)."""

    def __init__(self, num_dims: int, num_classes: int, dim: int, depth: int, num_heads: int, rngs: nnx.Rngs):
        self.body = nn_lib.TransformerEncoder(num_classes, num_dims, dim=dim, depth=depth, num_heads=num_heads,
                                              mlp_dim=4 * dim, out_features=dim, rngs=rngs)
        self.head = nn_lib.MLP(dim, [4 * dim, 4 * dim], 1, activation="gelu", rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        h = jnp.mean(self.body(x.astype(jnp.int32), mask), axis=-2)
        return self.head(h)[..., 0]


def make_marginal_net(key: PRNGKey, num_dims: int, num_classes: int = 2, *, backbone: str = "mlp",
                      width: int = 256, depth: int = 2, num_heads: int = 4) -> tuple[MargApply, Params]:
    """Builds a marginal network ``f_theta``.

    Args:
      key: PRNG key for the initialization.
      num_dims: D.
      num_classes: K.
      backbone: ``"mlp"``, ``"official_mlp"`` (the official code's LeakyReLU residual MLP, no
        linear term; ``depth`` is its ``num_layers``), ``"transformer"`` (see the module docstring) or
        ``"transformer_pool"`` (the paper's text8 / MOSES head: mean-pooled transformer features and an
        MLP ``width -> 4 width -> 4 width -> 1``; paper: width 768, depth 12, 12 heads).
      width, depth, num_heads: backbone sizes.

    Returns:
      ``(apply, params)`` with ``apply(params, x [B, D] int, mask [B, D] bool) -> [B]``.
    """
    rngs = nnx.Rngs(params=key)
    if backbone == "mlp":
        module = _MarginalMLP(num_dims, num_classes, width, depth, rngs)
    elif backbone == "official_mlp":
        module = _MarginalOfficialMLP(num_dims, num_classes, width, depth, rngs)
    elif backbone == "transformer":
        module = _MarginalTransformer(num_dims, num_classes, width, depth, num_heads, rngs)
    elif backbone == "transformer_pool":
        module = _MarginalTransformerPooled(num_dims, num_classes, width, depth, num_heads, rngs)
    else:
        raise ValueError("`backbone` must be one of ['mlp', 'official_mlp', 'transformer', 'transformer_pool']; "
                         f"got {backbone!r}.")
    apply, params = nn_lib.functional(module)
    apply.num_classes = num_classes  # read by log_marginal's eager value check
    return apply, params


def _check_values(marg_apply: MargApply, x: Array, mask: Array, num_classes: int | None) -> None:
    """Dtypes always; observed ids in ``[0, K)`` eagerly when ``x`` and ``mask`` are concrete."""
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"`x` must be an integer array of category ids; got dtype {x.dtype}.")
    if mask.dtype != jnp.bool_:
        raise TypeError(f"`mask` must be a boolean array (True = observed); got dtype {mask.dtype}.")
    k = getattr(marg_apply, "num_classes", None) if num_classes is None else num_classes
    if k is not None and masks_lib.is_concrete(x) and masks_lib.is_concrete(mask):
        masks_lib.check_token_ids(jnp.where(mask, x, 0), int(k), "x")


@functools.partial(jax.jit, static_argnums=0)
def _log_marginal(marg_apply: MargApply, params: Params, x: Array, mask: Array) -> Array:
    shape = jnp.broadcast_shapes(x.shape, mask.shape)
    xb, mb = jnp.broadcast_to(x, shape), jnp.broadcast_to(mask, shape)
    num_dims = shape[-1]
    out = marg_apply(params, xb.reshape(-1, num_dims), mb.reshape(-1, num_dims))
    return out.reshape(shape[:-1])


def log_marginal(marg_apply: MargApply, params: Params, x: Array, mask: Array, *,
                 num_classes: int | None = None) -> Array:
    """``log p_theta(x_S) = f_theta(x_S)`` for any batch shape, in one (jitted) network call.

    Args:
      marg_apply: marginal network.
      params: its parameters.
      x: ``[..., D] int``; observed entries in ``[0, K)``.
      mask: ``[..., D] bool``, broadcastable against ``x`` (e.g. ``x [D]`` with ``mask [M, D]``
        scores M subsets of one example).
      num_classes: K for the value check; default the network's own (set by
        :func:`make_marginal_net`); None for a user network without it skips the check.

    Returns:
      ``[...]`` log marginals (unnormalized by ``f(empty)``; see :func:`log_normalizer`).

    Raises:
      TypeError: non-integer ``x`` or non-bool ``mask`` (also under ``jit``).
      ValueError: observed ids outside ``[0, K)`` (eager: concrete inputs only, not under ``jit``).
    """
    x, mask = jnp.asarray(x), jnp.asarray(mask)
    _check_values(marg_apply, x, mask, num_classes)
    return _log_marginal(marg_apply, params, x, mask)


@functools.partial(jax.jit, static_argnums=0)
def _many_masks(marg_apply: MargApply, params: Params, x: Array, masks: Array) -> Array:
    def one(xi, mi):
        return marg_apply(params, xi[None], mi[None])[0]

    return jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None))(x, masks)


def log_marginal_many_masks(marg_apply: MargApply, params: Params, x: Array, masks: Array, *,
                            num_classes: int | None = None) -> Array:
    """Scores M subsets of each of B examples: ``x [B, D]``, ``masks [M, D]`` -> ``[B, M]``.

    Written per (example, mask) and vmapped twice (one network row each). Values of ``x`` are
    checked against K as in :func:`log_marginal` (eager, concrete inputs only).
    """
    x, masks = jnp.asarray(x), jnp.asarray(masks)
    _check_values(marg_apply, x, jnp.ones(x.shape, bool), num_classes)
    return _many_masks(marg_apply, params, x, masks)


def log_normalizer(marg_apply: MargApply, params: Params, num_dims: int) -> Array:
    """``f_theta(empty set)``: 0 for a normalized MaM (the training targets it)."""
    x = jnp.zeros((1, num_dims), jnp.int32)
    return marg_apply(params, x, jnp.zeros((1, num_dims), bool))[0]
