"""Recurrent attention model: glimpse network, recurrent core, location policy, classifier.

The generative story of Ba et al. (2015), following Mnih et al. (2014):

    a_1 ~ p(a_1 | h_0),  h_t = core(h_{t-1}, glimpse_net(glimpse(x, a_t), loc(a_t))),
    a_{t+1} ~ p(a_{t+1} | h_t),  ...,  y ~ p(y | h_T),

so ``p(y, a | x) = p(a | x) p(y | a, x)`` with ``p(a | x) = prod_t p(a_t | h_{t-1})``.
Two kinds of locations (``RAMConfig.locations``):

* ``"grid"``: ``a_t`` indexes a ``grid_size x grid_size`` grid of glimpse centres
  (:func:`mamjax.attention.glimpse.location_grid`) and the policy is categorical; this is
  what lets the tests sum over all trajectories exactly.
* ``"gaussian"``: ``a_t in R^2`` with ``p(a_t | h) = N(tanh(W h), sigma^2 I)`` and a fixed
  ``sigma`` (Mnih et al.); the glimpse is taken at the pixel nearest to ``clip(a_t, -1, 1)``.

The core is RAM's rectifier ``h_t = relu(W_in g_t + W_rec h_{t-1})`` or an LSTM
(``RAMConfig.core``).

Everything is a pure function of ``(params, images, labels, key)``. :func:`rollout_batch`
runs the K trajectories of every image of a batch as **one** computation: the ``B * K``
trajectories lie on one leading axis through a single ``lax.scan`` over the T glimpses,
the proposal's image context is computed once per image, and on the grid the glimpse
features of all ``G`` locations are computed once per image and gathered (they depend only
on the image and the location), so the per-trajectory work is the recurrent core and
the heads. Glimpses come from the batched sensors of :mod:`mamjax.attention.glimpse`
(the grid's through pooling matmuls, traced centres through one windowed gather of a batch
padded once), which give the reference sensor's numbers.

``params`` is a dict ``{"model": ..., "proposal": ...?, "baseline": ...?,
"prior_baseline": ...?}`` of NNX parameter states; without a ``"proposal"`` entry the
proposal *is* the prior (``q = p(a | x)``, shared parameters).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import logsumexp

from mamjax import progress as progress_lib
from mamjax.attention import glimpse as glimpse_lib
from mamjax.attention.proposal import Proposal

Array = jax.Array
Params = Any
sg = jax.lax.stop_gradient

__all__ = [
    "RAMConfig", "AttentionModel", "Baseline", "RAM", "Trajectory", "make_ram", "rollout",
    "rollout_batch", "proposal_log_prob", "predict", "error_rate", "float_images", "all_trajectories",
    "exact_log_likelihood", "exact_posterior", "check_labels", "pixel_centres", "LOCATIONS", "CORES",
]

LOCATIONS = ("grid", "gaussian")
CORES = ("relu", "lstm")


@dataclasses.dataclass(frozen=True)
class RAMConfig:
    """Static shape of a recurrent attention model.

    Attributes:
      image_size: side of the square input image.
      patch: glimpse patch side; ``num_scales`` patches of sides ``patch * 2**s``.
      grid_size: candidate glimpse centres per side (``grid_size**2`` locations; grid only).
      num_glimpses: T, glimpses per trajectory.
      glimpse_hidden, location_hidden: widths of the "what" and "where" layers.
      hidden: recurrent state size (also the glimpse feature size).
      num_classes: classes of ``y``.
      proposal_view: side of the low-resolution whole-image view the proposal reads.
      proposal_hidden: proposal hidden width.
      locations: "grid" (categorical) or "gaussian" (continuous, RAM).
      location_std: sigma of the Gaussian policy and proposal (in [-1, 1] units).
      core: "relu" (RAM) or "lstm".
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
    locations: str = "grid"
    location_std: float = 0.2
    core: str = "relu"

    def __post_init__(self):
        for name in ("image_size", "patch", "num_scales", "grid_size", "num_glimpses", "glimpse_hidden",
                     "location_hidden", "hidden", "proposal_view", "proposal_hidden"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"RAMConfig: `{name}` must be a positive int; got {v!r}.")
        if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 2:
            raise ValueError(f"RAMConfig: `num_classes` must be an int >= 2; got {self.num_classes!r}.")
        if self.grid_size > self.image_size:
            raise ValueError(f"RAMConfig: `grid_size` ({self.grid_size}) must be <= `image_size` ({self.image_size}).")
        if self.locations not in LOCATIONS:
            raise ValueError(f"RAMConfig: `locations` must be one of {LOCATIONS}; got {self.locations!r}.")
        if self.core not in CORES:
            raise ValueError(f"RAMConfig: `core` must be one of {CORES}; got {self.core!r}.")
        if not self.location_std > 0:
            raise ValueError(f"RAMConfig: `location_std` must be > 0; got {self.location_std!r}.")

    @property
    def num_locations(self) -> int:
        return self.grid_size ** 2

    @property
    def policy_outputs(self) -> int:
        """Logits over the grid, or the 2 coordinates of a Gaussian mean."""
        return self.num_locations if self.locations == "grid" else 2


