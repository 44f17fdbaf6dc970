"""The Newton study's swept problems: a quadratic, logistic regression and a digits MLP, each
a :class:`lab.sweep.Study` with its specs (one compiled program per static method)."""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, nets, optim
from lab.sweep import Problem, Study, SweepSpec
from studies import common
from studies.newton.config import Config
from studies.newton.constants import (
    FEATURE_SCALES,
    FIRST_ORDER,
    LABEL_BIAS,
    LOGISTIC_DATA_SEED,
    LOGISTIC_INIT_SCALE,
    MINIMISER_KEY,
    MLP_SECOND_ORDER,
    MLP_SUBSET_SEED,
    QUAD_METHODS,
    SIGMA_PRIME2_MAX,
    TRUE_WEIGHT_SCALE,
)

# =========================================================================== quadratic


def quad_settings(method: str, kappa: float) -> tuple[float, float]:
    """(lr, beta) of each method's textbook setting for eigenvalues in [1/kappa, 1]."""
    mu, big = 1.0 / kappa, 1.0
    if method == "newton":
        return 1.0, 0.0
    if method == "gd":
        return 2.0 / (big + mu), 0.0
    if method == "heavy_ball":
        root = math.sqrt(kappa)
        return (2.0 / (math.sqrt(big) + math.sqrt(mu))) ** 2, ((root - 1) / (root + 1)) ** 2
    raise ValueError(f"quadratic method must be one of {QUAD_METHODS + ('adam',)}, got {method!r}")


