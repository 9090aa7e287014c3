"""The one decoding schedule: exact counts (50-digit reference), the table's properties, traced lookup."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest

from mamjax.maskgit import schedule as S


def _reference_cosine(num_steps: int, max_n: int) -> np.ndarray:
    """floor(n cos(pi (t+1) / 2T)) in 60-digit arithmetic; a value within 1e-40 below an integer is that integer."""
    with mpmath.workdps(60):
        out = np.zeros((max_n + 1, num_steps), np.int64)
        for t in range(num_steps):
            c = mpmath.cos(mpmath.pi * (t + 1) / (2 * num_steps))
            for n in range(max_n + 1):
                out[n, t] = int(mpmath.floor(n * c + mpmath.mpf("1e-40")))
    return out


def test_cosine_counts_exact_for_all_small_sizes():
    for T in range(1, 33):
        np.testing.assert_array_equal(S.hidden_count_table(T, 256, "cosine"), _reference_cosine(T, 256),
                                      err_msg=f"T={T}")


def test_linear_counts_exact():
    for T in range(1, 33):
        ref = np.array([[(n * (T - t - 1)) // T for t in range(T)] for n in range(257)])
        np.testing.assert_array_equal(S.hidden_count_table(T, 256, "linear"), ref, err_msg=f"T={T}")


def test_float32_off_by_one_case_is_fixed():
    # floor(10 cos(pi/3)) = 5; float32 gives 4.
    assert S.hidden_counts(3, 10).tolist() == [8, 5, 0]
    assert int(jnp.floor(10 * jnp.cos(jnp.float32(np.pi / 3)))) == 4  # the bug this module avoids


def test_table_properties_and_traced_lookup():
    tab = S.hidden_count_table(10, 40)
    assert tab.shape == (41, 10) and tab.dtype == np.int32
    assert (np.diff(tab, axis=1) <= 0).all() and (tab[:, -1] == 0).all() and (tab <= np.arange(41)[:, None]).all()
    n0 = jnp.array([40, 7, 0])
    got = jax.jit(lambda s, n: S.num_hidden(s, 10, n, 40))(jnp.int32(3), n0)
    np.testing.assert_array_equal(got, tab[np.asarray(n0), 3])
    with pytest.raises(ValueError, match="schedule"):
        S.hidden_count_table(10, 4, "square")
    with pytest.raises(ValueError, match="num_steps"):
        S.hidden_count_table(0, 4)
