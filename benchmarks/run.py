"""Runs mamjax benchmarks and prints their tables.

    python -m benchmarks.run                 # all benchmarks
    python -m benchmarks.run --quick         # smaller sizes, shorter timings
    python -m benchmarks.run transformer_throughput marginal_bench

Each benchmark is a module ``benchmarks/<name>.py`` with ``main(quick: bool) -> str``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def available() -> list[str]:
    names = [f[:-3] for f in sorted(os.listdir(HERE))
             if f.endswith(".py") and f not in ("__init__.py", "run.py", "common.py")]
    return [n for n in names if n == "transformer_throughput" or n.endswith("_bench")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {available()}")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", help="also write the tables to this markdown file")
    args = ap.parse_args(argv)
    names = args.names or available()
    unknown = set(names) - set(available())
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; available: {available()}")
    sys.path.insert(0, os.path.dirname(HERE))
    outputs = []
    for name in names:
        t0 = time.perf_counter()
        print(f"\n=== {name} ===", flush=True)
        out = importlib.import_module(f"benchmarks.{name}").main(quick=args.quick)
        outputs.append(f"# {name}\n\n{out}\n\n(ran in {time.perf_counter() - t0:.0f} s)\n")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(outputs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
