"""Properties of lab.optim beyond step-for-step equality with optax.

* the seeds' claims: heavy ball (EMA form) is rescaled SGD momentum, Adam with b1=0 is
  bias-corrected RMSProp, AdaGrad's step shrinks as 1/sqrt(sum of squares);
* structure and dtype kept, jit equals eager, vmap over learning rates equals a loop,
  a jitted step with a new learning rate does not recompile, hyperparameters traced;
* convergence on a quadratic and on Rosenbrock, with the tolerances in the tables;
* building blocks against optax; interop with optax.chain both ways;
* bad input: out-of-range Python hyperparameters, mismatched pytrees, NaN gradients;
* where lab departs from optax on purpose (adadelta's default, rprop's one-step lag).
"""
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

import lab.optim as lo
from lab.optim.base import accepts_extra_args
from tests.helpers import assert_tree_allclose

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_cpu_use_fusion_emitters": False}

# Every named optimizer built from one learning-rate-like value (polyak: its cap).
FACTORIES = {name: (lambda lr, name=name: getattr(lo, name)(lr)) for name in lo.OPTIMIZERS}
FACTORIES["noisy_sgd"] = lambda lr: lo.noisy_sgd(lr, key=0)
FACTORIES["polyak_sgd"] = lambda lr: lo.polyak_sgd(max_learning_rate=lr)


def tree_params(dtype=jnp.float64):
    return {"s": jnp.asarray(1.5, dtype), "v": jnp.asarray([1.0, -2.0, 0.5], dtype),
            "nested": {"m": jnp.asarray([[0.3, -0.7], [1.1, 0.2]], dtype)}}


def tree_loss(p):
    return 0.5 * p["s"] ** 2 + jnp.sum(p["v"] ** 2) + jnp.sum(jnp.cos(p["nested"]["m"]))


def train(opt, params, loss, steps):
    """``steps`` steps of ``opt`` on ``loss`` from ``params`` (traceable); final params."""
    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grads, state, params, value=value)
        return (lo.apply_updates(params, updates), state), None

    return lax.scan(step, (params, opt.init(params)), None, length=steps)[0][0]


# ------------------------------------------------------------------- seeds' claims


def random_grads(steps, key=0):
    rng = np.random.default_rng(key)
    return {"a": jnp.asarray(rng.standard_normal((steps, 3))),
            "b": jnp.asarray(100 * rng.standard_normal((steps, 2, 2)))}


def trajectory(opt, grads, steps):
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:], g.dtype), grads)

    def step(carry, g):
        params, state = carry
        updates, state = opt.update(g, state, params)
        params = lo.apply_updates(params, updates)
        return (params, state), (params, updates)

    return jax.jit(lambda: lax.scan(step, (params, opt.init(params)), grads)[1])()


def test_heavy_ball_is_sgd_momentum_with_rescaled_learning_rate():
    grads, (lr, beta) = random_grads(200), (0.1, 0.9)
    hb_params, _ = trajectory(lo.heavy_ball(lr, beta), grads, 200)
    sgd_params, _ = trajectory(lo.sgd(lr * (1 - beta), momentum=beta), grads, 200)
    assert_tree_allclose(hb_params, sgd_params)  # every step: leaves are stacked over steps


def test_adam_with_b1_zero_is_bias_corrected_rmsprop():
    grads = random_grads(200)
    adam_params, _ = trajectory(lo.adam(0.01, b1=0.0, b2=0.99, eps=1e-6), grads, 200)
    rms_params, _ = trajectory(lo.rmsprop(0.01, decay=0.99, eps=1e-6, eps_in_sqrt=False,
                                          bias_correction=True), grads, 200)
    assert_tree_allclose(adam_params, rms_params)


