import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mamjax import masks

# Each example compiles new shapes (about 0.3 s each): 10 examples per property keep the suite fast.
SETTINGS = settings(max_examples=10, deadline=None)


@SETTINGS
@given(d=st.integers(1, 40), seed=st.integers(0, 2**31 - 1), data=st.data())
def test_mask_by_count_hides_exactly_n(d, seed, data):
    n = data.draw(st.integers(0, d))
    m = masks.mask_by_count(jax.random.key(seed), d, n)
    assert m.dtype == jnp.bool_ and m.shape == (d,)
    assert int((~m).sum()) == n


@SETTINGS
@given(d=st.integers(1, 50), seed=st.integers(0, 2**31 - 1))
def test_random_ordering_is_permutation(d, seed):
    o = np.asarray(masks.random_ordering(jax.random.key(seed), d))
    assert sorted(o.tolist()) == list(range(d))


@SETTINGS
@given(d=st.integers(1, 20), seed=st.integers(0, 2**31 - 1))
def test_ordering_subsets_nested_and_follow_ordering(d, seed):
    o = masks.random_ordering(jax.random.key(seed), d)
    subs = np.asarray(masks.ordering_subsets(o))
    assert subs.shape == (d + 1, d)
    assert subs.sum(1).tolist() == list(range(d + 1))
    for t in range(d):
        # going from row t to t+1 reveals exactly position o[t]
        diff = np.flatnonzero(subs[t + 1] & ~subs[t])
        assert diff.tolist() == [int(o[t])]


def test_mask_by_rate_matches_rate_and_edges():
    keys = jax.random.split(jax.random.key(0), 2000)
    m = jax.vmap(masks.mask_by_rate, in_axes=(0, None, None))(keys, 50, 0.3)
    hidden = 1.0 - np.asarray(m).mean()
    assert abs(hidden - 0.3) < 0.01  # 100k Bernoulli draws: sd 0.0015
    assert bool(masks.mask_by_rate(keys[0], 10, 0.0).all())
    assert not bool(masks.mask_by_rate(keys[0], 10, 1.0).any())


def test_vmap_over_keys_and_rates_equals_loop():
    keys = jax.random.split(jax.random.key(1), 5)
    rates = jnp.linspace(0.0, 1.0, 5)
    vm = jax.jit(jax.vmap(masks.mask_by_rate, in_axes=(0, None, 0)), static_argnums=1)(keys, 12, rates)
    loop = np.stack([masks.mask_by_rate(k, 12, r) for k, r in zip(keys, rates)])
    np.testing.assert_array_equal(vm, loop)
    counts = jnp.arange(5)
    vm = jax.vmap(masks.mask_by_count, in_axes=(0, None, 0))(keys, 12, counts)
    loop = np.stack([masks.mask_by_count(k, 12, int(c)) for k, c in zip(keys, counts)])
    np.testing.assert_array_equal(vm, loop)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_schedules(name):
    g = masks.get_schedule(name)
    np.testing.assert_allclose(g(0.0), 1.0, atol=1e-7)
    np.testing.assert_allclose(g(1.0), 0.0, atol=1e-6)
    r = jnp.linspace(0, 1, 11)
    assert bool(jnp.all(jnp.diff(g(r)) <= 0))
    n = [int(masks.num_hidden_at(s, 8, 64, name)) for s in range(8)]
    assert n == sorted(n, reverse=True) and n[-1] == 0 and n[0] < 64
    if name == "cosine":
        assert n[0] == int(np.floor(64 * np.cos(np.pi / 2 / 8)))


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_bad_rate_named(rate):
    with pytest.raises(ValueError, match="`rate`"):
        masks.mask_by_rate(jax.random.key(0), 4, rate)


def test_bad_inputs_named():
    with pytest.raises(ValueError, match="`num_hidden`"):
        masks.mask_by_count(jax.random.key(0), 4, 5)
    with pytest.raises(TypeError, match="`num_hidden`"):
        masks.mask_by_count(jax.random.key(0), 4, 1.5)
    with pytest.raises(ValueError, match="`num_dims`"):
        masks.mask_by_rate(jax.random.key(0), 0, 0.5)
    with pytest.raises(ValueError, match="`ordering`"):
        masks.ordering_mask(jnp.zeros((2, 2), jnp.int32), 1)
    with pytest.raises(TypeError, match="`ordering`"):
        masks.ordering_mask(jnp.zeros((3,)), 1)
    with pytest.raises(TypeError, match="`mask`.*boolean"):
        masks.check_mask(jnp.ones(3, jnp.int32))
    with pytest.raises(ValueError, match="`mask`.*shape"):
        masks.check_mask(jnp.ones(3, bool), shape=(4,))
    with pytest.raises(ValueError, match="`schedule`"):
        masks.get_schedule("quadratic")


