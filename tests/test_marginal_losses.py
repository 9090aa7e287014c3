"""Self-consistency penalty, MaM queries (vmap == loop), losses' shapes and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import masks
from mamjax.marginal import arm, exact, losses, marginal_net

# Fast compilation for test-sized programs: XLA's expensive passes cost more than they save here.
_FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

D, K = 5, 3

# Jit every call: eager op-by-op dispatch under jax_debug_nans is what makes tests slow.
_penalty = jax.jit(losses.self_consistency_penalty, compiler_options=_FAST, static_argnums=(0, 1))
_errors = jax.jit(losses.self_consistency_errors, compiler_options=_FAST, static_argnums=(0, 1))


@pytest.fixture(scope="module")
def exact_pair():
    """An exactly self-consistent (marginal, conditional) pair from an enumerated distribution."""
    states = jnp.asarray(exact.enumerate_states(D, K))
    log_p = exact.normalize_table(1.5 * jax.random.normal(jax.random.key(0), (states.shape[0],)))
    table = (log_p, states)
    cond = functools.partial(exact.table_conditional_logits, num_classes=K)
    return exact.table_log_marginal, cond, table


def _data(key, n=64):
    return jax.random.randint(key, (n, D), 0, K)


def test_penalty_is_zero_for_exact_pair_and_positive_otherwise(exact_pair):
    marg, cond, table = exact_pair
    x = _data(jax.random.key(1))
    pen, metrics = _penalty(marg, cond, table, table, x, jax.random.key(2))
    assert float(pen) < 1e-8, float(pen)
    np.testing.assert_allclose(metrics["f_empty"], 0.0, atol=1e-5)

    def bent(tab, x, mask):  # not a marginal of anything: adds a non-additive function of |S|
        return marg(tab, x, mask) + 0.3 * jnp.sum(mask, -1).astype(jnp.float32) ** 2
    pen_bad, _ = _penalty(bent, cond, table, table, x, jax.random.key(2))
    assert float(pen_bad) > 0.5
    pen_z, _ = _penalty(marg, cond, table, table, x, jax.random.key(2), log_z=1.0)
    np.testing.assert_allclose(pen_z, 1.0, atol=1e-4)


def test_errors_match_hand_computation(exact_pair):
    marg, cond, table = exact_pair
    x = _data(jax.random.key(3), 4)
    orderings = jnp.stack([masks.random_ordering(k, D) for k in jax.random.split(jax.random.key(4), 4)])
    steps = jnp.array([0, 1, 3, 4])

    def bent(tab, x, mask):
        return marg(tab, x, mask) + 0.1 * jnp.sum(mask, -1).astype(jnp.float32) ** 2
    err = _errors(bent, cond, table, table, x, orderings, steps)
    # |S| goes from d to d+1: error = 0.1 * (d^2 - (d+1)^2) = -0.1 * (2d + 1)
    np.testing.assert_allclose(err, -0.1 * (2 * steps + 1), atol=1e-4)


def test_mle_and_joint_losses_with_chains(exact_pair):
    marg, cond, table = exact_pair
    x = _data(jax.random.key(5), 16)
    chains = _data(jax.random.key(6), 8)
    params = {"marginal": table, "conditional": table}
    mle = jax.jit(functools.partial(losses.mle_loss, marg, cond, chain_weight=0.5, gibbs_steps=2),
                  compiler_options=_FAST)
    loss, (metrics, new_chains) = mle(params, chains, x, jax.random.key(7))
    assert float(loss) < 1e-8 and new_chains.shape == chains.shape
    # Gibbs re-samples at most 2 positions per chain.
    assert int(jnp.max(jnp.sum(new_chains != chains, axis=-1))) <= 2
    assert "sc_mse_chains" in metrics
    with pytest.raises(ValueError, match="chains"):
        losses.mle_loss(marg, cond, params, None, x, jax.random.key(7), chain_weight=0.5)
    with pytest.raises(ValueError, match="chain_weight"):
        losses.mle_loss(marg, cond, params, chains, x, jax.random.key(7), chain_weight=1.5)


def test_joint_loss_is_arm_nll_plus_weighted_penalty(exact_pair):
    marg, cond, table = exact_pair
    x = _data(jax.random.key(20), 16)
    params = {"marginal": table, "conditional": table}
    key = jax.random.key(21)

    def shifted(tab, x, mask):  # every self-consistency error is exactly -0.3; f(empty) stays 0
        return marg(tab, x, mask) + 0.3 * jnp.sum(mask, -1).astype(jnp.float32)
    joint = jax.jit(functools.partial(losses.joint_loss, shifted, cond, penalty_weight=2.0), compiler_options=_FAST)
    loss, (metrics, _) = joint(params, None, x, key)
    nll, _ = arm.arm_loss(cond, table, x, jax.random.split(key)[0])
    np.testing.assert_allclose(metrics["arm_nll"], nll, rtol=1e-5)
    np.testing.assert_allclose(metrics["penalty"], D * 0.09, rtol=1e-4)
    np.testing.assert_allclose(loss, nll + 2.0 * D * 0.09, rtol=1e-5)


def test_energy_loss_reward_is_standardized(exact_pair):
    marg, cond, table = exact_pair

    def log_f(x):
        return jnp.sum(x, -1).astype(jnp.float32)
    params = {"marginal": table, "conditional": table}
    chains = _data(jax.random.key(8), 32)
    eb = jax.jit(functools.partial(losses.energy_loss, marg, cond, log_f), compiler_options=_FAST)
    loss, (metrics, new_chains) = eb(params, chains, None, jax.random.key(9))
    # An exact pair has zero penalty, so the loss is the REINFORCE surrogate alone.
    np.testing.assert_allclose(loss, metrics["reinforce"], atol=1e-4)
    log_p = marg(table, new_chains, jnp.ones(new_chains.shape, bool))
    diff = log_p - log_f(new_chains)
    r = (diff - diff.mean()) / (diff.std() + 1e-6)
    np.testing.assert_allclose(metrics["reinforce"], jnp.mean(r * log_p), rtol=1e-4, atol=1e-5)


def test_energy_loss_score_chooses_the_network_reinforce_trains(exact_pair):
    """score="marginal" differentiates f_theta(x); "conditional" (official logp_mc) the AO-ARM estimate / D.

    At an exact pair the penalty and its gradient vanish, so each score's gradient reaches only its
    own network, and the conditional surrogate is mean(r * log_likelihood_estimate / D).
    """
    marg, cond, table = exact_pair

    def log_f(x):
        return (x @ jnp.arange(1, D + 1)).astype(jnp.float32)
    params = {"marginal": table, "conditional": table}
    chains, key = _data(jax.random.key(8), 32), jax.random.key(9)
    grads = {}
    for score in ("marginal", "conditional"):
        eb = functools.partial(losses.energy_loss, marg, cond, log_f, score=score)
        (loss, (metrics, new_chains)), g = jax.jit(jax.value_and_grad(eb, has_aux=True, allow_int=True),
                                                   compiler_options=_FAST)(params, chains, None, key)
        grads[score] = jax.tree.map(lambda a: float(jnp.abs(a).max()), {k: v[0] for k, v in g.items()})
        np.testing.assert_allclose(loss, metrics["reinforce"], atol=1e-4)
    # (the penalty's gradient is zero up to float error: its errors are ~1e-7 at an exact pair)
    assert grads["marginal"]["conditional"] < 1e-5 < 1e-2 < grads["marginal"]["marginal"]
    assert grads["conditional"]["marginal"] < 1e-5 < 1e-2 < grads["conditional"]["conditional"]
    # the conditional surrogate, recomputed from the same keys
    _, _, k_mc = jax.random.split(key, 3)
    log_p = marg(table, new_chains, jnp.ones(new_chains.shape, bool))
    diff = log_p - log_f(new_chains)
    r = (diff - diff.mean()) / (diff.std() + 1e-6)
    est = arm.log_likelihood_estimate(cond, table, new_chains, k_mc) / D
    np.testing.assert_allclose(metrics["reinforce"], jnp.mean(r * est), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="score"):
        losses.energy_loss(marg, cond, log_f, params, chains, None, key, score="joint")


def test_energy_loss_f_empty_target_is_an_offset(exact_pair):
    """The official code pins f(empty) to log K^D instead of 0: f + c with log_z = c gives the same loss,
    the same gradients and the same KL estimate as f with log_z = 0 (the reward is standardized)."""
    marg, cond, table = exact_pair
    c = D * float(np.log(K))

    def log_f(x):
        return (x @ jnp.arange(1, D + 1)).astype(jnp.float32)
    shifted = lambda p, x, m: marg(p, x, m) + c
    params, chains, key = {"marginal": table, "conditional": table}, _data(jax.random.key(8), 32), jax.random.key(9)
    outs = []
    for m, log_z in ((marg, 0.0), (shifted, c)):
        eb = functools.partial(losses.energy_loss, m, cond, log_f, log_z=log_z)
        outs.append(jax.jit(jax.value_and_grad(eb, has_aux=True, allow_int=True), compiler_options=_FAST)(
            params, chains, None, key))
    (l0, (m0, _)), g0 = outs[0]
    (l1, (m1, _)), g1 = outs[1]
    np.testing.assert_allclose(l1, l0, atol=1e-3)
    np.testing.assert_allclose(m1["kl_plus_log_z"], m0["kl_plus_log_z"], rtol=1e-5)
    np.testing.assert_allclose(m1["f_empty"], m0["f_empty"] + c, rtol=1e-5)
    floats = lambda g: [x for x in jax.tree.leaves(g) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert floats(g0)
    for a, b in zip(floats(g0), floats(g1)):
        np.testing.assert_allclose(b, a, atol=1e-3)


def test_log_marginal_vmap_over_masks_equals_loop():
    apply, params = marginal_net.make_marginal_net(jax.random.key(10), D, K, width=16, depth=1)
    x = _data(jax.random.key(11), 3)
    mks = jax.random.bernoulli(jax.random.key(12), 0.5, (7, D))
    many = marginal_net.log_marginal_many_masks(apply, params, x, mks)  # [3, 7]
    broadcast = marginal_net.log_marginal(apply, params, x[:, None, :], mks[None, :, :])  # [3, 7]
    assert many.shape == broadcast.shape == (3, 7)
    single = jax.jit(lambda xi, mi: apply(params, xi[None], mi[None])[0], compiler_options=_FAST)
    loop = np.array([[float(single(x[b], mks[m])) for m in range(7)] for b in range(3)])
    np.testing.assert_allclose(many, loop, atol=1e-5)
    np.testing.assert_allclose(broadcast, loop, atol=1e-5)
    # Hidden entries are never read.
    scrambled = jnp.where(mks[None], x[:, None, :], (x[:, None, :] + 1) % K)
    np.testing.assert_allclose(marginal_net.log_marginal(apply, params, scrambled, mks[None, :, :]), loop, atol=1e-5)


def test_log_marginal_argument_errors():
    apply, params = marginal_net.make_marginal_net(jax.random.key(13), D, K, width=8, depth=1)
    with pytest.raises(TypeError, match="`mask`"):
        marginal_net.log_marginal(apply, params, jnp.zeros((2, D), jnp.int32), jnp.zeros((2, D)))
    with pytest.raises(TypeError, match="`x`"):
        marginal_net.log_marginal(apply, params, jnp.zeros((2, D)), jnp.zeros((2, D), bool))
    with pytest.raises(ValueError, match="backbone"):
        marginal_net.make_marginal_net(jax.random.key(0), D, K, backbone="unet")
    t_apply, t_params = marginal_net.make_marginal_net(jax.random.key(14), D, K, backbone="transformer", width=16,
                                                       depth=1, num_heads=2)
    t_query = jax.jit(t_apply, compiler_options=_FAST)
    assert t_query(t_params, jnp.zeros((2, D), jnp.int32), jnp.ones((2, D), bool)).shape == (2,)


def test_pipeline_stages_leave_the_callers_arrays_alive():
    """The train step donates its state; the stages must hand it copies, not the caller's arrays (issue 18)."""
    from mamjax.marginal import experiment

    nets = experiment.make_nets(jax.random.key(0), 4, 2, width=8, depth=1)
    chains = jnp.zeros((3, 4), jnp.int32)
    batch = jnp.ones((3, 4), jnp.int32)
    for make in (lambda: experiment.arm_stage(nets),
                 lambda: experiment.mam_stage(nets, nets.params, chains),
                 lambda: experiment.energy_stage(nets, lambda x: jnp.zeros(x.shape[0]), chains)):
        step, state = make()
        for i in range(2):
            state, _ = step(state, batch, jax.random.key(i))
        for leaf in jax.tree.leaves(nets.params) + [chains]:
            assert not leaf.is_deleted()
            np.asarray(leaf)  # readable


def test_table_conditional_logits_under_x64_keeps_int32_without_warnings():
    import warnings

    from mamjax.marginal import exact

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        states = jnp.asarray(exact.enumerate_states(3, 2))
        table = (exact.normalize_table(jnp.arange(8.0)), states)
        x = jnp.zeros((2, 3), jnp.int32)
        mask = jnp.array([[True, False, False], [False, False, False]])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            logits = exact.table_conditional_logits(table, x, mask)
        assert logits.shape == (2, 3, 2)
        # Brute force: log p(x_S, x_i = v) from the table.
        p = np.exp(np.asarray(table[0]))
        for b in range(2):
            for i in range(3):
                for v in range(2):
                    m = np.asarray(mask[b]).copy()
                    xv = np.asarray(x[b]).copy()
                    m[i], xv[i] = True, v
                    agree = np.all((np.asarray(states) == xv) | ~m, axis=1)
                    np.testing.assert_allclose(float(logits[b, i, v]), np.log(p[agree].sum()), rtol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", old)
