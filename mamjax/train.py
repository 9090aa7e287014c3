"""Training: one pure step shape for every method, and a plain loop around it.

``make_train_step(loss_fn, optimizer)`` returns the jitted pure step
``(state, batch, key) -> (state, metrics)``; ``fit`` is the loop
data -> step -> metrics -> checkpoint -> eval, with a tqdm bar and a JSON-lines
metrics log. Batches and per-step keys are pure functions of the step number
(``stream(step)``, ``fold_in(key, step)``), so a run killed and restarted with the
same command resumes from its last checkpoint and ends bit-identical. ``fit`` runs
data-parallel over a :mod:`mamjax.sharding` mesh (also over several processes started
with ``jax.distributed``: only process 0 writes logs and progress), can run several
steps per dispatch (``lax.scan``) and prefetches batches to the devices.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import warnings
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from mamjax import checkpoint as ckpt_lib
from mamjax import progress as progress_lib
from mamjax import sharding as sharding_lib

__all__ = ["TrainState", "NonFiniteError", "make_train_step", "make_multi_step", "fit", "read_metrics", "plot_metrics"]

LossFn = Callable[..., Any]


class TrainState(NamedTuple):
    """Everything a training run carries from step to step (a pytree).

    Attributes:
      step: int32 scalar, number of updates applied.
      params: model parameters (pytree).
      opt_state: optax state.
      model_state: non-differentiated model state (e.g. batch-norm statistics) or None.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any = None

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation, model_state=None) -> "TrainState":
        return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params),
                   model_state=model_state)


