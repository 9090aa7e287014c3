"""Optional distrax interop: :func:`as_distrax` wraps a mamjax distribution as a ``distrax.Distribution``.

distrax is not a dependency of mamjax; this module imports it only when called. The wrapper
delegates ``log_prob``, sampling, ``entropy``, ``mean``, ``variance`` and the shapes to the
mamjax object, so distrax's combinators apply, e.g.
``distrax.Independent(as_distrax(RectifiedGaussian(loc, scale)), 1)`` for a layer of units whose
``log_prob`` sums over the last axis.
"""

from __future__ import annotations

import functools

__all__ = ["as_distrax"]


@functools.lru_cache(maxsize=1)
def _wrapper_class():
    try:
        import distrax
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("as_distrax needs distrax (pip install distrax; 0.1.9 works with jax 0.10 together with "
                          "a recent tfp-nightly).") from e
    import jax

    class MamjaxDistribution(distrax.Distribution):
        """A distrax view of a mamjax distribution (``RectifiedGaussian``, ``Normal``, ``Bernoulli``)."""

        def __init__(self, dist):
            super().__init__()
            self._dist = dist

        @property
        def mamjax(self):
            return self._dist

        @property
        def event_shape(self):
            return self._dist.event_shape

        @property
        def batch_shape(self):
            return self._dist.batch_shape

        def _sample_n(self, key, n):
            return self._dist.sample(seed=key, sample_shape=(n,))

        def log_prob(self, value):
            return self._dist.log_prob(value)

        def entropy(self):
            return self._dist.entropy()

        def mean(self):
            return self._dist.mean()

        def variance(self):
            return self._dist.variance()

        def kl_divergence(self, other_dist, **kwargs):
            """Closed form of the mamjax class when ``other_dist`` wraps the same class; else distrax's rules."""
            if isinstance(other_dist, MamjaxDistribution) and type(other_dist.mamjax) is type(self._dist):
                return self._dist.kl_divergence(other_dist.mamjax)
            return super().kl_divergence(other_dist, **kwargs)

    jax.tree_util.register_pytree_node(MamjaxDistribution, lambda d: ((d.mamjax,), None),
                                       lambda _, children: MamjaxDistribution(children[0]))
    return MamjaxDistribution


def as_distrax(dist):
    """``dist`` (a mamjax distribution) as a ``distrax.Distribution``; raises ImportError without distrax."""
    return _wrapper_class()(dist)
