"""Masks: which coordinates of ``x`` are observed.

Convention used across mamjax: a mask is a boolean array, ``True`` = observed
(the coordinate belongs to the observed subset ``S``), ``False`` = hidden
("?", masked, to be predicted). A *mask rate* is the fraction of coordinates
that are hidden.

Every function here is pure and jittable, and is written for one example so
that ``jax.vmap`` maps it over keys, rates or counts::

    keys = jax.random.split(key, 16)
    masks = jax.vmap(mask_by_rate, in_axes=(0, None, None))(keys, 784, 0.15)
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

Array = jax.Array
PRNGKey = jax.Array
Schedule = Callable[[Array], Array]
_SELECTION_UNROLL = 8  # scan unroll of selection_masks: 16-19 ms at D = 200 x 4,000 masks; full unroll 79 ms

__all__ = [
    "is_concrete",
    "traced_checks",
    "checked",
    "check_token_ids",
    "check_mask",
    "check_rate",
    "mask_by_rate",
    "mask_by_count",
    "selection_mask",
    "selection_masks",
    "random_ordering",
    "ordering_mask",
    "ordering_subsets",
    "cosine_schedule",
    "linear_schedule",
    "get_schedule",
    "hidden_count_table",
    "num_hidden_at",
    "num_subsets",
]


def is_concrete(x) -> bool:
    """Whether ``x`` holds values now (not a tracer inside ``jit`` / ``vmap`` / ``grad``)."""
    return not isinstance(x, jax.core.Tracer)


_is_concrete = is_concrete

# Value checks of the core run eagerly on concrete arrays. On traced ones they are skipped, unless
# the trace happens inside `traced_checks()`, where they become `checkify.check`s (functionalized by
# `checkify.checkify`; `checked(fn)` does both). Off by default: a check costs a reduction per call.
_TRACED = threading.local()


@contextlib.contextmanager
def traced_checks(enabled: bool = True):
    """Within this context, the value checks of traced arguments are emitted as ``checkify.check``.

    Every mamjax entry point that checks values through this module (token ids, rates, orderings,
    counts) then also checks them inside ``jit`` / ``vmap``; functionalize the traced function with
    ``checkify.checkify(fn, errors=checkify.user_checks)`` (or use :func:`checked`). The function must
    be *traced* inside the context (a jitted function first traced outside keeps its unchecked trace).
    """
    old = getattr(_TRACED, "on", False)
    _TRACED.on = bool(enabled)
    try:
        yield
    finally:
        _TRACED.on = old


def checked(fn: Callable, jit: bool = True) -> Callable:
    """``fn`` with mamjax's value checks active under tracing: a bad value raises, also inside ``jit``.

    Wraps ``fn`` in ``checkify.checkify`` (user checks) and, with ``jit``, compiles it; each call runs
    under :func:`traced_checks` and throws the first failed check as ``checkify.JaxRuntimeError``
    naming the argument. Use it to debug a jitted pipeline; the plain functions stay check-free
    under ``jit``.
    """
    functional = checkify.checkify(fn, errors=checkify.user_checks)
    if jit:
        functional = jax.jit(functional)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with traced_checks():
            err, out = functional(*args, **kwargs)
        err.throw()
        return out

    return wrapper


def _traced_check(ok, message: str) -> None:
    """``checkify.check(ok, message)`` when traced checks are on (see :func:`traced_checks`), else nothing."""
    if getattr(_TRACED, "on", False):
        checkify.check(jnp.all(ok), message)


def check_rate(rate, name: str = "rate") -> None:
    """Raises ValueError if a concrete ``rate`` lies outside [0, 1]."""
    if _is_concrete(rate):
        r = np.asarray(rate)
        if not np.issubdtype(r.dtype, np.floating) and not np.issubdtype(r.dtype, np.integer):
            raise TypeError(f"`{name}` must be a real number in [0, 1]; got dtype {r.dtype}.")
        if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r > 1):
            raise ValueError(f"`{name}` must lie in [0, 1]; got {rate!r}.")
    else:
        _traced_check((rate >= 0) & (rate <= 1), f"`{name}` must lie in [0, 1].")


def check_mask(mask, name: str = "mask", shape: tuple | None = None) -> None:
    """Raises a TypeError / ValueError naming ``name`` if ``mask`` is not boolean of ``shape``."""
    dtype = getattr(mask, "dtype", None)
    if dtype is None or dtype != jnp.bool_:
        raise TypeError(
            f"`{name}` must be a boolean array (True = observed); got dtype {dtype}."
            " Use `mask.astype(bool)` if it holds 0/1 values."
        )
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}; got {tuple(mask.shape)}.")


def check_token_ids(x, num_classes: int, name: str = "x") -> None:
    """Eager check that integer ids lie in ``[0, num_classes)`` (JAX gathers would clamp them silently).

    Raises TypeError for a non-integer ``x`` (static, also under ``jit``) and
    ValueError for out-of-range values when ``x`` is concrete; traced values are
    checked only under :func:`traced_checks` / :func:`checked` (``checkify``).
    """
    dtype = getattr(x, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.integer):
        raise TypeError(f"`{name}` must be an integer array of ids in [0, {num_classes}); got dtype {dtype}.")
    if _is_concrete(x) and np.size(x):
        v = np.asarray(x)
        lo, hi = int(v.min()), int(v.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"`{name}` must hold ids in [0, {num_classes}); got values in [{lo}, {hi}].")
    elif not _is_concrete(x):
        _traced_check((x >= 0) & (x < num_classes), f"`{name}` must hold ids in [0, {num_classes}).")


def _check_dim(d, name: str = "num_dims") -> int:
    if not isinstance(d, (int, np.integer)) or d < 1:
        raise ValueError(f"`{name}` must be a positive Python int (static); got {d!r}.")
    return int(d)


def mask_by_rate(key: PRNGKey, num_dims: int, rate) -> Array:
    """Independent Bernoulli mask: each coordinate is hidden with probability ``rate``.

    Args:
      key: PRNG key.
      num_dims: D, static.
      rate: scalar in [0, 1], may be traced (vmap over rates).

    Returns:
      ``[D] bool``, True = observed.
    """
    num_dims = _check_dim(num_dims)
    check_rate(rate)
    return jax.random.uniform(key, (num_dims,)) >= rate


def _check_count(num_dims, num_hidden) -> int:
    """Checked ``num_dims``; ``num_hidden`` an integer in [0, D] (eagerly, or by checkify when traced)."""
    num_dims = _check_dim(num_dims)
    if _is_concrete(num_hidden):
        n = np.asarray(num_hidden)
        if not np.issubdtype(n.dtype, np.integer):
            raise TypeError(f"`num_hidden` must be an integer; got dtype {n.dtype}.")
        if np.any(n < 0) or np.any(n > num_dims):
            raise ValueError(f"`num_hidden` must lie in [0, {num_dims}]; got {num_hidden!r}.")
    else:
        _traced_check((num_hidden >= 0) & (num_hidden <= num_dims), f"`num_hidden` must lie in [0, {num_dims}].")
    return num_dims


def mask_by_count(key: PRNGKey, num_dims: int, num_hidden) -> Array:
    """A uniformly random mask with exactly ``num_hidden`` hidden coordinates.

    Args:
      key: PRNG key.
      num_dims: D, static.
      num_hidden: integer in [0, D], may be traced.

    Returns:
      ``[D] bool``, True = observed, with ``sum(~mask) == num_hidden``.
    """
    num_dims = _check_count(num_dims, num_hidden)
    ordering = random_ordering(key, num_dims)
    return ordering_mask(ordering, num_dims - num_hidden)


def selection_mask(key: PRNGKey, num_dims: int, num_hidden) -> Array:
    """:func:`mask_by_count`'s distribution without a sort: selection sampling (Knuth's Algorithm S).

    Coordinate ``j`` is hidden with probability ``(num_hidden - c_j) / (D - j)``, ``c_j`` the number
    hidden before it; every subset of the size is equally likely and the count is exact (the
    probability reaches 1 or 0 once the remaining slots force it). One uniform per coordinate and a
    ``D``-step scan: on XLA's CPU backend a sort per mask (``jax.random.permutation``) cost 3.5x
    (D = 50) to 8x (D = 200) more for the ``D x 20`` masks of a cumulative estimate. Not the same
    masks as :func:`mask_by_count` for the same key; arguments and result as there.
    """
    num_dims = _check_count(num_dims, num_hidden)
    return selection_masks(jax.random.uniform(key, (num_dims,)), num_hidden)


def selection_masks(u: Array, num_hidden) -> Array:
    """The masks of :func:`selection_mask` from its uniforms ``u [..., D]`` in ``[0, 1)``, batched.

    ``num_hidden`` broadcasts against ``u.shape[:-1]`` (ints in [0, D]; not checked here). One scan
    over ``D``, every mask of the batch one lane of each step.
    """
    num_dims = u.shape[-1]
    need0 = jnp.broadcast_to(jnp.asarray(num_hidden, jnp.int32), u.shape[:-1])
    remaining = (num_dims - jnp.arange(num_dims)).astype(u.dtype)  # slots left at j, >= 1

    def step(count, xs):
        u_j, left = xs
        # need / left is exactly 1 (or 0) when the rest is forced, and u < 1 always: exact count.
        hide = u_j < (need0 - count).astype(u.dtype) / left
        return count + hide.astype(jnp.int32), hide

    _, hidden = jax.lax.scan(step, jnp.zeros(u.shape[:-1], jnp.int32), (jnp.moveaxis(u, -1, 0), remaining),
                             unroll=_SELECTION_UNROLL)
    return ~jnp.moveaxis(hidden, 0, -1)


def random_ordering(key: PRNGKey, num_dims: int) -> Array:
    """A uniformly random permutation sigma of ``range(D)``: ``[D] int32``."""
    num_dims = _check_dim(num_dims)
    return jax.random.permutation(key, num_dims).astype(jnp.int32)


def _check_ordering(ordering) -> None:
    if getattr(ordering, "ndim", None) != 1:
        raise ValueError(
            f"`ordering` must be a 1-D permutation of range(D); got shape {getattr(ordering, 'shape', None)}."
        )
    if not jnp.issubdtype(ordering.dtype, jnp.integer):
        raise TypeError(f"`ordering` must be an integer array; got dtype {ordering.dtype}.")
    if _is_concrete(ordering):  # eager only: a repeated or out-of-range id would scatter silently
        o = np.asarray(ordering)
        if not np.array_equal(np.sort(o), np.arange(o.shape[0])):
            raise ValueError(f"`ordering` must be a permutation of range({o.shape[0]}); got {o.tolist()[:10]}.")
    else:
        _traced_check(jnp.sort(ordering) == jnp.arange(ordering.shape[0], dtype=ordering.dtype),
                      f"`ordering` must be a permutation of range({ordering.shape[0]}).")


def ordering_mask(ordering: Array, num_observed) -> Array:
    """The subset sigma(<t) an ordering induces: its first ``num_observed`` positions observed.

    Args:
      ordering: ``[D] int`` permutation sigma (checked eagerly when concrete).
      num_observed: t in [0, D], may be traced (range checked eagerly when concrete).

    Returns:
      ``[D] bool``: ``mask[sigma[i]] = i < t``.
    """
    _check_ordering(ordering)
    (d,) = ordering.shape
    if _is_concrete(num_observed) and (np.any(np.asarray(num_observed) < 0) or np.any(np.asarray(num_observed) > d)):
        raise ValueError(f"`num_observed` must lie in [0, {d}]; got {num_observed!r}.")
    if not _is_concrete(num_observed):
        _traced_check((num_observed >= 0) & (num_observed <= d), f"`num_observed` must lie in [0, {d}].")
    ranks = jnp.zeros((d,), jnp.int32).at[ordering].set(jnp.arange(d, dtype=jnp.int32))
    return ranks < num_observed


def ordering_subsets(ordering: Array) -> Array:
    """All D + 1 nested subsets of an ordering: row t is sigma(<t).

    Returns:
      ``[D + 1, D] bool``; row 0 is all hidden, row D all observed.
    """
    _check_ordering(ordering)
    (d,) = ordering.shape
    return jax.vmap(ordering_mask, in_axes=(None, 0))(ordering, jnp.arange(d + 1))


# MaskGIT schedules: gamma(r) = fraction of tokens still hidden at progress r in [0, 1];
# gamma(0) = 1 (all hidden), gamma(1) = 0.


def cosine_schedule(ratio: Array) -> Array:
    """MaskGIT cosine schedule gamma(r) = cos(pi r / 2); ``ratio`` in [0, 1] (checked eagerly when concrete)."""
    check_rate(ratio, "ratio")
    return jnp.cos(jnp.pi / 2.0 * jnp.asarray(ratio, jnp.float32))


def linear_schedule(ratio: Array) -> Array:
    """Linear schedule gamma(r) = 1 - r; ``ratio`` in [0, 1] (checked eagerly when concrete)."""
    check_rate(ratio, "ratio")
    return 1.0 - jnp.asarray(ratio, jnp.float32)


_SCHEDULES = {"cosine": cosine_schedule, "linear": linear_schedule}


def get_schedule(name: str) -> Schedule:
    """Looks a schedule up by name: one of ``"cosine"``, ``"linear"``."""
    try:
        return _SCHEDULES[name]
    except KeyError:
        raise ValueError(f"`schedule` must be one of {sorted(_SCHEDULES)}; got {name!r}.") from None


@functools.lru_cache(maxsize=256)
def _count_table(num_steps: int, max_hidden: int, name: str) -> np.ndarray:
    n = np.arange(max_hidden + 1, dtype=np.int64)[:, None]  # [N0, 1]
    k = np.arange(1, num_steps + 1, dtype=np.int64)[None, :]  # step + 1, [1, T]
    if name == "linear":
        out = (n * (num_steps - k)) // num_steps
    else:
        out = np.floor(n * np.cos(np.pi * k / (2.0 * num_steps))).astype(np.int64)
        # The two ratios where cos(pi r / 2) is rational (Niven): exact in integers.
        out = np.where(3 * k == 2 * num_steps, n // 2, out)
        out = np.where(k == num_steps, 0, out)
    out = np.clip(out, 0, n).astype(np.int32)
    out.setflags(write=False)
    return out


def hidden_count_table(num_steps: int, max_hidden: int, schedule: str = "cosine") -> np.ndarray:
    """``table[N0, t] = floor(N0 * gamma((t + 1) / T))``, exactly, for every ``N0`` in ``[0, max_hidden]``.

    ``linear`` in integers; ``cosine`` in float64 with the ratios where ``cos(pi r / 2)`` is rational
    (r = 2/3 and r = 1) in integers (in float32, ``floor(n cos(pi / 3))`` gives ``n / 2 - 1`` for even
    ``n``). Checked against 50-digit arithmetic for all ``T <= 32``, ``N0 <= 256``
    (tests/test_maskgit_schedule.py).

    Returns:
      read-only ``[max_hidden + 1, T] int32`` numpy array, non-increasing in ``t``, 0 at ``t = T - 1``.
    """
    if isinstance(num_steps, bool):
        raise ValueError(f"`num_steps` must be a positive Python int (static); got {num_steps!r}.")
    num_steps = _check_dim(num_steps, "num_steps")
    if isinstance(max_hidden, bool) or not isinstance(max_hidden, (int, np.integer)) or max_hidden < 0:
        raise ValueError(f"`max_hidden` must be an int >= 0; got {max_hidden!r}.")
    if schedule not in _SCHEDULES:
        raise ValueError(f"`schedule` must be one of {sorted(_SCHEDULES)}; got {schedule!r}.")
    return _count_table(num_steps, int(max_hidden), schedule)


def num_hidden_at(step, num_steps: int, num_dims: int, schedule: Schedule | str = "cosine") -> Array:
    """Tokens the schedule leaves hidden after decoding step ``step`` (0-based) of ``num_steps``.

    ``floor(D * gamma((step + 1) / T))`` clipped to [0, D]; the last step leaves none. For the named
    schedules (``"cosine"``, ``"linear"`` or their functions) the count is exact
    (:func:`hidden_count_table`, looked up with a traceable ``step``); a custom ``gamma`` is
    evaluated in float32. A decoder that must reveal at least one token per step clips this to
    ``min(hidden_now - 1, .)`` itself, as MaskGIT does.

    Returns:
      int32 scalar in [0, D].
    """
    name = schedule if isinstance(schedule, str) else next(
        (k for k, v in _SCHEDULES.items() if v is schedule), None)
    if isinstance(schedule, str):
        schedule = get_schedule(schedule)
    num_dims = _check_dim(num_dims)
    num_steps = _check_dim(num_steps, "num_steps")
    if _is_concrete(step) and (np.any(np.asarray(step) < 0) or np.any(np.asarray(step) >= num_steps)):
        raise ValueError(f"`step` must lie in [0, {num_steps - 1}] (0-based, of `num_steps`); got {step!r}.")
    if not _is_concrete(step):
        _traced_check((step >= 0) & (step < num_steps), f"`step` must lie in [0, {num_steps - 1}].")
    if name is not None:
        counts = jnp.asarray(hidden_count_table(num_steps, num_dims, name)[num_dims])
        return counts[jnp.clip(jnp.asarray(step, jnp.int32), 0, num_steps - 1)]
    ratio = (jnp.asarray(step, jnp.float32) + 1.0) / num_steps
    n = jnp.floor(num_dims * schedule(ratio)).astype(jnp.int32)
    return jnp.clip(n, 0, num_dims)


def num_subsets(num_dims: int, num_hidden: int) -> int:
    """C(D, M): how many masks hide exactly M of D coordinates."""
    num_dims = _check_dim(num_dims)
    if isinstance(num_hidden, bool) or not isinstance(num_hidden, (int, np.integer)) or not 0 <= num_hidden <= num_dims:
        raise ValueError(f"`num_hidden` must be an int in [0, {num_dims}]; got {num_hidden!r}.")
    return math.comb(num_dims, num_hidden)
