"""The few Flax NNX modules reused across mamjax methods, and their pure form.

Modules are written in Flax NNX (the API the Flax docs recommend for new code,
https://flax.readthedocs.io), but what algorithms and the training loop see is a
pure pair: ``params = init`` and ``apply(params, *inputs) -> outputs``, made with
:func:`functional` (``nnx.split`` / ``nnx.merge`` at the jit boundary). Modules
with mutable state (batch norm statistics) use :func:`functional_with_state`,
whose ``apply(params, state, *inputs) -> (outputs, new_state)``.

Accelerator paths: self-attention runs through :func:`jax.nn.dot_product_attention`
(:func:`fused_attention`; XLA on CPU, cuDNN flash attention on GPU where it applies),
and every module takes ``dtype`` (e.g. ``jnp.bfloat16``): the computation runs in
that dtype while the parameters stay float32 (``param_dtype``) and the module's
final output is float32, so losses and log-probabilities are computed at full
precision. ``dtype=None`` (the default) computes in float32, as before.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mamjax import masks as masks_lib

Array = jax.Array
Params = Any

__all__ = [
    "MLP",
    "ResidualMLP",
    "TransformerEncoder",
    "functional",
    "functional_with_state",
    "fused_attention",
]


def functional(module: nnx.Module, method: str | None = None) -> tuple[Callable[..., Any], Params]:
    """Splits a stateless NNX module into ``(apply, params)``.

    ``apply(params, *args, **kwargs)`` is a pure function: it merges a fresh copy
    of the module with ``params`` and calls it (or its ``method``, e.g.
    ``"leave_one_out"``). Jit, grad and vmap it freely.
    """
    if method is not None and not callable(getattr(module, method, None)):
        raise ValueError(f"`method` must name a method of {type(module).__name__}; got {method!r}.")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def apply(params, *args, **kwargs):
        model = nnx.merge(graphdef, params, rest)
        return (model if method is None else getattr(model, method))(*args, **kwargs)

    return apply, params


def functional_with_state(module: nnx.Module) -> tuple[Callable[..., Any], Params, Params]:
    """Splits an NNX module with non-parameter state (e.g. ``nnx.BatchStat``).

    Returns ``(apply, params, state)`` with
    ``apply(params, state, *args, **kwargs) -> (outputs, new_state)``.
    """
    graphdef, params, state = nnx.split(module, nnx.Param, ...)

    def apply(params, state, *args, **kwargs):
        # copy=True: fresh Variables; otherwise merge reuses (and, eagerly, mutates) the caller's
        # state, and batch norm raises a TraceContextError under jax.grad.
        model = nnx.merge(graphdef, params, state, copy=True)
        out = model(*args, **kwargs)
        _, _, new_state = nnx.split(model, nnx.Param, ...)
        return out, new_state

    return apply, params, state


def _activation(name: str) -> Callable[[Array], Array]:
    acts = {"relu": jax.nn.relu, "gelu": jax.nn.gelu, "tanh": jnp.tanh, "silu": jax.nn.silu,
            "softplus": jax.nn.softplus}
    if name not in acts:
        raise ValueError(f"`activation` must be one of {sorted(acts)}; got {name!r}.")
    return acts[name]


def _check_sizes(**sizes) -> None:
    """ValueError naming the first size that is not a positive int (None means "default")."""
    for name, v in sizes.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"`{name}` must be a positive int; got {v!r}.")


def _check_dtype(dtype) -> Any:
    """``dtype`` as a floating numpy dtype (None stays None)."""
    if dtype is None:
        return None
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise ValueError(f"`dtype` must be a floating dtype (e.g. jnp.bfloat16) or None; got {dtype!r}.") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(f"`dtype` must be a floating dtype (e.g. jnp.bfloat16) or None; got {dtype!r}.")
    return dt


def _full_precision(y: Array, dtype) -> Array:
    """The module's output in float32 when it computed in a lower ``dtype``."""
    return y if dtype is None else y.astype(jnp.float32)


# Jitted so that eager (un-jitted) calls run one compiled kernel, not a dozen dispatched ops.
_dot_product_attention = jax.jit(jax.nn.dot_product_attention, static_argnames=("is_causal", "implementation"))


