"""The MNIST example end to end at a tiny size: trains, checkpoints, resumes to the same numbers, plots."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_example_runs_resumes_and_plots(tmp_path):
    spec = importlib.util.spec_from_file_location("hvae_mnist", os.path.join(ROOT, "examples", "hvae_mnist.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    args = ["--preset", "vae1", "--steps", "20", "--num-test", "30", "--iwae-k", "5", "--eval-every", "10",
            "--workdir", str(tmp_path)]
    first = mod.main(args)
    for name in ("samples.png", "reconstructions.png", "sparsity.png", "curves.png", "results.json"):
        assert (tmp_path / name).exists(), name
    again = mod.main(args)  # resumes at step 20: no training, same evaluation
    assert again == first
    longer = mod.main(args[:3] + ["30"] + args[4:])
    assert longer["elbo"] != first["elbo"]
