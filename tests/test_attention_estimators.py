"""Batched rollout, Gaussian locations, LSTM core, sleep-q, learned prior baseline, VIMCO bound estimator,
input validation -- against enumeration, closed forms and scipy on tiny models."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from jax.scipy.special import logsumexp

from mamjax.attention import model as model_lib
from mamjax.attention import reinforce, rws

BASE = dict(image_size=8, patch=2, num_scales=2, grid_size=2, num_glimpses=2, glimpse_hidden=8,
            location_hidden=4, hidden=8, num_classes=3, proposal_view=4, proposal_hidden=8)
CFG = model_lib.RAMConfig(**BASE)
LABEL = 1
ALL = model_lib.all_trajectories(CFG.num_locations, CFG.num_glimpses)  # [16, 2]


def _setup(cfg=CFG, seed=0, dtype=jnp.float32, **make):
    make.setdefault("proposal", True)
    ram, params = model_lib.make_ram(cfg, jax.random.key(seed), **make)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [(x + 0.4 * jax.random.normal(k, x.shape)).astype(dtype) for x, k in zip(leaves, keys)]
    images = jax.random.uniform(jax.random.key(seed + 7), (2, 8, 8), dtype)
    return ram, jax.tree.unflatten(tree, leaves), images


def _flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def test_batched_rollout_equals_one_trajectory_at_a_time_and_table_equals_per_glimpse():
    ram, params, images = _setup()
    labels = jnp.array([1, 2])
    acts = jax.random.randint(jax.random.key(3), (2, 3, 2), 0, CFG.num_locations)
    run = jax.jit(lambda p, ft: model_lib.rollout_batch(ram, p, images, labels, jax.random.key(0), num_samples=3,
                                                        actions=acts, feature_table=ft), static_argnums=1)
    table, direct = run(params, True), run(params, False)
    for a, b in zip(table, direct):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # One trajectory at a time, jitted: the six calls share one compilation (eagerly, each compiled its scan).
    single = jax.jit(lambda p, image, label, a: model_lib.rollout(ram, p, image, label, jax.random.key(0), actions=a))
    for i in range(2):
        for k in range(3):
            one = single(params, images[i], labels[i], acts[i, k])
            for a, b in zip(one, table):
                np.testing.assert_allclose(a, b[i, k], rtol=1e-5, atol=1e-6)
    # Sampling: same key, same trajectories; the sampled actions are then scored identically.
    s1 = model_lib.rollout_batch(ram, params, images, labels, jax.random.key(9), num_samples=3, sample_from="proposal")
    s2 = model_lib.rollout_batch(ram, params, images, labels, jax.random.key(9), num_samples=3, sample_from="proposal",
                                 actions=s1.actions)
    np.testing.assert_array_equal(s1.actions, s2.actions)
    np.testing.assert_allclose(s1.log_q, s2.log_q, rtol=1e-5, atol=1e-6)


def test_proposal_log_prob_rescoring_matches_rollout():
    for locations in ("grid", "gaussian"):
        cfg = model_lib.RAMConfig(**BASE, locations=locations)
        ram, params, images = _setup(cfg)
        labels = jnp.array([0, 2])
        tr = model_lib.rollout_batch(ram, params, images, labels, jax.random.key(1), num_samples=4,
                                     sample_from="proposal")
        np.testing.assert_allclose(model_lib.proposal_log_prob(ram, params, images, labels, tr), tr.log_q,
                                   rtol=1e-5, atol=1e-5)


def test_gaussian_locations_log_prob_sampling_and_expected_log_p():
    cfg = model_lib.RAMConfig(**BASE, locations="gaussian", location_std=0.3)
    ram, params, images = _setup(cfg)
    labels = jnp.array([1, 1])
    n = 4000
    tr = jax.jit(lambda p, k: model_lib.rollout_batch(ram, p, images, labels, k, num_samples=n,
                                                      sample_from="proposal"))(params, jax.random.key(2))
    assert tr.actions.shape == (2, n, 2, 2)
    # The first step is chosen on h_0 = 0: one fixed Gaussian per image; its moments and log-density.
    a1 = np.asarray(tr.actions[0, :, 0], np.float64)
    np.testing.assert_allclose(a1.std(0), 0.3, rtol=0.05)
    prop = model_lib._merge(ram.proposal_def, params["proposal"])
    mean_q = np.asarray(jnp.tanh(prop.logits(prop.context(images[0], labels[0]), jnp.zeros(cfg.hidden))), np.float64)
    np.testing.assert_allclose(a1.mean(0), mean_q, atol=4 * 0.3 / np.sqrt(n))
    ref = scipy.stats.multivariate_normal(mean_q, 0.3 ** 2 * np.eye(2)).logpdf(a1[:5])
    np.testing.assert_allclose(np.asarray(tr.log_q[0, :5, 0]), ref, rtol=1e-5, atol=1e-5)
    # expected_log_p (closed form) = Monte Carlo mean of log p(a_1) with a_1 ~ q.
    mc = np.asarray(tr.log_p[0, :, 0], np.float64)
    np.testing.assert_allclose(float(tr.expected_log_p[0, 0, 0]), mc.mean(), atol=4 * mc.std() / np.sqrt(n))
    # Glimpse centres are the nearest pixels of the clipped locations.
    np.testing.assert_array_equal(model_lib.pixel_centres(jnp.array([[-1.0, 1.0], [-5.0, 0.0]]), 8),
                                  [[0, 7], [0, 4]])


def test_gaussian_lstm_losses_of_every_estimator_have_finite_gradients():
    cfg = model_lib.RAMConfig(**BASE, locations="gaussian", core="lstm")
    ram, params, images = _setup(cfg, baseline=True)
    batch = {"image": images, "label": jnp.array([0, 2])}
    settings = (("rws", "wake"), ("rws", "wake+sleep"), ("bound", "wake"))

    @jax.jit
    def all_grads(p, k):  # one compilation for the three estimators
        return [jax.value_and_grad(lambda q: rws.wsram_loss(ram, q, batch, k, num_samples=3, estimator=est,
                                                            proposal_update=upd)[0])(p) for est, upd in settings]

    for loss, g in all_grads(params, jax.random.key(0)):
        assert np.isfinite(loss) and np.all(np.isfinite(_flat(g))) and float(jnp.abs(_flat(g["proposal"])).sum()) > 0
    loss, _ = reinforce.reinforce_loss(ram, params, batch, jax.random.key(0))
    assert np.isfinite(loss)


@pytest.mark.parametrize("core", ["relu", "lstm"])
def test_iw_estimate_unbiased_exactly_for_each_core(core):
    """sum_a q(a) w(a) = p(y|x), enumerating all trajectories; the LSTM changes the numbers."""
    cfg = model_lib.RAMConfig(**BASE, core=core)
    with jax.enable_x64(True):
        ram, params, images = _setup(cfg, dtype=jnp.float64)
        image = images[0]
        exact, (_, log_q, log_lik) = jax.jit(lambda p: (model_lib.exact_log_likelihood(ram, p, image, LABEL),
                                                        model_lib.exact_posterior(ram, p, image, LABEL)))(params)
        tr = model_lib.rollout_batch(ram, params, image[None], jnp.array([LABEL]), jax.random.key(0),
                                     num_samples=len(ALL), actions=jnp.asarray(ALL)[None])
        log_p = tr.log_p[0].sum(-1)
        np.testing.assert_allclose(logsumexp(log_q), 0.0, atol=1e-12)
        w = np.exp(np.asarray(rws.log_importance_weights(log_lik, log_p, log_q)))
        np.testing.assert_allclose(np.sum(np.exp(np.asarray(log_q)) * w), np.exp(float(exact)), rtol=1e-10)
    if core == "lstm":
        assert "lstm" in params["model"] and "core_in" not in params["model"]


def _pair_grads(ram, params, image, objective, k=2, derivative=jax.grad):
    """All K-tuples of trajectories: their q-probabilities and the gradient of ``objective`` on each."""
    tuples = np.array(list(itertools.product(range(len(ALL)), repeat=k)))

    def one(idx):
        acts = jnp.asarray(ALL)[idx][None]
        return derivative(lambda p: objective(model_lib.rollout_batch(
            ram, p, image[None], jnp.array([LABEL]), jax.random.key(0), num_samples=k, actions=acts)))(params)

    grads = jax.jit(jax.vmap(one))(jnp.asarray(tuples))
    tr = model_lib.rollout_batch(ram, params, image[None], jnp.array([LABEL]), jax.random.key(0),
                                 num_samples=len(ALL), actions=jnp.asarray(ALL)[None])
    q = np.exp(np.asarray(tr.log_q[0].sum(-1)))
    return np.prod(q[tuples], axis=1), grads


def test_learned_prior_baseline_keeps_the_mean_exactly():
    """Enumerating all K=2 pairs from q: the prior update with learned per-step coefficients has the
    same expected gradient as with c = 1/K and as plain RWS."""
    with jax.enable_x64(True):
        ram, params, images = _setup(dtype=jnp.float64, prior_baseline=True)
        image = images[0]

        def obj(kind):
            def f(tr):
                log_lik, _, _ = rws.trajectory_terms(tr, jnp.array([LABEL]))
                return jnp.sum(rws.rws_surrogate(log_lik, tr.log_p, tr.log_q, expected_log_p=tr.expected_log_p,
                                                 control_variates=kind != "plain", train_proposal=False,
                                                 prior_baseline=tr.prior_baselines if kind == "learned" else None))
            return f

        kinds = ("plain", "constant", "learned")
        # The three objectives stacked and differentiated together: one compilation.
        prob, g = _pair_grads(ram, params, image, lambda tr: jnp.stack([obj(kind)(tr) for kind in kinds]),
                              derivative=jax.jacrev)
        flat = np.concatenate([np.asarray(x).reshape(len(prob), len(kinds), -1)
                               for x in jax.tree.leaves(g["model"])], axis=-1)  # [pairs, 3, D]
        means = dict(zip(kinds, np.einsum("n,nkd->kd", prob, flat)))
        np.testing.assert_allclose(means["learned"], means["plain"], rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(means["constant"], means["plain"], rtol=1e-8, atol=1e-11)
    # The baseline regression trains only the baseline network; the wake loss runs with it.
    batch = {"image": images, "label": jnp.array([1, 2])}
    ram32, p32, _ = _setup(prior_baseline=True)
    g = jax.grad(lambda p: rws.wsram_loss(ram32, p, batch, jax.random.key(0), num_samples=3)[0])(p32)
    assert float(jnp.abs(_flat(g["prior_baseline"])).sum()) > 0
    with pytest.raises(ValueError, match="prior_baseline"):
        rws.wsram_loss(ram32, p32, batch, jax.random.key(0), num_samples=3, control_variates=False)


def test_vimco_bound_estimator_is_unbiased_for_the_gradient_of_the_bound():
    """E_{q^2}[grad of bound_surrogate with VIMCO baselines] = grad E_{q^2}[L_2] (exact sums over pairs)."""
    with jax.enable_x64(True):
        ram, params, images = _setup(dtype=jnp.float64)
        image = images[0]

        def surrogate(tr):
            log_lik, log_p, log_q = rws.trajectory_terms(tr, jnp.array([LABEL]))
            lw = rws.log_importance_weights(log_lik, log_p, log_q)
            return jnp.sum(rws.bound_surrogate(log_lik, log_p, log_q, baseline=rws.vimco_baselines(lw)))

        prob, g = _pair_grads(ram, params, image, surrogate)
        est = prob @ np.asarray(jax.vmap(_flat)(g))
        pairs = jnp.asarray(np.array(list(itertools.product(range(len(ALL)), repeat=2))))

        def expected_bound(p):
            tr = model_lib.rollout_batch(ram, p, image[None], jnp.array([LABEL]), jax.random.key(0),
                                         num_samples=len(ALL), actions=jnp.asarray(ALL)[None])
            log_lik, log_p, log_q = (v[0] for v in rws.trajectory_terms(tr, jnp.array([LABEL])))
            lw = log_lik + log_p - log_q
            return jnp.sum(jnp.exp(log_q[pairs].sum(-1)) * rws.iw_bound(lw[pairs]))

        exact = np.asarray(_flat(jax.jit(jax.grad(expected_bound))(params)))
        np.testing.assert_allclose(est, exact, rtol=1e-7, atol=1e-10)
        # The leave-one-out baseline of sample k does not depend on log w_k.
        lw = jnp.array([[0.3, -1.2, 2.0]])
        b1 = rws.vimco_baselines(lw)
        b2 = rws.vimco_baselines(lw.at[0, 0].set(9.0))
        np.testing.assert_allclose(b1[0, 0], b2[0, 0], rtol=1e-12)
    with pytest.raises(ValueError, match="K >= 2"):
        rws.vimco_baselines(jnp.zeros((2, 1)))


@pytest.mark.slow  # ~25 s: 2,000 sampled sleep gradients
def test_sleep_q_gradient_matches_the_exact_sleep_objective():
    """Mean over keys of the sleep-q gradient = grad_q sum_{a,y} p(a|x) p(y|a,x) log q(a|x,y) (enumerated);
    and the sleep term leaves the model's gradient unchanged."""
    ram, params, images = _setup()
    image = images[0]
    batch = {"image": image[None], "label": jnp.array([LABEL])}

    def sleep_grad(key):
        g = jax.grad(lambda p: rws.wsram_loss(ram, p, batch, key, num_samples=2, proposal_update="sleep")[0])(params)
        return _flat(g["proposal"])

    n = 2000
    draws = np.asarray(jax.jit(jax.vmap(sleep_grad))(jax.random.split(jax.random.key(4), n)), np.float64)

    def exact_obj(pq):
        p = dict(params, proposal=pq)
        tot = 0.0
        for y in range(CFG.num_classes):
            tr = model_lib.rollout_batch(ram, p, image[None], jnp.array([y]), jax.random.key(0),
                                         num_samples=len(ALL), actions=jnp.asarray(ALL)[None])
            joint = jax.lax.stop_gradient(jnp.exp(tr.log_p[0].sum(-1) + jax.nn.log_softmax(tr.class_logits[0])[:, y]))
            tot = tot + jnp.sum(joint * tr.log_q[0].sum(-1))
        return -tot

    exact = np.asarray(_flat(jax.jit(jax.grad(exact_obj))(params["proposal"])))
    z = np.abs(draws.mean(0) - exact) / (draws.std(0, ddof=1) / np.sqrt(n) + 1e-9)
    assert np.median(z) < 1.5 and z.max() < 5.0, (np.median(z), z.max())
    gw, gs = (jax.grad(lambda p: rws.wsram_loss(ram, p, batch, jax.random.key(1), num_samples=2,
                                                proposal_update=u)[0])(params) for u in ("wake", "wake+sleep"))
    np.testing.assert_allclose(_flat(gw["model"]), _flat(gs["model"]), rtol=1e-6, atol=1e-7)


