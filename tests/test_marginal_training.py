"""Training checks against enumeration: MaM distillation and energy-based training on a 3x3 Ising model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logsumexp

import mamjax.marginal as mm
from mamjax.marginal import exact

# Fast compilation for test-sized programs: XLA's expensive passes cost more than they save here.
_FAST = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _train(loss_fn, params, optimizer, model_state, batches, key, num_steps):
    """Runs ``num_steps`` stateful steps inside one jitted scan (one compilation)."""
    from mamjax import train
    state = train.TrainState.create(params, optimizer, model_state=model_state)
    step = train.make_train_step(loss_fn, optimizer, stateful=True, jit=False)

    @functools.partial(jax.jit, compiler_options=_FAST)
    def run(state):
        def body(st, i):
            st, metrics = step(st, batches(i), jax.random.fold_in(key, i))
            return st, metrics["loss"]
        return jax.lax.scan(body, state, jnp.arange(num_steps))

    return run(state)


def _frozen_conditional_adam(params, lr):
    labels = {"marginal": jax.tree.map(lambda _: "train", params["marginal"]),
              "conditional": jax.tree.map(lambda _: "freeze", params["conditional"])}
    return optax.multi_transform({"train": optax.adam(lr), "freeze": optax.set_to_zero()}, labels)


def test_distilled_mam_matches_ao_arm_chain_rule_marginals():
    """Stage 2: a MaM distilled from an (exact) AO-ARM matches its chain-rule marginals on all (x, S).

    The teacher is the enumerated distribution's conditionals (a perfectly trained AO-ARM), so
    its chain-rule marginals are the same for every ordering. Tolerance: mean |error| < 0.15 nats
    over all 2^5 x 2^5 (x, S) pairs and the MaM's full joint within KL 0.05 of the teacher's
    (measured: ~0.05 nats and ~0.01 after 400 steps).
    """
    d = 5
    states = jnp.asarray(exact.enumerate_states(d, 2))
    log_p = exact.normalize_table(1.5 * jax.random.normal(jax.random.key(0), (states.shape[0],)))
    table = (log_p, states)

    def cond(lp, x, mask):  # the teacher's parameters are its log-prob table (float, frozen)
        return exact.table_conditional_logits((lp, states), x, mask, num_classes=2)
    marg_apply, marg_params = mm.make_marginal_net(jax.random.key(1), d, 2, width=64, depth=1)
    params = {"marginal": marg_params, "conditional": log_p}
    data = states[jax.random.categorical(jax.random.key(2), log_p, shape=(4096,))]
    loss_fn = functools.partial(mm.mle_loss, marg_apply, cond, chain_weight=0.25, gibbs_steps=1)
    state, losses = _train(loss_fn, params, _frozen_conditional_adam(params, 3e-3), data[:64],
                           lambda i: jax.lax.dynamic_slice_in_dim(data, (i * 64) % 4096, 64), jax.random.key(3), 400)
    assert float(losses[-20:].mean()) < 0.2 * float(losses[:20].mean())
    mp = state.params["marginal"]
    all_masks = states.astype(bool)
    mam = mm.log_marginal(marg_apply, mp, states[:, None, :], all_masks[None, :, :])  # [32 x, 32 S]
    mam = mam - mm.log_normalizer(marg_apply, mp, d)
    ordering = jnp.arange(d)
    teacher = jax.jit(jax.vmap(jax.vmap(functools.partial(mm.arm_log_marginal, cond, log_p), in_axes=(None, 0, None)),
                               in_axes=(0, None, None)), compiler_options=_FAST)(states, all_masks, ordering)
    np.testing.assert_allclose(teacher, jax.vmap(lambda m: exact.table_log_marginal(
        table, states, jnp.broadcast_to(m, states.shape)))(all_masks).T, atol=1e-4)
    full = mam[:, -1]
    print("distill: mean |MaM - AO-ARM| =", float(jnp.mean(jnp.abs(mam - teacher))),
          "KL =", float(exact.kl_divergence(log_p, full - logsumexp(full))))
    assert float(jnp.mean(jnp.abs(mam - teacher))) < 0.15
    assert float(exact.kl_divergence(log_p, full - logsumexp(full))) < 0.05


def _ising_log_f(x, side):
    """log f(x) = s^T J s + b^T s, s = 2x - 1, J = 0.1 * adjacency of the periodic lattice, b = 0.2."""
    s = 2.0 * x.astype(jnp.float32) - 1.0
    g = s.reshape(*s.shape[:-1], side, side)
    edges = jnp.sum(g * jnp.roll(g, 1, -1) + g * jnp.roll(g, 1, -2), axis=(-1, -2))
    return 0.1 * 2.0 * edges + 0.2 * jnp.sum(s, -1)


def test_energy_based_training_on_3x3_ising_reaches_small_kl():
    """EB objective (REINFORCE + 4 x penalty) on a 3x3 Ising model, KL against the exact distribution.

    Threshold: KL(p_MaM || p) < 0.1 nats, where p_MaM normalizes exp f_theta over the 512 states
    (uniform: ~0.88; measured ~0.02 after 300 steps); the MaM's f(empty) within 0.1 of 0.
    """
    side, d = 3, 9
    log_f = functools.partial(_ising_log_f, side=side)
    states = jnp.asarray(exact.enumerate_states(d, 2))
    log_p = exact.normalize_table(log_f(states))
    cond_apply, cond_params = mm.make_conditional_net(jax.random.key(10), d, 2, width=64, depth=1)
    marg_apply, marg_params = mm.make_marginal_net(jax.random.key(11), d, 2, width=64, depth=1)
    params = {"marginal": marg_params, "conditional": cond_params}
    chains = jax.random.bernoulli(jax.random.key(12), 0.5, (256, d)).astype(jnp.int32)
    loss_fn = functools.partial(mm.energy_loss, marg_apply, cond_apply, log_f, alpha=4.0, gibbs_steps=2)
    state, _ = _train(loss_fn, params, optax.adam(3e-3), chains, lambda i: jnp.zeros(()), jax.random.key(13), 300)
    mp = state.params["marginal"]
    f = marg_apply(mp, states, jnp.ones(states.shape, bool))
    kl = float(exact.kl_divergence(f - logsumexp(f), log_p))
    print("ising EB: KL =", kl, "f(empty) =", float(mm.log_normalizer(marg_apply, mp, d)))
    assert kl < 0.1, kl
    assert abs(float(mm.log_normalizer(marg_apply, mp, d))) < 0.1


def test_batched_evaluation_shows_a_bar_and_keeps_the_numbers(monkeypatch, capsys):
    from mamjax.marginal import experiment

    x = np.arange(10.0)
    monkeypatch.delenv("CI", raising=False)
    out = experiment._batched(lambda a: a * 2, x, batch_size=3, desc="eval nll")
    np.testing.assert_array_equal(out, x * 2)
    assert "eval nll" in capsys.readouterr().err
    monkeypatch.setenv("CI", "1")
    np.testing.assert_array_equal(experiment._batched(lambda a: a * 2, x, batch_size=3, desc="eval nll"), x * 2)
    assert "eval nll" not in capsys.readouterr().err
