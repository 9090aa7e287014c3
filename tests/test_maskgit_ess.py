"""Self-Token-Critic and ESS: batched critic == N separate passes, reverse-sampling stop rule."""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamjax import nn
from mamjax.maskgit import decoding as D
from mamjax.maskgit import ess, self_critic
from mamjax.maskgit import schedule as S

K, N, B, DIM = 6, 10, 3, 4
KEY = jax.random.key(77)  # orders the critic's ties in critical reverse sampling


def toy_logits_fn(seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    w = jax.random.normal(k1, (N, K))
    e = jax.random.normal(k2, (N, K, N, K))  # position-and-token dependent context
    c = jax.random.normal(k3, (3, K))

    def fn(tokens, mask, labels):
        onehot = jax.nn.one_hot(jnp.where(mask, tokens, 0), K) * mask[..., None]
        lab = 0.0 if labels is None else c[labels][:, None, :]
        return w[None] + jnp.einsum("bjk,jknm->bnm", onehot, e) + lab

    return fn


def _codebook():
    return jax.random.normal(jax.random.key(9), (K, DIM))


def test_critic_one_batched_pass_equals_n_separate_passes():
    fn, cb = toy_logits_fn(), _codebook()
    tokens = jax.random.randint(jax.random.key(1), (B, N), 0, K)
    labels = jnp.array([0, 1, 2])
    got = np.asarray(self_critic.critic_log_probs(fn, tokens, labels, cb))
    scores = np.zeros((B, N))
    for n in range(N):
        m = jnp.ones((B, N), bool).at[:, n].set(False)
        pred = np.asarray(jnp.argmax(fn(tokens, m, labels)[:, n], -1))
        scores[:, n] = -np.sum((np.asarray(cb)[np.asarray(tokens[:, n])] - np.asarray(cb)[pred]) ** 2, -1)
    ref = scores - np.log(np.exp(scores - scores.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - scores.max(1, keepdims=True)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("groups", [None, 3])  # exact (N copies) and grouped (3 copies): one batched call
def test_critic_is_one_forward_pass(groups):
    calls = []
    fn = toy_logits_fn()

    def counting(tokens, mask, labels):
        calls.append(tokens.shape)
        return fn(tokens, mask, labels)

    tokens = jax.random.randint(jax.random.key(1), (B, N), 0, K)
    self_critic.critic_log_probs(counting, tokens, None, _codebook(), num_groups=groups)
    assert len(calls) == 1


def _reference_stop(errors, no_diff, T, ma_rate=0.3, thr=1.0):
    """The official loop (TimeVQVAE critical_reverse_sampling) on precomputed errors."""
    hist = collections.deque(maxlen=round(T * ma_rate))
    prev = None
    for t in range(1, T)[::-1]:
        if no_diff[t]:
            return t
        err = errors[t]
        if t + 1 == T:
            ma, prev = 0.0, err
        else:
            hist.append(err / (prev + 1e-5))
            ma, prev = np.mean(hist), err
        if ma > thr and t + 1 != T:
            return t
        if t == 1:
            return 1
    return 1


@pytest.mark.parametrize("T", [2, 3, 8, 10, 12])
def test_stopping_step_matches_official_loop(T):
    rng = np.random.default_rng(T)
    stop = jax.jit(lambda e, nd: ess.stopping_step(e, nd, T))
    for _ in range(30):
        errors = rng.gamma(2.0, 1.0, T).astype(np.float32) * rng.choice([0.5, 1, 2], T)
        no_diff = rng.random(T) < 0.1
        assert int(stop(errors, no_diff)) == _reference_stop(errors, no_diff, T)


def test_critical_reverse_sampling_masks_least_likely():
    fn, cb, T = toy_logits_fn(2), _codebook(), 8
    tokens = jax.random.randint(jax.random.key(3), (B, N), 0, K)
    res = jax.jit(lambda t: ess.critical_reverse_sampling(fn, t, None, cb, KEY, num_steps=T))(tokens)
    logp = np.asarray(self_critic.critic_log_probs(fn, tokens, None, cb))
    for b in range(B):
        t_star = int(res.t_star[b])
        assert 1 <= t_star <= T - 1
        n_hidden = int(S.hidden_counts(T, N)[t_star])
        hidden = np.flatnonzero(~np.asarray(res.mask[b]))
        assert len(hidden) == n_hidden
        kept_logp = logp[b][np.asarray(res.mask[b])]
        assert not len(kept_logp) or logp[b][hidden].max(initial=-np.inf) <= kept_logp.min()
        kept = np.asarray(res.mask[b])
        np.testing.assert_array_equal(np.asarray(res.tokens[b])[kept], np.asarray(tokens[b])[kept])
        assert (np.asarray(res.tokens[b])[~kept] == D.MASK_ID).all()


def test_reverse_error_matches_direct_computation():
    fn, cb, T = toy_logits_fn(4), _codebook(), 6
    tokens = jax.random.randint(jax.random.key(5), (1, N), 0, K)
    res = ess.critical_reverse_sampling(fn, tokens, None, cb, KEY, num_steps=T)
    logp = np.asarray(self_critic.critic_log_probs(fn, tokens, None, cb))[0]
    order = np.argsort(np.asarray(D.random_ranks(KEY, jnp.asarray(logp)[None]))[0])  # least likely first
    cbn, tok = np.asarray(cb), np.asarray(tokens)[0]
    for t in range(int(res.t_star[0]), T):  # the steps the walk reached
        n_prev = int(S.hidden_counts(T, N)[t - 1])
        n_t = int(S.hidden_counts(T, N)[t])
        if n_prev == n_t:
            continue
        m = np.ones(N, bool)
        m[order[:n_prev]] = False
        pred = np.asarray(jnp.argmax(fn(tokens, jnp.asarray(m)[None], None), -1))[0]
        rev = order[n_t:n_prev]
        err = np.mean((cbn[tok[rev]] - cbn[pred[rev]]) ** 2)
        np.testing.assert_allclose(float(res.errors[0, t]), err, rtol=1e-5)


def test_ess_decode_end_to_end():
    fn, cb = toy_logits_fn(6), _codebook()
    labels = jnp.array([0, 1, 0])
    run = jax.jit(lambda k: ess.ess_decode(fn, k, cb, batch_size=B, seq_len=N, labels=labels, num_steps=6,
                                           guidance_scale=2.0, null_label=2, return_info=True))
    out, (naive, rev) = run(jax.random.key(0))
    out = np.asarray(out)
    assert out.shape == (B, N) and out.min() >= 0 and out.max() < K
    assert np.asarray(naive).min() >= 0
    t_star = np.asarray(rev.t_star)
    assert ((t_star >= 1) & (t_star <= 5)).all()
    # s_{t*} holds exactly the schedule's hidden count at t*; the output decodes every slot
    expected_observed = [N - int(S.hidden_counts(6, N)[int(t)]) for t in t_star]
    np.testing.assert_array_equal(np.asarray(rev.mask).sum(1), expected_observed)


def test_reverse_t_star_batch_level_and_per_sequence():
    fn, cb, T = toy_logits_fn(7), _codebook(), 8
    tokens = jax.random.randint(jax.random.key(8), (4, N), 0, K)
    run = jax.jit(lambda t: (ess.critical_reverse_sampling(fn, t, None, cb, KEY, num_steps=T),
                             ess.critical_reverse_sampling(fn, t, None, cb, KEY, num_steps=T, per_sequence=True)))
    batch, per_seq = run(tokens)
    errors = np.asarray(batch.errors)
    counts = [int(S.hidden_counts(T, N)[t]) for t in range(T)]
    no_diff = np.array([counts[t] == ([N] + counts)[t] for t in range(T)])
    expected_batch = _reference_stop(errors.mean(0), no_diff, T)
    assert (np.asarray(batch.t_star) == expected_batch).all()
    for b in range(4):
        assert int(per_seq.t_star[b]) == _reference_stop(np.asarray(per_seq.errors[b]), no_diff, T)


@pytest.mark.parametrize("per_sequence", [False, True])
def test_early_exit_walk_equals_batched_walk(per_sequence):
    fn, cb, T = toy_logits_fn(10), _codebook(), 8
    tokens = jax.random.randint(jax.random.key(11), (5, N), 0, K)
    run = jax.jit(lambda t, e: ess.critical_reverse_sampling(fn, t, None, cb, KEY, num_steps=T, per_sequence=per_sequence,
                                                             early_exit=e), static_argnums=1)
    fast, full = run(tokens, True), run(tokens, False)
    np.testing.assert_array_equal(np.asarray(fast.t_star), np.asarray(full.t_star))
    np.testing.assert_array_equal(np.asarray(fast.mask), np.asarray(full.mask))
    reached = np.arange(T)[None] >= int(np.min(fast.t_star))
    np.testing.assert_allclose(np.asarray(fast.errors) * reached, np.asarray(full.errors) * reached, rtol=1e-6)


def _counting(fn, calls):
    def counted(*args):
        jax.debug.callback(lambda: calls.append(1))
        return fn(*args)
    return counted


def test_early_exit_walk_calls_the_prior_once_per_reached_step():
    fn, cb, T = toy_logits_fn(12), _codebook(), 10
    tokens = jax.random.randint(jax.random.key(13), (2, N), 0, K)
    logp = self_critic.critic_log_probs(fn, tokens, None, cb)
    calls = []
    res = jax.jit(lambda t, c: ess.critical_reverse_sampling(_counting(fn, calls), t, None, cb, KEY, num_steps=T,
                                                             critic_logp=c))(tokens, logp)
    jax.effects_barrier()
    t_star = int(res.t_star[0])
    counts = [int(S.hidden_counts(T, N)[t]) for t in range(T)]
    stopped_on_no_diff = counts[t_star] == ([N] + counts)[t_star]
    assert len(calls) == T - t_star - int(stopped_on_no_diff)


def test_resampling_skips_the_critic_when_nothing_is_hidden():
    fn, cb, T = toy_logits_fn(14), _codebook(), 6
    tokens = jax.random.randint(jax.random.key(15), (2, N), 0, K)
    rev = ess.critical_reverse_sampling(fn, tokens, None, cb, KEY, num_steps=T)
    critic_calls = []
    loo = _counting(lambda t, labels: self_critic.leave_one_out_logits(fn, t, labels), critic_calls)
    jax.jit(lambda k: ess.critical_resampling(fn, rev, None, cb, k, num_steps=T, leave_one_out_fn=loo))(
        jax.random.key(0))
    jax.effects_barrier()
    t_star = int(rev.t_star[0])
    hides = [int(S.hidden_counts(T, N)[t]) > 0 for t in range(t_star, T)]
    assert len(critic_calls) == sum(hides) < T - t_star


def test_transformer_leave_one_out_gives_the_same_ess_samples():
    """The prior's cheaper leave-one-out pass is an exact stand-in for the vmapped critic."""
    module = nn.TransformerEncoder(K, N, dim=16, depth=2, num_heads=2, num_classes=2, rngs=nnx.Rngs(3))
    apply, params = nn.functional(module)
    loo_apply, _ = nn.functional(module, method="leave_one_out")
    fn = lambda t, m, y: apply(params, t, m, y)
    loo = lambda t, y: loo_apply(params, t, y)
    labels = jnp.array([0, 1, 2])
    run = jax.jit(lambda k, f: ess.ess_decode(fn, k, _codebook(), batch_size=B, seq_len=N, labels=labels,
                                              num_steps=6, leave_one_out_fn=f), static_argnums=1)
    for seed in range(3):
        np.testing.assert_array_equal(np.asarray(run(jax.random.key(seed), None)),
                                      np.asarray(run(jax.random.key(seed), loo)))


def test_reverse_sampling_breaks_critic_ties_at_random():
    """All-zero critic scores: the re-masked tokens are not always the earliest; the same key re-masks the same ones."""
    fn, cb, T = toy_logits_fn(16), _codebook(), 8
    tokens = jax.random.randint(jax.random.key(17), (1, N), 0, K)
    zeros = jnp.zeros((1, N))
    run = jax.jit(lambda k: ess.critical_reverse_sampling(fn, tokens, None, cb, k, num_steps=T, critic_logp=zeros))
    hidden = [tuple(np.flatnonzero(~np.asarray(run(jax.random.key(s)).mask[0]))) for s in range(6)]
    firsts = [tuple(range(len(h))) for h in hidden]
    assert hidden != firsts and len(set(hidden)) > 1
    assert tuple(np.flatnonzero(~np.asarray(run(jax.random.key(2)).mask[0]))) == hidden[2]


# ESS outputs pinned for a fixed key (issue 17): produced by the implementation of commit 686248f on
# the toy prior above; a restructure of ``ess_decode`` for speed must keep them (any change to the
# algorithm, the key splitting or the order of random draws changes them).
PIN_KEY = jax.random.key(2026)
PIN_LABELS = jnp.array([0, 1, 2])
_DEFAULT = [[0, 2, 4, 1, 3, 3, 0, 4, 0, 0], [2, 0, 5, 0, 5, 0, 5, 5, 0, 0], [0, 2, 3, 0, 3, 3, 3, 4, 2, 0]]
PINNED = [  # (ess_decode keyword arguments, tokens, t*)
    (dict(), _DEFAULT, [3, 3, 3]),
    (dict(threshold=float("inf")), _DEFAULT, [3, 3, 3]),
    (dict(early_exit=False), _DEFAULT, [3, 3, 3]),
    (dict(per_sequence=True), [[0, 2, 4, 1, 3, 0, 4, 4, 0, 0], [5, 0, 0, 0, 5, 0, 5, 5, 5, 0],
                               [0, 2, 3, 0, 3, 3, 3, 4, 2, 0]], [7, 6, 3]),
    (dict(redraw_kept=True), [[1, 2, 1, 0, 0, 0, 0, 4, 5, 4], [2, 0, 0, 0, 5, 3, 5, 3, 5, 2],
                              [3, 2, 2, 4, 3, 3, 0, 0, 3, 2]], [3, 3, 3]),
]


@pytest.mark.parametrize("kwargs,tokens,t_star", PINNED, ids=[str(p[0]) for p in PINNED])
def test_ess_samples_match_pinned_reference(kwargs, tokens, t_star):
    codebook = _codebook()
    out, (_, reverse) = ess.ess_decode(toy_logits_fn(), PIN_KEY, codebook, batch_size=B, seq_len=N, labels=PIN_LABELS,
                                       return_info=True, **kwargs)
    np.testing.assert_array_equal(np.asarray(out), np.array(tokens))
    np.testing.assert_array_equal(np.asarray(reverse.t_star), np.array(t_star))


def test_ess_under_jit_matches_eager():
    codebook = _codebook()
    fn = toy_logits_fn()
    run = jax.jit(lambda k: ess.ess_decode(fn, k, codebook, batch_size=B, seq_len=N, labels=PIN_LABELS))
    np.testing.assert_array_equal(np.asarray(run(PIN_KEY)), np.array(_DEFAULT))


# The grouped critic (critic_groups = G): G passes, each hiding the positions n with n mod G = g.

def _grouped_reference(fn, tokens, labels, groups):
    """Position n's logits from a separate call that hides exactly {m : m mod G = n mod G}."""
    out = np.zeros(tokens.shape + (K,), np.float32)
    for n in range(N):
        observed = jnp.broadcast_to(jnp.arange(N) % groups != n % groups, tokens.shape)
        out[:, n] = np.asarray(fn(tokens, observed, labels)[:, n])
    return out


@pytest.mark.parametrize("groups", [1, 3, 4, N])
def test_grouped_critic_equals_separate_passes(groups):
    fn = toy_logits_fn(3)
    tokens = jax.random.randint(jax.random.key(4), (B, N), 0, K)
    labels = jnp.array([0, 1, 2])
    got = np.asarray(self_critic.grouped_leave_out_logits(fn, tokens, labels, groups))
    np.testing.assert_allclose(got, _grouped_reference(fn, tokens, labels, groups), rtol=1e-5, atol=1e-5)
    if groups == N:  # G = N is the exact leave-one-out critic
        exact = np.asarray(self_critic.leave_one_out_logits(fn, tokens, labels))
        np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)
    if groups == 1:  # everything hidden at once
        alone = np.asarray(fn(tokens, jnp.zeros((B, N), bool), labels))
        np.testing.assert_allclose(got, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [0, N + 1, 2.0, True, -1])
def test_grouped_critic_rejects_bad_groups(bad):
    tokens = jnp.zeros((B, N), jnp.int32)
    with pytest.raises(ValueError, match="num_groups"):
        self_critic.critic_log_probs(toy_logits_fn(), tokens, None, _codebook(), num_groups=bad)
    with pytest.raises(ValueError, match="num_groups"):
        ess.ess_decode(toy_logits_fn(), KEY, _codebook(), batch_size=B, seq_len=N, critic_groups=bad)


def test_ess_with_n_groups_is_the_exact_ess_and_fewer_groups_differ():
    codebook, fn = _codebook(), toy_logits_fn()
    run = lambda g: np.asarray(ess.ess_decode(fn, PIN_KEY, codebook, batch_size=B, seq_len=N, labels=PIN_LABELS,
                                              critic_groups=g))
    np.testing.assert_array_equal(run(N), np.array(_DEFAULT))
    two = run(2)
    assert two.shape == (B, N) and two.min() >= 0 and two.max() < K
    np.testing.assert_array_equal(two, run(2))  # same key, same samples


def test_parse_method():
    from mamjax.maskgit.sample import parse_method
    assert parse_method("naive") == ("naive", None)
    assert parse_method("ess") == ("ess", None)
    assert parse_method("ess_redraw_g4") == ("ess_redraw", 4)
    assert parse_method("ess_g12") == ("ess", 12)
    for bad in ("naive_g4", "ess_g0", "ess_g", "ess_gx", "ess_redraw_g04", "greedy", 3):
        with pytest.raises(ValueError, match="method"):
            parse_method(bad)


def test_leave_one_out_chunk_follows_the_activation_budget():
    from mamjax.maskgit import prior as prior_lib
    # width 64 (the CPU default): the chunks critic_bench measured, 6144 copy tokens, unchanged
    assert [prior_lib.leave_one_out_batch_size(n) for n in (10, 13, 16, 19)] == [55, 33, 22, 16]
    assert prior_lib.leave_one_out_batch_size(45, 256) == 1  # the official GunPoint prior: one sequence
    assert prior_lib.leave_one_out_batch_size(19, 256) == 4
    assert prior_lib.leave_one_out_batch_size(500, 1024) == 1  # never below one sequence
    with pytest.raises(ValueError, match="`dim` must be a positive int"):
        prior_lib.leave_one_out_batch_size(10, 0)