def fused_attention(query: Array, key: Array, value: Array, bias: Array | None = None, mask: Array | None = None,
                    *, dropout_rng=None, dropout_rate: float = 0.0, broadcast_dropout: bool = True,
                    deterministic: bool = True, dtype=None, precision=None, module=None, is_causal: bool = False,
                    implementation: str | None = None) -> Array:
    """Scaled dot-product attention through :func:`jax.nn.dot_product_attention`.

    A drop-in ``attention_fn`` for ``nnx.MultiHeadAttention`` (same arguments as
    ``nnx.dot_product_attention``): ``query [..., T, N, H], key/value [..., S, N, H]
    -> [..., T, N, H]``; leading batch axes are flattened into one for the call.
    ``precision`` is left to the backend (cuDNN/XLA choose it), and attention
    dropout is not supported (mamjax's encoders use none).

    Args:
      query, key, value: as above; cast to ``dtype`` when it is given.
      bias: optional additive bias broadcastable to ``[..., N, T, S]``.
      mask: optional bool mask broadcastable to ``[..., N, T, S]`` (True = attend).
      implementation: ``None`` (best available), ``"xla"`` or ``"cudnn"``.

    Raises:
      ValueError: ``dropout_rate > 0`` without ``deterministic``.
    """
    del dropout_rng, broadcast_dropout, precision, module
    if dropout_rate > 0.0 and not deterministic:
        raise ValueError("`dropout_rate` > 0 is not supported by fused_attention; use nnx.dot_product_attention.")
    if dtype is not None:
        query, key, value = (a.astype(dtype) for a in (query, key, value))
    batch = query.shape[:-3]
    flat = lambda a: a.reshape((-1,) + a.shape[-3:])

    def flat_logits_shaped(a):
        if a is None:
            return None
        a = jnp.broadcast_to(a, batch + (query.shape[-2], query.shape[-3], key.shape[-3]))
        return a.reshape((-1,) + a.shape[-3:])

    out = _dot_product_attention(flat(query), flat(key), flat(value), bias=flat_logits_shaped(bias),
                                       mask=flat_logits_shaped(mask), is_causal=is_causal,
                                       implementation=implementation)
    return out.reshape(batch + out.shape[1:])


