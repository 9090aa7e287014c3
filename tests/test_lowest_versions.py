"""The lower bounds of pyproject.toml are real: install them in a fresh venv and run a smoke subset.

Slow (downloads about 600 MB into a temporary venv): ``python -m pytest -m slow tests/test_lowest_versions.py``.
Colab and other runtimes keep their preinstalled accelerator jax when it satisfies these bounds.
"""

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINS = os.path.join(ROOT, ".ci", "lowest-versions.txt")
SMOKE = ["tests/test_masks.py", "tests/test_cli.py", "tests/test_train.py", "tests/test_checkpoint.py",
         "tests/test_marginal_losses.py", "tests/test_rectified_gaussian.py"]


def _pins() -> dict[str, str]:
    out = {}
    for line in open(PINS):
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.lower()] = version
    return out


def test_pins_are_the_lower_bounds_of_pyproject():
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    deps = text[text.index("dependencies = ["):text.index("]", text.index("dependencies = ["))]
    bounds = {m.group(1).lower(): m.group(2) for m in re.finditer(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', deps)}
    pins = _pins()
    for name, low in bounds.items():
        assert pins.get(name) == low, (
            f"{name}: pyproject says >={low}, {PINS} installs {pins.get(name)}")


@pytest.mark.slow
def test_smoke_suite_passes_on_the_lowest_versions(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["-r", PINS, "pytest>=8", "hypothesis", "mpmath"], check=True, timeout=1200)
    subprocess.run(pip + ["--no-deps", "-e", ROOT], check=True, timeout=300)
    env = dict(os.environ, MAMJAX_DEBUG_NANS="0", CI="1")
    out = subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", "not slow"]
                         + SMOKE, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
