"""mamjax.hvae: bounds against quadrature, IWAE monotone in K, structured -> mean-field reduction."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import stats

from mamjax import hvae, train
from mamjax.metrics import iw_bound

TINY = dict(latent_sizes=(6, 3), hidden_sizes=(16, 8))


def _build(d, jit=True, **kw):
    """``hvae.build``, with ``apply`` jitted (method, train, num static) for functions called repeatedly."""
    apply, params, state = hvae.build(d, **kw)
    if jit:
        apply = jax.jit(apply, static_argnums=(2,), static_argnames=("train", "num"))
    return apply, params, state


def _data(n=256, d=16, seed=0):
    """Binary data from 4 noisy prototypes (a little latent structure to learn)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((4, d)) < 0.5
    x = protos[rng.integers(0, 4, n)]
    flip = rng.random((n, d)) < 0.05
    return (x ^ flip).astype(np.float32)


def _train(apply, params, state, x, steps=150, lr=3e-3, seed=0):
    opt = optax.adamax(lr)
    st = train.TrainState.create(params, opt, state)
    step = train.make_train_step(hvae.make_loss_fn(apply), opt, stateful=True)
    hist = []
    for i in range(steps):
        idx = np.random.default_rng([seed, i]).choice(len(x), 64, replace=False)
        st, m = step(st, {"image": x[idx]}, jax.random.fold_in(jax.random.key(seed), i))
        hist.append(float(m["elbo"]))
    return st, hist


@pytest.mark.parametrize("latent", ["rectified", pytest.param("gaussian", marks=pytest.mark.slow)])
def test_bounds_match_quadrature_log_likelihood_one_unit(latent):
    """1 latent unit: log p(x) = log[P0 p(x|0) + int p(z) p(x|z) dz] by quadrature (spike for RG)."""
    apply, params, state = _build(4, latent_sizes=(1,), hidden_sizes=(8,), latent=latent, combine="mix", seed=3)
    xs = jnp.array([[1, 0, 1, 1], [0, 0, 0, 1], [1, 1, 1, 1]], jnp.float32)
    lo = 0.0 if latent == "rectified" else -9.0
    grid = np.linspace(lo, 9.0, 40001)
    logits, _ = apply(params, state, "decode", jnp.asarray(grid[:, None], jnp.float32))
    logits = np.asarray(logits, np.float64)
    xs_np = np.asarray(xs)[:, None, :]
    log_px_z = (xs_np * -np.logaddexp(0, -logits) + (1 - xs_np) * -np.logaddexp(0, logits)).sum(-1)
    px_z = np.exp(np.asarray(log_px_z))  # [3, G]
    slab = np.trapezoid(px_z * stats.norm.pdf(grid), grid, axis=1)
    exact = np.log(slab + (0.5 * px_z[:, 0] if latent == "rectified" else 0.0))

    @jax.jit
    def bounds(key):
        k1, k2 = jax.random.split(key)
        lw = hvae.log_weights(apply, params, state, xs, k1, 200_000)  # [K, 3]
        el = jax.vmap(lambda k: hvae.elbo(apply, params, state, xs, k)[0])(jax.random.split(k2, 1000))
        return iw_bound(lw, axis=0), lw, el

    iw, lw, el = (np.asarray(a, np.float64) for a in bounds(jax.random.key(0)))
    np.testing.assert_allclose(iw, exact, atol=0.02)  # L_K -> log p(x), exact weights incl. the spike
    assert (iw < exact + 0.005).all()
    # the closed-form-KL ELBO and the K = 1 log-weight have the same mean, and it is below log p(x)
    assert (np.abs(lw.mean(0) - el.mean(0)) < 5 * lw.std(0) / np.sqrt(len(lw)) + 5 * el.std(0) / np.sqrt(1000)).all()
    assert (el.mean(0) < exact).all()


