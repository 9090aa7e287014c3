"""Fully convolutional network for time-series classification (Wang, Yan, Oates, 2017).

Conv1d 128 / 256 / 128 with kernels 8 / 5 / 3, batch norm and ReLU, global
average pooling, a linear head. The pooled 128-d features are the
representation behind FID; the class probabilities are behind IS and CAS
(as in TimeVQVAE's evaluation).
"""

from __future__ import annotations

import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mamjax import nn as nn_lib
from mamjax import train as train_lib
from mamjax.data.stream import BatchStream

Array = jax.Array

__all__ = ["FCN", "Classifier", "make_fcn", "fcn_loss", "train_fcn", "predict"]


class FCN(nnx.Module):
    """``x [B, T] -> (logits [B, C], features [B, 128])``; ``train`` selects batch statistics."""

    def __init__(self, num_classes: int, *, widths=(128, 256, 128), kernels=(8, 5, 3), rngs: nnx.Rngs):
        chans = [1, *widths]
        self.convs = nnx.List([nnx.Conv(a, b, k, rngs=rngs) for a, b, k in zip(chans[:-1], chans[1:], kernels)])
        self.norms = nnx.List([nnx.BatchNorm(b, momentum=0.9, rngs=rngs) for b in widths])
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def __call__(self, x: Array, train: bool = False) -> tuple[Array, Array]:
        if x.ndim != 2:
            raise ValueError(f"`x` must be [batch, length]; got shape {x.shape}.")
        h = x[..., None]
        for conv, norm in zip(self.convs, self.norms):
            h = jax.nn.relu(norm(conv(h), use_running_average=not train))
        feats = jnp.mean(h, axis=1)
        return self.head(feats), feats


class Classifier(NamedTuple):
    """A trained FCN in pure form: ``apply(params, state, x, train) -> ((logits, feats), state)``."""

    apply: Callable
    params: Any
    state: Any


def make_fcn(num_classes: int, seed: int = 0) -> Classifier:
    apply, params, state = nn_lib.functional_with_state(FCN(num_classes, rngs=nnx.Rngs(seed)))
    return Classifier(apply, params, state)


def fcn_loss(apply: Callable, params, model_state, batch: dict, key) -> tuple[Array, tuple[dict, Any]]:
    """Cross-entropy on ``batch = {"x": [B, T], "label": [B]}`` in training mode."""
    del key
    (logits, _), new_state = apply(params, model_state, batch["x"], True)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
    acc = jnp.mean(jnp.argmax(logits, -1) == batch["label"])
    return loss, ({"acc": acc}, new_state)


def train_fcn(x: np.ndarray, labels: np.ndarray, num_classes: int, *, num_steps: int = 500,
              batch_size: int = 32, learning_rate: float = 1e-3, seed: int = 0,
              workdir: str | os.PathLike | None = None, desc: str = "fcn", progress: bool | None = None) -> Classifier:
    """Trains an FCN (Adam) with :func:`mamjax.train.fit`; checkpointed/resumed in ``workdir``."""
    x = np.asarray(x, np.float32)
    labels = np.asarray(labels, np.int32)
    clf = make_fcn(num_classes, seed)
    opt = optax.adam(learning_rate)
    step = train_lib.make_train_step(lambda p, s, b, k: fcn_loss(clf.apply, p, s, b, k), opt, stateful=True)
    state = train_lib.TrainState.create(clf.params, opt, model_state=clf.state)
    stream = BatchStream({"x": x, "label": labels}, min(batch_size, len(x)), seed=seed)
    state, _ = train_lib.fit(step, state, stream, num_steps=num_steps, key=jax.random.key(seed),
                             workdir=workdir, save_every=max(num_steps, 1), log_every=max(1, num_steps // 5),
                             desc=desc, progress=progress)
    return Classifier(clf.apply, state.params, state.model_state)


def predict(clf: Classifier, x: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(probs [N, C], features [N, 128])`` in evaluation mode (running batch statistics)."""
    fn = jax.jit(lambda p, s, xb: clf.apply(p, s, xb, False)[0])
    probs, feats = [], []
    x = np.asarray(x, np.float32)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        n = len(xb)  # pad the last chunk: one compiled shape
        xb = np.concatenate([xb, np.zeros((batch_size - n, x.shape[1]), np.float32)])
        logits, f = fn(clf.params, clf.state, xb)
        probs.append(np.asarray(jax.nn.softmax(logits, -1))[:n])
        feats.append(np.asarray(f)[:n])
    return np.concatenate(probs), np.concatenate(feats)
