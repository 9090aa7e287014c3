"""What every reproduction writes: ``results/<name>.json`` with its tables and their provenance.

A results file is the only source of the numbers in the README: ``python -m reproduce.readme``
renders its tables between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "results")


def machine() -> str:
    """A one-line description of this machine: CPU model, core count, Python and jax versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import jax  # imported late: only a run that writes results needs it

    devices = jax.devices()
    kind = devices[0].platform.upper() if devices else "none"
    return (f"{cpu}, {os.cpu_count()} cores, {kind} x{len(devices)}, Python {platform.python_version()}, "
            f"jax {jax.__version__}")


def by_machine(labelled) -> dict[str, list[str]]:
    """``{machine: [labels]}`` from ``(label, record)`` pairs, in first-seen order, each label once per machine;
    a record without a ``"machine"`` entry counts as ``"unrecorded"`` (results that ran on several machines say
    which part ran where)."""
    where: dict[str, list[str]] = {}
    for name, record in labelled:
        names = where.setdefault(record.get("machine", "unrecorded"), [])
        if name not in names:
            names.append(name)
    return where


def git_revision() -> str:
    """The short git revision of the checkout, with ``+dirty`` when tracked files are modified."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def mean_std(values: Sequence[float], digits: int = 2) -> str:
    """``"m ± s"`` over seeds (sample std, ddof=1; just ``m`` for one value), fixed ``digits``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("mean_std: `values` is empty")
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def table(caption: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> dict:
    """One results table: a caption, column names and rows of cells (strings or numbers)."""
    columns = [str(c) for c in columns]
    for i, r in enumerate(rows):
        if len(r) != len(columns):
            raise ValueError(f"table {caption!r}: row {i} has {len(r)} cells, expected {len(columns)}")
    return {"caption": caption, "columns": columns, "rows": [list(r) for r in rows]}


def write_results(name: str, *, title: str, command: str, budget: str, seeds: Sequence[int],
                  tables: Sequence[dict], notes: Sequence[str] = (), data: dict | None = None,
                  results_dir: str | None = None) -> str:
    """Writes ``results/<name>.json`` and returns its path.

    Args:
      name: file stem and README marker name, e.g. ``"attention"``.
      title: one line saying what the tables show.
      command: the exact command that produced the file.
      budget: the compute budget in words (e.g. "2,000 updates per run, 14 min wall in all").
      seeds: the seeds the numbers are over.
      tables: from :func:`table`.
      notes: sentences printed under the tables (how the numbers differ from the paper's, ...).
      data: raw per-seed numbers, kept for re-analysis (not rendered).
    """
    if not name.isidentifier():
        raise ValueError(f"write_results: `name` must be an identifier, got {name!r}")
    out = {
        "name": name, "title": title, "command": command, "budget": budget,
        "seeds": [int(s) for s in seeds], "machine": machine(), "git_revision": git_revision(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "python_argv": sys.argv, "tables": list(tables), "notes": list(notes), "data": data or {},
    }
    results_dir = results_dir or RESULTS_DIR
    os.makedirs(results_dir, exist_ok=True)
    path = os.path.join(results_dir, f"{name}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1, default=_to_json)
    os.replace(path + ".tmp", path)
    return path


def _to_json(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")
