"""ADOPT, AdEMAMix, simplified AdEMAMix and MADGRAD (lab.optim.adam_variants) against
optax.contrib, and their properties.

* equivalence: every row of ``ROWS`` runs 200 steps through the harness of
  tests/test_optim_equivalence.py (mixed pytree in float64, digits MLP in float64 and
  float32); params and every state leaf must match optax.contrib at every step
  (1e-10 relative in float64, 1e-5 in float32, tests/helpers.py).  Rows with a ``b3``
  schedule run in float64 only: optax then mixes the schedule's float64 value into the
  float32 slow moment, whose dtype changes after one step (a scan cannot carry it);
* signatures equal optax.contrib's (the ``clip_value_fn`` defaults compared by value);
* ADOPT's first step is zero and its second the clipped normalised gradient;
* float32 and float64 kept (and AdEMAMix's ``mu_dtype``); a vmap over hyperparameters
  equals a loop and compiles once; inside ``optax.chain`` each matches its optax twin;
* bad input: out-of-range Python hyperparameters, missing params, mismatched grads.
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab.optim import adam_variants as av
from lab.optim.schedules import linear_schedule
from tests.helpers import assert_tree_allclose
from tests.optim_checks import (RANGE, assert_kept, bad_input_test, check_every_step,
                                check_factories_sweep, check_inside_optax_chain, float_dtypes,
                                last_step, tree_params)
from tests.test_optim_equivalence import (FAST_COMPILE, SCHEDULE, TREE_MASK, matrices_only,
                                          run_rows)
ALPHA_WARMUP = linear_schedule(0.0, 5.0, 100)  # lab schedules: float64 under x64
B3_WARMUP = linear_schedule(0.9, 0.9999, 100)
ALL_CASES = [("mixed", "float64"), ("mlp", "float64"), ("mlp", "float32")]
FLOAT64 = [("mixed", "float64"), ("mlp", "float64")]

ROWS = [  # (name, kwargs, cases)
    ("adopt", dict(learning_rate=1e-3), ALL_CASES),
    ("adopt", dict(learning_rate=1e-3, b1=0.5, b2=0.99, eps=1e-8, nesterov=True), ALL_CASES),
    ("adopt", dict(learning_rate=SCHEDULE, use_clipping=False, mu_dtype=None), ALL_CASES),
    ("adopt", dict(learning_rate=1e-2, clip_value_fn=lambda count: 1.0 + jnp.sqrt(count)),
     ALL_CASES),
    ("ademamix", dict(learning_rate=1e-3), ALL_CASES),
    ("ademamix", dict(learning_rate=1e-3, b1=0.8, b2=0.99, b3=0.999, alpha=8.0, eps_root=1e-8,
                      weight_decay=0.1, mask=TREE_MASK), ALL_CASES),
    ("ademamix", dict(learning_rate=SCHEDULE, alpha=ALPHA_WARMUP), ALL_CASES),
    ("ademamix", dict(learning_rate=1e-3, b3=B3_WARMUP, alpha=ALPHA_WARMUP,
                      weight_decay=0.01, mask=matrices_only), FLOAT64),
    ("simplified_ademamix", dict(learning_rate=1e-3), ALL_CASES),
    ("simplified_ademamix", dict(learning_rate=1e-3, b1=0.9, b2=0.99, alpha=2.0, eps_root=1e-8,
                                 weight_decay=0.1, mask=TREE_MASK), ALL_CASES),
    ("simplified_ademamix", dict(learning_rate=SCHEDULE, alpha=ALPHA_WARMUP), ALL_CASES),
    ("madgrad", dict(learning_rate=1e-2), ALL_CASES),
    ("madgrad", dict(learning_rate=1e-2, momentum=0.5, weight_decay=1e-3, eps=1e-8), ALL_CASES),
    ("madgrad", dict(learning_rate=SCHEDULE), ALL_CASES),  # an array lr: the wider-dtype path
]
NAMES = ["adopt", "ademamix", "simplified_ademamix", "madgrad"]


@pytest.mark.parametrize("name", NAMES)
def test_matches_optax_contrib_every_step(name):
    table = [row for row in ROWS if row[0] == name]
    assert len(table) >= 3
    for cases in (ALL_CASES, FLOAT64):
        rows = [(n, kwargs) for n, kwargs, c in table if c == cases]
        if not rows:
            continue
        results = run_rows(rows, library=av, cases=cases)
        assert set(results) == {f"{p}/{d}" for p, d in cases}
        check_every_step(rows, results)


TWINS = [(getattr(av, name), getattr(optax.contrib, name)) for name in [
    "adopt", "scale_by_adopt", "ademamix", "scale_by_ademamix", "simplified_ademamix",
    "scale_by_simplified_ademamix", "madgrad", "scale_by_madgrad"]]


@pytest.mark.parametrize("ours,theirs", TWINS, ids=[t[0].__name__ for t in TWINS])
def test_signatures_match_optax(ours, theirs):
    def describe(f):
        return [(p.name, p.kind, "<function>" if p.name == "clip_value_fn" else p.default)
                for p in inspect.signature(f).parameters.values()]
    assert describe(ours) == describe(theirs)
    for name in ("ScaleByAdemamixState", "ScaleBySimplifiedAdEMAMixState", "MadgradState"):
        assert getattr(av, name)._fields == getattr(optax.contrib, name)._fields


def test_adopt_default_clip_bound_is_optax_s():
    ours = inspect.signature(av.adopt).parameters["clip_value_fn"].default
    theirs = inspect.signature(optax.contrib.adopt).parameters["clip_value_fn"].default
    counts = jnp.arange(0, 1000, 7, dtype=jnp.int32)
    with jax.numpy_dtype_promotion("standard"):  # optax's default is int32 ** float
        expected = theirs(counts)
    np.testing.assert_array_equal(np.asarray(ours(counts)), np.asarray(expected))


# ---------------------------------------------------------------------- properties


def test_adopt_first_step_is_zero_and_second_is_the_clipped_normalised_gradient():
    g1 = {"w": jnp.asarray([1.0, -2.0, 1e-3])}
    g2 = {"w": jnp.asarray([4.0, 1.0, 3.0])}
    opt = av.scale_by_adopt(b1=0.9, b2=0.99, eps=1e-6)
    u1, state = opt.update(g1, opt.init(g1))
    u2, state = opt.update(g2, state)
    assert_tree_allclose(u1, {"w": jnp.zeros(3)})
    assert_tree_allclose(state.nu, {"w": 0.01 * g2["w"] ** 2 + 0.99 * g1["w"] ** 2})
    # m_2 = (1 - b1) clip(g_2 / max(|g_1|, eps), 1^(1/4) = 1): only the last entry clips
    expected = 0.1 * jnp.clip(g2["w"] / jnp.maximum(jnp.abs(g1["w"]), 1e-6), -1.0, 1.0)
    assert_tree_allclose(u2, {"w": expected})
    np.testing.assert_allclose(np.asarray(u2["w"]), [0.1, 0.05, 0.1])


FACTORIES = {  # name -> optimizer from (learning_rate, another hyperparameter)
    "adopt": lambda lr, h: av.adopt(lr * 1e-2, b1=h),
    "ademamix": lambda lr, h: av.ademamix(lr * 1e-2, b3=h, alpha=10 * h),
    "simplified_ademamix": lambda lr, h: av.simplified_ademamix(lr * 1e-3, b2=h),
    "madgrad": lambda lr, h: av.madgrad(lr * 1e-2, momentum=h),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dtypes_and_structure_kept(dtype):
    params = tree_params(dtype)
    other = jnp.float64 if dtype == jnp.float32 else jnp.float32  # moments in the other dtype
    makers = dict(FACTORIES,
                  ademamix_mu_dtype=lambda lr, h: av.ademamix(lr * 1e-2, mu_dtype=other),
                  adopt_mu_dtype=lambda lr, h: av.adopt(lr * 1e-2, mu_dtype=other))
    results = jax.jit(lambda: {name: last_step(make(1.0, 0.9), params)
                               for name, make in makers.items()},
                      compiler_options=FAST_COMPILE)()
    for name, (updates, new_params, state) in results.items():
        assert_kept(params, updates, new_params, label=name)
        if name == "adopt_mu_dtype":  # ScaleByAdamState(count, mu, nu): only mu is mu_dtype
            assert float_dtypes(state[0].mu) == {jnp.dtype(other)}
            assert float_dtypes(state[0].nu) == {jnp.dtype(dtype)}
        else:
            state_dtype = other if name == "ademamix_mu_dtype" else dtype
            assert float_dtypes(state) == {jnp.dtype(state_dtype)}, name


def test_vmap_over_hyperparameters_equals_a_loop_and_compiles_once():
    check_factories_sweep(FACTORIES, jnp.asarray([0.5, 1.0, 2.0]), jnp.asarray([0.5, 0.9, 0.99]))


def test_inside_optax_chain_matches_the_optax_twin():
    check_inside_optax_chain([(av.adopt(0.01), optax.contrib.adopt(0.01)),
                              (av.ademamix(0.01), optax.contrib.ademamix(0.01)),
                              (av.simplified_ademamix(1e-3),
                               optax.contrib.simplified_ademamix(1e-3)),
                              (av.madgrad(0.01), optax.contrib.madgrad(0.01))])


BAD = [  # (factory, kwargs, message)
    (av.adopt, dict(learning_rate=-1e-3), rf"adopt: learning_rate=-0.001 {RANGE} \[0, inf\)"),
    (av.adopt, dict(learning_rate=1e-3, b1=1.0), rf"adopt: b1=1.0 {RANGE} \[0, 1\)"),
    (av.adopt, dict(learning_rate=1e-3, b2=-0.1), rf"adopt: b2=-0.1 {RANGE}"),
    (av.adopt, dict(learning_rate=1e-3, eps=-1.0), rf"adopt: eps=-1.0 {RANGE}"),
    (av.ademamix, dict(learning_rate=1e-3, b3=1.0), rf"ademamix: b3=1.0 {RANGE} \[0, 1\)"),
    (av.ademamix, dict(learning_rate=1e-3, alpha=-5.0), rf"ademamix: alpha=-5.0 {RANGE}"),
    (av.ademamix, dict(learning_rate=1e-3, eps_root=-1.0), rf"ademamix: eps_root=-1.0 {RANGE}"),
    (av.ademamix, dict(learning_rate=1e-3, weight_decay=-1.0), rf"weight_decay=-1.0 {RANGE}"),
    (av.scale_by_ademamix, dict(b2=1.5), rf"scale_by_ademamix: b2=1.5 {RANGE}"),
    (av.simplified_ademamix, dict(learning_rate=1e-3, b1=1.0), r"simplified_ademamix: b1=1.0"),
    (av.simplified_ademamix, dict(learning_rate=1e-3, alpha=-1.0), rf"alpha=-1.0 {RANGE}"),
    (av.madgrad, dict(learning_rate=-0.1), rf"madgrad: learning_rate=-0.1 {RANGE}"),
    (av.madgrad, dict(learning_rate=0.1, momentum=1.0), rf"madgrad: momentum=1.0 {RANGE}"),
    (av.madgrad, dict(learning_rate=0.1, eps=float("nan")), rf"madgrad: eps=nan {RANGE}"),
]


test_bad_hyperparameters_raise_naming_the_argument = bad_input_test(BAD)


def test_schedules_and_arrays_are_not_range_checked():
    opt = av.ademamix(1e-3, b3=B3_WARMUP, alpha=jnp.asarray(-1.0))
    assert int(opt.init(tree_params())[0].count_m2) == 0


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_grads_raise_naming_both(name):
    opt = FACTORIES[name](1.0, 0.9)
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    grads = {"a": jnp.ones(2), "c": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"grads have pytree structure .*'c'.*but "
                                         r"\w+ has structure .*'b'"):
        opt.update(grads, opt.init(params), params)


def test_madgrad_needs_params():
    block = av.scale_by_madgrad(0.01)
    params = {"a": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"scale_by_madgrad: update needs params"):
        block.update(params, block.init(params))
    with pytest.raises(ValueError, match=r"madgrad: params have pytree structure .*but x0"):
        block.update(params, block.init(params), {"b": jnp.ones(2)})
