"""The Ising target of the MaM paper (Liu et al., 2024) on an L x L periodic lattice.

Unnormalized log-density over spins ``x in {-1, +1}^D`` (``D = L * L``, site
``(r, c)`` at index ``r * L + c``)::

    log f(x) = x^T J x + b^T x,     J = coupling * A,     b = field * ones(D)

with ``coupling = 0.1`` and ``field = 0.2`` as in the paper's experiments. This is
the convention of the official code (PrincetonLIPS/MaM, ``LatticeIsingModel``:
``J = sigma * A`` with ``A`` the symmetric adjacency matrix of a circular
lattice, ``log f = (x @ J * x).sum(-1) + (b * x).sum(-1)``). Because ``A`` is
symmetric, ``x^T J x = 2 * coupling * sum_{bonds} x_i x_j``: **every lattice bond
is counted twice**. ``A[i, j]`` counts the bonds between sites i and j: each site
has one bond to its right and one to its lower neighbour (wrapping around). For
L >= 3 the entries are 0/1 (4 neighbours per site); for L = 2 the right and left
neighbours coincide, so ``A`` has entries 2 (a double bond, as a periodic 2 x 2
lattice really has) — every formula here treats L = 2 consistently with that.

The official code feeds models ``{0, 1}`` bits (``x = 2 * bits - 1``); use
:func:`bits_to_spins` / :func:`spins_to_bits`.

Exact references (float64 numpy): :func:`exact_log_partition` by enumeration for
``D <= 20`` and by a row-to-row transfer matrix for lattices with ``L <= 12``;
:func:`exact_log_probs` for enumeration sizes; :func:`mean_field`, the best factorized
approximation and its KL (the level a model reaches by learning one-site marginals only). Samples: :func:`gibbs_sample`
(jitted, ``lax.scan`` over sweeps, ``vmap`` over chains).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

__all__ = [
    "COUPLING",
    "FIELD",
    "bits_to_spins",
    "enumerate_spins",
    "exact_log_partition",
    "exact_log_probs",
    "gibbs_sample",
    "greedy_coloring",
    "ising_params",
    "lattice_adjacency",
    "log_f",
    "log_partition_enumeration",
    "log_partition_transfer",
    "mean_field",
    "spins_to_bits",
    "spins_to_index",
]

COUPLING = 0.1
FIELD = 0.2
MAX_ENUM_DIM = 20
MAX_TRANSFER_SIDE = 12


def lattice_adjacency(L: int, multi_edges: bool = False) -> np.ndarray:
    """Adjacency matrix of the L x L periodic (torus) lattice.

    As in the official MaM code (``igraph.Graph.Lattice([L, L], circular=True)
    .get_adjacency()``, checked against igraph 1.0): each edge once, entries 0/1,
    row sums 4 for ``L >= 3``. For ``L = 2`` a site's right and left neighbours
    coincide, so the official lattice has row sums 2; ``multi_edges=True`` counts
    both bonds instead (entries 2, row sums 4). For ``L >= 3`` both agree.

    Args:
      L: side length, ``L >= 2``.
      multi_edges: count the coinciding bonds of ``L = 2`` twice.

    Returns:
      float64 [L*L, L*L] symmetric matrix with a zero diagonal.
    """
    if isinstance(L, bool) or not isinstance(L, (int, np.integer)) or L < 2:
        raise ValueError(f"`L` must be an int >= 2; got {L!r}.")
    L = int(L)
    r, c = np.divmod(np.arange(L * L), L)
    B = np.zeros((L * L, L * L))
    np.add.at(B, (r * L + c, r * L + (c + 1) % L), 1.0)
    np.add.at(B, (r * L + c, ((r + 1) % L) * L + c), 1.0)
    A = B + B.T
    return A if multi_edges else np.minimum(A, 1.0)


def ising_params(L: int, coupling: float = COUPLING, field: float = FIELD) -> tuple[np.ndarray, np.ndarray]:
    """The MaM Ising target: ``J = coupling * lattice_adjacency(L)``, ``b = field * ones``.

    Returns:
      (J float64 [D, D], b float64 [D]) with ``D = L * L``.
    """
    return coupling * lattice_adjacency(L), np.full(int(L) * int(L), float(field))


def log_f(x, J, b):
    """Unnormalized log-density ``x^T J x + b^T x`` of spins.

    Args:
      x: [..., D] spins in {-1, +1} (any real dtype; numpy or jax).
      J: [D, D] couplings.
      b: [D] fields.

    Returns:
      [...] log f(x) (jax array; float64 only if x64 is enabled).
    """
    _check_values(x, (-1, 1), "x", "spins in {-1, +1} (use bits_to_spins for 0/1 bits)")
    x = jnp.asarray(x, jnp.result_type(float))
    J, b = jnp.asarray(J, x.dtype), jnp.asarray(b, x.dtype)
    _check_params(J, b, x.shape[-1])
    return jnp.einsum("...i,ij,...j->...", x, J, x) + x @ b


def _check_values(x, allowed: tuple, name: str, what: str) -> None:
    """Eager check that a concrete ``x`` holds only ``allowed`` values (skipped when traced)."""
    if isinstance(x, jax.core.Tracer):
        return
    v = np.asarray(x)
    if v.size and not np.all(np.isin(v, allowed)):
        bad = np.unique(v[~np.isin(v, allowed)])[:5].tolist()
        raise ValueError(f"`{name}` must hold {what}; got values {bad}.")


def bits_to_spins(bits):
    """Maps {0, 1} to {-1, +1}: ``2 * bits - 1`` (keeps numpy/jax and the dtype family).

    Values are checked eagerly when concrete (not under ``jit``)."""
    _check_values(bits, (0, 1), "bits", "bits in {0, 1}")
    return 2 * bits - 1


def spins_to_bits(x):
    """Maps {-1, +1} to {0, 1}: ``(x + 1) // 2``; values checked eagerly when concrete."""
    _check_values(x, (-1, 1), "x", "spins in {-1, +1}")
    return (x + 1) // 2


