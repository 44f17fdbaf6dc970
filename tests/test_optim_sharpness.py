"""lab.optim.sharpness (SAM, Sophia) against optax.contrib, step for step, plus properties.

Both methods need the objective, not just a gradient sequence, so the table runs its own
scanned loop (one compiled program per optimizer) on two smooth objectives:

(a) the mixed pytree of tests/test_optim_equivalence.py (scalar, vector, matrix, nested
    dict) under ``sum_l c_l sum log cosh(p_l - t_l) + 0.05 (sum p)^2`` with per-leaf
    scales ``c_l`` from 0.1 to 10, in float64, and
(b) the 64-16-10 tanh MLP on the first 256 digits (full batch), float64 and float32.

Each row runs 200 steps; params and every state leaf are compared at every step
(tests/helpers.py tolerances: 1e-10 relative in float64, 1e-5 in float32).  As in the
shared harness, on the MLP in float32 the reference steps from *our* params each step
(same gradient, its own state), because float32 training dynamics amplify last-bit
differences of fused code; elsewhere both trajectories run free.  Sophia gets
``obj_fn=`` (optax's keyword), SAM gets ``grad_fn=`` (used by the opaque rows only).
"""
import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest
from jax import lax

import lab.optim as lo
from lab.data import load_digits
from lab.optim import sharpness
from tests.helpers import assert_tree_allclose
from tests.test_optim_equivalence import (FAST_COMPILE, comparable_leaves, matrices_only,
                                          mixed_problem)

STEPS = 200


@functools.lru_cache(maxsize=None)
def mixed_objective(dtype):
    params, _ = mixed_problem(dtype)
    scales = {"scalar": 0.1, "vector": 1.0, "matrix": 10.0, "nested": {"deeper": {"m": 0.1}}}
    rng = np.random.default_rng(5)
    targets = jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), dtype), params)

    def loss(p):
        p = lax.optimization_barrier(p)  # keep each run's arithmetic its own (see below)
        fit = jax.tree.map(lambda x, t, c: c * jnp.sum(jnp.log(jnp.cosh(x - t))), p, targets,
                           scales)
        total = sum(jnp.sum(x) for x in jax.tree.leaves(p))
        return sum(jax.tree.leaves(fit)) + 0.05 * total**2

    return params, loss


@functools.lru_cache(maxsize=None)
def mlp_objective(dtype):
    x, y = load_digits()
    x, y = jnp.asarray(np.asarray(x[:256]), dtype), jnp.asarray(y[:256])
    rng = np.random.default_rng(1)
    params = {"w1": jnp.asarray(rng.standard_normal((64, 16)) / 8, dtype),
              "b1": jnp.zeros(16, dtype),
              "w2": jnp.asarray(rng.standard_normal((16, 10)) / 4, dtype),
              "b2": jnp.zeros(10, dtype)}

    def loss(p):
        # barriers stop XLA merging the matmuls of different runs (they share x)
        p, x_own = lax.optimization_barrier((p, x))
        logits = jnp.tanh(x_own @ p["w1"] + p["b1"][None]) @ p["w2"] + p["b2"][None]
        log_probs = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
        return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))

    return params, loss


OBJECTIVES = {"mixed": mixed_objective, "mlp": mlp_objective}
CASES = [("mixed", "float64"), ("mlp", "float64"), ("mlp", "float32")]
SCHEDULE = lo.exponential_decay(0.01, 40, 0.5)  # one lab schedule for both libraries

LAB = SimpleNamespace(sgd=lo.sgd, adam=lo.adam, adamw=lo.adamw, chain=lo.chain,
                      normalize=sharpness.normalize, sam=sharpness.sam, sophia=sharpness.sophia,
                      hutchinson=sharpness.hutchinson_estimator_diag_hessian)
OPTAX = SimpleNamespace(sgd=optax.sgd, adam=optax.adam, adamw=optax.adamw, chain=optax.chain,
                        normalize=optax.contrib.normalize, sam=optax.contrib.sam,
                        sophia=optax.contrib.sophia,
                        hutchinson=lambda seed: optax.contrib.hutchinson_estimator_diag_hessian(
                            jax.random.PRNGKey(seed)))

