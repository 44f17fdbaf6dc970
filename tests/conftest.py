"""Strict test environment.

* float64 is enabled, so reference comparisons can be made at 1e-10 and below;
  tests that check float32 behaviour build float32 arrays explicitly.  With
  ``LAB_TEST_FLOAT32=1`` it is not: the float32 leg (tests/test_float32.py) runs the
  sweep engine's and the studies' tests as users run them, in float32.
* dtype promotion is strict (no silent float32 -> float64 mixing) and rank
  promotion raises (no silent broadcasting of mismatched ranks).
* warnings are errors (see ``filterwarnings`` in pyproject.toml).
* ``lab run`` called from tests keeps no persistent compilation cache
  (``LAB_COMPILATION_CACHE=off``): a cache in a deleted temporary folder would outlive
  the test that chose it, since JAX sets its cache up once per process.
* ``lab`` called from tests keeps JAX's single CPU device (``LAB_CPU_DEVICES=1``), so
  the test that happens to start JAX in a worker does not split the CPU for the rest;
  the sharded path has tests of its own.
"""
import os

import jax

os.environ["LAB_COMPILATION_CACHE"] = "off"
os.environ["LAB_CPU_DEVICES"] = "1"

FLOAT32 = os.environ.get("LAB_TEST_FLOAT32") == "1"
jax.config.update("jax_enable_x64", not FLOAT32)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
