"""pytest configuration for tests/ and notebooks/: 8 virtual CPU devices, strict numerics, tiny notebooks."""

import os

# Must be set before jax is first imported anywhere in the test process.
# Tiny test programs spend far more time in XLA's CPU compiler than running; the cheap backend
# options halve the suite's CPU time (measured: lml tests 55 s -> 30 s user time).
os.environ.setdefault(
    "XLA_FLAGS",
    "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0"
    " --xla_llvm_disable_expensive_passes=true",
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Notebooks executed by nbmake read this knob and run at a tiny size.
os.environ.setdefault("MAMJAX_NOTEBOOK_SIZE", "tiny")
os.environ.setdefault("MPLBACKEND", "Agg")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# MAMJAX_DEBUG_NANS=0 turns NaN checking off: under the lowest supported jax (0.7.1) it also fires on
# NaNs that tests create on purpose inside jit (a poisoned batch, a masked branch), which jax 0.10 does
# not report; tests/test_lowest_versions.py runs its smoke subset with it off.
jax.config.update("jax_debug_nans", os.environ.get("MAMJAX_DEBUG_NANS", "1") != "0")