def enumerate_spins(D: int) -> np.ndarray:
    """All ``2^D`` spin configurations, int8 [2^D, D], in binary counting order.

    Row ``k`` has spin ``+1`` at site ``i`` iff bit ``D-1-i`` of ``k`` is set
    (site 0 is the most significant bit, like ``itertools.product([-1, 1], repeat=D)``).
    """
    if not isinstance(D, (int, np.integer)) or not 1 <= D <= MAX_ENUM_DIM:
        raise ValueError(f"`D` must be an int in [1, {MAX_ENUM_DIM}] for enumeration; got {D!r}.")
    return _spins_of(np.arange(2 ** int(D)), int(D))


def _spins_of(k: np.ndarray, D: int) -> np.ndarray:
    bits = (k[:, None] >> np.arange(D - 1, -1, -1)) & 1
    return (2 * bits - 1).astype(np.int8)


def spins_to_index(x) -> np.ndarray:
    """Inverse of :func:`enumerate_spins`: [..., D] spins in {-1, +1} -> int64 [...] row indices."""
    _check_values(x, (-1, 1), "x", "spins in {-1, +1}")
    bits = (np.asarray(x) > 0).astype(np.int64)
    D = bits.shape[-1]
    if D > 62:
        raise ValueError(f"`x` has D = {D} > 62 sites; indices would overflow int64.")
    return bits @ (1 << np.arange(D - 1, -1, -1, dtype=np.int64))


def _check_params(J, b, D=None):
    if J.ndim != 2 or J.shape[0] != J.shape[1]:
        raise ValueError(f"`J` must be a square [D, D] matrix; got shape {tuple(J.shape)}.")
    if b.shape != (J.shape[0],):
        raise ValueError(f"`b` must have shape ({J.shape[0]},) to match `J`; got {tuple(b.shape)}.")
    if D is not None and D != J.shape[0]:
        raise ValueError(f"`x` has {D} sites but `J` is {tuple(J.shape)}.")