def test_adagrad_step_shrinks_as_inverse_root_of_sum_of_squares():
    lr, s0, eps, steps = 0.5, 0.1, 1e-7, 100
    g = jnp.asarray([1.0, -3.0, 0.01])
    _, updates = trajectory(lo.adagrad(lr, initial_accumulator_value=s0, eps=eps),
                            {"g": jnp.tile(g, (steps, 1))}, steps)
    t = jnp.arange(1, steps + 1, dtype=jnp.float64)[:, None]
    expected = -lr * g[None] / jnp.sqrt(s0 + t * g[None] ** 2 + eps)  # s after t steps
    assert_tree_allclose(updates["g"], expected)
    assert bool(jnp.all(jnp.abs(updates["g"][1:]) < jnp.abs(updates["g"][:-1])))
    # for g^2 >> s0 the step falls as 1/sqrt(t): step 100 is about a tenth of step 1
    np.testing.assert_allclose(updates["g"][-1, 1] / updates["g"][0, 1], 0.1, rtol=1e-2)


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("name", lo.OPTIMIZERS)
def test_structure_and_float32_kept_and_jit_equals_eager(name):
    params = tree_params(jnp.float32)
    opt = FACTORIES[name](0.01)

    def two_steps(params):
        state = opt.init(params)
        for _ in range(2):
            value, grads = jax.value_and_grad(tree_loss)(params)
            updates, state = opt.update(grads, state, params, value=value)
            params = lo.apply_updates(params, updates)
        return updates, params, state

    updates, new_params, state = two_steps(params)
    structure = jax.tree.structure(params)
    assert jax.tree.structure(updates) == structure and jax.tree.structure(new_params) == structure
    for tree in (updates, new_params):
        assert {x.dtype for x in jax.tree.leaves(tree)} == {jnp.dtype(jnp.float32)}
    float_leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert {x.dtype for x in float_leaves} <= {jnp.dtype(jnp.float32)}
    assert_tree_allclose(jax.jit(two_steps, compiler_options=FAST_COMPILE)(params)[:2],
                         (updates, new_params))


def test_vmap_over_learning_rates_equals_a_loop():
    params, lrs = tree_params(), jnp.asarray([0.003, 0.01, 0.03])

    def all_optimizers(lr):  # every optimizer is built from the (traced) learning rate
        return {name: train(make(lr), params, tree_loss, 20) for name, make in FACTORIES.items()}

    swept = jax.jit(jax.vmap(all_optimizers), compiler_options=FAST_COMPILE)(lrs)
    one = jax.jit(all_optimizers, compiler_options=FAST_COMPILE)
    looped = jax.tree.map(lambda *xs: jnp.stack(xs), *[one(lr) for lr in lrs])
    assert_tree_allclose(swept, looped)
    # and the sweep is a sweep: different learning rates give different results
    assert not np.allclose(swept["adam"]["v"][0], swept["adam"]["v"][2])


def test_jitted_training_with_a_new_learning_rate_does_not_recompile():
    traces = []

    @jax.jit
    def fit(params, learning_rate):
        traces.append(learning_rate)  # runs only while tracing
        return train(lo.adam(learning_rate), params, tree_loss, 10)

    first = fit(tree_params(), 0.01)
    second = fit(tree_params(), 0.05)
    assert len(traces) == 1 and fit._cache_size() == 1  # one trace, one executable
    third = fit(tree_params(), jnp.asarray(0.1))  # an array learning rate: still no retrace
    assert len(traces) == 1
    assert not np.allclose(first["v"], second["v"]) and not np.allclose(second["v"], third["v"])


def test_every_hyperparameter_may_be_traced():
    hyper = dict(learning_rate=0.02, b1=0.8, b2=0.99, eps=1e-6, eps_root=1e-9, weight_decay=0.1)

    def fit(h):
        return {
            "adamw": train(lo.adamw(**h), tree_params(), tree_loss, 10),
            "radam": train(lo.radam(h["learning_rate"], h["b1"], h["b2"], h["eps"],
                                    h["eps_root"]), tree_params(), tree_loss, 10),
            "sgd": train(lo.sgd(h["learning_rate"], momentum=h["b1"], nesterov=True),
                         tree_params(), tree_loss, 10),
            "lion": train(lo.lion(h["learning_rate"], h["b1"], h["b2"],
                                  weight_decay=h["weight_decay"]), tree_params(), tree_loss, 10),
        }

    traced = jax.jit(fit, compiler_options=FAST_COMPILE)(jax.tree.map(jnp.asarray, hyper))
    assert_tree_allclose(traced, fit(hyper))


