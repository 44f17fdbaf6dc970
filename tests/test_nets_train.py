"""Every network in lab.nets trains: its gradient under ``jit`` is finite, shaped like its
params and not all zero, and a short sweep through the engine lowers its loss in every run.

Each row of ``CASES`` is a builder, or a layer inside the smallest net that gives it
something to learn, with the view of the data it reads and its loss.  The data are the
first 256 real 8x8 digits: flat (N, 64), as NHWC images (N, 8, 8, 1) or as sequences of 8
rows of 8 pixels (N, 8, 8), or as 64 tokens (each pixel's intensity level 0..16, for the
embedding and transformer layers).  Every loss runs its net in training mode with a key, so
Dropout and DropConnect draw fresh masks each step; the evaluation runs it in test mode
(no masks, DropConnect's expected weights).

One sweep (2 learning rates x 2 seeds) trains every net at once, to compile one program
instead of one per net (XLA's compile time, not the training, is what these tests spend):
its params are a dict with one entry per case and its loss is the sum of the cases'
losses, each on its own view of the batch with its own subkey.  The nets share no
parameter and Adam's update is elementwise, so each net follows the trajectory it would
follow alone on the same batches and keys; ``evaluate`` records each net's own loss on the
training set (``eval_<case>``), and every run of every case must end below ``MARGIN``
times its first evaluation.  The nets draw their init and masks from rbg keys (``rbg``).

BatchNorm keeps its running statistics as state outside the params, and the engine's loss
returns a bare scalar, so a sweep cannot carry that state: nets with BatchNorm train and are
evaluated in batch-statistics (training) mode, with the initial state passed in and the
updated one dropped.  ``tests/test_nets.py`` trains one with its running statistics by hand.

The perceptron's output is a step, whose gradient is zero; it learns "is this a 0?" by
gradient descent on the perceptron criterion (y_hat - y)(x . w + b), whose SGD step on one
example is exactly ``perceptron_update`` (checked below).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import data, losses, nets, optim
from lab import init as initializers
from lab.sweep import Problem, Study, SweepSpec, run_sweep
from tests.helpers import assert_tree_allclose

KEY = jax.random.key(0)
N = 256
X, Y = (np.asarray(a)[:N] for a in data.load_digits())   # (256, 64) float32 in [0, 1], (256,) int32
VIEWS = {"flat": (64,), "images": (8, 8, 1), "rows": (8, 8), "tokens": (64,)}
# example shapes; rows: 8 steps of 8 pixels; tokens: the 64 pixels as ids 0..16 (intensity levels)
LEVELS = 17


class Case(NamedTuple):
    name: str           # also its metric's name, eval_<name>
    net: nets.Layer
    view: str = "flat"  # a key of VIEWS
    loss: str = "softmax"       # "softmax" (10 digit classes) or "perceptron" (is it a 0?)
    eval_train: bool = False    # evaluate in training mode (BatchNorm: batch statistics)


def _conv_net(*layers):
    return nets.serial(nets.Conv2D(4, 3), nets.Relu, *layers, nets.Flatten, nets.Dense(10))


CASES = [
    # builders
    Case("mlp", nets.mlp([32, 10], activation="tanh")),
    Case("mlp_dropout_batch_norm", nets.mlp([32, 10], dropout=0.2, batch_norm=True), eval_train=True),
    Case("cnn", nets.cnn(), "images"),
    Case("rnn", nets.rnn(16, 10), "rows"),
    Case("lstm", nets.lstm(16, 10), "rows"),
    Case("rbf_network", nets.rbf_network(X[N - 64:], 10, gamma=0.1)),   # centres: 64 of the digits
    Case("perceptron", nets.perceptron(64, w_init=initializers.normal(0.1)), loss="perceptron"),
    # layers
    Case("Dense", nets.Dense(10)),
    Case("Conv2D", _conv_net(), "images"),
    Case("Flatten", nets.serial(nets.Flatten, nets.Dense(10)), "images"),
    Case("MaxPool", _conv_net(nets.MaxPool(2)), "images"),
    Case("AvgPool", _conv_net(nets.AvgPool(3, 2, "SAME")), "images"),
    Case("BatchNorm", nets.serial(nets.Dense(16), nets.BatchNorm(), nets.Relu, nets.Dense(10)), eval_train=True),
    Case("BatchNorm_NHWC", _conv_net(nets.BatchNorm()), "images", eval_train=True),
    Case("LayerNorm", nets.serial(nets.Dense(16), nets.LayerNorm(), nets.Tanh, nets.Dense(10))),
    Case("Dropout", nets.serial(nets.Dense(32), nets.Relu, nets.Dropout(0.3), nets.Dense(10))),
    Case("Dropout_standard", nets.serial(nets.Dense(32), nets.Relu, nets.Dropout(0.3, "standard"), nets.Dense(10))),
    Case("DropConnect", nets.serial(nets.DropConnect(32, 0.3), nets.Relu, nets.Dense(10))),
    Case("Residual", nets.serial(nets.Dense(16), nets.Residual(nets.Dense(16), nets.Tanh), nets.Dense(10))),
    Case("PReLU", nets.serial(nets.Dense(16), nets.PReLU(0.5), nets.Dense(10))),
    Case("CausalSelfAttention", nets.serial(nets.Dense(16), nets.CausalSelfAttention(16, 2), nets.Flatten,
                                            nets.Dense(10)), "rows"),
    Case("TransformerBlock", nets.serial(nets.Embedding(LEVELS, 8), nets.PositionalEmbedding(64, 8),
                                         nets.TransformerBlock(8, 2, 16), nets.Flatten, nets.Dense(10)), "tokens"),
]
IDS = [case.name for case in CASES]
LEARNING_RATES, SEEDS, STEPS, EVAL_EVERY, BATCH = (0.01, 0.03), 2, 40, 5, 32
MARGIN = 0.8   # every run's last evaluated loss is below MARGIN times its first


def _in_shape(case):
    return (-1,) + VIEWS[case.view]


def rbg(key):
    """``key`` (threefry) as a key of JAX's "rbg" implementation, for the nets' own draws.

    XLA's CPU compiler takes about 1 s to compile one threefry draw of an odd shape such as
    a (64, 10) Glorot weight and about 0.2 s for the same draw from an rbg key (jaxlib
    0.10.2, measured); these tests compile the init and the masks of 20 nets, so the keys
    the nets see are rbg keys: the same jax.random calls in lab.nets, another bit
    generator.  The engine's own keys (per seed and step) stay threefry."""
    return jax.random.wrap_key_data(jnp.tile(jax.random.key_data(key), 2), impl="rbg")