# (label, build(library, params)); the same code builds the lab optimizer and its twin
SOPHIA_ROWS = [
    ("defaults", lambda L, p: L.sophia(0.01)),
    ("knobs", lambda L, p: L.sophia(SCHEDULE, b1=0.9, b2=0.95, gamma=0.05, clip_threshold=0.5,
                                    update_interval=3, weight_decay=0.01,
                                    weight_decay_mask=matrices_only(p),
                                    hessian_diagonal_fn=L.hutchinson(7))),
    ("unclipped", lambda L, p: L.sophia(1e-3, eps=0.1, clip_threshold=None, update_interval=1,
                                        weight_decay=0.0, hessian_diagonal_fn=L.hutchinson(3))),
]
SAM_ROWS = [
    ("paper", lambda L, p: L.sam(L.sgd(0.05), L.chain(L.normalize(), L.sgd(0.05)))),
    ("adam, 2 ascent steps with momentum, no reset",
     lambda L, p: L.sam(L.adam(0.01), L.chain(L.normalize(), L.sgd(0.02, momentum=0.9)),
                        sync_period=3, reset_state=False)),
    ("opaque adamw", lambda L, p: L.sam(L.adamw(SCHEDULE, weight_decay=0.1),
                                        L.chain(L.normalize(), L.sgd(0.05)), opaque_mode=True)),
    ("opaque, 2 ascent steps, no reset",
     lambda L, p: L.sam(L.sgd(0.05, momentum=0.9),
                        L.chain(L.normalize(), L.sgd(0.05, momentum=0.5)), sync_period=3,
                        reset_state=False, opaque_mode=True)),
]


def run_table(rows, keyword):
    """Every row on every case, lab and optax side by side, in one scan of STEPS steps.
    ``keyword`` names the extra argument (``obj_fn`` or ``grad_fn``).  Returns
    ``{case: [(lab params, lab state leaves, ref params, ref state leaves)]}`` stacked
    over the steps."""
    setups = {}
    for problem, dtype in CASES:
        params0, loss = OBJECTIVES[problem](jnp.dtype(dtype))
        ours = [build(LAB, params0) for _, build in rows]
        with jax.numpy_dtype_promotion("standard"):  # optax mixes floats and int32 counts
            refs = [build(OPTAX, params0) for _, build in rows]
        forced = problem == "mlp" and dtype == "float32"
        setups[f"{problem}/{dtype}"] = (params0, loss, ours, refs, forced)

    def extra(loss):
        if keyword == "obj_fn":
            return {"obj_fn": loss}
        return {"grad_fn": lambda p, i: jax.grad(loss)(p)}

    def init():
        carry = {}
        for case, (params0, _, ours, refs, _) in setups.items():
            with jax.numpy_dtype_promotion("standard"):
                ref_states = [r.init(params0) for r in refs]
            carry[case] = [(params0, o.init(params0), params0, s) for o, s in zip(ours, ref_states)]
        return carry

    def step(carry, _):
        new_carry, record = {}, {}
        for case, (_, loss, ours, refs, forced) in setups.items():
            new_carry[case], record[case] = [], []
            for opt, ref, (lp, ls, rp, rs) in zip(ours, refs, carry[case]):
                with jax.numpy_dtype_promotion("standard"):
                    start = lp if forced else rp
                    updates, rs = ref.update(jax.grad(loss)(start), rs, start, **extra(loss))
                    rp = optax.apply_updates(start, updates)
                updates, ls = opt.update(jax.grad(loss)(lp), ls, lp, **extra(loss))
                lp = lo.apply_updates(lp, updates)
                new_carry[case].append((lp, ls, rp, rs))
                record[case].append((lp, comparable_leaves(ls), rp, comparable_leaves(rs)))
        return new_carry, record

    run = jax.jit(lambda: lax.scan(step, init(), None, length=STEPS)[1],
                  compiler_options=FAST_COMPILE)
    return run()


def check_table(rows, results_by_case, name):
    for case, results in results_by_case.items():
        dtype = jnp.dtype(case.split("/")[1])
        for (label, _), (lp, ls, rp, rs) in zip(rows, results):
            label = f"{name} {label} on {case}"
            assert all(x.dtype == dtype for x in jax.tree.leaves(lp)), label
            assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(lp)), label
            moved = max(float(jnp.max(jnp.abs(x[-1] - x[0]))) for x in jax.tree.leaves(lp))
            assert moved > 1e-3, f"{label}: params hardly moved ({moved})"
            assert len(ls) == len(rs), f"{label}: state has {len(ls)} leaves, reference {len(rs)}"
            assert_tree_allclose(lp, rp, err_msg=f"{label}: params")
            assert_tree_allclose(ls, rs, err_msg=f"{label}: state")


