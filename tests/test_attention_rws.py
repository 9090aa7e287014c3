"""WS-RAM estimators against exact enumeration on a tiny model (4 locations, T = 2: 16 trajectories)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp

from mamjax.attention import control_variates as cv
from mamjax.attention import model as model_lib
from mamjax.attention import reinforce, rws

CFG = model_lib.RAMConfig(image_size=8, patch=2, num_scales=2, grid_size=2, num_glimpses=2, glimpse_hidden=8,
                          location_hidden=4, hidden=8, num_classes=3, proposal_view=4, proposal_hidden=8)
LABEL = 1


def _setup(proposal=True, seed=0, dtype=jnp.float32):
    ram, params = model_lib.make_ram(CFG, jax.random.key(seed), proposal=proposal)
    # Perturb every parameter so neither the prior (zero-initialized policy) nor q is uniform.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    leaves = [(x + 0.4 * jax.random.normal(k, x.shape)).astype(dtype) for x, k in zip(leaves, keys)]
    image = jax.random.uniform(jax.random.key(seed + 7), (8, 8), dtype)
    return ram, jax.tree.unflatten(tree, leaves), image


def _trajectories(ram, params, image, actions):
    """Scores the given trajectories, actions [K, T] -> Trajectory with [K, ...] leaves."""
    return jax.vmap(lambda a: model_lib.rollout(ram, params, image, LABEL, jax.random.key(0), actions=a))(actions)


def _terms(ram, params, image, actions):
    """actions [K, T] -> (log_lik, log_p, log_q, log_p_steps) for those trajectories."""
    tr = _trajectories(ram, params, image, actions)
    log_lik = jax.nn.log_softmax(tr.class_logits)[:, LABEL]
    return log_lik, tr.log_p.sum(-1), tr.log_q.sum(-1), tr.log_p


def _jit_terms(ram, params, image, actions):
    return jax.jit(lambda p, im, a: _terms(ram, p, im, a))(params, image, actions)


ALL = model_lib.all_trajectories(CFG.num_locations, CFG.num_glimpses)  # [16, 2]


def test_prior_and_proposal_are_normalized_and_sampled_correctly():
    ram, params, image = _setup()
    _, log_p, log_q, _ = _jit_terms(ram, params, image, jnp.asarray(ALL))
    np.testing.assert_allclose(jnp.exp(logsumexp(log_p)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(jnp.exp(logsumexp(log_q)), 1.0, rtol=1e-5)
    n = 2000
    sample = jax.jit(jax.vmap(lambda k: [model_lib.rollout(ram, params, image, LABEL, k, sample_from=src).actions
                                         for src in ("prior", "proposal")]))
    for acts, logprob in zip(sample(jax.random.split(jax.random.key(1), n)), (log_p, log_q)):
        acts = np.asarray(acts)
        counts = np.bincount(acts[:, 0] * CFG.num_locations + acts[:, 1], minlength=len(ALL))
        expected = n * np.exp(np.asarray(logprob, np.float64))
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert chi2 < 37.7, chi2  # chi-square 15 dof, p = 0.001


def test_importance_weighted_estimate_is_unbiased_exactly():
    """E_{q^K}[exp L_K] = p(y|x) summing over all K-tuples; E[L_1] <= E[L_2] <= E[L_3] <= log p(y|x)."""
    with jax.enable_x64(True):
        ram, params, image = _setup(dtype=jnp.float64)
        exact, (log_post, _, _), (log_lik, log_p, log_q, _) = jax.jit(lambda p, im: (
            model_lib.exact_log_likelihood(ram, p, im, LABEL), model_lib.exact_posterior(ram, p, im, LABEL),
            _terms(ram, p, im, jnp.asarray(ALL))))(params, image)
        exact = float(exact)
        log_w = np.asarray(rws.log_importance_weights(log_lik, log_p, log_q))
        q = np.exp(np.asarray(log_q))
        means = []
        for k in (1, 2, 3):
            idx = np.array(list(itertools.product(range(len(ALL)), repeat=k)))
            prob = np.prod(q[idx], axis=1)
            bound = np.asarray(rws.iw_bound(jnp.asarray(log_w[idx])))
            np.testing.assert_allclose(np.sum(prob * np.exp(bound)), np.exp(exact), rtol=1e-10)
            means.append(np.sum(prob * bound))
        assert means[0] < means[1] < means[2] < exact
        # L_1 is the variational bound E_q[log p(y, a|x) - log q(a|x, y)].
        np.testing.assert_allclose(means[0], np.sum(q * log_w), rtol=1e-12)
        # With q = p(a|x, y) (the exact posterior) every weight equals p(y|x): zero variance.
        np.testing.assert_allclose(rws.log_importance_weights(log_lik, log_p, log_post), exact, rtol=1e-10)


def test_importance_weighted_estimate_unbiased_with_the_sampler():
    ram, params, image = _setup()
    exact = float(jnp.exp(jax.jit(lambda p, im: model_lib.exact_log_likelihood(ram, p, im, LABEL))(params, image)))

    def one(key):
        tr = model_lib.rollout_batch(ram, params, image[None], jnp.array([LABEL]), key, num_samples=2,
                                     sample_from="proposal")
        log_lik, log_p, log_q = rws.trajectory_terms(tr, jnp.array([LABEL]))
        return jnp.exp(rws.iw_bound(rws.log_importance_weights(log_lik, log_p, log_q)))[0]

    est = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(3), 4000)), np.float64)
    assert abs(est.mean() - exact) < 4 * est.std() / np.sqrt(len(est)), (est.mean(), exact)


def test_k1_prior_proposal_reduces_to_reinforce():
    """K = 1, q = p(a|x): L_1 = log p(y|a,x) and its score-function gradient IS REINFORCE, per sample."""
    ram, params, image = _setup(proposal=False)

    def traj(p, key):
        return model_lib.rollout(ram, p, image, LABEL, key, sample_from="prior")

    def bound_obj(p, key):
        tr = traj(p, key)
        log_lik = jax.nn.log_softmax(tr.class_logits)[LABEL]
        return rws.bound_surrogate(log_lik[None], tr.log_p.sum()[None], tr.log_q.sum()[None]), log_lik

    def reinforce_obj(p, key):
        tr = traj(p, key)
        log_lik = jax.nn.log_softmax(tr.class_logits)[LABEL]
        return reinforce.reinforce_surrogate(log_lik, tr.log_p, log_lik)

    def rws_obj(p, key):
        tr = traj(p, key)
        log_lik = jax.nn.log_softmax(tr.class_logits)[LABEL]
        return -rws.rws_surrogate(log_lik[None], tr.log_p.sum()[None], tr.log_q.sum()[None], train_proposal=False)

    both = jax.jit(jax.vmap(lambda k: (jax.value_and_grad(bound_obj, has_aux=True)(params, k),
                                       jax.grad(reinforce_obj)(params, k), jax.grad(rws_obj)(params, k))))
    ((value, log_lik), g_bound), g_reinforce, g_rws = both(jax.random.split(jax.random.key(10), 8))
    np.testing.assert_allclose(value, log_lik, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g_bound), jax.tree.leaves(g_reinforce)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # The RWS wake update has the same classifier gradient grad log p(y|a,x); it differs only in the
    # policy's score term (w~ = 1 instead of the reward log p(y|a,x)), which the bound's gradient adds.
    for a, b in zip(jax.tree.leaves(g_rws["model"]["classifier"]), jax.tree.leaves(g_reinforce["model"]["classifier"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_reinforce_is_unbiased_for_the_variational_bound_gradient():
    """Expected REINFORCE gradient (exact sum over a ~ p) = grad of sum_a p(a|x) log p(y|a,x)."""
    with jax.enable_x64(True):
        ram, params, image = _setup(proposal=False, dtype=jnp.float64)
        acts = jnp.asarray(ALL)

        def bound(p):
            log_lik, log_p, _, _ = _terms(ram, p, image, acts)
            return jnp.sum(jnp.exp(log_p) * log_lik)

        def expected_reinforce(p):
            log_lik, log_p, _, steps = _terms(ram, p, image, acts)
            prob = jax.lax.stop_gradient(jnp.exp(log_p))
            return jnp.sum(prob * reinforce.reinforce_surrogate(log_lik, steps, log_lik))

        g1, g2 = jax.jit(lambda p: (jax.grad(bound)(p), jax.grad(expected_reinforce)(p)))(params)
        for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_rws_wake_update_is_gradient_of_bound_with_samples_fixed():
    ram, params, image = _setup()
    acts = jnp.asarray(ALL[np.array([3, 9, 14])])  # K = 3 fixed trajectories

    def rws_obj(p):
        log_lik, log_p, log_q, _ = _terms(ram, p, image, acts)
        return -rws.rws_surrogate(log_lik, log_p, log_q, train_proposal=False)

    def bound(p):
        log_lik, log_p, log_q, _ = _terms(ram, p, image, acts)
        return rws.iw_bound(rws.log_importance_weights(log_lik, log_p, log_q))

    g1, g2 = jax.jit(lambda p: (jax.grad(rws_obj)(p), jax.grad(bound)(p)))(params)
    for a, b in zip(jax.tree.leaves(g1["model"]), jax.tree.leaves(g2["model"])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _flat(tree):
    return jnp.concatenate([x.ravel() for x in jax.tree.leaves(tree)])


def test_control_variates_keep_mean_and_cut_variance_exactly():
    """Sum over all K = 2 pairs of trajectories from q: same mean gradient, lower variance."""
    k = 2
    with jax.enable_x64(True):
        ram, params, image = _setup(dtype=jnp.float64)
        pairs = np.array(list(itertools.product(range(len(ALL)), repeat=k)))
        _, _, log_q_all, _ = _jit_terms(ram, params, image, jnp.asarray(ALL))
        prob = np.prod(np.exp(np.asarray(log_q_all))[pairs], axis=1)

        def grads(idx):
            acts = jnp.asarray(ALL)[idx]

            def obj(p, use_cv):
                tr = _trajectories(ram, p, image, acts)
                log_lik = jax.nn.log_softmax(tr.class_logits)[:, LABEL]
                return -rws.rws_surrogate(log_lik, tr.log_p.sum(-1), tr.log_q.sum(-1),
                                          expected_log_p=tr.expected_log_p.sum(-1), control_variates=use_cv)

            out = []
            for use in (False, True):
                g = jax.grad(obj)(params, use)
                out += [_flat(g["model"]), _flat(g["proposal"])]
            return out

        gm0, gq0, gm1, gq1 = [np.asarray(g) for g in jax.jit(jax.vmap(grads))(jnp.asarray(pairs))]
        mean = lambda g: prob @ g  # noqa: E731
        var = lambda g: prob @ np.sum((g - mean(g)) ** 2, 1)  # noqa: E731
        np.testing.assert_allclose(mean(gm1), mean(gm0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(mean(gq1), mean(gq0), rtol=1e-9, atol=1e-12)
        assert var(gm1) < 0.8 * var(gm0), (var(gm1), var(gm0))
        assert var(gq1) < 0.5 * var(gq0), (var(gq1), var(gq0))


def test_control_variates_cut_measured_variance_of_wsram_gradient():
    """Measured over many keys with the real sampler, K = 4, a batch of 2 images. float64: in float32
    the near-zero-variance coordinates of the paired difference show a roundoff bias of ~1e-5."""
    with jax.enable_x64(True):
        ram, params, image = _setup(dtype=jnp.float64)
        batch = {"image": jnp.stack([image, image.T]), "label": jnp.array([LABEL, 2])}

        def g(key):
            grads = [jax.grad(lambda p: rws.wsram_loss(ram, p, batch, key, num_samples=4, control_variates=use)[0])(
                params) for use in (False, True)]
            return [_flat(gr["model"]["policy"]) for gr in grads] + [_flat(gr["proposal"]) for gr in grads]

        n = 500
        draws = jax.jit(lambda ks: jax.lax.map(g, ks))(jax.random.split(jax.random.key(5), n))
        gm0, gm1, gq0, gq1 = [np.asarray(d, np.float64) for d in draws]
    tv = lambda d: np.sum(np.var(d, axis=0, ddof=1))  # noqa: E731
    assert tv(gm1) < 0.7 * tv(gm0), (tv(gm1), tv(gm0))  # the location policy's parameters
    assert tv(gq1) < 0.7 * tv(gq0), (tv(gq1), tv(gq0))
    # Same keys: the paired difference has mean zero within Monte Carlo error, coordinate-wise
    # (loose: the differences are heavy-tailed; the exact-enumeration test checks the mean exactly).
    for d in (gm1 - gm0, gq1 - gq0):
        z = np.abs(d.mean(0)) / (d.std(0, ddof=1) / np.sqrt(n) + 1e-12)
        assert np.median(z) < 1.5 and z.max() < 6.0, (np.median(z), z.max())
    # The library's moment helper agrees with numpy.
    _, var = cv.estimator_moments(lambda k: jnp.asarray(jax.random.normal(k, (3,))), jax.random.split(
        jax.random.key(0), 200))
    assert 0.7 < float(cv.total_variance(var)) / 3 < 1.3


def test_k1_wake_q_with_control_variate_is_zero():
    w = rws.normalized_weights(jnp.array([[0.3]]))
    np.testing.assert_array_equal(cv.centered_proposal_weights(w), 0.0)
    # Uniform weights: the prior surrogate is the analytic expectation only.
    np.testing.assert_allclose(cv.prior_surrogate(jnp.full((1, 4), 0.25), jnp.arange(4.0)[None],
                                                  jnp.ones((1, 4))), [1.0])


def test_losses_jit_and_validate_arguments():
    ram, params, image = _setup()
    batch = {"image": (np.asarray(image)[None].repeat(3, 0) * 255).astype(np.uint8), "label": np.array([0, 1, 2])}
    loss, m = jax.jit(lambda p, k: rws.wsram_loss(ram, p, batch, k, num_samples=3))(params, jax.random.key(0))
    assert np.isfinite(loss) and 1.0 <= m["ess"] <= 3.0 and m["variational_bound"] <= m["iw_bound"] + 1e-6
    with pytest.raises(ValueError, match="reward"):
        reinforce.reinforce_loss(ram, params, batch, jax.random.key(0), reward="bogus")
    with pytest.raises(ValueError, match="sample_from"):
        model_lib.rollout(ram, params, image, 0, jax.random.key(0), sample_from="posterior")
    with pytest.raises(ValueError, match="image"):
        model_lib.rollout(ram, params, image[:4], 0, jax.random.key(0))
