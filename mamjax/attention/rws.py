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
* The **sleep-q** update ``grad log q(a | x, y)`` with ``a ~ p(a | x)``, ``y ~ p(y | a, x)``
  (trajectory and label both "dreamt" by the model for the real image) follows
  ``-grad E_x KL(p(a, y | x) || p(y | x) q(a | x, y))``, as in reweighted wake-sleep's sleep phase.
* ``estimator="bound"``: the score-function gradient of ``E[L_K]`` itself
  (:func:`bound_surrogate`) with VIMCO's leave-one-out baselines (Mnih & Rezende, 2016)
  (:func:`vimco_baselines`), for model and proposal alike.

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
    "effective_sample_size", "rws_surrogate", "bound_surrogate", "vimco_baselines", "trajectory_terms",
    "wsram_loss", "ESTIMATORS", "PROPOSAL_UPDATES",
]

ESTIMATORS = ("rws", "bound")
PROPOSAL_UPDATES = ("wake", "sleep", "wake+sleep")


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
                  train_proposal: bool = True, control_variates: bool = False,
                  prior_baseline: Array | None = None) -> Array:
    """Per-example surrogate whose negative gradient is the RWS (wake + wake-q) update.

    ``-grad`` of the result is
    ``sum_k w~_k grad log p(y|a_k,x) + [prior term] + sum_k v_k grad log q(a_k|x,y)``,
    with prior term ``sum_k w~_k grad log p(a_k|x)`` and ``v_k = w~_k``, or with control
    variates the centred forms of :mod:`mamjax.attention.control_variates`
    (``v_k = w~_k - 1/K``; prior term from :func:`~control_variates.prior_surrogate`, its
    coefficient ``1/K`` or a learned ``prior_baseline / K``).

    Args:
      log_lik: [..., K] log p(y | a_k, x).
      log_p: [..., K] log p(a_k | x) (sum over the T steps), or [..., K, T] per step.
      log_q: [..., K] log q(a_k | x, y) (or per step). Pass ``log_p`` itself when the proposal is the prior.
      expected_log_p: ``Trajectory.expected_log_p`` (summed, or per step like ``log_p``); needed
        for ``control_variates``.
      train_proposal: include the wake-q term (False when ``q`` is the prior).
      control_variates: use the centred estimators.
      prior_baseline: [..., K, T] learned coefficients ``b(h_{k,t-1})`` (per-step ``log_p``
        needed); only with ``control_variates``.

    Returns:
      [...] surrogate loss (not a bound: report :func:`iw_bound`).
    """
    if control_variates and expected_log_p is None:
        raise ValueError("`expected_log_p` is required when `control_variates` is True.")
    if prior_baseline is not None and not control_variates:
        raise ValueError("`prior_baseline` scales the prior control variate: set `control_variates=True`.")
    total = lambda v: v.sum(-1) if v.ndim == log_lik.ndim + 1 else v  # noqa: E731
    log_w = sg(log_importance_weights(log_lik, total(log_p), total(log_q)))
    w = normalized_weights(log_w)
    prior = cv.prior_surrogate(w, log_p, expected_log_p if control_variates else None, prior_baseline)
    loss = -(jnp.sum(w * log_lik, axis=-1) + prior)
    if train_proposal:
        v = cv.centered_proposal_weights(w) if control_variates else w
        loss = loss - jnp.sum(v * total(log_q), axis=-1)
    return loss


def bound_surrogate(log_lik: Array, log_p: Array, log_q: Array, *, baseline: Array | float = 0.0) -> Array:
    """Surrogate whose gradient is the score-function estimator of ``grad E_q[L_K]``.

    ``grad E[L_K] = E[ sum_k w~_k grad log w_k + sum_k (L_K - b_k) grad log q(a_k | x, y) ]``
    (the samples depend on the parameters of ``q``; ``b_k`` is any baseline independent of
    ``a_k``, e.g. :func:`vimco_baselines`). The value of the surrogate equals ``L_K`` (to maximize).

    Args:
      log_lik, log_p, log_q: [..., K] as in :func:`rws_surrogate`; with ``log_q = log_p``
        (the same array) ``q`` is the prior with shared parameters.
      baseline: [..., K] per-sample, [...] or scalar.
    """
    bound = iw_bound(log_importance_weights(log_lik, log_p, log_q))
    b = jnp.asarray(baseline, bound.dtype)
    b = b if b.ndim == log_q.ndim else jnp.broadcast_to(b[..., None] if b.ndim else b, log_q.shape)
    adv = sg(bound[..., None] - b)
    return bound + jnp.sum(adv * (log_q - sg(log_q)), axis=-1)


