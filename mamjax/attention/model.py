"""Recurrent attention model: glimpse network, recurrent core, location policy, classifier.

The generative story of Ba et al. (2015), following Mnih et al. (2014):

    a_1 ~ p(a_1 | h_0),  h_t = core(h_{t-1}, glimpse_net(glimpse(x, a_t), loc(a_t))),
    a_{t+1} ~ p(a_{t+1} | h_t),  ...,  y ~ p(y | h_T),

so ``p(y, a | x) = p(a | x) p(y | a, x)`` with ``p(a | x) = prod_t p(a_t | h_{t-1})``.
Locations are discrete: ``a_t`` indexes a ``grid_size x grid_size`` grid of glimpse
centres (:func:`mamjax.attention.glimpse.location_grid`) and the policy is a
categorical distribution over them. (Mnih et al. use Gaussian locations with a fixed
variance; the categorical policy is what lets tests sum over all trajectories exactly.)

Everything is a pure function of ``(params, image, label, key)``: :func:`rollout`
runs one trajectory with ``lax.scan``; vmap it over K samples and over the batch.
``params`` is a dict ``{"model": ..., "proposal": ...?, "baseline": ...?}`` of NNX
parameter states; without a ``"proposal"`` entry the proposal *is* the prior
(``q = p(a | x)``, shared parameters).
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import logsumexp

from mamjax.attention import glimpse as glimpse_lib
from mamjax.attention.proposal import Proposal

Array = jax.Array
Params = Any

__all__ = [
    "RAMConfig", "AttentionModel", "Baseline", "RAM", "Trajectory", "make_ram", "rollout",
    "rollout_batch", "predict", "error_rate", "float_images", "all_trajectories", "exact_log_likelihood",
    "exact_posterior",
]


@dataclasses.dataclass(frozen=True)
class RAMConfig:
    """Static shape of a recurrent attention model.

    Attributes:
      image_size: side of the square input image.
      patch: glimpse patch side; ``num_scales`` patches of sides ``patch * 2**s``.
      grid_size: candidate glimpse centres per side (``grid_size**2`` locations).
      num_glimpses: T, glimpses per trajectory.
      glimpse_hidden, location_hidden: widths of the "what" and "where" layers.
      hidden: recurrent state size (also the glimpse feature size).
      num_classes: classes of ``y``.
      proposal_view: side of the low-resolution whole-image view the proposal reads.
      proposal_hidden: proposal hidden width.
    """

    image_size: int = 60
    patch: int = 12
    num_scales: int = 3
    grid_size: int = 6
    num_glimpses: int = 6
    glimpse_hidden: int = 128
    location_hidden: int = 32
    hidden: int = 128
    num_classes: int = 10
    proposal_view: int = 12
    proposal_hidden: int = 128

    @property
    def num_locations(self) -> int:
        return self.grid_size ** 2


class AttentionModel(nnx.Module):
    """Glimpse network + ReLU recurrent core + location policy + classifier (RAM)."""

    def __init__(self, config: RAMConfig, *, rngs: nnx.Rngs):
        c = config
        self.what = nnx.Linear(glimpse_lib.glimpse_size(c.patch, c.num_scales), c.glimpse_hidden, rngs=rngs)
        self.where = nnx.Linear(2, c.location_hidden, rngs=rngs)
        self.what_out = nnx.Linear(c.glimpse_hidden, c.hidden, rngs=rngs)
        self.where_out = nnx.Linear(c.location_hidden, c.hidden, rngs=rngs)
        self.core_in = nnx.Linear(c.hidden, c.hidden, rngs=rngs)
        self.core_rec = nnx.Linear(c.hidden, c.hidden, rngs=rngs)
        self.policy = nnx.Linear(c.hidden, c.num_locations, kernel_init=nnx.initializers.zeros_init(),
                                 rngs=rngs)
        self.classifier = nnx.Linear(c.hidden, c.num_classes, rngs=rngs)

    def features(self, glimpses: Array, loc: Array) -> Array:
        """glimpses [S, p, p], loc [2] in [-1, 1] -> glimpse feature g [hidden]."""
        hg = jax.nn.relu(self.what(glimpses.reshape(-1)))
        hl = jax.nn.relu(self.where(loc))
        return jax.nn.relu(self.what_out(hg) + self.where_out(hl))

    def step(self, h: Array, g: Array) -> Array:
        """h_t = relu(W_in g_t + W_rec h_{t-1} + b)."""
        return jax.nn.relu(self.core_in(g) + self.core_rec(h))


class Baseline(nnx.Module):
    """REINFORCE baseline b(h_{t-1}): the expected reward before choosing a_t (Mnih et al., 2014)."""

    def __init__(self, hidden: int, *, rngs: nnx.Rngs):
        self.out = nnx.Linear(hidden, 1, rngs=rngs)

    def __call__(self, h: Array) -> Array:
        return self.out(h)[..., 0]


class RAM(NamedTuple):
    """Static structure of the model (graph definitions), paired with a params dict."""

    config: RAMConfig
    model_def: Any
    proposal_def: Any
    baseline_def: Any


class Trajectory(NamedTuple):
    """One glimpse trajectory (leading [K] / [B] axes are added by vmap).

    Attributes:
      actions: int32 [T] location indices a_1..a_T.
      log_p: [T] log p(a_t | h_{t-1}) under the model's policy.
      log_q: [T] log q(a_t | h_{t-1}, x, y) under the proposal (= log_p without one).
      class_logits: [C] logits of p(y | a, x).
      states: [T, hidden] h_{t-1}, the state on which a_t was chosen.
      baselines: [T] b(h_{t-1}) (zeros without a baseline network).
      expected_log_p: [T] ``sum_a sg(q(a | h_{t-1})) log p(a | h_{t-1})``, the expectation of the
        step's log-prior under the sampling-time proposal (its gradient is the analytic
        ``E_q[grad log p(a_t | h_{t-1})]`` used by the prior control variate).
    """

    actions: Array
    log_p: Array
    log_q: Array
    class_logits: Array
    states: Array
    baselines: Array
    expected_log_p: Array


def make_ram(config: RAMConfig, key: Array, *, proposal: bool = True,
             baseline: bool = False) -> tuple[RAM, dict]:
    """Builds the model (and optionally a proposal / baseline) and its initial parameters.

    Returns:
      ``(ram, params)`` with ``params = {"model": ..., ["proposal": ...], ["baseline": ...]}``.
    """
    k_model, k_prop, k_base = jax.random.split(key, 3)
    seed = lambda k: int(jax.random.randint(k, (), 0, 2 ** 31 - 1))  # noqa: E731
    params, defs = {}, {}
    mods = {"model": AttentionModel(config, rngs=nnx.Rngs(seed(k_model)))}
    if proposal:
        mods["proposal"] = Proposal(image_size=config.image_size, view=config.proposal_view,
                                    num_classes=config.num_classes, hidden=config.proposal_hidden,
                                    state_size=config.hidden, num_locations=config.num_locations,
                                    rngs=nnx.Rngs(seed(k_prop)))
    if baseline:
        mods["baseline"] = Baseline(config.hidden, rngs=nnx.Rngs(seed(k_base)))
    for name, mod in mods.items():
        graphdef, p, rest = nnx.split(mod, nnx.Param, ...)
        params[name], defs[name] = p, (graphdef, rest)
    ram = RAM(config, defs["model"], defs.get("proposal"), defs.get("baseline"))
    return ram, params


def float_images(images) -> Array:
    """uint8 grey levels (0..255) -> float32 in [0, 1]; float images pass through (as float)."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images if jnp.issubdtype(images.dtype, jnp.floating) else images.astype(jnp.float32)


