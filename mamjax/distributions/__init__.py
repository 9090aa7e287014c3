"""Distributions not served by an installed library, with the distrax / TFP method signatures.

``RectifiedGaussian``, ``Normal`` and ``Bernoulli`` have ``sample(seed=..., sample_shape=...)``,
``sample_and_log_prob``, ``log_prob``, ``entropy``, ``kl_divergence(other)``, ``mean``,
``variance``, ``batch_shape`` and ``event_shape`` (``()``: elementwise, as ``distrax.Normal``).
:func:`as_distrax` wraps any of them as a ``distrax.Distribution`` when distrax is installed.
"""

from mamjax.distributions.bernoulli import Bernoulli, bernoulli_log_prob
from mamjax.distributions.distrax_interop import as_distrax
from mamjax.distributions.normal import Normal
from mamjax.distributions.rectified_gaussian import RectifiedGaussian, kl_divergence, kl_divergence_mc

__all__ = ["RectifiedGaussian", "Normal", "Bernoulli", "bernoulli_log_prob", "as_distrax", "kl_divergence",
           "kl_divergence_mc"]
