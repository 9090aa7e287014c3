"""Hierarchical VAE with rectified-Gaussian latents and a structured posterior (Salimans 2016).

``build(data_dim, **PRESETS["rg_structured"])`` -> ``(apply, params, state)``;
``elbo``, ``iwae_bound``, ``sample``, ``reconstruct``, ``evaluate``;
``make_loss_fn(apply)`` for ``mamjax.train.make_train_step(..., stateful=True)``.
"""

from __future__ import annotations

from flax import nnx

from mamjax.nn import functional_with_state

from mamjax.hvae import plots
from mamjax.hvae.configs import PRESETS
from mamjax.hvae.model import COMBINES, HVAE, LATENTS, POSTERIORS
from mamjax.hvae.objectives import (elbo, evaluate, flatten_images, iwae_bound, kl_warmup, log_weights,
                                    make_loss_fn, reconstruct, sample, with_kl_warmup)

__all__ = ["plots", "experiment", "COMBINES", "HVAE", "LATENTS", "POSTERIORS", "PRESETS", "build", "elbo", "evaluate", "flatten_images",
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
