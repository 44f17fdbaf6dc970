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
from jax import lax

from lab.optim import adam_variants as av
from lab.optim.base import apply_updates
from lab.optim.schedules import linear_schedule
from tests.helpers import assert_tree_allclose
from tests.test_optim_equivalence import SCHEDULE, TREE_MASK, matrices_only, run_rows

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}
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
        for case, per_row in results.items():
            dtype = jnp.dtype(case.split("/")[1])
            for (_, kwargs), (lp, ls, rp, rs) in zip(rows, per_row):
                label = f"{name}({kwargs}) on {case}"
                assert {x.dtype for x in jax.tree.leaves(lp)} == {dtype}, label
                assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(lp)), label
                assert len(ls) == len(rs), f"{label}: {len(ls)} state leaves, reference {len(rs)}"
                # leaves are stacked over the 200 steps, so this compares every step
                assert_tree_allclose(lp, rp, err_msg=f"{label}: params")
                assert_tree_allclose(ls, rs, err_msg=f"{label}: state")
                first, last = (jax.tree.map(lambda x, i=i: x[i], lp) for i in (0, -1))
                assert not all(np.allclose(a, b) for a, b in
                               zip(jax.tree.leaves(first), jax.tree.leaves(last))), label


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

    def two_steps(make):
        opt, p = make(1.0, 0.9), params
        state = opt.init(p)
        for _ in range(2):
            updates, state = opt.update(jax.grad(tree_loss)(p), state, p)
            p = apply_updates(p, updates)
        return updates, p, state

    results = jax.jit(lambda: {name: two_steps(make) for name, make in makers.items()},
                      compiler_options=FAST_COMPILE)()
    for name, (updates, new_params, state) in results.items():
        assert jax.tree.structure(updates) == jax.tree.structure(params), name
        assert jax.tree.structure(new_params) == jax.tree.structure(params), name
        assert {x.dtype for x in jax.tree.leaves((updates, new_params))} == {jnp.dtype(dtype)}
        floats = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        if name == "adopt_mu_dtype":  # ScaleByAdamState(count, mu, nu): only mu is mu_dtype
            assert {x.dtype for x in jax.tree.leaves(state[0].mu)} == {jnp.dtype(other)}
            assert {x.dtype for x in jax.tree.leaves(state[0].nu)} == {jnp.dtype(dtype)}
        else:
            state_dtype = other if name == "ademamix_mu_dtype" else dtype
            assert {x.dtype for x in floats} == {jnp.dtype(state_dtype)}, name
        assert not np.allclose(new_params["v"], params["v"]), name


def test_vmap_over_hyperparameters_equals_a_loop_and_compiles_once():
    params = tree_params()
    lrs, others = jnp.asarray([0.5, 1.0, 2.0]), jnp.asarray([0.5, 0.9, 0.99])

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
    pairs = [(av.adopt(0.01), optax.contrib.adopt(0.01)),
             (av.ademamix(0.01), optax.contrib.ademamix(0.01)),
             (av.simplified_ademamix(1e-3), optax.contrib.simplified_ademamix(1e-3)),
             (av.madgrad(0.01), optax.contrib.madgrad(0.01))]

    def run():
        out = []
        for ours, theirs in pairs:
            a = train(optax.chain(optax.clip_by_global_norm(1.0), ours), params, 30)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 and floats
                b = train(optax.chain(optax.clip_by_global_norm(1.0), theirs), params, 30)
            out.append((a, b))
        return out

    for (pa, sa), (pb, sb) in jax.jit(run, compiler_options=FAST_COMPILE)():
        assert_tree_allclose(pa, pb)
        assert_tree_allclose(jax.tree.leaves(sa), jax.tree.leaves(sb))
        assert not np.allclose(pa["v"], params["v"])  # it moved


RANGE = "is outside its valid range"
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


@pytest.mark.parametrize("factory,kwargs,message", BAD, ids=[m[:32] for _, _, m in BAD])
def test_bad_hyperparameters_raise_naming_the_argument(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


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