# Convergence from x0 = (1, -1) on f(x) = (x1^2 + 10 x2^2) / 2 in 500 steps: |x|_inf < tol.
# Constant-step sign methods stall at the step size; noise, AdaDelta and the trust
# ratio methods are slow, hence their looser tolerances.
DECAY = lo.exponential_decay(0.1, 100, 0.5)
QUADRATIC = [
    ("sgd", lo.sgd(0.1), 1e-12), ("sgd_nesterov", lo.sgd(0.05, 0.9, nesterov=True), 1e-12),
    ("heavy_ball", lo.heavy_ball(0.5, 0.9), 1e-10), ("adagrad", lo.adagrad(0.5), 1e-12),
    ("rmsprop", lo.rmsprop(lo.exponential_decay(0.05, 100, 0.5)), 1e-2),
    ("adadelta", lo.adadelta(1.0), 1e-1), ("adam", lo.adam(DECAY), 1e-10),
    ("adamw", lo.adamw(DECAY, weight_decay=0.0), 1e-10), ("amsgrad", lo.amsgrad(DECAY), 1e-5),
    ("adamax", lo.adamax(DECAY), 1e-6), ("nadam", lo.nadam(DECAY), 1e-10),
    ("nadamw", lo.nadamw(DECAY, weight_decay=0.0), 1e-10), ("radam", lo.radam(DECAY), 1e-6),
    ("adabelief", lo.adabelief(DECAY), 1e-10), ("yogi", lo.yogi(DECAY), 1e-10),
    ("lion", lo.lion(DECAY, weight_decay=0.0), 1e-2), ("lamb", lo.lamb(DECAY), 1e-5),
    ("lars", lo.lars(DECAY, trust_coefficient=1.0), 1e-3),
    ("sign_sgd", lo.sign_sgd(DECAY), 1e-3), ("signum", lo.signum(DECAY), 1e-2),
    ("rprop", lo.rprop(0.1), 1e-5), ("noisy_sgd", lo.noisy_sgd(0.1, key=0), 1e-1),
    ("polyak_sgd", lo.polyak_sgd(), 1e-6),
]
# Rosenbrock f = (1 - x)^2 + 100 (y - x^2)^2 from (-1, 1) in 5000 steps: |x - (1, 1)|_inf < tol.
SLOW = lo.exponential_decay(0.05, 500, 0.5)
ROSENBROCK = [
    ("sgd_momentum", lo.sgd(1e-3, momentum=0.9), 1e-6),
    ("sgd_nesterov", lo.sgd(1e-3, momentum=0.9, nesterov=True), 1e-6),
    ("adam", lo.adam(SLOW), 1e-4), ("adabelief", lo.adabelief(SLOW), 1e-4),
    ("lion", lo.lion(lo.exponential_decay(0.01, 500, 0.5), weight_decay=0.0), 1e-4),
    ("rprop", lo.rprop(0.01), 1e-2),
]


def test_convergence_on_a_quadratic():
    curvature = jnp.asarray([1.0, 10.0])
    quadratic = lambda x: 0.5 * jnp.sum(curvature * x * x)
    x0 = jnp.asarray([1.0, -1.0])
    run = jax.jit(lambda: [train(opt, x0, quadratic, 500) for _, opt, _ in QUADRATIC],
                  compiler_options=FAST_COMPILE)
    errors = [float(jnp.max(jnp.abs(x))) for x in run()]
    slow = {name: (err, tol) for (name, _, tol), err in zip(QUADRATIC, errors) if not err < tol}
    assert not slow, f"not converged (error, tolerance): {slow}"


def test_convergence_on_rosenbrock():
    rosenbrock = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
    x0 = jnp.asarray([-1.0, 1.0])
    run = jax.jit(lambda: [train(opt, x0, rosenbrock, 5000) for _, opt, _ in ROSENBROCK],
                  compiler_options=FAST_COMPILE)
    errors = [float(jnp.max(jnp.abs(x - 1.0))) for x in run()]
    slow = {name: (err, tol) for (name, _, tol), err in zip(ROSENBROCK, errors) if not err < tol}
    assert not slow, f"not converged (error, tolerance): {slow}"


# -------------------------------------------------------------- blocks and interop

