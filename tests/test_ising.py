"""Ising target: adjacency, log f, exact log Z (enumeration vs transfer matrix), Gibbs sampler."""

import itertools

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from mamjax.data import ising


def _brute_log_z(J, b):
    """Independent reference: itertools over all states, plain Python sums."""
    D = len(b)
    vals = []
    for x in itertools.product([-1.0, 1.0], repeat=D):
        x = np.array(x)
        vals.append(sum(J[i, j] * x[i] * x[j] for i in range(D) for j in range(D)) + b @ x)
    return logsumexp(vals)


@pytest.mark.parametrize("L", [2, 3, 4, 5])
def test_adjacency_is_symmetric_with_four_bonds_per_site(L):
    A = ising.lattice_adjacency(L)
    np.testing.assert_array_equal(A, A.T)
    np.testing.assert_array_equal(A.sum(1), 4.0 if L >= 3 else 2.0)
    assert np.all(np.diag(A) == 0)
    if L >= 3:
        assert set(np.unique(A)) == {0.0, 1.0}
        # site (1, 1) touches (0,1), (2,1), (1,0), (1,2)
        nbrs = sorted(np.flatnonzero(A[1 * L + 1]))
        assert nbrs == sorted([0 * L + 1, 2 * L + 1, 1 * L + 0, 1 * L + 2])
        # periodic wrap: (0, 0) touches (0, L-1) and (L-1, 0)
        assert A[0, L - 1] == 1 and A[0, (L - 1) * L] == 1
    else:  # L = 2: right == left neighbour; as igraph.Graph.Lattice([2, 2], circular=True) (the official code)
        assert set(np.unique(A)) == {0.0, 1.0}
        np.testing.assert_array_equal(A, [[0, 1, 1, 0], [1, 0, 0, 1], [1, 0, 0, 1], [0, 1, 1, 0]])
        multi = ising.lattice_adjacency(L, multi_edges=True)
        np.testing.assert_array_equal(multi, 2 * A)
    np.testing.assert_array_equal(ising.lattice_adjacency(L, multi_edges=True).sum(1), 4.0)


def test_log_f_counts_each_bond_twice():
    L = 3
    J, b = ising.ising_params(L, coupling=0.1, field=0.2)
    ones = np.ones(L * L)
    # all spins up: 2 * coupling * (2 L^2 bonds) + field * D
    np.testing.assert_allclose(float(ising.log_f(ones, J, b)), 2 * 0.1 * 2 * L * L + 0.2 * L * L, rtol=1e-6)
    rng = np.random.default_rng(0)
    x = rng.choice([-1.0, 1.0], size=(5, L * L))
    np.testing.assert_allclose(np.asarray(ising.log_f(x, J, b)),
                               np.einsum("ni,ij,nj->n", x, J, x) + x @ b, rtol=1e-5)


def test_bits_spins_roundtrip():
    bits = np.array([[0, 1, 1, 0]])
    spins = ising.bits_to_spins(bits)
    np.testing.assert_array_equal(spins, [[-1, 1, 1, -1]])
    np.testing.assert_array_equal(ising.spins_to_bits(spins), bits)
    states = ising.enumerate_spins(5)
    np.testing.assert_array_equal(states, np.array(list(itertools.product([-1, 1], repeat=5))))
    np.testing.assert_array_equal(ising.spins_to_index(states), np.arange(32))


@pytest.mark.parametrize("L", [2, 3])
def test_enumeration_matches_brute_force(L):
    J, b = ising.ising_params(L, coupling=0.3, field=-0.1)
    np.testing.assert_allclose(ising.log_partition_enumeration(J, b, chunk_size=64), _brute_log_z(J, b), rtol=1e-12)