def _merge(definition, params):
    graphdef, rest = definition
    return nnx.merge(graphdef, params, rest)


def rollout(ram: RAM, params: dict, image: Array, label: Array, key: Array, *,
            sample_from: str = "prior", actions: Array | None = None) -> Trajectory:
    """Runs one trajectory of T glimpses (``lax.scan``) and scores it.

    Args:
      ram: model structure from :func:`make_ram`.
      params: parameter dict from :func:`make_ram`.
      image: [S, S] float image.
      label: int scalar y (read only by the proposal).
      key: PRNG key (one per trajectory; split per step inside).
      sample_from: "prior" (a ~ p(a|x)) or "proposal" (a ~ q(a|x,y)).
      actions: optional int [T]: score this trajectory instead of sampling.

    Returns:
      A :class:`Trajectory`.
    """
    c = ram.config
    if image.shape != (c.image_size, c.image_size):
        raise ValueError(f"`image` must be [{c.image_size}, {c.image_size}]; got shape {image.shape}.")
    if sample_from not in ("prior", "proposal"):
        raise ValueError(f"`sample_from` must be 'prior' or 'proposal'; got {sample_from!r}.")
    model = _merge(ram.model_def, params["model"])
    prop = _merge(ram.proposal_def, params["proposal"]) if "proposal" in params else None
    base = _merge(ram.baseline_def, params["baseline"]) if "baseline" in params else None
    grid = glimpse_lib.location_grid(c.image_size, c.grid_size)
    centres = jnp.asarray(grid)
    locs = jnp.asarray(glimpse_lib.normalized_locations(grid, c.image_size), image.dtype)
    ctx = prop.context(image, label) if prop is not None else None
    given = actions is not None
    if given:
        actions = jnp.asarray(actions, jnp.int32)
        if actions.shape != (c.num_glimpses,):
            raise ValueError(f"`actions` must be [{c.num_glimpses}]; got shape {actions.shape}.")
    else:
        actions = jnp.zeros((c.num_glimpses,), jnp.int32)

    def step(h, inp):
        k, a_given = inp
        logp_all = jax.nn.log_softmax(model.policy(h))
        logq_all = jax.nn.log_softmax(prop.logits(ctx, h)) if prop is not None else logp_all
        if given:
            a = a_given
        else:
            a = jax.random.categorical(k, logq_all if sample_from == "proposal" else logp_all)
        b = base(jax.lax.stop_gradient(h)) if base is not None else jnp.zeros((), h.dtype)
        g = model.features(glimpse_lib.extract_glimpse(image, centres[a], patch=c.patch, num_scales=c.num_scales),
                           locs[a])
        expected = jnp.sum(jax.lax.stop_gradient(jnp.exp(logq_all)) * logp_all)
        return model.step(h, g), (a, logp_all[a], logq_all[a], h, b, expected)

    h0 = jnp.zeros((c.hidden,), image.dtype)
    keys = jax.random.split(key, c.num_glimpses)
    h_T, (acts, log_p, log_q, states, baselines, expected) = jax.lax.scan(step, h0, (keys, actions))
    return Trajectory(acts, log_p, log_q, model.classifier(h_T), states, baselines, expected)


