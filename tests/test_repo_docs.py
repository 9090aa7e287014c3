"""The README's commands and quick start, and the notebooks' hygiene rules."""

import glob
import json
import os
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme():
    with open(os.path.join(ROOT, "README.md")) as f:
        return f.read()


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)```", _readme(), re.S)
    install_and_run, test = blocks[0].strip(), blocks[1].strip()
    assert install_and_run.startswith("pip install -e .") and "examples/" in install_and_run
    assert "pytest" in test
    assert _readme().lstrip().startswith("# mamjax\n\n```bash")
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        assert test in f.read()
    script = next(w for w in install_and_run.split("&&")[-1].split() if w.endswith(".py"))
    assert os.path.exists(os.path.join(ROOT, script)), f"README's main job {script} is missing"


def test_readme_quick_start_runs():
    code = re.findall(r"```python\n(.*?)```", _readme(), re.S)[0]
    exec(compile(code, "README.md", "exec"), {})


def test_notebooks_have_install_cell_size_knob_and_no_outputs():
    for path in glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")):
        with open(path) as f:
            nb = json.load(f)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        first = "".join(code[0]["source"])
        assert "google.colab" in first and "pip" in first, f"{path}: first code cell must install mamjax in Colab"
        assert "MAMJAX_NOTEBOOK_SIZE" in "".join("".join(c["source"]) for c in code), path
        for c in code:
            assert not c.get("outputs") and c.get("execution_count") is None, f"{path}: commit without outputs"


def test_embedded_data_is_tracked_by_git():
    if not os.path.isdir(os.path.join(ROOT, ".git")):
        return
    tracked = subprocess.run(["git", "ls-files", "mamjax/data/files"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    for name in ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]:
        assert f"mamjax/data/files/mnist/{name}" in tracked
