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
    _load(name).main(["--config", f"{name}:quick", "--workdir", str(tmp_path)])
    assert (tmp_path / png).stat().st_size > 0


@pytest.mark.slow
def test_train_ppca_example_resumes_and_lml_objective_wins(tmp_path):
    mod = _load("lml_train_ppca")
    results, gp = mod.main(["--config", "lml_train_ppca:quick", "--workdir", str(tmp_path)])
    again, _ = mod.main(["--config", "lml_train_ppca:quick", "--workdir", str(tmp_path)])  # resumes at the last step: same numbers
    assert [r[2] for r in results] == [r[2] for r in again]
    lmls = {name: final for name, _, final, _ in results}
    assert lmls["lml"] >= max(lmls.values()) - 1e-6
    assert (tmp_path / "ppca_training.png").exists() and (tmp_path / "gp_training.png").exists()


@pytest.mark.slow
def test_linear_vae_example_runs_on_given_data(tmp_path):
    rng = np.random.default_rng(0)
    data = {"image": (rng.random((32, 28, 28)) < 0.3).astype(np.uint8)}
    rows = _load("lml_linear_vae").main(["--config", "lml_linear_vae:quick", "--workdir", str(tmp_path)], data=data)
    assert {r[0] for r in rows} == {"rate15", "elbo", "lml"}
    assert all(np.isfinite(r[2]) for r in rows)


def test_configs_build_and_bad_overrides_exit_2(tmp_path):
    """Every lml config loads in each variant; a wrong field or type is an argparse error (exit 2)."""
    from mamjax import cli

    for name, variants in {"lml_train_ppca": ("paper", "cpu", "quick"), "lml_linear_vae": ("paper", "cpu", "quick"),
                           "lml_convergence": ("paper", "quick"), "lml_area": ("paper", "quick")}.items():
        for v in (None,) + variants:
            cfg = cli.load_config(name if v is None else f"{name}:{v}")
            assert cfg.n >= 1
    with pytest.raises(SystemExit) as e:
        _load("lml_area").main(["--config", "lml_area:quick", "--config.nope=1", "--workdir", str(tmp_path)])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        _load("lml_area").main(["--config", "lml_area:quick", "--config.dim=abc", "--workdir", str(tmp_path)])
    assert e.value.code == 2