def test_sophia_matches_optax_every_step():
    check_table(SOPHIA_ROWS, run_table(SOPHIA_ROWS, "obj_fn"), "sophia")


def test_sam_matches_optax_every_step():
    check_table(SAM_ROWS, run_table(SAM_ROWS, "grad_fn"), "sam")


def test_sharpness_aware_in_a_training_loop_is_textbook_sam():
    """Foret et al.'s Algorithm 1 written out, against both modes of sharpness_aware."""
    params, loss = mixed_objective(jnp.dtype("float64"))
    grad, lr, rho, steps = jax.grad(loss), 0.05, 0.05, 30
    add = lambda a, b, s: jax.tree.map(lambda x, y: x + s * y, a, b)

    def textbook(p, _):
        g = grad(p)
        norm = jnp.sqrt(sum(jnp.sum(y**2) for y in jax.tree.leaves(g)))
        e = jax.tree.map(lambda x: rho * x / norm, g)
        p = add(p, grad(add(p, e, 1.0)), -lr)
        return p, p

    def train(opt, calls, **extra):  # the ordinary loop: gradient, update, apply
        def step(carry, _):
            p, s = carry
            updates, s = opt.update(grad(p), s, p, **extra)
            p = lo.apply_updates(p, updates)
            return (p, s), p
        return lax.scan(step, (params, opt.init(params)), None, length=calls)[1]

    want = jax.jit(lambda: lax.scan(textbook, params, None, length=steps)[1])()
    transparent = jax.jit(lambda: train(sharpness.sharpness_aware(lo.sgd(lr), rho), 2 * steps))()
    opaque = jax.jit(lambda: train(sharpness.sharpness_aware(lo.sgd(lr), rho, opaque_mode=True),
                                   steps, grad_fn=lambda p, i: grad(p)))()
    assert_tree_allclose(jax.tree.map(lambda x: x[1::2], transparent), want)
    assert_tree_allclose(opaque, want)
    assert float(loss(jax.tree.map(lambda x: x[-1], want))) < 0.5 * float(loss(params))
    # the odd calls leave the caller at the perturbed point p + e, at distance rho
    step = jax.tree.map(lambda x, p: x[0] - p, transparent, params)
    assert abs(float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(step)))) - rho) < 1e-12


def test_opaque_sam_averages_over_batch_axis_name_as_optax():
    """``batch_axis_name``: the ascent-point gradients are ``pmean``-ed over a named axis
    (here a ``vmap`` axis standing in for devices holding different batches)."""
    params, loss = mixed_objective(jnp.dtype("float64"))
    weights = jnp.array([0.5, 1.0, 2.0])  # three "devices", three different objectives

    def one_step(opt, w):
        grad = jax.grad(lambda p: w * loss(p))
        updates, state = opt.update(grad(params), opt.init(params), params,
                                    grad_fn=lambda p, i: grad(p))
        return updates, comparable_leaves(state)

    ours = sharpness.sam(lo.sgd(0.01), lo.chain(sharpness.normalize(), lo.sgd(0.05)),
                         sync_period=3, opaque_mode=True, batch_axis_name="devices")
    ref = optax.contrib.sam(optax.sgd(0.01), optax.chain(optax.contrib.normalize(),
                                                          optax.sgd(0.05)),
                            sync_period=3, opaque_mode=True, batch_axis_name="devices")
    got = jax.jit(jax.vmap(lambda w: one_step(ours, w), axis_name="devices"))(weights)
    with jax.numpy_dtype_promotion("standard"):
        want = jax.jit(jax.vmap(lambda w: one_step(ref, w), axis_name="devices"))(weights)
    assert_tree_allclose(got, want)
    # the outer (SGD) step is the same on every device: it used the averaged gradient
    # (without the pmean it would scale with each device's weight)
    for leaf in jax.tree.leaves(got[0]):
        np.testing.assert_allclose(leaf[0], leaf[2], rtol=1e-12)
    alone = jax.jit(lambda: one_step(sharpness.sam(
        lo.sgd(0.01), lo.chain(sharpness.normalize(), lo.sgd(0.05)), sync_period=3,
        opaque_mode=True), jnp.mean(weights)))()
    assert_tree_allclose(jax.tree.map(lambda x: x[0], got[0]), alone[0])