def make_train_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, *, stateful: bool = False,
                    jit: bool = True, donate: bool = True):
    """Builds ``train_step(state, batch, key) -> (state, metrics)``.

    Args:
      loss_fn: ``loss_fn(params, batch, key) -> (loss, metrics)``; with ``stateful=True``
        ``loss_fn(params, model_state, batch, key) -> (loss, (metrics, new_model_state))``.
        ``metrics`` is a dict of scalars; ``"loss"`` is added.
      optimizer: an optax transformation.
      stateful: whether the model carries non-parameter state.
      jit: compile the step (with the state donated when ``donate``).

    Returns:
      The step function.
    """

    def step(state: TrainState, batch, key):
        if stateful:
            def f(p):
                loss, (metrics, new_ms) = loss_fn(p, state.model_state, batch, key)
                return loss, (metrics, new_ms)
            (loss, (metrics, model_state)), grads = jax.value_and_grad(f, has_aux=True)(state.params)
        else:
            (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
            model_state = state.model_state
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return TrainState(state.step + 1, params, opt_state, model_state), metrics

    if jit:
        return jax.jit(step, donate_argnums=(0,) if donate else ())
    return step


def fit(train_step, state: TrainState, stream: Callable[[int], Any], *, num_steps: int, key: jax.Array,
        workdir: str | os.PathLike | None = None, save_every: int = 1000, keep: int = 2,
        eval_fn: Callable[[TrainState], dict] | None = None, eval_every: int | None = None,
        log_every: int = 50, mesh=None, desc: str = "train", progress: bool | None = None,
        async_checkpoint: bool = True, steps_per_dispatch: int = 1, prefetch: int = 2,
        tensorboard: bool = False) -> tuple[TrainState, list[dict]]:
    """Runs ``train_step`` until ``state.step == num_steps``, resuming from ``workdir`` if possible.

    Args:
      train_step: from :func:`make_train_step`.
      state: the initial state (also the template for restoring).
      stream: ``stream(step) -> batch`` (e.g. :class:`mamjax.data.stream.BatchStream`); on
        several processes, this process's slice of the global batch (see :mod:`mamjax.sharding`).
      num_steps: total number of steps of the run (not of this call).
      key: base PRNG key; step ``i`` uses ``fold_in(key, i)``.
      workdir: if set, Orbax checkpoints go to ``workdir/checkpoints`` (every
        ``save_every`` steps and at the end, keeping ``keep``) and metrics to
        ``workdir/metrics.jsonl``; an existing checkpoint is restored first (the
        newest one that restores, see :meth:`mamjax.checkpoint.Checkpointer.restore`)
        and "resumed from step N" is printed to stderr. The workdir is locked for
        the duration of the call (a second run on it is refused). On several
        processes the workdir is shared: every process takes part in Orbax's save and
        restore of the arrays, only process 0 writes the log, the lock, the
        TensorBoard events and the progress bar.
      eval_fn: ``eval_fn(state) -> dict`` run every ``eval_every`` steps and at the end
        (on every process).
      eval_every: steps between evaluations; None or 0: only at the end.
      log_every: steps between metric logs (metrics are means over the interval).
        Non-finite metrics are written as ``null`` (the log is strict JSON). The
        first record also has ``compile_sec``, the wall time of the first dispatch
        (compilation and one dispatch's steps); ``steps_per_sec`` and the progress
        bar's rate and ETA exclude it (and evaluation time).
      mesh: a :func:`mamjax.sharding.data_mesh`; batches sharded, state replicated.
      progress: show a tqdm bar (default: unless ``CI`` is set).
      async_checkpoint: write checkpoints in a background thread.
      steps_per_dispatch: run this many steps per host dispatch, as one ``lax.scan``
        over stacked batches (keys still ``fold_in(key, step)``), for small models
        whose steps are shorter than the Python/dispatch overhead. Logs, evaluations
        and checkpoints land on the same steps as with 1: steps up to such a
        boundary that do not fill a whole dispatch run one at a time.
      prefetch: batches placed on the devices ahead of the step that uses them
        (1: no look-ahead). The numbers do not depend on it.
      tensorboard: also write every log record as TensorBoard scalars to
        ``workdir/tensorboard`` (needs ``tensorboardX``; no TensorFlow).

    Returns:
      ``(state, history)``: the final state and the list of logged metric dicts.

    Raises:
      NonFiniteError: the loss or gradient norm of a step (checked before every log,
        evaluation and checkpoint, so with one host sync per interval, not per step)
        or the parameters about to be checkpointed are not finite. The message names
        the first bad step; no checkpoint is written after it, so the latest
        checkpoint on disk is the last good one (also with a small ``keep``).
      mamjax.checkpoint.DirectoryLockedError: another run holds ``workdir``.
      mamjax.checkpoint.CheckpointMismatchError: the checkpoint's shapes or dtypes
        differ from ``state``'s.
      mamjax.checkpoint.CheckpointError: no checkpoint in ``workdir`` restores.
      TypeError / ValueError: non-integer or out-of-range step counts; ``tensorboard``
        without a ``workdir``.
      ImportError: ``tensorboard=True`` and ``tensorboardX`` is not installed.
    """
    _check_int("num_steps", num_steps, 0)
    _check_int("log_every", log_every, 1)
    _check_int("save_every", save_every, 1)
    _check_int("keep", keep, 1)
    _check_int("steps_per_dispatch", steps_per_dispatch, 1)
    _check_int("prefetch", prefetch, 1)
    if eval_every is not None:
        _check_int("eval_every", eval_every, 0)
    if tensorboard and workdir is None:
        raise ValueError("`tensorboard=True` needs a `workdir` to write the events to.")
    progress = progress_lib.enabled(progress)  # process 0 only, off under CI unless asked
    chief = jax.process_index() == 0
    checkpointer, log_path, lock, writer = None, None, None, None
    if workdir is not None:
        workdir = os.path.abspath(os.fspath(workdir))
        if os.path.exists(workdir) and not os.path.isdir(workdir):
            raise NotADirectoryError(f"`workdir` {workdir} exists and is not a directory.")
        try:
            os.makedirs(workdir, exist_ok=True)
        except OSError as e:
            raise type(e)(e.errno, f"cannot create `workdir` {workdir}: {e.strerror}") from e
        if chief:  # the other processes of one job share the workdir with process 0
            lock = ckpt_lib.DirectoryLock(workdir).acquire()  # also proves the workdir writable, early
    try:
        if workdir is not None:
            checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=save_every,
                                                 keep=keep, async_save=async_checkpoint)
            log_path = os.path.join(workdir, "metrics.jsonl") if chief else None
            if tensorboard and chief:
                writer = _tensorboard_writer(os.path.join(workdir, "tensorboard"))
        return _fit(train_step, state, stream, num_steps=num_steps, key=key, checkpointer=checkpointer,
                    log_path=log_path, eval_fn=eval_fn, eval_every=eval_every, log_every=log_every, mesh=mesh,
                    desc=desc, progress=progress, steps_per_dispatch=steps_per_dispatch,
                    prefetch=prefetch, writer=writer, chief=chief)
    finally:
        if writer is not None:
            writer.close()
        if checkpointer is not None:
            checkpointer.close()
        if lock is not None:
            lock.release()


