"""Hierarchical VAE with rectified-Gaussian latents and a structured posterior (Salimans 2016).

``build(data_dim, **PRESETS["rg_structured"])`` -> ``(apply, params, state)``;
``elbo``, ``iwae_bound``, ``sample``, ``reconstruct``, ``evaluate``;
``make_loss_fn(apply)`` for ``mamjax.train.make_train_step(..., stateful=True)``.
"""

from __future__ import annotations

from flax import nnx

from mamjax.hvae import plots
from mamjax.hvae.configs import PRESETS
from mamjax.hvae.model import HVAE, LATENTS, POSTERIORS
from mamjax.hvae.objectives import (elbo, evaluate, flatten_images, iwae_bound, kl_warmup, log_weights,
                                    make_loss_fn, reconstruct, sample, with_kl_warmup)

__all__ = ["plots", "experiment", "HVAE", "LATENTS", "POSTERIORS", "PRESETS", "build", "elbo", "evaluate", "flatten_images",
           "iwae_bound", "kl_warmup", "log_weights", "make_loss_fn", "reconstruct", "sample", "with_kl_warmup"]


def __getattr__(name):
    if name == "experiment":  # imports mamjax.data / train lazily
        import importlib
        return importlib.import_module("mamjax.hvae.experiment")
    raise AttributeError(f"module 'mamjax.hvae' has no attribute {name!r}")


def build(data_dim: int, *, seed: int = 0, **kwargs):
    """Creates an :class:`HVAE` and returns its pure form ``(apply, params, state)``.

    ``apply(params, state, method, *args, train=...) -> (outputs, new_state)``
    (``mamjax.nn.functional_with_state``); ``state`` holds the batch-norm statistics.

    Args:
      data_dim: number of pixels ``D``.
      seed: initialisation seed.
      **kwargs: :class:`HVAE` arguments, e.g. ``**PRESETS["rg_structured"]``.
    """
    return functional_with_state(HVAE(data_dim, rngs=nnx.Rngs(seed), **kwargs))


def functional_with_state(module: nnx.Module):
    """``mamjax.nn.functional_with_state`` with ``nnx.merge(..., copy=True)``.

    Why a copy: with flax 0.12.8, ``mamjax.nn.functional_with_state`` merges the
    state's Variables without copying; batch norm then mutates a ``BatchStat``
    created outside ``jax.grad``'s trace and raises ``TraceContextError`` when the
    loss is differentiated (checked: ``copy=True`` fixes it, also under ``jit``).
    Same contract: ``apply(params, state, *args, **kwargs) -> (outputs, new_state)``.
    Replace by the core function once it copies.
    """
    graphdef, params, state = nnx.split(module, nnx.Param, ...)

    def apply(params, state, *args, **kwargs):
        model = nnx.merge(graphdef, params, state, copy=True)
        out = model(*args, **kwargs)
        _, _, new_state = nnx.split(model, nnx.Param, ...)
        return out, new_state

    return apply, params, state
