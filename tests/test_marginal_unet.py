"""The ARDM U-Net with the marginal head: shapes, the |S| time embedding, masking, and one train step of
each stage (stage 2 moves only the marginal parameters); the paper-sized network takes one step (slow)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mamjax.marginal import arm, losses, unet


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