def _tensorboard_writer(logdir: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError("`tensorboard=True` needs the tensorboardX package (no TensorFlow needed): "
                          "pip install tensorboardX") from e
    return SummaryWriter(logdir)


@functools.lru_cache(maxsize=32)
def _cached_multi_step(train_step, num_steps: int):
    """One compiled multi-step per ``(train_step, k)``: a loop of ``fit`` calls compiles it once."""
    return make_multi_step(train_step, num_steps)


def make_multi_step(train_step, num_steps: int):
    """``num_steps`` calls of ``train_step`` as one compiled ``lax.scan``.

    Returns ``multi(state, batches, key, first) -> (state, metrics)`` where ``batches``
    stacks the batches of steps ``first .. first + num_steps - 1`` on a new leading
    axis, step ``first + j`` uses ``fold_in(key, first + j)`` (as :func:`fit` does one
    step at a time) and every metric gets a leading ``[num_steps]`` axis. The state
    is donated.
    """
    _check_int("num_steps", num_steps, 1)

    def multi(state, batches, key, first):
        def body(s, xs):
            batch, i = xs
            return train_step(s, batch, jax.random.fold_in(key, i))
        return jax.lax.scan(body, state, (batches, first + jnp.arange(num_steps)))

    return jax.jit(multi, donate_argnums=(0,))


class NonFiniteError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter; ``step`` names the first bad step."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an int; got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}; got {value}.")


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _raise_nonfinite(what: str, step: int, checkpointer) -> None:
    where = ""
    if checkpointer is not None:
        checkpointer.wait()
        last = checkpointer.latest_step()
        where = (f" The latest checkpoint, step {last} in {checkpointer.directory}, is from before it and is kept."
                 if last is not None else " No checkpoint was written.")
    raise NonFiniteError(f"{what} at step {step}; training stopped (lower the learning rate, or look for "
                         f"NaN/inf in the data or the loss).{where}", step)


def _check_pending(pending: list, checkpointer) -> None:
    """Raises :class:`NonFiniteError` for the first step in ``pending`` with a non-finite loss or gradient.

    ``pending`` holds ``(first_step, loss, grad_norm)``; ``loss`` and ``grad_norm`` are
    scalars, ``[n]`` arrays of ``n`` consecutive steps from ``first_step``, or None.
    """
    values = jax.device_get([p[1:] for p in pending])
    for first, (loss, grad_norm) in zip([p[0] for p in pending], values):
        for name, v in (("loss", loss), ("gradient norm", grad_norm)):
            if v is None:
                continue
            flat = np.reshape(np.asarray(v), (np.shape(v)[0] if np.ndim(v) else 1, -1))
            bad = ~np.all(np.isfinite(flat), axis=1)
            if bad.any():
                j = int(np.argmax(bad))
                _raise_nonfinite(f"non-finite {name} ({float(flat[j][0])})", first + j, checkpointer)
    pending.clear()


