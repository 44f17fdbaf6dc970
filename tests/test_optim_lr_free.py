"""The learning-rate-free optimizers (lab.optim.averaging, lab.optim.lr_free) against
their optax.contrib twins step for step, and their properties.

Equivalence runs through the harness of tests/test_optim_equivalence.py (``run_rows``):
200 steps on the mixed pytree in float64 and on the MLP in float64 and float32, params
and every state leaf compared at every step (1e-10 relative in float64, 1e-5 in
float32); Prodigy, D-Adaptation and Mechanic on the float64 MLP step the reference from
our params, as the harness does in float32 (see ``FORCED_F64``).  A wrapper's row names its base optimizer as ``base_optimizer=(name,
kwargs)``: the lab side wraps lab's optimizer of that name, the reference wraps optax's
(an entry in the harness's ``REFERENCES``, set by ``monkeypatch`` for the test).  For
the schedule-free rows, ``schedule_free_eval_params`` of every step's state and params
is compared with optax's too.  Beside that: a textbook schedule-free SGD in NumPy,
the learned step size following the distance to the solution over four decades,
structure and dtypes kept (mixed precision too), jit equals eager, traced
hyperparameters without recompiles, extra arguments reaching a wrapped base, convergence
on a quadratic, signatures and state fields, errors that name the problem.
"""
import inspect
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lab.optim as lo
import tests.test_optim_equivalence as eq
from lab.optim import lr_free as lf
from lab.optim import averaging as sf
from tests.helpers import assert_tree_allclose
from tests.optim_checks import (RANGE, Lane, assert_kept, bad_input_test, check_every_step,
                                float_dtypes, largest_change, last_step, run_lanes, train,
                                tree_loss, tree_params)

SCHEDULE = eq.SCHEDULE  # -> lab exponential_decay(0.01, 40, 0.5), for both libraries
FAST_COMPILE = eq.FAST_COMPILE


def base_twin(library, spec):
    """The base optimizer ``(name, kwargs)`` from lab (``lo``) or its optax twin."""
    name, kwargs = spec
    return eq.build(library, name, kwargs, params=None)


# The lab side of every row (run_rows builds ``getattr(LAB, name)(**kwargs)``) ...
LAB = types.SimpleNamespace(
    schedule_free=lambda base_optimizer, **kw: sf.schedule_free(base_twin(lo, base_optimizer),
                                                                **kw),
    mechanize=lambda base_optimizer, **kw: lf.mechanize(base_twin(lo, base_optimizer), **kw),
    schedule_free_sgd=sf.schedule_free_sgd, schedule_free_adamw=sf.schedule_free_adamw,
    prodigy=lf.prodigy, dadapt_adamw=lf.dadapt_adamw)
# ... and the references that need more than optax.contrib.<name>(**kwargs)
WRAPPER_REFERENCES = {
    "schedule_free": lambda base_optimizer, **kw: optax.contrib.schedule_free(
        base_twin(optax, base_optimizer), **kw),
    "mechanize": lambda base_optimizer, **kw: optax.contrib.mechanize(
        base_twin(optax, base_optimizer), **kw),
}

