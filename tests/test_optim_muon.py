"""lab.optim.orthogonal against optax.contrib.muon, step for step, plus its properties.

The equivalence table runs through the shared harness (tests/test_optim_equivalence.py
``run_rows``): 200 steps on the mixed pytree (float64) and the digits MLP (float64 and
float32), params and every state leaf compared at every step (1e-10 / 1e-5 relative).
On the mixed pytree the (3, 4) and (2, 2) leaves are matrices and go to Muon, the scalar
and the vector to Adam; on the MLP both weight matrices go to Muon, the biases to Adam.
Dimension numbers in the table are optax's ``MuonDimensionNumbers``, which the lab
accepts as its own (optax accepts only its own type).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from lab.optim import base, transforms
from lab.optim import orthogonal as lab_muon
from tests.helpers import assert_tree_allclose
from tests.optim_checks import (assert_kept, bad_input_test, check_every_step,
                                check_inside_optax_chain, check_sweep, float_dtypes)
from tests.test_optim_equivalence import (FAST_COMPILE, SCHEDULE, TREE_MASK, comparable_leaves,
                                          run_rows)

OptaxDims = optax.contrib.MuonDimensionNumbers


def tall_matrices_only(params):
    """Muon for matrices with more than 2 rows, orthogonalised along their transpose."""
    return jax.tree.map(lambda x: OptaxDims(1, 0) if x.ndim == 2 and x.shape[0] > 2 else None,
                        params)


ROWS = [
    ("muon", dict(learning_rate=0.01)),
    ("muon", dict(learning_rate=0.01, nesterov=False, beta=0.9, weight_decay=0.1,
                  weight_decay_mask=TREE_MASK, adam_weight_decay=0.01, adam_learning_rate=0.003,
                  consistent_rms=0.2)),
    ("muon", dict(learning_rate=SCHEDULE, ns_coeffs="dion", adaptive=True, preconditioning="aol")),
    ("muon", dict(learning_rate=0.01, ns_steps=3, preconditioning="schatten", adam_b1=0.5,
                  adam_b2=0.99, adam_eps_root=1e-8, eps=1e-6)),
    ("muon", dict(learning_rate=0.01, preconditioning="spectral",
                  muon_weight_dimension_numbers=tall_matrices_only)),
]


def test_muon_matches_optax_every_step():
    check_every_step(ROWS, run_rows(ROWS, library=lab_muon), moved=1e-3)


def run_free(opt, params, grads, promotion="strict"):
    """Apply ``opt`` to a fixed gradient sequence; return the stacked params and state
    leaves.  optax mixes Python floats with int32 counts, so it needs "standard"."""
    def step(carry, g):
        p, s = carry
        u, s = opt.update(g, s, p)
        p = optax.apply_updates(p, u)
        return (p, s), (p, comparable_leaves(s))

    with jax.numpy_dtype_promotion(promotion):
        return jax.jit(lambda: jax.lax.scan(step, (params, opt.init(params)), grads)[1],
                       compiler_options=FAST_COMPILE)()


def batched_problem(dtype=jnp.float64, steps=20):
    rng = np.random.default_rng(3)
    shapes = {"conv": (2, 3, 4), "stack": (2, 3, 5), "w": (4, 3), "b": (3,)}
    params = {k: jnp.asarray(rng.standard_normal(s), dtype) for k, s in shapes.items()}
    grads = {k: jnp.asarray(rng.standard_normal((steps, *s)), dtype) for k, s in shapes.items()}
    return params, grads


def test_batch_axes_and_dimension_number_trees_match_optax():
    params, grads = batched_problem()
    spec = lambda dims: {"conv": dims(reduction_axis=1, output_axis=2),  # batch axis 0
                         "stack": dims(reduction_axis=(0, 1), output_axis=-1),
                         "w": dims(), "b": None}
    ref = run_free(optax.contrib.muon(0.01, muon_weight_dimension_numbers=spec(OptaxDims),
                                      consistent_rms=0.2), params, grads, "standard")
    ours = run_free(lab_muon.muon(0.01, muon_weight_dimension_numbers=spec(
        lab_muon.MuonDimensionNumbers), consistent_rms=0.2), params, grads)
    assert len(ours[1]) == len(ref[1])
    assert_tree_allclose(ours, ref)


def test_newton_schulz_maps_singular_values_by_the_quintic():
    """NS acts on singular values alone: out = U f(S / ||X||_F) V^T with f the quintic
    iterated; with the standard coefficients f((0.03, 1]) lies in [0.68, 1.14], with
    Dion's in [0.97, 1.04] (the bands of the scalar maps, checked below)."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((30, 50)))
    u, s, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
    for coeffs, band in ((lab_muon.STANDARD_COEFFS, (0.68, 1.14)),
                         (lab_muon.DION_COEFFS, (0.97, 1.04))):
        rows = [coeffs] * 5 if np.ndim(coeffs) == 1 else list(coeffs)
        f = s / (np.sqrt(np.sum(s**2)) + 1e-8)
        assert f.min() > 0.03
        for a, b, c in rows:
            f = a * f + b * f**3 + c * f**5
        for m, (uu, vv) in ((x, (u, vt)), (x.T, (vt.T, u.T))):  # wide and tall
            out = np.asarray(lab_muon.orthogonalize_via_newton_schulz(m, coeffs, 5))
            np.testing.assert_allclose(out, uu @ np.diag(f) @ vv, atol=1e-9)
            singular = np.linalg.svd(out, compute_uv=False)
            assert band[0] <= singular.min() and singular.max() <= band[1], singular
        grid = np.linspace(0.03, 1.0, 20001)  # the band of the scalar map on (0.03, 1]
        for a, b, c in rows:
            grid = a * grid + b * grid**3 + c * grid**5
        assert band[0] <= grid.min() and grid.max() <= band[1], (grid.min(), grid.max())


