"""FID / IS against closed forms and scipy; FCN forward / batch-norm modes; prior loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from flax import nnx

from mamjax import nn as nn_lib
from mamjax.maskgit import fcn, metrics, prior


def test_fid_self_zero_and_symmetric():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) * 2 + 1
    assert abs(metrics.fid(a, a)) < 1e-6
    assert metrics.fid(a, b) > 1.0
    np.testing.assert_allclose(metrics.fid(a, b), metrics.fid(b, a), rtol=1e-9)


def test_frechet_distance_matches_scipy_sqrtm_and_1d_closed_form():
    rng = np.random.default_rng(1)
    for _ in range(5):
        a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
        c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
        m1, m2 = rng.normal(size=5), rng.normal(size=5)
        ref = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
        np.testing.assert_allclose(metrics.frechet_distance(m1, c1, m2, c2), ref, rtol=1e-6)
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    np.testing.assert_allclose(metrics.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]), 4.0 + 1.0, rtol=1e-12)


def test_inception_score_extremes():
    c = 4
    confident_uniform = np.eye(c)[np.arange(400) % c]
    np.testing.assert_allclose(metrics.inception_score(confident_uniform), c, rtol=1e-6)
    np.testing.assert_allclose(metrics.inception_score(np.full((50, c), 1 / c)), 1.0, rtol=1e-9)
    np.testing.assert_allclose(metrics.inception_score(np.eye(c)[np.zeros(50, int)]), 1.0, rtol=1e-6)


def test_inception_score_splits_closed_forms():
    c = 5
    one_hot = np.eye(c)[np.arange(1000) % c]  # every split sees each class equally often: IS = C exactly
    m, s = metrics.inception_score_splits(one_hot, 10)
    np.testing.assert_allclose([m, s], [c, 0.0], atol=1e-9)
    m, s = metrics.inception_score_splits(np.full((103, c), 1 / c), 10)  # uniform predictions: IS = 1
    np.testing.assert_allclose([m, s], [1.0, 0.0], atol=1e-12)
    # two halves of different quality: mean and population std of the per-split scores
    probs = np.concatenate([np.eye(2)[np.arange(50) % 2], np.full((50, 2), 0.5)])
    m, s = metrics.inception_score_splits(probs, 2)
    np.testing.assert_allclose([m, s], [1.5, 0.5], rtol=1e-9)
    with pytest.raises(ValueError, match="num_splits"):
        metrics.inception_score_splits(one_hot[:5], 10)


def test_fid_of_gaussian_samples_approaches_the_closed_form():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(3, 3))
    cov1, cov2 = np.diag([1.0, 4.0, 9.0]), a @ a.T + np.eye(3)
    m1, m2 = np.zeros(3), np.array([1.0, -2.0, 0.5])
    x1 = rng.multivariate_normal(m1, cov1, size=200_000)
    x2 = rng.multivariate_normal(m2, cov2, size=200_000)
    s1 = scipy.linalg.sqrtm(cov1)
    exact = np.sum((m1 - m2) ** 2) + np.trace(cov1 + cov2 - 2 * scipy.linalg.sqrtm(s1 @ cov2 @ s1).real)
    np.testing.assert_allclose(metrics.fid(x1, x2), exact, rtol=0.02)
    # diagonal covariances: ||m1 - m2||^2 + sum (sqrt(v1) - sqrt(v2))^2
    y = rng.normal(size=(200_000, 3)) * np.array([2.0, 1.0, 3.0]) + m2
    closed = np.sum(m2 ** 2) + np.sum((np.array([1.0, 2.0, 3.0]) - np.array([2.0, 1.0, 3.0])) ** 2)
    np.testing.assert_allclose(metrics.fid(x1, y), closed, rtol=0.02)


def test_fcn_shapes_and_batchnorm_modes():
    clf = fcn.make_fcn(3, seed=0)
    x = jax.random.normal(jax.random.key(0), (4, 20))
    # jit: eager nnx.merge would update the caller's state in place (reported to the nn owner)
    apply = jax.jit(clf.apply, static_argnums=3)
    (logits, feats), new_state = apply(clf.params, clf.state, x, True)
    assert logits.shape == (4, 3) and feats.shape == (4, 128)
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), clf.state, new_state)
    assert any(jax.tree.leaves(changed)), "training mode must update batch statistics"
    _, eval_state = apply(clf.params, clf.state, x, False)
    same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), clf.state, eval_state)
    assert all(jax.tree.leaves(same)), "evaluation mode must not update batch statistics"


@pytest.mark.slow
def test_fcn_learns_separable_classes(tmp_path):
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 32)
    y = rng.integers(0, 2, 64)
    x = np.sin(2 * np.pi * (1 + 3 * y[:, None]) * t) + 0.3 * rng.normal(size=(64, 32))
    clf = fcn.train_fcn(x.astype(np.float32), y, 2, num_steps=60, batch_size=16, workdir=str(tmp_path),
                        progress=False)
    probs, feats = fcn.predict(clf, x.astype(np.float32))
    assert np.mean(probs.argmax(1) == y) > 0.9
    assert (tmp_path / "checkpoints").exists()


def test_maskgit_mask_and_prior_loss():
    maskable = jnp.arange(12) >= 4
    ms = jax.jit(jax.vmap(prior.maskgit_mask, in_axes=(0, None)))(jax.random.split(jax.random.key(0), 200), maskable)
    ms = np.asarray(ms)
    assert ms[:, :4].all(), "non-maskable positions must stay observed"
    hidden = (~ms[:, 4:]).sum(1)
    assert hidden.min() >= 1 and hidden.max() <= 8 and len(set(hidden.tolist())) > 3
    pri = prior.make_priors(8, 5, 7, num_classes=2, dim=16, depth=1, num_heads=2, rngs=nnx.Rngs(0))
    (al, pl), (ah, ph) = nn_lib.functional(pri["lf"]), nn_lib.functional(pri["hf"])
    batch = {"codes_l": jax.random.randint(jax.random.key(1), (4, 5), 0, 8),
             "codes_h": jax.random.randint(jax.random.key(2), (4, 7), 0, 8), "label": jnp.array([0, 1, 1, 0])}
    loss, m = jax.jit(lambda p, b, k: prior.prior_loss(al, ah, 8, p, b, k, num_classes=2))(
        {"lf": pl, "hf": ph}, batch, jax.random.key(3))
    # an untrained prior is close to uniform: about log K per stage
    np.testing.assert_allclose(float(m["loss_l"]), np.log(8), rtol=0.3)
    np.testing.assert_allclose(float(m["loss_h"]), np.log(8), rtol=0.3)
