"""The ARDM U-Net with the marginal head: shapes, the |S| time embedding, masking, and one train step of
each stage (stage 2 moves only the marginal parameters); the ``unet_cpu`` config trains a few steps of both
stages through ``experiment.arm_stage`` / ``mam_stage``; the paper-sized ``mnist_unet`` config takes one
data-parallel train step per stage at a tiny batch (slow)."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mamjax import cli, train
from mamjax.marginal import arm, experiment, losses, unet


def _stage_step(cond_apply, marg_apply, params, x, stage: int):
    labels = {"shared": jax.tree.map(lambda _: "train" if stage == 1 else "freeze", params["shared"]),
              "marginal": jax.tree.map(lambda _: "train" if stage == 2 else "freeze", params["marginal"])}
    opt = optax.multi_transform({"train": optax.adam(1e-3), "freeze": optax.set_to_zero()}, labels)

    def loss(p, key):
        if stage == 1:
            return arm.arm_loss(lambda q, a, m: cond_apply(q, a, m), p, x, key)[0]
        cond = lambda q, a, m: cond_apply(q, a, m)
        marg = lambda q, a, m: marg_apply(q, a, m)
        return losses.self_consistency_penalty(marg, cond, p, jax.lax.stop_gradient(p), x, key)[0]

    grads = jax.grad(loss)(params, jax.random.key(1))
    updates, _ = opt.update(grads, opt.init(params), params)
    return optax.apply_updates(params, updates)


def _moved(a, b):
    return any(bool(jnp.any(x != y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow  # ~35 s of CPU, most of it compiling
def test_small_unet_shapes_masking_and_stage_split():
    side, d = 8, 64
    cond_apply, marg_apply, params = unet.make_unet_pair(jax.random.key(0), side, 2, ch=32, num_res_blocks=1,
                                                          marg_hidden=16)
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (3, d)).astype(jnp.int32)
    mask = jax.random.bernoulli(jax.random.key(2), 0.5, (3, d))
    cond, marg = jax.jit(cond_apply), jax.jit(marg_apply)
    assert cond(params, x, mask).shape == (3, d, 2) and marg(params, x, mask).shape == (3,)
    # Hidden entries are never read.
    np.testing.assert_allclose(marg(params, jnp.where(mask, x, 1 - x), mask), marg(params, x, mask), rtol=1e-5)
    step = jax.jit(functools.partial(_stage_step, cond_apply, marg_apply), static_argnums=2)
    p1 = step(params, x, 1)
    assert _moved(p1["shared"], params["shared"])
    p2 = step(p1, x, 2)
    assert _moved(p2["marginal"], p1["marginal"]) and not _moved(p2["shared"], p1["shared"])
    emb = unet.timestep_embedding(jnp.array([0, 5]), 8)
    assert emb.shape == (2, 8) and not np.allclose(emb[0], emb[1])


def _config_nets(variant: str, key=jax.random.key(0)):
    c = cli.load_config(f"marginal_mnist:{variant}")
    assert c.backbone == "unet"
    return c, unet.make_unet_nets(key, c.resolution, 2, ch=c.unet.ch, num_res_blocks=c.unet.num_res_blocks,
                                  marg_hidden=c.unet.marg_hidden)


def _x(batch, d, seed=1):
    return jax.random.bernoulli(jax.random.key(seed), 0.4, (batch, d)).astype(jnp.int32)


@pytest.mark.slow  # ~20 s in CI (eager init + compile); the U-Net shape tests stay in the default suite
def test_unet_cpu_config_trains_stage_1():
    c, nets = _config_nets("unet_cpu")
    x = _x(4, nets.num_dims)
    before = jax.tree.map(jnp.copy, nets.params)
    step, state = experiment.arm_stage(nets, lr=c.lr, clip=c.clip)
    losses_ = []
    for i in range(2):
        state, m = step(state, x, jax.random.key(10 + i))
        losses_.append(float(m["loss"]))
    assert np.all(np.isfinite(losses_))
    assert _moved(state.params["conditional"], before["conditional"])
    assert not _moved(state.params["marginal"], before["marginal"])


@pytest.mark.slow  # ~30 s of CPU, most of it compiling
def test_unet_cpu_config_stage_2_moves_only_the_marginal_head():
    c, nets = _config_nets("unet_cpu")
    x = _x(4, nets.num_dims)
    p = jax.tree.map(lambda v: v + 0.01, nets.params)  # a "trained" trunk that differs from the copy
    tied = unet.tie_shared(p)
    for a, b in zip(jax.tree.leaves(tied["marginal"]["shared"]), jax.tree.leaves(p["conditional"])):
        np.testing.assert_array_equal(a, b)
    step, state = experiment.mam_stage(nets, tied, None, lr=c.lr, clip=c.clip)
    before = jax.tree.map(jnp.copy, state.params)
    for i in range(2):
        state, m = step(state, x, jax.random.key(20 + i))
        assert np.isfinite(float(m["loss"]))
    assert _moved(state.params["marginal"]["head"], before["marginal"]["head"])
    assert not _moved(state.params["marginal"]["shared"], before["marginal"]["shared"])  # stop_gradient
    assert not _moved(state.params["conditional"], before["conditional"])
    # The conditional logits are finite and hidden pixels are never read.
    mask = jnp.arange(nets.num_dims)[None] < jnp.array([[0], [50], [100], [196]])
    cond = jax.jit(nets.cond_apply)
    logits = cond(state.params["conditional"], x, mask)
    assert logits.shape == (4, 196, 2) and np.all(np.isfinite(logits))
    np.testing.assert_allclose(cond(state.params["conditional"], jnp.where(mask, x, 1 - x), mask), logits,
                               rtol=1e-5, atol=1e-5)


def test_unet_configs_match_the_official_settings():
    c = cli.load_config("marginal_mnist:mnist_unet")
    assert (c.resolution, c.unet.ch, c.unet.num_res_blocks, c.unet.marg_hidden) == (28, 256, 4, 4096)
    assert (c.batch_size, c.mam_batch_size, c.lr, c.clip, c.gibbs_steps) == (24, 32, 1e-4, 100.0, 4)
    assert (c.arm_steps, c.mam_steps) == (3001 * 2500, 200 * 1875)
    with pytest.raises(ValueError, match="side"):
        unet.make_unet_nets(jax.random.key(0), 0)


@pytest.mark.slow  # paper size: ~200 GFLOP per step at batch 2 plus minutes of compilation on CPU
def test_mnist_unet_config_takes_one_sharded_step_of_each_stage():
    c, nets = _config_nets("mnist_unet")
    mesh = cli.make_mesh(None)
    batch = 2 * mesh.devices.size  # tiny; the paper's is 24 / 32
    x = np.asarray(_x(batch, 784))
    stream = lambda i: x
    step, state = experiment.arm_stage(nets, lr=c.lr, clip=c.clip)
    state, _ = train.fit(step, state, stream, num_steps=1, key=jax.random.key(1), mesh=mesh, progress=False)
    assert int(state.step) == 1
    step2, state2 = experiment.mam_stage(nets, unet.tie_shared(state.params), x, lr=c.lr, clip=c.clip,
                                         gibbs_steps=c.gibbs_steps, chain_weight=c.chain_weight)
    state2, _ = train.fit(step2, state2, stream, num_steps=1, key=jax.random.key(2), mesh=mesh, progress=False)
    assert state2.model_state.shape == (batch, 784)
    head = state2.params["marginal"]["head"]
    assert head["mlp"]["layers"][0]["kernel"].shape == (784, 4096)
    out = jax.jit(nets.marg_apply)(state2.params["marginal"], jnp.asarray(x), jnp.ones((batch, 784), bool))
    assert out.shape == (batch,) and np.all(np.isfinite(out))


@pytest.mark.slow
def test_paper_unet_takes_one_train_step_at_batch_2():
    cond_apply, marg_apply, params = unet.make_unet_pair(jax.random.key(0))  # 28x28, 256 ch, 4 blocks, 4096
    n_marg = sum(v.size for v in jax.tree.leaves(params["marginal"]))
    assert n_marg > 784 * 4096 + 4096 * 4096  # the MLP head 784 -> 4096 -> 4096 -> 1 is there
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (2, 784)).astype(jnp.int32)
    p1 = jax.jit(functools.partial(_stage_step, cond_apply, marg_apply), static_argnums=2)(params, x, 1)
    assert np.isfinite(float(jax.jit(marg_apply)(p1, x, jnp.ones((2, 784), bool))[0]))


def test_pooled_transformer_marginal_head_shapes():
    from mamjax.marginal import marginal_net

    apply, params = marginal_net.make_marginal_net(jax.random.key(0), 12, 27, backbone="transformer_pool", width=16,
                                                   depth=1, num_heads=2)
    x = jax.random.randint(jax.random.key(1), (3, 12), 0, 27)
    out = jax.jit(apply)(params, x, jnp.arange(12)[None] < jnp.array([[0], [5], [12]]))
    assert out.shape == (3,) and np.all(np.isfinite(out))
    assert params["head"]["layers"][0]["kernel"].shape == (16, 64)  # dim -> 4 dim, as 768 -> 3072


def _has_remat(jaxpr: str) -> bool:
    return re.search(r"\bremat\w*\[", jaxpr) is not None  # the primitive of jax.checkpoint / nnx.remat


def test_rematerialised_block_gives_the_same_values_and_gradients():
    from flax import nnx

    res, attn = unet._ResBlock(32, 32, 16, nnx.Rngs(0)), unet._Attention(32, nnx.Rngs(1))
    h = jax.random.normal(jax.random.key(2), (2, 3, 3, 32))
    temb = jax.random.normal(jax.random.key(3), (2, 16))
    (r_def, r_state), (a_def, a_state) = nnx.split(res), nnx.split(attn)
    r_state = jax.tree.map(lambda p: p + 0.05 * jnp.cos(jnp.arange(p.size).reshape(p.shape)), r_state)
    a_state = jax.tree.map(lambda p: p + 0.05 * jnp.sin(jnp.arange(p.size).reshape(p.shape)), a_state)

    def loss(states, remat):
        out = unet._run_block(remat, nnx.merge(r_def, states[0]), nnx.merge(a_def, states[1]), h, temb)
        return jnp.sum(jnp.tanh(out))

    jaxprs = [str(jax.make_jaxpr(loss, static_argnums=1)((r_state, a_state), r)) for r in (False, True)]
    assert not _has_remat(jaxprs[0]) and _has_remat(jaxprs[1])  # remat really applied
    vg = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    (v0, g0), (v1, g1) = (vg((r_state, a_state), r) for r in (False, True))
    np.testing.assert_allclose(float(v1), float(v0), rtol=1e-6)
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g0))
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g0)):  # to float32 rounding of a refusion
        assert float(jnp.max(jnp.abs(a - b))) <= 1e-4 * scale


@pytest.mark.slow  # ~20 s of CPU, most of it compiling two U-Net gradients
def test_remat_gives_the_same_values_and_gradients():
    """``remat=True`` recomputes block activations in the backward pass: same numbers (tiny U-Net)."""
    side, d = 4, 16
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (2, d)).astype(jnp.int32)
    mask = jax.random.bernoulli(jax.random.key(2), 0.5, (2, d))
    out = []
    for remat in (False, True):
        cond_apply, marg_apply, params = unet.make_unet_pair(jax.random.key(0), side, 2, ch=32, num_res_blocks=1,
                                                              marg_hidden=8, remat=remat)
        leaves, tree = jax.tree.flatten(params)  # perturb: zero-initialised layers would hide differences
        keys = jax.random.split(jax.random.key(3), len(leaves))
        params = jax.tree.unflatten(tree, [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])

        def loss(p):
            return jnp.sum(jax.nn.log_softmax(cond_apply(p, x, mask))[..., 1]) + jnp.sum(marg_apply(p, x, mask))

        assert _has_remat(str(jax.make_jaxpr(loss)(params))) == remat
        out.append(jax.jit(jax.value_and_grad(loss))(params))
    np.testing.assert_allclose(float(out[1][0]), float(out[0][0]), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(out[1][1]), jax.tree.leaves(out[0][1])):  # to float32 rounding of a refusion
        assert np.max(np.abs(np.asarray(a) - np.asarray(b))) <= 1e-3 * np.max(np.abs(np.asarray(b))) + 1e-6
    with pytest.raises(ValueError, match="`remat`"):
        unet.make_unet_pair(jax.random.key(0), side, 2, ch=32, num_res_blocks=1, marg_hidden=8, remat="yes")