def vimco_baselines(log_w: Array) -> Array:
    """VIMCO leave-one-out baselines (Mnih & Rezende, 2016), [..., K] from log weights [..., K].

    ``b_k = log (1/K) (sum_{j != k} w_j + exp(mean_{j != k} log w_j))``: the bound with ``w_k``
    replaced by the geometric mean of the others, so ``b_k`` does not depend on ``a_k``. Needs K >= 2.
    """
    k = log_w.shape[-1]
    if k < 2:
        raise ValueError(f"VIMCO baselines need K >= 2 samples; got K = {k}.")
    log_w = sg(log_w)
    others_mean = (jnp.sum(log_w, -1, keepdims=True) - log_w) / (k - 1)
    eye = jnp.eye(k, dtype=bool)
    # Row i of the [..., K, K] matrix is log_w with entry i replaced by the mean of the others.
    replaced = jnp.where(eye, others_mean[..., :, None], log_w[..., None, :])
    return iw_bound(replaced)


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
               control_variates: bool = True, proposal_update: str = "wake", estimator: str = "rws",
               feature_table: bool | None = None) -> tuple[Array, dict]:
    """WS-RAM training loss: ``loss_fn(params, batch, key) -> (loss, metrics)`` for ``train``.

    Samples K trajectories per image from the proposal (or from the prior when
    ``params`` has no ``"proposal"``), all ``B * K`` in one pass, and returns the batch mean of
    :func:`rws_surrogate` (or of :func:`bound_surrogate` with VIMCO baselines). With a
    ``"prior_baseline"`` in ``params`` the prior control variate uses its learned
    coefficients, fit by squared error to ``K w~_k``.

    Args:
      batch: {"image": [B, S, S] uint8 (0..255) or float in [0, 1], "label": int [B]}.
      num_samples: K.
      control_variates: centred wake-q weights and the prior control variate (estimator "rws").
      proposal_update: "wake" (wake-q), "sleep" (sleep-q: one dreamt trajectory and label per
        image) or "wake+sleep" (their sum), for a ``"proposal"`` in ``params``.
      estimator: "rws" (wake / wake-q updates) or "bound" (score-function gradient of ``L_K``).
      feature_table: passed to :func:`mamjax.attention.model.rollout_batch` (same numbers either way).

    Returns:
      ``(loss, metrics)`` with metrics ``iw_bound`` (mean L_K), ``variational_bound``,
      ``ess``, ``log_ess`` (mean log ESS), ``nll`` (= -iw_bound) and ``prior_baseline_mse``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"`estimator` must be one of {ESTIMATORS}; got {estimator!r}.")
    if proposal_update not in PROPOSAL_UPDATES:
        raise ValueError(f"`proposal_update` must be one of {PROPOSAL_UPDATES}; got {proposal_update!r}.")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    images, labels = model_lib.float_images(batch["image"]), jnp.asarray(batch["label"], jnp.int32)
    model_lib.check_labels(batch["label"], ram.config.num_classes, "batch['label']")
    has_q = "proposal" in params
    has_pb = "prior_baseline" in params
    if has_pb and (estimator != "rws" or not control_variates):
        raise ValueError("a 'prior_baseline' needs estimator='rws' with control_variates=True.")
    if proposal_update != "wake" and not has_q:
        raise ValueError(f"`proposal_update={proposal_update!r}` needs a 'proposal' in `params`.")
    k_wake, k_sleep, k_y = jax.random.split(key, 3)
    traj = model_lib.rollout_batch(ram, params, images, labels, k_wake, num_samples=num_samples,
                                   sample_from="proposal" if has_q else "prior", feature_table=feature_table)
    log_lik, log_p, log_q = trajectory_terms(traj, labels)
    log_w = sg(log_importance_weights(log_lik, log_p, log_q))
    mse = jnp.zeros((), log_w.dtype)
    if estimator == "bound":
        q_terms = log_q if has_q else log_p  # the same array: q is the prior
        surrogate = -bound_surrogate(log_lik, log_p, q_terms, baseline=vimco_baselines(log_w))
    else:
        wake_q = has_q and proposal_update in ("wake", "wake+sleep")
        pb = traj.prior_baselines if has_pb else None
        surrogate = rws_surrogate(log_lik, traj.log_p, traj.log_q if has_q else traj.log_p,
                                  expected_log_p=traj.expected_log_p, train_proposal=wake_q,
                                  control_variates=control_variates, prior_baseline=pb)
        if has_pb:
            target = sg(num_samples * normalized_weights(log_w))[..., None]
            mse = jnp.mean((target - traj.prior_baselines) ** 2)
    loss = jnp.mean(surrogate) + mse
    if has_q and proposal_update in ("sleep", "wake+sleep"):
        dream = model_lib.rollout_batch(ram, {"model": params["model"]}, images, labels, k_sleep, num_samples=1,
                                        sample_from="prior")
        y_dream = jax.random.categorical(k_y, sg(dream.class_logits[:, 0]))
        dream = jax.tree.map(sg, dream)
        loss = loss - jnp.mean(model_lib.proposal_log_prob(ram, params, images, y_dream, dream).sum(-1))
    bound = iw_bound(log_w)
    ess = effective_sample_size(log_w)
    metrics = {"iw_bound": jnp.mean(bound), "variational_bound": jnp.mean(variational_bound(log_w)),
               "ess": jnp.mean(ess), "log_ess": jnp.mean(jnp.log(ess)), "nll": -jnp.mean(bound),
               "prior_baseline_mse": mse}
    return loss, metrics
