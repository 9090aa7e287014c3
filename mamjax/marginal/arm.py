"""Any-order autoregressive model (AO-ARM): the conditional network p_phi(x_i | x_S).

The conditional network reads a partial observation ``(x, mask)`` and returns, in one
pass, logits of ``p_phi(x_i | x_S)`` for every position i (only the hidden ones are
used). Training is order-agnostic (Uria et al. 2014; ARDM, Hoogeboom et al. 2022;
MAC, Shih et al. 2022): draw an ordering sigma and a step t ~ U{0..D-1}, observe
sigma(<t), and score every hidden position,

    L(x) = D / (D - t) * sum_{i not in sigma(<t)} log p_phi(x_i | x_sigma(<t)),

an unbiased estimate of the chain-rule log-likelihood averaged over orderings (a
lower bound on log p(x) by Jensen).

Likelihoods: along one ordering sigma the chain rule gives a normalized
distribution, and the marginal of any subset S is exact under it when sigma visits
S first:  log p_sigma(x_S) = sum_{d < |S|} log p_phi(x_sigma(d) | x_sigma(<d)).
AO-ARM-S uses one ordering, AO-ARM-E the log-mean-exp over M orderings.
Each costs D network evaluations (fixed shapes; steps past |S| are masked out).

Networks are callables ``cond_apply(params, x [B, D] int, mask [B, D] bool) ->
logits [B, D, K]``, made by :func:`make_conditional_net` or supplied by the user.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.scipy.special import logsumexp

from mamjax import masks as masks_lib
from mamjax import nn as nn_lib
from mamjax.marginal import encoding
from mamjax.marginal.official_mlp import LeakyResMLP

Array = jax.Array
PRNGKey = jax.Array
Params = Any
CondApply = Callable[[Params, Array, Array], Array]
BACKBONES = ("mlp", "official_mlp", "transformer")
DEFAULT_MAX_ROWS = 4096  # network rows per call of the chain rule when no chunk size is given

__all__ = [
    "make_conditional_net",
    "conditional_log_probs",
    "arm_loss",
    "log_likelihood_estimate",
    "subset_first_ordering",
    "arm_log_marginal",
    "arm_log_marginal_ensemble",
]


class _ConditionalMLP(nnx.Module):
    """ResidualMLP over the one-hot + "?" encoding; D * K logits out."""

    def __init__(self, num_dims: int, num_classes: int, width: int, depth: int, rngs: nnx.Rngs):
        self.num_dims, self.num_classes = num_dims, num_classes
        self.body = nn_lib.ResidualMLP(num_dims * (num_classes + 1), width, depth, num_dims * num_classes,
                                       rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        h = self.body(encoding.encode_onehot(x, mask, self.num_classes))
        return h.reshape(*x.shape, self.num_classes)


class _ConditionalOfficialMLP(nnx.Module):
    """The official conditional net: LeakyResMLP over the one-hot + "?" encoding; D * K logits out."""

    def __init__(self, num_dims: int, num_classes: int, width: int, depth: int, rngs: nnx.Rngs):
        self.num_classes = num_classes
        self.body = LeakyResMLP(num_dims * (num_classes + 1), width, num_dims * num_classes, depth, rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        h = self.body(encoding.encode_onehot(x, mask, self.num_classes))
        return h.reshape(*x.shape, self.num_classes)


class _ConditionalTransformer(nnx.Module):
    """TransformerEncoder with a learned mask embedding; K logits per position."""

    def __init__(self, num_dims: int, num_classes: int, dim: int, depth: int, num_heads: int, rngs: nnx.Rngs):
        self.body = nn_lib.TransformerEncoder(num_classes, num_dims, dim=dim, depth=depth, num_heads=num_heads,
                                              out_features=num_classes, rngs=rngs)

    def __call__(self, x: Array, mask: Array) -> Array:
        return self.body(x.astype(jnp.int32), mask)


def make_conditional_net(key: PRNGKey, num_dims: int, num_classes: int = 2, *, backbone: str = "mlp",
                         width: int = 256, depth: int = 2, num_heads: int = 4) -> tuple[CondApply, Params]:
    """Builds the AO-ARM conditional network.

    Args:
      key: PRNG key for the initialization.
      num_dims: D.
      num_classes: K (2 for binary data).
      backbone: ``"mlp"`` (:class:`mamjax.nn.ResidualMLP` on the flattened one-hot + "?"
        encoding), ``"official_mlp"`` (the official code's LeakyReLU residual MLP,
        :class:`mamjax.marginal.official_mlp.LeakyResMLP`; ``depth`` is its ``num_layers``,
        official Ising: width 2048, depth 4) or ``"transformer"``
        (:class:`mamjax.nn.TransformerEncoder`, learned mask embedding; ``width`` is the model dim).
      width, depth, num_heads: backbone sizes.

    Returns:
      ``(apply, params)`` with ``apply(params, x [B, D] int, mask [B, D] bool) -> [B, D, K]``.
    """
    rngs = nnx.Rngs(params=key)
    if backbone == "mlp":
        module = _ConditionalMLP(num_dims, num_classes, width, depth, rngs)
    elif backbone == "official_mlp":
        module = _ConditionalOfficialMLP(num_dims, num_classes, width, depth, rngs)
    elif backbone == "transformer":
        module = _ConditionalTransformer(num_dims, num_classes, width, depth, num_heads, rngs)
    else:
        raise ValueError(f"`backbone` must be one of {list(BACKBONES)}; got {backbone!r}.")
    return nn_lib.functional(module)


def conditional_log_probs(cond_apply: CondApply, params: Params, x: Array, mask: Array) -> Array:
    """``log p_phi(x_i | x_S)`` at the values ``x_i``, for every position: ``[B, D]``.

    Args:
      x: ``[B, D] int`` (hidden entries hold the values to be scored), in ``[0, K)``:
        checked eagerly when concrete (not under ``jit``).
      mask: ``[B, D] bool`` observed subset S (dtype checked, also under ``jit``).
    """
    encoding.check_partial(x, mask)
    logits = cond_apply(params, x, mask)
    masks_lib.check_token_ids(x, logits.shape[-1], "x")
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, x[..., None].astype(jnp.int32), axis=-1)[..., 0]


def arm_loss(cond_apply: CondApply, params: Params, x: Array, key: PRNGKey) -> tuple[Array, dict]:
    """Order-agnostic AO-ARM loss: mean over the batch of ``-L(x)`` (nats per example).

    Args:
      cond_apply: conditional network.
      params: its parameters.
      x: ``[B, D] int`` data.
      key: PRNG key (one ordering and one t per example).

    Returns:
      ``(loss, {"nll": loss, "bpd": ...})``; ``loss`` estimates the negative log-likelihood
      averaged over orderings, in nats per example.
    """
    num_dims = x.shape[1]
    nll = -jnp.mean(log_likelihood_estimate(cond_apply, params, x, key))
    return nll, {"nll": nll, "bpd": nll / (num_dims * jnp.log(2.0))}


def log_likelihood_estimate(cond_apply: CondApply, params: Params, x: Array, key: PRNGKey) -> Array:
    """One-call unbiased estimate of the ordering-averaged ``log p_phi(x)``, per example: ``[B]``.

    With a random ordering sigma and step t uniform in ``[0, D)`` per example and S = sigma(< t),
    ``D / (D - t) * sum_{i not in S} log p_phi(x_i | x_S)``; its expectation is
    ``E_sigma sum_d log p_phi(x_sigma(d) | x_sigma(<d))``, the AO-ARM likelihood bound.
    """
    encoding.check_partial(x, jnp.ones(x.shape, bool))
    batch, num_dims = x.shape
    k_order, k_t = jax.random.split(key)
    orderings = jax.vmap(masks_lib.random_ordering, in_axes=(0, None))(jax.random.split(k_order, batch), num_dims)
    t = jax.random.randint(k_t, (batch,), 0, num_dims)
    mask = jax.vmap(masks_lib.ordering_mask)(orderings, t)
    ll = conditional_log_probs(cond_apply, params, x, mask)
    ll_hidden = jnp.sum(jnp.where(mask, 0.0, ll), axis=-1)
    return num_dims / (num_dims - t).astype(ll.dtype) * ll_hidden


def subset_first_ordering(ordering: Array, mask: Array) -> Array:
    """Reorders ``ordering`` so the observed positions come first, each group keeping sigma's order.

    Args:
      ordering: ``[D] int`` permutation sigma.
      mask: ``[D] bool`` subset S.

    Returns:
      ``[D] int32`` permutation tau with ``tau(<|S|) = S``.
    """
    num_dims = ordering.shape[0]
    in_s = mask[ordering]
    priority = jnp.where(in_s, 0, num_dims) + jnp.arange(num_dims)
    return ordering[jnp.argsort(priority)].astype(jnp.int32)


def arm_log_marginal(cond_apply: CondApply, params: Params, x: Array, mask: Array, ordering: Array) -> Array:
    """Exact chain-rule ``log p_sigma(x_S)`` of one example under one ordering (D network rows).

    The positions of S are visited first, in the order sigma gives them, so the result
    is the marginal of S under the autoregressive distribution p_tau.

    Args:
      cond_apply: conditional network.
      params: its parameters.
      x: ``[D] int`` one example (hidden entries ignored).
      mask: ``[D] bool`` subset S.
      ordering: ``[D] int`` permutation sigma.

    Returns:
      Scalar ``log p(x_S)`` (0 for the empty set).
    """
    num_dims = x.shape[0]
    tau = subset_first_ordering(ordering, mask)
    prefixes = masks_lib.ordering_subsets(tau)[:num_dims]  # [D, D]: row d observes tau(<d)
    xs = jnp.broadcast_to(x, (num_dims, num_dims))
    logits = cond_apply(params, xs, prefixes)  # [D, D, K]
    step_logits = logits[jnp.arange(num_dims), tau]  # [D, K]: the conditional of tau(d) at step d
    step_ll = jnp.take_along_axis(jax.nn.log_softmax(step_logits, -1), x[tau][:, None].astype(jnp.int32), -1)[:, 0]
    size = jnp.sum(mask)
    return jnp.sum(jnp.where(jnp.arange(num_dims) < size, step_ll, 0.0))


def arm_log_marginal_ensemble(cond_apply: CondApply, params: Params, x: Array, mask: Array, key: PRNGKey,
                              num_orderings: int = 1, chunk_size: int | None = None,
                              max_rows: int = DEFAULT_MAX_ROWS) -> Array:
    """AO-ARM-S (``num_orderings=1``) or AO-ARM-E likelihood of a batch of partial observations.

    ``log p(x_S) ~= log (1/M) sum_m p_sigma_m(x_S)`` over M random orderings (a lower bound
    in expectation on the ensemble's log marginal). Each ordering costs D network rows
    per example.

    Args:
      cond_apply: conditional network.
      params: its parameters.
      x: ``[B, D] int``.
      mask: ``[B, D] bool`` (all True for the full likelihood).
      key: PRNG key (orderings; a fresh one per example and per ensemble member).
      num_orderings: M.
      chunk_size: examples evaluated together, in one network call of ``chunk_size * M * D`` rows (bounds
        memory); None: as many as fit in ``max_rows`` rows (at least one example).
      max_rows: the row budget of one call when ``chunk_size`` is None. One example per call (``M * D`` rows)
        leaves a wide MLP's matrix products small and slow; a few thousand rows keep them efficient while the
        activations stay in the tens of MB (measured in ``benchmarks/ising_bench.py``).

    Returns:
      ``[B]`` log-likelihoods in nats.
    """
    encoding.check_partial(x, mask)
    batch, num_dims = x.shape
    keys = jax.random.split(key, (batch, num_orderings))
    orderings = jax.vmap(jax.vmap(masks_lib.random_ordering, in_axes=(0, None)), in_axes=(0, None))(keys, num_dims)

    def one(args):
        xi, mi, oi = args
        lls = jax.vmap(arm_log_marginal, in_axes=(None, None, None, None, 0))(cond_apply, params, xi, mi, oi)
        return logsumexp(lls) - jnp.log(float(num_orderings))

    if chunk_size is None:
        chunk_size = max(1, int(max_rows) // (num_dims * num_orderings))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"`chunk_size` must be a positive int or None; got {chunk_size!r}.")
    if chunk_size >= batch:
        return jax.vmap(one)((x, mask, orderings))
    return jax.lax.map(one, (x, mask, orderings), batch_size=chunk_size)
