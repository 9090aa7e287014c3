"""The hierarchical VAE of Salimans (2016, arXiv:1602.08734) and its baselines, as one NNX module.

Generative model (layers numbered bottom-up, ``z_1`` next to the pixels)::

    p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1),   p(x | z_1) = prod_d Bern(x_d; sigmoid(logits_d))

with ``p(z_L)`` the standard unit (``max(0, N(0, 1))`` or ``N(0, 1)``) and each
``p(z_l | z_{l+1})`` a rectified Gaussian (or Gaussian) whose ``loc, scale`` come from
a top-down hidden layer ``h_l = act(BN(W z_{l+1}))``.

Structured posterior (the paper's key idea: keep the prior's top-down dependencies)::

    q(z_L | x) q(z_{L-1} | z_L, x) ... q(z_1 | z_2, x)

A bottom-up deterministic pass gives features ``d_1 .. d_L`` of ``x``. At layer ``l``
the posterior hidden layer is ``g_l = act(BN(A_l d_l + C_l h_l))``: it *reuses* the
generative top-down features ``h_l`` of the sampled ``z_{l+1}`` (computed once, shared
with the prior) and adds bottom-up evidence; ``loc, scale = head(g_l)``. The
mean-field ablation drops the ``C_l h_l`` term, so ``q(z | x) = prod_l q(z_l | x)``;
a structured model whose ``C_l`` are all zero *is* the mean-field model (tested).
This follows the paper's description (posterior conditionals that combine the
generative top-down path with bottom-up features); its exact parameterisation
may differ.

Batch normalisation sits in every hidden layer of both passes. In training mode it
normalises with batch statistics and updates running averages (``nnx.BatchStat``);
in evaluation (``train=False``) it uses the running averages, so every example is
scored independently of its batch-mates and evaluation is deterministic given keys.

The module is called through :func:`mamjax.nn.functional_with_state` as
``apply(params, state, method, *args, train=...)`` with ``method`` one of
``"infer"``, ``"generate"``, ``"decode"`` (see :meth:`HVAE.__call__`).
"""

from __future__ import annotations

from typing import Sequence

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from mamjax.distributions import Normal, RectifiedGaussian, bernoulli_log_prob

Array = jax.Array

__all__ = ["HVAE", "LATENTS", "POSTERIORS"]

LATENTS = ("rectified", "gaussian")
POSTERIORS = ("structured", "mean_field")
_MIN_SCALE = 1e-3


def _act(name: str):
    acts = {"relu": jax.nn.relu, "elu": jax.nn.elu, "softplus": jax.nn.softplus, "tanh": jnp.tanh}
    if name not in acts:
        raise ValueError(f"`activation` must be one of {sorted(acts)}; got {name!r}.")
    return acts[name]


class _Hidden(nnx.Module):
    """``act(BN(W x + b))`` (BN optional); the building block of both passes."""

    def __init__(self, din: int, dout: int, batch_norm: bool, rngs: nnx.Rngs):
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.bn = nnx.BatchNorm(dout, momentum=0.99, rngs=rngs) if batch_norm else None

    def pre(self, x: Array, train: bool) -> Array:
        """Pre-activation ``BN(W x + b)``."""
        h = self.linear(x)
        return self.bn(h, use_running_average=not train) if self.bn is not None else h


class _Head(nnx.Module):
    """``hidden -> (loc, scale)`` with ``scale = softplus(.) + 1e-3``."""

    def __init__(self, din: int, dz: int, rngs: nnx.Rngs):
        self.loc = nnx.Linear(din, dz, rngs=rngs)
        self.scale = nnx.Linear(din, dz, rngs=rngs)

    def __call__(self, h: Array) -> tuple[Array, Array]:
        return self.loc(h), jax.nn.softplus(self.scale(h)) + _MIN_SCALE