class MLP(nnx.Module):
    """Plain multi-layer perceptron: ``in -> hidden... -> out`` on the last axis.

    ``dtype``: compute dtype (e.g. ``jnp.bfloat16``; params float32, output float32).
    """

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *,
                 activation: str = "relu", dtype=None, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, out_features=out_features,
                     **{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        self.dtype = _check_dtype(dtype)
        sizes = [in_features, *hidden, out_features]
        self.layers = nnx.List([nnx.Linear(a, b, dtype=self.dtype, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
        self.act = _activation(activation)
        self.in_features = in_features

    def __call__(self, x: Array) -> Array:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"`x` must have last dimension {self.in_features}; got shape {x.shape}.")
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return _full_precision(self.layers[-1](x), self.dtype)


class ResidualMLP(nnx.Module):
    """Residual MLP: ``Linear -> [LayerNorm -> act -> Linear -> act -> Linear] + skip -> Linear``.

    The MLP backbone of marginal / conditional networks on flattened data.
    ``dtype``: compute dtype (e.g. ``jnp.bfloat16``; params float32, output float32).
    """

    def __init__(self, in_features: int, width: int, depth: int, out_features: int, *,
                 activation: str = "gelu", dtype=None, rngs: nnx.Rngs):
        _check_sizes(in_features=in_features, width=width, out_features=out_features)
        if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 0:
            raise ValueError(f"`depth` must be an int >= 0; got {depth!r}.")
        self.dtype = dt = _check_dtype(dtype)
        self.inp = nnx.Linear(in_features, width, dtype=dt, rngs=rngs)
        self.norms = nnx.List([nnx.LayerNorm(width, dtype=dt, rngs=rngs) for _ in range(depth)])
        self.hidden1 = nnx.List([nnx.Linear(width, width, dtype=dt, rngs=rngs) for _ in range(depth)])
        self.hidden2 = nnx.List([
            nnx.Linear(width, width, kernel_init=nnx.initializers.zeros_init(), dtype=dt, rngs=rngs)
            for _ in range(depth)
        ])
        self.out = nnx.Linear(width, out_features, dtype=dt, rngs=rngs)
        self.act = _activation(activation)
        self.in_features = in_features

    def __call__(self, x: Array) -> Array:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"`x` must have last dimension {self.in_features}; got shape {x.shape}.")
        h = self.inp(x)
        for norm, l1, l2 in zip(self.norms, self.hidden1, self.hidden2):
            h = h + l2(self.act(l1(self.act(norm(h)))))
        return _full_precision(self.out(self.act(h)), self.dtype)


def _singly_replaced(base: Array, rows: Array, offset: int) -> Array:
    """``L`` copies of ``base [B, S, ...]``, copy ``n`` with position ``offset + n`` set to ``rows[n]``.

    Returns ``[B, L, S, ...]``.
    """
    l, s = rows.shape[0], base.shape[1]
    pick = jnp.arange(s)[None, :] == jnp.arange(l)[:, None] + offset  # [L, S]
    pick = pick.reshape(pick.shape + (1,) * (base.ndim - 2))[None]
    return jnp.where(pick, rows[None, :, None], base[:, None])


class _Block(nnx.Module):
    def __init__(self, dim: int, num_heads: int, mlp_dim: int, rngs: nnx.Rngs, dtype=None,
                 attention_fn: Callable[..., Array] = fused_attention):
        self.ln1 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads, dim, decode=False, dtype=dtype, attention_fn=attention_fn,
                                           rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, dtype=dtype, rngs=rngs)
        self.fc1 = nnx.Linear(dim, mlp_dim, dtype=dtype, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, h: Array) -> Array:
        h = h + self.attn(self.ln1(h))
        return h + self.fc2(jax.nn.gelu(self.fc1(self.ln2(h))))

    def at_queries(self, h: Array, index: Array) -> Array:
        """The block's output at one position per sequence: ``h [B, S, d], index [B] -> [B, d]``.

        Keys and values read the whole sequence; only the query row, the
        attention output and the MLP of position ``index[b]`` are computed.
        """
        x = self.ln1(h)
        take = lambda a: jnp.take_along_axis(a, index[:, None, None], axis=1)  # [B, 1, d]
        hq = take(h) + self.attn(take(x), x)
        hq = hq + self.fc2(jax.nn.gelu(self.fc1(self.ln2(hq))))
        return hq[:, 0]

    def singly_hidden_copies(self, h: Array, rows: Array, offset: int) -> Array:
        """The block's output on ``L`` copies of ``h``, copy ``n`` with position ``offset + n`` set to ``rows[n]``.

        ``h [B, S, d], rows [L, d] -> [B, L, S, d]``. LayerNorm and the query / key /
        value projections act per token, so they run once on ``h`` and once on
        ``rows``; only attention, its output projection and the MLP run per copy.
        """
        a = self.attn
        x, xr = self.ln1(h), self.ln1(rows)
        q, k, v = (_singly_replaced(f(x), f(xr), offset) for f in (a.query, a.key, a.value))
        hc = _singly_replaced(h, rows, offset) + a.out(a.attention_fn(q, k, v, dtype=a.dtype, precision=a.precision))
        return hc + self.fc2(jax.nn.gelu(self.fc1(self.ln2(hc))))


class TransformerEncoder(nnx.Module):
    """Bidirectional (unmasked-attention) transformer over partially observed tokens.

    Hidden positions (``mask == False``) are replaced by a learned mask embedding,
    so the same network reads any subset of observed tokens. Optionally
    class-conditional: a class token is prepended; class id ``num_classes`` is the
    "null" class used for classifier-free guidance.

    Call: ``(tokens [B, L] int32, mask [B, L] bool, labels [B] int32 | None)
    -> logits [B, L, out_features]``. Observed token ids must lie in
    ``[0, vocab_size)`` and labels in ``[0, num_classes]``: checked eagerly when the
    inputs are concrete (an embedding gather would clamp them silently); under
    ``jit`` only shapes and dtypes are checked.

    ``dtype``: compute dtype (e.g. ``jnp.bfloat16`` on accelerators); parameters stay
    float32 and the logits are float32. ``attention_fn``: the attention kernel of
    every block, :func:`fused_attention` (``jax.nn.dot_product_attention``) by default;
    ``nnx.dot_product_attention`` gives Flax's reference implementation (the same
    parameters, so either reads the other's checkpoints).
    """

    def __init__(self, vocab_size: int, seq_len: int, *, dim: int = 64, depth: int = 2,
                 num_heads: int = 4, mlp_dim: int | None = None, out_features: int | None = None,
                 num_classes: int | None = None, dtype=None,
                 attention_fn: Callable[..., Array] = fused_attention, rngs: nnx.Rngs):
        _check_sizes(vocab_size=vocab_size, seq_len=seq_len, dim=dim, depth=depth, num_heads=num_heads,
                     mlp_dim=mlp_dim, out_features=out_features, num_classes=num_classes)
        if dim % num_heads:
            raise ValueError(f"`dim` ({dim}) must be divisible by `num_heads` ({num_heads}).")
        if not callable(attention_fn):
            raise ValueError(f"`attention_fn` must be callable; got {attention_fn!r}.")
        self.vocab_size, self.seq_len, self.num_classes = vocab_size, seq_len, num_classes
        self.dtype = dt = _check_dtype(dtype)
        self.tok = nnx.Embed(vocab_size, dim, dtype=dt, rngs=rngs)
        self.mask_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (dim,)))
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (seq_len, dim)))
        self.cls = nnx.Embed(num_classes + 1, dim, dtype=dt, rngs=rngs) if num_classes is not None else None
        self.blocks = nnx.List([_Block(dim, num_heads, mlp_dim or 4 * dim, rngs, dt, attention_fn)
                                for _ in range(depth)])
        self.ln = nnx.LayerNorm(dim, dtype=dt, rngs=rngs)
        self.head = nnx.Linear(dim, out_features or vocab_size, dtype=dt, rngs=rngs)

    def _compute(self, h: Array) -> Array:
        return h if self.dtype is None else h.astype(self.dtype)

    def _check_tokens(self, tokens: Array) -> None:
        chex.assert_rank(tokens, 2, custom_message="`tokens` must be [batch, seq_len] int")
        if tokens.shape[1] != self.seq_len:
            raise ValueError(f"`tokens` must have seq_len {self.seq_len}; got shape {tokens.shape}.")
        if not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise TypeError(f"`tokens` must be integer; got dtype {tokens.dtype}.")

    def _with_class(self, h: Array, labels: Array | None) -> Array:
        if self.cls is None:
            return h
        if labels is None:
            raise ValueError("`labels` is required: this encoder is class-conditional.")
        masks_lib.check_token_ids(labels, self.num_classes + 1, "labels")
        return jnp.concatenate([self.cls(labels)[:, None, :], h], axis=1)

    def __call__(self, tokens: Array, mask: Array, labels: Array | None = None) -> Array:
        self._check_tokens(tokens)
        if mask.dtype != jnp.bool_ or mask.shape != tokens.shape:
            raise TypeError(f"`mask` must be bool of shape {tokens.shape}; got {mask.dtype} {mask.shape}.")
        safe = jnp.where(mask, tokens, 0)  # hidden entries may hold any id, e.g. a MASK id
        masks_lib.check_token_ids(safe, self.vocab_size, "tokens")
        h = jnp.where(mask[..., None], self.tok(safe), self.mask_emb[...][None, None, :]) + self.pos[...][None]
        h = self._with_class(self._compute(h), labels)
        for block in self.blocks:
            h = block(h)
        if self.cls is not None:
            h = h[:, 1:]
        return _full_precision(self.head(self.ln(h)), self.dtype)

    def leave_one_out(self, tokens: Array, labels: Array | None = None, *, batch_size: int | None = None) -> Array:
        """``out[b, n]`` = the logits at position ``n`` when ``n`` alone is hidden: ``[B, L, out_features]``.

        Equals ``self(tokens, mask_n, labels)[:, n]`` with ``mask_n`` hiding only
        ``n``, for every ``n``, in one pass over the ``L`` singly-masked copies.
        Cheaper than ``L`` full calls (or one ``vmap`` over them): the last block
        computes its query, attention output and MLP only at the hidden position of
        each copy, and the head reads only that position. This is the
        self-Token-Critic's forward pass (:mod:`mamjax.maskgit.self_critic`).
        The first block shares its LayerNorm and query / key / value projections
        across the copies (they act per token).

        ``batch_size`` evaluates the copies in chunks of that many sequences
        (``lax.map``): ``B * L`` copies of ``L`` tokens can outgrow a CPU's cache,
        where chunks are faster; None evaluates all at once (accelerators).
        """
        self._check_tokens(tokens)
        masks_lib.check_token_ids(tokens, self.vocab_size, "tokens")
        if batch_size is None:
            return self._leave_one_out(tokens, labels)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive int or None; got {batch_size!r}.")
        one = lambda a: self._leave_one_out(a[0][None], None if a[1] is None else a[1][None])[0]  # one sequence
        return jax.lax.map(one, (tokens, labels), batch_size=batch_size)

    def _leave_one_out(self, tokens: Array, labels: Array | None) -> Array:
        b, l = tokens.shape
        pos = self.pos[...]
        offset = 0 if self.cls is None else 1  # the class token sits at position 0
        h = self._with_class(self._compute(self.tok(tokens) + pos[None]), labels)  # [B, S, d]
        hidden = self._compute(self.mask_emb[...][None, :] + pos)  # [L, d]: the input row of position n hidden
        if len(self.blocks) == 1:
            h = _singly_replaced(h, hidden, offset)
        else:
            h = self.blocks[0].singly_hidden_copies(h, hidden, offset)
        h = h.reshape(b * l, h.shape[2], -1)  # [B * L copies, S, d]
        for block in self.blocks[1:-1]:
            h = block(h)
        index = jnp.tile(jnp.arange(l), b) + offset
        hq = self.blocks[-1].at_queries(h, index)  # [B * L, d]
        return _full_precision(self.head(self.ln(hq)), self.dtype).reshape(b, l, -1)
