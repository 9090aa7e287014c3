"""Distributions not served by an installed library: the rectified Gaussian, a
matching diagonal Normal, and a Bernoulli log-likelihood helper."""

from mamjax.distributions.bernoulli import bernoulli_log_prob
from mamjax.distributions.normal import Normal
from mamjax.distributions.rectified_gaussian import RectifiedGaussian, kl_divergence, kl_divergence_mc

__all__ = ["RectifiedGaussian", "Normal", "bernoulli_log_prob", "kl_divergence", "kl_divergence_mc"]
