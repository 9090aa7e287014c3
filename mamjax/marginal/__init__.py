"""Marginalization models (MaM; Liu, Ramadge, Adams, ICML 2024) and the AO-ARM baseline.

A *marginal network* ``f_theta(x_S) = log p_theta(x_S)`` scores any partial observation
in one network call; an any-order autoregressive *conditional network*
``p_phi(x_i | x_S)`` gives exact chain-rule likelihoods in D calls. Data are
categorical with K values; masks are True = observed (see :mod:`mamjax.masks`).

Public functions (all pure in ``(params, x, mask[, key])``; networks are callables):

- networks: :func:`make_conditional_net`, :func:`make_marginal_net`
- AO-ARM: :func:`arm_loss`, :func:`arm_log_marginal`, :func:`arm_log_marginal_ensemble`,
  :func:`conditional_log_probs`, :func:`log_likelihood_estimate`
- MaM: :func:`log_marginal`, :func:`log_marginal_many_masks`, :func:`log_normalizer`
- objectives: :func:`mle_loss` (self-consistency distillation), :func:`joint_loss`,
  :func:`energy_loss` (REINFORCE + alpha * penalty), :func:`self_consistency_penalty`,
  :func:`self_consistency_errors`
- sampling: :func:`sample`, :func:`conditional_sample`, :func:`gibbs_step` (conditional network);
  :func:`marginal_sample` + :func:`importance_log_weights` (marginal network alone, paper eq. 6)
- evaluation: :mod:`mamjax.marginal.agreement` (the paper's agreement protocol)

Submodules: :mod:`mamjax.marginal.exact` (enumerated distributions with the networks'
signatures: ground truth for tests and tiny problems) and :mod:`mamjax.marginal.experiment`
(set-ups and evaluations shared by the examples, benchmark and notebook).
"""

from mamjax.marginal.arm import (arm_log_marginal, arm_log_marginal_ensemble, arm_loss, conditional_log_probs,
                                 log_likelihood_estimate, make_conditional_net, subset_first_ordering)
from mamjax.marginal.encoding import censor, encode_onehot
from mamjax.marginal.losses import (energy_loss, joint_loss, mle_loss, self_consistency_errors,
                                    self_consistency_penalty)
from mamjax.marginal.marginal_net import log_marginal, log_marginal_many_masks, log_normalizer, make_marginal_net
from mamjax.marginal.sampling import (conditional_sample, fill_in_order, gibbs_step, importance_log_weights,
                                      marginal_sample, sample)

__all__ = [
    "make_conditional_net", "make_marginal_net", "arm_loss", "arm_log_marginal", "arm_log_marginal_ensemble",
    "conditional_log_probs", "log_likelihood_estimate", "subset_first_ordering", "log_marginal",
    "log_marginal_many_masks", "log_normalizer",
    "mle_loss", "joint_loss", "energy_loss", "self_consistency_penalty", "self_consistency_errors",
    "sample", "conditional_sample", "gibbs_step", "fill_in_order", "marginal_sample", "importance_log_weights",
    "encode_onehot", "censor",
]
