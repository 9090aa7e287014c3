"""Every benchmark that `python -m benchmarks.run` lists can be called the way it calls them."""

import importlib
import inspect

import pytest

from benchmarks import run


@pytest.mark.parametrize("name", run.available())
def test_benchmark_main_takes_quick(name):
    main = importlib.import_module(f"benchmarks.{name}").main
    params = inspect.signature(main).parameters
    assert "quick" in params, f"benchmarks/{name}.py: main() must accept quick= (benchmarks.run passes it)"
    others = [p for k, p in params.items() if k != "quick"]
    assert all(p.default is not inspect.Parameter.empty for p in others), f"{name}: main() has required arguments"
