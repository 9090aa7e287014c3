"""Training: one pure step shape for every method, and a plain loop around it.

``make_train_step(loss_fn, optimizer)`` returns the jitted pure step
``(state, batch, key) -> (state, metrics)``; ``fit`` is the loop
data -> step -> metrics -> checkpoint -> eval, with a tqdm bar and a JSON-lines
metrics log. Batches and per-step keys are pure functions of the step number
(``stream(step)``, ``fold_in(key, step)``), so a run killed and restarted with the
same command resumes from its last checkpoint and ends bit-identical.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from mamjax import checkpoint as ckpt_lib
from mamjax import sharding as sharding_lib

__all__ = ["TrainState", "make_train_step", "fit", "read_metrics", "plot_metrics"]

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
        async_checkpoint: bool = True) -> tuple[TrainState, list[dict]]:
    """Runs ``train_step`` until ``state.step == num_steps``, resuming from ``workdir`` if possible.

    Args:
      train_step: from :func:`make_train_step`.
      state: the initial state (also the template for restoring).
      stream: ``stream(step) -> batch`` (e.g. :class:`mamjax.data.stream.BatchStream`).
      num_steps: total number of steps of the run (not of this call).
      key: base PRNG key; step ``i`` uses ``fold_in(key, i)``.
      workdir: if set, Orbax checkpoints go to ``workdir/checkpoints`` (every
        ``save_every`` steps and at the end, keeping ``keep``) and metrics to
        ``workdir/metrics.jsonl``; an existing checkpoint is restored first.
      eval_fn: ``eval_fn(state) -> dict`` run every ``eval_every`` steps and at the end.
      log_every: steps between metric logs (metrics are means over the interval).
      mesh: a :func:`mamjax.sharding.data_mesh`; batches sharded, state replicated.
      progress: show a tqdm bar (default: unless ``CI`` is set).

    Returns:
      ``(state, history)``: the final state and the list of logged metric dicts.
    """
    if num_steps < 0:
        raise ValueError(f"`num_steps` must be >= 0; got {num_steps}.")
    if log_every < 1:
        raise ValueError(f"`log_every` must be >= 1; got {log_every}.")
    if progress is None:
        progress = not os.environ.get("CI")
    checkpointer, log_path = None, None
    if workdir is not None:
        os.makedirs(workdir, exist_ok=True)
        checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, "checkpoints"), save_every=save_every,
                                             keep=keep, async_save=async_checkpoint)
        log_path = os.path.join(workdir, "metrics.jsonl")
    if mesh is not None:
        state = sharding_lib.replicate(state, mesh)

    start = int(state.step)
    if checkpointer is not None and checkpointer.latest_step() is not None:
        state, meta = checkpointer.restore(state)
        start = int(meta["step"])
        if meta.get("key") != ckpt_lib.key_to_json(key):
            raise ValueError("`key` differs from the key of the run being resumed in `workdir`; "
                             "use the same seed or a fresh workdir.")
        if log_path is not None:
            _truncate_log(log_path, start)
    meta = {"key": ckpt_lib.key_to_json(key)}

    history: list[dict] = []
    sums: dict[str, jax.Array] = {}
    count, t_last, t_eval = 0, time.perf_counter(), 0.0  # eval time is excluded from steps/s
    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=not progress, dynamic_ncols=True)
    try:
        for step in range(start, num_steps):
            batch = stream(step)
            if mesh is not None:
                batch = sharding_lib.shard_batch(batch, mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(key, step))
            sums = metrics if not sums else jax.tree.map(jnp.add, sums, metrics)
            count += 1
            done = step + 1
            if done % log_every == 0 or done == num_steps:
                now = time.perf_counter()
                record = {k: float(v) / count for k, v in jax.device_get(sums).items()}
                record.update(step=done, steps_per_sec=count / max(now - t_last - t_eval, 1e-9), time=time.time())
                if eval_fn is not None and ((eval_every and done % eval_every == 0) or done == num_steps):
                    record.update({f"eval/{k}": float(v) for k, v in eval_fn(state).items()})
                    now = time.perf_counter()
                history.append(record)
                _append_log(log_path, record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k in ("loss",) or k.startswith("eval/")})
                sums, count, t_last, t_eval = {}, 0, now, 0.0
            elif eval_fn is not None and eval_every and done % eval_every == 0:
                t0 = time.perf_counter()
                record = {"step": done, **{f"eval/{k}": float(v) for k, v in eval_fn(state).items()}}
                t_eval += time.perf_counter() - t0
                history.append(record)
                _append_log(log_path, record)
            if checkpointer is not None:
                checkpointer.save(done, state, meta, force=done == num_steps)
            bar.update(1)
    finally:
        bar.close()
        if checkpointer is not None:
            checkpointer.close()
    return state, history


def _append_log(path, record: dict) -> None:
    if path is not None:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _truncate_log(path, step: int) -> None:
    """Drops log lines past ``step`` (written after the checkpoint a resumed run starts from)."""
    if os.path.exists(path):
        kept = [r for r in read_metrics(path) if r.get("step", 0) <= step]
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Reads a JSON-lines metrics log written by :func:`fit`."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_metrics(path: str | os.PathLike, out_png: str | os.PathLike, keys: list[str] | None = None) -> str:
    """Plots metric curves against step from a metrics log into ``out_png``; returns its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(path)
    if keys is None:
        keys = sorted({k for r in records for k in r} - {"step", "time", "steps_per_sec", "grad_norm"})
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4 * max(len(keys), 1), 3), squeeze=False)
    for ax, k in zip(axes[0], keys):
        pts = [(r["step"], r[k]) for r in records if k in r]
        if pts:
            ax.plot(*zip(*pts))
        ax.set_title(k)
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return os.fspath(out_png)
