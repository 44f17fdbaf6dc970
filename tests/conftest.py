"""Strict test environment.

* float64 is enabled, so reference comparisons can be made at 1e-10 and below;
  tests that check float32 behaviour build float32 arrays explicitly.
* dtype promotion is strict (no silent float32 -> float64 mixing) and rank
  promotion raises (no silent broadcasting of mismatched ranks).
* warnings are errors (see ``filterwarnings`` in pyproject.toml).
* ``lab run`` called from tests keeps no persistent compilation cache
  (``LAB_COMPILATION_CACHE=off``): a cache in a deleted temporary folder would outlive
  the test that chose it, since JAX sets its cache up once per process.
"""
import os

import jax

os.environ["LAB_COMPILATION_CACHE"] = "off"

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
