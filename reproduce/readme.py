"""Regenerates every results table in README.md and docs/*.md from ``results/*.json``.

    python -m reproduce.readme            # rewrite the results blocks of README.md and docs/*.md
    python -m reproduce.readme --check    # exit 1 if any of them differs from what would be written

A block is the text between ``<!-- results:<name> -->`` and ``<!-- /results:<name> -->``; it is
replaced by the tables of ``results/<name>.json`` with the machine, budget, seeds and revision
they came from. Numbers are never typed into those blocks by hand.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BLOCK = re.compile(r"(<!-- results:(\w+) -->\n)(.*?)(<!-- /results:\2 -->)", re.S)


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v).replace("|", "\\|")


def render(result: dict) -> str:
    """Markdown for one results file: provenance line, tables, notes."""
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = [f"*{result['title']}* Generated from `results/{result['name']}.json` "
             f"(`{result['command']}`; {result['budget']}; seeds {seeds}; {result['machine']}; "
             f"git {result['git_revision']}, {result['date']}).", ""]
    for t in result["tables"]:
        if t.get("caption"):
            lines += [t["caption"], ""]
        lines.append("| " + " | ".join(_cell(c) for c in t["columns"]) + " |")
        lines.append("|" + "---|" * len(t["columns"]))
        lines += ["| " + " | ".join(_cell(c) for c in r) + " |" for r in t["rows"]]
        lines.append("")
    lines += [f"- {n}" for n in result.get("notes", [])]
    if result.get("notes"):
        lines.append("")
    return "\n".join(lines)


def regenerate(readme: str, results_dir: str) -> str:
    """The README text with every results block re-rendered; a block without its JSON is an error."""
    def sub(m):
        path = os.path.join(results_dir, f"{m.group(2)}.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"README block results:{m.group(2)} has no {path}")
        with open(path) as f:
            return m.group(1) + render(json.load(f)) + m.group(4)
    return _BLOCK.sub(sub, readme)


def documents(root: str = ROOT) -> list[str]:
    """The files whose results blocks are generated: README.md and every docs/*.md."""
    return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 when a document is stale")
    p.add_argument("files", nargs="*", help="documents to render (default: README.md and docs/*.md)")
    p.add_argument("--results", default=os.path.join(ROOT, "results"))
    args = p.parse_args(argv)
    stale = []
    for path in args.files or documents():
        with open(path) as f:
            old = f.read()
        new = regenerate(old, args.results)
        if new == old:
            continue
        if args.check:
            stale.append(os.path.relpath(path, ROOT))
        else:
            with open(path, "w") as f:
                f.write(new)
    if stale:
        print(f"results blocks are stale in {', '.join(stale)}: run `python -m reproduce.readme`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