class AttentionModel(nnx.Module):
    """Glimpse network + recurrent core (ReLU or LSTM) + location policy + classifier (RAM)."""

    def __init__(self, config: RAMConfig, *, rngs: nnx.Rngs):
        c = config
        self.what = nnx.Linear(glimpse_lib.glimpse_size(c.patch, c.num_scales), c.glimpse_hidden, rngs=rngs)
        self.where = nnx.Linear(2, c.location_hidden, rngs=rngs)
        self.what_out = nnx.Linear(c.glimpse_hidden, c.hidden, rngs=rngs)
        self.where_out = nnx.Linear(c.location_hidden, c.hidden, rngs=rngs)
        self.lstm = nnx.LSTMCell(c.hidden, c.hidden, rngs=rngs) if c.core == "lstm" else None
        if c.core == "relu":
            self.core_in = nnx.Linear(c.hidden, c.hidden, rngs=rngs)
            self.core_rec = nnx.Linear(c.hidden, c.hidden, rngs=rngs)
        self.policy = nnx.Linear(c.hidden, c.policy_outputs, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.classifier = nnx.Linear(c.hidden, c.num_classes, rngs=rngs)

    def features(self, glimpses: Array, loc: Array) -> Array:
        """glimpses [..., S, p, p], loc [..., 2] in [-1, 1] -> glimpse feature g [..., hidden]."""
        hg = jax.nn.relu(self.what(glimpses.reshape(*glimpses.shape[:-3], -1)))
        hl = jax.nn.relu(self.where(loc))
        return jax.nn.relu(self.what_out(hg) + self.where_out(hl))

    def step(self, carry: tuple[Array, Array], g: Array) -> tuple[Array, Array]:
        """``carry = (c, h)`` -> next carry. ReLU core: ``h_t = relu(W_in g_t + W_rec h_{t-1} + b)``
        (``c`` unused); LSTM core: the LSTM cell's ``(c_t, h_t)``."""
        c, h = carry
        if self.lstm is not None:
            return self.lstm((c, h), g)[0]
        return c, jax.nn.relu(self.core_in(g) + self.core_rec(h))


class Baseline(nnx.Module):
    """A learned baseline b(h_{t-1}): the expected reward before choosing a_t (Mnih et al., 2014)."""

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
    """Glimpse trajectories with leading [B, K] axes (from :func:`rollout_batch`).

    Attributes:
      actions: [..., T] int32 grid indices, or [..., T, 2] float Gaussian locations a_1..a_T.
      log_p: [..., T] log p(a_t | h_{t-1}) under the model's policy.
      log_q: [..., T] log q(a_t | h_{t-1}, x, y) under the proposal (= log_p without one).
      class_logits: [..., C] logits of p(y | a, x).
      states: [..., T, hidden] h_{t-1}, the state on which a_t was chosen.
      baselines: [..., T] b(h_{t-1}) (zeros without a ``"baseline"`` network).
      expected_log_p: [..., T] ``E_{a ~ sg(q(. | h_{t-1}))}[log p(a | h_{t-1})]``, in closed form
        (a sum over the grid, or the Gaussian cross-entropy); its gradient is the analytic
        ``E_q[grad log p(a_t | h_{t-1})]`` used by the prior control variate.
      prior_baselines: [..., T] ``c(h_{t-1})`` of the ``"prior_baseline"`` network (zeros without).
    """

    actions: Array
    log_p: Array
    log_q: Array
    class_logits: Array
    states: Array
    baselines: Array
    expected_log_p: Array
    prior_baselines: Array


def make_ram(config: RAMConfig, key: Array, *, proposal: bool = True, baseline: bool = False,
             prior_baseline: bool = False) -> tuple[RAM, dict]:
    """Builds the model (and optionally a proposal / baselines) and its initial parameters.

    Args:
      proposal: an inference network ``q(a | x, y)`` (else ``q`` is the prior).
      baseline: REINFORCE's learned baseline ``b(h_{t-1})``.
      prior_baseline: WS-RAM's learned baseline for the prior update ``c(h_{t-1})``
        (:func:`mamjax.attention.control_variates.prior_surrogate`).

    Returns:
      ``(ram, params)`` with ``params = {"model": ..., ["proposal": ...], ["baseline": ...],
      ["prior_baseline": ...]}``.
    """
    k_model, k_prop, k_base, k_pb = jax.random.split(key, 4)
    seed = lambda k: int(jax.random.randint(k, (), 0, 2 ** 31 - 1))  # noqa: E731
    params, defs = {}, {}
    mods = {"model": AttentionModel(config, rngs=nnx.Rngs(seed(k_model)))}
    if proposal:
        mods["proposal"] = Proposal(image_size=config.image_size, view=config.proposal_view,
                                    num_classes=config.num_classes, hidden=config.proposal_hidden,
                                    state_size=config.hidden, num_locations=config.policy_outputs,
                                    rngs=nnx.Rngs(seed(k_prop)))
    if baseline:
        mods["baseline"] = Baseline(config.hidden, rngs=nnx.Rngs(seed(k_base)))
    if prior_baseline:
        mods["prior_baseline"] = Baseline(config.hidden, rngs=nnx.Rngs(seed(k_pb)))
    for name, mod in mods.items():
        graphdef, p, rest = nnx.split(mod, nnx.Param, ...)
        params[name], defs[name] = p, (graphdef, rest)
    # Both baselines share one Module class, hence one graph definition.
    base_def = defs.get("baseline", defs.get("prior_baseline"))
    ram = RAM(config, defs["model"], defs.get("proposal"), base_def)
    return ram, params


def float_images(images) -> Array:
    """uint8 grey levels (0..255) -> float32 in [0, 1]; float images pass through (as float)."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images if jnp.issubdtype(images.dtype, jnp.floating) else images.astype(jnp.float32)


def check_labels(labels, num_classes: int, name: str = "labels") -> None:
    """Raises ``ValueError`` naming ``name`` when concrete labels fall outside ``[0, num_classes)``
    (traced labels inside ``jit`` cannot be checked and pass)."""
    if isinstance(labels, jax.core.Tracer):
        return
    arr = np.asarray(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"`{name}` must be integers; got dtype {arr.dtype}.")
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"`{name}` must lie in [0, num_classes={num_classes}); got values in "
                         f"[{arr.min()}, {arr.max()}].")


def _merge(definition, params):
    graphdef, rest = definition
    return nnx.merge(graphdef, params, rest)


def _gaussian_log_prob(a: Array, mean: Array, std: float) -> Array:
    """log N(a; mean, std^2 I) summed over the last axis (2 coordinates)."""
    return jnp.sum(-0.5 * ((a - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi), axis=-1)


def _gaussian_expected_log_p(mean_q: Array, mean_p: Array, std: float) -> Array:
    """``E_{a ~ N(mean_q, std^2)}[log N(a; mean_p, std^2)]`` (closed form, 2 coordinates)."""
    return jnp.sum(-0.5 * ((mean_q - mean_p) / std) ** 2 - 0.5 - math.log(std) - 0.5 * math.log(2 * math.pi),
                   axis=-1)


def pixel_centres(loc: Array, image_size: int) -> Array:
    """[-1, 1] coordinates [..., 2] -> nearest int pixel centres (inverse of ``normalized_locations``)."""
    c = jnp.round((jnp.clip(loc, -1.0, 1.0) + 1.0) * image_size / 2.0 - 0.5)
    return jnp.clip(c, 0, image_size - 1).astype(jnp.int32)


def rollout_batch(ram: RAM, params: dict, images: Array, labels: Array, key: Array, *, num_samples: int,
                  sample_from: str = "prior", actions: Array | None = None,
                  feature_table: bool | None = None) -> Trajectory:
    """K trajectories per image as one computation: ``B * K`` trajectories on one leading axis.

    Args:
      ram: model structure from :func:`make_ram`.
      params: parameter dict from :func:`make_ram`.
      images: [B, S, S] float images.
      labels: int [B] (read only by the proposal).
      key: PRNG key; glimpse step ``t`` draws all ``B * K`` locations with ``split(key, T)[t]``.
      num_samples: K trajectories per image.
      sample_from: "prior" (a ~ p(a|x)) or "proposal" (a ~ q(a|x,y)).
      actions: optional [B, K, T] int (grid) / [B, K, T, 2] float (Gaussian): score these
        trajectories instead of sampling.
      feature_table: grid only: compute the glimpse features of all G locations once per
        image and gather them (True), or compute them per glimpse (False). None: the table
        when ``K > 1`` (measured faster for K = 5 on CPU at the default sizes; for K = 1 the
        backward pass is cheaper per glimpse). Both give the same numbers.

    Returns:
      A :class:`Trajectory` with leaves [B, K, ...].
    """
    c = ram.config
    if images.ndim != 3 or images.shape[1:] != (c.image_size, c.image_size):
        raise ValueError(f"`images` must be [B, {c.image_size}, {c.image_size}]; got shape {images.shape}.")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"`labels` must be [B={images.shape[0]}]; got shape {labels.shape}.")
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    if sample_from not in ("prior", "proposal"):
        raise ValueError(f"`sample_from` must be 'prior' or 'proposal'; got {sample_from!r}.")
    check_labels(labels, c.num_classes)
    b, k_, t_ = images.shape[0], int(num_samples), c.num_glimpses
    n = b * k_
    grid = c.locations == "grid"
    model = _merge(ram.model_def, params["model"])
    prop = _merge(ram.proposal_def, params["proposal"]) if "proposal" in params else None
    base = _merge(ram.baseline_def, params["baseline"]) if "baseline" in params else None
    pbase = _merge(ram.baseline_def, params["prior_baseline"]) if "prior_baseline" in params else None
    img_idx = jnp.repeat(jnp.arange(b), k_)  # trajectory i looks at image i // K
    given = actions is not None
    act_shape = (b, k_, t_) if grid else (b, k_, t_, 2)
    if given:
        actions = jnp.asarray(actions, jnp.int32 if grid else images.dtype)
        if actions.shape != act_shape:
            raise ValueError(f"`actions` must be {list(act_shape)}; got shape {actions.shape}.")
    else:
        actions = jnp.zeros(act_shape, jnp.int32 if grid else images.dtype)
    actions_t = jnp.moveaxis(actions.reshape(n, *act_shape[2:]), 1, 0)  # [T, N(, 2)]

    if prop is not None:
        ctx = jax.tree.map(lambda v: v[img_idx], prop.context(images, labels))
    if grid:
        grid_np = glimpse_lib.location_grid(c.image_size, c.grid_size)
        centres = jnp.asarray(grid_np)
        locs = jnp.asarray(glimpse_lib.normalized_locations(grid_np, c.image_size), images.dtype)
        use_table = k_ > 1 if feature_table is None else bool(feature_table)
        if use_table:
            glimpse_all = glimpse_lib.grid_glimpses(images, np.unique(grid_np[:, 0]), patch=c.patch,
                                                    num_scales=c.num_scales)   # [B, G, S, p, p]
            table = model.features(glimpse_all, locs[None])                    # [B, G, hidden]
    elif feature_table:
        raise ValueError("`feature_table` needs grid locations (RAMConfig.locations='grid').")
    if not (grid and use_table):
        padded = glimpse_lib.pad_images(images, patch=c.patch, num_scales=c.num_scales)  # once, not per glimpse

    def extract(ce):
        return glimpse_lib.extract_glimpses(padded, img_idx, ce, patch=c.patch, num_scales=c.num_scales)

    def step(carry, inp):
        k, a_given = inp
        h = carry[1]
        if grid:
            logp_all = jax.nn.log_softmax(model.policy(h))
            logq_all = jax.nn.log_softmax(prop.logits(ctx, h)) if prop is not None else logp_all
            if given:
                a = a_given
            else:
                a = jax.random.categorical(k, logq_all if sample_from == "proposal" else logp_all)
            log_p = jnp.take_along_axis(logp_all, a[:, None], 1)[:, 0]
            log_q = jnp.take_along_axis(logq_all, a[:, None], 1)[:, 0]
            expected = jnp.sum(sg(jnp.exp(logq_all)) * logp_all, axis=-1)
            if use_table:
                g = table[img_idx, a]
            else:
                g = model.features(extract(centres[a]), locs[a])
        else:
            mean_p = jnp.tanh(model.policy(h))
            mean_q = jnp.tanh(prop.logits(ctx, h)) if prop is not None else mean_p
            if given:
                a = a_given
            else:
                mean = mean_q if sample_from == "proposal" else mean_p
                a = sg(mean) + c.location_std * jax.random.normal(k, mean.shape, mean.dtype)
            log_p = _gaussian_log_prob(a, mean_p, c.location_std)
            log_q = _gaussian_log_prob(a, mean_q, c.location_std)
            expected = _gaussian_expected_log_p(sg(mean_q), mean_p, c.location_std)
            loc = jnp.clip(a, -1.0, 1.0)
            g = model.features(extract(pixel_centres(loc, c.image_size)), loc)
        zero = jnp.zeros(h.shape[:1], h.dtype)
        bl = base(sg(h)) if base is not None else zero
        pb = pbase(sg(h)) if pbase is not None else zero
        return model.step(carry, g), (a, log_p, log_q, h, bl, expected, pb)

    zeros = jnp.zeros((n, c.hidden), images.dtype)
    keys = jax.random.split(key, t_)
    (_, h_t), outs = jax.lax.scan(step, (zeros, zeros), (keys, actions_t))
    acts, log_p, log_q, states, baselines, expected, pbs = (
        jnp.moveaxis(o, 0, 1).reshape(b, k_, t_, *o.shape[2:]) for o in outs)
    logits = model.classifier(h_t).reshape(b, k_, c.num_classes)
    return Trajectory(acts, log_p, log_q, logits, states, baselines, expected, pbs)


def rollout(ram: RAM, params: dict, image: Array, label: Array, key: Array, *,
            sample_from: str = "prior", actions: Array | None = None) -> Trajectory:
    """One trajectory of one image: :func:`rollout_batch` with ``B = K = 1``, leading axes dropped.

    Args:
      image: [S, S] float image.
      label: int scalar y (read only by the proposal).
      actions: optional [T] int (grid) / [T, 2] float (Gaussian): score this trajectory.

    Returns:
      A :class:`Trajectory` without leading axes.
    """
    c = ram.config
    if image.shape != (c.image_size, c.image_size):
        raise ValueError(f"`image` must be [{c.image_size}, {c.image_size}]; got shape {image.shape}.")
    label = jnp.asarray(label, jnp.int32)
    if actions is not None:
        actions = jnp.asarray(actions)[None, None]
    tr = rollout_batch(ram, params, image[None], label[None], key, num_samples=1, sample_from=sample_from,
                       actions=actions)
    return jax.tree.map(lambda v: v[0, 0], tr)


def proposal_log_prob(ram: RAM, params: dict, images: Array, labels: Array, traj: Trajectory) -> Array:
    """``log q(a_t | h_{t-1}, x, y)`` [B, K, T] of given trajectories under labels ``y``.

    Re-scores ``traj.actions`` from the stored states ``traj.states`` (the proposal reads
    ``h_{t-1}`` under ``stop_gradient``, so no second pass of the model is needed). Used by the
    sleep-q update, where ``y`` is drawn after the trajectory.

    Args:
      images: [B, S, S]; labels: int [B]; traj: leaves [B, K, ...].
    """
    if "proposal" not in params:
        raise ValueError("`params` has no 'proposal': the proposal is the prior.")
    c = ram.config
    prop = _merge(ram.proposal_def, params["proposal"])
    ctx = jax.tree.map(lambda v: v[:, None, None], prop.context(images, labels))
    out = prop.logits(ctx, traj.states)  # [B, K, T, outputs]
    if c.locations == "grid":
        return jnp.take_along_axis(jax.nn.log_softmax(out), traj.actions[..., None], -1)[..., 0]
    return _gaussian_log_prob(traj.actions, jnp.tanh(out), c.location_std)


def predict(ram: RAM, params: dict, images: Array, key: Array, *, num_samples: int = 1) -> Array:
    """Monte Carlo predictive ``log p(y | x) ~= log mean_m p(y | a_m, x)``, ``a_m ~ p(a | x)``.

    Args:
      images: [B, S, S] float.
      num_samples: M glimpse trajectories per image.

    Returns:
      [B, C] log class probabilities.
    """
    labels = jnp.zeros(images.shape[:1], jnp.int32)  # the prior never reads the label
    traj = rollout_batch(ram, {"model": params["model"]}, images, labels, key, num_samples=num_samples,
                         sample_from="prior")
    return logsumexp(jax.nn.log_softmax(traj.class_logits), axis=1) - jnp.log(num_samples)


def all_trajectories(num_locations: int, num_glimpses: int) -> np.ndarray:
    """Every trajectory, int32 [num_locations**num_glimpses, num_glimpses] (for tiny models)."""
    n = num_locations ** num_glimpses
    if n > 1_000_000:
        raise ValueError(f"{num_locations}**{num_glimpses} = {n} trajectories is too many to enumerate.")
    return np.array(list(itertools.product(range(num_locations), repeat=num_glimpses)), np.int32)


def _score_all(ram: RAM, params: dict, image: Array, label: Array) -> Trajectory:
    if ram.config.locations != "grid":
        raise ValueError("exact enumeration needs grid locations (RAMConfig.locations='grid').")
    acts = jnp.asarray(all_trajectories(ram.config.num_locations, ram.config.num_glimpses))
    tr = rollout_batch(ram, params, image[None], jnp.asarray(label, jnp.int32)[None], jax.random.key(0),
                       num_samples=len(acts), actions=acts[None])  # the key is unused: actions are given
    return jax.tree.map(lambda v: v[0], tr)


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


def error_rate(ram: RAM, params: dict, images, labels, key: Array, *, num_samples: int = 5,
               batch_size: int = 500, progress: bool | None = None) -> float:
    """Test error of :func:`predict` (argmax of the M-sample averaged predictive), in [0, 1].

    Args:
      images: [N, S, S] uint8 (0..255) or float in [0, 1] (numpy or jax).
      labels: int [N].
      key: one key; batch ``i`` uses ``fold_in(key, i)``.
      num_samples: M prior trajectories per image (default 5), their predictive
        probabilities averaged.
      batch_size: images per jitted call (the last partial batch is padded).
      progress: a :func:`mamjax.progress.bar` over the batches (None: its default rule; the
        bar is cleared when done).

    Returns:
      The fraction of misclassified images (python float).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if labels.shape != images.shape[:1]:
        raise ValueError(f"`labels` must be [N={images.shape[0]}]; got shape {labels.shape}.")
    check_labels(labels, ram.config.num_classes)
    if not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"`num_samples` must be a positive int; got {num_samples!r}.")
    n = len(images)
    fn = _predict_jit(ram, num_samples)
    wrong = 0
    starts = range(0, n, batch_size)
    for i, start in enumerate(progress_lib.bar(starts, desc=f"test error (M={num_samples})", progress=progress)):
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
