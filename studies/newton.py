"""Newton's method and its relatives against first-order methods: steps, rates, cost and curvature.

What is measured, how, and what theory predicts:

* ``quadratic``: ``f(w) = 1/2 (w - w*)^T A (w - w*)`` with ``A``'s eigenvalues geometric in
  ``[1/kappa, 1]`` (:func:`lab.data.quadratic`'s random rotation).  Newton with ``lr = 1``
  lands on ``w*`` in one step (``f(w_1) / f(w_0)`` is rounding error); gradient descent at
  ``lr = 2 / (L + mu)`` contracts ``||w - w*||`` by ``(kappa - 1) / (kappa + 1)`` per step,
  heavy ball at Polyak's setting by ``(sqrt kappa - 1) / (sqrt kappa + 1)``; Adam at the best
  rate of a small grid.  One sweep (method static) plus one for Adam's rate.
* ``logistic``: L2-regularised logistic regression on a fixed, non-separable synthetic
  set (labels drawn from a logistic model), so the minimiser ``w*`` is finite; ``w*`` is
  computed on the host in float64 by Newton's method to gradient norm 1e-13.  The error
  ``e_k = ||w_k - w*||`` of Newton and of gradient descent (at ``2 / (l_max + l_min)`` of
  ``H(w*)``) is recorded every step.  Theory: ``e_{k+1} <= L_H / (2 lambda_min(H(w_k))) e_k^2``
  with ``L_H`` the Lipschitz constant of the Hessian; here ``L_H <= max|sigma''| mean ||x_i||^3``
  (``max|sigma''| = 1 / (6 sqrt 3)``) and ``lambda_min(H) >= l2`` everywhere, which bounds
  every ratio ``e_{k+1} / e_k^2`` (the *global* bound); near ``w*`` the constant tends to
  ``L_H / (2 lambda_min(H(w*)))`` (the *asymptotic* bound).  GD's error ratio tends to
  ``(kappa* - 1) / (kappa* + 1)`` with ``kappa*`` the condition number of ``H(w*)``.
* ``rosenbrock``: 2-D paths from (-1.2, 1) of Newton with a backtracking (Armijo) line
  search, damped Newton (Levenberg-Marquardt's adaptive damping), GD, heavy ball and Adam;
  the number of iterations until ``||w - (1, 1)|| < tolerance`` (or the budget).  Direct
  ``lax.scan`` runs, no sweep (five deterministic 2-D paths).
* ``mlp``: a small tanh MLP on a subset of the digits, full batch.  Damped Newton
  ``(H + lambda I)^{-1} g`` and saddle-free Newton ``(|H| + lambda I)^{-1} g`` with the
  damping ``lambda`` a dynamic (vmapped) log-grid axis; Newton-CG (with Armijo backtracking)
  with the CG iteration cap a static axis; GD and Adam over a learning-rate grid, all for
  the same number of steps.  Small damping lets Newton jump along negative or tiny
  curvature (the loss blows up); large damping turns it into gradient descent with rate
  ``1 / lambda``; in between lies the best damping.
* ``cost``: for MLPs of growing width (P parameters) the wall time of one jitted step
  (median of repeats, after compilation) and the memory of the compiled step
  (``memory_analysis()``: temporaries + arguments + outputs), with log-log slopes.  Theory:
  dense Newton forms ``H`` from P Hessian-vector products (``~ n P^2`` flops for a batch of
  ``n``) and solves in ``~ P^3 / 3``, and stores ``P^2`` numbers (memory slope 2); the LU
  solve alone is timed too, to say which term dominates; Newton-CG costs ``k`` HVPs
  (``~ k n P``, slope 1) and GD one gradient (slope 1).
* ``spectrum``: the Hessian spectrum of the MLP's training loss at initialisation and after
  Adam training, by stochastic Lanczos quadrature (:func:`lab.curvature.spectral_density`),
  cross-checked against the exact eigenvalues of the dense Hessian (small P): the top and
  bottom eigenvalues and the fraction of negative eigenvalues.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lab import curvature, data, losses, nets, optim, train
from lab.store import Store
from lab.sweep import Problem, Study, SweepSpec, classification_metrics, run_sweep

DESCRIPTION = ("Newton vs GD/momentum/Adam: one step on a quadratic, quadratic convergence on logistic "
               "regression, Rosenbrock, damping/CG sweeps on an MLP, cost vs P, Hessian spectra")
FIGURES = {
    "newton_quadratic_logistic": "distance to the minimiser against iteration on a quadratic (Newton: one step) "
                                 "and on logistic regression, and e_k+1 against e_k (Newton's slope 2 vs GD's 1)",
    "newton_rosenbrock": "paths of five methods on the Rosenbrock contours and distance to (1, 1) against iteration",
    "newton_mlp": "digits MLP: final loss against damping (damped and saddle-free Newton), against the CG "
                  "iteration cap (Newton-CG), and the loss curves of the best setting of every method",
    "newton_cost": "time and memory of one step against the parameter count P (log-log) with fitted slopes",
    "newton_spectrum": "Hessian spectral density (SLQ) of the MLP loss at initialisation and after training, "
                       "over the exact eigenvalues of the dense Hessian",
}
QUAD_METHODS = ("newton", "gd", "heavy_ball")
MLP_SECOND_ORDER = ("damped_newton", "saddle_free_newton")
FIRST_ORDER = ("gd", "adam")
ROSENBROCK_METHODS = ("newton", "damped_newton", "gd", "heavy_ball", "adam")
LABELS = {"newton": "Newton", "gd": "gradient descent", "heavy_ball": "heavy ball", "adam": "Adam",
          "damped_newton": "damped Newton", "saddle_free_newton": "saddle-free Newton", "newton_cg": "Newton-CG",
          "solve": "LU solve alone"}
SIGMA_PRIME2_MAX = 1.0 / (6.0 * math.sqrt(3.0))   # max |sigma''(z)| of the logistic sigmoid


@dataclasses.dataclass(frozen=True)
class Config:
    # --- quadratic (L = 1, mu = 1 / kappa)
    quad_dimension: int = 30                  # number of eigenvalues, geometric in [1/kappa, 1]
    quad_kappa: float = 100.0                 # condition number
    quad_steps: int = 300                     # steps per run (every step is evaluated)
    quad_adam_lrs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)  # Adam's grid; the best is shown
    quad_seeds: int = 3                       # random unit initial errors
    # --- logistic regression
    logistic_examples: int = 400              # synthetic examples
    logistic_features: int = 8                # features (a bias is added)
    logistic_l2: float = 1e-2                 # L2 penalty on every parameter (bias included)
    logistic_steps: int = 300                 # steps per run
    logistic_seeds: int = 3                   # random initial points, N(0, 0.5^2) per coordinate
    # --- Rosenbrock
    rosenbrock_budget: int = 20000            # iterations per method
    rosenbrock_tolerance: float = 1e-6        # ||w - (1, 1)|| that counts as reached
    rosenbrock_gd_lr: float = 1e-3            # GD and heavy ball learning rate
    rosenbrock_beta: float = 0.9              # heavy ball momentum
    rosenbrock_adam_lr: float = 1e-2          # Adam learning rate
    rosenbrock_damping: float = 1e-3          # initial Levenberg-Marquardt damping
    # --- digits MLP (full batch)
    mlp_examples: int = 256                   # training examples (a fixed random subset)
    mlp_pool: int = 1                         # average-pool the 8x8 images by this factor (2: 4x4 inputs)
    mlp_hidden: int = 4                       # hidden width of the tanh MLP
    mlp_steps: int = 60                       # steps of every method
    mlp_eval_every: int = 2                   # steps between evaluations
    mlp_dampings: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 0.03, 0.1, 0.3, 1.0, 10.0)  # lambda grid
    mlp_cg_iterations: tuple[int, ...] = (1, 2, 5, 10, 20, 50)    # Newton-CG iteration caps
    mlp_cg_damping: float = 1e-2              # Newton-CG damping
    mlp_learning_rates: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)  # GD and Adam grid
    seeds: int = 3                            # seeds of the MLP sweeps
    # --- cost against the parameter count
    cost_dense_widths: tuple[int, ...] = (2, 4, 8, 16, 32)         # hidden widths for dense Newton
    cost_matrix_free_widths: tuple[int, ...] = (2, 8, 32, 128, 512)  # widths for Newton-CG and GD
    cost_examples: int = 64                   # batch of the timed step
    cost_cg_iterations: int = 10              # CG products per Newton-CG step (tolerance 0: all taken)
    cost_repeats: int = 7                     # timed calls per point (the median is kept)
    # --- Hessian spectrum
    spectrum_train_steps: int = 500           # Adam steps before the second spectrum
    spectrum_adam_lr: float = 0.03            # their learning rate
    spectrum_probes: int = 8                  # SLQ probes
    spectrum_iters: int = 80                  # Lanczos steps per probe (at most P)


FULL = Config()
QUICK = Config(quad_dimension=20, quad_steps=120, quad_adam_lrs=(0.01, 0.03, 0.1), quad_seeds=2,
               logistic_examples=200, logistic_features=5, logistic_steps=150, logistic_seeds=2,
               rosenbrock_budget=10000, mlp_examples=128, mlp_pool=2, mlp_hidden=6, mlp_steps=20,
               mlp_dampings=(1e-3, 1e-2, 0.1, 1.0), mlp_cg_iterations=(1, 3, 10),
               mlp_learning_rates=(0.03, 0.3, 3.0), seeds=2,
               cost_dense_widths=(4, 8, 16), cost_matrix_free_widths=(8, 64, 256), cost_repeats=5,
               spectrum_train_steps=300, spectrum_probes=4, spectrum_iters=40)


def check_config(c: Config) -> None:
    """Raise ValueError naming the first field that cannot work."""
    positive_ints = ("quad_dimension", "quad_steps", "quad_seeds", "logistic_examples", "logistic_features",
                     "logistic_steps", "logistic_seeds", "rosenbrock_budget", "mlp_examples", "mlp_pool",
                     "mlp_hidden", "mlp_steps", "mlp_eval_every", "seeds", "cost_examples", "cost_cg_iterations",
                     "cost_repeats", "spectrum_train_steps", "spectrum_probes", "spectrum_iters")
    for name in positive_ints:
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"newton config: {name} must be a positive integer, got {value!r}")
    positive_floats = ("quad_kappa", "logistic_l2", "rosenbrock_tolerance", "rosenbrock_gd_lr", "rosenbrock_adam_lr",
                       "rosenbrock_damping", "mlp_cg_damping", "spectrum_adam_lr")
    for name in positive_floats:
        value = getattr(c, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"newton config: {name} must be a positive finite number, got {value!r}")
    if c.quad_kappa < 1:
        raise ValueError(f"newton config: quad_kappa must be >= 1, got {c.quad_kappa}")
    if not 0 <= c.rosenbrock_beta < 1:
        raise ValueError(f"newton config: rosenbrock_beta must be in [0, 1), got {c.rosenbrock_beta}")
    for name in ("quad_adam_lrs", "mlp_dampings", "mlp_cg_iterations", "mlp_learning_rates", "cost_dense_widths",
                 "cost_matrix_free_widths"):
        values = getattr(c, name)
        if not isinstance(values, tuple) or not values:
            raise ValueError(f"newton config: {name} is empty; give at least one value")
        if any(not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0)
               for v in values):
            raise ValueError(f"newton config: every value of {name} must be a positive number, got {values}")
    for name in ("mlp_cg_iterations", "cost_dense_widths", "cost_matrix_free_widths"):
        if any(not isinstance(v, int) for v in getattr(c, name)):
            raise ValueError(f"newton config: {name} must hold integers, got {getattr(c, name)}")
    if c.mlp_steps % c.mlp_eval_every:
        raise ValueError(f"newton config: mlp_steps={c.mlp_steps} must be a multiple of "
                         f"mlp_eval_every={c.mlp_eval_every}")
    if 8 % c.mlp_pool:
        raise ValueError(f"newton config: mlp_pool must divide 8 (the image side), got {c.mlp_pool}")
    if c.mlp_examples > 1797:
        raise ValueError(f"newton config: mlp_examples={c.mlp_examples} exceeds the 1797 digits")
    if c.logistic_examples <= c.logistic_features:
        raise ValueError("newton config: logistic_examples must exceed logistic_features")


def _float():
    return jnp.result_type(float)


def _np_float():
    return np.dtype(_float())


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (NaN with fewer than two finite points)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def geometric_rate(distance, floor: float) -> float:
    """Per-step contraction of ``distance`` (one run, every step): ``exp`` of the slope of
    ``log distance`` over the later half of the points above ``floor``."""
    d = np.asarray(distance, np.float64)
    ok = np.flatnonzero(np.isfinite(d) & (d > floor))
    if ok.size < 2:
        return math.nan
    window = ok[ok >= ok[-1] // 2]
    window = window if window.size >= 2 else ok[-2:]
    return float(np.exp(np.polyfit(window.astype(np.float64), np.log(d[window]), 1)[0]))


# =========================================================================== quadratic


def quad_eigenvalues(kappa: float, dimension: int) -> np.ndarray:
    return np.geomspace(1.0 / kappa, 1.0, dimension)


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
    quad = data.quadratic(jax.random.key(0), quad_eigenvalues(kappa, dim), dtype=_float())
    a, w_star = quad.A, jax.random.normal(jax.random.key(1), (dim,), dtype=_float())

    def init_params(key):   # w* plus a random unit error
        e = jax.random.normal(key, (dim,), dtype=_float())
        return w_star + e / jnp.linalg.norm(e)

    def value(w):
        e = w - w_star
        return 0.5 * e @ (a @ e)

    def loss(w, xb, yb, key):   # the dummy batch is ignored: full-batch training
        return value(w)

    def evaluate(w, x, y):
        return {"loss": value(w), "distance": jnp.linalg.norm(w - w_star)}

    return Problem(init_params=init_params, loss=loss, x=np.zeros((1, 1), np.float32),
                   y=np.zeros((1,), np.int32), evaluate=evaluate)


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
    description={"loss": "1/2 (w - w*)^T A (w - w*), A = Q diag(geomspace(1/kappa, 1, dimension)) Q^T, "
                         "Q from key(0), w* ~ N(0, I) from key(1)",
                 "init": "w* + random unit vector", "settings": "Newton lr 1; GD 2/(L+mu); heavy ball Polyak; "
                                                                "Adam lr = learning_rate"})


def _quad_specs(c: Config) -> dict:
    study = dataclasses.replace(QUADRATIC, static={**QUADRATIC.static, "kappa": float(c.quad_kappa),
                                                   "dimension": c.quad_dimension})
    common = dict(seeds=c.quad_seeds, steps=c.quad_steps, eval_every=1, divergence_factor=1e6,
                  chunk_steps=c.quad_steps)
    return {"quad": SweepSpec(study, grid={"method": list(QUAD_METHODS)}, **common),
            "quad_adam": SweepSpec(study, grid={"method": ["adam"], "learning_rate": [float(v) for v in c.quad_adam_lrs]},
                                   **common)}


# =========================================================================== logistic regression


@functools.lru_cache(maxsize=8)
def logistic_setup(examples: int, features: int, l2: float) -> dict:
    """The fixed data set, its minimiser (float64 Newton on the host) and the theory constants.

    Features ``x_j ~ N(0, s_j^2)`` with scales ``s`` geometric in [1, 1/4]; labels
    ``y ~ Bernoulli(sigmoid(x . w_true + 0.3))`` (non-separable); a column of ones is appended."""
    rng = np.random.default_rng(0)
    scales = np.geomspace(1.0, 0.25, features)
    x = rng.normal(size=(examples, features)) * scales
    w_true = rng.normal(size=features) * 1.5
    y = (rng.uniform(size=examples) < 1.0 / (1.0 + np.exp(-(x @ w_true + 0.3)))).astype(np.float64)
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


def _logistic_problem(static) -> Problem:
    s = logistic_setup(int(static["examples"]), int(static["features"]), float(static["l2"]))
    dtype = _float()
    w_star = jnp.asarray(s["w_star"], dtype)
    l2 = float(static["l2"])

    def init_params(key):
        return 0.5 * jax.random.normal(key, w_star.shape, dtype=dtype)

    def loss(w, xb, yb, key):
        z = xb @ w
        return jnp.mean(jax.nn.softplus(z) - yb * z) + 0.5 * l2 * (w @ w)

    def evaluate(w, x, y):
        return {"loss": loss(w, x, y, None), "error": jnp.linalg.norm(w - w_star)}

    return Problem(init_params=init_params, loss=loss, x=s["x"].astype(_np_float()), y=s["y"].astype(_np_float()),
                   evaluate=evaluate)


def _logistic_optimizer(config):
    if config["method"] == "newton":
        return optim.newton(1.0)
    s = logistic_setup(int(config["examples"]), int(config["features"]), float(config["l2"]))
    return optim.sgd(s["gd_lr"])


LOGISTIC = Study(
    "newton_logistic", _logistic_problem, _logistic_optimizer, hyperparameters={"learning_rate": 1.0},
    static={"batch_size": 200, "examples": 200, "features": 5, "l2": 1e-2, "method": "newton"},
    description={"data": "x_j ~ N(0, s_j^2), s geometric in [1, 1/4], y ~ Bernoulli(sigmoid(x w_true + 0.3)), "
                         "numpy default_rng(0), ones column appended",
                 "loss": "mean softplus(z) - y z + l2/2 |w|^2, full batch",
                 "init": "N(0, 0.5^2)", "settings": "Newton lr 1; GD 2/(l_max + l_min) of H(w*)"})


def _logistic_spec(c: Config) -> SweepSpec:
    study = dataclasses.replace(LOGISTIC, static={"batch_size": c.logistic_examples, "examples": c.logistic_examples,
                                                  "features": c.logistic_features, "l2": float(c.logistic_l2),
                                                  "method": "newton"})
    return SweepSpec(study, grid={"method": ["newton", "gd"]}, seeds=c.logistic_seeds, steps=c.logistic_steps,
                     eval_every=1, divergence_factor=1e6, chunk_steps=c.logistic_steps)


def quadratic_convergence_ratios(errors, floor: float) -> np.ndarray:
    """``e_{k+1} / e_k^2`` for every k where both errors lie above ``floor`` (NaN elsewhere)."""
    e = np.asarray(errors, np.float64)
    before, after = e[..., :-1], e[..., 1:]
    ok = (before > floor) & (after > floor) & np.isfinite(before) & np.isfinite(after)
    return np.where(ok, after / np.where(ok, before, 1.0) ** 2, np.nan)


# =========================================================================== Rosenbrock


def rosenbrock(w):
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def _rosenbrock_optimizer(method: str, c: Config):
    if method == "newton":
        return optim.newton(1.0, linesearch=optim.backtracking_linesearch())
    if method == "damped_newton":
        return optim.damped_newton(1.0, c.rosenbrock_damping, adaptive=True)
    if method == "gd":
        return optim.sgd(c.rosenbrock_gd_lr)
    if method == "heavy_ball":
        return optim.sgd(c.rosenbrock_gd_lr, momentum=c.rosenbrock_beta)
    if method == "adam":
        return optim.adam(c.rosenbrock_adam_lr)
    raise ValueError(f"Rosenbrock method must be one of {ROSENBROCK_METHODS}, got {method!r}")


def rosenbrock_paths(c: Config) -> dict:
    """Paths ``(budget + 1, 2)`` of every method from (-1.2, 1) and the first iteration with
    ``||w - (1, 1)|| < tolerance`` (-1 when the budget ran out first)."""
    out = {"paths": {}, "iterations": {}, "final_distance": {}}
    for method in ROSENBROCK_METHODS:
        opt = _rosenbrock_optimizer(method, c)
        w0 = jnp.asarray([-1.2, 1.0], _float())

        def body(carry, _, opt=opt):
            w, state = carry
            value, grad = jax.value_and_grad(rosenbrock)(w)
            updates, state = opt.update(grad, state, w, value=value, grad=grad, value_fn=rosenbrock)
            w = optim.apply_updates(w, updates)
            return (w, state), w

        run = jax.jit(lambda w: jax.lax.scan(body, (w, opt.init(w)), None, length=c.rosenbrock_budget)[1])
        path = np.concatenate([np.asarray(w0, np.float64)[None], np.asarray(run(w0), np.float64)])
        distance = np.linalg.norm(path - 1.0, axis=1)
        hit = np.flatnonzero(distance < c.rosenbrock_tolerance)
        out["paths"][method] = path
        out["iterations"][method] = int(hit[0]) if hit.size else -1
        out["final_distance"][method] = float(distance[-1])
    return out


# =========================================================================== digits MLP


@functools.lru_cache(maxsize=4)
def mlp_data(examples: int, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random subset of the digits (numpy default_rng(0)), images average-pooled by ``pool``."""
    x, y = data.load_digits(flatten=False)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int32)
    x = x.reshape(x.shape[0], 8, 8)
    side = 8 // pool
    x = x.reshape(x.shape[0], side, pool, side, pool).mean(axis=(2, 4)).reshape(x.shape[0], side * side)
    idx = np.random.default_rng(0).permutation(x.shape[0])[:examples]
    return x[idx], y[idx]