@pytest.mark.parametrize("L", [2, 3, 4])
def test_transfer_matrix_matches_enumeration(L):
    J, b = ising.ising_params(L)
    np.testing.assert_allclose(ising.log_partition_transfer(J, b), ising.log_partition_enumeration(J, b), rtol=1e-12)
    # inhomogeneous, non-symmetric nearest-row couplings and random fields
    rng = np.random.default_rng(L)
    J2 = J * rng.uniform(0.0, 5.0, J.shape)
    b2 = rng.normal(size=L * L)
    np.testing.assert_allclose(ising.log_partition_transfer(J2, b2), ising.log_partition_enumeration(J2, b2),
                               rtol=1e-12)


def test_transfer_matrix_strong_coupling_does_not_overflow():
    J, b = ising.ising_params(4, coupling=30.0, field=0.0)
    # Ground states all-up/all-down dominate: log Z ~ log 2 + 2 * 30 * 32.
    log_z = ising.log_partition_transfer(J, b)
    np.testing.assert_allclose(log_z, ising.log_partition_enumeration(J, b), rtol=1e-12)
    np.testing.assert_allclose(log_z, np.log(2) + 2 * 30 * 32, rtol=1e-9)


def test_auto_method_picks_a_valid_algorithm():
    J, b = ising.ising_params(5)  # D = 25: transfer matrix
    np.testing.assert_allclose(ising.exact_log_partition(J, b), ising.log_partition_transfer(J, b), rtol=1e-14)
    rng = np.random.default_rng(0)
    J2 = 0.05 * rng.normal(size=(17, 17))  # dense, not a lattice: enumeration
    b2 = rng.normal(size=17)
    np.testing.assert_allclose(ising.exact_log_partition(J2, b2), ising.log_partition_enumeration(J2, b2))


def test_transfer_rejects_long_range_couplings():
    J, b = ising.ising_params(4)
    J[0, 2 * 4] = 0.5  # row 0 to row 2
    with pytest.raises(ValueError, match="adjacent"):
        ising.log_partition_transfer(J, b)


def test_exact_log_probs_normalized_and_consistent():
    J, b = ising.ising_params(3)
    states, lp = ising.exact_log_probs(J, b)
    assert states.shape == (512, 9) and lp.shape == (512,)
    np.testing.assert_allclose(logsumexp(lp), 0.0, atol=1e-12)
    log_z = ising.exact_log_partition(J, b)
    np.testing.assert_allclose(lp, np.einsum("ni,ij,nj->n", states, J, states) + states @ b - log_z, atol=1e-12)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="`L`"):
        ising.lattice_adjacency(1)
    J, b = ising.ising_params(3)
    with pytest.raises(ValueError, match="`b`"):
        ising.log_partition_enumeration(J, b[:4])
    with pytest.raises(ValueError, match="`method`"):
        ising.exact_log_partition(J, b, method="magic")
    with pytest.raises(ValueError, match="`method`"):
        ising.gibbs_sample(jax.random.key(0), J, b, 4, 2, method="magic")
    with pytest.raises(ValueError, match="`num_sweeps`"):
        ising.gibbs_sample(jax.random.key(0), J, b, 4, 0)
    with pytest.raises(ValueError, match="`init`"):
        ising.gibbs_sample(jax.random.key(0), J, b, 4, 2, init=np.ones((3, 9)))
    with pytest.raises(ValueError, match="`D`"):
        ising.enumerate_spins(21)


@pytest.mark.parametrize("L", [3, 4])
def test_coloring_is_proper(L):
    A = ising.lattice_adjacency(L)
    colors = ising.greedy_coloring(A)
    i, j = np.nonzero(A)
    assert np.all(colors[i] != colors[j])
    if L % 2 == 0:
        assert colors.max() == 1  # checkerboard


