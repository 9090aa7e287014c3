"""Figures for attention models: glimpse paths drawn on images, test-error curves."""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mamjax.attention import glimpse as glimpse_lib
from mamjax.attention import model as model_lib

__all__ = ["plot_glimpse_paths", "plot_error_curves", "error_curve", "budget_curve", "plot_seed_curves"]


def plot_glimpse_paths(ram: model_lib.RAM, params: dict, images, key: jax.Array, path: str | os.PathLike, *,
                       labels: Sequence[int] | None = None, title: str = "") -> str:
    """Samples one trajectory per image from the prior and draws it (squares: the finest and
    coarsest glimpse windows; numbers: glimpse order). Title of each panel: predicted (true) class.

    Args:
      images: [N, S, S] uint8 or float images (N <= 16 is readable).
      path: output PNG.

    Returns:
      ``path``.
    """
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's inline) is untouched
    from matplotlib.patches import Rectangle

    c = ram.config
    x = np.asarray(images)
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    n = len(x)
    sample = jax.jit(lambda p, im, k: model_lib.rollout_batch(ram, {"model": p}, im, jnp.zeros(n, jnp.int32), k,
                                                              num_samples=1, sample_from="prior"))
    traj = sample(params["model"], jnp.asarray(x), key)
    if c.locations == "grid":
        paths = glimpse_lib.location_grid(c.image_size, c.grid_size)[np.asarray(traj.actions[:, 0])]
    else:  # Gaussian locations: the pixel each glimpse was centred on
        paths = np.asarray(model_lib.pixel_centres(traj.actions[:, 0], c.image_size))
    pred = np.asarray(jnp.argmax(traj.class_logits[:, 0], -1))
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(2 * cols, 2.1 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    colors = matplotlib.colormaps["viridis"](np.linspace(0, 1, c.num_glimpses))
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i >= n:
            continue
        ax.imshow(x[i], cmap="gray", vmin=0, vmax=1)
        pts = paths[i]
        ax.plot(pts[:, 1], pts[:, 0], "-", color="red", lw=1)
        for t, (r, col) in enumerate(pts):
            for s in (0, c.num_scales - 1):
                side = c.patch * 2 ** s
                ax.add_patch(Rectangle((col - side // 2 - 0.5, r - side // 2 - 0.5), side, side, fill=False,
                                       ec=colors[t], lw=1.5 if s == 0 else 0.5))
            ax.text(col, r, str(t + 1), color="yellow", fontsize=7, ha="center", va="center")
        ax.set_xlim(-0.5, c.image_size - 0.5)
        ax.set_ylim(c.image_size - 0.5, -0.5)
        truth = f" ({int(labels[i])})" if labels is not None else ""
        ax.set_title(f"{pred[i]}{truth}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return os.fspath(path)


def error_curve(records: list[dict], steps_per_epoch: int, key: str = "eval/error") -> dict[str, np.ndarray]:
    """Test error against epochs and training seconds from ``train.fit`` metric records.

    Seconds are cumulative *training* time, ``sum (steps in interval) / steps_per_sec``,
    so evaluation time is excluded (the first interval includes compilation).

    Returns:
      {"epoch": [n], "seconds": [n], "error": [n]} for the records holding ``key``.
    """
    seconds, last_step, out = 0.0, 0, {"epoch": [], "seconds": [], "error": []}
    for r in records:
        if "steps_per_sec" in r:
            seconds += (r["step"] - last_step) / max(r["steps_per_sec"], 1e-9)
            last_step = r["step"]
        if key in r:
            out["epoch"].append(r["step"] / steps_per_epoch)
            out["seconds"].append(seconds)
            out["error"].append(r[key])
    return {k: np.asarray(v) for k, v in out.items()}


def budget_curve(curve: list[dict], steps_per_epoch: int, key: str = "error") -> dict[str, np.ndarray]:
    """Converts the ``curve`` of :func:`mamjax.attention.training.fit_for_seconds` to the
    arrays of :func:`error_curve` ({"epoch", "seconds", "error"})."""
    return {"epoch": np.array([c["step"] / steps_per_epoch for c in curve]),
            "seconds": np.array([c["seconds"] for c in curve]), "error": np.array([c[key] for c in curve])}


def _error_axis(ax, xlabel: str, reference: dict[str, float] | None) -> None:
    """Log-scale test-error axis fitted to the data, with dotted reference lines (published errors, in percent).

    A reference outside the data's range would squash the curves into one band, so it becomes a
    legend entry ("off the axis: ...") instead of widening the axis. Ticks read as plain numbers.
    """
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    lo, hi = ax.get_ylim()  # autoscaled to the curves
    off = []
    for name, val in (reference or {}).items():
        if lo <= val <= hi:
            ax.axhline(val, ls=":", color="gray")
            ax.text(ax.get_xlim()[0], val, f" {name}", fontsize=7, va="bottom", color="gray")
        else:
            off.append(name if f"{val:g}%" in name else f"{name}: {val:g}%")
    ax.set_ylim(lo, hi)
    if off:  # a legend entry (the caller's legend is placed where it hides no curve)
        ax.plot([], [], ls=":", color="gray", label="off the axis: " + "; ".join(off))
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3, which="both")


def plot_error_curves(curves: dict[str, dict[str, np.ndarray]], path: str | os.PathLike, *,
                      title: str = "", reference: dict[str, float] | None = None) -> str:
    """Test error (%) against epochs and wall-clock seconds, one line per run.

    Args:
      curves: name -> output of :func:`error_curve`.
      reference: optional name -> published error in percent, drawn as horizontal lines.
    """
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's inline) is untouched

    fig = Figure(figsize=(10, 3.5))
    axes = fig.subplots(1, 2)
    for name, cur in curves.items():
        axes[0].plot(cur["epoch"], 100 * cur["error"], marker=".", label=name)
        axes[1].plot(cur["seconds"], 100 * cur["error"], marker=".", label=name)
    for ax, xl in zip(axes, ("epochs", "training seconds (CPU)")):
        _error_axis(ax, xl, reference)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return os.fspath(path)


def plot_seed_curves(curves: dict[str, list[tuple[np.ndarray, np.ndarray]]], path: str | os.PathLike, *,
                     xlabel: str, title: str = "", reference: dict[str, float] | None = None,
                     common_x: bool = True) -> str:
    """Test error (%) against one x axis (updates or seconds), mean over seeds with a min-max band.

    Args:
      curves: name -> one ``(x, error in [0, 1])`` pair of arrays per seed.
      xlabel: the x axis label, with its unit.
      reference: optional name -> published error in percent (horizontal dotted lines).
      common_x: the seeds share their x values (updates): draw mean and band; else (seconds)
        draw every seed as its own thin line.
    """
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's inline) is untouched

    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    for i, (name, runs) in enumerate(curves.items()):
        color = f"C{i}"
        if common_x:
            x = np.asarray(runs[0][0])
            err = 100 * np.stack([np.asarray(e) for _, e in runs])
            ax.plot(x, err.mean(0), marker=".", color=color, label=f"{name} (mean of {len(runs)})")
            ax.fill_between(x, err.min(0), err.max(0), color=color, alpha=0.15)
        else:
            for j, (x, e) in enumerate(runs):
                ax.plot(x, 100 * np.asarray(e), marker=".", ms=3, lw=1, color=color,
                        label=f"{name} ({len(runs)} seed{'s' if len(runs) != 1 else ''})" if j == 0 else None)
    _error_axis(ax, xlabel, reference)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return os.fspath(path)
