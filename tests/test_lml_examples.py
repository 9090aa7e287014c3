"""Smoke runs of the lml examples at their --quick sizes (slow: excluded by default)."""

import importlib.util
import os

import numpy as np
import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
@pytest.mark.parametrize("name,png", [("lml_convergence", "convergence.png"), ("lml_area", "area.png")])
def test_figure_examples_write_their_plots(name, png, tmp_path):
    _load(name).main(["--quick", "--workdir", str(tmp_path)])
    assert (tmp_path / png).stat().st_size > 0


@pytest.mark.slow
def test_train_ppca_example_resumes_and_lml_objective_wins(tmp_path):
    mod = _load("lml_train_ppca")
    results, gp = mod.main(["--quick", "--workdir", str(tmp_path)])
    again, _ = mod.main(["--quick", "--workdir", str(tmp_path)])  # resumes at the last step: same numbers
    assert [r[2] for r in results] == [r[2] for r in again]
    lmls = {name: final for name, _, final, _ in results}
    assert lmls["lml"] >= max(lmls.values()) - 1e-6
    assert (tmp_path / "ppca_training.png").exists() and (tmp_path / "gp_training.png").exists()


@pytest.mark.slow
def test_linear_vae_example_runs_on_given_data(tmp_path):
    rng = np.random.default_rng(0)
    data = {"image": (rng.random((30, 28, 28)) < 0.3).astype(np.uint8)}
    rows = _load("lml_linear_vae").main(["--quick", "--workdir", str(tmp_path)], data=data)
    assert {r[0] for r in rows} == {"rate15", "elbo", "lml"}
    assert all(np.isfinite(r[2]) for r in rows)
