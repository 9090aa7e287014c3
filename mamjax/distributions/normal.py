"""Diagonal Gaussian with the same interface as :class:`RectifiedGaussian` (distrax / TFP signatures).

Used by the Gaussian-latent VAE baselines so one model code serves both latent
types. A registered pytree (``flax.struct.dataclass``); the log density is
``jax.scipy.stats.norm.logpdf``. See ``rectified_gaussian`` for why this is not a
distrax subclass (:func:`mamjax.distributions.as_distrax` wraps it).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.stats import norm as _norm

from mamjax.distributions.rectified_gaussian import _check_scale, _key, _sample_shape

Array = jax.Array
PRNGKey = jax.Array

__all__ = ["Normal"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@struct.dataclass
class Normal:
    """Elementwise ``N(loc, scale^2)``.

    Attributes:
      loc: ``[...]`` mean.
      scale: ``[...]`` (> 0) standard deviation; checked eagerly when concrete
        (``ValueError``), not when traced.
    """

    loc: Array
    scale: Array

    def __post_init__(self):
        _check_scale(self.scale)

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale))

    @property
    def event_shape(self) -> tuple[int, ...]:
        return ()

    def log_prob(self, z: Array) -> Array:
        """``log N(z; loc, scale^2)`` (``jax.scipy.stats.norm.logpdf``), broadcast against the parameters."""
        z = jnp.asarray(z)
        shape = jnp.broadcast_shapes(z.shape, self.batch_shape)
        z, loc, scale = (jnp.broadcast_to(a, shape) for a in (z, self.loc, self.scale))
        return _norm.logpdf(z, loc, scale)

    def sample(self, *, seed: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        """Reparameterized draw ``loc + scale * eps``: ``[*sample_shape, *batch_shape]``."""
        shape = _sample_shape(sample_shape) + self.batch_shape
        eps = jax.random.normal(_key(seed), shape, dtype=jnp.result_type(self.loc, float))
        return jnp.broadcast_to(self.loc, shape) + jnp.broadcast_to(self.scale, shape) * eps

    def sample_and_log_prob(self, *, seed: PRNGKey, sample_shape: int | Sequence[int] = ()) -> tuple[Array, Array]:
        z = self.sample(seed=seed, sample_shape=sample_shape)
        return z, self.log_prob(z)

    def mean(self) -> Array:
        return jnp.broadcast_to(self.loc, self.batch_shape)

    def variance(self) -> Array:
        return jnp.broadcast_to(jnp.square(self.scale), self.batch_shape)

    def prob_zero(self) -> Array:
        """Always 0: a Gaussian has no spike (kept so metrics code is shared)."""
        return jnp.zeros(self.batch_shape, jnp.result_type(self.loc, float))

    def entropy(self) -> Array:
        return jnp.broadcast_to(jnp.log(self.scale) + _HALF_LOG_2PI + 0.5, self.batch_shape)

    def kl_divergence(self, other: "Normal") -> Array:
        """Closed-form ``KL(self || other)``."""
        r = self.scale / other.scale
        d = (self.loc - other.loc) / other.scale
        return 0.5 * (jnp.square(r) + jnp.square(d) - 1.0) - jnp.log(r)
