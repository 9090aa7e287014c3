"""Two-stage generation: low band (naive MaskGIT or ESS), then high band given it, then the tokenizer decoder.

Methods (low band): ``"naive"``, ``"ess"`` (critical resampling keeps the kept tokens), ``"ess_redraw"``
(it redraws every token, as the official code), each ESS method with the official exact critic; and
``"<ess method>_g<G>"`` (e.g. ``"ess_redraw_g4"``): the same with the critic's ``G``-pass grouped
approximation (:mod:`mamjax.maskgit.self_critic`; not in the official code).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from mamjax.maskgit.decoding import MASK_ID, decode
from mamjax.maskgit.ess import ess_decode
from mamjax.maskgit import prior as prior_lib

Array = jax.Array

__all__ = ["METHODS", "parse_method", "sample_tokens", "sample_series"]

METHODS = ("naive", "ess", "ess_redraw")


def parse_method(method: str) -> tuple[str, int | None]:
    """``(base method, critic groups)``: ``"ess_redraw_g4" -> ("ess_redraw", 4)``, ``"ess" -> ("ess", None)``."""
    if not isinstance(method, str):
        raise ValueError(f"`method` must be a string; got {method!r}.")
    base, sep, groups = method.rpartition("_g")
    if sep and base in METHODS[1:] and groups.isdigit() and groups[0] != "0":  # G >= 1, no leading zero
        return base, int(groups)
    if method in METHODS:
        return method, None
    raise ValueError(f"`method` must be one of {list(METHODS)} or '<ess method>_g<G>' (G >= 1 critic groups, "
                     f"e.g. 'ess_redraw_g4'); got {method!r}.")


def sample_tokens(apply_l: Callable, apply_h: Callable, params: dict, key: jax.Array, *, codebook_l: Array,
                  num_codes: int, len_l: int, len_h: int, labels: Array | None, batch_size: int,
                  method: str = "naive", num_steps: int = 10, schedule: str = "cosine",
                  temperature_l: float = 4.0, temperature_h: float = 4.0, guidance_scale: float = 1.0,
                  null_label: int | None = None, ma_rate: float = 0.3,
                  ess_per_sequence: bool = False, apply_loo_l: Callable | None = None) -> tuple[Array, Array]:
    """Samples ``(codes_l [B, N_l], codes_h [B, N_h])``; ``method`` (low band) is ``"naive"``, ``"ess"``
    (critical resampling keeps the kept tokens) or ``"ess_redraw"`` (it redraws every token, as the official
    code: see :mod:`mamjax.maskgit.ess`), or an ESS method with a grouped critic (``"ess_g4"``; see
    :func:`parse_method`; ``G`` must not exceed ``len_l``).

    ``apply_loo_l``: the low-band prior's leave-one-out apply (``nn.functional(prior, method="leave_one_out")``),
    the critic's cheaper exact forward pass; None = vmap of ``apply_l`` over the masked copies.
    Jit with ``static_argnames`` for everything but ``params``, ``key``, ``codebook_l`` and ``labels``.
    """
    base, groups = parse_method(method)
    k_l, k_h = jax.random.split(key)
    f_l = prior_lib.lf_logits_fn(apply_l, params["lf"])
    common = dict(labels=labels, num_steps=num_steps, schedule=schedule, guidance_scale=guidance_scale,
                  null_label=null_label)
    if base == "naive":
        codes_l = decode(f_l, jnp.full((batch_size, len_l), MASK_ID, jnp.int32), jnp.zeros((batch_size, len_l), bool),
                         k_l, temperature=temperature_l, **common)
    else:
        loo = None if apply_loo_l is None else prior_lib.lf_leave_one_out_fn(apply_loo_l, params["lf"])
        codes_l = ess_decode(f_l, k_l, codebook_l, batch_size=batch_size, seq_len=len_l, temperature=temperature_l,
                             ma_rate=ma_rate, per_sequence=ess_per_sequence, leave_one_out_fn=loo,
                             redraw_kept=base == "ess_redraw", critic_groups=groups, **common)
    f_h = prior_lib.hf_logits_fn(apply_h, params["hf"], codes_l, num_codes)
    codes_h = decode(f_h, jnp.full((batch_size, len_h), MASK_ID, jnp.int32), jnp.zeros((batch_size, len_h), bool),
                     k_h, temperature=temperature_h, **common)
    return codes_l, codes_h


def sample_series(detokenize: Callable, tok_params: Any, apply_l: Callable, apply_h: Callable, params: dict,
                  key: jax.Array, **kwargs) -> Array:
    """:func:`sample_tokens` followed by ``detokenize(tok_params, codes_l, codes_h) -> [B, T]``."""
    codes_l, codes_h = sample_tokens(apply_l, apply_h, params, key, **kwargs)
    return detokenize(tok_params, codes_l, codes_h)