def quad_theory_rate(method: str, kappa: float) -> float:
    if method == "gd":
        return (kappa - 1) / (kappa + 1)
    if method == "heavy_ball":
        return (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    return 0.0  # Newton: exact after one step


def _quadratic_problem(static) -> Problem:
    kappa, dim = float(static["kappa"]), int(static["dimension"])
    dtype = common.float_dtype()
    a, w_star = common.quadratic_hessian(kappa, dim), jax.random.normal(jax.random.key(MINIMISER_KEY), (dim,), dtype=dtype)

    def init_params(key):   # w* plus a random unit error
        e = jax.random.normal(key, (dim,), dtype=dtype)
        return w_star + e / jnp.linalg.norm(e)

    def value(w):
        e = w - w_star
        return 0.5 * e @ (a @ e)

    def loss(w, xb, yb, key):   # the dummy batch is ignored: full-batch training
        return value(w)

    def evaluate(w, x, y):
        return {"loss": value(w), "distance": jnp.linalg.norm(w - w_star)}

    x, y = common.dummy_data()
    return Problem(init_params=init_params, loss=loss, x=x, y=y, evaluate=evaluate)


def _quadratic_optimizer(config):
    method = config["method"]
    if method == "adam":
        return optim.adam(config["learning_rate"])
    lr, beta = quad_settings(method, float(config["kappa"]))
    if method == "newton":
        return optim.newton(lr)
    return optim.sgd(lr) if method == "gd" else optim.sgd(lr, momentum=beta)


QUADRATIC = Study(
    "newton_quadratic", _quadratic_problem, _quadratic_optimizer,
    hyperparameters={"learning_rate": 0.1},
    static={"batch_size": 1, "kappa": 100.0, "dimension": 20, "method": "newton"},
    description=common.describe(loss="1/2 (w - w*)^T A (w - w*)", hessian=common.quadratic_hessian,
                                spectrum=common.spectrum, rotation_key=common.QUADRATIC_ROTATION_KEY,
                                minimiser_key=MINIMISER_KEY, init="w* + random unit vector",
                                settings=quad_settings, adam=optim.adam))


def _quad_specs(c: Config) -> dict:
    study = dataclasses.replace(QUADRATIC, static={**QUADRATIC.static, "kappa": float(c.quad_kappa),
                                                   "dimension": c.quad_dimension})
    common_args = dict(seeds=c.quad_seeds, steps=c.quad_steps, eval_every=1, divergence_factor=1e6,
                       chunk_steps=c.quad_steps)
    return {"quad": SweepSpec(study, grid={"method": list(QUAD_METHODS)}, **common_args),
            "quad_adam": SweepSpec(study, grid={"method": ["adam"], "learning_rate": [float(v) for v in c.quad_adam_lrs]},
                                   **common_args)}


# =========================================================================== logistic regression


@functools.lru_cache(maxsize=8)
def logistic_setup(examples: int, features: int, l2: float) -> dict:
    """The fixed data set, its minimiser (float64 Newton on the host) and the theory constants.

    Features ``x_j ~ N(0, s_j^2)`` with scales ``s`` geometric in :data:`FEATURE_SCALES`; labels
    ``y ~ Bernoulli(sigmoid(x . w_true + LABEL_BIAS))`` (non-separable); a column of ones is appended."""
    rng = np.random.default_rng(LOGISTIC_DATA_SEED)
    scales = np.geomspace(*FEATURE_SCALES, features)
    x = rng.normal(size=(examples, features)) * scales
    w_true = rng.normal(size=features) * TRUE_WEIGHT_SCALE
    y = (rng.uniform(size=examples) < 1.0 / (1.0 + np.exp(-(x @ w_true + LABEL_BIAS)))).astype(np.float64)
    xt = np.concatenate([x, np.ones((examples, 1))], axis=1)  # (n, d + 1)

    def grad_hess(w):
        z = xt @ w
        s = 1.0 / (1.0 + np.exp(-z))
        g = xt.T @ (s - y) / examples + l2 * w
        h = (xt * (s * (1 - s))[:, None]).T @ xt / examples + l2 * np.eye(w.size)
        return g, h

    w = np.zeros(features + 1)
    for _ in range(100):
        g, h = grad_hess(w)
        if np.linalg.norm(g) < 1e-13:
            break
        w = w - np.linalg.solve(h, g)
    g, h = grad_hess(w)
    ev = np.linalg.eigvalsh(h)
    lipschitz = SIGMA_PRIME2_MAX * float(np.mean(np.linalg.norm(xt, axis=1) ** 3))
    return {"x": xt, "y": y, "w_star": w, "grad_norm_at_star": float(np.linalg.norm(g)),
            "hessian_eigenvalues": ev, "kappa": float(ev[-1] / ev[0]),
            "gd_lr": 2.0 / float(ev[-1] + ev[0]), "gd_rate": float((ev[-1] - ev[0]) / (ev[-1] + ev[0])),
            "hessian_lipschitz": lipschitz, "bound_global": lipschitz / (2 * l2),
            "bound_asymptotic": lipschitz / (2 * float(ev[0]))}


def logistic_problem(static) -> Problem:
    s = logistic_setup(int(static["examples"]), int(static["features"]), float(static["l2"]))
    dtype = common.float_dtype()
    w_star = jnp.asarray(s["w_star"], dtype)
    l2 = float(static["l2"])

    def init_params(key):
        return LOGISTIC_INIT_SCALE * jax.random.normal(key, w_star.shape, dtype=dtype)

    def loss(w, xb, yb, key):
        z = xb @ w
        return jnp.mean(jax.nn.softplus(z) - yb * z) + 0.5 * l2 * (w @ w)

    def evaluate(w, x, y):
        return {"loss": loss(w, x, y, None), "error": jnp.linalg.norm(w - w_star)}

    return Problem(init_params=init_params, loss=loss, x=s["x"].astype(common.np_float()),
                   y=s["y"].astype(common.np_float()), evaluate=evaluate)


def _logistic_optimizer(config):
    if config["method"] == "newton":
        return optim.newton(1.0)
    s = logistic_setup(int(config["examples"]), int(config["features"]), float(config["l2"]))
    return optim.sgd(s["gd_lr"])


def logistic_static(c: Config) -> dict:
    return {"batch_size": c.logistic_examples, "examples": c.logistic_examples, "features": c.logistic_features,
            "l2": float(c.logistic_l2), "method": "newton"}


def _logistic_spec(c: Config) -> SweepSpec:
    study = Study("newton_logistic", logistic_problem, _logistic_optimizer, hyperparameters={"learning_rate": 1.0},
                  static=logistic_static(c),
                  description=common.describe(data=logistic_setup, data_seed=LOGISTIC_DATA_SEED,
                                              feature_scales=FEATURE_SCALES, true_weight_scale=TRUE_WEIGHT_SCALE,
                                              label_bias=LABEL_BIAS, loss="mean softplus(z) - y z + l2/2 |w|^2",
                                              init_scale=LOGISTIC_INIT_SCALE, optimizer=_logistic_optimizer))
    return SweepSpec(study, grid={"method": ["newton", "gd"]}, seeds=c.logistic_seeds, steps=c.logistic_steps,
                     eval_every=1, divergence_factor=1e6, chunk_steps=c.logistic_steps)


# =========================================================================== digits MLP


@functools.lru_cache(maxsize=4)
def mlp_data(examples: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random subset of the digits (numpy default_rng(MLP_SUBSET_SEED)), images
    average-pooled by ``pool``."""
    x, y = data.load_digits(flatten=False)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int32)
    x = x.reshape(x.shape[0], 8, 8)
    side = 8 // pool
    x = x.reshape(x.shape[0], side, pool, side, pool).mean(axis=(2, 4)).reshape(x.shape[0], side * side)
    idx = np.random.default_rng(MLP_SUBSET_SEED).permutation(x.shape[0])[:examples]
    return x[idx], y[idx]


def mlp_net(hidden: int):
    return nets.mlp([int(hidden), 10], activation="tanh")


def _mlp_problem(static) -> Problem:
    x, y = mlp_data(int(static["examples"]), int(static["pool"]))
    return common.classifier(mlp_net(static["hidden"]), x.astype(common.np_float()), y, dtype=common.float_dtype())


def _mlp_optimizer(config):
    method, lr, damping = config["method"], config["learning_rate"], config["damping"]
    if method == "damped_newton":
        return optim.damped_newton(lr, damping)
    if method == "saddle_free_newton":
        return optim.saddle_free_newton(lr, damping)
    if method == "newton_cg":
        return optim.newton_cg(lr, damping, max_cg_iterations=int(config["max_cg_iterations"]),
                               linesearch=optim.backtracking_linesearch())
    if method == "gd":
        return optim.sgd(lr)
    if method == "adam":
        return optim.adam(lr)
    raise ValueError(f"MLP method must be one of {MLP_SECOND_ORDER + ('newton_cg',) + FIRST_ORDER}, got {method!r}")


def param_count(c: Config) -> int:
    d_in = (8 // c.mlp_pool) ** 2
    return d_in * c.mlp_hidden + c.mlp_hidden + c.mlp_hidden * 10 + 10


def _mlp_specs(c: Config) -> dict:
    study = Study("newton_mlp", _mlp_problem, _mlp_optimizer, hyperparameters={"learning_rate": 1.0, "damping": 1e-2},
                  static={"batch_size": c.mlp_examples, "examples": c.mlp_examples, "pool": c.mlp_pool,
                          "hidden": c.mlp_hidden, "method": "damped_newton", "max_cg_iterations": 10},
                  description=common.describe(data=mlp_data, subset_seed=MLP_SUBSET_SEED,
                                              net=common.mlp_name(((8 // c.mlp_pool) ** 2, c.mlp_hidden, 10), "tanh"),
                                              problem=common.classifier, optimizer=_mlp_optimizer))
    common_args = dict(seeds=c.seeds, steps=c.mlp_steps, eval_every=c.mlp_eval_every, divergence_factor=10.0,
                       chunk_steps=c.mlp_steps)
    return {
        "damping": SweepSpec(study, grid={"method": list(MLP_SECOND_ORDER),
                                          "damping": [float(v) for v in c.mlp_dampings]}, **common_args),
        "cg": SweepSpec(study, grid={"method": ["newton_cg"], "max_cg_iterations": [int(k) for k in c.mlp_cg_iterations],
                                     "damping": [float(c.mlp_cg_damping)]}, **common_args),
        "first_order": SweepSpec(study, grid={"method": list(FIRST_ORDER),
                                              "learning_rate": [float(v) for v in c.mlp_learning_rates]}, **common_args),
    }


def specs(c: Config) -> dict:
    """Every sweep of the study, by part name."""
    return {**_quad_specs(c), "logistic": _logistic_spec(c), **_mlp_specs(c)}