def rollout_batch(ram: RAM, params: dict, images: Array, labels: Array, key: Array, *,
                  num_samples: int, sample_from: str = "prior") -> Trajectory:
    """K trajectories per image: images [B, S, S], labels [B] -> Trajectory with [B, K, ...] leaves."""
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"`images` must be [B, S, S] and `labels` [B]; got {images.shape}, {labels.shape}.")
    b = images.shape[0]
    keys = jax.random.split(key, b * num_samples).reshape(b, num_samples)
    one = lambda img, lab, k: rollout(ram, params, img, lab, k, sample_from=sample_from)  # noqa: E731
    per_image = jax.vmap(one, in_axes=(None, None, 0))
    return jax.vmap(per_image, in_axes=(0, 0, 0))(images, labels, keys)


def predict(ram: RAM, params: dict, images: Array, key: Array, *, num_samples: int = 1) -> Array:
    """Monte Carlo predictive ``log p(y | x) ~= log mean_m p(y | a_m, x)``, ``a_m ~ p(a | x)``.

    Args:
      images: [B, S, S] float.
      num_samples: M glimpse trajectories per image.

    Returns:
      [B, C] log class probabilities.
    """
    labels = jnp.zeros(images.shape[:1], jnp.int32)  # the prior never reads the label
    traj = rollout_batch(ram, params, images, labels, key, num_samples=num_samples, sample_from="prior")
    return logsumexp(jax.nn.log_softmax(traj.class_logits), axis=1) - jnp.log(num_samples)


