"""DoG, DoWG and COCOB (lab.optim.parameter_free) against optax.contrib, and their properties.

* equivalence: every row of ``ROWS`` runs 200 steps through the harness of
  tests/test_optim_equivalence.py (mixed pytree in float64, digits MLP in float64 and
  float32); params and every state leaf must match optax.contrib at every step
  (1e-10 relative in float64, 1e-5 in float32, tests/helpers.py);
* signatures (names, kinds, defaults) equal optax.contrib's;
* the first DoG step for each ``init_step`` kind, against the formula;
* float32 and float64 kept; a vmap over hyperparameters equals a loop and compiles once;
* inside ``optax.chain`` a lab optimizer matches its optax twin;
* bad input: out-of-range Python hyperparameters, an unknown ``init_step``, missing
  params, grads of another structure.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from optax.contrib import _dog as optax_dog

from lab.optim import parameter_free as pf
from lab.optim.base import apply_updates
from tests.helpers import assert_tree_allclose
from tests.test_optim_equivalence import SCHEDULE, TREE_MASK, matrices_only, run_rows

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

ROWS = [
    ("dog", dict()),
    ("dog", dict(init_step=("distance", 1e-3), eps=1e-6, weight_decay=0.01, mask=TREE_MASK)),
    ("dog", dict(learning_rate=SCHEDULE, init_step=("learning_rate", 1e-3))),
    ("dowg", dict()),
    ("dowg", dict(init_estim_sq_dist=1e-2, eps=1e-6)),
    ("dowg", dict(learning_rate=SCHEDULE, weight_decay=1e-3, mask=matrices_only)),
    ("cocob", dict()),
    ("cocob", dict(alpha=10.0, eps=1e-6)),
    ("cocob", dict(learning_rate=0.5, weight_decay=1e-3, mask=TREE_MASK)),
]
NAMES = ["dog", "dowg", "cocob"]


@pytest.mark.parametrize("name", NAMES)
def test_matches_optax_contrib_every_step(name):
    rows = [row for row in ROWS if row[0] == name]
    assert len(rows) >= 3
    results = run_rows(rows, library=pf)
    assert set(results) == {"mixed/float64", "mlp/float64", "mlp/float32"}
    for case, per_row in results.items():
        dtype = jnp.dtype(case.split("/")[1])
        for (_, kwargs), (lp, ls, rp, rs) in zip(rows, per_row):
            label = f"{name}({kwargs}) on {case}"
            assert {x.dtype for x in jax.tree.leaves(lp)} == {dtype}, label
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(lp)), label
            assert len(ls) == len(rs), f"{label}: state has {len(ls)} leaves, reference {len(rs)}"
            # leaves are stacked over the 200 steps, so this compares every step
            assert_tree_allclose(lp, rp, err_msg=f"{label}: params")
            assert_tree_allclose(ls, rs, err_msg=f"{label}: state")
            # the trajectory moved: equality is not the trivial one of two frozen runs
            first, last = (jax.tree.map(lambda x, i=i: x[i], lp) for i in (0, -1))
            assert not all(np.allclose(a, b) for a, b in
                           zip(jax.tree.leaves(first), jax.tree.leaves(last))), label


TWINS = [  # (lab factory, optax factory)
    (pf.dog, optax.contrib.dog), (pf.scale_by_dog, optax_dog.scale_by_dog),
    (pf.dowg, optax.contrib.dowg), (pf.scale_by_dowg, optax_dog.scale_by_dowg),
    (pf.cocob, optax.contrib.cocob), (pf.scale_by_cocob, optax.contrib.scale_by_cocob),
]


@pytest.mark.parametrize("ours,theirs", TWINS, ids=[t[0].__name__ for t in TWINS])
def test_signatures_match_optax(ours, theirs):
    describe = lambda f: [(p.name, p.kind, p.default)
                          for p in inspect.signature(f).parameters.values()]
    assert describe(ours) == describe(theirs)
    assert pf.DoGState._fields == optax.contrib.DoGState._fields
    assert pf.DoWGState._fields == optax.contrib.DoWGState._fields
    assert pf.COCOBState._fields == optax.contrib.COCOBState._fields


# ---------------------------------------------------------------------- properties


def tree_params(dtype=jnp.float64):
    return {"s": jnp.asarray(1.5, dtype), "v": jnp.asarray([1.0, -2.0, 0.5], dtype),
            "nested": {"m": jnp.asarray([[0.3, -0.7], [1.1, 0.2]], dtype)}}


def tree_loss(p):
    return 0.5 * p["s"] ** 2 + jnp.sum(p["v"] ** 2) + jnp.sum(jnp.cos(p["nested"]["m"]))


def train(opt, params, steps):
    def step(carry, _):
        params, state = carry
        grads = jax.grad(tree_loss)(params)
        updates, state = opt.update(grads, state, params)
        return (apply_updates(params, updates), state), None

    return lax.scan(step, (params, opt.init(params)), None, length=steps)[0]


def test_first_dog_step_for_each_init_step_kind():
    params = tree_params()
    grads = jax.grad(tree_loss)(params)
    g_norm = float(np.sqrt(sum(np.sum(np.square(g)) for g in jax.tree.leaves(grads))))
    p_norm = float(np.sqrt(sum(np.sum(np.square(p)) for p in jax.tree.leaves(params))))
    expected = {  # the first step size eta_1 = r_bar_0 / sqrt(||g_1||^2 + eps), or eta_0
        ("distance", 0.1): 0.1 / np.sqrt(g_norm**2 + 1e-8),
        ("heuristic", 1e-3): 1e-3 * (1 + p_norm) / np.sqrt(g_norm**2 + 1e-8),
        ("learning_rate", 0.05): 0.05,
    }

    def first_steps():
        out = []
        for init_step in expected:
            opt = pf.dog(init_step=init_step)
            updates, state = opt.update(grads, opt.init(params), params)
            out.append((updates, state[1].is_init_step))
        return out

    for (init_step, eta), (updates, is_init_step) in zip(expected.items(), jax.jit(
            first_steps, compiler_options=FAST_COMPILE)()):
        assert_tree_allclose(updates, jax.tree.map(lambda g: -eta * g, grads),
                             err_msg=str(init_step))
        assert not bool(is_init_step)


FACTORIES = {  # name -> optimizer from (learning_rate, another hyperparameter)
    "dog": lambda lr, h: pf.dog(lr, init_step=("heuristic", h * 1e-3)),
    "dowg": lambda lr, h: pf.dowg(lr, eps=h * 1e-4),
    "cocob": lambda lr, h: pf.cocob(lr, alpha=h * 100.0),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtypes_and_structure_kept(dtype):
    params = tree_params(dtype)

    def two_steps(make):
        opt, p = make(1.0, 1.0), params
        state = opt.init(p)
        for _ in range(2):
            updates, state = opt.update(jax.grad(tree_loss)(p), state, p)
            p = apply_updates(p, updates)
        return updates, p, state

    results = jax.jit(lambda: {name: two_steps(make) for name, make in FACTORIES.items()},
                      compiler_options=FAST_COMPILE)()
    for name, (updates, new_params, state) in results.items():
        assert jax.tree.structure(updates) == jax.tree.structure(params), name
        assert jax.tree.structure(new_params) == jax.tree.structure(params), name
        floats = [x for x in jax.tree.leaves((updates, new_params, state))
                  if jnp.issubdtype(x.dtype, jnp.floating)]
        assert {x.dtype for x in floats} == {jnp.dtype(dtype)}, name
        assert not np.allclose(new_params["v"], params["v"]), name


def test_mixed_precision_tree_keeps_each_leaf_dtype_and_a_float32_scalar_state():
    params = {"a": jnp.ones(3, jnp.float32), "b": jnp.full(2, 2.0, jnp.float64)}
    grads = {"a": jnp.full(3, 0.5, jnp.float32), "b": jnp.ones(2, jnp.float64)}

    def three_steps(make):
        opt, state = make(1.0, 1.0), make(1.0, 1.0).init(params)
        for _ in range(3):
            updates, state = opt.update(grads, state, params)
        return updates, state

    results = jax.jit(lambda: {name: three_steps(make) for name, make in FACTORIES.items()},
                      compiler_options=FAST_COMPILE)()
    for name, (updates, state) in results.items():
        assert {k: u.dtype for k, u in updates.items()} == {
            "a": jnp.dtype(jnp.float32), "b": jnp.dtype(jnp.float64)}, name
    dog_state, dowg_state = results["dog"][1][1], results["dowg"][1][1]
    for scalar in (dog_state.max_dist, dog_state.sum_sq_norm_grads,
                   dowg_state.estim_sq_dist, dowg_state.weighted_sq_norm_grads):
        assert scalar.dtype == jnp.float32  # optax's "lowest" dtype of the parameters
    # ||g||^2 summed over both leaves: 3 * 0.25 + 2 * 1 per step
    np.testing.assert_allclose(float(dog_state.sum_sq_norm_grads), 3 * 2.75, rtol=1e-6)


def test_vmap_over_hyperparameters_equals_a_loop_and_compiles_once():
    params = tree_params()
    lrs, others = jnp.asarray([0.5, 1.0, 2.0]), jnp.asarray([0.5, 1.0, 3.0])

    def all_optimizers(lr, h):
        return {name: train(make(lr, h), params, 20)[0] for name, make in FACTORIES.items()}

    swept = jax.jit(jax.vmap(all_optimizers), compiler_options=FAST_COMPILE)(lrs, others)
    one = jax.jit(all_optimizers, compiler_options=FAST_COMPILE)
    looped = jax.tree.map(lambda *xs: jnp.stack(xs), *[one(a, b) for a, b in zip(lrs, others)])
    assert one._cache_size() == 1  # new hyperparameter values, no recompilation
    assert_tree_allclose(swept, looped)
    for name in FACTORIES:  # and the sweep is a sweep
        assert not np.allclose(swept[name]["v"][0], swept[name]["v"][2]), name


def test_inside_optax_chain_matches_the_optax_twin():
    params = tree_params()
    pairs = [(pf.dog(0.5), optax.contrib.dog(0.5)), (pf.dowg(), optax.contrib.dowg()),
             (pf.cocob(alpha=20.0), optax.contrib.cocob(alpha=20.0))]

    def run():
        out = []
        for ours, theirs in pairs:
            a = train(optax.chain(optax.clip_by_global_norm(1.0), ours), params, 30)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 and floats
                b = train(optax.chain(optax.clip_by_global_norm(1.0), theirs), params, 30)
            out.append((a, b))
        return out

    for (ours, theirs), ((pa, sa), (pb, sb)) in zip(pairs, jax.jit(run)()):
        assert_tree_allclose(pa, pb)
        assert_tree_allclose(jax.tree.leaves(sa), jax.tree.leaves(sb))
        assert not np.allclose(pa["v"], params["v"])  # it moved


RANGE = "is outside its valid range"
BAD = [  # (factory, kwargs, message)
    (pf.dog, dict(learning_rate=-1.0), rf"dog: learning_rate=-1.0 {RANGE} \[0, inf\)"),
    (pf.dog, dict(eps=-1e-8), rf"dog: eps=-1e-08 {RANGE}"),
    (pf.dog, dict(weight_decay=-0.1), rf"dog: weight_decay=-0.1 {RANGE}"),
    (pf.dog, dict(init_step=("distance", 0.0)), rf"dog: init_step\[1\]=0.0 {RANGE} \(0, inf\)"),
    (pf.dog, dict(init_step=("lr", 1e-3)), r"dog: init_step must be a pair \(kind, value\)"),
    (pf.dog, dict(init_step=1e-3), r"dog: init_step must be a pair .* got init_step=0.001"),
    (pf.dowg, dict(init_estim_sq_dist=-1.0), rf"dowg: init_estim_sq_dist=-1.0 {RANGE}"),
    (pf.dowg, dict(eps=-1.0), rf"dowg: eps=-1.0 {RANGE}"),
    (pf.cocob, dict(alpha=-1.0), rf"cocob: alpha=-1.0 {RANGE} \[0, inf\)"),
    (pf.cocob, dict(learning_rate=-0.1), rf"cocob: learning_rate=-0.1 {RANGE}"),
    (pf.scale_by_cocob, dict(eps=float("nan")), rf"scale_by_cocob: eps=nan {RANGE}"),
]


@pytest.mark.parametrize("factory,kwargs,message", BAD, ids=[m[:32] for _, _, m in BAD])
def test_bad_hyperparameters_raise_naming_the_argument(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


def test_arrays_are_not_range_checked():
    opt = pf.cocob(alpha=jnp.asarray(-1.0))  # concrete arrays pass through unchecked
    assert len(opt.init(tree_params())) == 3


@pytest.mark.parametrize("name", NAMES)
def test_missing_params_and_mismatched_grads_raise(name):
    opt = FACTORIES[name](1.0, 1.0)
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"update needs params, got params=None"):
        opt.update(params, state)
    grads = {"a": jnp.ones(2), "c": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"grads have pytree structure .*'c'.*but "
                                         r"\w+ has structure .*'b'"):
        opt.update(grads, state, params)
    # the scaling block itself checks too (cocob's chain starts with weight decay)
    block = getattr(pf, f"scale_by_{name}")(*((("distance", 1.0),) if name == "dog" else ()))
    with pytest.raises(ValueError, match=rf"scale_by_{name}: update needs params"):
        block.update(params, block.init(params))
    with pytest.raises(ValueError, match=rf"scale_by_{name}: grads have pytree structure"):
        block.update(grads, block.init(params), params)
