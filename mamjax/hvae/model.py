"""The hierarchical VAE of Salimans (2016, arXiv:1602.08734) and its baselines, as one NNX module.

Generative model (layers numbered bottom-up, ``z_1`` next to the pixels)::

    p(z_L) p(z_{L-1} | z_L) ... p(z_1 | z_2) p(x | z_1),   p(x | z_1) = prod_d Bern(x_d; sigmoid(logits_d))

with ``p(z_L)`` the standard unit (``max(0, N(0, 1))`` or ``N(0, 1)``) and each
``p(z_l | z_{l+1})`` a rectified Gaussian (or Gaussian) whose ``loc, scale`` come from
a top-down hidden layer ``h_l = act(BN(W z_{l+1}))``.

Structured posterior (the paper's key idea: keep the prior's top-down dependencies)::

    q(z_L | x) q(z_{L-1} | z_L, x) ... q(z_1 | z_2, x)

A bottom-up deterministic pass gives features ``d_1 .. d_L`` of ``x``. How layer ``l``
combines them with the top-down path of the sampled ``z_{l+1}`` is ``combine``:

* ``"mix"``: a posterior hidden layer ``g_l = act(BN(A_l d_l) + C_l h_l)`` that reuses
  the generative top-down features ``h_l`` (computed once, shared with the prior);
  note the top-down term is added *after* the batch norm of the bottom-up term;
  ``loc, scale = head(g_l)``. A model whose ``C_l`` are all zero *is* the mean-field
  model (tested).
* ``"residual"`` (the IAF code's form): ``loc_q = loc_p + dloc(g_l)``,
  ``log scale_q = log scale_p + dlog(g_l)`` with ``g_l = act(BN(A_l d_l))`` purely
  bottom-up: the prior's own parameters plus a bottom-up correction.
* ``"precision"`` (Ladder VAE): the bottom-up head gives ``(m, s)``; the posterior is
  the precision-weighted product ``scale_q^-2 = s^-2 + scale_p^-2``,
  ``loc_q = scale_q^2 (m s^-2 + loc_p scale_p^-2)`` (on the pre-rectification
  parameters for rectified units).

Our reading of the paper's text (posterior conditionals that combine the generative
top-down path with bottom-up features in a deterministic layer) is closest to
``"mix"``; its exact parameterisation is not given. The default is ``"precision"``,
the best of the three on held-out training images in ``reproduce/hvae.py``. The mean-field ablation uses
``g_l = act(BN(A_l d_l))`` alone, so ``q(z | x) = prod_l q(z_l | x)``.

Each deterministic path (bottom-up feature ``d_l``, top-down ``h_l``, decoder) has
``num_dense`` hidden layers per stochastic layer. ``conv=True`` (28x28 images only)
replaces the first bottom-up feature and the decoder by small convolutional stacks.
``learned_prior=True`` gives the top layer a learned ``loc, scale`` per unit.

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

__all__ = ["HVAE", "LATENTS", "POSTERIORS", "COMBINES"]

LATENTS = ("rectified", "gaussian")
POSTERIORS = ("structured", "mean_field")
COMBINES = ("mix", "residual", "precision")
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


class _Stack(nnx.Module):
    """``num`` hidden layers ``act(BN(W x + b))`` in sequence (``din -> dout -> ... -> dout``)."""

    def __init__(self, din: int, dout: int, num: int, batch_norm: bool, rngs: nnx.Rngs):
        self.layers = nnx.List([_Hidden(din if i == 0 else dout, dout, batch_norm, rngs) for i in range(num)])

    def __call__(self, x: Array, act, train: bool) -> Array:
        for layer in self.layers:
            x = act(layer.pre(x, train))
        return x


class _ConvEncoder(nnx.Module):
    """28x28 image -> two stride-2 3x3 convolutions (16, 32 channels) -> dense ``dout``."""

    def __init__(self, dout: int, batch_norm: bool, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(1, 16, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
        self.c2 = nnx.Conv(16, 32, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
        self.dense = _Hidden(7 * 7 * 32, dout, batch_norm, rngs)

    def __call__(self, x: Array, act, train: bool) -> Array:
        h = x.reshape(x.shape[0], 28, 28, 1)
        h = act(self.c2(act(self.c1(h))))
        return act(self.dense.pre(h.reshape(h.shape[0], -1), train))


class _ConvDecoder(nnx.Module):
    """``z_1`` -> dense 7x7x32 -> two stride-2 transposed 3x3 convolutions -> 28x28 logits."""

    def __init__(self, dz: int, batch_norm: bool, rngs: nnx.Rngs):
        self.dense = _Hidden(dz, 7 * 7 * 32, batch_norm, rngs)
        self.t1 = nnx.ConvTranspose(32, 16, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)
        self.t2 = nnx.ConvTranspose(16, 1, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs)

    def __call__(self, z: Array, act, train: bool) -> Array:
        h = act(self.dense.pre(z, train)).reshape(z.shape[0], 7, 7, 32)
        return self.t2(act(self.t1(h))).reshape(z.shape[0], 28 * 28)


class _Head(nnx.Module):
    """``hidden -> (loc, scale)`` with ``scale = softplus(.) + 1e-3``."""

    def __init__(self, din: int, dz: int, rngs: nnx.Rngs):
        self.loc = nnx.Linear(din, dz, rngs=rngs)
        self.scale = nnx.Linear(din, dz, rngs=rngs)

    def __call__(self, h: Array) -> tuple[Array, Array]:
        return self.loc(h), jax.nn.softplus(self.scale(h)) + _MIN_SCALE

    def raw(self, h: Array) -> tuple[Array, Array]:
        return self.loc(h), self.scale(h)


class HVAE(nnx.Module):
    """Hierarchical VAE with rectified-Gaussian (or Gaussian) latents.

    Args:
      data_dim: number of binary pixels ``D``.
      latent_sizes: units per stochastic layer, bottom to top (paper: (300, 200, 100, 50)).
      hidden_sizes: width of the deterministic hidden layers attached to each
        stochastic layer (bottom-up feature ``d_l``, top-down ``h_l``, posterior
        ``g_l``), bottom to top; ``hidden_sizes[0]`` is also the decoder's width.
      latent: "rectified" (Salimans 2016) or "gaussian" (VAE baselines).
      posterior: "structured" (top-down, uses the generative path) or "mean_field".
      combine: how the structured posterior combines the two paths, one of
        :data:`COMBINES` (see the module docstring); ignored for "mean_field". Default
        "precision": best validation ELBO of the three in ``reproduce/hvae.py``
        (3-layer model, 500 updates, ``results/hvae.json``).
      num_dense: deterministic layers per stochastic layer in each path (>= 1).
      learned_prior: learn the top layer's prior ``loc, scale`` (else ``loc = 0, scale = 1``).
      conv: convolutional first feature and decoder (``data_dim`` must be 784).
      batch_norm: batch normalisation in every dense hidden layer of both passes.
      activation: hidden nonlinearity.
      rngs: NNX rngs for initialisation.
    """

    def __init__(self, data_dim: int, latent_sizes: Sequence[int], hidden_sizes: Sequence[int], *,
                 latent: str = "rectified", posterior: str = "structured", combine: str = "precision",
                 num_dense: int = 1, learned_prior: bool = False, conv: bool = False, batch_norm: bool = True,
                 activation: str = "relu", rngs: nnx.Rngs):
        if latent not in LATENTS:
            raise ValueError(f"`latent` must be one of {LATENTS}; got {latent!r}.")
        if posterior not in POSTERIORS:
            raise ValueError(f"`posterior` must be one of {POSTERIORS}; got {posterior!r}.")
        if combine not in COMBINES:
            raise ValueError(f"`combine` must be one of {COMBINES}; got {combine!r}.")
        if len(latent_sizes) < 1 or len(hidden_sizes) != len(latent_sizes):
            raise ValueError(f"`latent_sizes` ({latent_sizes}) and `hidden_sizes` ({hidden_sizes}) must be "
                             "non-empty and of the same length.")
        if not isinstance(num_dense, int) or num_dense < 1:
            raise ValueError(f"`num_dense` must be an int >= 1; got {num_dense!r}.")
        if conv and data_dim != 784:
            raise ValueError(f"`conv=True` needs 28x28 images (`data_dim` 784); got data_dim={data_dim}.")
        _act(activation)
        L = len(latent_sizes)
        self.data_dim, self.latent_sizes, self.hidden_sizes = data_dim, tuple(latent_sizes), tuple(hidden_sizes)
        self.latent, self.posterior, self.act_name = latent, posterior, activation
        self.combine = combine if posterior == "structured" else "mean_field"
        nz, nh = self.latent_sizes, self.hidden_sizes
        # bottom-up features of x: d_1 = f(x), d_l = f(d_{l-1})
        self.bottom_up = nnx.List([
            _ConvEncoder(nh[0], batch_norm, rngs) if (conv and l == 0) else
            _Stack(data_dim if l == 0 else nh[l - 1], nh[l], num_dense, batch_norm, rngs) for l in range(L)])
        # generative: z_1 -> x, z_{l+1} -> h_l -> p(z_l | z_{l+1})
        if conv:
            self.decoder = _ConvDecoder(nz[0], batch_norm, rngs)
        else:
            self.decoder = _Stack(nz[0], nh[0], num_dense, batch_norm, rngs)
            self.dec_out = nnx.Linear(nh[0], data_dim, rngs=rngs)
        self.conv = conv
        self.top_down = nnx.List([_Stack(nz[l + 1], nh[l], num_dense, batch_norm, rngs) for l in range(L - 1)])
        self.prior_heads = nnx.List([_Head(nh[l], nz[l], rngs) for l in range(L - 1)])
        # posterior: g_l = act(BN(A_l d_l) [+ C_l h_l]) -> q(z_l | ...)
        self.q_hidden = nnx.List([_Hidden(nh[l], nh[l], batch_norm, rngs) for l in range(L)])
        self.q_heads = nnx.List([_Head(nh[l], nz[l], rngs) for l in range(L)])
        self.top_loc = nnx.Param(jnp.zeros((nz[-1],))) if learned_prior else None
        self.top_raw_scale = nnx.Param(jnp.full((nz[-1],), 0.5413)) if learned_prior else None  # softplus -> 1
        # created last so that, for the same seed, every other parameter equals the mean-field model's
        if self.combine == "mix":
            self.q_top_down = nnx.List([nnx.Linear(nh[l], nh[l], use_bias=False, rngs=rngs) for l in range(L - 1)])

    # ----------------------------------------------------------------- helpers
    def _dist(self, loc: Array, scale: Array):
        return RectifiedGaussian(loc, scale) if self.latent == "rectified" else Normal(loc, scale)

    def _top_prior(self, batch: int):
        shape = (batch, self.latent_sizes[-1])
        if self.top_loc is None:
            return self._dist(jnp.zeros(shape), jnp.ones(shape))
        loc = jnp.broadcast_to(self.top_loc.value, shape)
        scale = jnp.broadcast_to(jax.nn.softplus(self.top_raw_scale.value) + _MIN_SCALE, shape)
        return self._dist(loc, scale)

    def _decode(self, z1: Array, train: bool) -> Array:
        act = _act(self.act_name)
        if self.conv:
            return self.decoder(z1, act, train)
        return self.dec_out(self.decoder(z1, act, train))

    def _prior_step(self, l: int, z_above: Array, train: bool):
        """Top-down features ``h_l`` of ``z_{l+1}`` and ``p(z_l | z_{l+1})``."""
        h = self.top_down[l](z_above, _act(self.act_name), train)
        return h, self._dist(*self.prior_heads[l](h))

    def _posterior_step(self, l: int, d: Array, h: Array | None, prior, train: bool):
        """``q(z_l | z_{l+1}, x)`` from bottom-up ``d_l``, top-down ``h_l`` and the prior (per ``combine``)."""
        act = _act(self.act_name)
        pre = self.q_hidden[l].pre(d, train)
        if self.combine == "mix" and h is not None:
            pre = pre + self.q_top_down[l](h)
        g = act(pre)
        if self.combine in ("mix", "mean_field"):
            return self._dist(*self.q_heads[l](g))
        if self.combine == "residual":
            dloc, dlog = self.q_heads[l].raw(g)
            return self._dist(prior.loc + dloc, prior.scale * jnp.exp(jnp.clip(dlog, -10.0, 10.0)) + _MIN_SCALE)
        m, s = self.q_heads[l](g)  # precision weighting (Ladder VAE)
        prec_q, prec_p = 1.0 / jnp.square(s), 1.0 / jnp.square(prior.scale)
        var = 1.0 / (prec_q + prec_p)
        return self._dist(var * (m * prec_q + prior.loc * prec_p), jnp.sqrt(var) + _MIN_SCALE)

    # ----------------------------------------------------------------- passes
    def infer(self, x: Array, key: jax.Array, train: bool, shuffle: Array | None = None) -> dict:
        """One posterior sample ``z ~ q(z | x)`` and every term of the bound.

        Args:
          x: ``[B, D]`` binary pixels (float or int).
          key: PRNG key (one split per stochastic layer).
          train: batch statistics (True) or running averages (False) in batch norm.
          shuffle: optional ``[B]`` int permutation. When given, the posterior of each
            ``z_l`` (below the top) sees ``z_{l+1}`` permuted across the batch while the
            prior ``p(z_l | z_{l+1})`` sees the true sample: a check that ``q`` uses
            the top-down path (the mean-field bound does not change).

        Returns:
          dict with, for layers ordered bottom (index 0 = ``z_1``) to top:
            ``logits`` [B, D] of ``p(x | z_1)``; ``log_px`` [B];
            ``kl`` [B, L] exact ``KL(q(z_l|.) || p(z_l|z_{l+1}))`` summed over units,
            conditional on the sampled ``z_{l+1}``;
            ``log_p`` / ``log_q`` [B, L] log prior / posterior densities at the sample
            (w.r.t. ``delta_0 + Lebesgue`` for rectified units);
            ``zero_frac`` [B, L] fraction of exactly-zero units; ``z`` tuple of [B, n_l];
            ``q_mean`` tuple of [B, n_l] means of ``q(z_l | z_{l+1}, x)`` (for active units).
        """
        chex.assert_rank(x, 2, custom_message="`x` must be [batch, data_dim]")
        if x.shape[1] != self.data_dim:
            raise ValueError(f"`x` must have {self.data_dim} columns; got shape {x.shape}.")
        act = _act(self.act_name)
        x = jnp.asarray(x, jnp.float32)
        L, B = len(self.latent_sizes), x.shape[0]
        feats, d = [], x
        for l in range(L):
            d = self.bottom_up[l](d, act, train)
            feats.append(d)
        keys = jax.random.split(key, L)
        zs, kls, lps, lqs, means = [None] * L, [None] * L, [None] * L, [None] * L, [None] * L
        z_above = None
        for l in reversed(range(L)):
            if l == L - 1:
                prior, h = self._top_prior(B), None
                q_h, q_prior = None, prior
            else:
                h, prior = self._prior_step(l, z_above, train)
                q_h, q_prior = h, prior
                if shuffle is not None and self.combine != "mean_field":
                    q_h, q_prior = self._prior_step(l, z_above[shuffle], train)
            q = self._posterior_step(l, feats[l], q_h, q_prior, train)
            z = q.sample(seed=keys[l])
            zs[l], means[l] = z, q.mean() if self.latent == "rectified" else q.loc
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
            "q_mean": tuple(means),
        }

    def generate(self, key: jax.Array, num: int, train: bool = False) -> dict:
        """Ancestral samples ``z_L ~ p(z_L), ..., z_1 ~ p(z_1 | z_2)``.

        Returns:
          dict: ``logits`` [num, D] of ``p(x | z_1)``, ``z`` tuple (bottom to top) of [num, n_l].
        """
        L = len(self.latent_sizes)
        keys = jax.random.split(key, L)
        z = self._top_prior(num).sample(seed=keys[L - 1])
        zs = [None] * L
        zs[L - 1] = z
        for l in reversed(range(L - 1)):
            _, prior = self._prior_step(l, z, train)
            z = prior.sample(seed=keys[l])
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