@pytest.mark.parametrize("method", ["checkerboard", "sequential"])
def test_gibbs_frequencies_match_exact_3x3(method):
    J, b = ising.ising_params(3)
    _, lp = ising.exact_log_probs(J, b)
    n = 100_000
    x = np.asarray(ising.gibbs_sample(jax.random.key(1), J, b, n, 20, method=method))
    assert x.shape == (n, 9) and set(np.unique(x)) == {-1.0, 1.0}
    freq = np.bincount(ising.spins_to_index(x), minlength=512) / n
    tv = 0.5 * np.abs(freq - np.exp(lp)).sum()
    # Sampling noise alone gives E[TV] ~ 0.02 at n = 1e5; a sampler ignoring J gives 0.42.
    assert tv < 0.05, tv
    if method == "checkerboard":  # same key, same samples; another key, other samples (no recompile)
        np.testing.assert_array_equal(x, ising.gibbs_sample(jax.random.key(1), J, b, n, 20, method=method))
        assert not np.array_equal(x, ising.gibbs_sample(jax.random.key(2), J, b, n, 20, method=method))


def test_gibbs_moments_strong_coupling():
    # Stronger coupling (still below the critical point: 2 * 0.15 < 0.44) gives large
    # neighbour correlations; compare to exact moments.
    J, b = ising.ising_params(4, coupling=0.15, field=0.05)
    states, lp = ising.exact_log_probs(J, b)
    p = np.exp(lp)
    s = states.astype(np.float64)
    exact_mag = p @ s.mean(1)
    exact_nn = p @ (s[:, 0] * s[:, 1])
    n = 20_000
    x = np.asarray(ising.gibbs_sample(jax.random.key(2), J, b, n, 50), np.float64)
    mag, nn = x.mean(1), x[:, 0] * x[:, 1]
    assert abs(mag.mean() - exact_mag) < 4 * mag.std() / np.sqrt(n) + 1e-3
    assert abs(nn.mean() - exact_nn) < 4 * nn.std() / np.sqrt(n) + 1e-3
    assert exact_nn > 0.3  # the test is not trivially near independence


@pytest.mark.parametrize("L", [2, 3])
def test_mean_field_kl_is_the_enumerated_minimum_over_product_distributions(L):
    """Closed-form KL at the fixed point == KL(q || p) by enumeration, and no product q does better."""
    from scipy.optimize import minimize

    J, b = ising.ising_params(L, coupling=0.3)
    states, log_p = ising.exact_log_probs(J, b)

    def enumerated_kl(m):
        log_q = np.sum(np.log((1.0 + states * m) / 2.0), axis=1)
        return float(np.sum(np.exp(log_q) * (log_q - log_p)))

    m, kl = ising.mean_field(J, b, ising.exact_log_partition(J, b))
    np.testing.assert_allclose(kl, enumerated_kl(m), rtol=1e-9, atol=1e-12)
    best = minimize(lambda u: enumerated_kl(np.tanh(u)), np.zeros(L * L), method="BFGS")
    assert kl <= best.fun + 1e-7
    assert 0.0 < kl < enumerated_kl(np.zeros(L * L))  # above the exact 0, below the uniform q
    m0, none = ising.mean_field(J, b)
    assert none is None and np.allclose(m0, m)
    with pytest.raises(ValueError, match="damping"):
        ising.mean_field(J, b, damping=1.0)


def test_beyond_one_site_std_is_zero_for_factorized_and_exact_for_a_pair_term():
    from mamjax.marginal.experiment import beyond_one_site_std

    cube = np.array(list(itertools.product([0, 1], repeat=3)))
    w = np.array([0.3, -1.2, 2.0])
    assert beyond_one_site_std(cube, cube @ w + 5.0) < 1e-12
    # bits x0 x1 = (1 + s0 + s1 + s0 s1) / 4 in spins: over the uniform cube the residual is s0 s1 / 4
    np.testing.assert_allclose(beyond_one_site_std(cube, cube[:, 0] * cube[:, 1]), 0.25, rtol=1e-12)
    with pytest.raises(ValueError, match="values"):
        beyond_one_site_std(cube, np.zeros(5))
