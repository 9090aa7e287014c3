"""mamjax: a JAX toolkit for masked and marginal probabilistic modeling.

Importing ``mamjax`` has no side effects (no config changes, no data reads).
Submodules are imported on first use: ``mamjax.masks``, ``mamjax.nn``,
``mamjax.train``, ``mamjax.checkpoint``, ``mamjax.sharding``, ``mamjax.data``,
``mamjax.metrics`` and the method packages ``mamjax.marginal``, ``mamjax.lml``,
``mamjax.maskgit``, ``mamjax.hvae``, ``mamjax.attention``.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "masks", "nn", "distributions", "train", "checkpoint", "sharding", "data", "metrics",
    "marginal", "lml", "maskgit", "hvae", "attention",
)


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'mamjax' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
