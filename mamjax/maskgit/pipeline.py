"""The TimeVQVAE + MaskGIT (+ ESS) pipeline as plain functions with checkpoint/resume.

``train_tokenizer`` -> ``tokenize`` -> ``train_prior`` (class-conditional with class
dropout: the null class gives the unconditional prior) -> ``generate`` (naive or ESS;
unconditional for FID / IS, class-conditional for CAS) -> ``evaluate`` with an FCN
trained on the real training set (the feature extractor of every metric). The
paper's protocol (TimeVQVAE / ESS): FID of unconditional samples against the test
set and against the test set through the tokenizer round trip, IS over 10 splits
(mean +- std), CAS of class-conditional samples, beside the real-vs-real floors.
Every training stage goes through :func:`mamjax.train.fit`, so with a ``workdir``
each stage is checkpointed with Orbax and a rerun resumes (or, when finished,
restores) it. Examples, benchmarks and notebooks call these.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from mamjax import nn as nn_lib
from mamjax import progress as progress_lib
from mamjax import train as train_lib
from mamjax.data.stream import BatchStream
from mamjax.maskgit import fcn as fcn_lib
from mamjax.maskgit import metrics as metrics_lib
from mamjax.maskgit import prior as prior_lib
from mamjax.maskgit import sample as sample_lib
from mamjax.maskgit import tokenizer as tok_lib

__all__ = ["TokenizerBundle", "PriorBundle", "default_downsampling", "make_tokenizer", "train_tokenizer",
           "tokenize", "round_trip", "init_prior", "train_prior", "make_sampler", "generate", "generate_unconditional", "train_classifier",
           "evaluate", "run_all"]


class TokenizerBundle(NamedTuple):
    params: Any
    fns: dict
    len_l: int
    len_h: int
    num_codes: int


class PriorBundle(NamedTuple):
    apply_l: Callable
    apply_h: Callable
    params: dict
    num_classes: int
    loo_l: Callable | None = None  # the low-band prior's leave-one-out apply (the critic's forward pass)


def _sub(workdir, name):
    return None if workdir is None else os.path.join(workdir, name)


def default_downsampling(length: int, n_fft: int = 8, hop: int = 2, target_l: int = 10,
                         target_h: int = 20) -> tuple[int, int]:
    """Stride-2 downsamplings giving about ``target_l`` / ``target_h`` tokens per band."""
    f = tok_lib.num_frames(length, n_fft, hop)
    return (max(0, round(math.log2(f / target_l))), max(0, round(math.log2(f / target_h))))


def make_tokenizer(length: int, *, hidden: int = 64, code_dim: int = 16, num_codes: int = 32,
                   down_l: int | None = None, down_h: int | None = None, n_fft: int = 8, hop: int = 2,
                   window: str = "hann", padding: str = "zeros", tokens_per_step: int = 1, floor_down: bool = False,
                   codebook: str = "unit_norm", ema_decay: float = 0.8, seed: int = 0) -> tok_lib.Tokenizer:
    """An untrained :class:`~mamjax.maskgit.tokenizer.Tokenizer`; ``down_l`` / ``down_h`` None: ~10 / ~20 tokens."""
    dl, dh = default_downsampling(length, n_fft, hop)
    return tok_lib.Tokenizer(length, n_fft=n_fft, hop=hop, hidden=hidden, code_dim=code_dim, num_codes=num_codes,
                             down_l=dl if down_l is None else down_l, down_h=dh if down_h is None else down_h,
                             window=window, padding=padding, tokens_per_step=tokens_per_step, floor_down=floor_down,
                             codebook=codebook, ema_decay=ema_decay, rngs=nnx.Rngs(seed))


def _save_every(save_every: int | None, num_steps: int):
    """Half the stage's steps unless given (``train.fit`` checks a given value)."""
    return max(1, num_steps // 2) if save_every is None else save_every


def train_tokenizer(x: np.ndarray, *, num_steps: int = 1000, batch_size: int = 32, learning_rate: float = 1e-3,
                    hidden: int = 64, code_dim: int = 16, num_codes: int = 32, down_l: int | None = None,
                    down_h: int | None = None, n_fft: int = 8, hop: int = 2, window: str = "hann",
                    padding: str = "zeros", tokens_per_step: int = 1, floor_down: bool = False,
                    codebook: str = "unit_norm", ema_decay: float = 0.8, seed: int = 0,
                    workdir=None, mesh=None, progress: bool | None = None,
                    save_every: int | None = None) -> tuple[TokenizerBundle, list]:
    """Stage 1: the STFT VQ-VAE on ``x [N, T]`` (options: :func:`make_tokenizer`).

    ``save_every``: steps between checkpoints in ``workdir/tokenizer`` (default: half the steps).

    ``mesh``: a data mesh (:func:`mamjax.sharding`); batches are split over it by :func:`mamjax.train.fit`.
    Returns the bundle and the metric history.
    """
    module = make_tokenizer(x.shape[1], hidden=hidden, code_dim=code_dim, num_codes=num_codes, down_l=down_l,
                            down_h=down_h, n_fft=n_fft, hop=hop, window=window, padding=padding,
                            tokens_per_step=tokens_per_step, floor_down=floor_down, codebook=codebook,
                            ema_decay=ema_decay, seed=seed)
    params, fns = tok_lib.tokenizer_functions(module)
    opt = optax.adam(learning_rate)
    ema = codebook == "ema"
    if ema:  # the EMA codebooks are model state carried by the step, not optimized parameters
        step = train_lib.make_train_step(lambda p, s, b, k: fns["loss_with_state"](p, s, b), opt, stateful=True)
        state = train_lib.TrainState.create(params, opt, model_state=tok_lib.tokenizer_state(module))
    else:
        step = train_lib.make_train_step(lambda p, b, k: fns["loss"](p, b), opt)
        state = train_lib.TrainState.create(params, opt)
    stream = BatchStream(np.asarray(x, np.float32), min(batch_size, len(x)), seed=seed)
    state, hist = train_lib.fit(step, state, stream, num_steps=num_steps, key=jax.random.key(seed),
                                workdir=_sub(workdir, "tokenizer"), save_every=_save_every(save_every, num_steps),
                                log_every=max(1, num_steps // 10), desc="tokenizer", mesh=mesh, progress=progress)
    if ema:
        nnx.update(module, state.model_state)
        _, fns = tok_lib.tokenizer_functions(module)
    return TokenizerBundle(state.params, fns, module.len_l, module.len_h, num_codes), hist


def tokenize(tok: TokenizerBundle, x: np.ndarray, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """``x [N, T] -> (codes_l [N, N_l], codes_h [N, N_h])`` numpy int32."""
    fn = jax.jit(tok.fns["tokenize"])
    out = [fn(tok.params, jnp.asarray(x[i:i + batch_size], jnp.float32)) for i in range(0, len(x), batch_size)]
    return (np.concatenate([np.asarray(a) for a, _ in out]), np.concatenate([np.asarray(b) for _, b in out]))


def round_trip(tok: TokenizerBundle, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """``x [N, T] -> detokenize(tokenize(x))``: the series the tokenizer can represent (numpy float32)."""
    fn = jax.jit(lambda p, xb: tok.fns["detokenize"](p, *tok.fns["tokenize"](p, xb)))
    return np.concatenate([np.asarray(fn(tok.params, jnp.asarray(x[i:i + batch_size], jnp.float32)))
                           for i in range(0, len(x), batch_size)])


def init_prior(num_codes: int, len_l: int, len_h: int, num_classes: int, *, dim: int = 64, depth: int = 2,
               num_heads: int = 4, seed: int = 0) -> PriorBundle:
    """The two untrained priors in pure form (what :func:`train_prior` starts from; benchmarks time them)."""
    pri = prior_lib.make_priors(num_codes, len_l, len_h, num_classes=num_classes, dim=dim, depth=depth,
                                num_heads=num_heads, rngs=nnx.Rngs(seed + 1))
    (apply_l, p_l), (apply_h, p_h) = nn_lib.functional(pri["lf"]), nn_lib.functional(pri["hf"])
    loo_l = functools.partial(nn_lib.functional(pri["lf"], method="leave_one_out")[0],
                              batch_size=prior_lib.leave_one_out_batch_size(len_l, dim))
    return PriorBundle(apply_l, apply_h, {"lf": p_l, "hf": p_h}, num_classes, loo_l)


def train_prior(codes_l: np.ndarray, codes_h: np.ndarray, labels: np.ndarray, num_classes: int, *,
                num_codes: int, num_steps: int = 2000, batch_size: int = 32, learning_rate: float = 1e-3,
                dim: int = 64, depth: int = 2, num_heads: int = 4, p_uncond: float = 0.2, seed: int = 0,
                loss_positions: str = "hidden", workdir=None, mesh=None,
                progress: bool | None = None, save_every: int | None = None) -> tuple[PriorBundle, list]:
    """Stage 2: the two class-conditional MaskGIT priors; labels dropped to the null class
    ``num_classes`` with probability ``p_uncond`` (class dropout: the null class is the unconditional prior).

    ``loss_positions``: ``"hidden"`` (the MaskGIT loss) or ``"all"`` (the official TimeVQVAE loss on every
    token, see :func:`mamjax.maskgit.prior.maskgit_loss`); checkpointed in ``workdir/prior`` and
    ``workdir/prior_all`` respectively, so that one never restores the other; ``save_every`` steps between
    those checkpoints (default: half the steps)."""
    if loss_positions not in ("hidden", "all"):
        raise ValueError(f"`loss_positions` must be one of ['all', 'hidden']; got {loss_positions!r}.")
    init = init_prior(num_codes, codes_l.shape[1], codes_h.shape[1], num_classes, dim=dim, depth=depth,
                      num_heads=num_heads, seed=seed)
    apply_l, apply_h, params, loo_l = init.apply_l, init.apply_h, init.params, init.loo_l
    opt = optax.adamw(learning_rate, weight_decay=1e-2)
    loss = lambda p, b, k: prior_lib.prior_loss(apply_l, apply_h, num_codes, p, b, k, num_classes=num_classes,
                                                p_uncond=p_uncond, positions=loss_positions)
    step = train_lib.make_train_step(loss, opt)
    state = train_lib.TrainState.create(params, opt)
    data = {"codes_l": codes_l.astype(np.int32), "codes_h": codes_h.astype(np.int32), "label": labels.astype(np.int32)}
    stream = BatchStream(data, min(batch_size, len(codes_l)), seed=seed)
    state, hist = train_lib.fit(step, state, stream, num_steps=num_steps, key=jax.random.key(seed + 1),
                                workdir=_sub(workdir, "prior" if loss_positions == "hidden" else "prior_all"),
                                save_every=_save_every(save_every, num_steps),
                                log_every=max(1, num_steps // 10), desc="prior", mesh=mesh, progress=progress)
    return PriorBundle(apply_l, apply_h, state.params, num_classes, loo_l), hist


def make_sampler(tok: TokenizerBundle, pri: PriorBundle, *, method: str, batch_size: int, num_steps: int = 10,
                 temperature_l: float = 4.0, temperature_h: float = 4.0, guidance_scale: float = 1.0,
                 schedule: str = "cosine", ess_per_sequence: bool = False, conditional: bool = True):
    """A jitted sampler for ``method`` in :data:`mamjax.maskgit.sample.METHODS` (naive, ess, ess_redraw), or an
    ESS method with a grouped critic (``"ess_redraw_g4"``, :func:`mamjax.maskgit.sample.parse_method`).

    ``conditional=True``: ``sampler(key, labels [batch_size]) -> x [batch_size, T]``;
    ``conditional=False``: ``sampler(key) -> x``, unconditional, every row given the prior's null
    class (``num_classes``, the class that class dropout trained; the official code's
    ``class_condition=None``).
    """
    groups = sample_lib.parse_method(method)[1]
    if groups is not None and groups > tok.len_l:
        raise ValueError(f"`method` {method!r}: {groups} critic groups exceed the {tok.len_l} low-band tokens.")
    codebook_l = tok.fns["codebooks"](tok.params)[0]

    def run(tok_params, params, cb, key, labels):
        return sample_lib.sample_series(
            tok.fns["detokenize"], tok_params, pri.apply_l, pri.apply_h, params, key, codebook_l=cb,
            num_codes=tok.num_codes, len_l=tok.len_l, len_h=tok.len_h, labels=labels, batch_size=batch_size,
            method=method, num_steps=num_steps, schedule=schedule, temperature_l=temperature_l,
            temperature_h=temperature_h, guidance_scale=guidance_scale if conditional else 1.0,
            null_label=pri.num_classes, ess_per_sequence=ess_per_sequence, apply_loo_l=pri.loo_l)

    jitted = jax.jit(run)
    if conditional:
        return lambda key, labels: jitted(tok.params, pri.params, codebook_l, key, labels)
    null = jnp.full((batch_size,), pri.num_classes, jnp.int32)
    return lambda key: jitted(tok.params, pri.params, codebook_l, key, null)


def generate(sampler: Callable, labels: np.ndarray, key: jax.Array, batch_size: int,
             progress: bool | None = None) -> np.ndarray:
    """Samples one series per label with a conditional ``sampler`` in fixed-size chunks (last chunk padded)."""
    labels = np.asarray(labels, np.int32)
    out = []
    for i in progress_lib.bar(range(0, len(labels), batch_size), desc="sample", progress=progress):
        chunk = labels[i:i + batch_size]
        padded = np.concatenate([chunk, np.full(batch_size - len(chunk), chunk[0], np.int32)])
        out.append(np.asarray(sampler(jax.random.fold_in(key, i), jnp.asarray(padded)))[:len(chunk)])
    return np.concatenate(out)


def generate_unconditional(sampler: Callable, num: int, key: jax.Array, batch_size: int,
                           progress: bool | None = None) -> np.ndarray:
    """``num`` series from an unconditional ``sampler(key)`` (``make_sampler(..., conditional=False)``)."""
    out = [np.asarray(sampler(jax.random.fold_in(key, i)))
           for i in progress_lib.bar(range(0, num, batch_size), desc="sample", progress=progress)]
    return np.concatenate(out)[:num]


def train_classifier(x: np.ndarray, labels: np.ndarray, num_classes: int, *, num_steps: int = 500, seed: int = 0,
                     workdir=None, progress: bool | None = None) -> fcn_lib.Classifier:
    """The FCN behind FID / IS, trained on real data (checkpointed in ``workdir/fcn``)."""
    return fcn_lib.train_fcn(x, labels, num_classes, num_steps=num_steps, seed=seed, workdir=_sub(workdir, "fcn"),
                             progress=progress)


def evaluate(clf: fcn_lib.Classifier, *, x_uncond: np.ndarray, x_cond: np.ndarray, y_cond: np.ndarray,
             x_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, x_test_rt: np.ndarray, num_classes: int,
             cas_steps: int = 300, num_splits: int = 10, seed: int = 0, workdir=None,
             progress: bool | None = None) -> dict:
    """The paper's scores from FCN features and class probabilities.

    Args:
      clf: the FCN trained on the real training set.
      x_uncond: ``[M, T]`` unconditional samples (FID, IS).
      x_cond, y_cond: ``[M', T]`` class-conditional samples and their labels (CAS: an FCN trained on
        them, tested on the real test set).
      x_test_rt: the test set through the tokenizer round trip (:func:`round_trip`).

    Returns:
      ``{"fid": vs test, "fid_rt": vs round-trip test, "is", "is_std": IS over ``num_splits`` splits,
      "cas", "fid_floor": real train vs test, "fid_rt_floor": round-trip test vs test, "is_real",
      "is_real_std": the real test set's IS, "clf_test_acc": the FCN's test accuracy}``.
    """
    probs_gen, f_gen = fcn_lib.predict(clf, x_uncond)
    probs_test, f_test = fcn_lib.predict(clf, x_test)
    _, f_rt = fcn_lib.predict(clf, x_test_rt)
    _, f_train = fcn_lib.predict(clf, x_train)
    cas = metrics_lib.classification_accuracy_score(x_cond, y_cond, x_test, y_test, num_classes, num_steps=cas_steps,
                                                    seed=seed, workdir=workdir, progress=progress)
    is_m, is_s = metrics_lib.inception_score_splits(probs_gen, num_splits)
    is_r, is_rs = metrics_lib.inception_score_splits(probs_test, min(num_splits, len(probs_test)))
    return {"fid": metrics_lib.fid(f_gen, f_test), "fid_rt": metrics_lib.fid(f_gen, f_rt), "is": is_m,
            "is_std": is_s, "cas": cas, "fid_floor": metrics_lib.fid(f_train, f_test),
            "fid_rt_floor": metrics_lib.fid(f_rt, f_test), "is_real": is_r, "is_real_std": is_rs,
            "clf_test_acc": float(np.mean(probs_test.argmax(1) == y_test))}


def run_all(train: dict, test: dict, *, workdir=None, seed: int = 0, tokenizer_steps: int = 1000,
            prior_steps: int = 2000, fcn_steps: int = 500, cas_steps: int = 300, num_samples: int | None = None,
            num_cas_samples: int | None = None, sample_batch: int = 128, num_decode_steps: int = 10,
            temperature: float = 4.0, guidance_scale: float = 1.0, methods=("naive", "ess"),
            prior_dim: int = 64, prior_depth: int = 2, prior_heads: int = 4, prior_batch: int = 32,
            prior_lr: float = 1e-3, p_uncond: float = 0.2, prior_loss_positions: str = "hidden",
            tokenizer_kwargs: dict | None = None,
            classifier: fcn_lib.Classifier | None = None, mesh=None, progress: bool | None = None,
            save_every: int | None = None) -> dict:
    """All stages on ``train`` / ``test`` = ``{"x": [N, T], "label": [N]}``.

    For each method in ``methods`` (both on the one schedule of :mod:`mamjax.maskgit.schedule`):
    ``num_samples`` unconditional series (default ``max(N_test, 256)``, the official count) for FID
    and IS, and ``num_cas_samples`` class-conditional ones (default ``num_samples``, labels in the
    training set's class proportions) for CAS. ``classifier``: an FCN already trained on ``train``
    (e.g. shared by several seeds); None trains one in ``workdir/fcn`` with ``seed``.
    ``tokenizer_kwargs`` go to :func:`train_tokenizer`; ``prior_loss_positions`` to :func:`train_prior`
    (``"all"`` with the ``"ess_redraw"`` method is the official protocol). ``mesh``: data-parallel training of the
    tokenizer and the priors (global batch sizes). ``save_every``: checkpoint interval of those two stages
    (default: half of each stage's steps).

    Returns:
      ``{"tokenizer", "prior", "classifier", "samplers", "generated": {method: {"uncond": x, "cond": (x, y)}},
      "scores": {method: evaluate(...) dict}, "history": {stage: metric list}, "num_classes"}``.
    """
    x_tr, y_tr = np.asarray(train["x"], np.float32), np.asarray(train["label"], np.int32)
    x_te, y_te = np.asarray(test["x"], np.float32), np.asarray(test["label"], np.int32)
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    tok, h_tok = train_tokenizer(x_tr, num_steps=tokenizer_steps, seed=seed, workdir=workdir, mesh=mesh,
                                 progress=progress, save_every=save_every, **(tokenizer_kwargs or {}))
    codes_l, codes_h = tokenize(tok, x_tr)
    pri, h_pri = train_prior(codes_l, codes_h, y_tr, num_classes, num_codes=tok.num_codes, num_steps=prior_steps,
                             batch_size=prior_batch, learning_rate=prior_lr, dim=prior_dim, depth=prior_depth,
                             num_heads=prior_heads, p_uncond=p_uncond, seed=seed,
                             loss_positions=prior_loss_positions, workdir=workdir, mesh=mesh, progress=progress,
                             save_every=save_every)
    clf = classifier if classifier is not None else train_classifier(x_tr, y_tr, num_classes, num_steps=fcn_steps,
                                                                     seed=seed, workdir=workdir, progress=progress)
    x_rt = round_trip(tok, x_te)
    n = max(len(y_te), 256) if num_samples is None else num_samples
    n_cas = n if num_cas_samples is None else num_cas_samples
    rng = np.random.default_rng(seed)
    y_cas = rng.permutation(np.resize(rng.permutation(y_tr), n_cas)).astype(np.int32)  # train class proportions
    batch = min(sample_batch, n, n_cas)
    out = {"tokenizer": tok, "prior": pri, "classifier": clf, "samplers": {}, "generated": {}, "scores": {},
           "history": {"tokenizer": h_tok, "prior": h_pri}, "num_classes": num_classes}
    cas_suffix = "" if prior_loss_positions == "hidden" else "_prior_all"  # never restore another prior's CAS
    for i, method in enumerate(methods):
        common = dict(method=method, batch_size=batch, num_steps=num_decode_steps, temperature_l=temperature,
                      temperature_h=temperature)
        uncond = make_sampler(tok, pri, conditional=False, **common)
        cond = make_sampler(tok, pri, guidance_scale=guidance_scale, **common)
        key = jax.random.fold_in(jax.random.key(seed), 1000 + i)
        x_u = generate_unconditional(uncond, n, jax.random.fold_in(key, 0), batch, progress=progress)
        x_c = generate(cond, y_cas, jax.random.fold_in(key, 1), batch, progress=progress)
        out["samplers"][method] = {"uncond": uncond, "cond": cond}
        out["generated"][method] = {"uncond": x_u, "cond": (x_c, y_cas)}
        out["scores"][method] = evaluate(clf, x_uncond=x_u, x_cond=x_c, y_cond=y_cas, x_train=x_tr, x_test=x_te,
                                         y_test=y_te, x_test_rt=x_rt, num_classes=num_classes, cas_steps=cas_steps,
                                         seed=seed, workdir=_sub(workdir, f"cas_{method}{cas_suffix}"),
                                         progress=progress)
    return out
