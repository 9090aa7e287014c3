"""benchmarks/ising_bench.py compares like with like: its PyTorch re-write of the official chain rule
(``MAM.est_logp``) computes, with mamjax's weights loaded, the same log-likelihoods as mamjax's."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import ising_bench  # noqa: E402
from mamjax.marginal import arm, experiment  # noqa: E402


def test_torch_chain_rule_matches_mamjax_with_the_same_weights():
    torch = pytest.importorskip("torch")
    d, batch = ising_bench.SIDE * ising_bench.SIDE, 4
    nets = experiment.make_nets(jax.random.key(0), d, 2, backbone="official_mlp", width=32, depth=3)
    x = jax.random.bernoulli(jax.random.key(1), 0.5, (batch, d)).astype(jnp.int32)
    orderings = jnp.stack([jax.random.permutation(k, d) for k in jax.random.split(jax.random.key(2), batch)])
    full = jnp.ones((d,), bool)
    ours = jax.vmap(lambda a, o: arm.arm_log_marginal(nets.cond_apply, nets.params["conditional"], a, full, o))(
        x, orderings)
    ar, marg = ising_bench.torch_nets(32, nets.params)
    rank = torch.tensor(np.argsort(np.asarray(orderings), axis=1))  # step at which each position is revealed
    theirs = ising_bench.torch_chain_rule(ar, torch.tensor(np.asarray(x) + 1.0), rank).numpy()
    np.testing.assert_allclose(theirs, np.asarray(ours), rtol=1e-4, atol=1e-3)
    assert np.all(np.asarray(ours) < 0)
    # the marginal half too: f(x) on full and empty rows
    f_ours = nets.marg_apply(nets.params["marginal"], x, jnp.ones(x.shape, bool))
    h = torch.nn.functional.one_hot(torch.tensor(np.asarray(x) + 1).long(), 3).float().flatten(-2, -1)
    np.testing.assert_allclose(marg(h)[:, 0].detach().numpy(), np.asarray(f_ours), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_main_reports_no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    rows, _ = ising_bench.run(width=8, batch=2, reps=1, chunks=["default"], threads=1)
    names = [r[0] for r in rows]
    assert "chain rule, official" in names and rows[names.index("chain rule, official")][1].startswith(
        "official: torch not installed")
    assert all(np.isfinite(float(r[1])) for r in rows if "mamjax" in r[0])