MASK = {"s": False, "v": True, "nested": True}  # a prefix of the params' structure
BLOCKS = [  # (id, lab block, optax block)
    ("clip", lo.clip(0.5), optax.clip(0.5)),
    ("clip_by_global_norm", lo.clip_by_global_norm(1.0), optax.clip_by_global_norm(1.0)),
    ("add_decayed_weights_masked", lo.add_decayed_weights(0.1, MASK),
     optax.add_decayed_weights(0.1, MASK)),
    ("scale_by_schedule", lo.scale_by_schedule(DECAY), optax.scale_by_schedule(DECAY)),
    ("trace_nesterov", lo.trace(0.9, nesterov=True), optax.trace(0.9, nesterov=True)),
    ("ema_debiased", lo.ema(0.9), optax.ema(0.9)),
    ("scale_by_trust_ratio", lo.scale_by_trust_ratio(1e-3, 0.5, 1e-8),
     optax.scale_by_trust_ratio(1e-3, 0.5, 1e-8)),
    ("add_noise", lo.add_noise(0.1, 0.55, 3), optax.add_noise(0.1, 0.55, 3)),
    ("masked_adam", lo.masked(lo.adam(0.1), MASK), optax.masked(optax.adam(0.1), MASK)),
    ("apply_if_finite", lo.apply_if_finite(lo.sgd(0.1, 0.9), 2),
     optax.apply_if_finite(optax.sgd(0.1, 0.9), 2)),
    ("optax_chain_of_lab", optax.chain(lo.adam(0.1), optax.clip_by_global_norm(0.5)),
     optax.chain(optax.adam(0.1), optax.clip_by_global_norm(0.5))),
    ("lab_chain_of_optax", lo.chain(optax.clip_by_global_norm(0.5), lo.sgd(0.1, 0.9)),
     optax.chain(optax.clip_by_global_norm(0.5), optax.sgd(0.1, 0.9))),
    ("lab_chain_extra_args", lo.chain(optax.scale(2.0), optax.polyak_sgd(), lo.scale(0.5)),
     optax.chain(optax.scale(2.0), optax.polyak_sgd(), optax.scale(0.5))),
    ("optax_chain_extra_args",
     optax.chain(optax.GradientTransformationExtraArgs(*lo.polyak_sgd()), lo.clip(0.1)),
     optax.chain(optax.polyak_sgd(), optax.clip(0.1))),
]


def test_building_blocks_and_mixed_chains_match_optax():
    grads = {"s": jnp.asarray(np.linspace(-2, 2, 30)),
             "v": jnp.asarray(np.cos(np.arange(90.0))).reshape(30, 3),
             "nested": {"m": jnp.asarray(np.sin(np.arange(120.0))).reshape(30, 2, 2)}}
    grads["v"] = grads["v"].at[7, 1].set(jnp.nan)  # apply_if_finite skips step 8

    def run(tx, standard):
        def step(carry, g):
            params, state = carry
            with jax.numpy_dtype_promotion("standard" if standard else "strict"):
                extra = {"value": jnp.asarray(1.5)} if accepts_extra_args(tx) else {}
                updates, state = tx.update(g, state, params, **extra)
            params = jax.tree.map(lambda p, u: p + u.astype(p.dtype), params, updates)
            return (params, state), (params, jax.tree.leaves(state))
        with jax.numpy_dtype_promotion("standard" if standard else "strict"):
            state = tx.init(tree_params())
        return lax.scan(step, (tree_params(), state), grads)[1]

    def compare_all():
        return [(run(ours, False), run(ref, True)) for _, ours, ref in BLOCKS]

    results = jax.jit(compare_all, compiler_options=FAST_COMPILE)()
    for (name, _, _), ((ours_params, ours_state), (ref_params, ref_state)) in zip(BLOCKS, results):
        ours_state, ref_state = key_data(ours_state), key_data(ref_state)
        finite = np.isfinite(np.asarray(ref_params["v"])).all()
        assert finite == (name == "apply_if_finite"), name  # NaN spreads unless skipped
        assert_tree_allclose(ours_params, ref_params, err_msg=name)
        assert_tree_allclose(ours_state, ref_state, err_msg=name)


def key_data(leaves):
    return [jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
            for x in leaves]


