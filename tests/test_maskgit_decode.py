"""MaskGIT decoding: schedule counts, no re-masking, jit == eager reference, vmap == loop, random ties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax.maskgit import decoding as D
from mamjax.maskgit import schedule as S

K, L, B = 7, 16, 3


def toy_logits_fn(seed=0, num_classes=2):
    """A deterministic function of (tokens, mask, labels) that depends on the observed tokens."""
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    w = jax.random.normal(k1, (L, K))
    e = 0.5 * jax.random.normal(k2, (K, K))
    c = jax.random.normal(k3, (num_classes + 1, K))

    def fn(tokens, mask, labels):
        onehot = jax.nn.one_hot(jnp.where(mask, tokens, 0), K) * mask[..., None]
        ctx = jnp.einsum("blk,kj->bj", onehot, e)[:, None, :]
        lab = 0.0 if labels is None else c[labels][:, None, :]
        return w[None] + ctx + lab

    return fn


def _blank():
    return jnp.full((B, L), D.MASK_ID, jnp.int32), jnp.zeros((B, L), bool)


@pytest.mark.parametrize("schedule", ["cosine", pytest.param("linear", marks=pytest.mark.slow)])
def test_unmasks_scheduled_count_and_never_remasks(schedule):
    num_steps = 6
    toks, mask = _blank()
    out, state = jax.jit(lambda k: D.decode(toy_logits_fn(), toks, mask, k, num_steps=num_steps,
                                            schedule=schedule, return_state=True))(jax.random.key(0))
    hist = np.asarray(state.history)  # [T, B, L] observed after each step
    prev = np.zeros((B, L), bool)
    counts = S.hidden_counts(num_steps, L, schedule)
    for t in range(num_steps):
        expected = int(counts[t])  # the shared schedule, no "reveal at least one" clip
        assert ((~hist[t]).sum(1) == expected).all(), (t, (~hist[t]).sum(1), expected)
        assert (hist[t] | ~prev).all(), f"a revealed token was re-masked at step {t}"
        prev = hist[t]
    assert hist[-1].all()
    out = np.asarray(out)
    assert out.min() >= 0 and out.max() < K


def _reference_decode(logits_fn, key, labels, num_steps, schedule, temperature):
    """Eager NumPy reference: same random draws, independent top-k and bookkeeping."""
    tokens = np.full((B, L), D.MASK_ID, np.int64)
    mask = np.zeros((B, L), bool)
    masks_hist, tokens_hist = [], []
    for t in range(num_steps):
        key, k_sample, k_noise = jax.random.split(key, 3)
        logits = np.asarray(logits_fn(jnp.asarray(tokens, jnp.int32), jnp.asarray(mask), labels))
        sampled = np.asarray(jax.random.categorical(k_sample, jnp.asarray(logits), axis=-1))
        sampled = np.where(mask, tokens, sampled)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
            - logits.max(-1, keepdims=True)
        conf = np.take_along_axis(logp, sampled[..., None], -1)[..., 0]
        conf = np.where(mask, np.inf, conf)
        ratio = (t + 1) / num_steps
        n = int(S.hidden_counts(num_steps, L, schedule)[t])
        k_gumbel, k_tie = jax.random.split(k_noise)
        gumbel = np.asarray(jax.random.gumbel(k_gumbel, (B, L)))
        tie = np.asarray(jax.random.uniform(k_tie, (B, L)))
        noisy = conf + temperature * (1 - ratio) * gumbel
        new_mask = np.ones((B, L), bool)
        for b in range(B):
            new_mask[b, np.lexsort((tie[b], noisy[b]))[:n]] = False
        assert (new_mask | ~mask).all()
        new_tokens = np.where(new_mask, sampled, D.MASK_ID)
        assert (new_tokens[mask] == tokens[mask]).all(), "a revealed token changed"
        tokens, mask = new_tokens, new_mask
        masks_hist.append(mask.copy())
        tokens_hist.append(tokens.copy())
    return tokens, np.stack(masks_hist)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_jit_decode_matches_eager_reference(schedule):
    fn = toy_logits_fn(1)
    labels = jnp.array([0, 1, 0], jnp.int32)
    key = jax.random.key(42)
    num_steps, temp = 5, 3.0

    @jax.jit
    def run(key):
        toks, mask = _blank()
        return D.decode(fn, toks, mask, key, labels=labels, num_steps=num_steps, schedule=schedule,
                        temperature=temp, return_state=True)

    out, state = run(key)
    ref_tokens, ref_masks = _reference_decode(fn, key, labels, num_steps, schedule, temp)
    np.testing.assert_array_equal(np.asarray(state.history), ref_masks)
    np.testing.assert_array_equal(np.asarray(out), ref_tokens)


def test_vmap_over_keys_equals_loop():
    fn = toy_logits_fn(2)
    toks, mask = _blank()
    keys = jax.random.split(jax.random.key(3), 4)
    run = jax.jit(lambda k: D.decode(fn, toks, mask, k, num_steps=4))
    batched = np.asarray(jax.jit(jax.vmap(run))(keys))
    looped = np.stack([np.asarray(run(k)) for k in keys])
    np.testing.assert_array_equal(batched, looped)
    assert len({tuple(r.ravel()) for r in batched}) > 1, "different keys should give different samples"


def test_inpainting_keeps_observed_tokens():
    fn = toy_logits_fn(4)
    toks = jax.random.randint(jax.random.key(0), (B, L), 0, K)
    mask = jax.random.uniform(jax.random.key(1), (B, L)) < 0.5
    out = jax.jit(lambda k: D.decode(fn, toks, mask, k, num_steps=4))(jax.random.key(2))
    np.testing.assert_array_equal(np.asarray(out)[np.asarray(mask)], np.asarray(toks)[np.asarray(mask)])


def test_guidance():
    fn = toy_logits_fn(5)
    toks = jax.random.randint(jax.random.key(0), (B, L), 0, K)
    mask = jnp.ones((B, L), bool)
    y = jnp.array([0, 1, 1])
    c, u = fn(toks, mask, y), fn(toks, mask, jnp.full_like(y, 2))
    np.testing.assert_allclose(D.guided_logits(fn, toks, mask, y, 1.0), c)
    np.testing.assert_allclose(D.guided_logits(fn, toks, mask, y, 3.0, null_label=2), u + 3.0 * (c - u), rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match="null_label"):
        D.guided_logits(fn, toks, mask, y, 3.0)


def test_mask_by_random_topk_exact_count():
    conf = jax.random.normal(jax.random.key(0), (5, 11))
    n = jnp.array([0, 1, 5, 10, 11])
    m = D.mask_by_random_topk(jax.random.key(1), n, conf, 2.0)
    np.testing.assert_array_equal(np.asarray((~m).sum(1)), np.asarray(n))
    m0 = np.asarray(D.mask_by_random_topk(jax.random.key(1), n, conf, 0.0))
    for b in range(5):  # zero temperature: the lowest confidences are hidden
        np.testing.assert_array_equal(np.sort(np.flatnonzero(~m0[b])), np.sort(np.argsort(conf[b])[: int(n[b])]))


def test_bad_arguments():
    toks, mask = _blank()
    with pytest.raises(TypeError, match="mask"):
        D.decode(toy_logits_fn(), toks, mask.astype(jnp.int32), jax.random.key(0))
    with pytest.raises(ValueError, match="num_steps"):
        D.decode(toy_logits_fn(), toks, mask, jax.random.key(0), num_steps=0)
    with pytest.raises(ValueError, match="schedule"):
        D.decode(toy_logits_fn(), toks, mask, jax.random.key(0), schedule="exp")


def test_naive_and_resampling_follow_the_same_schedule():
    """N = 10, T = 10: the naive decoder hides the table's counts (not one token per step), as the ESS stage does."""
    n, t = 10, 10
    fn = lambda tok, m, y: jnp.zeros(tok.shape + (K,))
    toks, mask = jnp.full((2, n), D.MASK_ID, jnp.int32), jnp.zeros((2, n), bool)
    counts = S.hidden_counts(t, n).tolist()
    assert counts != list(range(n - 1, -1, -1))
    run = jax.jit(lambda k, lock: D.decode(fn, toks, mask, k, num_steps=t, lock_observed=lock, return_state=True)[1],
                  static_argnums=1)
    for lock in (True, False):
        st = run(jax.random.key(0), lock)
        assert (~np.asarray(st.history)).sum(-1)[:, 0].tolist() == counts, lock


def test_ties_broken_at_random_from_the_key():
    """All-equal confidences at zero temperature: the hidden positions are not the earliest; same key, same choice."""
    conf = jnp.zeros((1, 12))
    n = jnp.array([4])
    picks = [tuple(np.flatnonzero(~np.asarray(D.mask_by_random_topk(jax.random.key(s), n, conf, 0.0))[0]))
             for s in range(8)]
    assert all(len(p) == 4 for p in picks)
    assert any(p != (0, 1, 2, 3) for p in picks) and len(set(picks)) > 1
    again = np.asarray(D.mask_by_random_topk(jax.random.key(3), n, conf, 0.0))
    assert tuple(np.flatnonzero(~again[0])) == picks[3]
