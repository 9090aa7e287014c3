"""Figures for :mod:`mamjax.hvae`: image grids and per-layer sparsity / KL bars (matplotlib Figure objects; no backend switch)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["image_grid", "save_images", "save_layer_stats"]


def image_grid(images, rows: int | None = None, side: int | None = None, pad: int = 2,
               pad_value: float = 0.5) -> np.ndarray:
    """Tiles ``[N, D]`` (``D = side^2``) or ``[N, H, W]`` images into one array, separated by ``pad`` pixels.

    Returns ``[rows*H + (rows+1)*pad, cols*W + (cols+1)*pad]``: the separators (and the border) hold
    ``pad_value`` (0.5: mid grey between the white background 0 and the black ink 1), so neighbouring
    digits never merge.
    """
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"`pad` must be an int >= 0; got {pad!r}.")
    images = np.asarray(images, np.float32)
    if images.ndim == 2:
        side = side or int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(f"`images` rows of length {images.shape[1]} are not square; pass `side`.")
        images = images.reshape(-1, side, side)
    n, h, w = images.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value, np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top:top + h, left:left + w] = images[i]
    return grid


def save_images(path: str | os.PathLike, images, title: str = "", rows: int | None = None) -> str:
    """Writes an image grid (values in [0, 1], 1 = white ink shown black on white) to ``path``."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's inline) is untouched

    grid = image_grid(images, rows)
    fig = Figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return os.fspath(path)


def save_layer_stats(path: str | os.PathLike, results: dict, title: str = "") -> str:
    """Bar charts of ``zero_frac_l{i}`` (exactly-zero units) and ``kl_l{i}`` (nats) per layer."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend (e.g. a notebook's inline) is untouched

    layers = sorted(int(k[len("zero_frac_l"):]) for k in results if k.startswith("zero_frac_l"))
    fig = Figure(figsize=(8, 3))
    axes = fig.subplots(1, 2)
    axes[0].bar([f"z{i}" for i in layers], [results[f"zero_frac_l{i}"] for i in layers])
    axes[0].set_ylim(0, 1)
    axes[0].set_title("fraction of units exactly 0 (posterior)")
    axes[1].bar([f"z{i}" for i in layers], [results[f"kl_l{i}"] for i in layers], color="tab:orange")
    axes[1].set_title("KL per layer (nats)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return os.fspath(path)