def _schedule(start: int, num_steps: int, k: int, boundaries: list[int]):
    """``(first_step, n)`` dispatches covering ``[start, num_steps)``: ``n == k`` where a whole
    dispatch fits before the next multiple of any of ``boundaries`` (log, eval, save), else ``n == 1``."""
    step = start
    while step < num_steps:
        nxt = min([num_steps] + [(step // b + 1) * b for b in boundaries])
        n = k if k > 1 and nxt - step >= k else 1
        yield step, n
        step += n


def _fit(train_step, state, stream, *, num_steps, key, checkpointer, log_path, eval_fn, eval_every, log_every, mesh,
         desc, progress, steps_per_dispatch, prefetch, writer, chief):
    if mesh is not None:
        state = sharding_lib.replicate(state, mesh)

    start = int(state.step)
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state, quarantine=True)
        start = int(meta["step"])
        if meta.get("key") != ckpt_lib.key_to_json(key):
            raise ValueError("`key` differs from the key of the run being resumed in `workdir`; "
                             "use the same seed or a fresh workdir.")
        if log_path is not None:
            _truncate_log(log_path, start)
        if chief:
            print(f"{desc}: resumed from step {start} ({checkpointer.directory})", file=sys.stderr, flush=True)
    meta = {"key": ckpt_lib.key_to_json(key)}

    k = steps_per_dispatch
    multi = _cached_multi_step(train_step, k) if k > 1 else None
    boundaries = [log_every] + ([eval_every] if eval_fn is not None and eval_every else []) + \
                 ([checkpointer.save_every] if checkpointer is not None else [])

    def host_batch(item):
        first, n = item
        if n == 1:
            return first, n, stream(first)
        return first, n, jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                                      *[stream(first + j) for j in range(n)])

    def put(item):
        first, n, batch = item
        if mesh is not None:
            return first, n, sharding_lib.shard_batch(batch, mesh, batch_axis=0 if n == 1 else 1)
        return first, n, jax.device_put(batch)

    dispatches = sharding_lib.prefetch(map(host_batch, _schedule(start, num_steps, k, boundaries)), put, prefetch)

    history: list[dict] = []
    sums: dict[str, jax.Array] = {}
    pending: list = []  # (first step, loss, grad_norm) not yet checked for finiteness: checked before logs and saves
    count, timed, t_eval = 0, 0, 0.0  # eval time is excluded from steps/s
    compile_sec, bar = None, None
    t_last = time.perf_counter()
    try:
        for first, n, batch in dispatches:
            if n == 1:
                state, metrics = train_step(state, batch, jax.random.fold_in(key, first))
                step_sums = metrics
            else:
                state, metrics = multi(state, batch, key, first)
                step_sums = jax.tree.map(lambda m: jnp.sum(m, axis=0), metrics)
            pending.append((first, metrics.get("loss"), metrics.get("grad_norm")))
            sums = step_sums if not sums else jax.tree.map(jnp.add, sums, step_sums)
            count += n
            done = first + n
            if compile_sec is None:  # the first dispatch compiles: keep it out of the rate and the ETA
                jax.block_until_ready(metrics)
                now = time.perf_counter()
                compile_sec, t_last = now - t_last, now
                bar = tqdm(total=num_steps, initial=done, desc=desc, disable=not progress, dynamic_ncols=True)
            else:
                timed += n
                bar.update(n)
            log_now = done % log_every == 0 or done == num_steps
            eval_now = eval_fn is not None and ((eval_every and done % eval_every == 0) or done == num_steps)
            save_now = checkpointer is not None and checkpointer.due(done, force=done == num_steps)
            if log_now or eval_now or save_now:
                _check_pending(pending, checkpointer)
            if log_now:
                now = time.perf_counter()
                record = {k_: float(v) / count for k_, v in jax.device_get(sums).items()}
                record.update(step=done, time=time.time())
                if timed:
                    record["steps_per_sec"] = timed / max(now - t_last - t_eval, 1e-9)
                if not history:
                    record["compile_sec"] = compile_sec
                if eval_now:
                    record.update({f"eval/{k_}": float(v) for k_, v in eval_fn(state).items()})
                    now = time.perf_counter()
                history.append(record)
                _write_record(log_path, writer, record)
                bar.set_postfix({k_: f"{v:.4g}" for k_, v in record.items()
                                 if k_ in ("loss",) or k_.startswith("eval/")})
                sums, count, timed, t_last, t_eval = {}, 0, 0, now, 0.0
            elif eval_now:
                t0 = time.perf_counter()
                record = {"step": done, **{f"eval/{k_}": float(v) for k_, v in eval_fn(state).items()}}
                t_eval += time.perf_counter() - t0
                history.append(record)
                _write_record(log_path, writer, record)
            if save_now:
                # A finite loss and gradient can still give non-finite parameters (a huge learning rate).
                if not bool(_all_finite(state.params)):
                    _raise_nonfinite("non-finite parameters after the update", done - 1, checkpointer)
                checkpointer.save(done, state, meta, force=done == num_steps)
        _check_pending(pending, checkpointer)
    finally:
        if bar is not None:
            bar.close()
    return state, history


def _write_record(log_path, writer, record: dict) -> None:
    _append_log(log_path, record)
    if writer is not None:
        for k, v in record.items():
            if k not in ("step", "time") and isinstance(v, (int, float)) and math.isfinite(v):
                writer.add_scalar(k, v, record["step"])
        writer.flush()


def _json_safe(record: dict) -> dict:
    """Non-finite floats become null, so the log is strict JSON (``json.loads`` of other languages)."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}


def _append_log(path, record: dict) -> None:
    if path is not None:
        with open(path, "a") as f:
            f.write(json.dumps(_json_safe(record), allow_nan=False) + "\n")


def _truncate_log(path, step: int) -> None:
    """Drops log lines past ``step`` (written after the checkpoint a resumed run starts from)."""
    if os.path.exists(path):
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        with open(path, "w") as f:
            f.writelines(json.dumps(_json_safe(r), allow_nan=False) + "\n" for r in kept)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Reads a JSON-lines metrics log written by :func:`fit`.

    A torn last line (a run killed while writing it) is skipped with a warning;
    a bad line elsewhere raises ``ValueError`` naming the file and line.
    """
    with open(path) as f:
        lines = f.readlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1 and not line.endswith("\n"):
                warnings.warn(f"{os.fspath(path)}: skipped a torn last line ({line[:60]!r}).", stacklevel=2)
                continue
            raise ValueError(f"{os.fspath(path)}, line {i + 1}, is not JSON ({e.msg}): {line[:80]!r}") from None
    return out


def plot_metrics(path: str | os.PathLike, out_png: str | os.PathLike, keys: list[str] | None = None) -> str:
    """Plots metric curves against step from a metrics log into ``out_png``; returns its path."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's) is untouched

    records = read_metrics(path)
    if keys is None:
        keys = sorted({k for r in records for k in r} - {"step", "time", "steps_per_sec", "grad_norm", "compile_sec"})
    fig = Figure(figsize=(4 * max(len(keys), 1), 3))
    axes = fig.subplots(1, max(len(keys), 1), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in records if r.get(k) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o" if len(pts) == 1 else None)  # one point: visible as a marker
        ax.set_title(k)
        ax.set_xlabel("training step")
        ax.set_ylabel(k)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return os.fspath(out_png)