def test_structured_with_zero_top_down_weights_equals_mean_field():
    x = jnp.asarray(_data(32))
    a_s, p_s, s_s = _build(16, jit=False, posterior="structured", combine="mix", seed=1, **TINY)  # called once each: eager
    a_m, p_m, s_m = _build(16, jit=False, posterior="mean_field", seed=1, **TINY)
    flat_s = dict(jax.tree_util.tree_flatten_with_path(p_s)[0])
    flat_m = dict(jax.tree_util.tree_flatten_with_path(p_m)[0])
    extra = [k for k in flat_s if k not in flat_m]
    assert extra and all("q_top_down" in jax.tree_util.keystr(k) for k in extra)
    for k, v in flat_m.items():  # same seed -> every shared parameter is identical
        np.testing.assert_array_equal(np.asarray(flat_s[k]), np.asarray(v))
    zeroed = jax.tree_util.tree_map_with_path(
        lambda k, v: jnp.zeros_like(v) if "q_top_down" in jax.tree_util.keystr(k) else v, p_s)
    key = jax.random.key(5)
    for training in (True, False):
        o_m, _ = a_m(p_m, s_m, "infer", x, key, train=training)
        o_z, _ = a_s(zeroed, s_s, "infer", x, key, train=training)
        o_s, _ = a_s(p_s, s_s, "infer", x, key, train=training)  # same compiled function as o_z
        for name in ("logits", "kl", "log_q", "log_p", "zero_frac"):
            np.testing.assert_allclose(np.asarray(o_z[name]), np.asarray(o_m[name]), rtol=1e-6, atol=1e-6)
        assert np.abs(np.asarray(o_s["log_q"]) - np.asarray(o_m["log_q"])).max() > 1e-3  # C != 0 matters


def test_training_improves_elbo_and_iwae_rises_with_k():
    x = _data(512)
    apply, params, state = _build(16, seed=0, **TINY)
    st, hist = _train(apply, params, state, x[:448], steps=100, lr=5e-3)
    assert np.mean(hist[-10:]) > np.mean(hist[:5]) + 1.0
    test = jnp.asarray(x[448:])

    @jax.jit
    def all_bounds(params, state):
        el = jax.vmap(lambda k: hvae.elbo(apply, params, state, test, k)[0])(jax.random.split(jax.random.key(9), 10))
        return jnp.mean(el, 0), {k: hvae.iwae_bound(apply, params, state, test, jax.random.key(k), k)
                                 for k in (1, 10, 100)}

    el, bounds = jax.tree.map(np.asarray, all_bounds(st.params, st.model_state))
    assert abs(bounds[1].mean() - el.mean()) < 0.5
    assert bounds[10].mean() > el.mean() + 0.05
    d1 = bounds[100] - bounds[10]
    assert d1.mean() > 3 * d1.std() / np.sqrt(len(d1))
    assert (bounds[100] >= el - 0.5).mean() > 0.95


def test_batch_norm_state_train_vs_eval_and_api():
    x = jnp.asarray(_data(16))
    apply, params, state = _build(16, jit=False, seed=0, **TINY)
    _, s_eval = apply(params, state, "infer", x, jax.random.key(0), train=False)
    _, s_train = apply(params, state, "infer", x, jax.random.key(0), train=True)
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state, s_eval)
    assert all(jax.tree.leaves(same))
    assert not all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state, s_train)))
    # eval mode: an example's bound does not depend on its batch-mates
    b_all = hvae.elbo(apply, params, state, x, jax.random.key(1))[2]
    assert jax.tree.structure(b_all) == jax.tree.structure(state)
    s = hvae.sample(apply, params, state, jax.random.key(2), 5)
    r = hvae.reconstruct(apply, params, state, x, jax.random.key(3))
    assert s.shape == (5, 16) and r.shape == (16, 16)
    assert float(s.min()) >= 0 and float(s.max()) <= 1
    res = hvae.evaluate(apply, params, state, np.asarray(x).reshape(16, 4, 4), jax.random.key(4),
                        num_samples=5, batch_size=6)
    assert set(res) == {"elbo", "iwae_5", "kl_l1", "kl_l2", "zero_frac_l1", "zero_frac_l2", "active_l1", "active_l2"}
    assert 0.0 < res["zero_frac_l1"] < 1.0 and res["kl_l1"] >= 0
    with pytest.raises(ValueError, match="latent"):
        hvae.build(16, latent="laplace", **TINY)
    with pytest.raises(ValueError, match="posterior"):
        hvae.build(16, posterior="full", **TINY)
    with pytest.raises(ValueError, match="method"):
        apply(params, state, "encode", x)
    with pytest.raises(ValueError, match="`x`"):
        apply(params, state, "infer", x[:, :5], jax.random.key(0), train=False)


def test_kl_warmup_stream_and_gaussian_baselines_share_code():
    assert float(hvae.kl_warmup(0, 100)) == 0.0 and float(hvae.kl_warmup(50, 100)) == 0.5
    assert float(hvae.kl_warmup(500, 100)) == 1.0 and float(hvae.kl_warmup(3, 0)) == 1.0
    stream = hvae.with_kl_warmup(lambda step: {"image": np.zeros((2, 16), np.float32)}, 10)
    assert stream(5)["beta"].shape == (2,) and np.all(stream(5)["beta"] == 0.5)  # [B]: shards like the images
    for name in ("vae1", "vae2"):
        cfg = dict(hvae.PRESETS[name], hidden_sizes=tuple(8 for _ in hvae.PRESETS[name]["hidden_sizes"]))
        apply, params, state = _build(16, jit=False, **cfg)
        loss_fn = hvae.make_loss_fn(apply)
        loss, (m, _) = loss_fn(params, state, stream(3), jax.random.key(0))
        assert np.isfinite(float(loss)) and m["zero_frac_l1"] == 0.0
        assert float(loss) < -float(m["elbo"])  # beta = 0.3 < 1 down-weights the KL


