"""The text8 MaM example through its config on a small text the test writes: the paper's network has the
paper's shapes (checked without allocating it), a missing data path names the setting, and a tiny run goes
end to end (slow)."""

import importlib.util
import json
import os

import jax
import numpy as np
import pytest

from mamjax import cli
from mamjax.data import text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _example():
    spec = importlib.util.spec_from_file_location("_ex_marginal_text8", os.path.join(ROOT, "examples",
                                                                                   "marginal_text8.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_text(path, num_chars=12000, seed=0):
    """Words from a small vocabulary: text with structure an AO-ARM can learn in a few steps."""
    rng = np.random.default_rng(seed)
    words = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "far"]
    out = " ".join(rng.choice(words, size=num_chars // 3))[:num_chars]
    path.write_text(out)
    return out


@pytest.mark.parametrize("variant", ["", ":paper", ":cpu", ":cpu,quick"])
def test_text8_variants_load(variant):
    c = cli.load_config("marginal_text8" + variant)
    assert c.arm_steps > 0 and c.seq_len in (250, 32)
    with pytest.raises(cli.ConfigError, match="unknown variant"):
        cli.load_config("marginal_text8:nope")


def test_paper_text8_networks_have_the_paper_shapes():
    c = cli.load_config("marginal_text8")
    assert (c.seq_len, c.dim, c.depth, c.num_heads, c.batch_size, c.mam_batch_size, c.lr, c.clip) == (
        250, 768, 12, 12, 16, 512, 5e-4, 0.25)
    shapes = jax.eval_shape(lambda k: _example()._make_nets(c, k).params, jax.random.key(0))
    leaves = {jax.tree_util.keystr(p): v.shape for p, v in jax.tree_util.tree_leaves_with_path(shapes)}
    mlp = [s for p, s in leaves.items() if "marginal" in p and "blocks" in p and "kernel" in p and 3072 in s]
    assert (768, 3072) in mlp and (3072, 768) in mlp  # FFN 3072 in the shared transformer
    head = [s for p, s in leaves.items() if p.startswith("['marginal']['head']") and "kernel" in p]
    assert head == [(768, 3072), (3072, 3072), (3072, 1)]  # mean-pooled head 768 -> 3072 -> 3072 -> 1
    n_cond = sum(int(np.prod(s)) for p, s in leaves.items() if "conditional" in p)
    assert 80e6 < n_cond < 90e6  # 12 x (4 d^2 + 2 d * 4d) = 85M plus embeddings and the 27-way output


def test_missing_data_path_names_the_setting(tmp_path):
    with pytest.raises(cli.ConfigError, match="data_path"):
        _example().main(["--workdir", str(tmp_path / "wd"), "--config",
                         os.path.join(ROOT, "configs", "marginal_text8.py") + ":cpu,quick"])


@pytest.mark.slow  # ~1 min of CPU: compilation of both stages, the chain rule and the completions
def test_text8_example_tiny_run(tmp_path):
    path = tmp_path / "text8"
    _write_text(path)
    wd = str(tmp_path / "wd")
    _example().main([
        "--workdir", wd, "--config", os.path.join(ROOT, "configs", "marginal_text8.py") + ":cpu,quick",
        f"--config.data_path={path}", "--config.seq_len=10", "--config.dim=16", "--config.depth=1",
        "--config.num_heads=2", "--config.arm_steps=20", "--config.mam_steps=10", "--config.batch_size=8",
        "--config.mam_batch_size=8", "--config.eval.num_test=8", "--config.eval.agreement_chunks=6",
        "--config.eval.ensemble=2"])
    with open(os.path.join(wd, "results.json")) as f:
        res = json.load(f)
    assert res["paper_agreement"]["num_censored"] == [2, 4, 6, 8]  # 50/100/150/200 of 250, scaled to 10
    assert np.isfinite(res["nll"]["ao_arm_e_nats"]) and res["nll"]["ao_arm_s_bpd"] < np.log2(27)  # learnt below uniform
    with open(os.path.join(wd, "samples.txt")) as f:
        lines = f.read().splitlines()
    assert len(lines) == 8 and all(set(eval(s)) <= set(text.TEXT8_ALPHABET) for s in lines)
