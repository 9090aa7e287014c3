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
    apply, params, state = _build(4, latent_sizes=(1,), hidden_sizes=(8,), latent=latent, seed=3)
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
    a_s, p_s, s_s = _build(16, jit=False, posterior="structured", seed=1, **TINY)  # called once each: eager
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
    assert set(res) == {"elbo", "iwae_5", "kl_l1", "kl_l2", "zero_frac_l1", "zero_frac_l2"}
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
    assert float(stream(5)["beta"]) == 0.5
    for name in ("vae1", "vae2"):
        cfg = dict(hvae.PRESETS[name], hidden_sizes=tuple(8 for _ in hvae.PRESETS[name]["hidden_sizes"]))
        apply, params, state = _build(16, jit=False, **cfg)
        loss_fn = hvae.make_loss_fn(apply)
        loss, (m, _) = loss_fn(params, state, stream(3), jax.random.key(0))
        assert np.isfinite(float(loss)) and m["zero_frac_l1"] == 0.0
        assert float(loss) < -float(m["elbo"])  # beta = 0.3 < 1 down-weights the KL
