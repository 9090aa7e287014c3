"""Experiment plumbing shared by the MaM examples, benchmark and notebook.

Set-ups (networks + optimizers + initial train states) for the two-stage MLE
recipe and for energy-based training, and the evaluations the paper reports:
test NLL of AO-ARM-S / AO-ARM-E / MaM, agreement of MaM and AO-ARM-E marginals on
random subsets (Spearman / Pearson), and the cost of one marginal query.
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mamjax import masks as masks_lib
from mamjax import progress
from mamjax import train
from mamjax.marginal import agreement
from mamjax.marginal import arm as arm_lib
from mamjax.marginal import losses
from mamjax.marginal import marginal_net
from mamjax.marginal import sampling

Array = jax.Array

__all__ = ["Nets", "make_nets", "mnist_arrays", "arm_stage", "mam_stage", "TwoStages", "train_two_stages",
           "energy_stage", "random_subsets", "beyond_one_site_std",
           "redraw_flags", "arm_kl", "save_kl_curve", "ising_target", "ising_ground_truth", "evaluate_energy_model",
           "evaluate_nll", "subset_agreement", "paper_agreement", "time_queries", "save_image_grid", "save_scatter"]


class Nets(NamedTuple):
    """The two networks of a MaM: callables and initial parameters."""

    marg_apply: Callable
    cond_apply: Callable
    params: dict  # {"marginal": ..., "conditional": ...}
    num_dims: int
    num_classes: int


def make_nets(key: Array, num_dims: int, num_classes: int = 2, *, backbone: str = "mlp", width: int = 256,
              depth: int = 2, num_heads: int = 4) -> Nets:
    """Marginal and conditional networks with the same backbone and sizes."""
    k_m, k_c = jax.random.split(key)
    cond_apply, cond_params = arm_lib.make_conditional_net(k_c, num_dims, num_classes, backbone=backbone,
                                                           width=width, depth=depth, num_heads=num_heads)
    marg_apply, marg_params = marginal_net.make_marginal_net(k_m, num_dims, num_classes, backbone=backbone,
                                                             width=width, depth=depth, num_heads=num_heads)
    return Nets(marg_apply, cond_apply, {"marginal": marg_params, "conditional": cond_params}, num_dims, num_classes)


def mnist_arrays(resolution: int = 14, binarization: str = "static", num_test: int | None = None):
    """Flattened binary MNIST as int32 ``[N, r*r]`` train / test arrays (static binarization).

    ``binarization="dynamic"`` returns the grey train images (uint8, flattened) to be
    binarized per batch with :func:`mamjax.data.dynamic_binarize`; the test set is always
    the static draw so numbers are comparable between runs.
    """
    from mamjax import data

    if binarization not in ("static", "dynamic"):
        raise ValueError(f"`binarization` must be 'static' or 'dynamic'; got {binarization!r}.")
    name = "binarized_mnist" if binarization == "static" else "mnist"
    tr = data.load(name, "train", resolution=resolution)["image"]
    te = data.load("binarized_mnist", "test", resolution=resolution)["image"]
    tr = tr.reshape(tr.shape[0], -1).astype(np.int32 if binarization == "static" else np.uint8)
    te = te.reshape(te.shape[0], -1).astype(np.int32)
    return tr, (te if num_test is None else te[:num_test])


def _owned(tree):
    """A copy of every array of ``tree``: the train step donates its state, the caller keeps theirs."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def _partition(params: dict, trainable: str) -> dict:
    """optax.multi_transform labels: 'train' for ``params[trainable]``, 'freeze' elsewhere."""
    return {k: jax.tree.map(lambda _: ("train" if k == trainable else "freeze"), v) for k, v in params.items()}


def arm_stage(nets: Nets, lr: float = 1e-3, clip: float = 1.0):
    """Stage 1: AO-ARM training of the conditional network (marginal net frozen).

    Returns ``(train_step, state)`` for :func:`mamjax.train.fit`; batches are ``[B, D] int``.
    """
    labels = _partition(nets.params, "conditional")
    opt = optax.multi_transform({"train": _adam(lr, clip), "freeze": optax.set_to_zero()}, labels)

    def loss_fn(params, batch, key):
        return arm_lib.arm_loss(nets.cond_apply, params["conditional"], batch.astype(jnp.int32), key)

    return train.make_train_step(loss_fn, opt), train.TrainState.create(_owned(nets.params), opt)