BAD = [(lab_muon.muon, {"learning_rate": 0.01, **kwargs}, name) for kwargs, name in [
    (dict(learning_rate=-1.0), "learning_rate"), (dict(beta=1.0), "beta"),
    (dict(eps=-1.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
    (dict(adam_b1=1.0), "adam_b1"), (dict(adam_b2=-0.5), "adam_b2"),
    (dict(adam_eps_root=-1.0), "adam_eps_root"),
    (dict(adam_weight_decay=-1.0), "adam_weight_decay"),
    (dict(adam_learning_rate=-1.0), "adam_learning_rate"),
    (dict(consistent_rms=-0.2), "consistent_rms"), (dict(ns_steps=0), "ns_steps"),
    (dict(ns_steps=2.0), "ns_steps"), (dict(ns_coeffs="fast"), "ns_coeffs"),
    (dict(ns_coeffs=(1.0, 2.0)), "ns_coeffs"), (dict(ns_coeffs="dion", ns_steps=4), "ns_steps"),
    (dict(preconditioning="newton"), "preconditioning")]]

test_bad_hyperparameters_raise_naming_the_argument = bad_input_test(BAD)


def test_bad_updates_raise_naming_the_problem():
    params, _ = batched_problem()
    opt = lab_muon.muon(0.01)
    state = opt.init(params)
    with pytest.raises(ValueError, match="pytree structure"):
        opt.update({k: v for k, v in params.items() if k != "b"}, state, params)
    overlapping = lab_muon.muon(0.01, muon_weight_dimension_numbers={
        "conv": lab_muon.MuonDimensionNumbers(1, 1), "stack": None, "w": None, "b": None})
    with pytest.raises(ValueError, match="overlap"):
        overlapping.update(params, overlapping.init(params), params)
    vector = lab_muon.scale_by_muon()
    with pytest.raises(ValueError, match="at least 2 axes"):
        vector.update({"b": params["b"]}, vector.init({"b": params["b"]}))
    with pytest.raises(ValueError, match="no transform"):
        transforms.partition({"a": lab_muon.scale_by_shape()}, {"w": "b"}).init(
            {"w": params["w"]})


def test_float32_is_kept():
    params, grads = batched_problem(jnp.float32, steps=3)
    dims = lab_muon.MuonDimensionNumbers
    opt = lab_muon.muon(0.01, muon_weight_dimension_numbers={
        "conv": dims(1, 2), "stack": None, "w": dims(), "b": None}, weight_decay=0.1)
    state = opt.init(params)
    for t in range(3):  # strict promotion (conftest) would raise on any float64 mixing
        updates, state = opt.update(jax.tree.map(lambda g: g[t], grads), state, params)
        params = base.apply_updates(params, updates)
    assert_kept(params, updates)
    muon_state = state.inner_states["muon"].inner_state[0]
    adam_state = state.inner_states["adam"].inner_state[0]
    assert len(jax.tree.leaves((muon_state.mu, adam_state.mu, adam_state.nu))) == 6
    assert float_dtypes((muon_state.mu, adam_state.mu, adam_state.nu)) == {jnp.dtype(jnp.float32)}
    # the coefficients are a hyperparameter, kept in their own precision as optax keeps them
    assert muon_state.ns_coeffs.dtype == jnp.float64


def test_vmap_over_hyperparameters_compiles_once_and_matches_separate_runs():
    params, grads = batched_problem(steps=10)

    def final_params(lr, beta, adam_b1):
        opt = lab_muon.muon(lr, beta=beta, adam_b1=adam_b1, muon_weight_dimension_numbers={
            "conv": lab_muon.MuonDimensionNumbers(1, 2), "stack": None,
            "w": lab_muon.MuonDimensionNumbers(), "b": None})

        def step(carry, g):
            p, s = carry
            u, s = opt.update(g, s, p)
            return (base.apply_updates(p, u), s), None
        return jax.lax.scan(step, (params, opt.init(params)), grads)[0][0]

    check_sweep(final_params, jnp.array([0.01, 0.03, 0.1]), jnp.array([0.5, 0.9, 0.95]),
                jnp.array([0.0, 0.5, 0.9]))


def test_works_inside_optax_chain():
    # the nested 2x2 matrix goes to Muon, the vector and the scalar to Adam
    check_inside_optax_chain([(lab_muon.muon(0.02, weight_decay=0.01),
                               optax.contrib.muon(0.02, weight_decay=0.01))], steps=15)
