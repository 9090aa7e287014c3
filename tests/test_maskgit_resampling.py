"""Critical resampling, both variants: keep the kept tokens (mamjax) or redraw them all (official code),
and the prior loss on every position (the official loss) that the redrawing variant relies on."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import masks as masks_lib
from mamjax.maskgit import decoding as D
from mamjax.maskgit import ess, pipeline, prior
from mamjax.maskgit import schedule as S

K, N, B, T = 6, 10, 4, 6


def _codebook():
    return jax.random.normal(jax.random.key(9), (K, 3))


def copying_prior(other: int | None = None):
    """Logits that put (almost) all mass on the observed token at observed positions, or on token
    ``other`` there when given; uniform-ish position-dependent logits at hidden positions."""
    w = jax.random.normal(jax.random.key(5), (N, K))

    def fn(tokens, mask, labels):
        seen = jnp.where(mask, tokens, 0) if other is None else jnp.full(tokens.shape, other)
        return jnp.where(mask[..., None], 50.0 * jax.nn.one_hot(seen, K), w[None])

    return fn


def _reverse(tokens, t_star):
    """A ``ReverseResult`` at step ``t_star`` keeping the last ``N - hidden_counts[t_star]`` positions."""
    hidden = int(S.hidden_counts(T, N)[t_star])
    mask = jnp.broadcast_to(jnp.arange(N) >= hidden, tokens.shape)
    return ess.ReverseResult(jnp.full((tokens.shape[0],), t_star, jnp.int32), jnp.where(mask, tokens, D.MASK_ID),
                             mask, jnp.zeros((tokens.shape[0], T)))


def test_last_step_redraws_kept_tokens_only_when_asked():
    """From the last step (which hides nothing) and a prior that predicts token 0 where it sees a token:
    redrawing turns every kept token into 0, keeping leaves them as they were."""
    toks = jnp.full((B, N), 3, jnp.int32)
    mask = jnp.broadcast_to(jnp.arange(N) >= 2, (B, N))
    run = lambda redraw: np.asarray(D.decode(copying_prior(other=0), toks, mask, jax.random.key(0), num_steps=T,
                                             start_step=jnp.full((B,), T - 1), num_initial_hidden=jnp.int32(N),
                                             lock_observed=False, redraw_observed=redraw))
    kept = np.asarray(mask)
    assert (run(True)[kept] == 0).all()
    assert (run(False)[kept] == 3).all()


@pytest.mark.parametrize("t_star", [3, pytest.param(1, marks=pytest.mark.slow)])
def test_redraw_equals_keep_under_a_prior_that_reproduces_what_it_sees(t_star):
    """The two variants differ only by the draws at kept positions: a prior that copies them makes them equal."""
    toks = jax.random.randint(jax.random.key(1), (B, N), 0, K)
    rev, cb = _reverse(toks, t_star), _codebook()
    run = jax.jit(lambda k, redraw: ess.critical_resampling(copying_prior(), rev, None, cb, k, num_steps=T,
                                                            redraw_kept=redraw), static_argnums=1)
    for seed in range(3):
        np.testing.assert_array_equal(np.asarray(run(jax.random.key(seed), True)),
                                      np.asarray(run(jax.random.key(seed), False)))


@pytest.mark.slow
def test_redraw_changes_kept_tokens_under_a_prior_that_does_not():
    toks = jax.random.randint(jax.random.key(2), (B, N), 1, K)
    rev, cb = _reverse(toks, 3), _codebook()
    out = {r: np.asarray(ess.critical_resampling(copying_prior(other=0), rev, None, cb, jax.random.key(0),
                                                 num_steps=T, redraw_kept=r)) for r in (True, False)}
    assert not np.array_equal(out[True], out[False])
    assert (out[True] == 0).mean() > (out[False] == 0).mean()


@pytest.mark.slow
def test_ess_decode_redraw_runs():
    out = jax.jit(lambda k: ess.ess_decode(copying_prior(), k, _codebook(), batch_size=B, seq_len=N, num_steps=T,
                                           redraw_kept=True))(jax.random.key(3))
    assert out.shape == (B, N) and (np.asarray(out) >= 0).all() and (np.asarray(out) < K).all()


def test_redraw_needs_an_unlocked_decode():
    with pytest.raises(ValueError, match="redraw_observed"):
        D.decode(copying_prior(), jnp.zeros((B, N), jnp.int32), jnp.zeros((B, N), bool), jax.random.key(0),
                 num_steps=T, redraw_observed=True)


def test_loss_on_all_positions_is_the_token_weighted_mean():
    """``positions="all"`` averages the cross-entropy over observed and hidden tokens: with log K at hidden
    positions and a known cross-entropy c at observed ones it is (H log K + O c) / (H + O)."""
    seen = []

    def fn(tokens, mask, labels):
        if masks_lib.is_concrete(mask):  # skip the shape-only trace of the id check
            seen.append(np.asarray(mask))
        return jnp.where(mask[..., None], jax.nn.one_hot(jnp.zeros_like(tokens), K), 0.0)

    targets = jnp.full((B, N), 2, jnp.int32)
    c_obs = float(-jax.nn.log_softmax(jax.nn.one_hot(0, K))[2])  # target 2 under logits e_0
    for positions in ("hidden", "all"):
        seen.clear()
        loss, _ = prior.maskgit_loss(fn, targets, targets, jax.random.key(4), positions=positions)
        hid = int((~seen[0]).sum())
        obs = seen[0].size - hid
        want = np.log(K) if positions == "hidden" else (hid * np.log(K) + obs * c_obs) / (hid + obs)
        assert 0 < obs < seen[0].size
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    with pytest.raises(ValueError, match="positions"):
        prior.maskgit_loss(fn, targets, targets, jax.random.key(4), positions="observed")


def test_loss_on_all_positions_skips_the_unmaskable_context():
    """The high band's input carries the low band as unmaskable context: it is never a target (here a
    counted context position would cost about 50 nats)."""
    maskable = jnp.arange(N) >= 4

    def fn(tokens, mask, labels):
        return jnp.where(maskable[None, :, None], 0.0, 50.0 * jax.nn.one_hot(jnp.ones_like(tokens), K))

    targets = jnp.where(maskable, 2, 0)
    loss, _ = prior.maskgit_loss(fn, jnp.zeros((B, N), jnp.int32), jnp.broadcast_to(targets, (B, N)),
                                 jax.random.key(0), maskable=maskable, positions="all")
    np.testing.assert_allclose(float(loss), np.log(K), rtol=1e-6)


def test_bad_method_and_loss_positions_name_the_argument():
    with pytest.raises(ValueError, match="method"):
        pipeline.make_sampler(None, None, method="official", batch_size=2)
    with pytest.raises(ValueError, match="exceed the 3 low-band tokens"):  # the grouped critic's G <= N_l
        pipeline.make_sampler(types.SimpleNamespace(len_l=3), None, method="ess_redraw_g4", batch_size=2)
    with pytest.raises(ValueError, match="loss_positions"):
        pipeline.train_prior(np.zeros((2, 3), np.int32), np.zeros((2, 4), np.int32), np.zeros(2, np.int32), 2,
                             num_codes=K, loss_positions="observed")