def test_apply_if_finite_skips_and_counts_nan_steps():
    opt = lo.apply_if_finite(lo.adam(0.1), max_consecutive_errors=2)
    params = {"w": jnp.ones(2)}
    state = opt.init(params)
    bad = {"w": jnp.asarray([jnp.nan, 1.0])}
    for step in range(3):
        new_params = lo.apply_updates(params, opt.update(bad, state, params)[0])
        updates, state = opt.update(bad, state, params)
        if step < 2:  # skipped: no move, inner state untouched
            assert_tree_allclose(new_params, params)
            assert int(state.inner_state[0].count) == 0
    assert int(state.total_notfinite) == 3 and int(state.notfinite_count) == 3
    assert not bool(state.last_finite)
    assert np.isnan(np.asarray(updates["w"][0]))  # the third in a row is let through
    updates, state = opt.update({"w": jnp.ones(2)}, state, params)
    assert int(state.notfinite_count) == 0 and int(state.total_notfinite) == 3
    assert bool(state.last_finite) and np.isfinite(np.asarray(updates["w"][1]))


def test_nan_gradients_do_not_crash_plain_optimizers():
    params = tree_params()
    nan_grads = jax.tree.map(lambda p: jnp.full_like(p, jnp.nan), params)

    def all_updates():
        return {name: make(0.01).update(nan_grads, make(0.01).init(params), params,
                                        value=jnp.asarray(jnp.nan))[0]
                for name, make in FACTORIES.items()}

    for name, updates in jax.jit(all_updates, compiler_options=FAST_COMPILE)().items():
        assert jax.tree.structure(updates) == jax.tree.structure(params), name


# ----------------------------------------------------------------------- bad input

RANGE = "is outside its valid range"
BAD = [  # (factory, kwargs, the message: "where: name=value is outside its valid range ...")
    (lo.adam, dict(learning_rate=-0.1), rf"adam: learning_rate=-0.1 {RANGE} \[0, inf\)"),
    (lo.adam, dict(learning_rate=0.1, b1=1.0), rf"adam: b1=1.0 {RANGE} \[0, 1\)"),
    (lo.adamw, dict(learning_rate=0.1, b2=-0.5), rf"adamw: b2=-0.5 {RANGE} \[0, 1\)"),
    (lo.adam, dict(learning_rate=0.1, eps=-1e-8), rf"adam: eps=-1e-08 {RANGE} \[0, inf\)"),
    (lo.adam, dict(learning_rate=0.1, eps_root=float("nan")), rf"eps_root=nan {RANGE}"),
    (lo.sgd, dict(learning_rate=0.1, momentum=1.5), rf"sgd: momentum=1.5 {RANGE} \[0, 1\)"),
    (lo.heavy_ball, dict(learning_rate=0.1, beta=1), rf"heavy_ball: beta=1 {RANGE}"),
    (lo.rmsprop, dict(learning_rate=0.1, decay=2.0), rf"rmsprop: decay=2.0 {RANGE}"),
    (lo.adadelta, dict(rho=1.0), rf"adadelta: rho=1.0 {RANGE} \[0, 1\)"),
    (lo.adagrad, dict(learning_rate=0.1, eps=-1.0), rf"adagrad: eps=-1.0 {RANGE}"),
    (lo.lion, dict(learning_rate=0.1, weight_decay=-1e-3), rf"lion: weight_decay=-0.001 {RANGE}"),
    (lo.rprop, dict(learning_rate=0.1, eta_minus=1.5), rf"rprop: eta_minus=1.5 {RANGE} \(0, 1\]"),
    (lo.rprop, dict(learning_rate=0.1, eta_plus=0.5), rf"rprop: eta_plus=0.5 {RANGE} \[1, inf\)"),
    (lo.radam, dict(learning_rate=0.1, threshold=3.0), rf"radam: threshold=3.0 {RANGE} \[4, inf\)"),
    (lo.noisy_sgd, dict(learning_rate=0.1, eta=-1.0, key=0), rf"noisy_sgd: eta=-1.0 {RANGE}"),
    (lo.noisy_sgd, dict(learning_rate=0.1), r"add_noise: key must be a PRNG key or an int seed"),
    (lo.polyak_sgd, dict(variant="sps-"), r"variant must be 'sps' or 'sps\+', got 'sps-'"),
    (lo.clip_by_global_norm, dict(max_norm=-1.0), rf"clip_by_global_norm: max_norm=-1.0 {RANGE}"),
    (lo.apply_if_finite, dict(inner=lo.identity(), max_consecutive_errors=-1),
     rf"max_consecutive_errors=-1 {RANGE}"),
]


