"""Diagonal Gaussian with the same small interface as :class:`RectifiedGaussian`.

Used by the Gaussian-latent VAE baselines so one model code serves both latent
types. A registered pytree (``flax.struct.dataclass``); see ``rectified_gaussian``
for why this is not a distrax distribution.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct

from mamjax.distributions.rectified_gaussian import _check_scale

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

    def log_prob(self, z: Array) -> Array:
        z = jnp.asarray(z)
        shape = jnp.broadcast_shapes(z.shape, self.batch_shape)
        z, loc, scale = (jnp.broadcast_to(a, shape) for a in (z, self.loc, self.scale))
        return -0.5 * jnp.square((z - loc) / scale) - jnp.log(scale) - _HALF_LOG_2PI

    def sample(self, key: PRNGKey, sample_shape: Sequence[int] = ()) -> Array:
        shape = tuple(sample_shape) + self.batch_shape
        eps = jax.random.normal(key, shape, dtype=jnp.result_type(self.loc, float))
        return jnp.broadcast_to(self.loc, shape) + jnp.broadcast_to(self.scale, shape) * eps

    def sample_and_log_prob(self, key: PRNGKey, sample_shape: Sequence[int] = ()) -> tuple[Array, Array]:
        z = self.sample(key, sample_shape)
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
