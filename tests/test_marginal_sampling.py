"""Samplers through exact conditionals: ancestral / conditional sampling and Gibbs against enumeration."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax.marginal import exact, sampling

# Fast compilation for test-sized programs: XLA's expensive passes cost more than they save here.
_FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

D = 4


@pytest.fixture(scope="module")
def teacher():
    states = jnp.asarray(exact.enumerate_states(D, 2))
    log_p = exact.normalize_table(1.2 * jax.random.normal(jax.random.key(0), (states.shape[0],)))

    def cond(lp, x, mask):
        return exact.table_conditional_logits((lp, states), x, mask, num_classes=2)
    return cond, log_p, np.asarray(states)


def _index(x):
    return np.asarray(x) @ (1 << np.arange(D - 1, -1, -1))


def _tv(samples, probs):
    counts = np.bincount(_index(samples), minlength=probs.shape[0]) / samples.shape[0]
    return 0.5 * np.abs(counts - probs).sum()


def test_ancestral_samples_follow_the_distribution(teacher):
    cond, log_p, _ = teacher
    sample = jax.jit(functools.partial(sampling.sample, cond), compiler_options=_FAST, static_argnums=(2, 3))
    x = sample(log_p, jax.random.key(1), 6000, D)
    # TV of 6000 draws over 16 states: ~0.02 expected; 0.05 leaves a wide margin.
    assert _tv(x, np.exp(np.asarray(log_p))) < 0.05


def test_conditional_sampling_keeps_observed_and_follows_conditional(teacher):
    cond, log_p, states = teacher
    n = 6000
    x0 = jnp.broadcast_to(jnp.array([1, 0, 1, 0], jnp.int32), (n, D))
    mask = jnp.broadcast_to(jnp.array([True, False, False, True]), (n, D))
    x = jax.jit(functools.partial(sampling.conditional_sample, cond, num_steps=2), compiler_options=_FAST)(log_p, x0, mask,
                                                                                     jax.random.key(2))
    x = np.asarray(x)
    assert np.all(x[:, 0] == 1) and np.all(x[:, 3] == 0)
    p = np.exp(np.asarray(log_p)) * ((states[:, 0] == 1) & (states[:, 3] == 0))
    assert _tv(x, p / p.sum()) < 0.05


def test_gibbs_step_leaves_the_distribution_invariant_and_mixes(teacher):
    cond, log_p, states = teacher
    step = functools.partial(sampling.gibbs_step, cond, num_resample=2)

    @functools.partial(jax.jit, static_argnums=2, compiler_options=_FAST)
    def run(x, key, n):
        return jax.lax.fori_loop(0, n, lambda i, xc: step(log_p, xc, jax.random.fold_in(key, i)), x)
    exact_draws = jnp.asarray(states)[jax.random.categorical(jax.random.key(4), log_p, shape=(6000,))]
    probs = np.exp(np.asarray(log_p))
    assert _tv(run(exact_draws, jax.random.key(3), 3), probs) < 0.04  # invariance (exact draws: ~0.02)
    assert _tv(run(jnp.zeros((6000, D), jnp.int32), jax.random.key(5), 30), probs) < 0.05  # mixing from all-zeros
    with pytest.raises(ValueError, match="num_resample"):
        sampling.gibbs_step(cond, log_p, jnp.zeros((2, D), jnp.int32), jax.random.key(0), num_resample=D + 1)


def test_marginal_network_sampling_is_exact_for_an_exact_table_and_reweights_an_inconsistent_one(teacher):
    _, log_p, states = teacher
    table = (log_p, jnp.asarray(states))
    marg = exact.table_log_marginal
    draw = jax.jit(functools.partial(sampling.marginal_sample, marg), static_argnums=(2, 3))
    x, log_q = draw(table, jax.random.key(5), 4000, D)
    assert _tv(x, np.exp(np.asarray(log_p))) < 0.05
    # q is the exact joint for a self-consistent f: zero log weights.
    np.testing.assert_allclose(sampling.importance_log_weights(marg, table, x, log_q), 0.0, atol=1e-4)
    # An inconsistent f (noisy log-marginals of partial states): self-normalized weights recover exp f(x) / Z.
    noise = 0.7 * jax.random.normal(jax.random.key(6), (states.shape[0],))

    def noisy(params, xx, mask):
        full = jnp.all(mask, axis=-1)
        idx = xx @ (1 << jnp.arange(D - 1, -1, -1))
        return marg(params, xx, mask) + jnp.where(full, 0.0, noise[idx % states.shape[0]])

    x2, lq2 = jax.jit(functools.partial(sampling.marginal_sample, noisy), static_argnums=(2, 3))(
        table, jax.random.key(7), 6000, D)
    w = np.asarray(jax.nn.softmax(sampling.importance_log_weights(noisy, table, x2, lq2)))
    target = np.exp(np.asarray(log_p))  # exp f(full) / Z: f equals the table on full states
    est = np.bincount(_index(x2), weights=w, minlength=states.shape[0])
    assert 0.5 * np.abs(est - target).sum() < 0.06
    assert _tv(x2, target) > 0.5 * np.abs(est - target).sum()  # the correction helps


def test_marginal_sampling_along_a_fixed_ordering_gives_its_exact_log_density(teacher):
    """With one ordering for every sample, log q is the chain rule of softmaxes of f along it: for an
    inconsistent f, check it against the enumerated chain rule; for an exact table, q is the joint."""
    _, log_p, states = teacher
    table = (log_p, jnp.asarray(states))
    marg = exact.table_log_marginal
    noise = 0.7 * jax.random.normal(jax.random.key(6), (states.shape[0],))

    def noisy(params, xx, mask):
        idx = (xx * mask) @ (1 << jnp.arange(D - 1, -1, -1)) + mask @ (1 << jnp.arange(2 * D - 1, D - 1, -1))
        return marg(params, xx, mask) + noise[idx % states.shape[0]]

    order = jnp.array([2, 0, 3, 1])
    x, log_q = jax.jit(lambda k: sampling.marginal_sample(noisy, table, k, 200, D, ordering=order))(jax.random.key(8))
    for xi, lq in zip(np.asarray(x)[:20], np.asarray(log_q)[:20]):
        ref, mask = 0.0, np.zeros(D, bool)
        for pos in np.asarray(order):
            cand = np.stack([xi, xi]).copy()
            cand[:, pos] = [0, 1]
            m = np.broadcast_to(mask, (2, D)).copy()
            m[:, pos] = True
            logits = np.asarray(noisy(table, jnp.asarray(cand), jnp.asarray(m)))
            ref += logits[xi[pos]] - np.logaddexp(logits[0], logits[1])
            mask[pos] = True
        np.testing.assert_allclose(lq, ref, atol=1e-4)
    xe, lqe = jax.jit(lambda k: sampling.marginal_sample(marg, table, k, 4000, D, ordering=order))(jax.random.key(9))
    assert _tv(xe, np.exp(np.asarray(log_p))) < 0.05
    np.testing.assert_allclose(lqe, np.asarray(log_p)[_index(xe)], atol=1e-4)
    with pytest.raises(ValueError, match="ordering"):
        sampling.marginal_sample(marg, table, jax.random.key(0), 2, D, ordering=jnp.array([0, 0, 1, 2]))
