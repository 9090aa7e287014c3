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
    with open(os.path.join(ROOT, "results", "main_job.json")) as f:
        res = dict(json.load(f)["data"])  # the measured run, then one value made impossible
    res["config"] = {"resolution": 14, "arm_steps": 1, "mam_steps": 1, "batch_size": 2, "seed": 0, "width": 8,
                     "depth": 1, "backbone": "mlp", "binarization": "static",
                     "eval": {"ensemble": 5, "num_test": 10, "agreement_images": 4, "num_subsets": 4,
                              "threshold": 5.0}}
    res["mam_nats"], res["mam_bpd"] = -0.5, -0.05
    tables, _, _ = main_job.tables_from_run(res)
    mam = tables[0]["rows"][2]
    assert "unnormalized" in mam[0] and "impossible" in mam[1] and mam[3] == "not comparable"
    assert "impossible" not in tables[0]["rows"][0][1]


def test_marginal_reused_parts_keep_the_run_they_came_from():
    from reproduce import marginal
    older = {"date": "d0", "git_revision": "g0", "machine": "m0", "budget": "b0", "notes": [], "data": {}}
    assert marginal._provenance(older, ["ising"]) == {"ising": "d0 (git g0; m0), whose budget line was: b0"}
    # results that themselves carried parts over (written before `provenance` was stored): their note says whence
    noted = {"date": "d1", "git_revision": "g1", "machine": "m1", "budget": "b1", "data": {},
             "notes": ["Parts mnist, ising were not re-run: taken from the earlier run of d0 (git g0), whose budget "
                       "line was: b0"]}
    got = marginal._provenance(noted, ["mnist", "speedup"])
    assert got == {"mnist": "d0 (git g0), whose budget line was: b0",
                   "speedup": "d1 (git g1; m1), whose budget line was: b1"}
    stored = {"date": "d2", "git_revision": "g2", "machine": "m2", "budget": "b2", "notes": [],
              "data": {"provenance": got}}
    assert marginal._provenance(stored, ["mnist", "speedup", "ising"]) == dict(
        got, ising="d2 (git g2; m2), whose budget line was: b2")


def test_maskgit_appended_runs_name_the_machine_each_dataset_ran_on():
    from reproduce import maskgit
    one = {"A": {0: {"machine": "cpu X"}, 1: {"machine": "cpu X"}}, "B": {0: {"machine": "cpu X"}}}
    assert maskgit._machines_note(one) == []  # one machine: the results file's machine line says it
    two = dict(one, C={0: {"machine": "cpu Y"}}, D={0: {}})
    assert maskgit._machines_note(two) == [
        "Machines (datasets appended by later runs): A, B on cpu X; C on cpu Y; D on unrecorded."]


def test_maskgit_claim_note_counts_datasets_from_paired_differences():
    from reproduce import maskgit
    sc = lambda fid, is_, cas: {"fid": fid, "is": is_, "cas": cas}
    runs = {"A": {0: {"scores": {"naive": sc(2.0, 1.0, 0.5), "ess_redraw": sc(1.0, 1.1, 0.4)}},
                  1: {"scores": {"naive": sc(3.0, 1.0, 0.5), "ess_redraw": sc(2.0, 1.2, 0.4)}}},
            "B": {0: {"scores": {"naive": sc(1.0, 2.0, 0.9), "ess_redraw": sc(1.5, 1.0, 0.95)}},
                  1: {"scores": {"naive": sc(1.0, 2.0, 0.9), "ess_redraw": sc(2.5, 1.0, 0.95)}}}}
    (note,) = maskgit._claim_note(runs)
    assert "lower mean FID on 1 of 2 datasets (A); A -1.00 ± 0.00; B +1.00 ± 0.71" in note
    assert "Higher mean IS on 1 of 2, higher mean CAS on 1 of 2." in note


def test_marginal_probe_table_names_its_machines_when_they_differ():
    from reproduce import marginal
    assert marginal._probe_machines_note([{"machine": "m0"}, {"machine": "m0"}]) == []
    assert marginal._probe_machines_note([{"machine": "m0"}, {"machine": "m0"}, {"machine": "m1"}, {}]) == [
        "Table 6 ran on more than one machine (its training seconds compare only within one): rows 1, 2 on m0; "
        "row 3 on m1; row 4 on unrecorded."]
