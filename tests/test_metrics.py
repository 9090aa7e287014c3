import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

from mamjax import metrics


def test_bits_per_dim():
    assert metrics.nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert float(metrics.bits_per_dim(jnp.array([-2.0, -4.0]), 3)) == pytest.approx(3.0 / (3 * math.log(2)))
    with pytest.raises(ValueError, match="num_dims"):
        metrics.nats_to_bits_per_dim(1.0, 0)


def test_log_mean_exp_stable_and_correct():
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1000.0, -1000.0]])
    got = np.asarray(metrics.log_mean_exp(jnp.asarray(x), axis=1))
    np.testing.assert_allclose(got, logsumexp(x, axis=1) - np.log(3), rtol=1e-6)
    assert np.all(np.isfinite(got))


def test_iw_bound_rises_with_k_and_is_exact_for_constant_weights():
    rng = np.random.default_rng(0)
    lw = jnp.asarray(rng.normal(size=(20000, 50)))
    b1 = float(jnp.mean(metrics.iw_bound(lw[:, :1])))
    b5 = float(jnp.mean(metrics.iw_bound(lw[:, :5])))
    b50 = float(jnp.mean(metrics.iw_bound(lw)))
    assert b1 < b5 < b50 < 0.5  # log E[w] = 0.5 for log w ~ N(0, 1)
    assert float(metrics.iw_bound(jnp.full((7,), 2.5))) == pytest.approx(2.5)


def test_running_mean():
    rm = metrics.RunningMean()
    rm.update({"a": 1.0}, weight=1)
    rm.update({"a": 4.0}, weight=3)
    assert rm.result() == {"a": pytest.approx(3.25)}
    rm.reset()
    assert rm.result() == {}


def test_format_nll_flags_impossible_values_only():
    assert metrics.format_nll(85.123) == "85.12"
    assert metrics.format_nll(0.0) == "0.00"
    assert metrics.format_nll(-3.1) == "-3.10 (impossible: < 0, discrete data)"
    assert metrics.format_nll(50.0, floor=55.0, floor_name="the entropy") == "50.00 (impossible: < the entropy)"
    assert metrics.format_nll(0.30031, digits=4) == "0.3003"
    assert "non-finite" in metrics.format_nll(float("nan"))
