"""Progress bars: the one on/off rule that :func:`mamjax.train.fit` and the long evaluation phases share.

A bar shows on process 0 unless ``CI`` is set or the caller says otherwise; in a notebook
``tqdm.auto`` draws a widget when ipywidgets is installed (the ``notebook`` extra) and falls back
to text silently otherwise. Evaluation loops wrap their batches::

    for chunk in progress.bar(chunks, desc="eval nll"):
        ...

The bar only reports; it never changes which numbers are computed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm.auto import tqdm

__all__ = ["enabled", "bar"]


def enabled(progress: bool | None = None) -> bool:
    """Whether to draw a bar: ``progress`` if given, else not under ``CI``; never off process 0."""
    if progress is None:
        progress = not os.environ.get("CI")
    if not progress:
        return False
    import jax

    return jax.process_index() == 0


def bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "",
        progress: bool | None = None, leave: bool = False, **kwargs) -> tqdm:
    """A ``tqdm`` bar over ``iterable`` (or a manual one of ``total`` steps), off where :func:`enabled` says.

    Args:
      iterable: what to iterate over; None for a bar updated by hand (``.update(n)``).
      total: number of steps (default: ``len(iterable)`` where it has one).
      desc: the phase's name, e.g. ``"eval nll"``.
      progress: force the bar on or off (default: :func:`enabled`).
      leave: keep the finished bar on screen (default: clear it, as evaluation bars
        sit between training-log lines).
      kwargs: passed to ``tqdm``.
    """
    if total is not None and (isinstance(total, bool) or int(total) != total or total < 0):
        raise ValueError(f"total must be a non-negative integer or None, got {total!r}")
    return tqdm(iterable, total=total, desc=desc, disable=not enabled(progress), leave=leave,
                dynamic_ncols=True, **kwargs)
