"""MNIST set-up shared by the example, the benchmark and the notebook (data, model, step).

Binarization: "dynamic" draws fresh pixels ``~ Bern(grey/255)`` for every training
batch (``mamjax.data.dynamic_binarize`` as the stream transform) and evaluates on
ONE fixed draw of the test images (key ``test_seed``); "static" uses
``load("binarized_mnist")`` (one fixed draw of train and test; see
``mamjax.data.mnist``). Say which in every reported number.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np
import optax

from mamjax import train
from mamjax.hvae import objectives
from mamjax.hvae.configs import PRESETS

__all__ = ["BINARIZATIONS", "MnistData", "mnist_data", "Setup", "setup"]

BINARIZATIONS = ("dynamic", "static")


class MnistData(NamedTuple):
    """``stream(step) -> {"image": binary [B, H, W], ...}``; ``test``: binary uint8 [N, H, W]."""

    stream: object
    test: np.ndarray
    binarization: str
    num_train: int


def mnist_data(binarization: str = "dynamic", *, batch_size: int = 100, seed: int = 0, resolution: int = 28,
               num_train: int | None = None, num_test: int | None = None, test_seed: int = 1234) -> MnistData:
    """Binarized MNIST as a deterministic stream plus a binary test array.

    Args:
      binarization: "dynamic" or "static" (see module docstring).
      num_train / num_test: optional first-N subsets (quick runs).
    """
    from mamjax import data

    if binarization not in BINARIZATIONS:
        raise ValueError(f"`binarization` must be one of {BINARIZATIONS}; got {binarization!r}.")
    if binarization == "dynamic":
        tr, te = data.load("mnist", "train", resolution=resolution), data.load("mnist", "test", resolution=resolution)
        tr = {"image": tr["image"][:num_train]}
        test = np.asarray(data.dynamic_binarize(te["image"][:num_test], jax.random.key(test_seed)))
        stream = data.BatchStream(tr, batch_size, seed=seed, transform=data.dynamic_binarize)
    else:
        tr = data.load("binarized_mnist", "train", resolution=resolution)
        te = data.load("binarized_mnist", "test", resolution=resolution)
        tr = {"image": tr["image"][:num_train]}
        test = np.asarray(te["image"][:num_test])
        stream = data.BatchStream(tr, batch_size, seed=seed)
    return MnistData(stream, test.astype(np.uint8), binarization, len(tr["image"]))


class Setup(NamedTuple):
    apply: object
    state: train.TrainState
    train_step: object
    optimizer: optax.GradientTransformation


def setup(data_dim: int, preset: str | dict = "rg_structured", *, lr: float = 1e-3, seed: int = 0,
          free_bits: float = 0.0, iwae_k: int = 1) -> Setup:
    """Model (``PRESETS[preset]`` or a dict of :class:`HVAE` kwargs), Adamax, and the jitted stateful step.

    ``free_bits`` / ``iwae_k``: see :func:`mamjax.hvae.make_loss_fn`.
    """
    from mamjax.hvae import build

    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"`preset` must be one of {sorted(PRESETS)}; got {preset!r}.")
        preset = PRESETS[preset]
    apply, params, model_state = build(data_dim, seed=seed, **preset)
    optimizer = optax.adamax(lr)
    state = train.TrainState.create(params, optimizer, model_state)
    step = train.make_train_step(objectives.make_loss_fn(apply, free_bits=free_bits, iwae_k=iwae_k), optimizer,
                                 stateful=True)
    return Setup(apply, state, step, optimizer)