class HVAE(nnx.Module):
    """Hierarchical VAE with rectified-Gaussian (or Gaussian) latents.

    Args:
      data_dim: number of binary pixels ``D``.
      latent_sizes: units per stochastic layer, bottom to top (paper: (300, 200, 100, 50)).
      hidden_sizes: width of the deterministic hidden layer attached to each
        stochastic layer (bottom-up feature ``d_l``, top-down ``h_l``, posterior
        ``g_l``), bottom to top; ``hidden_sizes[0]`` is also the decoder's width.
      latent: "rectified" (Salimans 2016) or "gaussian" (VAE baselines).
      posterior: "structured" (top-down, reuses the generative path) or "mean_field".
      batch_norm: batch normalisation in every hidden layer of both passes.
      activation: hidden nonlinearity.
      rngs: NNX rngs for initialisation.
    """

    def __init__(self, data_dim: int, latent_sizes: Sequence[int], hidden_sizes: Sequence[int], *,
                 latent: str = "rectified", posterior: str = "structured", batch_norm: bool = True,
                 activation: str = "relu", rngs: nnx.Rngs):
        if latent not in LATENTS:
            raise ValueError(f"`latent` must be one of {LATENTS}; got {latent!r}.")
        if posterior not in POSTERIORS:
            raise ValueError(f"`posterior` must be one of {POSTERIORS}; got {posterior!r}.")
        if len(latent_sizes) < 1 or len(hidden_sizes) != len(latent_sizes):
            raise ValueError(f"`latent_sizes` ({latent_sizes}) and `hidden_sizes` ({hidden_sizes}) must be "
                             "non-empty and of the same length.")
        L = len(latent_sizes)
        self.data_dim, self.latent_sizes, self.hidden_sizes = data_dim, tuple(latent_sizes), tuple(hidden_sizes)
        self.latent, self.posterior, self.act_name = latent, posterior, activation
        nz, nh = self.latent_sizes, self.hidden_sizes
        # bottom-up features of x: d_1 = f(x), d_l = f(d_{l-1})
        self.bottom_up = nnx.List([_Hidden(data_dim if l == 0 else nh[l - 1], nh[l], batch_norm, rngs)
                                   for l in range(L)])
        # generative: z_1 -> x, z_{l+1} -> h_l -> p(z_l | z_{l+1})
        self.dec_hidden = _Hidden(nz[0], nh[0], batch_norm, rngs)
        self.dec_out = nnx.Linear(nh[0], data_dim, rngs=rngs)
        self.top_down = nnx.List([_Hidden(nz[l + 1], nh[l], batch_norm, rngs) for l in range(L - 1)])
        self.prior_heads = nnx.List([_Head(nh[l], nz[l], rngs) for l in range(L - 1)])
        # posterior: g_l = act(BN(A_l d_l [+ C_l h_l])) -> q(z_l | ...)
        self.q_hidden = nnx.List([_Hidden(nh[l], nh[l], batch_norm, rngs) for l in range(L)])
        self.q_heads = nnx.List([_Head(nh[l], nz[l], rngs) for l in range(L)])
        # created last so that, for the same seed, every other parameter equals the mean-field model's
        if posterior == "structured":
            self.q_top_down = nnx.List([nnx.Linear(nh[l], nh[l], use_bias=False, rngs=rngs) for l in range(L - 1)])

    # ----------------------------------------------------------------- helpers
    def _dist(self, loc: Array, scale: Array):
        return RectifiedGaussian(loc, scale) if self.latent == "rectified" else Normal(loc, scale)

    def _top_prior(self, batch: int):
        shape = (batch, self.latent_sizes[-1])
        return self._dist(jnp.zeros(shape), jnp.ones(shape))

    def _decode(self, z1: Array, train: bool) -> Array:
        act = _act(self.act_name)
        return self.dec_out(act(self.dec_hidden.pre(z1, train)))

    def _prior_step(self, l: int, z_above: Array, train: bool):
        """Top-down features ``h_l`` of ``z_{l+1}`` and ``p(z_l | z_{l+1})``."""
        h = _act(self.act_name)(self.top_down[l].pre(z_above, train))
        return h, self._dist(*self.prior_heads[l](h))

    def _posterior_step(self, l: int, d: Array, h: Array | None, train: bool):
        pre = self.q_hidden[l].pre(d, train)
        if h is not None and self.posterior == "structured":
            pre = pre + self.q_top_down[l](h)
        return self._dist(*self.q_heads[l](_act(self.act_name)(pre)))

    # ----------------------------------------------------------------- passes
    def infer(self, x: Array, key: jax.Array, train: bool) -> dict:
        """One posterior sample ``z ~ q(z | x)`` and every term of the bound.

        Args:
          x: ``[B, D]`` binary pixels (float or int).
          key: PRNG key (one split per stochastic layer).
          train: batch statistics (True) or running averages (False) in batch norm.

        Returns:
          dict with, for layers ordered bottom (index 0 = ``z_1``) to top:
            ``logits`` [B, D] of ``p(x | z_1)``; ``log_px`` [B];
            ``kl`` [B, L] exact ``KL(q(z_l|.) || p(z_l|z_{l+1}))`` summed over units,
            conditional on the sampled ``z_{l+1}``;
            ``log_p`` / ``log_q`` [B, L] log prior / posterior densities at the sample
            (w.r.t. ``delta_0 + Lebesgue`` for rectified units);
            ``zero_frac`` [B, L] fraction of exactly-zero units; ``z`` tuple of [B, n_l].
        """
        chex.assert_rank(x, 2, custom_message="`x` must be [batch, data_dim]")
        if x.shape[1] != self.data_dim:
            raise ValueError(f"`x` must have {self.data_dim} columns; got shape {x.shape}.")
        act = _act(self.act_name)
        x = jnp.asarray(x, jnp.float32)
        L, B = len(self.latent_sizes), x.shape[0]
        feats, d = [], x
        for l in range(L):
            d = act(self.bottom_up[l].pre(d, train))
            feats.append(d)
        keys = jax.random.split(key, L)
        zs, kls, lps, lqs = [None] * L, [None] * L, [None] * L, [None] * L
        z_above = None
        for l in reversed(range(L)):
            if l == L - 1:
                prior, h = self._top_prior(B), None
            else:
                h, prior = self._prior_step(l, z_above, train)
            q = self._posterior_step(l, feats[l], h, train)
            z = q.sample(keys[l])
            zs[l] = z
            kls[l] = jnp.sum(q.kl_divergence(prior), axis=-1)
            lps[l] = jnp.sum(prior.log_prob(z), axis=-1)
            lqs[l] = jnp.sum(q.log_prob(z), axis=-1)
            z_above = z
        logits = self._decode(zs[0], train)
        return {
            "logits": logits,
            "log_px": jnp.sum(bernoulli_log_prob(logits, x), axis=-1),
            "kl": jnp.stack(kls, axis=-1),
            "log_p": jnp.stack(lps, axis=-1),
            "log_q": jnp.stack(lqs, axis=-1),
            "zero_frac": jnp.stack([jnp.mean(z == 0.0, axis=-1) for z in zs], axis=-1),
            "z": tuple(zs),
        }

    def generate(self, key: jax.Array, num: int, train: bool = False) -> dict:
        """Ancestral samples ``z_L ~ p(z_L), ..., z_1 ~ p(z_1 | z_2)``.

        Returns:
          dict: ``logits`` [num, D] of ``p(x | z_1)``, ``z`` tuple (bottom to top) of [num, n_l].
        """
        L = len(self.latent_sizes)
        keys = jax.random.split(key, L)
        z = self._top_prior(num).sample(keys[L - 1])
        zs = [None] * L
        zs[L - 1] = z
        for l in reversed(range(L - 1)):
            _, prior = self._prior_step(l, z, train)
            z = prior.sample(keys[l])
            zs[l] = z
        return {"logits": self._decode(zs[0], train), "z": tuple(zs)}

    def decode(self, z1: Array, train: bool = False) -> Array:
        """Logits ``[B, D]`` of ``p(x | z_1)`` for given bottom latents ``z1`` [B, n_1]."""
        chex.assert_shape(z1, (None, self.latent_sizes[0]), custom_message="`z1` must be [batch, n_1]")
        return self._decode(z1, train)

    def __call__(self, method: str, *args, **kwargs):
        """Dispatch for the pure ``apply``: ``method`` in ("infer", "generate", "decode")."""
        if method == "infer":
            return self.infer(*args, **kwargs)
        if method == "generate":
            return self.generate(*args, **kwargs)
        if method == "decode":
            return self.decode(*args, **kwargs)
        raise ValueError(f"`method` must be one of ('infer', 'generate', 'decode'); got {method!r}.")
