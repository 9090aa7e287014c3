"""Rectified-Gaussian distribution: ``z = max(0, y)``, ``y ~ N(loc, scale^2)``.

The unit of Salimans (2016, arXiv:1602.08734): a spike at exactly zero with mass
``Phi(-loc/scale)`` and a Gaussian slab on ``(0, inf)``. Densities are taken with
respect to the mixed base measure ``delta_0 + Lebesgue on (0, inf)``, so
``log_prob(0) = log Phi(-loc/scale)`` (a log *probability*) and
``log_prob(z > 0) = log N(z; loc, scale^2)`` (a log *density*). Two rectified
Gaussians share that base measure, so their KL divergence and density ratios
(importance weights) are finite and well defined.

Why not a distrax ``Distribution`` subclass: distrax is not a dependency of mamjax.
The class below is a registered pytree (``flax.struct.dataclass``) with the
distrax / TFP method signatures (``sample(seed=..., sample_shape=...)``,
``sample_and_log_prob``, ``log_prob``, ``mean``, ``variance``, ``entropy``,
``kl_divergence(other)``, ``batch_shape``, ``event_shape == ()``) plus ``prob_zero``,
so it passes through ``jit`` / ``vmap`` / ``grad``; where distrax is installed,
:func:`mamjax.distributions.as_distrax` wraps it as a ``distrax.Distribution``
(e.g. for ``distrax.Independent``).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import struct
import numpy as np
from jax.scipy.special import log_ndtr as _jax_log_ndtr
from jax.scipy.stats import norm as _norm

Array = jax.Array
PRNGKey = jax.Array

__all__ = ["RectifiedGaussian", "kl_divergence", "kl_divergence_mc", "log_ndtr"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _std_normal_pdf(a: Array) -> Array:
    return jnp.exp(-0.5 * jnp.square(a) - _HALF_LOG_2PI)


_SERIES_ORDER = 12  # terms of the asymptotic series below


def _lower_threshold(dtype) -> float:
    # Where jax's log_ndtr switches to its (3-term) series; above it log(ndtr) is accurate.
    # Below it the 12-term series is used (relative error < 2e-18 at -15 in float64, < 1e-13 at -10 in float32);
    # jax's own log(ndtr(x)) loses accuracy towards -20 (2e-11 at -20 in float64).
    return -15.0 if jnp.finfo(dtype).bits == 64 else -10.0


def _mills_series(x: Array) -> Array:
    """``S(x) = 1 + sum_n (-1)^n (2n-1)!! / x^(2n)`` so that ``Phi(x) = phi(x) S(x) / (-x)`` for ``x << 0``."""
    u = 1.0 / jnp.square(x)  # 0 when x^2 overflows: S = 1 exactly there
    total, term = jnp.ones_like(x), jnp.ones_like(x)
    for n in range(1, _SERIES_ORDER + 1):
        term = -term * (2 * n - 1) * u
        total = total + term
    return total


@jax.custom_jvp
def log_ndtr(x: Array) -> Array:
    """``log Phi(x)``: jax's ``log_ndtr`` with a 12-term series below -15 (float64) / -10 (float32).

    In the far left tail ``log Phi(x) = -x^2/2 - log(-x) - log(2 pi)/2 + log S(x)``;
    jax uses 3 terms of ``S`` (relative error 2e-11 in ``Phi`` at ``x = -20``). The
    derivative ``phi(x)/Phi(x)`` is ``-x / S(x)`` there (the Mills-ratio asymptotic)
    instead of the derivative of the series, which loses accuracy for large ``-x``.
    """
    x = jnp.asarray(x, jnp.result_type(x, float))
    lo = _lower_threshold(x.dtype)
    xs = jnp.minimum(x, lo)  # both branches are evaluated: keep each finite on the other's domain
    tail = -0.5 * jnp.square(xs) - jnp.log(-xs) - _HALF_LOG_2PI + jnp.log(_mills_series(xs))
    return jnp.where(x < lo, tail, _jax_log_ndtr(jnp.maximum(x, lo)))


@log_ndtr.defjvp
def _log_ndtr_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    x = jnp.asarray(x, jnp.result_type(x, float))
    y = log_ndtr(x)
    lo = _lower_threshold(x.dtype)
    xs = jnp.minimum(x, lo)
    slope = jnp.where(x < lo, -xs / _mills_series(xs),
                      jnp.exp(-0.5 * jnp.square(jnp.maximum(x, lo)) - _HALF_LOG_2PI - y))
    return y, slope * dx


def _times(p: Array, x: Array) -> Array:
    """``p * x`` with ``0 * (+-inf or nan from an overflowed x) = 0``: ``p`` is a probability or density factor."""
    zero = p == 0
    return jnp.where(zero, 0.0, p * jnp.where(zero, 1.0, x)).astype(jnp.result_type(p, x))


def _is_positive(z: Array) -> Array:
    """``z > 0`` also for subnormal ``z`` (XLA on CPU flushes subnormals to zero in comparisons)."""
    if not jnp.issubdtype(z.dtype, jnp.floating):
        return z > 0
    bits = jax.lax.bitcast_convert_type(z, jnp.dtype(f"int{jnp.finfo(z.dtype).bits}"))
    return bits > 0


def _is_negative(z: Array) -> Array:
    """``z < 0`` also for subnormal ``z``; ``-0.0`` is zero."""
    if not jnp.issubdtype(z.dtype, jnp.floating):
        return z < 0
    int_t = jnp.dtype(f"int{jnp.finfo(z.dtype).bits}")
    bits = jax.lax.bitcast_convert_type(z, int_t)
    return (bits < 0) & ((bits & jnp.array(jnp.iinfo(int_t).max, int_t)) != 0)


def _sample_shape(sample_shape) -> tuple[int, ...]:
    """An int or a sequence of ints (distrax's ``sample_shape``) as a tuple."""
    if isinstance(sample_shape, (int, np.integer)) and not isinstance(sample_shape, bool):
        return (int(sample_shape),)
    if isinstance(sample_shape, (str, bytes)):
        raise TypeError(f"`sample_shape` must be an int or a sequence of ints; got {sample_shape!r}.")
    try:
        return tuple(int(n) for n in sample_shape)
    except TypeError:
        raise TypeError(f"`sample_shape` must be an int or a sequence of ints; got {sample_shape!r}.") from None


def _key(seed) -> PRNGKey:
    """A PRNG key from ``seed`` (a key; an int is accepted as ``jax.random.key(seed)``, as in distrax)."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    return seed


def _check_scale(scale, name: str = "scale") -> None:
    """Eager check of a concrete ``scale`` (skipped for traced values, e.g. inside ``jit``)."""
    if isinstance(scale, jax.core.Tracer) or not isinstance(scale, (jax.Array, np.ndarray, float, int, np.number)):
        return
    v = np.asarray(scale)
    if not np.issubdtype(v.dtype, np.number):
        return
    if not np.all(v > 0):
        bad = v[~(v > 0)] if v.ndim else v
        raise ValueError(f"`{name}` must be > 0 everywhere; got {np.ravel(bad)[:3].tolist()} "
                         f"({int(np.sum(~(v > 0)))} entries).")


@struct.dataclass
class RectifiedGaussian:
    """Rectified Gaussian ``max(0, N(loc, scale^2))``, elementwise and batched.

    Attributes:
      loc: ``[...]`` mean of the Gaussian before rectification.
      scale: ``[...]`` (> 0) its standard deviation; broadcast against ``loc``.
        Checked eagerly when concrete (``ValueError`` for a scale <= 0 or NaN);
        not checked when traced (inside ``jit``).

    All quantities are computed in standardised units ``a = loc / scale`` and are
    accurate (against mpmath, see the tests) from ``a = -40`` to ``a = 1e160``;
    products ``0 * inf`` of a vanishing probability with an overflowing log are 0.
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
        """``()``: every element is its own (scalar) event, as in ``distrax.Normal``."""
        return ()

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
        slab = _norm.logpdf(z, loc, scale)
        spike = log_ndtr(-loc / scale)
        out = jnp.where(_is_positive(z), slab, spike)
        return jnp.where(_is_negative(z), -jnp.inf, out)

    def sample(self, *, seed: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        """Reparameterized draw ``max(0, loc + scale * eps)``: ``[*sample_shape, *batch_shape]``.

        The distrax / TFP signature: ``seed`` a PRNG key (keyword), ``sample_shape`` an int or a tuple.

        The map ``(loc, scale) -> z`` is continuous and piecewise linear, so the
        path-wise gradient of ``E[g(z)]`` is unbiased for Lipschitz ``g``. It is NOT
        unbiased for integrands that jump where ``z`` leaves zero, such as
        ``log_prob(z)`` itself; use :func:`kl_divergence` for KL terms.
        """
        shape = _sample_shape(sample_shape) + self.batch_shape
        eps = jax.random.normal(_key(seed), shape, dtype=jnp.result_type(self.loc, float))
        return jax.nn.relu(jnp.broadcast_to(self.loc, shape) + jnp.broadcast_to(self.scale, shape) * eps)

    def sample_and_log_prob(self, *, seed: PRNGKey, sample_shape: int | Sequence[int] = ()) -> tuple[Array, Array]:
        z = self.sample(seed=seed, sample_shape=sample_shape)
        return z, self.log_prob(z)

    def mean(self) -> Array:
        """``E[z] = scale (a Phi(a) + phi(a))``, ``a = loc/scale``."""
        a = self._alpha()
        return self.scale * (_times(jnp.exp(log_ndtr(a)), a) + _std_normal_pdf(a))

    def variance(self) -> Array:
        """``scale^2 v(a)``, ``v`` the variance of ``max(0, a + eps)``, in a form without cancellation for ``a >= 0``.

        ``v = Phi + a^2 Phi Q + a phi (1 - 2 Phi) - phi^2`` with ``Q = Phi(-a)``:
        for ``a >> 1`` every term but ``Phi ~ 1`` is tiny (the unscaled
        ``E[z^2] - E[z]^2`` returned 0 at ``a = 1e8``). For ``a << 0`` terms of size
        ``a^2 Phi`` cancel: relative error grows like ``a^4 eps`` (2e-11 at ``a = -8``, float64).
        """
        a = self._alpha()
        big, q, small = jnp.exp(log_ndtr(a)), jnp.exp(log_ndtr(-a)), _std_normal_pdf(a)
        v = big + _times(big * q, jnp.square(a)) + _times(small, a) * (1.0 - 2.0 * big) - jnp.square(small)
        return jnp.square(self.scale) * jnp.maximum(v, 0.0)

    def entropy(self) -> Array:
        """Entropy w.r.t. ``delta_0 + Lebesgue`` (closed form; may be negative)."""
        a = self._alpha()
        lq0 = self.log_prob_zero()
        big_phi, small_phi = jnp.exp(log_ndtr(a)), _std_normal_pdf(a)
        m2 = big_phi - _times(small_phi, a)  # int_{t > -a} t^2 phi(t) dt
        slab = big_phi * (jnp.log(self.scale) + _HALF_LOG_2PI) + 0.5 * m2
        return slab - _times(jnp.exp(lq0), lq0)

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
    m2 = m0 - _times(m1, a)
    slab = _times(m0, jnp.log(p.scale) - jnp.log(q.scale)) + 0.5 * _times(m2, jnp.square(r) - 1.0) \
        + _times(m1, r * d) + 0.5 * _times(m0, jnp.square(d))
    # A spike q puts mass on but p does not (lp0 = -inf) gives +inf, the right answer; no spike in q gives 0.
    return _times(jnp.exp(lq0), lq0 - lp0) + slab


def kl_divergence_mc(q: RectifiedGaussian, p: RectifiedGaussian, key: PRNGKey, num_samples: int) -> Array:
    """Monte-Carlo ``KL(q || p) ~ mean_s [log q(z_s) - log p(z_s)]``, ``z_s ~ q``.

    Finite because both put mass on ``z == 0``. An unbiased *value* (use it to
    check :func:`kl_divergence`); train with the closed form.

    Returns:
      Array of the broadcast batch shape.
    """
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be >= 1; got {num_samples}.")
    z = q.sample(seed=key, sample_shape=(num_samples,))
    return jnp.mean(q.log_prob(z) - p.log_prob(z), axis=0)

