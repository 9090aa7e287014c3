"""The one unmasking schedule of MaskGIT decoding, naive and ESS alike, computed exactly on the host.

After decoding step ``t`` (0-based) of ``T``, ``floor(N0 * gamma((t + 1) / T))`` of the ``N0``
tokens that were hidden at the start stay hidden (TimeVQVAE's ``mask_len``; no "reveal at least
one token per step" clip, as in the official code). Naive decoding, critical reverse sampling and
critical resampling all read this count from :func:`hidden_count_table`, so a comparison of the
samplers runs both on the same schedule.

The counts are exact: ``linear`` in integers, ``(N0 (T - t - 1)) // T``; ``cosine`` in float64 with
the two ratios where ``cos(pi r / 2)`` is rational (Niven's theorem: ``r = 2/3`` gives exactly 1/2,
``r = 1`` gives 0) computed in integers. (In float32, ``floor(n cos(pi / 3))`` gives ``n / 2 - 1``
for even ``n``.) ``tests/test_maskgit_schedule.py`` checks every ``T <= 32``, ``N0 <= 256``
against 50-digit arithmetic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import masks as masks_lib

Array = jax.Array

SCHEDULES = ("cosine", "linear")

__all__ = ["SCHEDULES", "hidden_counts", "hidden_count_table", "num_hidden"]


def hidden_counts(num_steps: int, num_initial_hidden: int, schedule: str = "cosine") -> np.ndarray:
    """``[T] int``: tokens still hidden after each step, for one ``N0`` (see the module docstring)."""
    return hidden_count_table(num_steps, num_initial_hidden, schedule)[num_initial_hidden]


# The exact table is the core's (one implementation for every decoder); its checks name each argument.
hidden_count_table = masks_lib.hidden_count_table


def num_hidden(step: Array, num_steps: int, num_initial_hidden: Array, seq_len: int,
               schedule: str = "cosine") -> Array:
    """Traceable lookup of :func:`hidden_count_table`: ``[B] int32`` hidden after ``step``.

    Args:
      step: int scalar in ``[0, T)`` (traced inside the decoding loop).
      num_steps: T (static).
      num_initial_hidden: ``[B] int`` N0 per row, in ``[0, seq_len]``.
      seq_len: L (static), the table's largest N0.
      schedule: ``"cosine"`` or ``"linear"``.
    """
    table = jnp.asarray(hidden_count_table(num_steps, seq_len, schedule))
    return table[jnp.clip(num_initial_hidden, 0, seq_len), jnp.clip(step, 0, num_steps - 1)]