@pytest.mark.parametrize("factory,kwargs,message", BAD, ids=[m[:30] for _, _, m in BAD])
def test_out_of_range_python_hyperparameters_raise_naming_the_argument(factory, kwargs, message):
    with pytest.raises(ValueError, match=message):
        factory(**kwargs)


def test_arrays_and_tracers_are_not_range_checked():
    lo.adam(jnp.asarray(-1.0), b1=jnp.asarray(1.5))  # concrete arrays pass through
    built = jax.jit(lambda b1: lo.adam(0.1, b1=b1).init(tree_params()))(2.0)  # tracers too
    assert int(built[0].count) == 0


def test_grads_with_another_structure_raise_naming_both():
    opt = lo.adam(0.1)
    state = opt.init({"a": jnp.ones(2), "b": jnp.ones(3)})
    grads = {"a": jnp.ones(2), "c": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"scale_by_adam: grads have pytree structure .*'c'.*"
                                         r"but mu has structure .*'b'"):
        opt.update(grads, state)
    with pytest.raises(ValueError, match=r"apply_updates: updates have pytree structure .*'c'.*"
                                         r"but params has structure .*'b'"):
        lo.apply_updates({"a": jnp.ones(2), "b": jnp.ones(3)}, grads)
    with pytest.raises(ValueError, match=r"chain: expected a tuple of 2 states"):
        opt.update(grads, state[0])


def test_polyak_needs_the_loss_value():
    opt = lo.polyak_sgd()
    with pytest.raises(TypeError, match="value="):
        opt.update({"w": jnp.ones(2)}, opt.init({"w": jnp.ones(2)}), None)
    # inside optax.chain a lab optimizer gets no extra args unless wrapped (see BLOCKS)
    wrapped = optax.chain(lo.polyak_sgd())
    with pytest.raises(TypeError, match="value="):
        wrapped.update({"w": jnp.ones(2)}, wrapped.init({"w": jnp.ones(2)}), None, value=1.0)


# ------------------------------------------------------ where lab departs from optax


def test_signatures_match_optax():
    assert all(hasattr(lo, name) for name in lo.__all__)
    for name in lo.OPTIMIZERS:
        if not hasattr(optax, name):
            continue
        ours, theirs = ([(p.name, p.kind, p.default) for p in
                         inspect.signature(getattr(lib, name)).parameters.values()]
                        for lib in (lo, optax))
        if name == "noisy_sgd":  # optax's deprecated `seed` is left out
            theirs = [t for t in theirs if t[0] != "seed"]
        assert ours == theirs, name
    assert not hasattr(optax, "heavy_ball")


def test_adadelta_default_descends_where_optax_ascends():
    params, grads = {"w": jnp.asarray([1.0, 2.0])}, {"w": jnp.asarray([1.0, -1.0])}
    ours, = [lo.adadelta().update(grads, lo.adadelta().init(params), params)[0]]
    theirs = optax.adadelta().update(grads, optax.adadelta().init(params), params)[0]
    one = optax.adadelta(1.0).update(grads, optax.adadelta(1.0).init(params), params)[0]
    assert_tree_allclose(ours, one)
    assert_tree_allclose(ours, jax.tree.map(jnp.negative, theirs))
    assert float(ours["w"][0]) < 0 < float(theirs["w"][0])  # optax moves up the gradient


