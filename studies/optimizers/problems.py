"""The optimizers study's four problems and their sweeps: a quadratic and Rosenbrock (full
batch, in error coordinates or from a noisy start), a digits MLP and a spirals MLP (held-out
accuracy from ``eval_x``), one :class:`lab.sweep.Study` per problem."""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, train
from lab.sweep import Problem, Study, SweepSpec
from studies import common
from studies.optimizers.config import Config, lr_factors, optimizers_for, schedule
from studies.optimizers.settings import (
    ALL_OPTIMIZERS,
    FAMILY,
    LR_CENTRES,
    NOISY_SGD_KEY,
    SECOND_ORDER,
    SETTINGS,
    build_optimizer,
    counting,
    learning_rate,
)

ROSENBROCK_START = (-1.2, 1.0)
SPLIT_KEY, TEST_FRACTION = 0, 0.25        # the digits' held-out split: train_test_split(key(0), 25%)
SPIRALS_TRAIN_KEY, SPIRALS_TEST_KEY = 0, 1


def _quadratic(static) -> Problem:
    dim = int(static["dimension"])
    dtype = common.float_dtype()
    a = common.quadratic_hessian(float(static["kappa"]), dim)

    def init_params(key):
        return jax.random.normal(key, (dim,), dtype=dtype) / jnp.asarray(math.sqrt(dim), dtype)

    def loss(e, xb, yb, key):   # the batch is a dummy: full batch
        return 0.5 * e @ (a @ e)

    def evaluate(e, x, y):
        return {"loss": 0.5 * e @ (a @ e), "distance": jnp.linalg.norm(e)}

    x, y = common.dummy_data()
    return Problem(init_params=init_params, loss=loss, x=x, y=y, evaluate=evaluate)


def _rosenbrock(static) -> Problem:
    sigma = float(static["start_noise"])
    dtype = common.float_dtype()

    def init_params(key):
        start = jnp.asarray(ROSENBROCK_START, dtype)
        return start + jnp.asarray(sigma, dtype) * jax.random.normal(key, (2,), dtype=dtype)

    def loss(w, xb, yb, key):
        return common.rosenbrock(w)

    def evaluate(w, x, y):
        return {"loss": common.rosenbrock(w), "distance": jnp.linalg.norm(w - jnp.ones_like(w))}

    x, y = common.dummy_data()
    return Problem(init_params=init_params, loss=loss, x=x, y=y, evaluate=evaluate)


def _classifier(net, x, y, x_test, y_test) -> Problem:
    """A classification problem whose ``evaluate`` sees the training set followed by the
    held-out set (``eval_x``), so that neither is baked into the program as a constant."""
    n = int(np.shape(x)[0])

    def evaluate(params, xe, ye):   # rows [0, n): the training set; [n, end): held out
        logits = net.apply(params, xe)
        train_logits, test_logits = logits[:n], logits[n:]
        return {"loss": losses.softmax_cross_entropy_with_integer_labels(train_logits, ye[:n]),
                "accuracy": train.accuracy(train_logits, ye[:n]),
                "test_accuracy": train.accuracy(test_logits, ye[n:])}

    return common.classifier(net, x, y, evaluate=evaluate, eval_x=np.concatenate([x, x_test]),
                             eval_y=np.concatenate([y, y_test]))


def digits_split():
    """(x_train, y_train, x_test, y_test): the digits, :data:`TEST_FRACTION` held out by key(SPLIT_KEY)."""
    x, y = data.load_digits()
    x_tr, y_tr, x_te, y_te = data.train_test_split(jax.random.key(SPLIT_KEY), jnp.asarray(x), jnp.asarray(y),
                                                   test_fraction=TEST_FRACTION)
    return (np.asarray(x_tr, np.float32), np.asarray(y_tr, np.int32),
            np.asarray(x_te, np.float32), np.asarray(y_te, np.int32))


def _digits(static) -> Problem:
    x, y, x_te, y_te = digits_split()
    return _classifier(common.digits_mlp(static["hidden"]), x, y, x_te, y_te)


def spirals_data(points: int):
    """(x_train, y_train, x_test, y_test): two spirals from key(0), held-out ones from key(1)."""
    x, y = data.two_spirals(jax.random.key(SPIRALS_TRAIN_KEY), points)
    x_te, y_te = data.two_spirals(jax.random.key(SPIRALS_TEST_KEY), points)
    return (np.asarray(x, np.float32), np.asarray(y, np.int32),
            np.asarray(x_te, np.float32), np.asarray(y_te, np.int32))


