"""Wake-sleep recurrent attention models (Ba, Grosse, Salakhutdinov, Frey, NIPS 2015).

Hard-attention classifiers that take T glimpses (at grid or Gaussian locations, with a ReLU
or LSTM core), trained by reweighted wake-sleep with an inference network (WS-RAM: wake /
sleep-q proposal updates, control variates, a learned prior baseline, or the VIMCO bound
estimator) or by REINFORCE (RAM, Mnih et al. 2014).

* :mod:`~mamjax.attention.glimpse`: multi-resolution glimpse sensor, location grid.
* :mod:`~mamjax.attention.model`: glimpse net, core, policy, classifier; ``rollout_batch``
  (B x K trajectories in one pass), ``predict`` / ``error_rate`` (M-sample averaged
  predictive), exact enumeration for tiny models.
* :mod:`~mamjax.attention.proposal`: the inference network ``q(a | x, y)``.
* :mod:`~mamjax.attention.rws`: importance weights, bounds, RWS surrogate, ``wsram_loss``.
* :mod:`~mamjax.attention.reinforce`: REINFORCE with a learned baseline, ``reinforce_loss``.
* :mod:`~mamjax.attention.control_variates`: centred weights; variance measurement.
* :mod:`~mamjax.attention.data`: 60x60 translated / cluttered MNIST from a seed.
"""

from mamjax.attention.control_variates import (centered_proposal_weights, estimator_moments, prior_surrogate,
                                               total_variance)
from mamjax.attention.glimpse import extract_glimpse, location_grid, normalized_locations
from mamjax.attention.model import (RAM, RAMConfig, Trajectory, check_labels, error_rate, exact_log_likelihood,
                                    exact_posterior, make_ram, predict, proposal_log_prob, rollout, rollout_batch)
from mamjax.attention.reinforce import reinforce_loss, reinforce_surrogate
from mamjax.attention.rws import (bound_surrogate, effective_sample_size, iw_bound, log_importance_weights,
                                  normalized_weights, rws_surrogate, variational_bound, vimco_baselines, wsram_loss)

__all__ = [
    "RAM", "RAMConfig", "Trajectory", "bound_surrogate", "centered_proposal_weights", "check_labels",
    "effective_sample_size", "error_rate", "estimator_moments", "exact_log_likelihood", "exact_posterior",
    "extract_glimpse", "iw_bound", "location_grid", "log_importance_weights", "make_ram", "normalized_locations",
    "normalized_weights", "predict", "prior_surrogate", "proposal_log_prob", "reinforce_loss", "reinforce_surrogate",
    "rollout", "rollout_batch", "rws_surrogate", "total_variance", "variational_bound", "vimco_baselines",
    "wsram_loss",
]
