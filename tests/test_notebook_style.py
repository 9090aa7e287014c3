"""Static checks on the notebooks: what a reader sees under each cell.

A cell whose last statement is a bare call shows that call's return value as a stray repr
(``<matplotlib.legend.Legend at 0x...>``). Allowed endings print, display or show on purpose, or
end with ``;``. Timing cells must say they exclude compilation (a warm-up call first).
"""

import ast
import json
import pathlib

import pytest

NOTEBOOKS = sorted(pathlib.Path(__file__).resolve().parents[1].glob("notebooks/*.ipynb"))
# Calls whose value is None or meant to be shown.
SHOWN = {"print", "display", "show", "tight_layout", "close", "savefig"}


def _code_cells(path):
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        if cell["cell_type"] == "code":
            yield i, "".join(cell["source"])


def _python(src: str) -> str:
    return "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))


def _stray_call(src: str) -> str | None:
    """The source of a final bare call that IPython would display, or None."""
    body = ast.parse(_python(src)).body
    if not body or not isinstance(body[-1], ast.Expr) or not isinstance(body[-1].value, ast.Call):
        return None
    if src.rstrip().endswith(";"):
        return None
    func = body[-1].value.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return None if name in SHOWN else ast.unparse(body[-1])


def test_the_checker_catches_a_legend_repr():
    assert _stray_call("plt.plot([1])\nplt.legend()") == "plt.legend()"
    assert _stray_call("plt.legend();") is None
    assert _stray_call("plt.legend()\nplt.show()") is None
    assert _stray_call("x = 1") is None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_cell_ends_in_a_stray_repr(path):
    bad = [(i, call) for i, src in _code_cells(path) if (call := _stray_call(src))]
    assert not bad, f"{path.name}: cells ending in a bare call that displays its value (end with ';' or plt.show()): {bad}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_timing_cells_exclude_compilation(path):
    timed = [(i, src) for i, src in _code_cells(path) if "perf_counter" in src]
    bad = [i for i, src in timed if "incl. compilation" in src or "warm" not in src.lower()]
    assert not bad, (f"{path.name}: cells {bad} time a call without a warm-up (compile first, then time; "
                     "say 'warm-up' in the cell)")
