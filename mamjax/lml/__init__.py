"""Masked pre-training as log-marginal likelihood (Moreno-Muñoz, Recasens, Hauberg, NeurIPS 2023).

The cumulative masked pre-training score over all mask sizes equals ``log p(x)``:
``cumulative_mpt(cond_logpdf, x, key, K)`` estimates it from any model's
conditionals ``cond_logpdf(x, mask) -> [D] log p(x_j | x_observed)``; :func:`lowrank_mpt` is the fast
route for PPCA / low-rank-plus-diagonal Gaussians (every mask in one matrix product) and
:func:`ordering_mpt` the fast route for any Gaussian (one Cholesky per random ordering scores a
mask of every size); :func:`lowrank_mpt_mean` / :func:`ordering_mpt_mean` / :func:`gaussian_mpt_mean` (any covariance,
independent masks) give batch means
(a training loss) from the batch's second moment, with no per-example work per mask.
Exact references: :mod:`gaussian` (MVN conditionals), :mod:`ppca`, :mod:`gp`,
:mod:`linear_vae` (grid-integrated Bernoulli linear latent model), and
:mod:`bridge` turns masked models' logits or marginals into ``cond_logpdf``.
"""

from mamjax.lml.estimator import (
    MPTEstimate,
    MPTMasks,
    check_mpt_masks,
    cumulative_mpt,
    cumulative_mpt_loop,
    masked_pretraining_score,
    mpt_masks,
    rates_to_num_hidden,
    size_coefficients,
    uniform_size_masks,
)
from mamjax.lml.lowrank import gaussian_mpt, lowrank_mpt
from mamjax.lml.ordering import OrderingEstimate, ordering_masks, ordering_mpt
from mamjax.lml.moments import lowrank_mpt_mean, ordering_mpt_mean, second_moment
from mamjax.lml.fullcov import gaussian_mpt_mean
from mamjax.lml.gaussian import mvn_conditional, mvn_conditional_logpdf, mvn_logpdf, normal_logpdf
from mamjax.lml.ppca import ppca_cond_logpdf, ppca_conditional, ppca_cov, ppca_lml, ppca_mle, ppca_sample
from mamjax.lml.gp import gp_cond_logpdf, gp_cov, gp_lml, kernel_matrix
from mamjax.lml.linear_vae import (
    LatentGrid,
    latent_grid,
    linear_vae_cond_logpdf,
    linear_vae_elbo,
    linear_vae_lml,
    linear_vae_mask_scores,
    linear_vae_mpt,
    linear_vae_subset_lml,
)
from mamjax.lml import objectives
from mamjax.lml.bridge import (
    bernoulli_cond_logpdf,
    categorical_cond_logpdf,
    marginal_cond_logpdf,
    mpt_log_likelihood,
)

__all__ = [
    "MPTEstimate", "MPTMasks", "check_mpt_masks", "cumulative_mpt", "cumulative_mpt_loop",
    "masked_pretraining_score", "mpt_masks", "rates_to_num_hidden",
    "size_coefficients", "uniform_size_masks", "lowrank_mpt", "gaussian_mpt",
    "OrderingEstimate", "ordering_masks", "ordering_mpt", "lowrank_mpt_mean", "ordering_mpt_mean", "second_moment",
    "gaussian_mpt_mean",
    "mvn_conditional", "mvn_conditional_logpdf", "mvn_logpdf", "normal_logpdf",
    "ppca_cond_logpdf", "ppca_conditional", "ppca_cov", "ppca_lml", "ppca_mle", "ppca_sample",
    "gp_cond_logpdf", "gp_cov", "gp_lml", "kernel_matrix",
    "LatentGrid", "latent_grid", "linear_vae_cond_logpdf", "linear_vae_elbo", "linear_vae_lml",
    "linear_vae_mask_scores", "linear_vae_mpt", "linear_vae_subset_lml",
    "objectives", "bernoulli_cond_logpdf", "categorical_cond_logpdf", "marginal_cond_logpdf", "mpt_log_likelihood",
]
