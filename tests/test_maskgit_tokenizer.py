"""Tokenizer pieces: STFT round trip, band split, VQ straight-through, tokenizer training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mamjax import train
from mamjax.data.stream import BatchStream
from mamjax.maskgit import tokenizer as T
from mamjax.maskgit import vq


@pytest.mark.parametrize("length", [24, 150, 251])
def test_stft_istft_round_trip(length):
    x = jax.random.normal(jax.random.key(length), (3, length))
    u, back = jax.jit(lambda x: (T.stft(x, 8, 2), T.istft(T.stft(x, 8, 2), length, 8, 2)))(x)
    assert u.shape == (3, T.num_frames(length, 8, 2), 5)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-5)


def test_bands_sum_to_signal_and_channels_invert():
    x = jax.random.normal(jax.random.key(0), (2, 64))
    u = T.stft(x)
    lo, hi = T.split_bands(u)
    assert lo.shape[-1] == 1 and hi.shape[-1] == 4
    np.testing.assert_allclose(np.asarray(T.channels_to_band(T.band_to_channels(hi))), np.asarray(hi), atol=1e-6)
    zeros_h, zeros_l = jnp.zeros_like(hi), jnp.zeros_like(lo)
    x_l = T.istft(T.merge_bands(lo, zeros_h), 64)
    x_h = T.istft(T.merge_bands(zeros_l, hi), 64)
    np.testing.assert_allclose(np.asarray(x_l + x_h), np.asarray(x), atol=1e-5)
    # the low band is the smooth part: much less high-frequency energy than the signal
    assert np.abs(np.diff(np.asarray(x_l), axis=1)).mean() < 0.5 * np.abs(np.diff(np.asarray(x), axis=1)).mean()


def test_vq_nearest_and_straight_through_identity():
    cb = jax.random.normal(jax.random.key(0), (7, 3))
    z = jax.random.normal(jax.random.key(1), (4, 5, 3))
    q = vq.quantize(z, cb)
    d2 = ((np.asarray(z)[..., None, :] - np.asarray(cb)) ** 2).sum(-1)
    np.testing.assert_array_equal(np.asarray(q.codes), d2.argmin(-1))
    np.testing.assert_allclose(np.asarray(q.z_q), np.asarray(cb)[d2.argmin(-1)], atol=1e-6)
    w = jax.random.normal(jax.random.key(2), z.shape)
    g = jax.grad(lambda z: jnp.sum(w * vq.quantize(z, cb).z_q))(z)
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-6)  # d z_q / d z = identity
    jac = jax.jacobian(lambda z: vq.quantize(z, cb).z_q)(z[0, 0])
    np.testing.assert_allclose(np.asarray(jac), np.eye(3), atol=1e-6)
    # the codebook gets no gradient through z_q, only through the codebook loss
    gcb = jax.grad(lambda c: jnp.sum(w * vq.quantize(z, c).z_q))(cb)
    np.testing.assert_allclose(np.asarray(gcb), 0.0)


@pytest.mark.slow
def test_tokenizer_training_reduces_loss():
    length = 32
    tok = T.Tokenizer(length, hidden=16, code_dim=8, num_codes=8, down_l=2, down_h=1, rngs=nnx.Rngs(0))
    params, fns = T.tokenizer_functions(tok)
    t = np.linspace(0, 1, length, dtype=np.float32)
    rng = np.random.default_rng(0)
    x = np.stack([np.sin(2 * np.pi * (1 + 2 * rng.random()) * t + rng.random() * 6) for _ in range(32)])
    x = ((x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)).astype(np.float32)
    cl, ch = jax.jit(fns["tokenize"])(params, x)
    assert cl.shape == (32, tok.len_l) and ch.shape == (32, tok.len_h)
    assert jax.jit(fns["detokenize"])(params, cl, ch).shape == (32, length)
    opt = optax.adam(3e-3)
    step = train.make_train_step(lambda p, b, k: fns["loss"](p, b), opt)
    state = train.TrainState.create(params, opt)
    state, hist = train.fit(step, state, BatchStream(x, 16, seed=0), num_steps=40, key=jax.random.key(0),
                            log_every=10, progress=False)
    assert hist[-1]["loss"] < 0.7 * hist[0]["loss"], (hist[0]["loss"], hist[-1]["loss"])


def test_tokenizer_shapes_round_trip_and_bad_length():
    tok = T.Tokenizer(32, hidden=8, code_dim=4, num_codes=4, down_l=2, down_h=1, rngs=nnx.Rngs(0))
    params, fns = T.tokenizer_functions(tok)
    assert (tok.len_l, tok.len_h) == (5, 9)  # 17 frames -> ceil(17 / 4), ceil(17 / 2)

    def f(p, x):
        cl, ch = fns["tokenize"](p, x)
        return cl, ch, fns["detokenize"](p, cl, ch), fns["loss"](p, x)[0]

    cl, ch, xr, loss = jax.eval_shape(f, params, jax.ShapeDtypeStruct((3, 32), jnp.float32))
    assert cl.shape == (3, 5) and ch.shape == (3, 9) and xr.shape == (3, 32) and loss.shape == ()
    with pytest.raises(ValueError, match="`x` must be"):
        jax.eval_shape(tok.tokenize, jax.ShapeDtypeStruct((2, 30), jnp.float32))
