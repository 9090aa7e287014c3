"""MaM objectives: self-consistency distillation, joint training, energy-based training.

Marginalization self-consistency (Liu, Ramadge, Adams 2024, eq. 4): for any ordering
sigma and step d,

    f_theta(x_sigma(<d)) + log p_phi(x_sigma(d) | x_sigma(<d)) = f_theta(x_sigma(<=d)),

and f_theta(empty) = log Z (0 for a normalized model). The penalty used by every
objective here is the squared error of this identity at one random (sigma, d) per
example, scaled by D so it estimates the sum over the D steps of an ordering:

    R(theta, phi; x) = D * E_{sigma, d}[(f(x_sigma(<d)) + log p_phi(.) - f(x_sigma(<=d)))^2]
                       + (f(empty) - log Z)^2.

All losses follow the stateful step shape of :func:`mamjax.train.make_train_step`:
``loss(params, chains, batch, key) -> (loss, (metrics, new_chains))`` once the
networks and options are bound with ``functools.partial``. ``params`` is a dict
``{"marginal": ..., "conditional": ...}``; ``chains`` are persistent Gibbs chains
``[C, D] int`` (or None), carried as the train state's ``model_state`` so a resumed
run continues them exactly.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from mamjax import masks as masks_lib
from mamjax.marginal import arm as arm_lib
from mamjax.marginal import encoding
from mamjax.marginal import sampling

Array = jax.Array
PRNGKey = jax.Array
Params = Any
Apply = Callable[[Params, Array, Array], Array]

__all__ = [
    "self_consistency_errors",
    "self_consistency_penalty",
    "mle_loss",
    "joint_loss",
    "energy_loss",
]

_EPS = 1e-6
_SCORES = ("marginal", "conditional")


def self_consistency_errors(marg_apply: Apply, cond_apply: Apply, marg_params: Params, cond_params: Params,
                            x: Array, orderings: Array, steps: Array) -> Array:
    """Errors ``f(x_sigma(<d)) + log p_phi(x_sigma(d) | x_sigma(<d)) - f(x_sigma(<=d))``.

    Args:
      x: ``[B, D] int`` full examples.
      orderings: ``[B, D] int`` one permutation sigma per example.
      steps: ``[B] int`` step d in ``[0, D-1]`` per example.

    Returns:
      ``[B]`` errors (nats).
    """
    batch = x.shape[0]
    mask_prev = jax.vmap(masks_lib.ordering_mask)(orderings, steps)
    mask_next = jax.vmap(masks_lib.ordering_mask)(orderings, steps + 1)
    f = marg_apply(marg_params, jnp.concatenate([x, x]), jnp.concatenate([mask_prev, mask_next]))
    f_prev, f_next = f[:batch], f[batch:]
    chosen = orderings[jnp.arange(batch), steps]
    logp = arm_lib.conditional_log_probs(cond_apply, cond_params, x, mask_prev)[jnp.arange(batch), chosen]
    return f_prev + logp - f_next


def _random_steps(key: PRNGKey, batch: int, num_dims: int) -> tuple[Array, Array]:
    k_order, k_step = jax.random.split(key)
    orderings = jax.vmap(masks_lib.random_ordering, in_axes=(0, None))(jax.random.split(k_order, batch), num_dims)
    return orderings, jax.random.randint(k_step, (batch,), 0, num_dims)


def _normalizer_error(marg_apply: Apply, marg_params: Params, num_dims: int, log_z) -> Array:
    f0 = marg_apply(marg_params, jnp.zeros((1, num_dims), jnp.int32), jnp.zeros((1, num_dims), bool))[0]
    return f0 - log_z


def self_consistency_penalty(marg_apply: Apply, cond_apply: Apply, marg_params: Params, cond_params: Params,
                             x: Array, key: PRNGKey, *, log_z=0.0) -> tuple[Array, dict]:
    """The penalty R above on a batch: ``D * mean(err^2) + (f(empty) - log Z)^2``.

    Zero exactly when f and p_phi are self-consistent on the batch's prefixes and
    f(empty) = log Z.

    Returns:
      ``(penalty, {"sc_mse": mean(err^2), "f_empty": f(empty)})``.
    """
    encoding.check_partial(x, jnp.ones(x.shape, bool))
    batch, num_dims = x.shape
    orderings, steps = _random_steps(key, batch, num_dims)
    err = self_consistency_errors(marg_apply, cond_apply, marg_params, cond_params, x, orderings, steps)
    z_err = _normalizer_error(marg_apply, marg_params, num_dims, log_z)
    mse = jnp.mean(err ** 2)
    return num_dims * mse + z_err ** 2, {"sc_mse": mse, "f_empty": z_err + log_z}


def _mixed_penalty(marg_apply, cond_apply, mp, cp, x, chains, key, chain_weight, gibbs_steps, log_z):
    """Penalty on data mixed with persistent chains re-sampled by the (frozen) conditionals."""
    k_data, k_gibbs, k_chain = jax.random.split(key, 3)
    pen, metrics = self_consistency_penalty(marg_apply, cond_apply, mp, cp, x, k_data, log_z=log_z)
    if chains is None or chain_weight == 0.0:
        return pen, metrics, chains
    chains = sampling.gibbs_step(cond_apply, jax.lax.stop_gradient(cp), chains, k_gibbs, gibbs_steps)
    pen_c, metrics_c = self_consistency_penalty(marg_apply, cond_apply, mp, cp, chains, k_chain, log_z=log_z)
    num_dims = x.shape[1]
    mse = (1.0 - chain_weight) * metrics["sc_mse"] + chain_weight * metrics_c["sc_mse"]
    z_sq = (metrics["f_empty"] - log_z) ** 2
    metrics = dict(metrics, sc_mse=mse, sc_mse_data=metrics["sc_mse"], sc_mse_chains=metrics_c["sc_mse"])
    return num_dims * mse + z_sq, metrics, chains


def mle_loss(marg_apply: Apply, cond_apply: Apply, params: dict, chains: Array | None, x: Array, key: PRNGKey, *,
             chain_weight: float = 0.0, gibbs_steps: int = 1, log_z=0.0) -> tuple[Array, tuple[dict, Any]]:
    """Stage-2 MLE distillation: fit f_theta to a trained, frozen AO-ARM by self-consistency.

    ``loss = D * [(1 - w) E_data(err^2) + w E_chains(err^2)] + (f(empty) - log Z)^2``
    with the conditional parameters under ``stop_gradient`` (freeze them in the optimizer
    too, e.g. ``optax.multi_transform`` with ``set_to_zero``, so Adam moments stay empty).

    Args:
      marg_apply, cond_apply: the two networks.
      params: ``{"marginal": ..., "conditional": ...}``.
      chains: ``[C, D] int`` persistent chains, or None (then ``w`` must be 0).
      x: ``[B, D] int`` data batch.
      key: PRNG key.
      chain_weight: w in [0, 1], share of the penalty on the chains (static).
      gibbs_steps: positions re-sampled per chain per step (static).
      log_z: target of f(empty).

    Returns:
      ``(loss, (metrics, new_chains))``.
    """
    masks_lib.check_rate(chain_weight, "chain_weight")
    if chains is None and chain_weight > 0:
        raise ValueError("`chains` must be given when `chain_weight` > 0.")
    cp = jax.lax.stop_gradient(params["conditional"])
    loss, metrics, chains = _mixed_penalty(marg_apply, cond_apply, params["marginal"], cp, x, chains, key,
                                           chain_weight, gibbs_steps, log_z)
    return loss, (metrics, chains)


def joint_loss(marg_apply: Apply, cond_apply: Apply, params: dict, chains: Array | None, x: Array, key: PRNGKey, *,
               penalty_weight: float = 1.0, chain_weight: float = 0.0, gibbs_steps: int = 1,
               log_z=0.0) -> tuple[Array, tuple[dict, Any]]:
    """Joint training: AO-ARM likelihood for p_phi plus ``penalty_weight`` times the penalty on both.

    ``loss = -L_AO-ARM(phi; x) + lambda * R(theta, phi)``; the penalty's gradient reaches the
    conditionals too, pulling them towards a distribution the marginal net can represent.

    Returns:
      ``(loss, (metrics, new_chains))``.
    """
    masks_lib.check_rate(chain_weight, "chain_weight")
    if chains is None and chain_weight > 0:
        raise ValueError("`chains` must be given when `chain_weight` > 0.")
    k_arm, k_pen = jax.random.split(key)
    nll, arm_metrics = arm_lib.arm_loss(cond_apply, params["conditional"], x, k_arm)
    pen, metrics, chains = _mixed_penalty(marg_apply, cond_apply, params["marginal"], params["conditional"], x,
                                          chains, k_pen, chain_weight, gibbs_steps, log_z)
    metrics = dict(metrics, arm_nll=arm_metrics["nll"], penalty=pen)
    return nll + penalty_weight * pen, (metrics, chains)


def energy_loss(marg_apply: Apply, cond_apply: Apply, log_f: Callable[[Array], Array], params: dict, chains: Array,
                batch: Any, key: PRNGKey, *, alpha: float = 4.0, gibbs_steps: int = 1,
                log_z=0.0, score: str = "marginal") -> tuple[Array, tuple[dict, Array]]:
    """Energy-based training against an unnormalized target ``log f(x)`` (MaM's KL objective).

    Chains ``x ~ p_phi`` are advanced by one Gibbs step (no gradient). The REINFORCE
    estimate of ``grad KL(p_theta || f / Z)`` uses the standardized reward
    ``r = (d - mean d) / std d`` with ``d = f_theta(x) - log f(x)`` (no gradient through r):

        loss = mean(r * f_theta(x)) + alpha * R(theta, phi; x)

    where R is the self-consistency penalty on the chain states (gradients reach both
    networks, so p_phi follows f_theta and samples improve). Paper: alpha = 4.

    ``score="conditional"`` is the official code's ``logp_mc=True`` option: the REINFORCE term
    differentiates the conditional network's one-call estimate of ``log p_phi(x) / D`` instead of
    ``f_theta(x)``,

        loss = mean(r * mean_{i not in S} log p_phi(x_i | x_S)) + alpha * R,

    with S the first t positions of a random ordering per chain, t uniform in ``[0, D)`` (the
    AO-ARM estimator of ``log p_phi(x) / D`` averaged over orderings). The reward r still uses
    ``f_theta``; the marginal network then learns only through R.

    Args:
      log_f: ``log_f(x [B, D] int) -> [B]`` unnormalized target log-density.
      params: ``{"marginal": ..., "conditional": ...}``.
      chains: ``[C, D] int`` persistent chains (the batch of the step).
      batch: unused (the data stream may yield anything); kept for the step shape.
      key: PRNG key.
      score: ``"marginal"`` (default, the paper's) or ``"conditional"`` (official ``logp_mc``);
        static.

    Returns:
      ``(loss, (metrics, new_chains))``; ``metrics["kl_plus_log_z"]`` is
      ``mean(f_theta(x) - log_z - log f(x))``, which estimates ``KL(p || f/Z) - log Z`` when
      f_theta - log_z is normalized and the chains follow it.
    """
    del batch
    if score not in _SCORES:
        raise ValueError(f"`score` must be one of {list(_SCORES)}; got {score!r}.")
    if chains is None:
        raise ValueError("`chains` ([C, D] int persistent chain states) are required.")
    k_gibbs, k_pen, k_mc = jax.random.split(key, 3)
    mp, cp = params["marginal"], params["conditional"]
    num_chains, num_dims = chains.shape
    chains = sampling.gibbs_step(cond_apply, jax.lax.stop_gradient(cp), chains, k_gibbs, gibbs_steps)
    f_x = marg_apply(mp, chains, jnp.ones(chains.shape, bool))
    target = log_f(chains)
    if jnp.shape(target) != (num_chains,):
        raise ValueError(f"`log_f` must return one value per chain, shape ({num_chains},); got {jnp.shape(target)} "
                         "(a [B, 1] result would broadcast against [B] to [B, B]).")
    diff = jax.lax.stop_gradient(f_x) - target
    reward = (diff - jnp.mean(diff)) / (jnp.std(diff) + _EPS)
    if score == "marginal":
        log_q = f_x
    else:
        log_q = arm_lib.log_likelihood_estimate(cond_apply, cp, chains, k_mc) / num_dims
    reinforce = jnp.mean(jax.lax.stop_gradient(reward) * log_q)
    pen, metrics = self_consistency_penalty(marg_apply, cond_apply, mp, cp, chains, k_pen, log_z=log_z)
    metrics = dict(metrics, penalty=pen, reinforce=reinforce, kl_plus_log_z=jnp.mean(diff) - log_z)
    return reinforce + alpha * pen, (metrics, chains)
