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


# --- accelerator paths (issue 13): fused attention, compute dtype ---------------------------------

def test_fused_attention_equals_flax_reference():
    num_classes = 3  # the class-token path; depth 2: leave_one_out's first block runs on [B, L, S, N, H] copies
    kw = dict(dim=16, depth=2, num_heads=2, num_classes=num_classes)
    fused = nn.TransformerEncoder(7, 6, rngs=nnx.Rngs(0), **kw)  # default: jax.nn.dot_product_attention
    ref = nn.TransformerEncoder(7, 6, attention_fn=nnx.dot_product_attention, rngs=nnx.Rngs(0), **kw)
    apply_f, params = nn.functional(fused)
    apply_r, params_r = nn.functional(ref)
    jax.tree.map(np.testing.assert_array_equal, params, params_r)  # same parameters: checkpoints interchange
    t = jax.random.randint(jax.random.key(0), (3, 6), 0, 7)
    m = jax.random.bernoulli(jax.random.key(1), 0.5, (3, 6))
    labels = jnp.array([0, 2, 3])
    both = jax.jit(lambda p: (apply_f(p, t, m, labels), apply_r(p, t, m, labels)))
    np.testing.assert_allclose(*both(params), rtol=1e-5, atol=1e-5)
    loo_f, _ = nn.functional(fused, method="leave_one_out")  # the 5-D [B, L, S, N, H] copies path too
    loo_r, _ = nn.functional(ref, method="leave_one_out")
    both = jax.jit(lambda p: (loo_f(p, t, labels), loo_r(p, t, labels)))
    np.testing.assert_allclose(*both(params), rtol=1e-5, atol=1e-5)


def test_fused_attention_mask_and_bias_match_the_closed_form():
    q, k, v = (jax.random.normal(jax.random.key(i), (2, 3, 4, 2, 8)) for i in range(3))  # two batch axes
    mask = jax.random.bernoulli(jax.random.key(5), 0.7, (2, 3, 2, 4, 4)).at[..., 0].set(True)
    bias = jax.random.normal(jax.random.key(6), (1, 1, 2, 4, 4))  # broadcast over the batch axes
    logits = jnp.einsum("...tnh,...snh->...nts", q, k) / np.sqrt(8) + bias
    w = jax.nn.softmax(jnp.where(mask, logits, -jnp.inf), axis=-1)
    want = jnp.einsum("...nts,...snh->...tnh", w, v)
    np.testing.assert_allclose(jax.jit(nn.fused_attention)(q, k, v, bias, mask), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="`dropout_rate`"):
        nn.fused_attention(q, k, v, dropout_rate=0.1, deterministic=False)


@pytest.mark.parametrize("make,inputs", [
    (lambda dt: nn.TransformerEncoder(7, 6, dim=16, depth=1, num_heads=2, dtype=dt, rngs=nnx.Rngs(0)),
     (jnp.zeros((2, 6), jnp.int32).at[:, ::2].set(3), jnp.ones((2, 6), bool).at[:, 1].set(False))),
    (lambda dt: nn.ResidualMLP(6, 32, 2, 3, dtype=dt, rngs=nnx.Rngs(0)), (jnp.linspace(-1, 1, 24).reshape(4, 6),)),
    (lambda dt: nn.MLP(6, [32], 3, dtype=dt, rngs=nnx.Rngs(0)), (jnp.linspace(-1, 1, 24).reshape(4, 6),)),
])
def test_bfloat16_compute_keeps_float32_params_and_outputs(make, inputs):
    apply16, p16 = nn.functional(make(jnp.bfloat16))
    apply32, p32 = nn.functional(make(None))
    assert {x.dtype for x in jax.tree.leaves(p16)} == {jnp.dtype(jnp.float32)}
    jax.tree.map(np.testing.assert_array_equal, p16, p32)
    y16, y32 = jax.jit(lambda a, b: (apply16(a, *inputs), apply32(b, *inputs)))(p16, p32)
    assert y16.dtype == y32.dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(apply16)(p16, *inputs))
    assert "bf16" in jaxpr and "dot_general" in jaxpr  # the matmuls really run in bfloat16
    err = float(jnp.max(jnp.abs(y16 - y32)) / jnp.max(jnp.abs(y32)))
    assert 1e-5 < err < 5e-2, err  # bfloat16-sized error: different from float32, still the same function
    # gradients reach the float32 params in float32
    g = jax.jit(jax.grad(lambda p: jnp.sum(apply16(p, *inputs) ** 2)))(p16)
    assert {x.dtype for x in jax.tree.leaves(g)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("bad", ["int32", jnp.int8, "nope"])
def test_bad_dtype(bad):
    with pytest.raises(ValueError, match="`dtype`"):
        nn.MLP(2, [3], 1, dtype=bad, rngs=nnx.Rngs(0))