def all_trajectories(num_locations: int, num_glimpses: int) -> np.ndarray:
    """Every trajectory, int32 [num_locations**num_glimpses, num_glimpses] (for tiny models)."""
    n = num_locations ** num_glimpses
    if n > 1_000_000:
        raise ValueError(f"{num_locations}**{num_glimpses} = {n} trajectories is too many to enumerate.")
    return np.array(list(itertools.product(range(num_locations), repeat=num_glimpses)), np.int32)


def _score_all(ram: RAM, params: dict, image: Array, label: Array) -> Trajectory:
    acts = jnp.asarray(all_trajectories(ram.config.num_locations, ram.config.num_glimpses))
    key = jax.random.key(0)  # unused when actions are given
    return jax.vmap(lambda a: rollout(ram, params, image, label, key, actions=a))(acts)


def exact_log_likelihood(ram: RAM, params: dict, image: Array, label: Array) -> Array:
    """``log p(y | x) = logsumexp_a [log p(a | x) + log p(y | a, x)]`` by enumerating all ``G**T`` a."""
    tr = _score_all(ram, params, image, label)
    log_lik = jax.nn.log_softmax(tr.class_logits)[:, label]
    return logsumexp(tr.log_p.sum(-1) + log_lik)


def exact_posterior(ram: RAM, params: dict, image: Array, label: Array) -> tuple[Array, Array, Array]:
    """Enumerated ``(log p(a | x, y), log q(a | x, y), log p(y | a, x))``, each [G**T] in
    the order of :func:`all_trajectories`."""
    tr = _score_all(ram, params, image, label)
    log_lik = jax.nn.log_softmax(tr.class_logits)[:, label]
    joint = tr.log_p.sum(-1) + log_lik
    return joint - logsumexp(joint), tr.log_q.sum(-1), log_lik


def error_rate(ram: RAM, params: dict, images, labels, key: Array, *, num_samples: int = 1,
               batch_size: int = 500) -> float:
    """Test error of :func:`predict` (argmax of the M-sample predictive), in [0, 1].

    Args:
      images: [N, S, S] uint8 (0..255) or float in [0, 1] (numpy or jax).
      labels: int [N].
      key: one key; batch ``i`` uses ``fold_in(key, i)``.
      num_samples: M trajectories per image.
      batch_size: images per jitted call (the last partial batch is padded).

    Returns:
      The fraction of misclassified images (python float).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    n = len(images)
    fn = _predict_jit(ram, num_samples)
    wrong = 0
    for i, start in enumerate(range(0, n, batch_size)):
        x = images[start:start + batch_size]
        m = len(x)
        if m < batch_size:
            x = np.concatenate([x, np.repeat(x[-1:], batch_size - m, 0)])
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
        pred = np.asarray(fn(params, jnp.asarray(x), jax.random.fold_in(key, i)))[:m]
        wrong += int(np.sum(pred != labels[start:start + m]))
    return wrong / max(n, 1)


_PREDICT_CACHE: dict = {}


def _predict_jit(ram: RAM, num_samples: int):
    # Cached per (model structure, M) so repeated evaluations do not retrace.
    k = (id(ram.model_def[0]), ram.config, num_samples)
    if k not in _PREDICT_CACHE:
        _PREDICT_CACHE[k] = jax.jit(
            lambda p, x, key: jnp.argmax(predict(ram, {"model": p["model"]}, x, key, num_samples=num_samples), -1))
    return _PREDICT_CACHE[k]
