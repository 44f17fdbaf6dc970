"""lab.workloads: every workload builds, differentiates under jit, evaluates its target metric,
and runs through the sweep engine; targets, steps-to-target, warm-up and defaults by hand."""
import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import nets, optim, workloads
from lab.protocol import SPACES, search_space
from lab.sweep import SweepSpec, run_sweep


def test_registry_names_and_errors():
    assert len(workloads.NAMES) >= 6
    assert set(workloads.NAMES) >= {"digits_mlp", "digits_cnn", "mnist1d_logistic", "mnist1d_mlp", "mnist1d_cnn",
                                    "mnist1d_lstm", "breast_cancer_logistic", "char_transformer"}
    with pytest.raises(ValueError, match="unknown workload 'imagenet'"):
        workloads.get("imagenet")
    with pytest.raises(ValueError, match="no search space for optimizer 'adamx'"):
        workloads.study("digits_mlp", "adamx")


@pytest.mark.parametrize("value", [math.inf, math.nan, "0.9", None])
def test_target_must_be_finite(value):
    with pytest.raises(ValueError, match="finite number"):
        workloads.Target("eval_loss", value)


def test_target_mode_and_reached():
    with pytest.raises(ValueError, match="mode"):
        workloads.Target("eval_loss", 1.0, "below")
    low, high = workloads.Target("eval_loss", 1.0, "min"), workloads.Target("eval_accuracy", 0.9, "max")
    np.testing.assert_array_equal(low.reached([2.0, 1.0, 0.5, np.nan]), [False, True, True, False])
    np.testing.assert_array_equal(high.reached([0.5, 0.9, 0.95, np.nan]), [False, True, True, False])


@pytest.mark.parametrize("name", workloads.NAMES)
def test_workload_builds_differentiates_and_evaluates(name):
    w = workloads.get(name)
    problem = w.problem()
    assert problem is w.problem()                                   # built once
    params = problem.init_params(jax.random.key(0))
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}
    xb, yb = problem.x[: w.batch_size], problem.y[: w.batch_size]
    loss, grads = jax.jit(jax.value_and_grad(problem.loss))(params, xb, yb, jax.random.key(1))
    assert np.isfinite(float(loss)) and float(loss) > 0
    norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(grads)]
    assert all(np.isfinite(norms)) and max(norms) > 0
    ex = problem.x if problem.eval_x is None else problem.eval_x
    ey = problem.y if problem.eval_y is None else problem.eval_y
    values = jax.jit(problem.evaluate)(params, ex, ey)
    metric = w.target.metric
    assert metric.startswith("eval_") and metric[len("eval_"):] in values
    untrained = float(values[metric[len("eval_"):]])
    assert not w.target.reached(untrained)                           # a target is never met at init
    assert w.steps % w.eval_every == 0 and 1 <= w.batch_size <= problem.x.shape[0]
    assert w.description()["workload"] == name


def test_held_out_sets_and_sizes():
    x, y, xt, yt = workloads.digits_split()
    assert (x.shape, xt.shape) == ((1348, 64), (449, 64)) and y.dtype == np.int32
    x, y, xt, yt = workloads.mnist1d_split()
    assert (x.shape, xt.shape) == ((4000, 40), (1000, 40))
    counts = {m: nets.param_count(workloads.mnist1d_model(m)[0].init(jax.random.key(0), s)[1])
              for m, s in [("logistic", (-1, 40)), ("mlp", (-1, 40)), ("cnn", (-1, 1, 40, 1))]}
    assert counts == {"logistic": 410, "mlp": 15210, "cnn": 5210}     # the reference code's models
    text = workloads.get("char_transformer").problem()
    assert text.x.shape[1] == workloads.TEXT_CONTEXT + 1 and text.eval_x.shape == (workloads.TEXT_EVAL_WINDOWS, 65)
    with pytest.raises(ValueError, match="unknown MNIST-1D model"):
        workloads.mnist1d_model("gru")


def test_logistic_optimum_equals_scipy():
    from lab import convex
    newton = convex.breast_cancer_logistic_newton(workloads.LOGISTIC_L2)
    reference = convex.breast_cancer_logistic_optimum(workloads.LOGISTIC_L2)
    assert abs(newton.loss - reference.loss) < 1e-13
    np.testing.assert_allclose(newton.params, reference.params, atol=1e-9)


def _fake_result(curve, eval_steps):
    return types.SimpleNamespace(curves={"eval_accuracy": np.asarray(curve)}, eval_steps=np.asarray(eval_steps))


def test_steps_to_target_by_hand():
    w = workloads.get("digits_mlp")                                 # target accuracy >= 0.97
    curves = [[0.5, 0.97, 0.96, 0.99], [0.1, 0.2, 0.3, 0.4], [np.nan, np.nan, 0.98, 0.99]]
    got = workloads.steps_to_target(w, _fake_result(curves, [50, 100, 150, 200]))
    np.testing.assert_array_equal(got, [100.0, np.inf, 150.0])
    with pytest.raises(ValueError, match="no metric 'eval_accuracy'"):
        workloads.steps_to_target(w, types.SimpleNamespace(curves={"eval_loss": np.zeros((1, 2))}, eval_steps=[1, 2]))


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_search_space_builds_its_optimizer(name):
    """Each space's knobs are arguments of its lab.optim function; a sampled point makes one finite step."""
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "b": jnp.full(2, -0.25)}
    for config in [workloads.optimizer_defaults(name), search_space(name).sample(1, seed=3)[0]]:
        assert set(config) == set(SPACES[name])
        opt = workloads.build_optimizer(name, config, steps=100)
        state = opt.init(params)
        value_fn = lambda p: sum(jnp.sum(g * leaf) for g, leaf in zip(jax.tree.leaves(grads), jax.tree.leaves(p)))
        updates, _ = opt.update(grads, state, params, value=value_fn(params), grad=grads, value_fn=value_fn)
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))


def test_warmup_scales_the_update_linearly():
    params, grads = jnp.ones(4), jnp.linspace(-1.0, 1.0, 4)
    config = {"learning_rate": 0.1, "b1": 0.9, "b2": 0.999, "warmup_fraction": 0.5}
    warm, plain = workloads.build_optimizer("adam", config, steps=10), optim.adam(0.1, b1=0.9, b2=0.999)
    ws, ps = warm.init(params), plain.init(params)
    for step in range(8):
        wu, ws = warm.update(grads, ws, params)
        pu, ps = plain.update(grads, ps, params)
        np.testing.assert_allclose(wu, pu * min(1.0, (step + 1) / 5), rtol=1e-12)


def test_breast_cancer_reaches_its_target_through_the_engine():
    """A whole search through the engine: Adam at two learning rates, full batch, 1000 steps."""
    w = workloads.get("breast_cancer_logistic")
    spec = SweepSpec(workloads.study(w, "adam"), configs=[{"learning_rate": 3e-2}, {"learning_rate": 3e-4}],
                     seeds=1, steps=w.steps, eval_every=w.eval_every, chunk_steps=w.steps)
    result = run_sweep(spec, store=":memory:", progress=False)
    steps = workloads.steps_to_target(w, result)[:, 0]
    assert np.isfinite(steps[0]) and 10 <= steps[0] <= w.steps
    assert steps[1] == np.inf                                        # too small a step never gets there
    final = result.final["eval_relative_suboptimality"][0, 0]
    assert -1e-5 < final <= w.target.value                           # f* is the minimum (float32 noise aside)
