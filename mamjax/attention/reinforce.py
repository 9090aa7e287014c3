"""The RAM baseline: REINFORCE with a learned baseline (Mnih et al., NIPS 2014).

Glimpse trajectories are sampled from the policy ``p(a | x)``; the classifier is
trained by cross-entropy on them and the policy by REINFORCE,

    grad ~= grad log p(y | a, x) + sum_t (R - b(h_{t-1})) grad log p(a_t | h_{t-1}),

with reward ``R = 1[argmax_y p(y | a, x) = y]`` (Mnih et al.) or
``R = log p(y | a, x)`` (then the expected update is the gradient of the variational
bound ``E_p[log p(y | a, x)]``, Ba et al. 2015 Sec. 3). The baseline ``b`` is a learned
control variate (it reads ``h_{t-1}`` under ``stop_gradient``, so it depends only on
what precedes ``a_t`` and keeps the estimator unbiased), fit by squared error to ``R``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mamjax.attention import model as model_lib
from mamjax.attention import rws as rws_lib

Array = jax.Array
sg = jax.lax.stop_gradient

__all__ = ["reinforce_surrogate", "reinforce_loss", "REWARDS"]

REWARDS = ("accuracy", "log_likelihood")


def reinforce_surrogate(log_lik: Array, log_p_steps: Array, reward: Array, baselines: Array | None = None
                        ) -> Array:
    """Per-trajectory surrogate whose gradient is the REINFORCE update (to maximize).

    Args:
      log_lik: [...] log p(y | a, x).
      log_p_steps: [..., T] log p(a_t | h_{t-1}).
      reward: [...] R (treated as a constant).
      baselines: [..., T] b(h_{t-1}) or None (no baseline).

    Returns:
      [...] ``log p(y|a,x) + sum_t sg(R - b_t) log p(a_t|h_{t-1})`` (the value is not meaningful).
    """
    adv = sg(reward)[..., None] - (sg(baselines) if baselines is not None else 0.0)
    return log_lik + jnp.sum(adv * log_p_steps, axis=-1)


def reinforce_loss(ram: model_lib.RAM, params: dict, batch: dict, key: Array, *, num_samples: int = 1,
                   reward: str = "accuracy") -> tuple[Array, dict]:
    """RAM training loss ``loss_fn(params, batch, key) -> (loss, metrics)`` for ``train``.

    ``params`` may hold a ``"baseline"`` (trained by squared error to the reward);
    without one no baseline is subtracted. Trajectories come from the prior.

    Args:
      batch: {"image": [B, S, S] uint8 or float, "label": int [B]}.
      num_samples: trajectories per image (Mnih et al. use 1).
      reward: "accuracy" (0/1, Mnih et al.) or "log_likelihood".

    Returns:
      ``(loss, metrics)``: metrics ``reward``, ``accuracy`` (of the sampled glimpses),
      ``nll`` (mean -log p(y | a, x)), ``baseline_mse``.
    """
    if reward not in REWARDS:
        raise ValueError(f"`reward` must be one of {REWARDS}; got {reward!r}.")
    model_lib.check_labels(batch["label"], ram.config.num_classes, "batch['label']")
    images, labels = model_lib.float_images(batch["image"]), jnp.asarray(batch["label"], jnp.int32)
    traj = model_lib.rollout_batch(ram, params, images, labels, key, num_samples=num_samples,
                                   sample_from="prior")
    log_lik, _, _ = rws_lib.trajectory_terms(traj, labels)
    correct = (jnp.argmax(traj.class_logits, -1) == labels[:, None]).astype(log_lik.dtype)
    r = correct if reward == "accuracy" else sg(log_lik)
    has_b = "baseline" in params
    surrogate = reinforce_surrogate(log_lik, traj.log_p, r, traj.baselines if has_b else None)
    mse = jnp.mean((sg(r)[..., None] - traj.baselines) ** 2) if has_b else jnp.zeros(())
    loss = -jnp.mean(surrogate) + mse
    metrics = {"reward": jnp.mean(r), "accuracy": jnp.mean(correct), "nll": -jnp.mean(log_lik),
               "baseline_mse": mse}
    return loss, metrics