def _bounds(apply, params, state, x, shuffle, n_keys=20):
    f = jax.jit(lambda k: hvae.elbo(apply, params, state, x, k)[0] if shuffle is None else
                hvae.elbo(apply, params, state, x, k, shuffle=shuffle)[0])
    return np.mean([np.asarray(f(jax.random.key(i))) for i in range(n_keys)], axis=0)


@pytest.mark.parametrize("combine", ["precision", pytest.param("mix", marks=pytest.mark.slow),
                                     pytest.param("residual", marks=pytest.mark.slow)])
def test_structured_posterior_uses_the_top_down_path(combine):
    """Permuting z_{l+1} across the batch before q(z_l | .) lowers the structured bound, not mean-field's."""
    x = _data(512)
    test = jnp.asarray(x[448:])
    perm = jnp.asarray(np.random.default_rng(0).permutation(len(test)))
    apply, params, state = _build(16, seed=0, combine=combine, **TINY)
    st, _ = _train(apply, params, state, x[:448], steps=120, lr=5e-3)
    plain = _bounds(apply, st.params, st.model_state, test, None)
    shuffled = _bounds(apply, st.params, st.model_state, test, perm)
    drop = plain - shuffled
    assert drop.mean() > 0.1 and drop.mean() > 4 * drop.std() / np.sqrt(len(drop))
    # Mean-field ignores the permutation exactly, whatever its weights: checked at initialisation (a second
    # 120-step training run would not change what this exact equality tests).
    a_m, p_m, s_m = _build(16, seed=0, posterior="mean_field", **TINY)
    key = jax.random.key(3)
    np.testing.assert_array_equal(np.asarray(hvae.elbo(a_m, p_m, s_m, test, key)[0]),
                                  np.asarray(hvae.elbo(a_m, p_m, s_m, test, key, shuffle=perm)[0]))


def test_combination_rules_match_closed_forms():
    """precision: product of two Gaussians' densities (numpy); residual: q's loc moves with the prior's."""
    from flax import nnx
    from mamjax.distributions import Normal
    rng = np.random.default_rng(0)
    d = jnp.asarray(rng.normal(size=(5, 16)), jnp.float32)
    prior = Normal(jnp.asarray(rng.normal(size=(5, 6)), jnp.float32),
                   jnp.asarray(rng.uniform(0.3, 2.0, size=(5, 6)), jnp.float32))
    m = hvae.HVAE(16, latent="gaussian", combine="precision", batch_norm=False, rngs=nnx.Rngs(0), **TINY)
    q = m._posterior_step(0, d, None, prior, train=False)
    mu, s = (np.asarray(a, np.float64) for a in m.q_heads[0](jax.nn.relu(m.q_hidden[0].pre(d, False))))
    # N(z; mu, s^2) N(z; mu_p, s_p^2) is proportional to a Gaussian; find its mean/var on a grid
    grid = np.linspace(-12, 12, 200001)
    for i, j in [(0, 0), (2, 3), (4, 5)]:
        logd = stats.norm.logpdf(grid, mu[i, j], s[i, j]) + stats.norm.logpdf(
            grid, float(prior.loc[i, j]), float(prior.scale[i, j]))
        w = np.exp(logd - logd.max())
        w /= w.sum()
        mean = (w * grid).sum()
        np.testing.assert_allclose(float(q.loc[i, j]), mean, atol=1e-4)
        np.testing.assert_allclose(float(q.scale[i, j]) - 1e-3, np.sqrt((w * (grid - mean) ** 2).sum()), atol=1e-4)
    r = hvae.HVAE(16, latent="gaussian", combine="residual", batch_norm=False, rngs=nnx.Rngs(0), **TINY)
    q1 = r._posterior_step(0, d, None, prior, train=False)
    q2 = r._posterior_step(0, d, None, Normal(prior.loc + 3.0, 2.0 * prior.scale), train=False)
    np.testing.assert_allclose(np.asarray(q2.loc - q1.loc), 3.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(q2.scale - 1e-3) / np.asarray(q1.scale - 1e-3), 2.0, rtol=1e-5)
    with pytest.raises(ValueError, match="combine"):
        hvae.build(16, combine="sum", **TINY)


