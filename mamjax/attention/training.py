"""Glue for training runs: build a method's model + loss, and train under a wall-clock budget."""

from __future__ import annotations

import functools
import time

import jax

from mamjax import train
from mamjax.attention import model as model_lib
from mamjax.attention import reinforce as reinforce_lib
from mamjax.attention import rws as rws_lib

__all__ = ["METHODS", "make_method", "fit_for_seconds"]

METHODS = ("wsram", "reinforce")


def make_method(method: str, config: model_lib.RAMConfig, key: jax.Array, *, num_samples: int = 1,
                control_variates: bool = True, reward: str = "accuracy", proposal: bool = True,
                proposal_update: str = "wake", estimator: str = "rws", prior_baseline: bool = False):
    """Model, initial parameters and ``loss_fn(params, batch, key)`` of a training method.

    Args:
      method: "wsram" (K = ``num_samples`` trajectories from the proposal, RWS updates) or
        "reinforce" (RAM with a learned baseline; K trajectories per image).
      config: model shape.
      control_variates: WS-RAM control variates.
      reward: REINFORCE reward ("accuracy" as Mnih et al., or "log_likelihood").
      proposal: WS-RAM with an inference network (False: ``q`` = the prior).
      proposal_update, estimator: as in :func:`mamjax.attention.rws.wsram_loss`.
      prior_baseline: WS-RAM's learned baseline for the prior control variate.

    Returns:
      ``(ram, params, loss_fn)``.
    """
    if method == "wsram":
        ram, params = model_lib.make_ram(config, key, proposal=proposal, prior_baseline=prior_baseline)
        loss_fn = functools.partial(rws_lib.wsram_loss, ram, num_samples=num_samples,
                                    control_variates=control_variates, proposal_update=proposal_update,
                                    estimator=estimator)
    elif method == "reinforce":
        ram, params = model_lib.make_ram(config, key, proposal=False, baseline=True)
        loss_fn = functools.partial(reinforce_lib.reinforce_loss, ram, num_samples=num_samples, reward=reward)
    else:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    return ram, params, loss_fn


def fit_for_seconds(step_fn, state: train.TrainState, stream, *, seconds: float, key: jax.Array,
                    eval_fn=None, chunk: int = 100, max_steps: int = 10 ** 9, **fit_kwargs):
    """Trains with :func:`mamjax.train.fit` in chunks of ``chunk`` steps until ``seconds`` of
    *training* time have passed (at least one chunk), evaluating between chunks (evaluation
    time not counted).

    Args:
      step_fn, state, stream, key: as for ``train.fit``.
      seconds: training-time budget (includes compilation in the first chunk).
      eval_fn: ``eval_fn(state) -> dict`` run after every chunk (and before the first).
      fit_kwargs: further ``train.fit`` arguments (no ``workdir``: budgeted runs are not resumable).

    Returns:
      ``(state, curve)``: ``curve`` is a list of ``{"step", "seconds", **eval}`` dicts.
    """
    if "workdir" in fit_kwargs:
        raise ValueError("`fit_for_seconds` does not checkpoint; do not pass `workdir`.")
    fit_kwargs.setdefault("progress", False)
    fit_kwargs.setdefault("log_every", chunk)
    used = 0.0
    curve = [{"step": int(state.step), "seconds": 0.0, **(eval_fn(state) if eval_fn else {})}]
    while int(state.step) < max_steps:  # at least one chunk, then until the budget is used
        target = min(int(state.step) + chunk, max_steps)
        t0 = time.perf_counter()
        state, _ = train.fit(step_fn, state, stream, num_steps=target, key=key, **fit_kwargs)
        jax.block_until_ready(state.params)
        used += time.perf_counter() - t0
        curve.append({"step": int(state.step), "seconds": used, **(eval_fn(state) if eval_fn else {})})
        if used >= seconds:
            break
    return state, curve
