"""Rectified Gaussian, Normal and Bernoulli helpers against scipy (quadrature, closed forms)."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from mamjax.distributions import Normal, RectifiedGaussian, bernoulli_log_prob, kl_divergence, kl_divergence_mc

PARAMS = [(0.0, 1.0), (1.3, 0.7), (-2.0, 0.5), (0.4, 2.5), (-0.3, 0.1)]


@contextlib.contextmanager
def x64():
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


def _quad_expect(g, mu, s):
    """E[g(max(0, y))], y ~ N(mu, s^2), by the spike plus adaptive quadrature of the slab."""
    spike = g(0.0) * stats.norm.cdf(-mu / s)
    slab, _ = integrate.quad(lambda z: g(z) * stats.norm.pdf(z, mu, s), 0.0, np.inf, epsabs=1e-13, epsrel=1e-12)
    return spike + slab


@pytest.mark.parametrize("mu,s", PARAMS)
def test_density_integrates_to_one_and_matches_scipy(mu, s):
    with x64():
        d = RectifiedGaussian(jnp.float64(mu), jnp.float64(s))
        mass0 = float(jnp.exp(d.log_prob(0.0)))
        slab, _ = integrate.quad(lambda z: float(jnp.exp(d.log_prob(z))), 0.0, np.inf, epsabs=1e-13)
        assert abs(mass0 + slab - 1.0) < 1e-8
        zs = np.array([1e-6, 0.3, 1.0, 4.0])
        np.testing.assert_allclose(np.asarray(d.log_prob(zs)), stats.norm.logpdf(zs, mu, s), rtol=1e-12)
        np.testing.assert_allclose(float(d.log_prob(0.0)), stats.norm.logcdf(-mu / s), rtol=1e-12)
        np.testing.assert_allclose(float(d.prob_zero()), stats.norm.cdf(-mu / s), rtol=1e-12)
        assert float(d.log_prob(-0.1)) == -np.inf


@pytest.mark.parametrize("mu,s", PARAMS[:3])
def test_moments_entropy_and_samples(mu, s):
    with x64():
        d = RectifiedGaussian(jnp.float64(mu), jnp.float64(s))
        mean = _quad_expect(lambda z: z, mu, s)
        var = _quad_expect(lambda z: z * z, mu, s) - mean**2
        np.testing.assert_allclose(float(d.mean()), mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(float(d.variance()), var, rtol=1e-8, atol=1e-12)
        p0 = stats.norm.cdf(-mu / s)
        slab, _ = integrate.quad(lambda z: -stats.norm.pdf(z, mu, s) * stats.norm.logpdf(z, mu, s), 0, np.inf)
        np.testing.assert_allclose(float(d.entropy()), slab - p0 * np.log(p0), rtol=1e-8)
        n = 400_000
        z = np.asarray(d.sample(seed=jax.random.key(0), sample_shape=(n,)))
        assert z.shape == (n,) and z.min() >= 0.0
        assert abs(np.mean(z == 0.0) - p0) < 5 * np.sqrt(p0 * (1 - p0) / n)
        assert abs(z.mean() - mean) < 5 * np.sqrt(var / n)
        assert abs(z.var() - var) < 5 * np.std((z - mean) ** 2) / np.sqrt(n) + 1e-12


def test_reparameterized_gradient_matches_finite_differences_of_quadrature():
    g_np = lambda z: np.sin(2.0 * z) + 0.5 * z * z + np.exp(-z)  # noqa: E731
    g_jnp = lambda z: jnp.sin(2.0 * z) + 0.5 * z * z + jnp.exp(-z)  # noqa: E731
    mu, s, h = 0.3, 0.8, 1e-4
    with x64():
        def mc(params, key):
            d = RectifiedGaussian(params[0], params[1])
            return jnp.mean(g_jnp(d.sample(seed=key, sample_shape=(1_000_000,))))
        grad = np.asarray(jax.jit(jax.grad(mc))(jnp.array([mu, s]), jax.random.key(1)))
    fd_mu = (_quad_expect(g_np, mu + h, s) - _quad_expect(g_np, mu - h, s)) / (2 * h)
    fd_s = (_quad_expect(g_np, mu, s + h) - _quad_expect(g_np, mu, s - h)) / (2 * h)
    np.testing.assert_allclose(grad, [fd_mu, fd_s], rtol=0.02, atol=0.01)


PAIRS = [((0.0, 1.0), (0.0, 1.0)), ((1.0, 0.5), (0.0, 1.0)), ((-1.5, 0.7), (0.5, 1.3)), ((2.0, 0.3), (-1.0, 2.0)),
         ((-3.0, 1.0), (1.0, 0.5))]


def _quad_kl(q, p):
    (mq, sq), (mp, sp) = q, p
    q0, p0 = stats.norm.cdf(-mq / sq), stats.norm.cdf(-mp / sp)
    f = lambda z: stats.norm.pdf(z, mq, sq) * (stats.norm.logpdf(z, mq, sq) - stats.norm.logpdf(z, mp, sp))  # noqa
    slab, _ = integrate.quad(f, 0.0, np.inf, epsabs=1e-13, epsrel=1e-12)
    return q0 * (np.log(q0) - np.log(p0)) + slab


@pytest.mark.parametrize("q,p", PAIRS)
def test_kl_closed_form_matches_quadrature_and_monte_carlo(q, p):
    with x64():
        dq, dp = RectifiedGaussian(*map(jnp.float64, q)), RectifiedGaussian(*map(jnp.float64, p))
        exact = _quad_kl(q, p)
        np.testing.assert_allclose(float(kl_divergence(dq, dp)), exact, rtol=1e-8, atol=1e-10)
        samples = 200_000
        z = dq.sample(seed=jax.random.key(2), sample_shape=(samples,))
        lr = np.asarray(dq.log_prob(z) - dp.log_prob(z))
        mc = float(kl_divergence_mc(dq, dp, jax.random.key(2), samples))
        assert np.isfinite(mc) and np.isfinite(lr).all()
        assert abs(mc - exact) < 5 * lr.std() / np.sqrt(samples) + 1e-9


def test_kl_gradient_matches_finite_differences_of_quadrature():
    q, p, h = (0.4, 0.9), (-0.5, 1.4), 1e-5
    with x64():
        f = lambda v: kl_divergence(RectifiedGaussian(v[0], v[1]), RectifiedGaussian(v[2], v[3]))  # noqa: E731
        grad = np.asarray(jax.grad(f)(jnp.array([*q, *p])))
    v = np.array([*q, *p])
    fd = []
    for i in range(4):
        e = np.zeros(4)
        e[i] = h
        a, b = v + e, v - e
        fd.append((_quad_kl(tuple(a[:2]), tuple(a[2:])) - _quad_kl(tuple(b[:2]), tuple(b[2:]))) / (2 * h))
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_extreme_parameters_are_finite_in_float32_and_batched_under_jit():
    loc = jnp.array([-40.0, -8.0, 0.0, 8.0, 40.0])
    scale = jnp.array([0.05, 1.0, 1.0, 1.0, 0.05])
    q, p = RectifiedGaussian(loc, scale), RectifiedGaussian(jnp.zeros(5), jnp.ones(5))

    @jax.jit
    def f(q, p, key):
        z, lq = q.sample_and_log_prob(seed=key, sample_shape=(3,))
        return z, lq, kl_divergence(q, p), q.mean(), q.variance(), p.log_prob(z)

    z, lq, kl, m, v, lp = f(q, p, jax.random.key(0))
    assert z.shape == (3, 5) and lq.shape == (3, 5) and kl.shape == (5,)
    for a in (lq, kl, m, v, lp):
        assert np.isfinite(np.asarray(a)).all()
    assert (np.asarray(kl) > -1e-4).all()
    g = jax.grad(lambda l: jnp.sum(kl_divergence(RectifiedGaussian(l, scale), p)))(loc)
    assert np.isfinite(np.asarray(g)).all()


def test_normal_and_bernoulli_match_scipy():
    mu, s = np.array([0.2, -1.0]), np.array([0.5, 2.0])
    d = Normal(jnp.asarray(mu), jnp.asarray(s))
    z = np.array([0.1, 3.0])
    np.testing.assert_allclose(np.asarray(d.log_prob(z)), stats.norm.logpdf(z, mu, s), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(d.entropy()), stats.norm.entropy(mu, s), rtol=1e-5)
    kl_quad = [integrate.quad(lambda t: stats.norm.pdf(t, mu[i], s[i]) * (stats.norm.logpdf(t, mu[i], s[i])
                                                                        - stats.norm.logpdf(t, 0.0, 1.0)),
                              -np.inf, np.inf)[0] for i in range(2)]
    np.testing.assert_allclose(np.asarray(d.kl_divergence(Normal(jnp.zeros(2), jnp.ones(2)))), kl_quad, rtol=1e-5)
    assert float(jnp.sum(d.prob_zero())) == 0.0
    logits = np.array([-30.0, -1.0, 0.0, 2.0, 30.0])
    for x in (0.0, 1.0):
        want = special.log_expit(logits if x == 1.0 else -logits)
        np.testing.assert_allclose(np.asarray(bernoulli_log_prob(jnp.asarray(logits), x)), want, rtol=1e-5, atol=1e-6)


def test_pathwise_gradient_of_sampled_log_prob_is_biased_closed_form_is_not():
    """Why the ELBO uses closed-form KLs: log q(z) jumps where z leaves 0, so differentiating
    log q(z(eps)) along the sample path misses that jump (d/dloc of -entropy); the closed form does not."""
    mu, s = 0.2, 0.3
    with x64():
        def pathwise(loc, key):
            d = RectifiedGaussian(loc, jnp.float64(s))
            return jnp.mean(d.log_prob(d.sample(seed=key, sample_shape=(400_000,))))
        g_path = float(jax.grad(pathwise)(jnp.float64(mu), jax.random.key(3)))
        g_exact = float(jax.grad(lambda loc: -RectifiedGaussian(loc, jnp.float64(s)).entropy())(jnp.float64(mu)))
    h = 1e-5
    neg_ent = lambda m: -(-stats.norm.cdf(-m / s) * stats.norm.logcdf(-m / s)  # noqa: E731
                          + integrate.quad(lambda z: -stats.norm.pdf(z, m, s) * stats.norm.logpdf(z, m, s), 0, np.inf,
                                           epsabs=1e-13)[0])
    fd = (neg_ent(mu + h) - neg_ent(mu - h)) / (2 * h)
    np.testing.assert_allclose(g_exact, fd, rtol=1e-5, atol=1e-7)
    c = -mu / s
    jump = stats.norm.pdf(c) / s * (np.log(stats.norm.pdf(c) / s) - stats.norm.logcdf(c))  # boundary term
    assert abs(g_path - fd) > 1.0  # the path-wise estimate is badly off ...
    np.testing.assert_allclose(g_path + jump, fd, atol=0.03)  # ... by exactly the missing boundary term


# --- numerical edges against an arbitrary-precision reference (issue 18) -------------------------

import mpmath

from mamjax.distributions.rectified_gaussian import log_ndtr

mpmath.mp.dps = 60


def _mp_log_ndtr(x):
    return mpmath.log(mpmath.ncdf(mpmath.mpf(x)))


def _mp_moments(a):
    """``(Phi(a), phi(a))`` and the variance of ``max(0, a + eps)`` in arbitrary precision."""
    a = mpmath.mpf(a)
    big, small = mpmath.ncdf(a), mpmath.npdf(a)
    m1 = a * big + small
    m2 = (a * a + 1) * big + a * small
    return m1, m2 - m1 * m1


@pytest.mark.parametrize("x", [-0.5, -5.0, -19.9, -20.0, -20.1, -25.0, -30.0, -38.0, -40.0, -1e3, -1e8, -1e150])
def test_log_ndtr_float64_matches_mpmath(x):
    with x64():
        got = float(log_ndtr(jnp.float64(x)))
        slope = float(jax.grad(log_ndtr)(jnp.float64(x)))
    want = _mp_log_ndtr(x)
    assert abs(got - float(want)) <= 2e-15 * abs(float(want)), (got, float(want))
    x = mpmath.mpf(x)
    if x > -100:
        want_slope = mpmath.npdf(x) / mpmath.ncdf(x)  # the inverse Mills ratio
    else:  # mpmath's ncdf loses it there; the asymptotic expansion is exact to O(x^-5) relative
        want_slope = -x * (1 + x**-2 - 2 * x**-4)
    assert abs(slope - float(want_slope)) <= 1e-13 * float(want_slope), (slope, float(want_slope))


@pytest.mark.parametrize("x", [-3.0, -9.9, -10.0, -12.0, -20.0, -1e4])
def test_log_ndtr_float32_matches_mpmath(x):
    got = float(log_ndtr(jnp.float32(x)))
    want = float(_mp_log_ndtr(float(np.float32(x))))
    assert abs(got - want) <= 3e-7 * abs(want)
    slope = float(jax.grad(log_ndtr)(jnp.float32(x)))
    want_slope = float(mpmath.npdf(float(np.float32(x))) / mpmath.ncdf(float(np.float32(x))))
    assert abs(slope - want_slope) <= 1e-5 * abs(want_slope)


def test_point_mass_and_its_gradient_at_large_ratio():
    with x64():
        for ratio in (20.0, 30.0, 40.0, 1e8):
            d = RectifiedGaussian(jnp.float64(ratio), jnp.float64(1.0))
            want = _mp_log_ndtr(-ratio)
            assert abs(float(d.log_prob(0.0)) - float(want)) <= 2e-15 * abs(float(want))
            g = float(jax.grad(lambda m: RectifiedGaussian(m, jnp.float64(1.0)).log_prob(0.0))(jnp.float64(ratio)))
            want_g = -mpmath.npdf(-ratio) / mpmath.ncdf(-ratio)
            assert abs(g - float(want_g)) <= 1e-13 * abs(float(want_g)), (ratio, g, float(want_g))


def test_subnormal_positive_z_is_in_the_slab():
    with x64():
        d = RectifiedGaussian(jnp.float64(0.0), jnp.float64(1.0))
        tiny = np.float64(5e-324)
        np.testing.assert_allclose(float(d.log_prob(tiny)), stats.norm.logpdf(0.0), rtol=1e-15)
        assert float(d.log_prob(-tiny)) == -np.inf
        assert float(d.log_prob(-0.0)) == float(d.log_prob(0.0)) == pytest.approx(np.log(0.5))
    d32 = RectifiedGaussian(jnp.float32(0.0), jnp.float32(1.0))
    np.testing.assert_allclose(float(d32.log_prob(np.float32(1e-45))), stats.norm.logpdf(0.0), rtol=1e-6)


@pytest.mark.parametrize("a", [1e8, 1e3, 40.0, 5.0, 1.0, 0.0, -1.0, -3.0, -8.0])
def test_variance_matches_mpmath(a):
    with x64():
        for scale in (1.0, 3.0):
            got = float(RectifiedGaussian(jnp.float64(a * scale), jnp.float64(scale)).variance())
            want = float(_mp_moments(a)[1]) * scale**2
            # a < 0: terms of size a^2 Phi cancel (measured 2e-11 relative at a = -8, see the docstring).
            rtol = 1e-13 if a >= 0 else 1e-13 * max(a**4, 1.0)
            assert abs(got - want) <= rtol * want, (a, got, want)


def test_entropy_and_kl_at_huge_ratios_and_tiny_scales_are_not_nan():
    with x64():
        huge = RectifiedGaussian(jnp.float64(2e160), jnp.float64(1.0))
        std = RectifiedGaussian(jnp.float64(0.0), jnp.float64(1.0))
        # Entropy of a (numerically) pure Gaussian slab: log(sigma sqrt(2 pi e)).
        np.testing.assert_allclose(float(huge.entropy()), 0.5 * np.log(2 * np.pi * np.e), rtol=1e-15)
        assert float(kl_divergence(huge, std)) == np.inf  # ~ 2e320, beyond float64
        same = RectifiedGaussian(jnp.float64(2e160), jnp.float64(1.0))
        assert float(kl_divergence(huge, same)) == 0.0
        # KL against a p without mass at zero (P0 underflows): +inf, not NaN.
        no_spike = RectifiedGaussian(jnp.float64(1e200), jnp.float64(1.0))
        assert float(kl_divergence(std, no_spike)) == np.inf
        # A near-deterministic q: huge but finite, = log(s_p / s_q) - 1/2 + ... (checked against mpmath).
        q = RectifiedGaussian(jnp.float64(1.0), jnp.float64(1e-300))
        want = mpmath.log(mpmath.mpf(1e300)) - mpmath.mpf(1) / 2 + mpmath.mpf(1) / 2 - mpmath.log(1) \
            + (mpmath.mpf(1e-300) ** 2 - 1) / 2 + mpmath.mpf(1) / 2
        got = float(kl_divergence(q, std))
        assert np.isfinite(got) and abs(got - float(want)) < 1e-12 * float(want)
    tiny32 = RectifiedGaussian(jnp.float32(1.0), jnp.float32(1e-30))
    kl32 = float(kl_divergence(tiny32, RectifiedGaussian(jnp.float32(0.0), jnp.float32(1.0))))
    assert np.isfinite(kl32) and kl32 > 60
    g = jax.grad(lambda l: kl_divergence(RectifiedGaussian(l, jnp.float32(1e-30)),
                                         RectifiedGaussian(jnp.float32(0.0), jnp.float32(1.0))))(jnp.float32(1.0))
    assert np.isfinite(float(g))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), [1.0, -0.5]])
def test_nonpositive_scale_is_refused_eagerly(scale):
    with pytest.raises(ValueError, match="`scale` must be > 0"):
        RectifiedGaussian(jnp.zeros(np.shape(scale)), jnp.asarray(scale))