def _spirals(static) -> Problem:
    x, y, x_te, y_te = spirals_data(int(static["points"]))
    h = int(static["hidden"])
    return _classifier(nets.mlp([h, h, 2], activation="tanh"), x, y, x_te, y_te)


def _with_counter(prob: Problem, counted: bool) -> Problem:
    """Add the metric ``evaluations``: for second-order methods the params become
    ``(w, counter)`` (see :func:`counting`); for the others it is 0."""
    if not counted:
        def evaluate(w, x, y):
            return {**prob.evaluate(w, x, y), "evaluations": jnp.zeros((), jnp.float32)}
        return dataclasses.replace(prob, evaluate=evaluate)

    def init_params(key):
        return prob.init_params(key), jnp.zeros((), jnp.float32)

    def loss(p, x, y, key):
        return prob.loss(p[0], x, y, key)

    def evaluate(p, x, y):
        return {**prob.evaluate(p[0], x, y), "evaluations": p[1]}

    return dataclasses.replace(prob, init_params=init_params, loss=loss, evaluate=evaluate)


def _make_problem(static) -> Problem:
    base = {"quadratic": _quadratic, "rosenbrock": _rosenbrock, "digits": _digits,
            "spirals": _spirals}[static["problem"]](static)
    return _with_counter(base, static["optimizer"] in SECOND_ORDER)


def _make_optimizer(config):
    name = config["optimizer"]
    opt = build_optimizer(name, learning_rate(config["problem"], name, config["lr_factor"]))
    return counting(name, opt) if name in SECOND_ORDER else opt


def _static(problem: str, c: Config) -> dict:
    """Static options of ``problem`` (besides the optimizer), from the config."""
    if problem == "quadratic":
        return {"batch_size": 1, "dimension": c.quad_dimension, "kappa": float(c.quad_kappa)}
    if problem == "rosenbrock":
        return {"batch_size": 1, "start_noise": float(c.rosen_start_noise)}
    if problem == "digits":
        return {"batch_size": c.digits_batch_size, "hidden": c.digits_hidden}
    return {"batch_size": 2 * c.spirals_points, "hidden": c.spirals_hidden, "points": c.spirals_points}


def _facts(problem: str, c: Config) -> dict:
    """What shapes ``problem`` beyond its static options (part of the sweep's description)."""
    xent = losses.softmax_cross_entropy_with_integer_labels
    if problem == "quadratic":
        return common.describe(loss="1/2 e^T A e", hessian=common.quadratic_hessian, spectrum=common.spectrum,
                               rotation_key=common.QUADRATIC_ROTATION_KEY, init="e0 ~ N(0, I / dimension)")
    if problem == "rosenbrock":
        return common.describe(loss=common.rosenbrock, start=ROSENBROCK_START, init="start + start_noise N(0, I)")
    if problem == "digits":
        return common.describe(data=digits_split, split_key=SPLIT_KEY, test_fraction=TEST_FRACTION,
                               net=common.mlp_name((64, c.digits_hidden, 10), "tanh"), loss=xent,
                               evaluate=_classifier)
    return common.describe(data=spirals_data, keys=(SPIRALS_TRAIN_KEY, SPIRALS_TEST_KEY),
                           net=common.mlp_name((2, c.spirals_hidden, c.spirals_hidden, 2), "tanh"), loss=xent,
                           evaluate=_classifier)


def study(problem: str, c: Config) -> Study:
    return Study(f"optimizers_{problem}", _make_problem, _make_optimizer,
                 hyperparameters={"lr_factor": 1.0},
                 static={**_static(problem, c), "problem": problem, "optimizer": "sgd"},
                 description={**_facts(problem, c), "lr_centres": LR_CENTRES[problem],
                              "families": {n: FAMILY[n] for n in ALL_OPTIMIZERS},
                              "settings": {n: SETTINGS[n] for n in ALL_OPTIMIZERS},
                              "noisy_sgd_key": NOISY_SGD_KEY})


def sweep_spec(problem: str, c: Config) -> SweepSpec:
    steps, every, _ = schedule(problem, c)
    return SweepSpec(study(problem, c), grid={"optimizer": list(optimizers_for(problem, c)),
                                              "lr_factor": [float(f) for f in lr_factors(c)]},
                     seeds=c.seeds, steps=steps, eval_every=every, chunk_steps=steps)