ROWS = [
    ("schedule_free_sgd", dict()),
    ("schedule_free_sgd", dict(learning_rate=0.1, b1=0.95, weight_decay=1e-3,
                               weight_lr_power=1.0)),
    ("schedule_free_sgd", dict(learning_rate=SCHEDULE, b1=0.5)),
    # optax's warmup schedule computes in float32 (see eq.build), so the peak and length
    # are chosen for values k/16 that float32 holds exactly; lab's schedules are checked
    # against optax's in tests/test_schedules.py
    ("schedule_free_sgd", dict(learning_rate=0.5, warmup_steps=8)),
    ("schedule_free_adamw", dict()),
    ("schedule_free_adamw", dict(learning_rate=0.01, b1=0.5, b2=0.99, eps=1e-6,
                                 weight_decay=0.1)),
    ("schedule_free_adamw", dict(learning_rate=SCHEDULE, weight_lr_power=0.0)),
    ("schedule_free_adamw", dict(learning_rate=0.25, warmup_steps=16, weight_decay=0.01)),
    ("schedule_free", dict(base_optimizer=("sgd", dict(learning_rate=0.1)), learning_rate=0.1)),
    ("schedule_free", dict(base_optimizer=("adam", dict(learning_rate=0.01, b1=0.0)),
                           learning_rate=0.01, b1=0.8)),
    ("schedule_free", dict(base_optimizer=("adam", dict(learning_rate=SCHEDULE, b1=0.0, b2=0.99)),
                           learning_rate=SCHEDULE, weight_lr_power=1.0)),
    ("schedule_free", dict(base_optimizer=("sgd", dict(learning_rate=0.05)), learning_rate=0.05,
                           state_dtype="float32")),
    ("prodigy", dict()),
    ("prodigy", dict(learning_rate=0.5, betas=(0.5, 0.99), beta3=0.9, eps=1e-6,
                     weight_decay=0.1, estim_lr_coef=2.0)),
    ("prodigy", dict(learning_rate=SCHEDULE, estim_lr0=1e-3, safeguard_warmup=True)),
    ("dadapt_adamw", dict()),
    ("dadapt_adamw", dict(betas=(0.5, 0.99), eps=1e-6, weight_decay=0.1)),
    ("dadapt_adamw", dict(learning_rate=SCHEDULE, estim_lr0=1e-3)),
    ("mechanize", dict(base_optimizer=("adam", dict(learning_rate=1.0)))),
    ("mechanize", dict(base_optimizer=("sgd", dict(learning_rate=1.0, momentum=0.9)))),
    ("mechanize", dict(base_optimizer=("adam", dict(learning_rate=SCHEDULE, b1=0.5)),
                       weight_decay=0.0, eps=1e-6, s_init=1e-4, num_betas=3)),
    ("mechanize", dict(base_optimizer=("sgd", dict(learning_rate=0.1, momentum=0.9,
                                                   nesterov=True)),
                       weight_decay=0.1, num_betas=8)),
]
NAMES = list(dict.fromkeys(name for name, _ in ROWS))
SCHEDULE_FREE = ("schedule_free", "schedule_free_sgd", "schedule_free_adamw")


# The learning-rate-free methods on the float64 MLP: the reference steps from our params
# each step (as run_rows does in float32).  Running free there, their trajectories turn a
# one-ulp nudge of every update (optax against optax nudged) into differences beyond the
# 1e-10 tolerance within 200 steps: 2e2 to 1e11 times it for every Mechanic row tried,
# 5e14 and 3e10 times for the Prodigy and D-Adaptation rows with b1 = 0.5, 0.2 and 0.6
# times for their defaults.  Even optax against itself in one program, compiled a little
# differently in each lane, fails the last Mechanic row at step 129.  Forced, the same
# nudge stays below 3e-4 of the tolerance (every row); everywhere else below 0.12.
FORCED_F64 = ("prodigy", "dadapt_adamw", "mechanize")


def run_forced(rows, library, dtype="float64"):
    """``eq.run_rows``'s record for the MLP in ``dtype``, every step's reference update
    taken from our params (same gradient, its own state)."""
    params0, grad_fn = eq.mlp_problem(jnp.dtype(dtype))

    def inputs(params, t):
        grads, value = grad_fn(params, t)
        return grads, {"value": value}

    with jax.numpy_dtype_promotion("standard"):
        refs = [eq.build(optax, name, kwargs, params0) for name, kwargs in rows]
    return run_lanes([Lane(f"mlp/{dtype} (forced)", eq.build(library, name, kwargs, params0),
                           ref, params0, inputs, forced=True)
                      for (name, kwargs), ref in zip(rows, refs)])


@pytest.fixture
def wrapper_references(monkeypatch):
    for name, factory in WRAPPER_REFERENCES.items():
        monkeypatch.setitem(eq.REFERENCES, name, factory)


def eval_params_every_step(name, kwargs, case, lab_leaves, lab_params, ref_leaves, ref_params):
    """``schedule_free_eval_params`` of every recorded step, lab's and optax's."""
    problem, dtype = case.split("/")
    params0 = eq.PROBLEMS[problem](jnp.dtype(dtype))[0]
    ours = eq.build(LAB, name, kwargs, params0)
    lab_state = jax.tree.unflatten(jax.tree.structure(jax.eval_shape(ours.init, params0)),
                                   lab_leaves)
    with jax.numpy_dtype_promotion("standard"):
        ref = eq.build(optax, name, kwargs, params0)
        ref_state = jax.tree.unflatten(jax.tree.structure(jax.eval_shape(ref.init, params0)),
                                       ref_leaves)
        ref_eval = jax.vmap(optax.contrib.schedule_free_eval_params)(ref_state, ref_params)
    return jax.vmap(sf.schedule_free_eval_params)(lab_state, lab_params), ref_eval