def _as_params(J, b) -> tuple[np.ndarray, np.ndarray]:
    J, b = np.asarray(J, np.float64), np.asarray(b, np.float64)
    _check_params(J, b)
    return J, b


def _log_f_np(x: np.ndarray, J: np.ndarray, b: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.einsum("ni,ni->n", x @ J, x) + x @ b


def log_partition_enumeration(J, b, chunk_size: int = 1 << 15) -> float:
    """``log Z = log sum_x exp(x^T J x + b^T x)`` by brute force over all ``2^D`` states.

    Vectorized over chunks of ``chunk_size`` states, accumulated with ``logsumexp``
    in float64. Requires ``D <= 20`` (about a second at D = 20).
    """
    J, b = _as_params(J, b)
    D = J.shape[0]
    if D > MAX_ENUM_DIM:
        raise ValueError(f"`J` has D = {D} > {MAX_ENUM_DIM} sites: too many states to enumerate.")
    partial = []
    for start in range(0, 2 ** D, chunk_size):
        x = _spins_of(np.arange(start, min(start + chunk_size, 2 ** D)), D)
        partial.append(logsumexp(_log_f_np(x, J, b)))
    return float(logsumexp(np.asarray(partial)))


def exact_log_probs(J, b) -> tuple[np.ndarray, np.ndarray]:
    """Every state with its exact normalized log-probability (``D <= 20``).

    Returns:
      (states int8 [2^D, D] in :func:`enumerate_spins` order, log_probs float64 [2^D]).
    """
    J, b = _as_params(J, b)
    states = enumerate_spins(J.shape[0])
    logits = _log_f_np(states, J, b)
    return states, logits - logsumexp(logits)


def log_partition_transfer(J, b) -> float:
    """``log Z`` of a periodic L x L lattice model by a row-to-row transfer matrix.

    Site ``(r, c)`` is index ``r * L + c``. ``J`` may have any values inside a row
    and between vertically adjacent rows (periodically), and must be zero between
    rows further apart; ``b`` is arbitrary. With ``s_r`` the spins of row ``r``::

        log f(x) = sum_r [ s_r^T J_rr s_r + b_r^T s_r + s_r^T J_{r,r+1} s_{r+1}
                           + s_{r+1}^T J_{r+1,r} s_r ]

    (for L = 2 the (r+1, r) blocks are the (r, r+1) blocks of the other row, so
    only ``J_{r,r+1}`` is kept there), and ``Z = trace(T_0 T_1 ... T_{L-1})`` with
    ``T_r[s, t] = exp(phi_r(s) + psi_r(s, t))`` over the ``2^L`` row states. The
    product is computed in float64 with a running log-scale (each factor divided
    by its maximum), so it cannot overflow. Cost ``L * 8^L`` flops: instant for
    L <= 8, a few seconds at L = 10, about a minute at L = 12.
    """
    J, b = _as_params(J, b)
    D = J.shape[0]
    L = math.isqrt(D)
    if L * L != D or L < 2:
        raise ValueError(f"`J` must be [L*L, L*L] for a square lattice with L >= 2; got {J.shape}.")
    if L > MAX_TRANSFER_SIDE:
        raise ValueError(f"`J` is a {L}x{L} lattice; the transfer matrix is limited to L <= {MAX_TRANSFER_SIDE}.")
    blocks = J.reshape(L, L, L, L).transpose(0, 2, 1, 3)  # blocks[r, r'] = J_{r r'} [L, L]
    rows = np.arange(L)
    dist = np.minimum((rows[:, None] - rows[None, :]) % L, (rows[None, :] - rows[:, None]) % L)
    if np.any(blocks[dist > 1] != 0):
        raise ValueError("`J` couples rows that are not adjacent on the periodic lattice; "
                         "the transfer matrix needs a nearest-row structure (use enumeration).")
    S = _spins_of(np.arange(2 ** L), L).astype(np.float64)  # [2^L, L]
    log_scale = 0.0
    P = None
    for r in range(L):
        nxt = (r + 1) % L
        phi = np.einsum("si,ij,sj->s", S, blocks[r, r], S) + S @ b[r * L:(r + 1) * L]
        inter = blocks[r, nxt] if L == 2 else blocks[r, nxt] + blocks[nxt, r].T
        log_T = phi[:, None] + S @ inter @ S.T
        m = log_T.max()
        T = np.exp(log_T - m)
        log_scale += m
        P = T if P is None else P @ T
        s = np.abs(P).max()
        P /= s
        log_scale += math.log(s)
    return float(math.log(np.trace(P)) + log_scale)


def exact_log_partition(J, b, method: str = "auto") -> float:
    """Exact ``log Z`` in float64.

    Args:
      J: [D, D] couplings. b: [D] fields.
      method: "enumeration" (D <= 20), "transfer" (square periodic lattice with
        nearest-row couplings, L <= 12), or "auto": enumeration if D <= 16, else
        the transfer matrix when ``J`` has the lattice structure, else enumeration
        if D <= 20.

    Returns:
      log Z as a Python float.
    """
    if method == "enumeration":
        return log_partition_enumeration(J, b)
    if method == "transfer":
        return log_partition_transfer(J, b)
    if method == "auto":
        D = np.shape(J)[0]
        if D <= 16:
            return log_partition_enumeration(J, b)
        try:
            return log_partition_transfer(J, b)
        except ValueError:
            if D <= MAX_ENUM_DIM:  # not a nearest-row lattice model, but still small enough
                return log_partition_enumeration(J, b)
            raise
    raise ValueError(f"`method` must be one of ('auto', 'enumeration', 'transfer'); got {method!r}.")


def mean_field(J, b, log_z: float | None = None, *, num_iters: int = 2000, damping: float = 0.5,
               tol: float = 1e-12) -> tuple[np.ndarray, float | None]:
    """The best factorized approximation of the target: ``min_q KL(q || f / Z)`` over product q.

    ``q(x) = prod_i (1 + m_i x_i) / 2`` has ``E_q[x^T J x] = m^T J m + sum_i J_ii (1 - m_i^2)``,
    so ``KL(q || p) = -H(q) - E_q[log f] + log Z`` is closed-form; its stationary points solve
    ``m = tanh(2 (J - diag J) m + b)`` (J symmetric), found by damped fixed-point iteration from
    ``m = tanh(b)``. A reference for models of the target: a model that learned only the
    one-site marginals scores no better than this KL.

    Args:
      J: [D, D] symmetric couplings. b: [D] fields.
      log_z: exact log Z (e.g. :func:`exact_log_partition`); None: the KL is not computed.
      num_iters, damping, tol: the fixed-point iteration's budget, step ``(1 - damping)`` and
        stopping tolerance on ``max |m_new - m|``.

    Returns:
      ``(m [D] float64, KL in nats or None)``.
    """
    J, b = _as_params(J, b)
    if not 0.0 <= damping < 1.0:
        raise ValueError(f"`damping` must be in [0, 1); got {damping!r}.")
    if not np.allclose(J, J.T):
        raise ValueError("`J` must be symmetric.")
    off = J - np.diag(np.diag(J))
    m = np.tanh(b)
    for _ in range(num_iters):
        m_new = damping * m + (1.0 - damping) * np.tanh(2.0 * off @ m + b)
        done = np.max(np.abs(m_new - m)) < tol
        m = m_new
        if done:
            break
    if log_z is None:
        return m, None
    p = np.clip((1.0 + m) / 2.0, 1e-300, 1.0)
    q = np.clip((1.0 - m) / 2.0, 1e-300, 1.0)
    entropy = -np.sum(p * np.log(p) + q * np.log(q))
    e_log_f = m @ off @ m + np.sum(np.diag(J)) + b @ m
    return m, float(-entropy - e_log_f + log_z)


def greedy_coloring(J) -> np.ndarray:
    """Colors sites so that no two coupled sites share a color (greedy, in site order).

    Sites of one color are conditionally independent given the others, so a Gibbs
    sweep can update them together. The periodic lattice gets the 2-color
    checkerboard for even L and a few more colors for odd L.

    Returns:
      int32 [D] color of each site, colors 0..C-1.
    """
    J = np.asarray(J)
    coupled = (J != 0) | (J.T != 0)
    np.fill_diagonal(coupled, False)
    colors = np.full(J.shape[0], -1, np.int32)
    for i in range(J.shape[0]):
        used = set(colors[coupled[i]].tolist())
        colors[i] = next(c for c in range(J.shape[0]) if c not in used)
    return colors


@functools.partial(jax.jit, static_argnames=("num_samples", "num_sweeps", "num_colors"))
def _gibbs(key, W, b, colors, init, num_samples, num_sweeps, num_colors):
    # log p(x_i = s | rest) = s * h_i + const with h_i = sum_j W_ij x_j + b_i, W = J + J^T off-diagonal,
    # so P(x_i = +1 | rest) = sigmoid(2 h_i). Sites of one color are updated together.
    # Each site is resampled exactly once per sweep, so one uniform per site per sweep suffices.
    def sweep(x, key):
        u = jax.random.uniform(key, x.shape)

        def update_color(x, color):
            h = W @ x + b
            new = jnp.where(u < jax.nn.sigmoid(2.0 * h), 1.0, -1.0)
            return jnp.where(colors == color, new, x), None

        x, _ = jax.lax.scan(update_color, x, jnp.arange(num_colors))
        return x, None

    def chain(key, x0):
        x, _ = jax.lax.scan(sweep, x0, jax.random.split(key, num_sweeps))
        return x

    return jax.vmap(chain)(jax.random.split(key, num_samples), init)


def gibbs_sample(key, J, b, num_samples: int, num_sweeps: int, *, method: str = "checkerboard",
                 init=None) -> jax.Array:
    """Independent Gibbs chains targeting ``p(x) ∝ exp(x^T J x + b^T x)``.

    Each of ``num_samples`` chains starts from ``init`` (default: independent
    spins with ``P(+1) = sigmoid(2 b)``, the official code's initial distribution)
    and runs ``num_sweeps`` full sweeps; the final states are returned. A sweep
    visits every site once:

    * "checkerboard": sites grouped by :func:`greedy_coloring` (the checkerboard
      for even L, a few colors for odd L) and each group resampled in parallel;
    * "sequential": one site at a time in index order (systematic scan).

    Args:
      key: PRNG key.
      J: [D, D] couplings (concrete: the coloring is computed from its zeros).
      b: [D] fields.
      num_samples: number of chains (vmapped).
      num_sweeps: sweeps per chain (``lax.scan``).
      method: "checkerboard" or "sequential".
      init: optional [num_samples, D] starting spins in {-1, +1}.

    Returns:
      float32 [num_samples, D] spins in {-1, +1}.
    """
    J, b = _as_params(J, b)
    D = J.shape[0]
    for arg, v in (("num_samples", num_samples), ("num_sweeps", num_sweeps)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{arg}` must be a positive int; got {v!r}.")
    if method == "checkerboard":
        colors = greedy_coloring(J)
    elif method == "sequential":
        colors = np.arange(D, dtype=np.int32)
    else:
        raise ValueError(f"`method` must be 'checkerboard' or 'sequential'; got {method!r}.")
    init_key, key = jax.random.split(key)
    if init is None:
        p_up = jax.nn.sigmoid(2.0 * jnp.asarray(b, jnp.float32))
        init = jnp.where(jax.random.uniform(init_key, (num_samples, D)) < p_up[None, :], 1.0, -1.0)
    init = jnp.asarray(init, jnp.float32)
    if init.shape != (num_samples, D):
        raise ValueError(f"`init` must have shape ({num_samples}, {D}); got {tuple(init.shape)}.")
    W = J + J.T
    np.fill_diagonal(W, 0.0)
    return _gibbs(key, jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32), jnp.asarray(colors),
                  init, num_samples=int(num_samples), num_sweeps=int(num_sweeps),
                  num_colors=int(colors.max()) + 1)
