"""Reweighted wake-sleep for recurrent attention (WS-RAM, Ba et al., NIPS 2015).

The attention model is a latent-variable classifier ``p(y | x) = sum_a p(a | x) p(y | a, x)``
over glimpse trajectories ``a``. With K trajectories from a proposal ``q(a | x, y)`` and
importance weights

    w_k = p(y | a_k, x) p(a_k | x) / q(a_k | x, y),       w~_k = w_k / sum_j w_j,

* ``p^ = (1/K) sum_k w_k`` is an **unbiased** estimate of ``p(y | x)``, so
  ``L_K = log p^`` (:func:`iw_bound`) is a stochastic **lower bound**:
  ``E[L_K] <= log p(y | x)``, rising with K (Burda et al., 2016).
* ``K = 1`` gives the single-sample **variational bound**
  ``L_1 = E_q[log p(y, a | x) - log q(a | x, y)]`` (:func:`variational_bound`). With
  ``q = p(a | x)`` it is ``E_p[log p(y | a, x)]``: the RAM objective with a
  log-likelihood reward, whose score-function gradient is REINFORCE
  (:func:`bound_surrogate` with ``K = 1`` and no proposal equals
  :func:`mamjax.attention.reinforce.reinforce_surrogate` sample by sample).
* The **wake** update of the model (classifier, glimpse net, core and policy) is the
  RWS estimate of ``grad log p(y | x)``:
  ``sum_k w~_k [grad log p(y | a_k, x) + grad log p(a_k | x)]``. It equals the gradient
  of ``L_K`` with the samples held fixed (``grad_theta log p^``).
* The **wake-q** update of the proposal ``sum_k w~_k grad log q(a_k | x, y)``
  follows ``-grad KL(p(a | x, y) || q)`` (Bornschein & Bengio, 2015).

The updates are written as surrogate losses whose gradients are these estimators.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from mamjax.attention import control_variates as cv
from mamjax.attention import model as model_lib

Array = jax.Array
sg = jax.lax.stop_gradient

__all__ = [
    "log_importance_weights", "iw_bound", "variational_bound", "normalized_weights",
    "effective_sample_size", "rws_surrogate", "bound_surrogate", "trajectory_terms", "wsram_loss",
]


def log_importance_weights(log_lik: Array, log_p: Array, log_q: Array) -> Array:
    """``log w_k = log p(y | a_k, x) + log p(a_k | x) - log q(a_k | x, y)``; all [..., K]."""
    return log_lik + log_p - log_q


def iw_bound(log_w: Array, axis: int = -1) -> Array:
    """``L_K = log (1/K) sum_k w_k``: a lower bound on ``log p(y | x)`` in expectation.

    ``exp(L_K)`` is unbiased for ``p(y | x)``; ``E[L_1] <= E[L_K] <= E[L_{K+1}] <= log p(y | x)``.
    """
    return logsumexp(log_w, axis=axis) - jnp.log(log_w.shape[axis])


def variational_bound(log_w: Array, axis: int = -1) -> Array:
    """Average of K single-sample variational bounds, ``(1/K) sum_k log w_k``.

    Its expectation is ``L_1 = E_q[log p(y, a | x) - log q(a | x, y)] <= E[L_K]`` (Jensen).
    """
    return jnp.mean(log_w, axis=axis)


def normalized_weights(log_w: Array, axis: int = -1) -> Array:
    """``w~_k = w_k / sum_j w_j`` (softmax of the log weights)."""
    return jax.nn.softmax(log_w, axis=axis)


def effective_sample_size(log_w: Array, axis: int = -1) -> Array:
    """``1 / sum_k w~_k^2`` in [1, K]."""
    return 1.0 / jnp.sum(normalized_weights(log_w, axis) ** 2, axis=axis)


def rws_surrogate(log_lik: Array, log_p: Array, log_q: Array, *, expected_log_p: Array | None = None,
                  train_proposal: bool = True, control_variates: bool = False) -> Array:
    """Per-example surrogate whose negative gradient is the RWS (wake + wake-q) update.

    ``-grad`` of the result is
    ``sum_k w~_k grad log p(y|a_k,x) + [prior term] + sum_k v_k grad log q(a_k|x,y)``,
    with prior term ``sum_k w~_k grad log p(a_k|x)`` and ``v_k = w~_k``, or with control
    variates the centred forms of :mod:`mamjax.attention.control_variates`
    (``v_k = w~_k - 1/K``; prior term from :func:`~control_variates.prior_surrogate`).

    Args:
      log_lik: [..., K] log p(y | a_k, x).
      log_p: [..., K] log p(a_k | x) (sum over the T steps).
      log_q: [..., K] log q(a_k | x, y). Pass ``log_p`` itself when the proposal is the prior.
      expected_log_p: [..., K] ``Trajectory.expected_log_p`` summed over steps; needed for
        ``control_variates``.
      train_proposal: include the wake-q term (False when ``q`` is the prior).
      control_variates: use the centred estimators.

    Returns:
      [...] surrogate loss (not a bound: report :func:`iw_bound`).
    """
    if control_variates and expected_log_p is None:
        raise ValueError("`expected_log_p` is required when `control_variates` is True.")
    log_w = sg(log_importance_weights(log_lik, log_p, log_q))
    w = normalized_weights(log_w)
    prior = cv.prior_surrogate(w, log_p, expected_log_p if control_variates else None)
    loss = -(jnp.sum(w * log_lik, axis=-1) + prior)
    if train_proposal:
        v = cv.centered_proposal_weights(w) if control_variates else w
        loss = loss - jnp.sum(v * log_q, axis=-1)
    return loss


def bound_surrogate(log_lik: Array, log_p: Array, log_q: Array, *, baseline: Array | float = 0.0) -> Array:
    """Surrogate whose gradient is the score-function estimator of ``grad E_q[L_K]``.

    ``grad E[L_K] = E[ sum_k w~_k grad log w_k + (L_K - b) sum_k grad log q(a_k | x, y) ]``
    (the samples depend on the parameters of ``q``; ``b`` is any baseline independent of
    the samples). The value of the surrogate equals ``L_K`` (to maximize).

    Args:
      log_lik, log_p, log_q: [..., K] as in :func:`rws_surrogate`; with ``log_q = log_p``
        (the same array) ``q`` is the prior with shared parameters.
      baseline: [...] or scalar.
    """
    bound = iw_bound(log_importance_weights(log_lik, log_p, log_q))
    score = jnp.sum(log_q, axis=-1)
    return bound + sg(bound - baseline) * (score - sg(score))


def trajectory_terms(traj: model_lib.Trajectory, labels: Array) -> tuple[Array, Array, Array]:
    """``(log p(y | a, x), log p(a | x), log q(a | x, y))`` per trajectory from a :class:`Trajectory`.

    Args:
      traj: leaves with leading [B, K] axes.
      labels: int [B].

    Returns:
      Three [B, K] arrays.
    """
    logp_y = jax.nn.log_softmax(traj.class_logits)
    log_lik = jnp.take_along_axis(logp_y, labels[:, None, None], axis=-1)[..., 0]
    return log_lik, traj.log_p.sum(-1), traj.log_q.sum(-1)


def wsram_loss(ram: model_lib.RAM, params: dict, batch: dict, key: Array, *, num_samples: int,
               control_variates: bool = True) -> tuple[Array, dict]:
    """WS-RAM training loss: ``loss_fn(params, batch, key) -> (loss, metrics)`` for ``train``.

    Samples K trajectories per image from the proposal (or from the prior when
    ``params`` has no ``"proposal"``) and returns the batch mean of
    :func:`rws_surrogate`. Gradients: wake update for ``params["model"]``, wake-q
    update for ``params["proposal"]``.

    Args:
      batch: {"image": [B, S, S] uint8 (0..255) or float in [0, 1], "label": int [B]}.
      num_samples: K.

    Returns:
      ``(loss, metrics)`` with metrics ``iw_bound`` (mean L_K), ``variational_bound``,
      ``ess`` and ``nll`` (= -iw_bound).
    """
    images, labels = model_lib.float_images(batch["image"]), jnp.asarray(batch["label"], jnp.int32)
    has_q = "proposal" in params
    traj = model_lib.rollout_batch(ram, params, images, labels, key, num_samples=num_samples,
                                   sample_from="proposal" if has_q else "prior")
    log_lik, log_p, log_q = trajectory_terms(traj, labels)
    loss = jnp.mean(rws_surrogate(log_lik, log_p, log_q, expected_log_p=traj.expected_log_p.sum(-1),
                                  train_proposal=has_q, control_variates=control_variates))
    log_w = sg(log_importance_weights(log_lik, log_p, log_q))
    bound = iw_bound(log_w)
    metrics = {"iw_bound": jnp.mean(bound), "variational_bound": jnp.mean(variational_bound(log_w)),
               "ess": jnp.mean(effective_sample_size(log_w)), "nll": -jnp.mean(bound)}
    return loss, metrics

