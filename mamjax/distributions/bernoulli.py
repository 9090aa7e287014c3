"""Bernoulli distribution over {0, 1} from logits, with the distrax / TFP method signatures.

The log-likelihood is ``-optax.sigmoid_binary_cross_entropy(logits, x)`` (stable for large
``|logits|``): the library's function, not a copy.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from mamjax.distributions.rectified_gaussian import _key, _sample_shape

Array = jax.Array
PRNGKey = jax.Array

__all__ = ["Bernoulli", "bernoulli_log_prob"]


def _check_binary(x) -> None:
    if not isinstance(x, jax.core.Tracer):
        v = np.asarray(x)
        if v.size and not np.all((v == 0) | (v == 1)):
            raise ValueError(f"`x` must hold binary values in {{0, 1}}; got values in [{v.min()}, {v.max()}] "
                             "(binarize grey levels first).")


def bernoulli_log_prob(logits: Array, x: Array) -> Array:
    """Elementwise ``log Bern(x; sigmoid(logits))`` = ``-softplus(-l) x - softplus(l) (1 - x)``.

    Args:
      logits: ``[...]`` real logits.
      x: ``[...]`` values in {0, 1} (floats allowed; broadcast against ``logits``);
        checked eagerly when concrete (``ValueError`` for e.g. grey levels 0..255),
        not when traced.

    Returns:
      Array of the broadcast shape.
    """
    _check_binary(x)
    logits = jnp.asarray(logits)
    x = jnp.asarray(x, jnp.result_type(logits, float))
    shape = jnp.broadcast_shapes(logits.shape, x.shape)
    return -optax.sigmoid_binary_cross_entropy(jnp.broadcast_to(logits, shape), jnp.broadcast_to(x, shape))


@struct.dataclass
class Bernoulli:
    """Elementwise ``Bern(sigmoid(logits))``; a pytree, ``event_shape == ()`` (as ``distrax.Bernoulli``).

    Attributes:
      logits: ``[...]`` real logits.
    """

    logits: Array

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return jnp.shape(self.logits)

    @property
    def event_shape(self) -> tuple[int, ...]:
        return ()

    @property
    def probs(self) -> Array:
        return jax.nn.sigmoid(self.logits)

    def log_prob(self, x: Array) -> Array:
        """``log P(x)`` for ``x`` in {0, 1}; see :func:`bernoulli_log_prob`."""
        return bernoulli_log_prob(self.logits, x)

    def sample(self, *, seed: PRNGKey, sample_shape: int | Sequence[int] = ()) -> Array:
        """``[*sample_shape, *batch_shape]`` int32 draws in {0, 1}."""
        shape = _sample_shape(sample_shape) + self.batch_shape
        u = jax.random.uniform(_key(seed), shape, dtype=jnp.result_type(self.logits, float))
        # u < sigmoid(l)  <=>  logit(u) < l, without rounding sigmoid(l) to 1 for large l
        return (jnp.log(u) - jnp.log1p(-u) < jnp.broadcast_to(self.logits, shape)).astype(jnp.int32)

    def sample_and_log_prob(self, *, seed: PRNGKey, sample_shape: int | Sequence[int] = ()) -> tuple[Array, Array]:
        x = self.sample(seed=seed, sample_shape=sample_shape)
        return x, self.log_prob(x)

    def mean(self) -> Array:
        return self.probs

    def variance(self) -> Array:
        return self.probs * jax.nn.sigmoid(-self.logits)

    def entropy(self) -> Array:
        """``-p log p - (1 - p) log(1 - p)`` = ``softplus(l) - l sigmoid(l)``, stable for large ``|l|``."""
        lg = self.logits
        return jax.nn.softplus(lg) - lg * jax.nn.sigmoid(lg)

    def kl_divergence(self, other: "Bernoulli") -> Array:
        """Closed-form ``KL(self || other)`` in log space."""
        p, lp, lq = self.probs, self.logits, other.logits
        # sum_x P(x) [log P(x) - log Q(x)] with log P(1) = -softplus(-l), log P(0) = -softplus(l)
        return p * (jax.nn.softplus(-lq) - jax.nn.softplus(-lp)) + \
            (1.0 - p) * (jax.nn.softplus(lq) - jax.nn.softplus(lp))