def _mlp_net(hidden: int):
    return nets.mlp([int(hidden), 10], activation="tanh")


def _mlp_problem(static) -> Problem:
    x, y = mlp_data(int(static["examples"]), int(static["pool"]))
    net = _mlp_net(static["hidden"])

    def loss(params, xb, yb, key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)

    def init_params(key):
        return net.init(key, (-1, x.shape[1]), dtype=_float())[1]

    return Problem(init_params=init_params, loss=loss, x=x.astype(_np_float()), y=y,
                   evaluate=classification_metrics(net.apply))


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


MLP = Study(
    "newton_mlp", _mlp_problem, _mlp_optimizer, hyperparameters={"learning_rate": 1.0, "damping": 1e-2},
    static={"batch_size": 256, "examples": 256, "pool": 1, "hidden": 4, "method": "damped_newton",
            "max_cg_iterations": 10},
    description={"data": "UCI digits in [0, 1], average-pooled by `pool`, a random subset (default_rng(0))",
                 "net": "mlp in-[hidden]-10 tanh, glorot normal", "loss": "softmax cross-entropy, full batch",
                 "newton_cg": "cg_tolerance 0.5, Armijo backtracking line search", "evaluate": "training set"})


def param_count(c: Config) -> int:
    d_in = (8 // c.mlp_pool) ** 2
    return d_in * c.mlp_hidden + c.mlp_hidden + c.mlp_hidden * 10 + 10


def _mlp_specs(c: Config) -> dict:
    study = dataclasses.replace(MLP, static={**MLP.static, "batch_size": c.mlp_examples, "examples": c.mlp_examples,
                                             "pool": c.mlp_pool, "hidden": c.mlp_hidden})
    common = dict(seeds=c.seeds, steps=c.mlp_steps, eval_every=c.mlp_eval_every, divergence_factor=10.0,
                  chunk_steps=c.mlp_steps)
    return {
        "damping": SweepSpec(study, grid={"method": list(MLP_SECOND_ORDER),
                                          "damping": [float(v) for v in c.mlp_dampings]}, **common),
        "cg": SweepSpec(study, grid={"method": ["newton_cg"], "max_cg_iterations": [int(k) for k in c.mlp_cg_iterations],
                                     "damping": [float(c.mlp_cg_damping)]}, **common),
        "first_order": SweepSpec(study, grid={"method": list(FIRST_ORDER),
                                              "learning_rate": [float(v) for v in c.mlp_learning_rates]}, **common),
    }


# =========================================================================== cost against P


def _cost_step(method: str, loss, c: Config):
    if method == "newton":
        opt = optim.newton(1.0)
    elif method == "newton_cg":
        opt = optim.newton_cg(1.0, 0.0, 0.0, max_cg_iterations=c.cost_cg_iterations)
    else:
        opt = optim.sgd(0.1)

    def step(params, state):
        value, grad = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optim.apply_updates(params, updates), state

    return step, opt


def _memory_bytes(compiled) -> float:
    """temp + argument + output bytes of a compiled executable; NaN when the backend gives none."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- some backends do not implement it
        return math.nan
    if stats is None:
        return math.nan
    fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    values = [getattr(stats, f, None) for f in fields]
    return math.nan if any(v is None for v in values) else float(sum(values))


def _time_call(fn, args, repeats: int) -> tuple[float, float]:
    """(fastest, median) seconds of ``repeats`` calls after a warm-up call.  The fastest is the
    one least disturbed by other processes on a shared machine; the fits use it."""
    jax.block_until_ready(fn(*args))   # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.min(times)), float(np.median(times))


def cost_measurements(c: Config) -> dict:
    """Seconds per step and compiled-step bytes of dense Newton, Newton-CG and GD (and the LU
    solve alone) on the digits MLP 64-[width]-10 with a batch of ``cost_examples``.  Slopes are
    fitted on the three largest P (at small P fixed overheads dominate)."""
    x, y = mlp_data(c.cost_examples, 1)
    x, y = jnp.asarray(x, _float()), jnp.asarray(y)
    out = {}
    plan = [("newton", c.cost_dense_widths), ("solve", c.cost_dense_widths),
            ("newton_cg", c.cost_matrix_free_widths), ("gd", c.cost_matrix_free_widths)]
    for method, widths in plan:
        rows = []
        for width in widths:
            net = _mlp_net(width)
            params = net.init(jax.random.key(0), (-1, x.shape[1]), dtype=_float())[1]
            p = int(ravel_pytree(params)[0].size)
            if method == "solve":   # an SPD system of the same size
                m = jax.random.normal(jax.random.key(1), (p, p), _float())
                args = (m @ m.T + p * jnp.eye(p, dtype=_float()), jnp.ones((p,), _float()))
                compiled = jax.jit(jnp.linalg.solve).lower(*args).compile()
            else:
                def loss(q, net=net):
                    return losses.softmax_cross_entropy_with_integer_labels(net.apply(q, x), y)
                step, opt = _cost_step(method, loss, c)
                args = (params, opt.init(params))
                compiled = jax.jit(step).lower(*args).compile()
            rows.append((p, *_time_call(compiled, args, c.cost_repeats), _memory_bytes(compiled)))
        rows = np.asarray(rows, np.float64)
        out[method] = {"P": rows[:, 0], "seconds": rows[:, 1], "median_seconds": rows[:, 2], "bytes": rows[:, 3],
                       "time_slope": loglog_slope(rows[-3:, 0], rows[-3:, 1]),
                       "memory_slope": loglog_slope(rows[-3:, 0], rows[-3:, 3])}
    return out


COST_THEORY = {"newton": {"time": "2 (forming H: P HVPs) to 3 (solve)", "memory": 2.0},
               "solve": {"time": 3.0, "memory": 2.0},
               "newton_cg": {"time": 1.0, "memory": 1.0},
               "gd": {"time": 1.0, "memory": 1.0}}


# =========================================================================== Hessian spectrum


def spectrum(c: Config) -> dict:
    """SLQ densities and exact eigenvalues of the MLP loss's Hessian at the seed-0 initial
    point of the sweeps and after ``spectrum_train_steps`` full-batch Adam steps."""
    x, y = mlp_data(c.mlp_examples, c.mlp_pool)
    x, y = jnp.asarray(x, _float()), jnp.asarray(y)
    net = _mlp_net(c.mlp_hidden)

    def loss(params):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, x), y)

    init = net.init(jax.random.fold_in(jax.random.key(0), 0), (-1, x.shape[1]), dtype=_float())[1]
    opt = optim.adam(c.spectrum_adam_lr)

    trained, train_curve = train.fit(loss, init, opt, c.spectrum_train_steps)
    p = int(ravel_pytree(init)[0].size)
    iters = min(c.spectrum_iters, p)

    @jax.jit
    def analyse(params):
        slq = curvature.spectral_density(loss, params, num_probes=c.spectrum_probes, num_iters=iters,
                                         key=jax.random.key(7), num_points=512)
        exact = jnp.linalg.eigvalsh(curvature.hessian_matrix(loss, params))
        top = curvature.top_eigenvalues(loss, params, k=1, num_iters=iters, key=jax.random.key(8), which="both")
        return slq, exact, top.eigenvalues, loss(params)

    out = {"P": p, "train_curve": np.asarray(train_curve, np.float64)}
    for name, params in (("init", init), ("trained", trained)):
        slq, exact, extremes, value = analyse(params)
        nodes, weights = np.asarray(slq.nodes, np.float64), np.asarray(slq.weights, np.float64)
        exact = np.asarray(exact, np.float64)
        out[name] = {"grid": np.asarray(slq.grid, np.float64), "density": np.asarray(slq.density, np.float64),
                     "nodes": nodes, "weights": weights, "exact": exact, "loss": float(value),
                     "slq_top": float(nodes.max()), "slq_bottom": float(nodes.min()),
                     "lanczos_bottom": float(extremes[0]), "lanczos_top": float(extremes[-1]),
                     "dense_top": float(exact[-1]), "dense_bottom": float(exact[0]),
                     "slq_negative_mass": float(weights[nodes < 0].sum()),
                     "dense_negative_fraction": float(np.mean(exact < 0))}
    return out


# =========================================================================== run / load


def specs(c: Config) -> dict:
    return {**_quad_specs(c), "logistic": _logistic_spec(c), **_mlp_specs(c)}


def _final(result, metric="eval_loss") -> np.ndarray:
    """Final metric of every run, +inf where the run diverged."""
    return np.where(result.diverged_step >= 0, np.inf, result.final[metric])


def analyse(c: Config, sweeps: dict, extra: dict) -> dict:
    """The results dict from the sweeps and the direct (non-sweep) measurements."""
    quad, qadam = sweeps["quad"], sweeps["quad_adam"]
    q_dist = quad.curves["eval_distance"]                       # (methods, seeds, steps)
    q_first = quad.curves["train_loss"][..., 0]                 # loss before step 1, (methods, seeds)
    a_final = np.median(_final(qadam, "eval_distance")[0], axis=-1)  # (lrs,)
    best_adam = int(np.nanargmin(np.where(np.isfinite(a_final), a_final, np.nan)))
    floor = 1e3 * float(np.finfo(_np_float()).eps)
    q_rates = {m: float(np.median([geometric_rate(q_dist[i, s], floor) for s in range(q_dist.shape[1])]))
               for i, m in enumerate(QUAD_METHODS) if m != "newton"}
    newton_i = QUAD_METHODS.index("newton")
    quadratic = {
        "steps": quad.eval_steps, "methods": QUAD_METHODS, "distance": q_dist,
        "initial_distance": np.ones(q_dist.shape[1]),
        "adam_distance": qadam.curves["eval_distance"][0, best_adam], "adam_lr": float(c.quad_adam_lrs[best_adam]),
        "newton_one_step_loss_ratio": quad.curves["eval_loss"][newton_i, :, 0] / q_first[newton_i],
        "newton_one_step_distance": q_dist[newton_i, :, 0],
        "measured_rate": q_rates,
        "theory_rate": {m: quad_theory_rate(m, c.quad_kappa) for m in q_rates},
        "kappa": c.quad_kappa,
    }

    lg = sweeps["logistic"]
    setup = logistic_setup(c.logistic_examples, c.logistic_features, float(c.logistic_l2))
    errors = lg.curves["eval_error"]                            # (2, seeds, steps)
    e0 = np.linalg.norm(_logistic_initial_points(c) - setup["w_star"][None], axis=1)  # (seeds,)
    full = np.concatenate([np.broadcast_to(e0, errors.shape[:2])[..., None], errors], axis=-1)
    err_floor = 100 * float(np.finfo(_np_float()).eps) * max(1.0, float(np.linalg.norm(setup["w_star"])))
    ratios = quadratic_convergence_ratios(full[0], err_floor)  # Newton, (seeds, steps)
    target = max(1e-10, 10 * err_floor)   # 1e-10 in float64; float32 stops near 1e-6
    below = full[0] < target
    logistic = {
        "errors": full, "steps": np.arange(full.shape[-1]), "newton_ratios": ratios,
        "newton_max_ratio": float(np.nanmax(ratios)) if np.isfinite(ratios).any() else math.nan,
        "iterations_to_target": np.where(below.any(-1), below.argmax(-1), -1), "target": target,
        "gd_measured_rate": float(np.median([geometric_rate(full[1, s], err_floor) for s in range(full.shape[1])])),
        "floor": err_floor,
        **{k: setup[k] for k in ("kappa", "gd_lr", "gd_rate", "hessian_lipschitz", "bound_global",
                                 "bound_asymptotic", "grad_norm_at_star")},
    }

    damp, cg, first = sweeps["damping"], sweeps["cg"], sweeps["first_order"]
    dampings = np.asarray(damp.axes["damping"], np.float64)
    d_final = _final(damp)                                       # (2, dampings, seeds)
    d_median = np.median(d_final, axis=-1)
    cg_final = _final(cg)[0, :, 0]                               # (caps, seeds)
    f_final = _final(first)                                      # (2, lrs, seeds)
    curves = {}
    for i, m in enumerate(MLP_SECOND_ORDER):
        j = int(np.argmin(d_median[i]))
        curves[m] = {"setting": f"damping {dampings[j]:g}", "loss": damp.curves["eval_loss"][i, j]}
    k = int(np.argmin(np.median(cg_final, axis=-1)))
    curves["newton_cg"] = {"setting": f"{c.mlp_cg_iterations[k]} CG its", "loss": cg.curves["eval_loss"][0, k, 0]}
    for i, m in enumerate(FIRST_ORDER):
        j = int(np.argmin(np.median(f_final[i], axis=-1)))
        curves[m] = {"setting": f"lr {c.mlp_learning_rates[j]:g}", "loss": first.curves["eval_loss"][i, j]}
    mlp = {"P": param_count(c), "dampings": dampings, "damping_final": d_final,
           "best_damping": {m: float(dampings[int(np.argmin(d_median[i]))]) for i, m in enumerate(MLP_SECOND_ORDER)},
           "cg_iterations": np.asarray(c.mlp_cg_iterations), "cg_final": cg_final,
           "learning_rates": np.asarray(c.mlp_learning_rates), "first_order_final": f_final,
           "steps": damp.eval_steps, "curves": curves,
           "best_final": {m: float(np.median(v["loss"][..., -1])) for m, v in curves.items()}}
    return {"config": dataclasses.asdict(c), "quadratic": quadratic, "logistic": logistic, "mlp": mlp,
            "rosenbrock": extra["rosenbrock"], "cost": extra["cost"], "spectrum": extra["spectrum"],
            "sweeps": sweeps}


def _logistic_initial_points(c: Config) -> np.ndarray:
    """The sweep's initial points, rebuilt from the seeds as the engine draws them."""
    problem = _logistic_problem({"examples": c.logistic_examples, "features": c.logistic_features,
                                 "l2": float(c.logistic_l2)})
    return np.stack([np.asarray(problem.init_params(jax.random.fold_in(jax.random.key(s), 0)), np.float64)
                     for s in range(c.logistic_seeds)])


def _direct(c: Config) -> dict:
    return {"rosenbrock": rosenbrock_paths(c), "cost": cost_measurements(c), "spectrum": spectrum(c)}


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch) the six sweeps, then the direct parts (Rosenbrock paths, cost, spectrum)."""
    check_config(config)
    db = store if isinstance(store, Store) else Store(store)
    try:
        sweeps = {name: run_sweep(spec, store=db, progress=progress, rerun=rerun)
                  for name, spec in specs(config).items()}
    finally:
        if not isinstance(store, Store):
            db.close()
    return analyse(config, sweeps, _direct(config))


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` with the sweeps read from the database (LookupError if one is
    missing); the direct parts (a few seconds: 2-D paths, timings, spectra) are recomputed."""
    from studies import stored_sweep
    check_config(config)
    sweeps = {name: stored_sweep(spec, store) for name, spec in specs(config).items()}
    return analyse(config, sweeps, _direct(config))


