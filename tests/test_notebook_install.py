"""The notebooks' Colab install cell installs the checkout it sits in, or says what to do."""

import glob
import json
import os
import subprocess
import sys
import types

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(glob.glob(os.path.join(ROOT, "notebooks", "*.ipynb")))


def _install_cell(path):
    with open(path) as f:
        nb = json.load(f)
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def _run_as_colab(src, cwd, monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(subprocess, "run", lambda cmd, check: calls.append(cmd))
    monkeypatch.chdir(cwd)
    exec(compile(src, "install-cell", "exec"), {})
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_install_cell_installs_the_enclosing_checkout(path, monkeypatch):
    calls = _run_as_colab(_install_cell(path), os.path.join(ROOT, "notebooks"), monkeypatch)
    assert calls == [[sys.executable, "-m", "pip", "install", "-q", "-e", ROOT]]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=os.path.basename)
def test_install_cell_outside_a_checkout_uses_the_spec_or_says_what_to_do(path, tmp_path, monkeypatch):
    (tmp_path / "nb").mkdir()
    monkeypatch.delenv("MAMJAX_PIP_SPEC", raising=False)
    with pytest.raises(RuntimeError, match="MAMJAX_PIP_SPEC"):
        _run_as_colab(_install_cell(path), tmp_path / "nb", monkeypatch)
    monkeypatch.setenv("MAMJAX_PIP_SPEC", "mamjax @ file:///somewhere")
    assert _run_as_colab(_install_cell(path), tmp_path / "nb", monkeypatch)[0][-1] == "mamjax @ file:///somewhere"