def test_optax_rprop_lags_one_step_behind():
    """optax.rprop keeps the same state as ours but returns the *previous* step's move
    (zeroed if the current gradient flipped sign); its first update is zero."""
    grads = random_grads(50, key=3)
    ours = lo.rprop(0.01)
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)
    state, ref_state = ours.init(params), optax.rprop(0.01).init(params)
    ours_updates = []
    for t in range(50):
        g = jax.tree.map(lambda x: x[t], grads)
        flipped = jax.tree.map(lambda a, b: jnp.sign(a) * jnp.sign(b) < 0, g, state[0].prev_updates)
        updates, state = ours.update(g, state, params)
        with jax.numpy_dtype_promotion("standard"):
            ref_updates, ref_state = optax.rprop(0.01).update(g, ref_state, params)
        assert_tree_allclose(jax.tree.leaves(state), jax.tree.leaves(ref_state))
        expected = (jax.tree.map(jnp.zeros_like, updates) if t == 0 else jax.tree.map(
            lambda prev, f: jnp.where(f, 0.0, prev), ours_updates[-1], flipped))
        assert_tree_allclose(ref_updates, expected)
        ours_updates.append(updates)


# ------------------------------------------------ accumulators in a dtype of their own


def test_a_float32_momentum_buffer_takes_float64_gradients():
    """``accumulator_dtype=float32`` with float64 gradients: each step works in the promoted
    dtype, ``v_t = g_t + beta float64(v_{t-1})``, and stores ``v_t`` rounded to float32
    (the lookup of that promotion once raised under strict promotion).  Written out in
    NumPy, for heavy ball and Nesterov (``u_t = -lr (g_t + beta v_t)``)."""
    grads = random_grads(10, key=4)
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)
    for nesterov in (False, True):
        opt = lo.sgd(0.1, momentum=0.9, nesterov=nesterov, accumulator_dtype=jnp.float32)
        state, trace = opt.init(params), jax.tree.map(lambda p: np.zeros(p.shape, np.float32),
                                                      params)
        for t in range(10):
            g = jax.tree.map(lambda x: np.asarray(x[t]), grads)
            updates, state = opt.update(jax.tree.map(jnp.asarray, g), state, params)
            v = jax.tree.map(lambda g, v: g + 0.9 * v.astype(np.float64), g, trace)
            u = jax.tree.map(lambda g, v: g + 0.9 * v, g, v) if nesterov else v
            trace = jax.tree.map(lambda v: v.astype(np.float32), v)
            assert_tree_allclose(updates, jax.tree.map(lambda u: -0.1 * u, u))
            assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float64)}
            assert {x.dtype for x in jax.tree.leaves(state)} == {jnp.dtype(jnp.float32)}
            np.testing.assert_array_equal(state[0].trace["b"], trace["b"])


@pytest.mark.parametrize("ours,theirs", [
    (lambda: lo.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.float32),
     lambda: optax.sgd(0.1, momentum=0.9, accumulator_dtype=jnp.float32)),
    (lambda: lo.signum(0.1, accumulator_dtype=jnp.float32),
     lambda: optax.signum(0.1, accumulator_dtype=jnp.float32)),
    (lambda: lo.adam(0.1, mu_dtype=jnp.float32), lambda: optax.adam(0.1, mu_dtype=jnp.float32)),
    (lambda: lo.lion(0.1, mu_dtype=jnp.float32), lambda: optax.lion(0.1, mu_dtype=jnp.float32))],
    ids=["sgd", "signum", "adam", "lion"])
def test_buffers_in_float32_take_float64_gradients_as_optax_does(ours, theirs):
    """The same with optax beside: float64 updates, float32 buffers, and updates equal to
    optax's up to float32 rounding (optax forms ``beta v`` in float32 first)."""
    grads = random_grads(10, key=5)
    params = jax.tree.map(lambda g: jnp.zeros(g.shape[1:]), grads)
    ours, theirs = ours(), theirs()
    state, ref_state = ours.init(params), theirs.init(params)
    for t in range(10):
        g = jax.tree.map(lambda x: x[t], grads)
        updates, state = ours.update(g, state, params)
        with jax.numpy_dtype_promotion("standard"):
            ref_updates, ref_state = theirs.update(g, ref_state, params)
        assert_tree_allclose(updates, ref_updates, rtol=1e-5, atol=1e-5)  # float32 rounding
        assert {x.dtype for x in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float64)}
        floats = {x.dtype for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)}
        assert floats == {x.dtype for x in jax.tree.leaves(ref_state)
                          if jnp.issubdtype(x.dtype, jnp.floating)}
        assert jnp.dtype(jnp.float32) in floats
