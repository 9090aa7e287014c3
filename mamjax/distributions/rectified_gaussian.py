"""Rectified-Gaussian distribution: ``z = max(0, y)``, ``y ~ N(loc, scale^2)``.

The unit of Salimans (2016, arXiv:1602.08734): a spike at exactly zero with mass
``Phi(-loc/scale)`` and a Gaussian slab on ``(0, inf)``. Densities are taken with
respect to the mixed base measure ``delta_0 + Lebesgue on (0, inf)``, so
``log_prob(0) = log Phi(-loc/scale)`` (a log *probability*) and
``log_prob(z > 0) = log N(z; loc, scale^2)`` (a log *density*). Two rectified
Gaussians share that base measure, so their KL divergence and density ratios
(importance weights) are finite and well defined.

Why not a distrax ``Distribution``: distrax is not a dependency of mamjax (and is
not installed here). The class below is a registered pytree
(``flax.struct.dataclass``) with the distrax-like names (``log_prob``, ``sample``,
``sample_and_log_prob``, ``mean``, ``variance``, ``entropy``, ``kl_divergence``)
plus ``prob_zero``, so it passes through ``jit`` / ``vmap`` / ``grad`` and could be
wrapped as a distrax distribution later without changing callers.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct
from jax.scipy.special import log_ndtr

Array = jax.Array
PRNGKey = jax.Array

__all__ = ["RectifiedGaussian", "kl_divergence", "kl_divergence_mc"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _std_normal_pdf(a: Array) -> Array:
    return jnp.exp(-0.5 * jnp.square(a) - _HALF_LOG_2PI)


@struct.dataclass
class RectifiedGaussian:
    """Rectified Gaussian ``max(0, N(loc, scale^2))``, elementwise and batched.

    Attributes:
      loc: ``[...]`` mean of the Gaussian before rectification.
      scale: ``[...]`` (> 0) its standard deviation; broadcast against ``loc``.
    """

    loc: Array
    scale: Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return jnp.broadcast_shapes(jnp.shape(self.loc), jnp.shape(self.scale))

    def _alpha(self) -> Array:
        return self.loc / self.scale

    def log_prob_zero(self) -> Array:
        """``log P(z == 0) = log Phi(-loc/scale)`` (stable in both tails)."""
        return log_ndtr(-self._alpha())

    def prob_zero(self) -> Array:
        """``P(z == 0) = Phi(-loc/scale)``: the spike's mass, shape ``batch_shape``."""
        return jnp.exp(self.log_prob_zero())

    def log_prob(self, z: Array) -> Array:
        """Log density w.r.t. ``delta_0 + Lebesgue``; ``-inf`` for ``z < 0``.

        Args:
          z: ``[..., *batch_shape]`` values (broadcast against the parameters).

        Returns:
          Array of the broadcast shape.
        """
        z = jnp.asarray(z)
        shape = jnp.broadcast_shapes(z.shape, self.batch_shape)
        z, loc, scale = (jnp.broadcast_to(a, shape) for a in (z, self.loc, self.scale))
        t = (z - loc) / scale
        slab = -0.5 * jnp.square(t) - jnp.log(scale) - _HALF_LOG_2PI
        spike = log_ndtr(-loc / scale)
        out = jnp.where(z > 0, slab, spike)
        return jnp.where(z < 0, -jnp.inf, out)

    def sample(self, key: PRNGKey, sample_shape: Sequence[int] = ()) -> Array:
        """Reparameterized draw ``max(0, loc + scale * eps)``: ``[*sample_shape, *batch_shape]``.

        The map ``(loc, scale) -> z`` is continuous and piecewise linear, so the
        path-wise gradient of ``E[g(z)]`` is unbiased for Lipschitz ``g``. It is NOT
        unbiased for integrands that jump where ``z`` leaves zero, such as
        ``log_prob(z)`` itself; use :func:`kl_divergence` for KL terms.
        """
        shape = tuple(sample_shape) + self.batch_shape
        eps = jax.random.normal(key, shape, dtype=jnp.result_type(self.loc, float))
        return jax.nn.relu(jnp.broadcast_to(self.loc, shape) + jnp.broadcast_to(self.scale, shape) * eps)

    def sample_and_log_prob(self, key: PRNGKey, sample_shape: Sequence[int] = ()) -> tuple[Array, Array]:
        z = self.sample(key, sample_shape)
        return z, self.log_prob(z)

    def mean(self) -> Array:
        """``E[z] = loc Phi(a) + scale phi(a)``, ``a = loc/scale``."""
        a = self._alpha()
        return self.loc * jnp.exp(log_ndtr(a)) + self.scale * _std_normal_pdf(a)

    def variance(self) -> Array:
        """``E[z^2] - E[z]^2`` with ``E[z^2] = (loc^2 + scale^2) Phi(a) + loc scale phi(a)``."""
        a = self._alpha()
        big_phi, small_phi = jnp.exp(log_ndtr(a)), _std_normal_pdf(a)
        m2 = (jnp.square(self.loc) + jnp.square(self.scale)) * big_phi + self.loc * self.scale * small_phi
        return jnp.maximum(m2 - jnp.square(self.mean()), 0.0)

    def entropy(self) -> Array:
        """Entropy w.r.t. ``delta_0 + Lebesgue`` (closed form; may be negative)."""
        a = self._alpha()
        lq0 = self.log_prob_zero()
        big_phi, small_phi = jnp.exp(log_ndtr(a)), _std_normal_pdf(a)
        m2 = big_phi - a * small_phi  # int_{t > -a} t^2 phi(t) dt
        slab = big_phi * (jnp.log(self.scale) + _HALF_LOG_2PI) + 0.5 * m2
        return slab - jnp.exp(lq0) * lq0

    def kl_divergence(self, other: "RectifiedGaussian") -> Array:
        """``KL(self || other)``, closed form; see :func:`kl_divergence`."""
        return kl_divergence(self, other)