def test_hutchinson_estimates_the_hessian_diagonal():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((6, 6))
    a = jnp.asarray(a @ a.T)
    quadratic = lambda x: 0.5 * x["v"] @ a @ x["v"]
    params = {"v": jnp.asarray(rng.standard_normal(6))}

    def estimate(key, matrix):
        est = sharpness.hutchinson_estimator_diag_hessian(key)
        out, state = est.update(params, est.init(params), params,
                                obj_fn=lambda x: 0.5 * x["v"] @ matrix @ x["v"])
        return out["v"], jax.random.key_data(state.key)

    keys = jax.random.split(jax.random.key(0), 4000)
    exact, _ = jax.jit(jax.vmap(lambda k: estimate(k, jnp.diag(jnp.diag(a)))))(keys)
    np.testing.assert_allclose(exact, jnp.broadcast_to(jnp.diag(a), exact.shape), rtol=1e-12)
    samples, next_keys = jax.jit(jax.vmap(lambda k: estimate(k, a)))(keys)
    assert len(np.unique(np.asarray(next_keys), axis=0)) == 4000  # each key moves on
    spread = jnp.sqrt(jnp.sum(a**2, axis=1) - jnp.diag(a) ** 2)  # std of one sample
    assert jnp.all(jnp.abs(samples.mean(0) - jnp.diag(a)) < 4 * spread / np.sqrt(4000))
    value_fn_out = sharpness.hutchinson_estimator_diag_hessian().update(
        params, sharpness.HutchinsonState(jax.random.key(0)), params, value_fn=quadratic)[0]
    obj_fn_out = sharpness.hutchinson_estimator_diag_hessian().update(
        params, sharpness.HutchinsonState(jax.random.key(0)), params, obj_fn=quadratic)[0]
    assert_tree_allclose(value_fn_out, obj_fn_out)


def test_bad_inputs_raise_naming_the_argument():
    bad = [(dict(learning_rate=-1.0), "learning_rate"), (dict(b1=1.0), "b1"),
           (dict(b2=-0.1), "b2"), (dict(eps=-1.0), "eps"), (dict(gamma=-0.5), "gamma"),
           (dict(weight_decay=-1.0), "weight_decay"), (dict(clip_threshold=0.0), "clip_threshold"),
           (dict(update_interval=0), "update_interval"),
           (dict(update_interval=2.5), "update_interval")]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=name):
            sharpness.sophia(**{"learning_rate": 0.01, **kwargs})
    with pytest.raises(ValueError, match="sync_period"):
        sharpness.sam(lo.sgd(0.1), lo.sgd(0.1), sync_period=0)
    with pytest.raises(ValueError, match="sync_period"):
        sharpness.sam(lo.sgd(0.1), lo.sgd(0.1), sync_period=1.5)
    with pytest.raises(ValueError, match="rho"):
        sharpness.sharpness_aware(lo.sgd(0.1), rho=-0.1)

    params, loss = mixed_objective(jnp.dtype("float64"))
    grads = jax.grad(loss)(params)
    wrong = {k: v for k, v in grads.items() if k != "scalar"}
    opt = sharpness.sophia(0.01)
    state = opt.init(params)
    with pytest.raises(TypeError, match="value_fn"):
        opt.update(grads, state, params)
    with pytest.raises(ValueError, match="not both"):
        opt.update(grads, state, params, obj_fn=loss, value_fn=loss)
    with pytest.raises(ValueError, match="pytree structure"):
        opt.update(wrong, state, params, obj_fn=loss)
    for mode in (False, True):
        opt = sharpness.sharpness_aware(lo.sgd(0.1), opaque_mode=mode)
        with pytest.raises(ValueError, match="pytree structure"):
            opt.update(wrong, opt.init(params), params, grad_fn=lambda p, i: grads)
    with pytest.raises(TypeError, match="grad_fn"):
        opt.update(grads, opt.init(params), params)


def test_float32_is_kept():
    params, loss = mixed_objective(jnp.dtype("float32"))
    for opt, extra in ((sharpness.sophia(0.01, update_interval=2), {"obj_fn": loss}),
                       (sharpness.sharpness_aware(lo.adam(0.01)), {}),
                       (sharpness.sharpness_aware(lo.adam(0.01), opaque_mode=True),
                        {"grad_fn": lambda p, i: jax.grad(loss)(p)})):
        step = jax.jit(lambda p, state, opt=opt, extra=extra: opt.update(
            jax.grad(loss)(p), state, p, **extra), compiler_options=FAST_COMPILE)
        p, state = params, opt.init(params)
        for _ in range(3):  # strict promotion (conftest) raises on any float64 mixing
            updates, state = step(p, state)
            p = lo.apply_updates(p, updates)
        floats = [x for x in jax.tree.leaves((updates, state))
                  if jnp.issubdtype(x.dtype, jnp.floating)]
        assert len(floats) >= 8 and all(x.dtype == jnp.float32 for x in floats)