def _init(case, key):
    """(params, state) of the case's net, traceable."""
    return case.net.init_with_state(key, _in_shape(case))[1:]


@functools.cache
def initial():
    """{case name: (params, state)} from KEY, drawn by one compiled program for every case."""
    return jax.jit(lambda key: {case.name: _init(case, k) for case, k in
                                zip(CASES, jax.random.split(rbg(key), len(CASES)))})(KEY)


def case_loss(case, params, state, x, y, key, *, train=True):
    """The case's loss on a batch of flat digits ``x`` with labels ``y``; ``state`` is the
    net's initial state (BatchNorm's, else empty)."""
    x = x.reshape((x.shape[0],) + VIEWS[case.view])
    if case.view == "tokens":
        x = jnp.round(x * (LEVELS - 1)).astype(jnp.int32)
    out, _ = case.net.apply_with_state(params, state, x, key=key, train=train)
    if case.loss == "softmax":
        return losses.softmax_cross_entropy_with_integer_labels(out, y)
    # the perceptron criterion: 0 on a correct example, |x . w + b| on a mistake
    target = (y == 0).astype(out.dtype)
    z = x @ params["w"] + params["b"]
    return jnp.mean(jax.lax.stop_gradient(out - target) * z)


# --- the gradient under jit --------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_jitted_gradient_is_finite_shaped_like_params_and_not_zero(case):
    params, state = initial()[case.name]
    loss = functools.partial(case_loss, case)
    grads = jax.jit(jax.grad(loss))(params, state, X[:BATCH], Y[:BATCH], rbg(jax.random.key(1)))
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    leaves = jax.tree_util.tree_leaves(grads)
    assert [(g.shape, g.dtype) for g in leaves] == [(p.shape, p.dtype) for p in jax.tree_util.tree_leaves(params)]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert max(float(jnp.max(jnp.abs(g))) for g in leaves) > 1e-6