def test_value_checks_under_jit_through_checkify():
    """Traced values are unchecked by default (no cost under jit) and checked inside `checked`."""
    from jax.experimental import checkify

    from mamjax.marginal import arm

    def take(x):
        masks.check_token_ids(x, 3, "x")
        return x * 2

    bad = jnp.array([0, 1, 3])
    assert jnp.array_equal(jax.jit(take)(bad), bad * 2)  # plain jit: silent, as documented
    safe = masks.checked(take)
    assert jnp.array_equal(safe(jnp.array([0, 1, 2])), jnp.array([0, 2, 4]))
    with pytest.raises(checkify.JaxRuntimeError, match=r"`x` must hold ids in \[0, 3\)"):
        safe(bad)
    # vmapped orderings and counts, and a real entry point (the ARM loss gathers with token ids).
    orderings = jnp.array([[0, 1, 2], [0, 0, 2]])
    with pytest.raises(checkify.JaxRuntimeError, match="permutation of range"):
        masks.checked(jax.vmap(lambda o: masks.ordering_mask(o, 1)))(orderings)
    with pytest.raises(checkify.JaxRuntimeError, match=r"`num_hidden` must lie in \[0, 4\]"):
        masks.checked(lambda n: masks.mask_by_count(jax.random.key(0), 4, n))(jnp.int32(5))
    def cond_apply(params, x, mask):  # a uniform binary conditional: logits [B, D, 2]
        return jnp.zeros(x.shape + (2,)) + params

    mask = jnp.zeros((2, 3), bool)
    score = masks.checked(lambda x: arm.conditional_log_probs(cond_apply, 0.0, x, mask))
    np.testing.assert_allclose(score(jnp.array([[0, 1, 1], [1, 0, 0]])), np.full((2, 3), np.log(0.5)), rtol=1e-6)
    with pytest.raises(checkify.JaxRuntimeError, match=r"`x` must hold ids in \[0, 2\)"):
        score(jnp.array([[0, 1, 2], [1, 1, 1]]))  # a grey level 2 given to a binary model
    # Outside the context nothing is emitted: the jaxpr of a checked function traced plainly has no check.
    assert "check" not in str(jax.make_jaxpr(take)(bad))


def test_num_hidden_at_is_the_exact_schedule():
    """The core count equals the exact table (float32 gave n/2 - 1 at r = 2/3), also traced."""
    assert int(masks.num_hidden_at(1, 3, 10, "cosine")) == 5  # floor(10 cos(pi/3)) = 5 exactly
    for t, n in [(3, 10), (6, 64), (12, 256), (10, 10)]:
        table = masks.hidden_count_table(t, n, "cosine")[n]
        got = jax.jit(lambda s: masks.num_hidden_at(s, t, n, masks.cosine_schedule))(jnp.arange(t))
        np.testing.assert_array_equal(np.asarray(got), table)
        exact = [int(np.floor(n * np.cos(np.pi * (s + 1) / (2 * t)) + 1e-9)) for s in range(t)]
        assert table.tolist() == exact


@pytest.mark.parametrize("d", [1, 5, 13])
def test_selection_mask_hides_exactly_n_for_every_count(d):
    keys = jax.random.split(jax.random.key(d), d + 1)
    m = jax.vmap(masks.selection_mask, in_axes=(0, None, 0))(keys, d, jnp.arange(d + 1))
    np.testing.assert_array_equal(np.asarray((~m).sum(-1)), np.arange(d + 1))
    # the batched form from the same uniforms gives the same masks
    u = jax.vmap(lambda k: jax.random.uniform(k, (d,)))(keys)
    np.testing.assert_array_equal(np.asarray(masks.selection_masks(u, jnp.arange(d + 1))), np.asarray(m))


def test_selection_mask_is_uniform_over_subsets():
    """Chi-square over all C(5, 2) = 10 subsets from 20,000 draws (p-value above 1e-4)."""
    from scipy import stats

    n = 20000
    m = jax.vmap(masks.selection_mask, in_axes=(0, None, None))(jax.random.split(jax.random.key(0), n), 5, 2)
    codes = np.asarray((~m).astype(np.int32)) @ (1 << np.arange(5))
    _, counts = np.unique(codes, return_counts=True)
    assert counts.size == 10
    assert stats.chisquare(counts).pvalue > 1e-4


def test_selection_mask_bad_count():
    with pytest.raises(ValueError, match="`num_hidden`"):
        masks.selection_mask(jax.random.key(0), 4, 5)
    with pytest.raises(TypeError, match="`num_hidden`"):
        masks.selection_mask(jax.random.key(0), 4, 1.5)
