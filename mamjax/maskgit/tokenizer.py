"""TimeVQVAE-style tokenizer: STFT, low / high frequency bands, one VQ-VAE per band.

``x [B, T] -> STFT u [B, F, bins]`` (``n_fft`` = 8, hop 2 by default), split into
the low-frequency band (bin 0) and the high-frequency band (bins 1..), each band
as real / imaginary channels ``[B, F, 2 * bins_in_band]``. Per band a strided
1-D conv encoder maps the ``F`` frames to ``F / 2^down`` latent vectors, a
vector quantizer turns them into tokens, and a decoder maps them back to the
band's STFT coefficients; the inverse STFT of the two bands gives the signal.
Because the STFT is linear, ``x = istft(u_low) + istft(u_high)`` (Lee et al., 2023).

Pure form: ``params, fns = tokenizer_functions(module)`` with
``fns["loss"](params, x) -> (loss, metrics)``, ``fns["tokenize"](params, x) ->
(codes_l, codes_h)``, ``fns["detokenize"](params, codes_l, codes_h) -> x``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jax.scipy import signal

from mamjax import masks as masks_lib
from mamjax.maskgit import vq

Array = jax.Array

__all__ = ["num_frames", "stft", "istft", "split_bands", "merge_bands", "band_to_channels", "channels_to_band",
           "EMAState", "CODEBOOKS", "BandCoder", "Tokenizer", "tokenizer_functions", "tokenizer_state"]


def num_frames(length: int, n_fft: int = 8, hop: int = 2) -> int:
    """Frames of :func:`stft` for a series of ``length``: ``ceil(length / hop) + 1``.

    (``n_fft // 2`` zeros on each side, then zero-padded to whole hops.)
    """
    return -(-length // hop) + 1


WINDOWS = ("hann", "boxcar")
PADDINGS = {"zeros": "zeros", "reflect": "even"}  # scipy's "even" extension is torch's reflect padding


def _check_stft(window: str, padding: str) -> None:
    if window not in WINDOWS:
        raise ValueError(f"`window` must be one of {list(WINDOWS)}; got {window!r}.")
    if padding not in PADDINGS:
        raise ValueError(f"`padding` must be one of {sorted(PADDINGS)}; got {padding!r}.")


def stft(x: Array, n_fft: int = 8, hop: int = 2, window: str = "hann", padding: str = "zeros") -> Array:
    """Short-time Fourier transform (``n_fft // 2`` boundary samples on each side).

    Args:
      x: ``[B, T]`` real series.
      window: ``"hann"`` or ``"boxcar"`` (rectangular: ``torch.stft``'s default, the official TimeVQVAE STFT).
      padding: ``"zeros"`` or ``"reflect"`` (``torch.stft(center=True)``'s default).

    Returns:
      ``[B, F, n_fft // 2 + 1]`` complex, ``F = T // hop + 1`` for even ``T``.
    """
    if x.ndim != 2:
        raise ValueError(f"`x` must be [batch, length]; got shape {x.shape}.")
    _check_stft(window, padding)
    _, _, z = signal.stft(x, window=window, nperseg=n_fft, noverlap=n_fft - hop, nfft=n_fft,
                          boundary=PADDINGS[padding])
    return jnp.swapaxes(z, -1, -2)


def istft(u: Array, length: int, n_fft: int = 8, hop: int = 2, window: str = "hann") -> Array:
    """Inverse of :func:`stft`: ``[B, F, bins] complex -> [B, length]`` real (any padding: it is trimmed)."""
    _check_stft(window, "zeros")
    _, x = signal.istft(jnp.swapaxes(u, -1, -2), window=window, nperseg=n_fft, noverlap=n_fft - hop, nfft=n_fft)
    if x.shape[-1] < length:
        x = jnp.pad(x, ((0, 0), (0, length - x.shape[-1])))
    return x[:, :length]


def split_bands(u: Array) -> tuple[Array, Array]:
    """``[B, F, bins] -> (low [B, F, 1], high [B, F, bins - 1])``: bin 0 vs the rest."""
    return u[..., :1], u[..., 1:]


def merge_bands(low: Array, high: Array) -> Array:
    """Inverse of :func:`split_bands`."""
    return jnp.concatenate([low, high], axis=-1)


def band_to_channels(u: Array) -> Array:
    """Complex ``[B, F, n]`` -> real ``[B, F, 2n]`` (real parts, then imaginary parts)."""
    return jnp.concatenate([u.real, u.imag], axis=-1).astype(jnp.float32)


def channels_to_band(c: Array) -> Array:
    """Inverse of :func:`band_to_channels`."""
    n = c.shape[-1] // 2
    return jax.lax.complex(c[..., :n], c[..., n:])


def _l2_normalize(v: Array) -> Array:
    # Unit-norm latents and codes (cosine-similarity VQ, Yu et al. 2022): bounded VQ losses
    # and better codebook usage than raw Euclidean VQ at this size.
    return v * jax.lax.rsqrt(jnp.sum(v**2, axis=-1, keepdims=True) + 1e-8)


class _ResBlock(nnx.Module):
    def __init__(self, dim: int, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(dim, dim, 3, rngs=rngs)
        self.c2 = nnx.Conv(dim, dim, 1, rngs=rngs)

    def __call__(self, h):
        return h + self.c2(jax.nn.relu(self.c1(jax.nn.relu(h))))


class EMAState(nnx.Variable):
    """Codebook state updated by exponential moving averages, not by the optimizer."""


CODEBOOKS = ("unit_norm", "ema")


class BandCoder(nnx.Module):
    """Encoder, codebook and decoder for one band.

    Args:
      in_channels: real channels of the band (2 x bins in the band).
      hidden: conv width.
      code_dim: d, dimension of the codebook vectors.
      num_codes: K, codebook size.
      num_down: number of stride-2 downsamplings of the frame axis.
      tokens_per_step: H', tokens per latent step (the official 2-D encoder keeps the frequency axis,
        ``H' = n_fft // 2 + 1`` tokens per step); the band has ``H' x W'`` tokens, step-major.
      floor_down: downsample with ``floor(n / 2)`` per step (kernel 4, stride 2, padding 1, as the
        official encoder: 76 frames -> 38 -> 19 -> 9) instead of ``ceil(n / 2)`` ("SAME").
      codebook: ``"unit_norm"``: unit-norm latents and codes, the codebook learned by the VQ loss
        (cosine-similarity VQ); ``"ema"``: Euclidean VQ with the codebook an exponential moving average
        of the latents assigned to it (:func:`mamjax.maskgit.vq.ema_update`, the official TimeVQVAE VQ).
      ema_decay: the EMA decay (official 0.8).
    """

    def __init__(self, in_channels: int, *, hidden: int = 64, code_dim: int = 16, num_codes: int = 32,
                 num_down: int = 2, tokens_per_step: int = 1, floor_down: bool = False, codebook: str = "unit_norm",
                 ema_decay: float = 0.8, rngs: nnx.Rngs):
        if codebook not in CODEBOOKS:
            raise ValueError(f"`codebook` must be one of {list(CODEBOOKS)}; got {codebook!r}.")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must lie in [0, 1); got {ema_decay!r}.")
        self.num_down, self.tokens_per_step, self.floor_down = num_down, tokens_per_step, floor_down
        self.code_dim, self.codebook_kind, self.ema_decay = code_dim, codebook, ema_decay
        self.enc_in = nnx.Conv(in_channels, hidden, 3, rngs=rngs)
        pad = ((1, 1),) if floor_down else "SAME"
        self.downs = nnx.List([nnx.Conv(hidden, hidden, 4, strides=2, padding=pad, rngs=rngs)
                               for _ in range(num_down)])
        self.enc_res = _ResBlock(hidden, rngs)
        self.enc_out = nnx.Conv(hidden, code_dim * tokens_per_step, 1, rngs=rngs)
        init = jax.random.normal(rngs.params(), (num_codes, code_dim))
        if codebook == "ema":
            self.codebook = EMAState(init)
            self.ema_count = EMAState(jnp.ones((num_codes,)))
            self.ema_total = EMAState(init)
        else:
            self.codebook = nnx.Param(init)
        self.dec_in = nnx.Conv(code_dim * tokens_per_step, hidden, 3, rngs=rngs)
        self.dec_res = _ResBlock(hidden, rngs)
        self.ups = nnx.List([nnx.Conv(hidden, hidden, 3, rngs=rngs) for _ in range(num_down)])
        self.dec_out = nnx.Conv(hidden, in_channels, 3, rngs=rngs)

    def num_steps(self, num_frames: int) -> int:
        """W', latent steps of ``num_frames`` frames."""
        n = num_frames
        for _ in range(self.num_down):
            n = n // 2 if self.floor_down else -(-n // 2)
        return n

    def num_tokens(self, num_frames: int) -> int:
        return self.num_steps(num_frames) * self.tokens_per_step

    def encode(self, c: Array) -> Array:
        """``[B, F, C] -> [B, n, d]`` unit-norm latent vectors (before quantization), ``n = W' H'``."""
        h = jax.nn.relu(self.enc_in(c))
        for down in self.downs:
            h = jax.nn.relu(down(h))
        z = self.enc_out(self.enc_res(h)).reshape(h.shape[0], -1, self.code_dim)  # [B, W' H', d]
        return z if self.codebook_kind == "ema" else _l2_normalize(z)

    def codes(self) -> Array:
        """The codebook ``[K, d]`` (unit-norm rows unless ``codebook="ema"``)."""
        return self.codebook[...] if self.codebook_kind == "ema" else _l2_normalize(self.codebook[...])

    def quantize(self, z: Array, train: bool) -> tuple[vq.Quantized, Array, Array]:
        """``(quantized, codebook loss, commitment loss)``; with ``codebook="ema"`` and ``train`` the
        codebook moves by EMA instead (its codebook loss is then 0)."""
        q = vq.quantize(z, self.codes())
        if self.codebook_kind != "ema":
            return q, q.codebook_loss, q.commitment_loss
        if train:
            count, total, book = vq.ema_update(self.ema_count[...], self.ema_total[...], z, q.codes, self.ema_decay)
            self.ema_count[...], self.ema_total[...], self.codebook[...] = count, total, book
        return q, jnp.zeros(()), q.commitment_loss

    def decode(self, z_q: Array, num_frames: int) -> Array:
        """``[B, n, d] -> [B, num_frames, C]``."""
        z = z_q.reshape(z_q.shape[0], -1, self.code_dim * self.tokens_per_step)  # [B, W', H' d]
        h = self.dec_res(jax.nn.relu(self.dec_in(z)))
        for up in self.ups:
            h = jax.nn.relu(up(jnp.repeat(h, 2, axis=1)))
        if h.shape[1] < num_frames:  # floor downsampling: stretch back to the frame count (as F.interpolate)
            h = jax.image.resize(h, (h.shape[0], num_frames, h.shape[2]), "linear")
        return self.dec_out(h)[:, :num_frames]


class Tokenizer(nnx.Module):
    """STFT VQ-VAE with a low-frequency and a high-frequency band.

    Args:
      length: T, series length (static).
      n_fft, hop: STFT window and hop.
      hidden, code_dim, num_codes: per-band conv width, code dimension and codebook size.
      down_l, down_h: stride-2 downsamplings of the frame axis for the low / high band
        (tokens per band ``ceil(F / 2^down)``, or ``floor`` with ``floor_down``, times ``tokens_per_step``).
      beta: commitment weight.
      window, padding: of the STFT (:func:`stft`); the official TimeVQVAE STFT is ``"boxcar"``, ``"reflect"``.
      tokens_per_step, floor_down, codebook, ema_decay: see :class:`BandCoder` (official:
        ``n_fft // 2 + 1``, True, ``"ema"``, 0.8).
    """

    def __init__(self, length: int, *, n_fft: int = 8, hop: int = 2, hidden: int = 64, code_dim: int = 16,
                 num_codes: int = 32, down_l: int = 3, down_h: int = 2, beta: float = 0.25, window: str = "hann",
                 padding: str = "zeros", tokens_per_step: int = 1, floor_down: bool = False,
                 codebook: str = "unit_norm", ema_decay: float = 0.8, rngs: nnx.Rngs):
        if n_fft % 2 or hop < 1 or hop > n_fft:
            raise ValueError(f"`n_fft` must be even and 1 <= `hop` <= n_fft; got n_fft={n_fft}, hop={hop}.")
        _check_stft(window, padding)
        if isinstance(tokens_per_step, bool) or not isinstance(tokens_per_step, int) or tokens_per_step < 1:
            raise ValueError(f"`tokens_per_step` must be a positive int; got {tokens_per_step!r}.")
        self.length, self.n_fft, self.hop, self.beta = length, n_fft, hop, beta
        self.window, self.padding = window, padding
        self.num_frames = num_frames(length, n_fft, hop)
        bins = n_fft // 2 + 1
        band = dict(hidden=hidden, code_dim=code_dim, num_codes=num_codes, tokens_per_step=tokens_per_step,
                    floor_down=floor_down, codebook=codebook, ema_decay=ema_decay, rngs=rngs)
        self.low = BandCoder(2, num_down=down_l, **band)
        self.high = BandCoder(2 * (bins - 1), num_down=down_h, **band)
        self.num_codes = num_codes
        self.len_l = self.low.num_tokens(self.num_frames)
        self.len_h = self.high.num_tokens(self.num_frames)

    def _check(self, x):
        if x.ndim != 2 or x.shape[1] != self.length:
            raise ValueError(f"`x` must be [batch, {self.length}]; got shape {x.shape}.")

    def bands(self, x: Array) -> tuple[Array, Array]:
        """``x [B, T] -> (low, high)`` band channels ``[B, F, 2]``, ``[B, F, 2 (bins - 1)]``."""
        self._check(x)
        lo, hi = split_bands(stft(x, self.n_fft, self.hop, self.window, self.padding))
        return band_to_channels(lo), band_to_channels(hi)

    def band_series(self, c_low: Array, c_high: Array) -> tuple[Array, Array]:
        """Band channels -> the two time-domain components ``(x_l, x_h)``, each ``[B, T]``."""
        z_l = jnp.zeros_like(channels_to_band(c_high))
        z_h = jnp.zeros_like(channels_to_band(c_low))
        x_l = istft(merge_bands(channels_to_band(c_low), z_l), self.length, self.n_fft, self.hop, self.window)
        x_h = istft(merge_bands(z_h, channels_to_band(c_high)), self.length, self.n_fft, self.hop, self.window)
        return x_l, x_h

    def __call__(self, x: Array) -> tuple[Array, dict]:
        """Training loss: time-domain MSE per band + VQ losses. Returns ``(loss, metrics)``.

        With ``codebook="ema"`` the call also moves the codebooks (module state, see
        :func:`tokenizer_functions`).
        """
        c_l, c_h = self.bands(x)
        q_l, cb_l, cm_l = self.low.quantize(self.low.encode(c_l), True)
        q_h, cb_h, cm_h = self.high.quantize(self.high.encode(c_h), True)
        c_l_hat = self.low.decode(q_l.z_q, self.num_frames)
        c_h_hat = self.high.decode(q_h.z_q, self.num_frames)
        x_l, x_h = self.band_series(c_l, c_h)
        x_l_hat, x_h_hat = self.band_series(c_l_hat, c_h_hat)
        rec_l = jnp.mean((x_l - x_l_hat) ** 2) + jnp.mean((c_l - c_l_hat) ** 2)
        rec_h = jnp.mean((x_h - x_h_hat) ** 2) + jnp.mean((c_h - c_h_hat) ** 2)
        vq_loss = cb_l + self.beta * cm_l + cb_h + self.beta * cm_h
        loss = rec_l + rec_h + vq_loss
        mse = jnp.mean((x - (x_l_hat + x_h_hat)) ** 2)
        return loss, {"rec_l": rec_l, "rec_h": rec_h, "vq": vq_loss, "mse": mse,
                      "perplexity_l": q_l.perplexity, "perplexity_h": q_h.perplexity}

    def tokenize(self, x: Array) -> tuple[Array, Array]:
        """``x [B, T] -> (codes_l [B, len_l], codes_h [B, len_h])`` int32."""
        c_l, c_h = self.bands(x)
        return (vq.nearest_codes(self.low.encode(c_l), self.low.codes()),
                vq.nearest_codes(self.high.encode(c_h), self.high.codes()))

    def detokenize(self, codes_l: Array, codes_h: Array) -> Array:
        """``(codes_l, codes_h) -> x_hat [B, T]``; code ids in ``[0, num_codes)``, checked eagerly when concrete."""
        masks_lib.check_token_ids(codes_l, self.num_codes, "codes_l")
        masks_lib.check_token_ids(codes_h, self.num_codes, "codes_h")
        c_l = self.low.decode(vq.lookup(codes_l, self.low.codes()), self.num_frames)
        c_h = self.high.decode(vq.lookup(codes_h, self.high.codes()), self.num_frames)
        x_l, x_h = self.band_series(c_l, c_h)
        return x_l + x_h

    def codebooks(self) -> tuple[Array, Array]:
        """Unit-norm ``(codebook_l [K, d], codebook_h [K, d])``: the token embeddings the critic uses."""
        return self.low.codes(), self.high.codes()


def tokenizer_functions(module: Tokenizer) -> tuple[Any, dict[str, Callable]]:
    """Pure functions of a :class:`Tokenizer`: ``params, fns``.

    ``fns`` maps ``"loss"``, ``"tokenize"``, ``"detokenize"``, ``"codebooks"`` to
    ``fn(params, *args)``; each merges a fresh module with ``params`` and the module's
    current non-parameter state (the EMA codebooks, if any). ``fns["loss_with_state"](params,
    state, x) -> (loss, (metrics, new_state))`` is the stateful training loss (``state`` from
    :func:`tokenizer_state`); after training, ``nnx.update(module, new_state)`` and call this again.
    """
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def method(name):
        def fn(p, *args):
            m = nnx.merge(graphdef, p, rest)
            return m(*args) if name == "loss" else getattr(m, name)(*args)
        return fn

    def loss_with_state(p, state, x):
        m = nnx.merge(graphdef, p, state, copy=True)  # fresh variables at this trace level: the EMA writes them
        loss, metrics = m(x)
        return loss, (metrics, nnx.state(m, EMAState))

    fns = {n: method(n) for n in ("loss", "tokenize", "detokenize", "codebooks")}
    fns["loss_with_state"] = loss_with_state
    return params, fns


def tokenizer_state(module: Tokenizer):
    """The module's EMA codebook state (empty for unit-norm codebooks)."""
    return nnx.state(module, EMAState)