def test_free_bits_iwae_training_and_learned_prior():
    x = jnp.asarray(_data(32))
    # "mix": the learned top prior enters the loss only through the top KL ("precision" also feeds it to q)
    apply, params, state = _build(16, jit=False, latent="gaussian", batch_norm=False, learned_prior=True,
                                  combine="mix", seed=2, **TINY)
    assert any("top_loc" in jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(params)[0])
    key = jax.random.key(0)
    out, _ = apply(params, state, "infer", x, key, train=True)
    kl = np.asarray(out["kl"]).mean(0)
    for fb in (0.0, 2.0, 1e3):
        loss, _ = hvae.make_loss_fn(apply, free_bits=fb)(params, state, {"image": x}, key)
        want = -(np.asarray(out["log_px"]).mean() - np.maximum(kl, fb).sum())
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    g = jax.grad(lambda p: hvae.make_loss_fn(apply, free_bits=1e3)(p, state, {"image": x}, key)[0])(params)
    # the learned top prior enters the loss only through its KL, floored here: no gradient
    gp = [v for k, v in jax.tree_util.tree_flatten_with_path(g)[0]
          if "top_loc" in jax.tree_util.keystr(k) or "top_raw" in jax.tree_util.keystr(k)]
    assert gp and all(float(jnp.abs(v).max()) == 0.0 for v in gp)
    loss5, (m5, _) = hvae.make_loss_fn(apply, iwae_k=5)(params, state, {"image": x}, key)
    want5 = -np.mean(np.asarray(hvae.iwae_bound(apply, params, state, x, key, 5)))  # no batch norm: same
    np.testing.assert_allclose(float(loss5), want5, rtol=1e-5)
    assert float(m5["iwae"]) == -float(loss5)
    g1 = jax.grad(lambda p: hvae.make_loss_fn(apply)(p, state, {"image": x}, key)[0])(params)
    assert max(float(jnp.abs(v).max()) for k, v in jax.tree_util.tree_flatten_with_path(g1)[0]
               if "top_loc" in jax.tree_util.keystr(k)) > 0
    for bad in (dict(free_bits=-1.0), dict(iwae_k=0)):
        with pytest.raises(ValueError, match=list(bad)[0]):
            hvae.make_loss_fn(apply, **bad)


def test_active_units_match_numpy_and_bad_images():
    x = _data(64)
    apply, params, state = _build(16, jit=False, seed=0, **TINY)
    key = jax.random.key(4)
    res = hvae.evaluate(apply, params, state, x, key, num_samples=0, batch_size=64)
    assert hvae.evaluate(apply, params, state, x, key, num_samples=0, batch_size=64, progress=True) == res
    k1 = jax.random.split(jax.random.fold_in(key, 0))[0]
    out, _ = apply(params, state, "infer", jnp.asarray(x), k1, train=False)
    for i, m in enumerate(out["q_mean"]):
        want = int((np.asarray(m, np.float64).var(0) > 0.01).sum())
        assert res[f"active_l{i + 1}"] == want
    with pytest.raises(ValueError, match="images"):
        hvae.evaluate(apply, params, state, np.zeros((0, 4, 4)), key)
    with pytest.raises(ValueError, match="binary"):
        hvae.evaluate(apply, params, state, x * 0.5, key)


@pytest.mark.slow
def test_several_dense_layers_and_conv_variant_take_a_step():
    x = (np.random.default_rng(0).random((8, 28, 28)) < 0.3).astype(np.float32)
    base = dict(latent_sizes=(8, 4), hidden_sizes=(16, 8))
    for kw in (dict(num_dense=2), dict(conv=True), dict(conv=True, num_dense=2, combine="residual")):
        s = hvae.experiment.setup(784, dict(base, **kw), seed=0)
        st, m = s.train_step(s.state, {"image": x}, jax.random.key(0))
        assert np.isfinite(float(m["loss"])) and int(st.step) == 1
    p1 = sum(v.size for v in jax.tree.leaves(hvae.build(784, **base)[1]))
    p2 = sum(v.size for v in jax.tree.leaves(hvae.build(784, num_dense=2, **base)[1]))
    # one more hidden layer (W, b, BN scale and bias) in bottom_up[0], bottom_up[1], decoder, top_down[0]
    assert p2 - p1 == 3 * (16 * 16 + 16 + 2 * 16) + (8 * 8 + 8 + 2 * 8)
    with pytest.raises(ValueError, match="conv"):
        hvae.build(16, conv=True, **TINY)
    with pytest.raises(ValueError, match="num_dense"):
        hvae.build(16, num_dense=0, **TINY)
