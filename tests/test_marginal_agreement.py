"""The paper's agreement protocol: each piece against an independent reference (the official loop, scipy,
exact enumerated models)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mamjax.marginal import agreement, exact, experiment, marginal_net

D, K = 4, 2


def _official_preprocess(logp, threshold):
    """The official ``preprocess_logp`` (PrincetonLIPS/MaM, utils/eval_utils.py), re-expressed in numpy."""
    order = np.argsort(-logp, kind="stable")
    sel, prev = [0], logp[order[0]]
    for i in range(1, logp.shape[0]):
        if prev - logp[order[i]] > threshold:
            sel.append(i)
            prev = logp[order[i]]
    keep = np.zeros(logp.shape[0], bool)
    keep[order[sel]] = True
    return keep


def test_drop_near_duplicates_matches_the_official_loop():
    rng = np.random.default_rng(0)
    scores = rng.normal(0, 6, size=(200, 5)).astype(np.float32)
    got = np.asarray(agreement.drop_near_duplicates(jnp.asarray(scores), 5.0))
    want = np.stack([_official_preprocess(s, 5.0) for s in scores])
    np.testing.assert_array_equal(got, want)
    assert got.sum(-1).min() >= 1 and 0 < got.mean() < 1  # both branches exercised
    with pytest.raises(ValueError, match="`threshold`"):
        agreement.drop_near_duplicates(jnp.asarray(scores), -1.0)


def test_per_image_correlations_match_scipy_with_official_weighting():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    a[:, 1] = a[:, 0]  # a tie: ranks are shared as in spearmanr
    keep = rng.random((30, 4)) < 0.7
    keep[0] = [True, False, False, False]  # one kept completion: the image is skipped
    res = agreement.per_image_correlations(a, b, keep)
    sp, pr, w = [], [], []
    for i in range(30):
        if keep[i].sum() < 2:
            continue
        ai, bi = a[i][keep[i]], b[i][keep[i]]
        p = 0.0 if np.ptp(ai) == 0 else stats.pearsonr(ai, bi)[0]
        s = 0.0 if np.ptp(ai) == 0 else stats.spearmanr(ai, bi).statistic
        sp.append(s), pr.append(p), w.append(keep[i].sum())
    np.testing.assert_allclose(res["spearman"], np.average(sp, weights=w), atol=1e-10)
    np.testing.assert_allclose(res["pearson"], np.average(pr, weights=w), atol=1e-10)
    assert res["num_images"] == len(w) and res["num_pairs"] == sum(w)
    assert np.isnan(res["spearman_per_image"][0])
    # Controls: a constant score ranks nothing (0 by convention); a monotone map of the reference is 1.
    const = agreement.per_image_correlations(np.zeros((30, 4)), b)
    assert const["spearman"] == 0.0 and const["pearson"] == 0.0
    assert agreement.per_image_correlations(np.exp(b), b)["spearman"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="`keep`"):
        agreement.per_image_correlations(a, b, keep.astype(int))
    with pytest.raises(ValueError, match="`scores`"):
        agreement.per_image_correlations(a[:, :3], b)


def test_size_only_control_and_scaled_counts():
    assert agreement.scaled_censor_counts(784) == (100, 400, 700)
    assert agreement.scaled_censor_counts(196) == (25, 100, 175)
    assert agreement.scaled_censor_counts(32, (50, 100, 150, 200), paper_dims=250) == (6, 13, 19, 26)  # text8
    with pytest.raises(ValueError, match="paper_dims"):
        agreement.scaled_censor_counts(32, paper_dims=1)
    mask = jnp.array([[True, False, True], [False, False, False]])
    np.testing.assert_array_equal(agreement.size_only_scores(mask), [-2.0, -0.0])
    np.testing.assert_array_equal(agreement.censor_count_scores((1, 3), 2), [[-1, -3], [-1, -3]])
    with pytest.raises(ValueError, match="`num_dims`"):
        agreement.scaled_censor_counts(1)


@pytest.fixture(scope="module")
def exact_nets():
    states = jnp.asarray(exact.enumerate_states(D, K))
    log_p = exact.normalize_table(2.0 * jax.random.normal(jax.random.key(0), (states.shape[0],)))

    def cond(lp, x, mask):
        return exact.table_conditional_logits((lp, states), x, mask, num_classes=K)

    def marg(lp, x, mask):
        return exact.table_log_marginal((lp, states), x, mask)

    return experiment.Nets(marg, cond, {"marginal": log_p, "conditional": log_p}, D, K), np.asarray(states), log_p


@pytest.mark.slow  # 3000 completions through exact tables
def test_censor_and_complete_keeps_the_rest_and_follows_the_conditional(exact_nets):
    nets, states, log_p = exact_nets
    n = 3000
    x = jnp.broadcast_to(jnp.asarray(states[11]), (n, D))
    comp, observed = agreement.censor_and_complete(nets.cond_apply, log_p, x, jax.random.key(1), (1, 2, 3))
    comp, observed = np.asarray(comp), np.asarray(observed)
    assert comp.shape == observed.shape == (n, 3, D)
    np.testing.assert_array_equal((~observed).sum(-1), np.broadcast_to([1, 2, 3], (n, 3)))
    assert np.all(observed[:, 2] <= observed[:, 1]) and np.all(observed[:, 1] <= observed[:, 0])  # nested
    assert np.all(np.where(observed, comp == states[11], True))  # observed pixels untouched
    # Completions given one fixed observed set follow the exact conditional.
    sel = np.all(observed[:, 1] == observed[0, 1], axis=-1)
    obs0, sub = observed[0, 1], comp[sel, 1]
    p = np.exp(np.asarray(log_p)) * np.all((states == states[11]) | ~obs0, axis=-1)
    idx = sub @ (1 << np.arange(D - 1, -1, -1))
    tv = 0.5 * np.abs(np.bincount(idx, minlength=2 ** D) / len(idx) - p / p.sum()).sum()
    assert len(idx) > 200 and tv < 0.12, (len(idx), tv)
    with pytest.raises(ValueError, match="`num_censored`"):
        agreement.censor_and_complete(nets.cond_apply, log_p, x, jax.random.key(1), (0,))


def test_paper_agreement_is_one_for_an_exact_pair_and_controls_are_reported(exact_nets):
    nets, states, log_p = exact_nets
    x = jnp.asarray(np.tile(states, (2, 1)))
    res = experiment.paper_agreement(nets, nets.params, x, jax.random.key(2), num_censored=(1, 2, 4),
                                     num_orderings=2, threshold=0.5, batch_size=256)
    assert res["num_censored"] == [1, 2, 4]
    assert res["mam"]["num_images"] > 5
    assert res["mam"]["spearman"] == pytest.approx(1.0) and res["mam"]["pearson"] == pytest.approx(1.0)
    assert res["ao_arm_s"]["pearson"] == pytest.approx(1.0, abs=1e-5)  # exact conditionals: any ordering is exact
    assert res["size_only"]["spearman"] == 0.0  # full images: |S| says nothing
    assert -1.0 <= res["censor_count"]["spearman"] <= 1.0
    # A MaM that is off by noise agrees less.
    noisy = dict(nets.params, marginal=nets.params["marginal"]
                 + 3.0 * jax.random.normal(jax.random.key(3), log_p.shape))
    worse = experiment.paper_agreement(nets, noisy, x, jax.random.key(2), num_censored=(1, 2, 4),
                                       num_orderings=2, threshold=0.5, batch_size=256)
    assert worse["mam"]["spearman"] < 0.95


def test_pooled_subset_agreement_reports_the_size_only_control(exact_nets):
    nets, states, _ = exact_nets
    res = experiment.subset_agreement(nets, nets.params, jnp.asarray(states[::2]), jax.random.key(4),
                                      num_orderings=1, batch_size=256)
    assert res["spearman"] == pytest.approx(1.0, abs=1e-6)
    assert 0.3 < res["size_only_spearman"] < 1.0  # |S| alone already explains much of the pooled metric


def test_log_marginal_checks_values_against_num_classes():
    apply, params = marginal_net.make_marginal_net(jax.random.key(0), 4, 2, width=8, depth=1)
    x = jnp.array([[0, 1, 2, 0]], jnp.int32)
    with pytest.raises(ValueError, match="`x`"):
        marginal_net.log_marginal(apply, params, x, jnp.ones((1, 4), bool))
    with pytest.raises(ValueError, match="`x`"):
        marginal_net.log_marginal_many_masks(apply, params, x, jnp.ones((3, 4), bool))
    # A hidden entry may hold anything; an explicit K overrides the network's.
    assert marginal_net.log_marginal(apply, params, x, jnp.array([[True, True, False, True]])).shape == (1,)
    assert marginal_net.log_marginal(apply, params, x, jnp.ones((1, 4), bool), num_classes=3).shape == (1,)
    # Under jit only dtypes are checked (documented).
    jitted = jax.jit(functools.partial(marginal_net.log_marginal, apply))
    assert jitted(params, x, jnp.ones((1, 4), bool)).shape == (1,)
