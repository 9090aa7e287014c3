"""README results blocks are generated from results/*.json, and the README is up to date."""

import json
import os

import pytest

from reproduce import common, readme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("path", readme.documents(ROOT), ids=lambda p: os.path.relpath(p, ROOT))
def test_results_blocks_match_the_results_files(path):
    with open(path) as f:
        text = f.read()
    assert readme.regenerate(text, os.path.join(ROOT, "results")) == text, (
        f"{os.path.relpath(path, ROOT)} is stale: run `python -m reproduce.readme`")


def test_write_then_render_round_trip(tmp_path):
    t = common.table("cap", ["model", "nll"], [["a", common.mean_std([1.0, 2.0, 3.0])], ["b", 0.5]])
    path = common.write_results("toy", title="Toy.", command="python x.py", budget="1 s", seeds=[0, 1, 2],
                                tables=[t], notes=["differs from the paper"], results_dir=str(tmp_path))
    with open(path) as f:
        res = json.load(f)
    assert res["seeds"] == [0, 1, 2] and res["machine"] and res["git_revision"]
    src = "head\n<!-- results:toy -->\nold numbers\n<!-- /results:toy -->\ntail\n"
    out = readme.regenerate(src, str(tmp_path))
    assert "old numbers" not in out and "| a | 2.00 ± 1.00 |" in out and "| b | 0.5 |" in out
    assert out.startswith("head\n<!-- results:toy -->\n") and out.endswith("<!-- /results:toy -->\ntail\n")
    assert readme.regenerate(out, str(tmp_path)) == out


def test_block_without_results_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="results:nope"):
        readme.regenerate("<!-- results:nope -->\n<!-- /results:nope -->", str(tmp_path))


def test_bad_table_row_names_the_table():
    with pytest.raises(ValueError, match="row 0 has 1 cells, expected 2"):
        common.table("cap", ["a", "b"], [["x"]])


def test_main_job_table_labels_the_unnormalized_mam_row_and_flags_impossible_values():
    from reproduce import main_job
    res = {"args": {"resolution": 14, "ensemble": 4, "num_test": 10, "binarization": "static", "backbone": "mlp",
                    "width": 8, "depth": 1, "arm_steps": 1, "mam_steps": 1, "batch_size": 2, "seed": 0},
           "ao_arm_s_nats": 1.0, "ao_arm_s_bpd": 0.1, "ao_arm_e_nats": 0.9, "ao_arm_e_bpd": 0.09,
           "mam_nats": -0.5, "mam_bpd": -0.05, "spearman": 0.5, "pearson": 0.5, "mam_sec": 1e-3,
           "ao_arm_sec": 1e-1, "speedup": 100.0, "train_seconds": 1.0, "total_seconds": 2.0}
    tables, _, _ = main_job.tables_from_run(res)
    mam = tables[0]["rows"][2]
    assert "unnormalized" in mam[0] and "impossible" in mam[1] and mam[3] == "not comparable"
    assert "impossible" not in tables[0]["rows"][0][1]
