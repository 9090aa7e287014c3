"""A masked language model scored by MPT (the shape of the paper's BERT study), on text that ships with Python.

The paper evaluates BERT's masked-token loss across mask rates and reads the area under that curve
as a log-marginal-likelihood estimate (its Fig. 6: pretrained vs random BERT). Here the masked model
is :class:`mamjax.nn.TransformerEncoder` (any ``apply(params, tokens [B, L], mask [B, L]) -> logits
[B, L, V]``) over characters of the Python documentation in the standard library
(``pydoc_data.topics``, ~700 KB of English; offline everywhere Python is), and the estimate goes
through the generic bridge: :func:`mamjax.lml.categorical_cond_logpdf` and
:func:`mamjax.lml.cumulative_mpt`.

* :func:`python_docs_text` / :func:`char_windows`: the corpus as ``[N, L]`` int32 windows.
* :func:`mlm_loss`: the training loss: BERT's fixed rate (``rate=0.15``) or a rate drawn per
  sequence uniformly from ``1..L`` hidden tokens (``rate="uniform"``, the cumulative MPT objective,
  unbiased for ``log p(x)`` up to the model's consistency).
* :func:`mpt_curve`: the per-size MPT scores ``s_M`` of held-out windows and their sum (the LML
  estimate, nats per window) with standard errors.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from mamjax import masks as masks_lib
from mamjax.lml.bridge import categorical_cond_logpdf
from mamjax.lml.estimator import MPTEstimate, cumulative_mpt

Array = jax.Array
Apply = Callable[..., Array]

__all__ = ["python_docs_text", "char_vocab", "char_windows", "mlm_loss", "mpt_curve"]


def python_docs_text() -> str:
    """The Python documentation topics shipped with the interpreter (``pydoc_data.topics``), joined."""
    try:
        from pydoc_data import topics
    except ImportError as e:  # some minimal Python builds strip it
        raise ImportError("the standard-library module `pydoc_data.topics` is missing from this Python "
                          "build; pass your own text to `char_windows`.") from e
    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


def char_vocab(text: str, max_size: int = 96) -> tuple[str, dict]:
    """The ``max_size - 1`` most frequent characters plus an out-of-vocabulary id (the last one).

    Returns:
      ``(chars, index)``: ``chars[i]`` is token i's character (``"\\ufffd"`` for OOV), ``index`` the inverse.
    """
    if max_size < 2:
        raise ValueError(f"`max_size` must be >= 2; got {max_size}.")
    if not text:
        raise ValueError("`text` is empty.")
    uniq, counts = np.unique(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), return_counts=True)
    keep = uniq[np.argsort(-counts, kind="stable")[: max_size - 1]]
    chars = "".join(chr(c) for c in sorted(keep)) + "\ufffd"
    return chars, {c: i for i, c in enumerate(chars)}


def char_windows(text: str, index: dict, seq_len: int, num: int, key: jax.Array) -> np.ndarray:
    """``num`` windows of ``seq_len`` characters at uniformly random offsets, as ``[num, seq_len]`` int32.

    Characters missing from ``index`` map to the last id (OOV).
    """
    if seq_len < 1 or num < 1:
        raise ValueError(f"`seq_len` and `num` must be >= 1; got {seq_len}, {num}.")
    if len(text) < seq_len:
        raise ValueError(f"`text` has {len(text)} characters, fewer than `seq_len` = {seq_len}.")
    oov = max(index.values())
    ids = np.fromiter((index.get(c, oov) for c in text), dtype=np.int32, count=len(text))
    starts = np.asarray(jax.random.randint(key, (num,), 0, len(text) - seq_len + 1))
    return ids[starts[:, None] + np.arange(seq_len)[None, :]]


def _masks(key: jax.Array, batch: int, seq_len: int, rate) -> Array:
    """``[B, L]`` masks (True = observed): ``round(rate L)`` hidden, or a size uniform on 1..L per row."""
    k_size, k_mask = jax.random.split(key)
    if rate == "uniform":
        sizes = jax.random.randint(k_size, (batch,), 1, seq_len + 1)
    elif isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 < rate <= 1.0:
        sizes = jnp.full((batch,), max(1, int(round(rate * seq_len))), jnp.int32)
    else:
        raise ValueError(f"`rate` must be 'uniform' or a mask rate in (0, 1]; got {rate!r}.")
    return jax.vmap(masks_lib.mask_by_count, in_axes=(0, None, 0))(jax.random.split(k_mask, batch), seq_len, sizes)


def mlm_loss(apply: Apply, rate="uniform") -> Callable:
    """``loss_fn(params, batch, key) -> (loss, metrics)`` for :func:`mamjax.train.make_train_step`.

    ``batch["x"]``: ``[B, L]`` int32 tokens. Loss: the mean over sequences of the mean negative log
    probability of the hidden tokens (each sequence's masked-token average, as MPT's ``1/M``), i.e.
    ``-s_M`` for BERT's fixed ``rate``, and ``-(1/L) sum_M s_M`` in expectation for ``"uniform"``.
    ``metrics["nll_per_token"]`` is that loss.
    """
    _masks_check = _masks  # validates `rate` once, eagerly
    _masks_check(jax.random.key(0), 1, 2, rate)

    def loss_fn(params, batch, key):
        tokens = batch["x"]
        mask = _masks(key, tokens.shape[0], tokens.shape[1], rate)
        logp = jax.nn.log_softmax(apply(params, tokens, mask), axis=-1)
        picked = jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
        hidden = (~mask).astype(picked.dtype)
        per_seq = jnp.sum(picked * hidden, -1) / jnp.sum(hidden, -1)
        loss = -jnp.mean(per_seq)
        return loss, {"nll_per_token": loss}

    return loss_fn


def mpt_curve(apply: Apply, params, tokens: Array, key: jax.Array, num_masks_per_rate: int = 4,
              exact: bool | str = False) -> MPTEstimate:
    """Cumulative MPT of held-out windows through the bridge: ``value`` [N] nats per window, ``per_size`` [N, L].

    ``per_size[:, M-1]`` is the mean log probability of a hidden token when M of the L tokens are
    hidden (the masked-LM test score at rate ``M / L``); ``value = sum_M s_M`` is the LML estimate.
    ``exact``: as in :func:`mamjax.lml.cumulative_mpt` (default Monte Carlo at every size).
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"`tokens` must be [N, L] integers; got {tokens.dtype}{tuple(tokens.shape)}.")
    cond = categorical_cond_logpdf(lambda t, m: apply(params, t[None], m[None])[0])
    return cumulative_mpt(cond, tokens, key, num_masks_per_rate, exact=exact)
