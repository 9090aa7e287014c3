"""No recompilation per mask count (issue 20): masks padded to a bucket, results equal the unpadded ones."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mamjax import lml
from mamjax.lml import estimator as est
from mamjax.lml import lowrank

FIELDS = ("value", "stderr", "per_size", "per_size_stderr")


def _ppca(d=7, n=5):
    w = jax.random.normal(jax.random.key(0), (d, 2))
    return w, lml.ppca_sample(jax.random.key(1), w, 0.2, n)


def _assert_same(a, b, k):
    for name in FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-6, atol=1e-6,
                                   err_msg=f"{name}, {k} masks per rate")
    np.testing.assert_array_equal(a.exact, b.exact)


def test_mask_bucket_sizes_and_errors():
    assert [est.mask_bucket(k) for k in (1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 20, 33)] == [1, 2, 3, 4, 6, 6, 8, 8, 12,
                                                                                       16, 24, 48]
    for k in range(1, 200):
        assert k <= est.mask_bucket(k) <= max(1.5 * k, 2)
    with pytest.raises(ValueError, match="num_masks"):
        est.mask_bucket(0)


@pytest.mark.parametrize("d, kw", [(7, dict()), (8, dict(rates=[0.3, 0.6])), (9, dict(exact=False))])
def test_lowrank_padded_equals_unpadded_and_compiles_once_per_bucket(d, kw):
    w, x = _ppca(d)  # a D of its own per case: shapes no other test compiled
    key = jax.random.key(3)
    before = lowrank._matmul_estimate_jit._cache_size()
    for k in (5, 6):  # one bucket (6): one compilation
        padded = lowrank.lowrank_mpt(x, key, k, w, 0.2, **kw)
        # Inside the caller's jit the static K is used as is (no padding): the unpadded reference.
        unpadded = jax.jit(lambda x, key, k=k: lowrank.lowrank_mpt(x, key, k, w, 0.2, **kw))(x, key)
        _assert_same(padded, unpadded, k)
    assert lowrank._matmul_estimate_jit._cache_size() - before == 1
    lowrank.lowrank_mpt(x, key, 7, w, 0.2, **kw)  # the next bucket (8) compiles anew
    assert lowrank._matmul_estimate_jit._cache_size() - before == 2


def test_cumulative_mpt_padded_equals_unpadded_and_python_loop():
    w, x = _ppca()
    cond = lml.ppca_cond_logpdf(w, 0.2)
    key = jax.random.key(4)
    traces = []

    def counted(x, mask):
        traces.append(1)
        return cond(x, mask)

    for k in (9, 10, 12):  # bucket 12
        a = lml.cumulative_mpt(counted, x, key, k)
        b = jax.jit(lambda x, key, k=k: lml.cumulative_mpt(cond, x, key, k))(x, key)
        _assert_same(a, b, k)
        loop = lml.cumulative_mpt_loop(cond, x, key, k)
        np.testing.assert_allclose(a.per_size, loop.per_size, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(a.stderr, loop.stderr, rtol=1e-4, atol=1e-5)
    assert len(traces) == 1  # one trace of the callable for the three mask counts


def test_one_mask_keeps_infinite_stderr_and_padding_hides_no_extra_weight():
    w, x = _ppca()
    one = lowrank.lowrank_mpt(x, jax.random.key(5), 1, w, 0.2, exact=False)
    assert bool(jnp.all(jnp.isinf(one.stderr)))
    # 3 masks pad to bucket 3, 5 to 6: the padded slot must not change the per-size mean.
    five = lowrank.lowrank_mpt(x, jax.random.key(5), 5, w, 0.2, exact=False)
    ref = jax.jit(lambda x: lowrank.lowrank_mpt(x, jax.random.key(5), 5, w, 0.2, exact=False))(x)
    np.testing.assert_allclose(five.per_size, ref.per_size, rtol=1e-6)
    assert bool(jnp.all(jnp.isfinite(five.stderr)))


def test_ordering_padded_equals_unpadded_and_compiles_once_per_bucket():
    from mamjax.lml import ordering

    d = 11
    w, x = _ppca(d)
    cov, mean = lml.ppca_cov(w, 0.2), jnp.zeros(d)
    key = jax.random.key(6)
    before = ordering._ordering_estimate_jit._cache_size()
    for k in (1, 5, 6):  # buckets 1 and 6
        a = ordering.ordering_mpt(x, key, k, mean, cov)
        b = jax.jit(lambda x, key, k=k: ordering.ordering_mpt(x, key, k, mean, cov))(x, key)
        np.testing.assert_allclose(a.value, b.value, rtol=1e-6)
        # float32 stderr of values ~ -20: two-pass variance vs jnp.std differ by a few ulps of the values
        np.testing.assert_allclose(a.stderr, b.stderr, rtol=1e-6, atol=1e-5)
    assert ordering._ordering_estimate_jit._cache_size() - before == 2


def test_plan_is_cached_read_only_and_safe_to_build_under_a_trace():
    est._cached_plan.cache_clear()
    x = jax.random.normal(jax.random.key(0), (8, 6))
    w = jnp.ones((6, 1))
    # First built inside a caller's jit, then reused outside it: no leaked tracer.
    inside = jax.jit(lambda x: lml.lowrank_mpt_mean(x, jax.random.key(1), 2, w, 0.5).value)(x)
    outside = lml.lowrank_mpt_mean(x, jax.random.key(1), 2, w, 0.5).value
    np.testing.assert_allclose(inside, outside, rtol=1e-6)
    plan_a, arrays_a = est.plan_arrays(6, 2, None, None, "auto")
    plan_b, arrays_b = est.plan_arrays(6, 2, [1 / 6 * m for m in range(1, 7)], None, "auto")
    assert arrays_a[0] is arrays_b[0]  # same sizes through rates: one cached plan
    assert not plan_a.masks.flags.writeable
    with pytest.raises(ValueError, match="exact"):
        est.plan_arrays(6, 2, None, None, "yes")
    with pytest.raises(ValueError, match="num_masks_per_rate"):
        est.plan_arrays(6, 0, None, None, "auto")