def kl_divergence(q: RectifiedGaussian, p: RectifiedGaussian) -> Array:
    """Exact ``KL(q || p)`` between rectified Gaussians (same base measure).

    ``KL = Q0 (log Q0 - log P0) + int_0^inf q(z) [log q(z) - log p(z)] dz``.
    The slab integral uses truncated-normal moments: with ``a = mu_q / s_q``,
    ``r = s_q / s_p``, ``d = (mu_q - mu_p) / s_p`` and ``t = (z - mu_q)/s_q``,
    ``log q - log p = log(s_p/s_q) - t^2/2 + (r t + d)^2 / 2`` and
    ``int_{t>-a} (1, t, t^2) phi = (Phi(a), phi(a), Phi(a) - a phi(a))``.
    Exact values give exact gradients, unlike the path-wise gradient of a
    Monte-Carlo estimate (biased here: the integrand jumps where ``z`` leaves 0).

    Returns:
      Array of the broadcast batch shape, >= 0 up to rounding.
    """
    a = q.loc / q.scale
    r = q.scale / p.scale
    d = (q.loc - p.loc) / p.scale
    lq0, lp0 = q.log_prob_zero(), p.log_prob_zero()
    m0 = jnp.exp(log_ndtr(a))
    m1 = _std_normal_pdf(a)
    m2 = m0 - a * m1
    slab = m0 * (jnp.log(p.scale) - jnp.log(q.scale)) + 0.5 * (jnp.square(r) - 1.0) * m2 \
        + r * d * m1 + 0.5 * jnp.square(d) * m0
    return jnp.exp(lq0) * (lq0 - lp0) + slab


def kl_divergence_mc(q: RectifiedGaussian, p: RectifiedGaussian, key: PRNGKey, num_samples: int) -> Array:
    """Monte-Carlo ``KL(q || p) ~ mean_s [log q(z_s) - log p(z_s)]``, ``z_s ~ q``.

    Finite because both put mass on ``z == 0``. An unbiased *value* (use it to
    check :func:`kl_divergence`); train with the closed form.

    Returns:
      Array of the broadcast batch shape.
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1; got {num_samples}.")
    z = q.sample(key, (num_samples,))
    return jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0)