def test_sgd_on_the_perceptron_criterion_is_the_perceptron_rule():
    case = CASES[IDS.index("perceptron")]
    lr = 0.5
    grad = jax.grad(lambda p, x, y: case_loss(case, p, (), x[None], y[None], None))   # a batch of one

    @jax.jit
    def both(params, x, y):
        sgd = jax.tree_util.tree_map(lambda w, g: w - lr * g, params, grad(params, x, y))
        return sgd, nets.perceptron_update(params, x, (y == 0).astype(x.dtype), lr)

    params, mistakes = initial()["perceptron"][0], 0
    for i in range(12):   # one example at a time, as the rule visits them
        sgd, rule = both(params, X[i], Y[i])
        assert_tree_allclose(sgd, rule, rtol=1e-6, atol=1e-6)
        mistakes += int(np.any(np.asarray(rule["w"]) != np.asarray(params["w"])))
        params = rule
    assert mistakes >= 2   # the rule moved the weights, so the comparison saw real updates


def test_pools_differentiate_under_jit():
    """Regression: a traced ``jnp.array(-inf)`` init made jit(grad) through the pools fail to linearise."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 5, 5, 3)), jnp.float32)
    for pool in (nets.MaxPool(2), nets.MaxPool(3, 2, "SAME"), nets.AvgPool(3, 2, "SAME")):
        f = lambda x: jnp.sum(pool.apply((), x) ** 2)  # noqa: E731
        assert_tree_allclose(jax.jit(jax.grad(f))(x), jax.grad(f)(x))
    # max pool: the gradient of sum(y^2) is 2 y at each window's arg-max, 0 elsewhere
    x = jnp.arange(16.0, dtype=jnp.float32).reshape(1, 4, 4, 1)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(nets.MaxPool(2).apply((), x) ** 2)))(x)[0, :, :, 0]
    expected = np.zeros((4, 4), np.float32)
    expected[1, 1], expected[1, 3], expected[3, 1], expected[3, 3] = 10.0, 14.0, 26.0, 30.0
    assert_tree_allclose(grad, expected)


# --- training through the sweep engine ---------------------------------------------------------


def _make_problem(static):
    states = {name: state for name, (_, state) in initial().items()}

    def init_params(key):
        return {case.name: _init(case, k)[0] for case, k in zip(CASES, jax.random.split(rbg(key), len(CASES)))}

    def loss(params, x, y, key):
        keys = jax.random.split(rbg(key), len(CASES))
        return sum(case_loss(case, params[case.name], states[case.name], x, y, k) for case, k in zip(CASES, keys))

    def evaluate(params, x, y):
        key = rbg(KEY)   # used only where eval_train keeps a Dropout layer drawing
        return {case.name: case_loss(case, params[case.name], states[case.name], x, y, key, train=case.eval_train)
                for case in CASES}

    return Problem(init_params=init_params, loss=loss, x=X, y=Y, evaluate=evaluate)


STUDY = Study("every_net", _make_problem, lambda config: optim.adam(config["learning_rate"]),
              hyperparameters={"learning_rate": LEARNING_RATES[0]}, static={"batch_size": BATCH},
              description={"data": f"first {N} digits", "nets": IDS, "loss": "sum of the nets' losses"})


def test_every_net_trains_in_one_sweep():
    """One test rather than one per case, so that a parallel run (pytest -n) sweeps once."""
    spec = SweepSpec(STUDY, {"learning_rate": list(LEARNING_RATES)}, seeds=SEEDS, steps=STEPS, eval_every=EVAL_EVERY,
                     runs_per_device=len(LEARNING_RATES) * SEEDS)
    result = run_sweep(spec, store=":memory:", progress=False)
    assert result.status == "done" and result.shape == (len(LEARNING_RATES), SEEDS)
    np.testing.assert_array_equal(result.diverged_step, -np.ones(result.shape))
    metrics = ["train_loss"] + [f"eval_{name}" for name in IDS]       # train_loss: the sum over the nets
    assert sorted(m for m in result.curves if m.startswith("eval_")) == sorted(metrics[1:])
    slow = {}
    for metric in metrics:
        curve = result.curves[metric]                                  # (learning rates, seeds, evaluations)
        assert curve.shape == result.shape + (STEPS // EVAL_EVERY,) and np.all(np.isfinite(curve)), metric
        first, last = curve[..., 0], curve[..., -1]
        if not np.all(last < MARGIN * first):
            slow[metric] = f"first {first.round(3).tolist()}, last {last.round(3).tolist()}"
    assert not slow, f"these losses did not fall below {MARGIN} times their first value in every run: {slow}"
