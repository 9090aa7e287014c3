import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mamjax import nn


def test_transformer_reads_only_observed_tokens():
    apply, params = nn.functional(nn.TransformerEncoder(5, 8, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0)))
    t = jax.random.randint(jax.random.key(0), (2, 8), 0, 5)
    mask = jnp.array([[True] * 4 + [False] * 4] * 2)
    other = t.at[:, 4:].set((t[:, 4:] + 1) % 5)  # change only hidden tokens
    np.testing.assert_array_equal(apply(params, t, mask), apply(params, other, mask))
    assert not np.allclose(apply(params, t, jnp.ones_like(mask)), apply(params, other, jnp.ones_like(mask)))


def test_transformer_is_permutation_equivariant_without_positions():
    apply, params = nn.functional(nn.TransformerEncoder(5, 6, dim=16, depth=2, num_heads=2, rngs=nnx.Rngs(1)))
    params = jax.tree.map(lambda x: x, params)
    params["pos"] = jnp.zeros_like(params["pos"])  # attention is bidirectional: no causal structure
    t = jax.random.randint(jax.random.key(0), (1, 6), 0, 5)
    m = jnp.ones((1, 6), bool)
    perm = jnp.array([5, 4, 3, 2, 1, 0])
    np.testing.assert_allclose(apply(params, t[:, perm], m)[:, :], apply(params, t, m)[:, perm], atol=1e-5)


def test_class_conditional_and_errors():
    apply, params = nn.functional(
        nn.TransformerEncoder(5, 4, dim=8, depth=1, num_heads=2, num_classes=3, rngs=nnx.Rngs(0)))
    t, m = jnp.zeros((2, 4), jnp.int32), jnp.ones((2, 4), bool)
    a = apply(params, t, m, jnp.array([0, 1]))
    assert a.shape == (2, 4, 5) and not np.allclose(a[0], a[1])
    with pytest.raises(ValueError, match="labels"):
        apply(params, t, m)
    with pytest.raises(TypeError, match="`mask`"):
        apply(params, t, m.astype(jnp.int32), jnp.array([0, 1]))
    with pytest.raises(TypeError, match="`tokens`"):
        apply(params, t.astype(jnp.float32), m, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="seq_len"):
        apply(params, jnp.zeros((2, 5), jnp.int32), jnp.ones((2, 5), bool), jnp.array([0, 1]))


@pytest.mark.parametrize("depth,num_classes", [(1, None), (2, None), (2, 3), (3, 3)])
def test_leave_one_out_equals_singly_masked_calls(depth, num_classes):
    module = nn.TransformerEncoder(7, 6, dim=16, depth=depth, num_heads=2, num_classes=num_classes,
                                   rngs=nnx.Rngs(depth))
    apply, params = nn.functional(module)
    loo, _ = nn.functional(module, method="leave_one_out")
    t = jax.random.randint(jax.random.key(0), (3, 6), 0, 7)
    labels = None if num_classes is None else jnp.array([0, 2, 3])  # 3 = the null class
    got = loo(params, t, labels)
    assert got.shape == (3, 6, 7)
    for n in range(6):
        m = jnp.ones((3, 6), bool).at[:, n].set(False)
        np.testing.assert_allclose(got[:, n], apply(params, t, m, labels)[:, n], rtol=1e-5, atol=1e-5)
    # in chunks of 2 sequences (3 = one chunk and a remainder): the same numbers
    np.testing.assert_allclose(loo(params, t, labels, batch_size=2), got, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, 2.0])
def test_leave_one_out_rejects_bad_batch_size(bad):
    module = nn.TransformerEncoder(7, 6, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="`batch_size`"):
        module.leave_one_out(jnp.zeros((2, 6), jnp.int32), batch_size=bad)


def test_functional_rejects_unknown_method():
    with pytest.raises(ValueError, match="`method`"):
        nn.functional(nn.MLP(2, [4], 1, rngs=nnx.Rngs(0)), method="nope")


def test_mlps_and_functional_with_state():
    apply, params = nn.functional(nn.ResidualMLP(6, 16, 2, 3, rngs=nnx.Rngs(0)))
    assert jax.jit(apply)(params, jnp.ones((4, 6))).shape == (4, 3)
    with pytest.raises(ValueError, match="`x`"):
        apply(params, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="`activation`"):
        nn.MLP(2, [3], 1, activation="nope", rngs=nnx.Rngs(0))

    class BN(nnx.Module):
        def __init__(self):
            self.bn = nnx.BatchNorm(3, momentum=0.5, rngs=nnx.Rngs(0))

        def __call__(self, x, train):
            return self.bn(x, use_running_average=not train)

    apply, params, state = nn.functional_with_state(BN())
    x = jnp.arange(12.0).reshape(4, 3)
    y, new_state = apply(params, state, x, True)
    np.testing.assert_allclose(y.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(new_state["bn"]["mean"][...], 0.5 * x.mean(0), rtol=1e-6)
    np.testing.assert_array_equal(state["bn"]["mean"][...], np.zeros(3))  # caller's state untouched

    def loss(p):  # batch statistics threaded through a gradient
        y, s = apply(p, state, x, True)
        return jnp.sum(y**2), s

    grads, s = jax.grad(loss, has_aux=True)(params)
    np.testing.assert_allclose(s["bn"]["mean"][...], 0.5 * x.mean(0), rtol=1e-6)
