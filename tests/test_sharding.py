"""The data-parallel step on 8 virtual CPU devices equals the 1-device step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from mamjax import masks, nn, sharding, train

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (virtual) devices; see conftest.py")


def _transformer_problem():
    apply, params = nn.functional(nn.TransformerEncoder(6, 16, dim=32, depth=1, num_heads=4, rngs=nnx.Rngs(0)))

    def loss_fn(params, batch, key):
        keys = jax.random.split(key, batch.shape[0])
        mask = jax.vmap(masks.mask_by_rate, in_axes=(0, None, None))(keys, 16, 0.5)
        logits = apply(params, batch, mask)
        nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch[..., None], -1)[..., 0]
        hidden = (~mask).astype(jnp.float32)
        return jnp.sum(nll * hidden) / jnp.maximum(hidden.sum(), 1.0), {}

    batch = np.asarray(jax.random.randint(jax.random.key(1), (32, 16), 0, 6), np.int32)
    return apply, params, loss_fn, batch


def test_mesh_spans_all_devices():
    mesh = sharding.data_mesh()
    assert mesh.shape == {"data": 8}


def test_sharded_step_equals_single_device_step():
    _, params, loss_fn, batch = _transformer_problem()
    # SGD, not Adam: Adam's first step is lr * sign(g), which turns float noise in gradients that are
    # analytically zero (e.g. attention key biases) into lr-sized differences.
    opt = optax.sgd(0.5)
    step = train.make_train_step(loss_fn, opt, donate=False)
    key = jax.random.key(3)

    single = jax.device_put(train.TrainState.create(params, opt), jax.devices()[0])
    s1, m1 = step(single, jax.device_put(batch, jax.devices()[0]), key)

    mesh = sharding.data_mesh()
    sharded_batch = sharding.shard_batch(batch, mesh)
    assert len(sharded_batch.sharding.device_set) == 8
    assert sharded_batch.addressable_shards[0].data.shape == (4, 16)
    s8, m8 = step(sharding.replicate(train.TrainState.create(params, opt), mesh), sharded_batch, key)
    assert s8.params["head"]["kernel"].sharding.is_fully_replicated

    np.testing.assert_allclose(m1["loss"], m8["loss"], rtol=1e-5)
    np.testing.assert_allclose(m1["grad_norm"], m8["grad_norm"], rtol=1e-5)
    moved = jax.tree.map(lambda a, b: np.max(np.abs(a - b)), s1.params, params)
    assert max(jax.tree.leaves(moved)) > 1e-3  # the step did something
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), s1.params, s8.params)


def test_fit_with_mesh_runs():
    _, params, loss_fn, batch = _transformer_problem()
    opt = optax.adam(1e-3)
    state, hist = train.fit(train.make_train_step(loss_fn, opt), train.TrainState.create(params, opt),
                            lambda step: batch, num_steps=3, key=jax.random.key(0), mesh=sharding.data_mesh(),
                            log_every=3, progress=False)
    assert int(state.step) == 3 and np.isfinite(hist[-1]["loss"])


def test_shard_batch_rejects_indivisible():
    with pytest.raises(ValueError, match="divisible"):
        sharding.shard_batch(np.zeros((10, 3)), sharding.data_mesh())


def test_mesh_orders_devices_by_process_and_id():
    mesh = sharding.data_mesh(list(reversed(jax.devices())))
    assert [d.id for d in mesh.devices.flat] == sorted(d.id for d in jax.devices())


def test_shard_batch_of_stacked_steps_splits_axis_one():
    stacked = np.arange(3 * 16 * 2, dtype=np.float32).reshape(3, 16, 2)  # [steps, batch, features]
    x = sharding.shard_batch({"x": stacked}, sharding.data_mesh(), batch_axis=1)["x"]
    assert x.addressable_shards[0].data.shape == (3, 2, 2)
    np.testing.assert_array_equal(np.asarray(x), stacked)
    with pytest.raises(ValueError, match="batch axis 1"):
        sharding.shard_batch(np.zeros(8), sharding.data_mesh(), batch_axis=1)


def test_prefetch_runs_ahead_and_keeps_order():
    calls = []

    def put(b):
        calls.append(b)
        return b * 10

    it = sharding.prefetch(iter(range(5)), put, size=3)
    assert next(it) == 0 and calls == [0, 1, 2]  # two batches ahead of the one handed out
    assert list(it) == [10, 20, 30, 40]
    assert list(sharding.prefetch(iter(range(3)), put, size=1)) == [0, 10, 20]
    with pytest.raises(ValueError, match="`size`"):
        list(sharding.prefetch(iter(range(3)), put, size=0))
