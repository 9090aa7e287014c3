"""Figures for :mod:`mamjax.hvae`: image grids and per-layer sparsity / KL bars (matplotlib, Agg)."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["image_grid", "save_images", "save_layer_stats"]


def image_grid(images, rows: int | None = None, side: int | None = None) -> np.ndarray:
    """Tiles ``[N, D]`` (``D = side^2``) or ``[N, H, W]`` images into one ``[rows*H, cols*W]`` array."""
    images = np.asarray(images, np.float32)
    if images.ndim == 2:
        side = side or int(round(np.sqrt(images.shape[1])))
        if side * side != images.shape[1]:
            raise ValueError(f"`images` rows of length {images.shape[1]} are not square; pass `side`.")
        images = images.reshape(-1, side, side)
    n, h, w = images.shape
    rows = rows or int(np.ceil(np.sqrt(n)))
    cols = int(np.ceil(n / rows))
    grid = np.ones((rows * h, cols * w), np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        grid[r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    return grid


def save_images(path: str | os.PathLike, images, title: str = "", rows: int | None = None) -> str:
    """Writes an image grid (values in [0, 1], 1 = white ink shown black on white) to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = image_grid(images, rows)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.4))
    ax.imshow(grid, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)


def save_layer_stats(path: str | os.PathLike, results: dict, title: str = "") -> str:
    """Bar charts of ``zero_frac_l{i}`` (exactly-zero units) and ``kl_l{i}`` (nats) per layer."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted(int(k[len("zero_frac_l"):]) for k in results if k.startswith("zero_frac_l"))
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    axes[0].bar([f"z{i}" for i in layers], [results[f"zero_frac_l{i}"] for i in layers])
    axes[0].set_ylim(0, 1)
    axes[0].set_title("fraction of units exactly 0 (posterior)")
    axes[1].bar([f"z{i}" for i in layers], [results[f"kl_l{i}"] for i in layers], color="tab:orange")
    axes[1].set_title("KL per layer (nats)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return os.fspath(path)
