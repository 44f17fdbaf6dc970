"""Shared tolerances and comparison helpers for the test suite.

Default tolerances (relative, with a tiny absolute floor for values near 0):
float64 1e-10, float32 1e-5.  Every comparison goes through ``assert_tree_allclose``.
"""
import jax
import numpy as np

RTOL = {np.dtype("float64"): 1e-10, np.dtype("float32"): 1e-5}


def by_precision(float64_value, float32_value):
    """The first value when the default float is float64 (the suite's default), the second
    in the float32 leg (``LAB_TEST_FLOAT32=1``): tolerances of checks that reach rounding."""
    return float64_value if jax.config.jax_enable_x64 else float32_value
ATOL = {np.dtype("float64"): 1e-12, np.dtype("float32"): 1e-6}


def assert_tree_allclose(actual, expected, rtol=None, atol=None, err_msg=""):
    """Assert two pytrees have the same structure and close leaves.

    Tolerances default to the dtype-dependent values above."""
    sa, se = jax.tree_util.tree_structure(actual), jax.tree_util.tree_structure(expected)
    assert sa == se, f"tree structures differ: {sa} vs {se}"
    for i, (a, e) in enumerate(zip(jax.tree_util.tree_leaves(actual), jax.tree_util.tree_leaves(expected))):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape, f"leaf {i}: shape {a.shape} vs {e.shape} {err_msg}"
        dt = np.result_type(a.dtype, e.dtype) if a.dtype.kind == "f" else np.dtype("float64")
        r = RTOL.get(dt, 1e-10) if rtol is None else rtol
        t = ATOL.get(dt, 1e-12) if atol is None else atol
        np.testing.assert_allclose(a, e, rtol=r, atol=t, err_msg=f"leaf {i} {err_msg}")