@pytest.mark.parametrize("name", NAMES)
def test_matches_optax_contrib_every_step(name, wrapper_references):
    rows = [row for row in ROWS if row[0] == name]
    assert len(rows) >= 3
    if name in FORCED_F64:
        results = eq.run_rows(rows, LAB, cases=[("mixed", "float64"), ("mlp", "float32")])
        results.update(run_forced(rows, LAB))
    else:
        results = eq.run_rows(rows, LAB)
    assert len(results) == 3

    def eval_params_too(row, case, record, where):
        if name in SCHEDULE_FREE:
            lp, ls, rp, rs = record
            ours, ref = eval_params_every_step(name, row[1], case, ls, lp, rs, rp)
            assert_tree_allclose(ours, ref, err_msg=f"{where}: eval params")
            assert largest_change(ours, lp) > 1e-6, f"{where}: eval params are the params"

    check_every_step(rows, results, moved=1e-6, also=eval_params_too)


def test_signatures_and_state_fields_match_optax_contrib():
    for module, name in [(sf, "schedule_free"), (sf, "schedule_free_sgd"),
                         (sf, "schedule_free_adamw"), (sf, "schedule_free_eval_params"),
                         (lf, "prodigy"), (lf, "dadapt_adamw"), (lf, "mechanize")]:
        ours, theirs = ([(p.name, p.kind, p.default) for p in
                         inspect.signature(getattr(lib, name)).parameters.values()]
                        for lib in (module, optax.contrib))
        assert ours == theirs, name
    for ours, theirs in [(sf.ScheduleFreeState, optax.contrib.ScheduleFreeState),
                         (lf.ProdigyState, optax.contrib.ProdigyState),
                         (lf.DAdaptAdamWState, optax.contrib.DAdaptAdamWState),
                         (lf.MechanicState, optax.contrib.MechanicState)]:
        assert ours._fields == theirs._fields, ours.__name__


# --------------------------------------------------------------- textbook and theory


def test_schedule_free_sgd_is_the_textbook_method():
    """Defazio et al. 2024, Algorithm 1 with SGD, in NumPy float64, on a quadratic: y (the
    params), x (the eval params) and z at every step.  The averaging weight of step t is
    (max_{i <= t} lr(i))^2 with lr(t) from the warmup schedule at t = 1, 2, ...; the SGD step
    uses lr(t - 1), the base optimizer's own count starting at 0 (optax's convention)."""
    a, b1, lr, warmup, steps = np.array([1.0, 10.0, 0.1]), 0.9, 0.05, 5, 60
    schedule = lambda t: lr * min(t, warmup) / warmup  # noqa: E731
    opt = sf.schedule_free_sgd(lr, warmup_steps=warmup, b1=b1)
    y = jnp.asarray([1.0, -1.0, 3.0])
    state = opt.init(y)
    z, x, weight_sum, max_lr = np.asarray(y), np.asarray(y), 0.0, 0.0
    for t in range(1, steps + 1):
        g = a * ((1 - b1) * z + b1 * x)  # the gradient at y_t
        updates, state = opt.update(jnp.asarray(a) * y, state, y)
        y = lo.apply_updates(y, updates)
        z = z - schedule(t - 1) * g
        max_lr = max(max_lr, schedule(t))
        weight_sum += max_lr ** 2
        c = max_lr ** 2 / weight_sum if weight_sum > 0 else 0.0
        x = (1 - c) * x + c * z
        assert_tree_allclose(y, (1 - b1) * z + b1 * x, err_msg=f"y at step {t}")
        assert_tree_allclose(sf.schedule_free_eval_params(state, y), x, err_msg=f"x at step {t}")
        assert_tree_allclose(state.z, z, err_msg=f"z at step {t}")
    loss = lambda v: 0.5 * float(np.sum(a * np.asarray(v) ** 2))  # noqa: E731
    assert loss(x) < 0.1 * loss([1.0, -1.0, 3.0])  # and the average is on its way down


def quadratic(x):
    return 0.5 * jnp.sum(jnp.asarray([1.0, 10.0]) * x * x)


