"""AO-ARM: chain-rule marginals against enumeration (D <= 6, all K^D states)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from mamjax import masks
from mamjax.marginal import arm, exact

# Fast compilation for test-sized programs: XLA's expensive passes cost more than they save here.
_FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

D, K = 5, 2

# One compiled function per (network, shape): eager op-by-op dispatch is what makes tests slow.
_arm_log_marginal = jax.jit(arm.arm_log_marginal, compiler_options=_FAST, static_argnums=0)


@pytest.fixture(scope="module")
def net():
    return arm.make_conditional_net(jax.random.key(0), D, K, width=32, depth=2)


def _random_table(key, num_dims, num_classes):
    states = exact.enumerate_states(num_dims, num_classes)
    log_p = exact.normalize_table(2.0 * jax.random.normal(key, (states.shape[0],)))
    return log_p, jnp.asarray(states)


def test_exact_table_helpers_match_numpy_loops():
    log_p, states = _random_table(jax.random.key(1), 4, 3)
    p = np.exp(np.asarray(log_p, np.float64))
    x = np.array([[2, 0, 1, 1]], np.int32)
    mask = np.array([[True, False, True, False]])
    want = sum(p[r] for r, s in enumerate(np.asarray(states)) if s[0] == 2 and s[2] == 1)
    got = exact.table_log_marginal((log_p, states), jnp.asarray(x), jnp.asarray(mask))
    np.testing.assert_allclose(np.exp(got[0]), want, rtol=1e-5)
    logits = exact.table_conditional_logits((log_p, states), jnp.asarray(x), jnp.asarray(mask), 3)
    cond = np.exp(np.asarray(jax.nn.log_softmax(logits[0, 1])))
    want_c = [sum(p[r] for r, s in enumerate(np.asarray(states)) if s[0] == 2 and s[2] == 1 and s[1] == v) / want
              for v in range(3)]
    np.testing.assert_allclose(cond, want_c, rtol=1e-4, atol=1e-6)


def test_chain_rule_with_exact_conditionals_recovers_exact_marginals():
    """Indexing check: exact conditionals through the chain rule give exact marginals, any S, any sigma."""
    log_p, states = _random_table(jax.random.key(2), D, 3)
    table = (log_p, states)
    cond = functools.partial(exact.table_conditional_logits, num_classes=3)
    key = jax.random.key(3)
    for i in range(6):
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, i), 3)
        x = jax.random.randint(k1, (D,), 0, 3)
        mask = masks.mask_by_rate(k2, D, 0.5)
        sigma = masks.random_ordering(k3, D)
        got = _arm_log_marginal(cond, table, x, mask, sigma)
        want = exact.table_log_marginal(table, x[None], mask[None])[0]
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_arm_marginal_sums_over_next_variable(net):
    """sum_{x_i} p(x_S, x_i) = p(x_S) for S = sigma(<t), i = sigma(t), under a random network."""
    apply, params = net
    sigma = masks.random_ordering(jax.random.key(4), D)
    x = jax.random.bernoulli(jax.random.key(5), 0.5, (D,)).astype(jnp.int32)
    for t in range(D):
        s = masks.ordering_mask(sigma, t)
        s_next = masks.ordering_mask(sigma, t + 1)
        i = sigma[t]
        lhs = logsumexp(jnp.stack([_arm_log_marginal(apply, params, x.at[i].set(v), s_next, sigma)
                                   for v in range(K)]))
        rhs = _arm_log_marginal(apply, params, x, s, sigma)
        np.testing.assert_allclose(lhs, rhs, atol=1e-5)


def test_arm_marginal_equals_sum_over_all_completions(net):
    """For any subset S: p(x_S) = sum over the 2^(D-|S|) completions of the full chain-rule p(x)."""
    apply, params = net
    states = jnp.asarray(exact.enumerate_states(D, K))
    sigma = masks.random_ordering(jax.random.key(6), D)
    mask = jnp.array([True, False, True, False, False])
    tau = arm.subset_first_ordering(sigma, mask)
    assert set(np.asarray(tau[:2]).tolist()) == {0, 2}
    full = jnp.ones((D,), bool)
    log_joint = jax.vmap(arm.arm_log_marginal, in_axes=(None, None, 0, None, None))(apply, params, states, full, tau)
    np.testing.assert_allclose(logsumexp(log_joint), 0.0, atol=1e-5)
    x = jnp.array([1, 0, 0, 0, 0], jnp.int32)
    agree = (states[:, 0] == 1) & (states[:, 2] == 0)
    want = logsumexp(jnp.where(agree, log_joint, -1e30))
    np.testing.assert_allclose(_arm_log_marginal(apply, params, x, mask, sigma), want, atol=1e-5)


def test_ensemble_equals_loop_over_orderings(net):
    apply, params = net
    x = jax.random.bernoulli(jax.random.key(7), 0.5, (3, D)).astype(jnp.int32)
    mask = jax.random.bernoulli(jax.random.key(8), 0.6, (3, D))
    key = jax.random.key(9)
    ensemble = jax.jit(arm.arm_log_marginal_ensemble, static_argnums=(0, 5, 6), compiler_options=_FAST)
    got = ensemble(apply, params, x, mask, key, 4, 2)
    keys = jax.random.split(key, (3, 4))
    for b in range(3):
        lls = [_arm_log_marginal(apply, params, x[b], mask[b], masks.random_ordering(keys[b, m], D))
               for m in range(4)]
        np.testing.assert_allclose(got[b], logsumexp(jnp.stack(lls)) - np.log(4.0), atol=1e-5)


def test_ensemble_chunking_does_not_change_the_numbers(net):
    """One example per call, chunks of two and all at once (the row-budget default here) agree."""
    apply, params = net
    x = jax.random.bernoulli(jax.random.key(3), 0.5, (5, D)).astype(jnp.int32)
    mask = jax.random.bernoulli(jax.random.key(4), 0.6, (5, D))
    ens = jax.jit(arm.arm_log_marginal_ensemble, static_argnums=(0, 5, 6, 7), compiler_options=_FAST)
    ref = ens(apply, params, x, mask, jax.random.key(5), 2, 1, 4096)
    for chunk, rows in ((2, 4096), (None, 4096)):  # lax.map over chunks of 2 (a ragged last one); vmap of all
        np.testing.assert_allclose(ens(apply, params, x, mask, jax.random.key(5), 2, chunk, rows), ref, atol=1e-5)
    with pytest.raises(ValueError, match="chunk_size"):
        arm.arm_log_marginal_ensemble(apply, params, x, mask, jax.random.key(5), 1, 0)


def test_arm_loss_is_unbiased_for_chain_rule_nll():
    """With exact conditionals, E_{sigma,t}[loss] = -log p(x) (Monte Carlo over 8k draws)."""
    log_p, states = _random_table(jax.random.key(10), 4, 2)
    cond = functools.partial(exact.table_conditional_logits, num_classes=2)
    x = jnp.broadcast_to(jnp.asarray(states[5]), (8000, 4))
    per_example = jax.jit(lambda k: jax.vmap(lambda xi, ki: arm.arm_loss(cond, (log_p, states), xi[None], ki)[0])(
        x, jax.random.split(k, x.shape[0])), compiler_options=_FAST)(jax.random.key(11))
    sem = float(jnp.std(per_example)) / np.sqrt(x.shape[0])
    assert abs(float(jnp.mean(per_example)) + float(log_p[5])) < 4 * sem + 1e-4
    assert sem > 0  # a single draw is not exact: the estimator has variance
    loss, metrics = arm.arm_loss(cond, (log_p, states), x[:8], jax.random.key(12))
    np.testing.assert_allclose(metrics["bpd"], loss / (4 * np.log(2.0)), rtol=1e-6)


def test_transformer_backbone_shapes_and_bad_backbone():
    apply, params = arm.make_conditional_net(jax.random.key(12), 6, 3, backbone="transformer", width=16, depth=1,
                                             num_heads=2)
    x = jnp.zeros((2, 6), jnp.int32)
    assert jax.jit(apply, compiler_options=_FAST)(params, x, jnp.zeros((2, 6), bool)).shape == (2, 6, 3)
    with pytest.raises(ValueError, match="backbone"):
        arm.make_conditional_net(jax.random.key(0), 6, 2, backbone="cnn")


def test_arm_loss_rejects_float_data(net):
    apply, params = net
    with pytest.raises(TypeError, match="`x`"):
        arm.arm_loss(apply, params, jnp.zeros((2, D)), jax.random.key(0))