def mam_stage(nets: Nets, params: dict, init_chains: Array | None, lr: float = 1e-3, chain_weight: float = 0.5,
              gibbs_steps: int = 1, clip: float = 1.0):
    """Stage 2: self-consistency distillation of the marginal net (conditional frozen).

    ``init_chains`` ``[C, D] int`` start the persistent Gibbs chains (e.g. a data batch); they
    live in the train state's ``model_state`` and are checkpointed with it.
    """
    labels = _partition(params, "marginal")
    opt = optax.multi_transform({"train": _adam(lr, clip), "freeze": optax.set_to_zero()}, labels)
    if init_chains is None:
        chain_weight = 0.0
    loss = functools.partial(losses.mle_loss, nets.marg_apply, nets.cond_apply, chain_weight=chain_weight,
                             gibbs_steps=gibbs_steps)

    def loss_fn(p, chains, batch, key):
        return loss(p, chains, batch.astype(jnp.int32), key)

    chains = None if init_chains is None else jnp.array(init_chains, jnp.int32)  # a copy: the step donates it
    return (train.make_train_step(loss_fn, opt, stateful=True),
            train.TrainState.create(_owned(params), opt, model_state=chains))


class TwoStages(NamedTuple):
    """What :func:`train_two_stages` returns."""

    params: dict  # the final {"marginal": ..., "conditional": ...}
    arm_state: train.TrainState  # stage 1's final state
    mam_state: train.TrainState  # stage 2's final state
    arm_steps: int  # steps stage 1 ran in all (< the requested count when its time budget ran out)
    arm_seconds: float  # wall seconds of stage 1 in this call (restoring only, when it had finished before)
    mam_seconds: float  # wall seconds of stage 2 in this call
    history: dict  # {"arm": [...], "mam": [...]}: the metric records train.fit logged in this call


_ARM_DONE = "stage1_done.json"  # written in workdir/arm when a time budget ended stage 1 early


