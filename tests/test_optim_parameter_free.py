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
from optax.contrib import _dog as optax_dog

from lab.optim import parameter_free as pf
from tests.helpers import assert_tree_allclose
from tests.optim_checks import (RANGE, assert_kept, bad_input_test, check_every_step,
                                check_factories_sweep, check_inside_optax_chain, float_dtypes,
                                last_step, tree_loss, tree_params)
from tests.test_optim_equivalence import (FAST_COMPILE, SCHEDULE, TREE_MASK, matrices_only,
                                          run_rows)

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
    check_every_step(rows, results)


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
    results = jax.jit(lambda: {name: last_step(make(1.0, 1.0), params)
                               for name, make in FACTORIES.items()},
                      compiler_options=FAST_COMPILE)()
    for name, (updates, new_params, state) in results.items():
        assert_kept(params, updates, new_params, label=name)
        assert float_dtypes(state) == {jnp.dtype(dtype)}, name


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
    check_factories_sweep(FACTORIES, jnp.asarray([0.5, 1.0, 2.0]), jnp.asarray([0.5, 1.0, 3.0]))


def test_inside_optax_chain_matches_the_optax_twin():
    check_inside_optax_chain([(pf.dog(0.5), optax.contrib.dog(0.5)),
                              (pf.dowg(), optax.contrib.dowg()),
                              (pf.cocob(alpha=20.0), optax.contrib.cocob(alpha=20.0))])


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


test_bad_hyperparameters_raise_naming_the_argument = bad_input_test(BAD)


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
