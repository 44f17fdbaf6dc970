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

from lab.optim import base
from lab.optim import orthogonal as lab_muon
from tests.helpers import assert_tree_allclose
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
    for case, results in run_rows(ROWS, library=lab_muon).items():
        dtype = jnp.dtype(case.split("/")[1])
        for (_, kwargs), (lp, ls, rp, rs) in zip(ROWS, results):
            label = f"muon({kwargs}) on {case}"
            assert all(x.dtype == dtype for x in jax.tree.leaves(lp)), label
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(lp)), label
            moved = max(float(jnp.max(jnp.abs(x[-1] - x[0]))) for x in jax.tree.leaves(lp))
            assert moved > 1e-3, f"{label}: params hardly moved ({moved})"
            assert len(ls) == len(rs), f"{label}: state has {len(ls)} leaves, reference {len(rs)}"
            assert_tree_allclose(lp, rp, err_msg=f"{label}: params")
            assert_tree_allclose(ls, rs, err_msg=f"{label}: state")


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


def test_bad_inputs_raise_naming_the_argument():
    bad = [(dict(learning_rate=-1.0), "learning_rate"), (dict(beta=1.0), "beta"),
           (dict(eps=-1.0), "eps"), (dict(weight_decay=-0.1), "weight_decay"),
           (dict(adam_b1=1.0), "adam_b1"), (dict(adam_b2=-0.5), "adam_b2"),
           (dict(adam_eps_root=-1.0), "adam_eps_root"),
           (dict(adam_weight_decay=-1.0), "adam_weight_decay"),
           (dict(adam_learning_rate=-1.0), "adam_learning_rate"),
           (dict(consistent_rms=-0.2), "consistent_rms"), (dict(ns_steps=0), "ns_steps"),
           (dict(ns_steps=2.0), "ns_steps"), (dict(ns_coeffs="fast"), "ns_coeffs"),
           (dict(ns_coeffs=(1.0, 2.0)), "ns_coeffs"),
           (dict(ns_coeffs="dion", ns_steps=4), "ns_steps"),
           (dict(preconditioning="newton"), "preconditioning")]
    for kwargs, name in bad:
        kwargs = {"learning_rate": 0.01, **kwargs}
        with pytest.raises(ValueError, match=name):
            lab_muon.muon(**kwargs)
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
        lab_muon.partition({"a": lab_muon.scale_by_shape()}, {"w": "b"}).init({"w": params["w"]})


def test_float32_is_kept():
    params, grads = batched_problem(jnp.float32, steps=3)
    dims = lab_muon.MuonDimensionNumbers
    opt = lab_muon.muon(0.01, muon_weight_dimension_numbers={
        "conv": dims(1, 2), "stack": None, "w": dims(), "b": None}, weight_decay=0.1)
    state = opt.init(params)
    for t in range(3):  # strict promotion (conftest) would raise on any float64 mixing
        updates, state = opt.update(jax.tree.map(lambda g: g[t], grads), state, params)
        params = base.apply_updates(params, updates)
    assert all(u.dtype == jnp.float32 for u in jax.tree.leaves(updates))
    muon_state = state.inner_states["muon"].inner_state[0]
    adam_state = state.inner_states["adam"].inner_state[0]
    floats = jax.tree.leaves((muon_state.mu, adam_state.mu, adam_state.nu))
    assert len(floats) == 6 and all(x.dtype == jnp.float32 for x in floats)
    # the coefficients are a hyperparameter, kept in their own precision as optax keeps them
    assert muon_state.ns_coeffs.dtype == jnp.float64


def test_vmap_over_hyperparameters_compiles_once_and_matches_separate_runs():
    params, grads = batched_problem(steps=10)
    traces = []

    def final_params(lr, beta, adam_b1):
        traces.append(1)
        opt = lab_muon.muon(lr, beta=beta, adam_b1=adam_b1, muon_weight_dimension_numbers={
            "conv": lab_muon.MuonDimensionNumbers(1, 2), "stack": None,
            "w": lab_muon.MuonDimensionNumbers(), "b": None})

        def step(carry, g):
            p, s = carry
            u, s = opt.update(g, s, p)
            return (base.apply_updates(p, u), s), None
        return jax.lax.scan(step, (params, opt.init(params)), grads)[0][0]

    lrs, betas, b1s = jnp.array([0.01, 0.03, 0.1]), jnp.array([0.5, 0.9, 0.95]), jnp.array(
        [0.0, 0.5, 0.9])
    sweep = jax.jit(jax.vmap(final_params))
    batched = sweep(lrs, betas, b1s)
    batched_again = sweep(lrs * 2, betas, b1s)
    assert len(traces) == 1  # one trace for both calls: the hyperparameters are data
    assert not np.allclose(batched["w"], batched_again["w"])
    single = jax.jit(final_params)
    for i in range(3):
        assert_tree_allclose(jax.tree.map(lambda x: x[i], batched),
                             single(lrs[i], betas[i], b1s[i]))


def test_works_inside_optax_chain():
    params, grads = batched_problem(steps=15)
    params, grads = {"w": params["w"], "b": params["b"]}, {"w": grads["w"], "b": grads["b"]}
    ours = optax.chain(optax.clip_by_global_norm(1.0), lab_muon.muon(0.02, weight_decay=0.01))
    ref = optax.chain(optax.clip_by_global_norm(1.0), optax.contrib.muon(0.02, weight_decay=0.01))
    got, want = (run_free(opt, params, grads, "standard") for opt in (ours, ref))
    assert len(jax.tree.leaves(got[1])) == len(jax.tree.leaves(want[1])) == 6
    assert_tree_allclose(got, want)
