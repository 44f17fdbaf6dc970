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
from tests.optim_checks import (Lane, assert_kept, bad_input_test, check_every_step,
                                check_inside_optax_chain, check_sweep, float_dtypes, last_step,
                                run_lanes, train, trajectory)
from tests.test_optim_equivalence import (FAST_COMPILE, comparable_leaves, matrices_only,
                                          mixed_problem, mlp_problem)


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
    params, _ = mlp_problem(dtype)  # the harness's MLP and its starting point
    x, y = load_digits()
    x, y = jnp.asarray(np.asarray(x[:256]), dtype), jnp.asarray(y[:256])

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
    """Every row on every case, lab and optax side by side, in one scan of 200 steps.
    ``keyword`` names the extra argument (``obj_fn`` or ``grad_fn``).  Returns
    ``{case: [(lab params, lab state leaves, ref params, ref state leaves)]}`` stacked
    over the steps."""
    lanes = []
    for problem, dtype in CASES:
        params0, loss = OBJECTIVES[problem](jnp.dtype(dtype))
        extra = ({"obj_fn": loss} if keyword == "obj_fn"
                 else {"grad_fn": lambda p, i, loss=loss: jax.grad(loss)(p)})
        inputs = lambda p, t, loss=loss, extra=extra: (jax.grad(loss)(p), extra)  # noqa: E731
        for _, build in rows:
            with jax.numpy_dtype_promotion("standard"):  # optax mixes floats and int32 counts
                reference = build(OPTAX, params0)
            lanes.append(Lane(f"{problem}/{dtype}", build(LAB, params0), reference, params0,
                              inputs, forced=problem == "mlp" and dtype == "float32"))
    return run_lanes(lanes)


def check_table(rows, results, name):
    check_every_step(rows, results, label=lambda row: f"{name} {row[0]}", moved=1e-3)


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

    # the ordinary loop: gradient, update, apply
    want = jax.jit(lambda: lax.scan(textbook, params, None, length=steps)[1])()
    transparent = jax.jit(lambda: trajectory(sharpness.sharpness_aware(lo.sgd(lr), rho), params,
                                             2 * steps, loss, keywords=()))()
    opaque = jax.jit(lambda: trajectory(sharpness.sharpness_aware(
        lo.sgd(lr), rho, opaque_mode=True), params, steps, loss, keywords=("grad_fn",)))()
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


BAD = [(sharpness.sophia, {"learning_rate": 0.01, **kwargs}, name) for kwargs, name in [
    (dict(learning_rate=-1.0), "learning_rate"), (dict(b1=1.0), "b1"), (dict(b2=-0.1), "b2"),
    (dict(eps=-1.0), "eps"), (dict(gamma=-0.5), "gamma"),
    (dict(weight_decay=-1.0), "weight_decay"), (dict(clip_threshold=0.0), "clip_threshold"),
    (dict(update_interval=0), "update_interval"), (dict(update_interval=2.5), "update_interval")]]
BAD += [(sharpness.sam, dict(optimizer=lo.sgd(0.1), adv_optimizer=lo.sgd(0.1), sync_period=0),
         "sync_period"),
        (sharpness.sam, dict(optimizer=lo.sgd(0.1), adv_optimizer=lo.sgd(0.1), sync_period=1.5),
         "sync_period"),
        (sharpness.sharpness_aware, dict(optimizer=lo.sgd(0.1), rho=-0.1), "rho")]

test_bad_hyperparameters_raise_naming_the_argument = bad_input_test(BAD)


def test_bad_updates_raise_naming_the_problem():
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
    for opt, keywords in ((sharpness.sophia(0.01, update_interval=2), ("obj_fn",)),
                          (sharpness.sharpness_aware(lo.adam(0.01)), ()),
                          (sharpness.sharpness_aware(lo.adam(0.01), opaque_mode=True),
                           ("grad_fn",))):
        # strict promotion (conftest) raises on any float64 mixing
        updates, new_params, state = jax.jit(lambda opt=opt, keywords=keywords: last_step(
            opt, params, 3, loss, keywords), compiler_options=FAST_COMPILE)()
        assert_kept(params, updates, new_params)
        assert float_dtypes(state) == {jnp.dtype(jnp.float32)}
        assert len(jax.tree.leaves((updates, state))) >= 8


def test_vmap_over_hyperparameters_compiles_once_and_matches_separate_runs():
    params, loss = mixed_objective(jnp.dtype("float64"))
    builders = {
        "sophia": lambda a, b: sharpness.sophia(a, b1=b, update_interval=3),
        "sam": lambda a, b: sharpness.sam(lo.sgd(a), lo.chain(sharpness.normalize(), lo.sgd(b))),
    }
    for name, builder in builders.items():
        check_sweep(lambda a, b, builder=builder: train(builder(a, b), params, 12, loss,
                                                        ("obj_fn",))[0],
                    jnp.array([0.01, 0.02, 0.05]), jnp.array([0.5, 0.9, 0.965]))


def test_works_inside_optax_chain():
    params, loss = mixed_objective(jnp.dtype("float64"))
    check_inside_optax_chain([(optax.GradientTransformationExtraArgs(
        *sharpness.sophia(0.01, update_interval=2)), optax.contrib.sophia(
            0.01, update_interval=2))], params, loss, steps=20, keywords=("obj_fn",))
    check_inside_optax_chain([(sharpness.sharpness_aware(lo.sgd(0.05)), optax.contrib.sam(
        optax.sgd(0.05), optax.chain(optax.contrib.normalize(), optax.sgd(0.05))))],
        params, loss, steps=20, keywords=())  # optax's sam takes no obj_fn