def _fit_arm(step, state, stream, *, num_steps: int, max_seconds: float | None, key, workdir, save_every: int,
             log_every: int, mesh, progress):
    """Stage 1 through train.fit: ``num_steps`` steps, or fewer when ``max_seconds`` of wall time run out
    (checked every ``save_every`` steps; the step count reached is kept in ``workdir`` so a restart of
    the same command does not resume stage 1 past it)."""
    kw = dict(key=key, workdir=workdir, save_every=save_every, log_every=log_every, mesh=mesh,
              desc="stage 1: AO-ARM", progress=progress)
    if max_seconds is None:
        state, hist = train.fit(step, state, stream, num_steps=num_steps, **kw)
        return state, hist, num_steps
    if jax.process_count() > 1:
        raise ValueError("`arm_seconds` needs one process (the processes' clocks would disagree on the stop); "
                         "give a step count (`arm_steps`) instead.")
    marker = None if workdir is None else os.path.join(workdir, _ARM_DONE)
    if marker is not None and os.path.exists(marker):
        with open(marker) as f:
            num_steps = min(num_steps, int(json.load(f)["step"]))
        state, hist = train.fit(step, state, stream, num_steps=num_steps, **kw)  # restores, runs nothing
        return state, hist, num_steps
    start, hist, done = time.perf_counter(), [], 0
    while done < num_steps:
        target = min(num_steps, (done // save_every + 1) * save_every)
        state, h = train.fit(step, state, stream, num_steps=target, **kw)
        hist += h
        done = int(state.step)
        if time.perf_counter() - start >= max_seconds:
            break
    if marker is not None and jax.process_index() == 0:
        with open(marker, "w") as f:
            json.dump({"step": done, "max_seconds": max_seconds}, f)
    return state, hist, done


def train_two_stages(nets: Nets, stream: Callable[[int], Any], *, arm_steps: int, mam_steps: int, keys,
                     mam_stream: Callable[[int], Any] | None = None, lr: float = 1e-3, mam_lr: float | None = None,
                     clip: float = 1.0, chain_weight: float = 0.5, gibbs_steps: int = 1,
                     tie_shared: Callable[[dict], dict] | None = None, arm_seconds: float | None = None,
                     workdir: str | os.PathLike | None = None, save_every: int = 1000, log_every: int = 50,
                     mesh=None, progress: bool | None = None) -> TwoStages:
    """The two-stage MLE recipe: stage 1 AO-ARM (:func:`arm_stage`), stage 2 MaM (:func:`mam_stage`), each
    through :func:`mamjax.train.fit`.

    Args:
      nets: the two networks (initial parameters in ``nets.params``).
      stream: ``stream(step) -> [B, D] int`` batches of stage 1.
      arm_steps, mam_steps: total steps of each stage.
      keys: ``(k_arm, k_mam)``, the base PRNG keys of the two stages (a pair, or a ``[2]`` key array from
        ``jax.random.split``).
      mam_stream: batches of stage 2 (default: ``stream``); its batch 0 starts the persistent Gibbs chains
        when ``chain_weight`` > 0.
      lr, mam_lr: Adam learning rates of stage 1 and stage 2 (``mam_lr`` None or 0: ``lr``).
      clip: global-norm clip of both stages.
      chain_weight, gibbs_steps: stage 2's self-consistency weight on the chains and Gibbs steps per update.
      tie_shared: maps stage 1's params to stage 2's start (e.g. :func:`mamjax.marginal.unet.tie_shared`,
        which copies a trained shared trunk into the marginal network); None: used as they are.
      arm_seconds: wall-time budget of stage 1 (checked every ``save_every`` steps; one process only);
        None: exactly ``arm_steps``.
      workdir: checkpoints and metric logs under ``workdir/arm`` and ``workdir/mam``; a restarted run
        resumes the stage it stopped in (a finished stage 1 is restored, not retrained).
      save_every, log_every, mesh, progress: as in :func:`mamjax.train.fit`.

    Returns:
      :class:`TwoStages`.
    """
    if arm_seconds is not None and not arm_seconds >= 0:
        raise ValueError(f"`arm_seconds` must be >= 0 or None; got {arm_seconds!r}.")
    if len(keys) != 2:
        raise ValueError(f"`keys` must be the pair (k_arm, k_mam); got {len(keys)} keys.")
    k_arm, k_mam = keys[0], keys[1]
    mam_stream = stream if mam_stream is None else mam_stream
    sub = (lambda name: None) if workdir is None else (lambda name: os.path.join(os.fspath(workdir), name))
    fit_kw = dict(save_every=save_every, log_every=log_every, mesh=mesh, progress=progress)

    t0 = time.perf_counter()
    step, state = arm_stage(nets, lr=lr, clip=clip)
    state, arm_hist, arm_done = _fit_arm(step, state, stream, num_steps=arm_steps, max_seconds=arm_seconds,
                                         key=k_arm, workdir=sub("arm"), **fit_kw)
    t1 = time.perf_counter()

    init_chains = mam_stream(0) if chain_weight > 0 else None
    stage1 = state.params if tie_shared is None else tie_shared(state.params)
    step2, state2 = mam_stage(nets, stage1, init_chains, lr=mam_lr or lr, chain_weight=chain_weight,
                              gibbs_steps=gibbs_steps, clip=clip)
    state2, mam_hist = train.fit(step2, state2, mam_stream, num_steps=mam_steps, key=k_mam, workdir=sub("mam"),
                                 desc="stage 2: MaM", **fit_kw)
    return TwoStages(state2.params, state, state2, arm_done, t1 - t0, time.perf_counter() - t1,
                     {"arm": arm_hist, "mam": mam_hist})


def _adam(lr: float, clip: float | None, decay_steps: int = 0):
    """Adam, after global-norm clipping when ``clip`` > 0 (None or <= 0: no clipping, the official Ising setting);
    ``decay_steps`` > 0: the learning rate follows a cosine decay from ``lr`` to 0 over that many steps."""
    rate = optax.cosine_decay_schedule(lr, decay_steps) if decay_steps > 0 else lr
    if clip is None or clip <= 0:
        return optax.adam(rate)
    return optax.chain(optax.clip_by_global_norm(clip), optax.adam(rate))


def energy_stage(nets: Nets, log_f: Callable[[Array], Array], init_chains: Array, lr: float = 1e-3,
                 alpha: float = 4.0, gibbs_steps: int = 1, clip: float | None = 1.0, redraw: bool = False,
                 log_z: float = 0.0, decay_steps: int = 0, score: str = "marginal"):
    """Energy-based training of both networks against ``log_f`` (REINFORCE + alpha * penalty).

    Args:
      nets: the two networks.
      log_f: unnormalized target ``log_f(bits [C, D]) -> [C]``.
      init_chains: ``[C, D] int`` initial persistent chains (carried as the state's ``model_state``).
      lr: Adam learning rate (official Ising: 5e-4).
      alpha: penalty weight (paper: 4).
      gibbs_steps: positions re-sampled per chain per step (paper: 4).
      clip: global-norm clip, None or <= 0 for none (official Ising: none).
      redraw: when True, the batch of a step is a ``[C] bool`` flag vector (see
        :func:`redraw_flags`); where it is set, the chains are first re-drawn by ancestral
        sampling from p_phi (D network calls), as the official code does at every epoch start.
      log_z: target of ``f(empty)`` (0: a normalized marginal network).
      decay_steps: > 0: cosine decay of the learning rate to 0 over that many steps (not in the
        official code, which keeps lr fixed).
      score: which network the REINFORCE term differentiates: ``"marginal"`` (f_theta, the
        paper's) or ``"conditional"`` (the official code's ``logp_mc`` option); see
        :func:`mamjax.marginal.losses.energy_loss`.

    Returns:
      ``(train_step, state)`` for :func:`mamjax.train.fit`.
    """
    opt = _adam(lr, clip, decay_steps)
    base = functools.partial(losses.energy_loss, nets.marg_apply, nets.cond_apply, log_f, alpha=alpha,
                             gibbs_steps=gibbs_steps, log_z=log_z, score=score)
    num_chains, num_dims = init_chains.shape

    def loss_fn(params, chains, batch, key):
        if redraw:
            k_draw, key = jax.random.split(key)
            cp = jax.lax.stop_gradient(params["conditional"])
            chains = jax.lax.cond(jnp.any(batch),
                                  lambda: sampling.sample(nets.cond_apply, cp, k_draw, num_chains, num_dims),
                                  lambda: chains)
        return base(params, chains, batch, key)

    return (train.make_train_step(loss_fn, opt, stateful=True),
            train.TrainState.create(_owned(nets.params), opt, model_state=jnp.array(init_chains, jnp.int32)))


def redraw_flags(num_chains: int, every: int) -> Callable[[int], np.ndarray]:
    """The batch stream of :func:`energy_stage` with ``redraw=True``: step i gets ``[C]`` flags set
    when ``i % every == 0`` (every <= 0: never). An array with a batch axis, so it shards on a mesh."""
    def stream(i: int) -> np.ndarray:
        return np.full((num_chains,), every > 0 and i % every == 0, bool)

    return stream


def random_subsets(key: Array, num: int, num_dims: int) -> Array:
    """``[num, D] bool`` masks with |S| uniform in {1..D} (a uniformly random subset of that size)."""
    k_n, k_m = jax.random.split(key)
    num_hidden = jax.random.randint(k_n, (num,), 0, num_dims)
    return jax.vmap(masks_lib.mask_by_count, in_axes=(0, None, 0))(jax.random.split(k_m, num), num_dims, num_hidden)


def _batched(fn, *arrays, batch_size: int, desc: str = "eval"):
    """``fn`` over consecutive batches of ``arrays`` (a progress bar when there is more than one), concatenated."""
    starts = range(0, arrays[0].shape[0], batch_size)
    outs = [np.asarray(fn(*(a[i:i + batch_size] for a in arrays)))
            for i in progress.bar(starts, desc=desc, progress=None if len(starts) > 1 else False)]
    return np.concatenate(outs)


@functools.lru_cache(maxsize=32)
def _jitted_ensemble(cond_apply):
    return jax.jit(functools.partial(arm_lib.arm_log_marginal_ensemble, cond_apply), static_argnums=(4,))


def _ensemble_fn(nets: Nets):
    """AO-ARM-S/E of ``nets``, compiled once per network (repeated evaluations reuse it)."""
    return _jitted_ensemble(nets.cond_apply)


@functools.lru_cache(maxsize=32)
def _jitted_completion(cond_apply, counts: tuple):
    return jax.jit(functools.partial(agreement.censor_and_complete, cond_apply, num_censored=counts))


def evaluate_nll(nets: Nets, params: dict, x: Array, key: Array, *, num_orderings: int = 5,
                 batch_size: int = 100) -> dict:
    """Test NLL (nats per example and bits/dim) of AO-ARM-S, AO-ARM-E(M) and the MaM marginal network.

    - ``ao_arm_s``: the conditional network's chain rule along one random ordering per example
      (a normalized likelihood; the paper's MaM NLL is this number, since MaM uses the
      conditional network for likelihoods);
    - ``ao_arm_e``: log-mean-exp over ``num_orderings`` orderings (paper: 5);
    - ``mam``: the marginal network's ``-(f(x) - f(empty))``, NOT a normalized likelihood
      (nothing forces ``sum_x exp f(x) = exp f(empty)``); report it under its own name.
    """
    d = nets.num_dims
    full = jnp.ones(x.shape, bool)
    k_s, k_e = jax.random.split(key)
    ens = _ensemble_fn(nets)
    arm_s = _batched(lambda a, m: ens(params["conditional"], a, m, k_s, 1), x, full, batch_size=batch_size,
                     desc="NLL AO-ARM-S")
    arm_e = _batched(lambda a, m: ens(params["conditional"], a, m, k_e, num_orderings), x, full,
                     batch_size=batch_size, desc=f"NLL AO-ARM-E({num_orderings})")
    f0 = marginal_net.log_normalizer(nets.marg_apply, params["marginal"], d)
    mam = _batched(lambda a, m: marginal_net.log_marginal(nets.marg_apply, params["marginal"], a, m), x, full,
                   batch_size=1000, desc="NLL MaM") - float(f0)
    to_bpd = 1.0 / (d * np.log(2.0))
    out = {}
    for name, ll in (("ao_arm_s", arm_s), ("ao_arm_e", arm_e), ("mam", mam)):
        out[f"{name}_nats"] = float(-np.mean(ll))
        out[f"{name}_bpd"] = float(-np.mean(ll) * to_bpd)
    out["f_empty"] = float(f0)
    out["num_orderings"] = int(num_orderings)
    return out


def subset_agreement(nets: Nets, params: dict, x: Array, key: Array, *, num_orderings: int = 5,
                     batch_size: int = 50) -> dict:
    """Pooled MaM vs AO-ARM-E log-marginals of random subsets of ``x`` (one subset of random size each).

    Not the paper's protocol (see :func:`paper_agreement`): pooled over subset sizes, the
    correlation is mostly explained by |S|, which ``size_only_*`` (the score ``-|S|``, same
    correlation functions) shows.

    Returns Spearman and Pearson correlations, mean |difference| (nats), the |S|-only control and
    the raw pairs.
    """
    from scipy import stats

    k_mask, k_arm = jax.random.split(key)
    mask = random_subsets(k_mask, x.shape[0], nets.num_dims)
    arm_e = _batched(lambda a, m: _ensemble_fn(nets)(params["conditional"], a, m, k_arm, num_orderings), x, mask,
                     batch_size=batch_size, desc="subsets AO-ARM-E")
    f0 = float(marginal_net.log_normalizer(nets.marg_apply, params["marginal"], nets.num_dims))
    mam = np.asarray(marginal_net.log_marginal(nets.marg_apply, params["marginal"], x, mask)) - f0
    size = np.asarray(agreement.size_only_scores(mask))
    return {"spearman": float(stats.spearmanr(mam, arm_e).statistic), "pearson": float(stats.pearsonr(mam, arm_e)[0]),
            "size_only_spearman": float(stats.spearmanr(size, arm_e).statistic),
            "size_only_pearson": float(stats.pearsonr(size, arm_e)[0]),
            "mean_abs_diff": float(np.mean(np.abs(mam - arm_e))), "mam": mam, "ao_arm_e": arm_e,
            "subset_size": np.asarray(mask.sum(-1))}


def paper_agreement(nets: Nets, params: dict, x: Array, key: Array, *, num_censored=None, num_orderings: int = 5,
                    threshold: float = 5.0, batch_size: int = 50) -> dict:
    """The paper's agreement protocol (:mod:`mamjax.marginal.agreement`) with its controls.

    Each test image is censored by ``num_censored`` (default: the paper's 100/400/700 scaled to D)
    along one random ordering and completed by the AO-ARM; the completions are scored by the MaM
    (``f(x)``), AO-ARM-E (``num_orderings``, the reference) and AO-ARM-S (one ordering: the
    official "self" agreement); near-duplicates within ``threshold`` nats of AO-ARM-E are dropped;
    per-image correlations are averaged. The same function scores two controls: ``size_only``
    (``-|S|``; constant on full images, so 0 by convention) and ``censor_count`` (``-n``).

    Returns:
      ``{"mam": {...}, "ao_arm_s": {...}, "size_only": {...}, "censor_count": {...}}`` (each with
      ``spearman``, ``pearson``, ``num_images``, ``num_pairs``), ``"num_censored"``, and the raw
      ``"scores"`` ``[B, M]`` arrays.
    """
    d = nets.num_dims
    counts = agreement.scaled_censor_counts(d) if num_censored is None else tuple(num_censored)
    k_comp, k_e, k_s = jax.random.split(key, 3)
    comp, _ = _jitted_completion(nets.cond_apply, counts)(params["conditional"], x, k_comp)
    batch, m = comp.shape[:2]
    flat = comp.reshape(-1, d)
    full = jnp.ones(flat.shape, bool)
    ens = _ensemble_fn(nets)
    arm_e = _batched(lambda a, mk: ens(params["conditional"], a, mk, k_e, num_orderings), flat, full,
                     batch_size=batch_size, desc="agreement AO-ARM-E").reshape(batch, m)
    arm_s = _batched(lambda a, mk: ens(params["conditional"], a, mk, k_s, 1), flat, full,
                     batch_size=batch_size, desc="agreement AO-ARM-S").reshape(batch, m)
    mam = np.asarray(marginal_net.log_marginal(nets.marg_apply, params["marginal"], flat, full)).reshape(batch, m)
    keep = np.asarray(agreement.drop_near_duplicates(arm_e, threshold))
    controls = {"size_only": np.asarray(agreement.size_only_scores(full)).reshape(batch, m),
                "censor_count": np.asarray(agreement.censor_count_scores(counts, batch))}
    out = {"num_censored": list(counts), "num_orderings": int(num_orderings), "threshold": float(threshold)}
    scores = {"mam": mam, "ao_arm_s": arm_s, **controls}
    for name, sc in scores.items():
        res = agreement.per_image_correlations(sc, arm_e, keep)
        out[name] = {k: v for k, v in res.items() if np.ndim(v) == 0}
    out["scores"] = dict(scores, ao_arm_e=arm_e, keep=keep)
    return out


def time_queries(nets: Nets, params: dict, x: Array, mask: Array, *, min_time: float = 1.0,
                 arm_chunk: int | None = None) -> dict:
    """Seconds to score a batch of subsets: MaM (1 network call) vs AO-ARM-S (D calls, same backbone).

    ``arm_chunk``: examples per AO-ARM network call (``arm_chunk * D`` rows; None: all ``B * D`` rows at once).
    """
    mam = jax.jit(lambda p, a, m: nets.marg_apply(p, a, m))
    arm = jax.jit(lambda p, a, m: arm_lib.arm_log_marginal_ensemble(nets.cond_apply, p, a, m, jax.random.key(0), 1,
                                                                   chunk_size=arm_chunk or a.shape[0]))

    def clock(fn, *args):
        jax.block_until_ready(fn(*args))
        times, start = [], time.perf_counter()
        while len(times) < 3 or time.perf_counter() - start < min_time:
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    t_mam = clock(mam, params["marginal"], x, mask)
    t_arm = clock(arm, params["conditional"], x, mask)
    return {"mam_sec": t_mam, "ao_arm_sec": t_arm, "speedup": t_arm / t_mam}


def save_image_grid(images: np.ndarray, path: str, side: int, ncol: int = 8, title: str | None = None) -> str:
    """Saves ``[N, side*side]`` binary images (or spins) as a PNG grid with visible separators.

    Cells are drawn black (1) on white (0) and framed by a mid-grey 1-pixel border, so an all-black
    sample (e.g. an aligned Ising state) stays distinguishable from its neighbours.
    """
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (a notebook's inline one) stays

    images = np.asarray(images, np.float64).reshape(-1, side, side)
    if images.min() < 0:  # spins in {-1, +1}
        images = (images + 1) / 2
    n = images.shape[0]
    ncol = max(1, min(ncol, n))
    nrow = int(np.ceil(n / ncol))
    cell = side + 1
    grid = np.full((nrow * cell + 1, ncol * cell + 1), 0.5)  # grey separators
    for i in range(n):
        r, c = divmod(i, ncol)
        grid[1 + r * cell:1 + r * cell + side, 1 + c * cell:1 + c * cell + side] = images[i]
    fig = Figure(figsize=(ncol * 0.6 + 0.4, nrow * 0.6 + 0.6))
    ax = fig.add_subplot()
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def save_scatter(a: np.ndarray, b: np.ndarray, path: str, xlabel: str, ylabel: str, title: str = "") -> str:
    """Scatter of two sets of log-likelihoods with the y = x line."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.scatter(a, b, s=4, alpha=0.6)
    lo, hi = float(min(np.min(a), np.min(b))), float(max(np.max(a), np.max(b)))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def ising_target(side: int):
    """The paper's Ising target on bits: ``(log_f(bits [B, D]) -> [B], J, b, log Z)``.

    ``log Z`` is exact (transfer matrix) for ``side <= 12`` and None beyond (e.g. 30x30), where
    only NLL of ground-truth samples can be reported, not KL.
    """
    from mamjax.data import ising

    J, b = ising.ising_params(side)
    log_z = float(ising.exact_log_partition(J, b)) if side <= ising.MAX_TRANSFER_SIDE else None
    Jf, bf = jnp.asarray(J, jnp.float32), jnp.asarray(b, jnp.float32)

    def log_f(bits):
        s = 2.0 * bits.astype(jnp.float32) - 1.0
        return jnp.einsum("...i,ij,...j->...", s, Jf, s) + s @ bf

    return log_f, J, b, log_z


def ising_ground_truth(side: int, key: Array, num_samples: int = 1000, num_sweeps: int = 1000) -> Array:
    """Ground-truth samples (bits ``[N, D] int32``) by long checkerboard Gibbs chains."""
    from mamjax.data import ising

    J, b = ising.ising_params(side)
    spins = ising.gibbs_sample(key, J, b, num_samples, num_sweeps)
    return ((spins + 1) // 2).astype(jnp.int32)


def evaluate_energy_model(nets: Nets, params: dict, log_f: Callable, log_z: float | None, x_true: Array, key: Array,
                          *, num_samples: int = 1000) -> dict:
    """Ising-style evaluation; KL needs the exact log Z (``log_z=None``: the KL entries are None).

    - ``nll_*_bpd``: NLL of ground-truth samples under the MaM (``-(f(x) - f(empty))``) and the
      AO-ARM (one raster ordering), in bits/dim;
    - ``kl_arm``: ``KL(p_phi || f/Z)`` of the AO-ARM along the raster ordering, estimated without
      bias from its own samples (exact log-probabilities, exact log Z);
    - ``kl_mam_plugin``: ``E_{x ~ p_phi}[f(x) - f(empty) - log f(x)] + log Z``, the same estimate
      with the MaM's log-density plugged in;
    - ``kl_mam_sampler``: ``KL(q_theta || f/Z)`` of the marginal network's own ancestral sampler (the
      paper's eq. 6, :func:`mamjax.marginal.sampling.marginal_sample`) along the raster ordering, from
      its own samples with their exact log-densities: a normalized distribution made from f_theta
      alone, so a KL in the proper sense (unlike the plug-in);
    - ``beyond_one_site_{mam,arm,target}``: over the ground-truth samples, the standard deviation
      (nats) of each log-density's residual after its least-squares fit by one-site terms
      (``c + sum_i w_i x_i``): 0 for any factorized model, the interactions' share for the target.
    """
    d = nets.num_dims
    raster_ll = _raster_ll(nets.cond_apply, d)
    arm_ll = lambda a: raster_ll(params["conditional"], a)
    f0 = float(marginal_net.log_normalizer(nets.marg_apply, params["marginal"], d))
    full = jnp.ones(x_true.shape, bool)
    mam_true = np.asarray(marginal_net.log_marginal(nets.marg_apply, params["marginal"], x_true, full)) - f0
    arm_true = _batched(arm_ll, x_true, batch_size=100, desc="NLL ground truth")

    xs = _raster_samples(nets.cond_apply, num_samples, d)(params["conditional"], key)
    arm_s = _batched(arm_ll, xs, batch_size=100, desc="KL model samples")
    mam_s = np.asarray(marginal_net.log_marginal(nets.marg_apply, params["marginal"], xs, jnp.ones(xs.shape, bool)))
    lf = np.asarray(log_f(xs))
    xq, log_q = _raster_marginal_samples(nets.marg_apply, num_samples, d)(params["marginal"],
                                                                         jax.random.fold_in(key, 1))
    to_bpd = 1.0 / (d * np.log(2.0))
    kl = (lambda v: None) if log_z is None else (lambda v: float(np.mean(v) + log_z))
    beyond = {f"beyond_one_site_{name}": beyond_one_site_std(x_true, v)
              for name, v in (("mam", mam_true), ("arm", arm_true), ("target", np.asarray(log_f(x_true))))}
    return {"nll_mam_bpd": float(-np.mean(mam_true) * to_bpd), "nll_arm_bpd": float(-np.mean(arm_true) * to_bpd),
            "nll_mam_nats": float(-np.mean(mam_true)), "nll_arm_nats": float(-np.mean(arm_true)),
            "kl_arm": kl(arm_s - lf), "kl_mam_plugin": kl(mam_s - f0 - lf),
            "kl_mam_sampler": kl(np.asarray(log_q) - np.asarray(log_f(xq))),
            "kl_plus_log_z_arm": float(np.mean(arm_s - lf)), "f_empty": f0, **beyond, "samples": np.asarray(xs)}


def beyond_one_site_std(x: Array, values: Array) -> float:
    """Std (over the rows) of ``values`` minus its least-squares fit ``c + x @ w`` (float64 numpy).

    ``x [N, D]`` binary, ``values [N]``: what of a log-density on these samples one-site terms
    cannot explain (0 for a factorized model, up to float error).
    """
    x, values = np.asarray(x, np.float64), np.asarray(values, np.float64)
    if x.ndim != 2 or values.shape != (x.shape[0],):
        raise ValueError(f"`x` must be [N, D] and `values` [N]; got {x.shape} and {values.shape}.")
    design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return float(np.std(values - design @ coef))


@functools.lru_cache(maxsize=32)
def _raster_ll(cond_apply, d: int):
    """Jitted exact chain-rule log-likelihoods along the raster ordering: ``(cp, x [N, D]) -> [N]``."""
    raster = jnp.arange(d)
    return jax.jit(jax.vmap(lambda cp, a: arm_lib.arm_log_marginal(cond_apply, cp, a, jnp.ones((d,), bool), raster),
                            in_axes=(None, 0)))


def arm_kl(nets: Nets, params: dict, log_f: Callable, log_z: float | None, key: Array, num_samples: int = 500) -> dict:
    """``KL(p_phi || f/Z)`` of the conditional network along the raster ordering, from its own samples.

    Exact log-probabilities along one ordering make this an unbiased estimate (the official
    code scores with a second random ordering instead). ``log_z=None``: only ``kl_plus_log_z``.
    """
    d = nets.num_dims
    xs = _raster_samples(nets.cond_apply, num_samples, d)(params["conditional"], key)
    ll = np.asarray(_raster_ll(nets.cond_apply, d)(params["conditional"], xs))
    v = float(np.mean(ll - np.asarray(log_f(xs))))
    return {"kl_plus_log_z": v, "kl": None if log_z is None else v + log_z}


@functools.lru_cache(maxsize=32)
@functools.lru_cache(maxsize=8)
def _raster_marginal_samples(marg_apply, num_samples: int, d: int):
    """Jitted ``(marginal params, key) -> (x, log q)`` of :func:`sampling.marginal_sample` in raster order."""
    return jax.jit(lambda mp, k: sampling.marginal_sample(marg_apply, mp, k, num_samples, d,
                                                          ordering=jnp.arange(d)))


def _raster_samples(cond_apply, num_samples: int, d: int):
    def draw(cp, k):
        keys = jax.random.split(k, num_samples)
        x0, m0 = jnp.zeros((d,), jnp.int32), jnp.zeros((d,), bool)
        return jax.vmap(lambda kk: sampling.fill_in_order(cond_apply, cp, x0, m0, jnp.arange(d), kk))(keys)
    return jax.jit(draw)


def save_kl_curve(seconds, kls, path: str, *, log_z: float | None, paper_kl: float | None = None,
                  mean_field_kl: float | None = None, steps=None, train_metric=None, title: str = "") -> str:
    """KL against training time (left) and the training metric ``E[f - log f]`` with its -log Z floor (right).

    Args:
      seconds: ``[n]`` training seconds of each curve point; kls: ``[n]`` KL in nats.
      log_z: exact log Z (draws the -log Z line on the right panel).
      paper_kl: a reference KL (e.g. the paper's MaM figure), drawn as a dashed line.
      mean_field_kl: the KL of the best factorized distribution (:func:`mamjax.data.ising.mean_field`),
        drawn as a dotted line: a model below it has learned correlations.
      steps, train_metric: the logged steps and ``kl_plus_log_z`` values (right panel).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(seconds, kls, "o-", ms=4, label="KL(p_phi || p), raster order")
    ax.axhline(0.0, color="k", lw=0.8)
    if paper_kl is not None:
        ax.axhline(paper_kl, color="C3", ls="--", lw=1, label=f"paper MaM ({paper_kl} nats)")
    if mean_field_kl is not None:
        ax.axhline(mean_field_kl, color="C2", ls=":", lw=1.2, label=f"best factorized q ({mean_field_kl:.2f} nats)")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("KL (nats)")
    ax.legend(fontsize=7)
    ax2 = fig.add_subplot(1, 2, 2)
    if steps is not None and train_metric is not None:
        ax2.plot(steps, train_metric, lw=1, label="E_chains[f_theta(x) - log f(x)]")
    if log_z is not None:
        ax2.axhline(-log_z, color="C3", ls="--", lw=1, label=f"-log Z = {-log_z:.2f} (KL = 0)")
        low = min([-log_z] + [float(v) for v in (train_metric or [])])
        ax2.set_ylim(bottom=low - 0.05 * max(1.0, abs(low)))  # keep the reference line off the frame
    ax2.set_xlabel("training step")
    ax2.set_ylabel("nats")
    ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