# =========================================================================== plots


def plot(results: dict, outdir="figures") -> list[Path]:
    """The study's five figures (drawn by :mod:`studies.newton_figures`)."""
    from studies import newton_figures
    return newton_figures.plot(results, outdir)


# =========================================================================== report


def report(results: dict) -> str:
    q, lg, r, m, cost, s = (results[k] for k in ("quadratic", "logistic", "rosenbrock", "mlp", "cost", "spectrum"))
    cfg = results["config"]
    lines = ["| part | quantity | measured | theory |", "|---|---|---|---|"]
    lines.append(f"| quadratic | Newton f(w_1) / f(w_0), lr 1 (max over starts) | "
                 f"{np.max(q['newton_one_step_loss_ratio']):.2e} | 0 (rounding) |")
    for meth, rate in q["measured_rate"].items():
        lines.append(f"| quadratic | {LABELS[meth]} rate per step | {rate:.4f} | {q['theory_rate'][meth]:.4f} |")
    lines.append(f"| quadratic | Adam best lr / final distance | {q['adam_lr']:g} / "
                 f"{np.median(q['adam_distance'][:, -1]):.2e} | - |")
    lines.append(f"| logistic | Newton max e_k+1 / e_k^2 | {lg['newton_max_ratio']:.3g} | <= {lg['bound_asymptotic']:.3g} "
                 f"near w*; <= {lg['bound_global']:.3g} everywhere |")
    its = lg["iterations_to_target"]
    lines.append(f"| logistic | Newton iterations to e < {lg['target']:.1g} (each start) | "
                 f"{', '.join(str(int(i)) for i in its)} | a few |")
    lines.append(f"| logistic | GD rate per step | {lg['gd_measured_rate']:.4f} | {lg['gd_rate']:.4f} |")
    for meth in ROSENBROCK_METHODS:
        its = r["iterations"][meth]
        shown = str(its) if its >= 0 else f"> {cfg['rosenbrock_budget']} (end {r['final_distance'][meth]:.1e})"
        lines.append(f"| Rosenbrock | {LABELS[meth]}: iterations to ||w - w*|| < {cfg['rosenbrock_tolerance']:g} "
                     f"| {shown} | {'superlinear: tens' if 'newton' in meth else 'linear: thousands'} |")
    for meth, damping in m["best_damping"].items():
        lines.append(f"| MLP (P = {m['P']}) | {LABELS[meth]}: best damping / loss | {damping:g} / "
                     f"{m['best_final'][meth]:.3g} | between 0 (Newton) and inf (GD) |")
    lines.append(f"| MLP | Newton-CG best / loss | {m['curves']['newton_cg']['setting']} / "
                 f"{m['best_final']['newton_cg']:.3g} | - |")
    for meth in FIRST_ORDER:
        lines.append(f"| MLP | {LABELS[meth]} best / loss | {m['curves'][meth]['setting']} / "
                     f"{m['best_final'][meth]:.3g} | - |")
    for meth, row in cost.items():
        theory = COST_THEORY[meth]
        lines.append(f"| cost | {LABELS[meth]}: time / memory slope vs P (P {int(row['P'][0])}-{int(row['P'][-1])}) "
                     f"| {row['time_slope']:.2f} / {row['memory_slope']:.2f} | {theory['time']} / {theory['memory']:g} |")
    for name in ("init", "trained"):
        part = s[name]
        lines.append(f"| spectrum ({name}) | top eigenvalue: SLQ / Lanczos / dense | {part['slq_top']:.4g} / "
                     f"{part['lanczos_top']:.4g} / {part['dense_top']:.4g} | equal |")
        lines.append(f"| spectrum ({name}) | bottom eigenvalue: SLQ / dense; negative mass SLQ / dense | "
                     f"{part['slq_bottom']:.3g} / {part['dense_bottom']:.3g}; {part['slq_negative_mass']:.3f} / "
                     f"{part['dense_negative_fraction']:.3f} | equal in expectation |")
    return "\n".join(lines)