def test_vmap_over_hyperparameters_compiles_once_and_matches_separate_runs():
    params, loss = mixed_objective(jnp.dtype("float64"))
    builders = {
        "sophia": lambda a, b: sharpness.sophia(a, b1=b, update_interval=3),
        "sam": lambda a, b: sharpness.sam(lo.sgd(a), lo.chain(sharpness.normalize(), lo.sgd(b))),
    }
    values = (jnp.array([0.01, 0.02, 0.05]), jnp.array([0.5, 0.9, 0.965]))
    for name, builder in builders.items():
        traces = []

        def final_params(a, b, builder=builder, traces=traces):
            traces.append(1)
            opt = builder(a, b)

            def step(carry, _):
                p, s = carry
                updates, s = opt.update(jax.grad(loss)(p), s, p, obj_fn=loss)
                return (lo.apply_updates(p, updates), s), None
            return lax.scan(step, (params, opt.init(params)), None, length=12)[0][0]

        sweep = jax.jit(jax.vmap(final_params))
        batched = sweep(*values)
        batched_again = sweep(values[0] * 2, values[1])
        assert len(traces) == 1, name  # one trace for two sweeps: hyperparameters are data
        assert not np.allclose(batched["matrix"], batched_again["matrix"]), name
        single = jax.jit(final_params)
        for i in range(3):
            assert_tree_allclose(jax.tree.map(lambda x: x[i], batched),
                                 single(values[0][i], values[1][i]), err_msg=name)


def test_works_inside_optax_chain():
    params, loss = mixed_objective(jnp.dtype("float64"))
    clip = optax.clip_by_global_norm(1.0)
    pairs = {
        "sophia": (optax.chain(clip, optax.GradientTransformationExtraArgs(
            *sharpness.sophia(0.01, update_interval=2))),
                   optax.chain(clip, optax.contrib.sophia(0.01, update_interval=2))),
        "sam": (optax.chain(clip, sharpness.sharpness_aware(lo.sgd(0.05))),
                optax.chain(clip, optax.contrib.sam(optax.sgd(0.05), optax.chain(
                    optax.contrib.normalize(), optax.sgd(0.05))))),
    }
    for name, (ours, ref) in pairs.items():
        extra = {"obj_fn": loss} if name == "sophia" else {}  # optax's sam takes no obj_fn

        def run(opt, extra=extra):
            def step(carry, _):
                p, s = carry
                updates, s = opt.update(jax.grad(loss)(p), s, p, **extra)
                p = optax.apply_updates(p, updates)
                return (p, s), (p, comparable_leaves(s))
            with jax.numpy_dtype_promotion("standard"):
                return jax.jit(lambda: lax.scan(step, (params, opt.init(params)), None,
                                                length=20)[1], compiler_options=FAST_COMPILE)()
        got, want = run(ours), run(ref)
        assert len(got[1]) == len(want[1]) > 0, name
        assert_tree_allclose(got, want, err_msg=name)


def test_sam_outer_step_ignores_a_non_finite_ascent_branch():
    """The one departure from optax (docs/conventions.md): optax's SAM blends the two
    candidate updates arithmetically (``c x + (1 - c) y``), so a NaN in the branch not
    taken poisons the step; the lab selects.  Here the gradient at the perturbed point
    is 0, so the (unused) normalised ascent is 0/0 on the outer call."""
    params = {"w": jnp.ones(3)}
    grads = [{"w": jnp.array([1.0, 2.0, 3.0])}, {"w": jnp.zeros(3)}]
    ours = sharpness.sharpness_aware(lo.sgd(0.1), rho=0.05)
    ref = optax.contrib.sam(optax.sgd(0.1), optax.chain(optax.contrib.normalize(), optax.sgd(0.05)))
    finals = []
    for opt in (ours, ref):
        p, state = params, opt.init(params)
        with jax.numpy_dtype_promotion("standard"):
            for g in grads:
                updates, state = opt.update(g, state, p)
                p = optax.apply_updates(p, updates)
        finals.append(p["w"])
    np.testing.assert_array_equal(finals[0], np.ones(3))  # back at the cache: w - 0.1 * 0
    assert np.isnan(np.asarray(finals[1])).all()