# (name, optimizer, the learned scale from the final state, its range / D, error / D bound)
SCALE_FREE = [
    ("prodigy", lf.prodigy(), lambda s: s.estim_lr, (0.3, 0.7), 1e-5),
    ("dadapt_adamw", lf.dadapt_adamw(), lambda s: s.estim_lr, (0.8, 1.6), 1e-5),
    ("mechanize(adam)", lf.mechanize(lo.adam(1.0)), lambda s: jnp.sum(s.s), (0.005, 0.05), 0.05),
]


def test_learned_step_follows_the_distance_to_the_solution():
    """From x0 = D (1, -1), D = 0.01, 1, 100 and the same hyperparameters, 300 steps:
    Prodigy's and D-Adaptation's d (from 1e-6) and Mechanic's scale sum(s) (from 6e-6)
    end in a fixed range of multiples of D (measured: d/D = 0.47-0.50, 1.14-1.26 and
    0.014-0.031), and every run gets within the stated fraction of D of the minimum
    (measured 1e-6, 2e-7, 0.014), where a fixed learning rate would suit one D only."""
    distances = (0.01, 1.0, 100.0)
    run = jax.jit(lambda: [[train(opt, d * jnp.asarray([1.0, -1.0]), 300, quadratic)
                            for d in distances]
                           for _, opt, _, _, _ in SCALE_FREE], compiler_options=FAST_COMPILE)
    for (name, _, scale, (low, high), bound), finals in zip(SCALE_FREE, run()):
        for d, (x, state) in zip(distances, finals):
            ratio, error = float(scale(state)) / d, float(jnp.max(jnp.abs(x))) / d
            assert low < ratio < high, f"{name}, D = {d}: learned scale / D = {ratio:.3g}"
            assert error < bound, f"{name}, D = {d}: error / D = {error:.3g}"


# Convergence from (1, -1) on (x1^2 + 10 x2^2) / 2 in 500 steps: |x|_inf < tol, where x is
# the eval params for the schedule-free methods (measured: 5e-4, 6e-4, 7e-9, 3e-7, 6e-12,
# 1e-12, 0.013, 0.036).
QUADRATIC = [
    ("schedule_free_sgd", sf.schedule_free_sgd(0.1), 5e-3),
    ("schedule_free_sgd_warmup", sf.schedule_free_sgd(0.1, warmup_steps=20), 5e-3),
    ("schedule_free_adamw", sf.schedule_free_adamw(0.1), 1e-7),
    ("schedule_free_adamw_warmup", sf.schedule_free_adamw(0.1, warmup_steps=20), 1e-5),
    ("prodigy", lf.prodigy(), 1e-10), ("dadapt_adamw", lf.dadapt_adamw(), 1e-10),
    ("mechanize_adam", lf.mechanize(lo.adam(1.0)), 0.05),
    ("mechanize_sgd_momentum", lf.mechanize(lo.sgd(1.0, momentum=0.9)), 0.1),
]


def test_convergence_on_a_quadratic():
    x0 = jnp.asarray([1.0, -1.0])
    finals = jax.jit(lambda: [train(opt, x0, 500, quadratic) for _, opt, _ in QUADRATIC],
                     compiler_options=FAST_COMPILE)()
    slow = {}
    for (name, _, tol), (x, state) in zip(QUADRATIC, finals):
        if name.startswith("schedule_free"):
            x = sf.schedule_free_eval_params(state, x)
        error = float(jnp.max(jnp.abs(x)))
        if not error < tol:
            slow[name] = (error, tol)
    assert not slow, f"not converged (error, tolerance): {slow}"


# ---------------------------------------------------------------------- properties