def test_input_validation_names_the_argument():
    ram, params, images = _setup()
    with pytest.raises(ValueError, match="num_glimpses"):
        model_lib.RAMConfig(num_glimpses=0)
    with pytest.raises(ValueError, match="num_classes"):
        model_lib.RAMConfig(num_classes=1)
    with pytest.raises(ValueError, match="locations"):
        model_lib.RAMConfig(locations="uniform")
    with pytest.raises(ValueError, match="core"):
        model_lib.RAMConfig(core="gru")
    with pytest.raises(ValueError, match="location_std"):
        model_lib.RAMConfig(location_std=0.0)
    bad = {"image": images, "label": jnp.array([0, 3])}
    with pytest.raises(ValueError, match=r"batch\['label'\].*num_classes=3"):
        rws.wsram_loss(ram, params, bad, jax.random.key(0), num_samples=2)
    with pytest.raises(ValueError, match=r"batch\['label'\]"):
        reinforce.reinforce_loss(ram, params, bad, jax.random.key(0))
    with pytest.raises(ValueError, match="labels"):
        model_lib.error_rate(ram, params, np.zeros((2, 8, 8), np.uint8), np.array([0, 5]), jax.random.key(0))
    with pytest.raises(ValueError, match="num_samples"):
        rws.wsram_loss(ram, params, {"image": images, "label": jnp.array([0, 1])}, jax.random.key(0), num_samples=0)
    with pytest.raises(ValueError, match="estimator"):
        rws.wsram_loss(ram, params, {"image": images, "label": jnp.array([0, 1])}, jax.random.key(0), num_samples=2,
                       estimator="vi")
    with pytest.raises(ValueError, match="proposal_update"):
        rws.wsram_loss(ram, params, {"image": images, "label": jnp.array([0, 1])}, jax.random.key(0), num_samples=2,
                       proposal_update="dream")
    with pytest.raises(ValueError, match="actions"):
        model_lib.rollout_batch(ram, params, images, jnp.array([0, 1]), jax.random.key(0), num_samples=2,
                                actions=jnp.zeros((2, 2, 5), jnp.int32))
    gauss = model_lib.RAMConfig(**BASE, locations="gaussian")
    rg, pg = model_lib.make_ram(gauss, jax.random.key(0))
    with pytest.raises(ValueError, match="grid"):
        model_lib.exact_log_likelihood(rg, pg, images[0], 0)