def build_all(h):
    """Every optimizer here, built from the hyperparameters ``h`` (floats or arrays)."""
    return {
        "schedule_free_sgd": sf.schedule_free_sgd(h["lr"], b1=h["b1"], weight_decay=h["wd"],
                                                  weight_lr_power=h["power"]),
        "schedule_free_adamw": sf.schedule_free_adamw(h["lr"], b1=h["b1"], b2=h["b2"],
                                                      eps=h["eps"], weight_decay=h["wd"]),
        "schedule_free(adam)": sf.schedule_free(lo.adam(h["lr"], b1=0.0), h["lr"], b1=h["b1"]),
        "prodigy": lf.prodigy(h["scale"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                              estim_lr0=h["d0"], estim_lr_coef=h["coef"], weight_decay=h["wd"]),
        "prodigy_beta3": lf.prodigy(h["scale"], beta3=h["b1"], safeguard_warmup=True),
        "dadapt_adamw": lf.dadapt_adamw(h["scale"], betas=(h["b1"], h["b2"]), eps=h["eps"],
                                        estim_lr0=h["d0"], weight_decay=h["wd"]),
        "mechanize(adam)": lf.mechanize(lo.adam(h["scale"]), weight_decay=h["wd"],
                                        eps=h["eps"], s_init=h["d0"]),
        "mechanize(sgd)": lf.mechanize(lo.sgd(h["scale"], momentum=h["b1"])),
    }


HYPER = dict(lr=0.05, b1=0.8, b2=0.99, eps=1e-6, wd=0.01, power=1.5, scale=1.0, d0=1e-5,
             coef=1.5)


def test_structure_and_float32_kept_and_jit_equals_eager():
    params = tree_params(jnp.float32)
    for name, opt in build_all(HYPER).items():
        with jax.disable_jit():  # op by op
            updates, new_params, state = last_step(opt, params)
        assert_kept(params, updates, new_params, label=name)
        assert float_dtypes(state) == {jnp.dtype(jnp.float32)}, name
        jitted = jax.jit(lambda p: last_step(opt, p)[:2], compiler_options=FAST_COMPILE)(params)
        assert_tree_allclose(jitted, (updates, new_params), err_msg=name)


SCALAR_FIELDS = ("b1", "weight_sum", "max_lr", "estim_lr", "numerator_weighted", "r", "m", "v",
                 "s")  # the states' fields that are not shaped like the params


def test_mixed_precision_params_keep_their_dtypes():
    """float32 and float64 leaves together: scalar state takes the lowest dtype (optax's
    rule), buffers and updates keep each leaf's, under strict promotion."""
    params = {"low": jnp.asarray([1.0, -2.0], jnp.float32), "high": jnp.asarray([0.5, 3.0])}
    loss = lambda p: jnp.sum(p["low"].astype(jnp.float64) ** 2) + jnp.sum(p["high"] ** 2)  # noqa
    for name, opt in {**build_all(HYPER),
                      "state_dtype": sf.schedule_free_sgd(0.1, state_dtype=jnp.float64)}.items():
        x, state = train(opt, params, 3, loss)
        assert jax.tree.map(lambda v: v.dtype, x) == jax.tree.map(lambda v: v.dtype, params), name
        scalars = {field: getattr(state, field).dtype for field in SCALAR_FIELDS
                   if field in state._fields}
        assert scalars and set(scalars.values()) == {jnp.dtype(jnp.float32)}, (name, scalars)
        assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(x)), name
    x, state = train(sf.schedule_free_sgd(0.1, state_dtype=jnp.float64), params, 3, loss)
    assert state.z["low"].dtype == jnp.float64 and x["low"].dtype == jnp.float32


def test_hyperparameters_are_traced_without_recompiling():
    traces = []

    @jax.jit
    def fit(h):
        traces.append(None)  # runs only while tracing
        return {name: train(opt, tree_params(), 20, tree_loss)
                for name, opt in build_all(h).items()}

    as_arrays = lambda h: jax.tree.map(jnp.asarray, h)  # noqa: E731
    first = fit(as_arrays(HYPER))
    second = fit(as_arrays({**HYPER, "lr": 0.02, "b1": 0.7, "scale": 0.5, "d0": 1e-4}))
    assert len(traces) == 1 and fit._cache_size() == 1
    eager = {name: train(opt, tree_params(), 20, tree_loss)
             for name, opt in build_all(HYPER).items()}
    assert_tree_allclose(first, eager)  # traced hyperparameters compute what floats do
    for name in first:
        assert not np.allclose(first[name][0]["v"], second[name][0]["v"]), name


def test_wrappers_forward_extra_arguments_to_their_base():
    """polyak_sgd needs value=: schedule_free and mechanize pass it on, and agree with
    optax's wrappers around optax.polyak_sgd; a base without **kwargs gets none."""
    pairs = [(sf.schedule_free(lo.polyak_sgd(max_learning_rate=0.1), 0.1),
              optax.contrib.schedule_free(optax.polyak_sgd(max_learning_rate=0.1), 0.1)),
             (lf.mechanize(lo.polyak_sgd(max_learning_rate=0.1)),
              optax.contrib.mechanize(optax.polyak_sgd(max_learning_rate=0.1))),
             (sf.schedule_free(optax.sgd(0.1), 0.1),
              optax.contrib.schedule_free(optax.sgd(0.1), 0.1)),
             (lf.mechanize(optax.sgd(1.0)), optax.contrib.mechanize(optax.sgd(1.0)))]
    for ours, ref in pairs:
        x, _ = train(ours, tree_params(), 20, tree_loss)
        with jax.numpy_dtype_promotion("standard"):
            x_ref, _ = train(ref, tree_params(), 20, tree_loss)
        assert_tree_allclose(x, x_ref)
    with pytest.raises(TypeError, match="value="):
        opt = sf.schedule_free(lo.polyak_sgd(), 1.0)
        opt.update(tree_params(), opt.init(tree_params()), tree_params())


# ----------------------------------------------------------------------- bad input

BAD = [  # (factory, kwargs, the message)
    (sf.schedule_free, dict(base_optimizer=lo.sgd(0.1), learning_rate=0.1, b1=0.0),
     rf"schedule_free: b1=0.0 {RANGE} \(0, 1\]"),
    (sf.schedule_free, dict(base_optimizer=lo.sgd(0.1), learning_rate=-0.1),
     rf"schedule_free: learning_rate=-0.1 {RANGE}"),
    (sf.schedule_free, dict(base_optimizer=lo.sgd(0.1), learning_rate=0.1,
                            weight_lr_power=-1.0),
     rf"schedule_free: weight_lr_power=-1.0 {RANGE} \[0, inf\)"),
    (sf.schedule_free_sgd, dict(warmup_steps=0), r"warmup_steps must be None or a positive int"),
    (sf.schedule_free_sgd, dict(weight_decay=-1.0), rf"weight_decay=-1.0 {RANGE}"),
    (sf.schedule_free_adamw, dict(b2=1.0), rf"schedule_free_adamw: b2=1.0 {RANGE} \[0, 1\)"),
    (sf.schedule_free_adamw, dict(warmup_steps=2.5), r"warmup_steps must be None or a positive"),
    (lf.prodigy, dict(betas=(1.0, 0.999)), rf"prodigy: betas\[0\]=1.0 {RANGE} \[0, 1\)"),
    (lf.prodigy, dict(beta3=1.5), rf"prodigy: beta3=1.5 {RANGE}"),
    (lf.prodigy, dict(estim_lr0=0.0), rf"prodigy: estim_lr0=0.0 {RANGE} \(0, inf\)"),
    (lf.prodigy, dict(eps=-1e-8), rf"prodigy: eps=-1e-08 {RANGE}"),
    (lf.dadapt_adamw, dict(betas=(0.9, -0.1)), rf"dadapt_adamw: betas\[1\]=-0.1 {RANGE}"),
    (lf.dadapt_adamw, dict(weight_decay=-0.1), rf"dadapt_adamw: weight_decay=-0.1 {RANGE}"),
    (lf.mechanize, dict(base_optimizer=lo.adam(1.0), num_betas=0),
     r"mechanize: num_betas must be a Python int >= 1"),
    (lf.mechanize, dict(base_optimizer=lo.adam(1.0), s_init=0.0), rf"s_init=0.0 {RANGE}"),
    (lf.mechanize, dict(base_optimizer=lo.adam(1.0), eps=-1.0), rf"mechanize: eps=-1.0 {RANGE}"),
]


test_out_of_range_python_hyperparameters_raise_naming_the_argument = bad_input_test(BAD)


def test_bad_calls_raise_naming_the_problem():
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    other = {"a": jnp.ones(2), "c": jnp.ones(3)}
    for name, opt in build_all(HYPER).items():
        state = opt.init(params)
        with pytest.raises(ValueError, match="update needs params, got params=None"):
            opt.update(params, state)
        with pytest.raises(ValueError, match=r"grads have pytree structure .*'c'.* but params "
                                             r"has structure .*'b'"):
            opt.update(other, state, params)
    state = sf.schedule_free_sgd().init(params)
    with pytest.raises(ValueError, match=r"params have pytree structure .*'c'.* but z has"):
        sf.schedule_free_eval_params(state, other)
    with pytest.raises(ValueError, match="needs the ScheduleFreeState .* got ProdigyState"):
        sf.schedule_free_eval_params(lf.prodigy().init(params), params)
