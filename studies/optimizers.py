"""Optimizers compared: every first-order optimizer of ``lab.optim`` plus Newton-CG and
L-BFGS on four problems, each with its learning rate tuned on a log grid.

What is measured.  For each problem, one :func:`lab.sweep.run_sweep` with the grid
``optimizer`` (static: one compiled program per optimizer) x ``lr_factor`` (dynamic,
vmapped) x seeds.  The learning rate of a run is ``centre x lr_factor``, where the centre
depends on the problem and on the optimizer's *family* (:data:`FAMILY`, :data:`LR_CENTRES`):
gradient-scaled methods (SGD...) want a rate near ``1 / L``, sign-like and adaptive methods
(Adam...) a per-coordinate step, trust-ratio methods (LAMB, LARS) a relative step, and
the factors ``10^(-decades/2) .. 10^(decades/2)`` (``lr_points`` of them, geometric)
span ``lr_decades`` decades around it.  Some optimizers' "learning rate" means something
else; :data:`TUNED` says what is swept for each and :data:`SETTINGS` lists every other knob
(library defaults unless stated).

For each optimizer the best learning rate is the one with the lowest median (over seeds)
final loss, a diverged run counting as +inf (ties go to the fewer median steps to
target).  At that rate the study reports the median final loss with its interquartile
range, the steps to target (the first evaluation whose loss is at most the problem's
target; median over seeds, "not reached" when more than half the seeds miss), and the
fraction of seeds that diverged.  A run the engine froze (loss not finite, or above
``divergence_factor`` times its first loss) counts as diverged unless it had already reached
the target: then it is a numerical breakdown after convergence (L-BFGS in float32 hits 0/0
once its secant pairs underflow) and its last finite loss stands; the report lists these.
The loss is the full training loss (``eval_loss``, the
whole training set for the two MLPs); the MLPs also report held-out accuracy.

Problems (noise-free ones full batch):

* ``quadratic``: ``f(e) = 1/2 e^T A e`` in error coordinates (the minimiser at the origin,
  ``f* = 0``), ``A`` from :func:`lab.data.quadratic` with eigenvalues geometric in
  ``[1/kappa, 1]``; the seed draws the start ``e_0 ~ N(0, I / d)``.
* ``rosenbrock``: ``(1 - x)^2 + 100 (y - x^2)^2`` from ``(-1.2, 1) + sigma N(0, I)``.
* ``digits``: 64-32-10 tanh MLP, softmax cross-entropy, mini-batch 64 on 75% of the
  1797 UCI 8x8 digits; held-out accuracy on the other 25%.
* ``spirals``: 2-h-h-2 tanh MLP on two spirals (:func:`lab.data.two_spirals`), full
  batch; held-out accuracy on spirals drawn from another key.

Theory.  On the quadratic, gradient descent with any fixed rate contracts the error by at
best ``(kappa - 1)/(kappa + 1)`` per step, and while the step count stays below the dimension no
method in the gradient's Krylov span can beat ``(sqrt kappa - 1)/(sqrt kappa + 1)`` in the worst
case (Nesterov's lower bound; heavy ball reaches that rate with Polyak's tuning; this
study's heavy ball keeps ``beta = 0.9`` and so is slower); the loss contracts as the square of
these.  The measured rate is ``exp`` of the slope of ``log ||e_t||`` over the later half of
the evaluations; the study also gives the exact rate at the chosen grid point
(``max_i |1 - lr lambda_i|`` for GD, the 2x2 spectral radius for heavy ball).  Newton-CG and
L-BFGS are outside that class: their steps cost more (a Newton-CG step is one gradient plus
up to ``max_cg_iterations`` Hessian-vector products; an L-BFGS step one gradient plus the line
search's loss evaluations).  The sweep counts them in every run: for these two methods the
parameters carry a counter the loss ignores (:func:`counting`), recorded as the metric
``eval_evaluations``; the report gives the count per step beside the step counts.

Compile time.  Each (problem, optimizer) is one compiled program: about 1 s of XLA time on a
2-core CPU for the toy problems and about 5 s for the MLPs, more than the training itself.
So :data:`QUICK` runs all 24 optimizers on the quadratic and Rosenbrock but only
:data:`QUICK_NET_OPTIMIZERS` on the two MLPs; :data:`FULL` runs all 24 everywhere.
(Putting every optimizer in one program behind a ``lax.switch`` on a vmapped index was
measured and is worse: under ``vmap`` every branch runs, and XLA compiles the sum anyway.)
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, optim, plotting, train
from lab.store import Store
from lab.sweep import Problem, Study, SweepSpec, run_sweep
from studies.momentum import measured_rate  # the momentum study's rate reading

DESCRIPTION = ("every lab.optim first-order optimizer plus Newton-CG and L-BFGS, learning rate tuned on a log "
               "grid, on a quadratic, Rosenbrock, a digits MLP and a spirals MLP")
PROBLEMS = ("quadratic", "rosenbrock", "digits", "spirals")
SECOND_ORDER = ("newton_cg", "lbfgs")
ALL_OPTIMIZERS = tuple(optim.OPTIMIZERS) + SECOND_ORDER
FIGURES = {f"optimizers_{p}": f"{p}: median final loss of every optimizer at its best learning rate (ranked bars "
                              f"with IQR), and loss against step of the best few (median, IQR band over seeds)"
           for p in PROBLEMS}
FIGURES["optimizers_quadratic"] += "; dashed: the GD and heavy-ball rate bounds"

# What sets the scale of an optimizer's learning rate.
FAMILY = {
    **{name: "gradient" for name in ("sgd", "heavy_ball", "noisy_sgd", "polyak_sgd")},
    **{name: "adaptive" for name in ("adagrad", "rmsprop", "adam", "adamw", "amsgrad", "adamax", "nadam",
                                     "nadamw", "radam", "adabelief", "yogi", "lion", "sign_sgd", "signum",
                                     "rprop")},
    "lamb": "trust", "lars": "lars", "adadelta": "adadelta",
    "newton_cg": "second_order", "lbfgs": "second_order",
}

# Grid centre of each family on each problem (the grid is centre x lr_factor).
LR_CENTRES = {
    "quadratic": {"gradient": 1.0, "adaptive": 1e-2, "trust": 1e-2, "lars": 1.0, "adadelta": 1.0,
                  "second_order": 0.1},
    "rosenbrock": {"gradient": 1e-3, "adaptive": 1e-2, "trust": 1e-2, "lars": 1.0, "adadelta": 1.0,
                   "second_order": 0.1},
    "digits": {"gradient": 0.3, "adaptive": 3e-3, "trust": 1e-2, "lars": 1.0, "adadelta": 1.0,
               "second_order": 0.1},
    "spirals": {"gradient": 1.0, "adaptive": 1e-2, "trust": 1e-2, "lars": 1.0, "adadelta": 1.0,
                "second_order": 0.1},
}

# What the swept "learning rate" is for each optimizer (the default: the step multiplier).
TUNED = {name: "learning rate" for name in ALL_OPTIMIZERS}
TUNED.update({
    "rprop": "initial step size (Rprop adapts it)",
    "adadelta": "multiplier of the AdaDelta step (the paper uses 1)",
    "polyak_sgd": "max_learning_rate, the cap on the Polyak step (f - 0) / ||g||^2",
    "heavy_ball": "learning rate of the EMA form (= SGD lr x (1 - beta))",
    "lamb": "learning rate (relative step per layer)",
    "lars": "learning rate (relative step lr x trust coefficient per layer, before momentum)",
    "newton_cg": "learning rate (step fraction; no line search)",
    "lbfgs": "learning rate (scales the direction; then a backtracking Armijo search from t = 1)",
})

# Every knob besides the learning rate (constructor keywords); empty means library defaults.
NOISY_SGD_KEY = 0
SETTINGS = {name: {} for name in ALL_OPTIMIZERS}
SETTINGS.update({
    "heavy_ball": {"beta": 0.9},
    "adamw": {"weight_decay": 1e-4},
    "nadamw": {"weight_decay": 1e-4},
    "lamb": {"weight_decay": 0.0},
    "lion": {"weight_decay": 1e-3},
    "lars": {"momentum": 0.9, "trust_coefficient": 1e-3},
    "noisy_sgd": {"eta": 0.01, "gamma": 0.55},
    "polyak_sgd": {"f_min": 0.0, "scaling": 1.0},
    "newton_cg": {"damping": 0.0, "cg_tolerance": 0.5, "max_cg_iterations": 10},
    "lbfgs": {"memory_size": 10},
})
SETTING_NOTES = {
    "sgd": "plain gradient descent (no momentum)",
    "noisy_sgd": f"noise key {NOISY_SGD_KEY} for every run (the seed changes init and batches, not the noise)",
    "lbfgs": "backtracking_linesearch() defaults (c = 1e-4, halving, 30 reductions)",
}
LINE_STYLES = ("-", "--", "-.", ":")


@dataclasses.dataclass(frozen=True)
class Config:
    optimizers: tuple[str, ...] = ALL_OPTIMIZERS   # on quadratic and Rosenbrock: optim.OPTIMIZERS + newton_cg, lbfgs
    net_optimizers: tuple[str, ...] = ALL_OPTIMIZERS  # on the digits and spirals MLPs
    problems: tuple[str, ...] = PROBLEMS        # which of the four problems to run
    lr_points: int = 6                          # learning rates per optimizer, geometric (6 x 5 seeds = 30
                                                #   runs: two vmapped batches of at most 16 on a CPU)
    lr_decades: float = 4.0                     # decades the grid spans, centred on the family's centre
    seeds: int = 5                              # seeds per (optimizer, learning rate)
    # --- quadratic
    quad_dimension: int = 20                    # eigenvalues geometric in [1/kappa, 1]
    quad_kappa: float = 100.0                   # condition number
    quad_steps: int = 600
    quad_eval_every: int = 10
    quad_target: float = 1e-6                   # loss target (start: about 0.5 mean eigenvalue ~ 0.1)
    # --- Rosenbrock
    rosen_start_noise: float = 0.1              # start (-1.2, 1) + this x N(0, I)
    rosen_steps: int = 3000
    rosen_eval_every: int = 50
    rosen_target: float = 1e-3
    # --- digits MLP
    digits_hidden: int = 32
    digits_batch_size: int = 64
    digits_steps: int = 1500
    digits_eval_every: int = 50
    digits_target: float = 0.1                  # training cross-entropy target
    # --- spirals MLP
    spirals_hidden: int = 32
    spirals_points: int = 200                   # per arm: 400 training points, full batch
    spirals_steps: int = 2000
    spirals_eval_every: int = 50
    spirals_target: float = 0.1                 # training cross-entropy target


FULL = Config()
# The quick run compiles 24 programs on each toy problem but only 5 on each MLP, whose
# programs take about 5 s each to compile on a 2-core CPU (the toy ones about 1 s).
QUICK_NET_OPTIMIZERS = ("sgd", "heavy_ball", "adam", "newton_cg", "lbfgs")
QUICK = Config(net_optimizers=QUICK_NET_OPTIMIZERS, lr_points=5, quad_steps=400, rosen_steps=1000, rosen_eval_every=20,
               digits_steps=400, digits_eval_every=20, spirals_hidden=16, spirals_steps=600, spirals_eval_every=20)


# --------------------------------------------------------------------------- config checks


def check_config(c: Config) -> None:
    """Raise a ValueError naming the first unusable setting of ``c``."""
    if not isinstance(c, Config):
        raise TypeError(f"expected an optimizers.Config, got {type(c).__name__}")
    for field in ("optimizers", "net_optimizers"):
        names = getattr(c, field)
        if not names:
            raise ValueError(f"config.{field} is empty; name at least one optimizer")
        unknown = [n for n in names if n not in ALL_OPTIMIZERS]
        if unknown:
            raise ValueError(f"config.{field}: unknown optimizer(s) {unknown}; known: {', '.join(ALL_OPTIMIZERS)}")
        if len(set(names)) != len(names):
            raise ValueError(f"config.{field} repeats a name: {names}")
    if not c.problems:
        raise ValueError("config.problems is empty; name at least one of " + ", ".join(PROBLEMS))
    bad = [p for p in c.problems if p not in PROBLEMS]
    if bad:
        raise ValueError(f"config.problems: unknown problem(s) {bad}; known: {', '.join(PROBLEMS)}")
    if not isinstance(c.lr_points, int) or c.lr_points < 1:
        raise ValueError(f"config.lr_points must be an int >= 1 (the learning-rate grid is empty otherwise), "
                         f"got {c.lr_points!r}")
    if not c.lr_decades >= 0:
        raise ValueError(f"config.lr_decades must be >= 0, got {c.lr_decades!r}")
    if not isinstance(c.seeds, int) or c.seeds < 1:
        raise ValueError(f"config.seeds must be an int >= 1, got {c.seeds!r}")
    for p in c.problems:
        steps, every = getattr(c, f"{_prefix(p)}_steps"), getattr(c, f"{_prefix(p)}_eval_every")
        if steps < 1 or every < 1 or steps % every:
            raise ValueError(f"{p}: steps ({steps}) and eval_every ({every}) must be positive and steps a multiple "
                             f"of eval_every")
        if not getattr(c, f"{_prefix(p)}_target") > 0:
            raise ValueError(f"{p}: the loss target must be > 0")


def optimizers_for(problem: str, c: Config) -> tuple:
    return c.net_optimizers if problem in ("digits", "spirals") else c.optimizers


def _prefix(problem: str) -> str:
    return {"quadratic": "quad", "rosenbrock": "rosen"}.get(problem, problem)


def lr_factors(c: Config) -> np.ndarray:
    """The dynamic grid: ``lr_points`` factors geometric over ``lr_decades`` decades around 1."""
    if c.lr_points == 1:
        return np.ones(1)
    half = c.lr_decades / 2
    return np.logspace(-half, half, c.lr_points)


def learning_rate(problem: str, name: str, factor):
    """The learning rate of optimizer ``name`` at grid ``factor`` on ``problem``."""
    return LR_CENTRES[problem][FAMILY[name]] * factor


# --------------------------------------------------------------------------- optimizers


def build_optimizer(name: str, lr):
    """Optimizer ``name`` with learning rate (or what :data:`TUNED` says) ``lr``, every other
    knob from :data:`SETTINGS`.  ``lr`` may be a tracer."""
    if name not in ALL_OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(ALL_OPTIMIZERS)}")
    kw = dict(SETTINGS[name])
    if name == "polyak_sgd":
        return optim.polyak_sgd(max_learning_rate=lr, **kw)
    if name == "noisy_sgd":
        return optim.noisy_sgd(lr, key=NOISY_SGD_KEY, **kw)
    if name == "newton_cg":
        return optim.newton_cg(lr, **kw)
    if name == "lbfgs":
        return optim.lbfgs(lr, **kw)
    return getattr(optim, name)(lr, **kw)


def counting(name: str, opt):
    """Second-order optimizer ``name`` on parameters ``(w, evaluations)``: ``opt`` sees only
    ``w``; ``evaluations`` (a float32 counter the loss ignores) grows each step by the
    Hessian-vector products of Newton-CG's CG solve or the loss evaluations of L-BFGS's
    line search, so the sweep records them for every run (as ``eval_evaluations``).
    A diverged step is discarded by the engine, counter included."""
    if name not in SECOND_ORDER:
        raise ValueError(f"counting: {name!r} is not one of {SECOND_ORDER}")

    def init(params):
        return opt.init(params[0])

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        w, count = params
        g = grads[0]
        updates, state = opt.update(g, state, w, value=value, grad=g, value_fn=lambda v: value_fn((v, count)))
        used = state.cg_iterations if name == "newton_cg" else state.linesearch.num_evaluations
        return (updates, used.astype(count.dtype)), state

    return optim.Optimizer(init, update)


def _make_optimizer(config):
    name = config["optimizer"]
    opt = build_optimizer(name, learning_rate(config["problem"], name, config["lr_factor"]))
    return counting(name, opt) if name in SECOND_ORDER else opt


# --------------------------------------------------------------------------- problems


def _float():
    return jnp.result_type(float)


def quadratic_eigenvalues(kappa: float, dimension: int) -> np.ndarray:
    return np.geomspace(1.0 / kappa, 1.0, dimension)


def rosenbrock(w):
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def _dummy_data():
    return np.zeros((1, 1), np.float32), np.zeros((1,), np.int32)


def _quadratic(static) -> Problem:
    dim = int(static["dimension"])
    a = data.quadratic(jax.random.key(0), quadratic_eigenvalues(float(static["kappa"]), dim), dtype=_float()).A

    def init_params(key):
        return jax.random.normal(key, (dim,), dtype=_float()) / jnp.asarray(math.sqrt(dim), _float())

    def loss(e, xb, yb, key):   # the batch is a dummy: full batch
        return 0.5 * e @ (a @ e)

    def evaluate(e, x, y):
        return {"loss": 0.5 * e @ (a @ e), "distance": jnp.linalg.norm(e)}

    x, y = _dummy_data()
    return Problem(init_params=init_params, loss=loss, x=x, y=y, evaluate=evaluate)


def _rosenbrock(static) -> Problem:
    sigma = float(static["start_noise"])

    def init_params(key):
        start = jnp.asarray([-1.2, 1.0], _float())
        return start + jnp.asarray(sigma, _float()) * jax.random.normal(key, (2,), dtype=_float())

    def loss(w, xb, yb, key):
        return rosenbrock(w)

    def evaluate(w, x, y):
        return {"loss": rosenbrock(w), "distance": jnp.linalg.norm(w - jnp.ones_like(w))}

    x, y = _dummy_data()
    return Problem(init_params=init_params, loss=loss, x=x, y=y, evaluate=evaluate)


def _classifier(net, d_in: int, x, y, x_test, y_test) -> Problem:
    """A classification problem whose ``evaluate`` sees the training set followed by the
    held-out set (``eval_x``), so that neither is baked into the program as a constant."""
    n = int(np.shape(x)[0])

    def loss(params, xb, yb, key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)

    def evaluate(params, xe, ye):   # rows [0, n): the training set; [n, end): held out
        logits = net.apply(params, xe)
        train_logits, test_logits = logits[:n], logits[n:]
        return {"loss": losses.softmax_cross_entropy_with_integer_labels(train_logits, ye[:n]),
                "accuracy": train.accuracy(train_logits, ye[:n]),
                "test_accuracy": train.accuracy(test_logits, ye[n:])}

    return Problem(init_params=lambda key: net.init(key, (-1, d_in))[1], loss=loss, x=x, y=y, evaluate=evaluate,
                   eval_x=np.concatenate([x, x_test]), eval_y=np.concatenate([y, y_test]))


def digits_split():
    """(x_train, y_train, x_test, y_test): the digits, 25% held out by key(0)."""
    x, y = data.load_digits()
    x_tr, y_tr, x_te, y_te = data.train_test_split(jax.random.key(0), jnp.asarray(x), jnp.asarray(y),
                                                   test_fraction=0.25)
    return (np.asarray(x_tr, np.float32), np.asarray(y_tr, np.int32),
            np.asarray(x_te, np.float32), np.asarray(y_te, np.int32))


def _digits(static) -> Problem:
    x, y, x_te, y_te = digits_split()
    net = nets.mlp([int(static["hidden"]), 10], activation="tanh")
    return _classifier(net, x.shape[1], x, y, x_te, y_te)


def spirals_data(points: int):
    """(x_train, y_train, x_test, y_test): two spirals from key(0), held-out ones from key(1)."""
    x, y = data.two_spirals(jax.random.key(0), points)
    x_te, y_te = data.two_spirals(jax.random.key(1), points)
    return (np.asarray(x, np.float32), np.asarray(y, np.int32),
            np.asarray(x_te, np.float32), np.asarray(y_te, np.int32))


def _spirals(static) -> Problem:
    x, y, x_te, y_te = spirals_data(int(static["points"]))
    h = int(static["hidden"])
    net = nets.mlp([h, h, 2], activation="tanh")
    return _classifier(net, 2, x, y, x_te, y_te)


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


def _static(problem: str, c: Config) -> dict:
    """Static options of ``problem`` (besides the optimizer), from the config."""
    if problem == "quadratic":
        return {"batch_size": 1, "dimension": c.quad_dimension, "kappa": float(c.quad_kappa)}
    if problem == "rosenbrock":
        return {"batch_size": 1, "start_noise": float(c.rosen_start_noise)}
    if problem == "digits":
        return {"batch_size": c.digits_batch_size, "hidden": c.digits_hidden}
    return {"batch_size": 2 * c.spirals_points, "hidden": c.spirals_hidden, "points": c.spirals_points}


DESCRIPTIONS = {
    "quadratic": {"loss": "1/2 e^T A e, A = Q diag(geomspace(1/kappa, 1, dimension)) Q^T, Q from key(0)",
                  "init": "e0 ~ N(0, I / dimension)", "batch": "full (dummy data)"},
    "rosenbrock": {"loss": "(1 - x)^2 + 100 (y - x^2)^2", "init": "(-1.2, 1) + start_noise N(0, I)"},
    "digits": {"data": "UCI 8x8 digits in [0, 1], 25% held out by train_test_split(key(0))",
               "net": "mlp 64-hidden-10 tanh", "loss": "softmax cross-entropy",
               "evaluate": "whole training set loss and accuracy, held-out accuracy"},
    "spirals": {"data": "two_spirals(key(0), points) train, two_spirals(key(1), points) held out",
                "net": "mlp 2-hidden-hidden-2 tanh", "loss": "softmax cross-entropy", "batch": "full"},
}


def study(problem: str, c: Config) -> Study:
    return Study(f"optimizers_{problem}", _make_problem, _make_optimizer,
                 hyperparameters={"lr_factor": 1.0},
                 static={**_static(problem, c), "problem": problem, "optimizer": "sgd"},
                 description={**DESCRIPTIONS[problem], "lr_centres": LR_CENTRES[problem],
                              "families": {n: FAMILY[n] for n in ALL_OPTIMIZERS},
                              "settings": {n: SETTINGS[n] for n in ALL_OPTIMIZERS},
                              "noisy_sgd_key": NOISY_SGD_KEY})


def sweep_spec(problem: str, c: Config) -> SweepSpec:
    steps, every = getattr(c, f"{_prefix(problem)}_steps"), getattr(c, f"{_prefix(problem)}_eval_every")
    return SweepSpec(study(problem, c), grid={"optimizer": list(optimizers_for(problem, c)),
                                              "lr_factor": [float(f) for f in lr_factors(c)]},
                     seeds=c.seeds, steps=steps, eval_every=every, chunk_steps=steps)


# --------------------------------------------------------------------------- analysis


def steps_to_target(curves, eval_steps, target: float) -> np.ndarray:
    """First evaluation step with loss <= ``target`` along the last axis; inf where never."""
    curves = np.asarray(curves, np.float64)
    hit = np.nan_to_num(curves, nan=np.inf) <= target
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), np.asarray(eval_steps, np.float64)[first], np.inf)


def median_or_inf(values, axis=-1) -> np.ndarray:
    """Median over ``axis``, +inf counted as a value (so more than half inf gives inf)."""
    return np.median(np.asarray(values, np.float64), axis=axis)


def gd_rate(lr: float, eigenvalues) -> float:
    """Exact per-step error contraction of GD at ``lr``: ``max_i |1 - lr lambda_i|``."""
    return float(np.max(np.abs(1.0 - lr * np.asarray(eigenvalues, np.float64))))


def heavy_ball_rate(lr: float, beta: float, eigenvalues) -> float:
    """Exact asymptotic rate of EMA heavy ball (``sgd(lr (1 - beta), momentum=beta)``): the
    largest spectral radius of ``[[1 + beta - a lambda, -beta], [1, 0]]``, ``a = lr (1 - beta)``."""
    lam = np.asarray(eigenvalues, np.float64)
    a = lr * (1.0 - beta)
    mats = np.zeros(lam.shape + (2, 2))
    mats[:, 0, 0], mats[:, 0, 1], mats[:, 1, 0] = 1 + beta - a * lam, -beta, 1.0
    return float(np.abs(np.linalg.eigvals(mats)).max())


def _last_finite(curve) -> float:
    ok = np.flatnonzero(np.isfinite(curve))
    return float(curve[ok[-1]]) if ok.size else np.inf


def _analyse_problem(problem: str, c: Config, res) -> dict:
    names = list(res.axes["optimizer"])
    factors = np.asarray(res.axes["lr_factor"], np.float64)
    lrs = np.array([[learning_rate(problem, n, f) for f in factors] for n in names])
    target = getattr(c, f"{_prefix(problem)}_target")
    steps = np.asarray(res.eval_steps)
    curves = res.curves["eval_loss"]                                   # (opt, lr, seed, E)
    hits = steps_to_target(curves, steps, target)                      # (opt, lr, seed)
    # A run the engine froze counts as diverged (+inf) unless it had already reached the target:
    # then the failure is a numerical breakdown after convergence (e.g. 0/0 once the loss
    # underflows), and its last finite loss stands.
    frozen = res.diverged_step >= 0
    broke_down = frozen & (hits <= res.diverged_step)
    diverged = frozen & ~broke_down
    last_finite = np.array([[[_last_finite(c) for c in row] for row in opt] for opt in curves]) if curves.size else \
        np.zeros(curves.shape[:-1])
    final = np.where(broke_down, last_finite, res.final["eval_loss"])
    final = np.where(diverged | ~np.isfinite(final), np.inf, final)
    med, med_steps = median_or_inf(final), median_or_inf(hits)
    best = np.array([np.lexsort((med_steps[i], med[i]))[0] for i in range(len(names))])
    idx = np.arange(len(names))
    q25, q75 = np.percentile(final[idx, best], [25, 75], axis=-1)
    evaluations = res.curves["eval_evaluations"][idx, best]            # (opt, seed, E): cumulative
    total_steps = int(steps[-1])
    out = {
        "optimizers": names, "learning_rates": lrs, "lr_factors": factors, "target": target,
        "eval_steps": steps, "final": final, "median_final": med, "steps_to_target": hits,
        "median_steps": med_steps, "diverged": diverged, "broke_down": broke_down,
        "best_index": best, "best_lr": lrs[idx, best], "best_median": med[idx, best],
        "best_iqr": np.stack([q25, q75], -1), "best_steps": med_steps[idx, best],
        "best_diverged": diverged[idx, best].mean(-1), "best_broke_down": broke_down[idx, best].mean(-1),
        "best_curves": curves[idx, best],                              # (opt, seed, E)
        "extra_per_step": np.nanmedian(np.nanmax(evaluations, -1), -1) / total_steps,
        "compile_seconds": float(res.timings.get("compile_seconds") or 0.0),
        "run_seconds": float(res.timings.get("run_seconds") or 0.0),
    }
    if "eval_test_accuracy" in res.final:
        out["best_test_accuracy"] = np.median(res.final["eval_test_accuracy"][idx, best], -1)
    out["rank"] = np.lexsort((out["best_steps"], out["best_median"]))
    if problem == "quadratic":
        out["theory"] = _quadratic_theory(c, names, out, res)
    return out


def _quadratic_theory(c: Config, names, out, res) -> dict:
    ev = quadratic_eigenvalues(c.quad_kappa, c.quad_dimension)
    k = c.quad_kappa
    theory = {"kappa": k, "gd_bound": (k - 1) / (k + 1),
              "momentum_bound": (math.sqrt(k) - 1) / (math.sqrt(k) + 1), "rows": {}}
    beta = SETTINGS["heavy_ball"]["beta"]
    fine = np.geomspace(1e-3, 1e3, 4001)
    theory["heavy_ball_beta_bound"] = min(heavy_ball_rate(lr, beta, ev) for lr in fine)
    for name, exact in (("sgd", lambda lr: gd_rate(lr, ev)), ("heavy_ball", lambda lr: heavy_ball_rate(lr, beta, ev))):
        if name not in names:
            continue
        i = names.index(name)
        dist = res.curves["eval_distance"][i, out["best_index"][i]]      # (seed, E)
        rates = measured_rate(dist, res.eval_steps)
        theory["rows"][name] = {"lr": float(out["best_lr"][i]), "measured": float(np.nanmedian(rates)),
                                "measured_seeds": rates, "exact": exact(float(out["best_lr"][i]))}
    return theory


# --------------------------------------------------------------------------- run / load


def run(config: Config, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """One sweep per problem (one compiled program per optimizer), then the analysis."""
    check_config(config)
    db = store if isinstance(store, Store) else Store(store)
    try:
        sweeps = {p: run_sweep(sweep_spec(p, config), store=db, progress=progress, rerun=rerun)
                  for p in config.problems}
    finally:
        if not isinstance(store, Store):
            db.close()
    results = {"config": dataclasses.asdict(config), "problems": {}, "sweeps": sweeps}
    for p, res in sweeps.items():
        results["problems"][p] = _analyse_problem(p, config, res)
    return results


def load(config: Config, *, store) -> dict:
    """:func:`run`'s results from the database (finished sweeps are fetched, not rerun)."""
    return run(config, store=store, progress=False, rerun=False)


# --------------------------------------------------------------------------- plots and report


def _style(k: int) -> dict:
    return {"color": plotting.PALETTE[k % len(plotting.PALETTE)], "linestyle": LINE_STYLES[k // 8 % 4]}


def _fmt_steps(s: float) -> str:
    return "not reached" if not np.isfinite(s) else f"{int(s)}"


def plot(results: dict, outdir="figures") -> list[Path]:
    paths = []
    for problem, r in results["problems"].items():
        names = r["optimizers"]
        order = list(r["rank"])
        fig, (ax_bar, ax_curve) = plotting.figure(2, width=5.2, height=max(3.8, 0.22 * len(names) + 2.2))
        # left: ranked bars of the median final loss with IQR whiskers
        shown = np.where(np.isfinite(r["best_median"]), r["best_median"], np.nan)
        finite = shown[np.isfinite(shown)]
        positive = finite[finite > 0]
        ceiling = float(np.max(finite)) * 10 if positive.size else 1.0
        floor = float(np.min(positive)) / 10 if positive.size else ceiling * 1e-6
        ypos = np.arange(len(order))[::-1]
        for y, i in zip(ypos, order):
            family = FAMILY[names[i]]
            color = "#D55E00" if family == "second_order" else ("#0072B2" if family == "gradient" else "#999999")
            value = max(shown[i], floor) if np.isfinite(shown[i]) else ceiling
            ax_bar.barh(y, value - floor, left=floor, color=color, alpha=0.85, height=0.7)
            lo, hi = r["best_iqr"][i]
            if np.isfinite(shown[i]):
                ax_bar.plot([max(lo, floor), min(hi, ceiling)], [y, y], color="k", linewidth=1.0)
            if not np.isfinite(shown[i]):
                ax_bar.text(ceiling, y, " diverged", va="center", fontsize=7)
            elif shown[i] <= 0:
                ax_bar.text(floor, y, "  exactly 0", va="center", fontsize=7)
        ax_bar.set_yticks(ypos, [f"{names[i]} ({r['best_lr'][i]:.2g})" for i in order], fontsize=7)
        plotting.theory(ax_bar, r["target"], label=f"target {r['target']:g}")
        ax_bar.set(xscale="log", xlim=(floor, ceiling * 3), xlabel="median final loss at the best lr (log scale; whisker: IQR)",
                   title="ranked, lower is better; label: optimizer (best lr)\n"
                         "blue: gradient-scaled, grey: adaptive, red: 2nd order")
        ax_bar.legend(loc="lower right", fontsize=7)
        # right: curves of the best few, plus the baselines
        picks = [i for i in order if np.isfinite(r["best_median"][i])][:5]
        for extra in ("sgd", "heavy_ball") if problem == "quadratic" else ("sgd",):
            if extra in names and names.index(extra) not in picks:
                picks.append(names.index(extra))
        for extra in SECOND_ORDER:
            if extra in names and names.index(extra) not in picks:
                picks.append(names.index(extra))
        steps = r["eval_steps"]
        for k, i in enumerate(picks[:8]):
            curves = np.where(np.isfinite(r["best_curves"][i]), r["best_curves"][i], np.nan)
            with warnings.catch_warnings():   # evaluations where every seed has stopped are NaN: a gap
                warnings.simplefilter("ignore", RuntimeWarning)
                plotting.median_band(ax_curve, steps, curves, axis=0,
                                     label=f"{names[i]} (lr {r['best_lr'][i]:.2g})", **_style(k), linewidth=1.4)
        ax_curve.axhline(r["target"], color="0.55", linestyle=":", linewidth=1.2, label=f"target {r['target']:g}")
        if problem == "quadratic" and "theory" in r:
            th = r["theory"]
            start = np.nanmedian(r["best_curves"][:, :, 0])
            t = np.concatenate([[0], steps])
            for rate, label in ((th["gd_bound"], "GD bound ((k-1)/(k+1))^2t"),
                                (th["momentum_bound"], "momentum bound ((sqrt k-1)/(sqrt k+1))^2t")):
                ax_curve.plot(t, start * rate ** (2 * t), color="0.3", linestyle=(0, (4, 3)) if "GD" in label
                              else (0, (6, 2, 1, 2)), linewidth=1.0, label=label)
        positive = np.concatenate([r["best_curves"][i].ravel() for i in picks[:8]]) if picks else np.zeros(0)
        positive = positive[np.isfinite(positive) & (positive > 0)]
        low = max(float(positive.min()) / 3, 1e-30) if positive.size else None
        ax_curve.set(yscale="log", xlabel="step", ylabel="training loss (log scale)",
                     title=f"loss at each best lr:\nmedian, IQR band over {r['best_curves'].shape[1]} seeds",
                     ylim=(low, None) if low else None)
        ax_curve.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle(f"optimizers on {problem}: learning rate tuned on a {len(r['lr_factors'])}-point log grid "
                     f"per optimizer, {r['best_curves'].shape[1]} seeds")
        paths += plotting.save(fig, outdir, f"optimizers_{problem}")
    return [Path(p) for p in paths]


def report(results: dict) -> str:
    lines = []
    for problem, r in results["problems"].items():
        names = r["optimizers"]
        acc = "best_test_accuracy" in r
        lines.append(f"**{problem}** (target loss {r['target']:g}; compile {r['compile_seconds']:.1f} s, "
                     f"run {r['run_seconds']:.1f} s)")
        lines.append("")
        head = "| rank | optimizer | best lr | median final loss [IQR] | steps to target | diverged |"
        lines.append(head + (" held-out acc |" if acc else ""))
        lines.append("|---|---|---|---|---|---|" + ("---|" if acc else ""))
        for rank, i in enumerate(r["rank"], 1):
            lo, hi = r["best_iqr"][i]
            row = (f"| {rank} | {names[i]} | {r['best_lr'][i]:.3g} | {r['best_median'][i]:.3g} "
                   f"[{lo:.2g}, {hi:.2g}] | {_fmt_steps(r['best_steps'][i])} | {r['best_diverged'][i]:.0%} |")
            if acc:
                row += f" {r['best_test_accuracy'][i]:.3f} |"
            lines.append(row)
        parts = []
        for name in SECOND_ORDER:
            if name in names:
                i = names.index(name)
                what = "Hessian-vector products" if name == "newton_cg" else "line-search loss evaluations"
                parts.append(f"{name} {r['extra_per_step'][i]:.2f} {what}")
        if parts:
            lines.append("")
            lines.append("Every step costs one gradient; besides it, per step at the best lr (median over seeds): "
                         + "; ".join(parts) + ". A Hessian-vector product (forward-over-reverse) costs about 2-3 gradients; a loss evaluation about half of one.")
        if r["best_broke_down"].any():
            who = ", ".join(f"{names[i]} ({r['best_broke_down'][i]:.0%})" for i in np.flatnonzero(r["best_broke_down"]))
            lines.append("")
            lines.append(f"Runs frozen by a non-finite loss after reaching the target (kept at their last finite loss, "
                         f"not counted as diverged): {who}.")
        if "theory" in r:
            th = r["theory"]
            lines.append("")
            lines.append(f"| method (kappa = {th['kappa']:g}) | lr | measured rate | exact rate at this lr | bound |")
            lines.append("|---|---|---|---|---|")
            bounds = {"sgd": (th["gd_bound"], "(k-1)/(k+1)"),
                      "heavy_ball": (th["momentum_bound"], "(sqrt k-1)/(sqrt k+1)")}
            for name, row in th["rows"].items():
                bound, formula = bounds[name]
                lines.append(f"| {name} | {row['lr']:.3g} | {row['measured']:.4f} | {row['exact']:.4f} | "
                             f"{bound:.4f} = {formula} |")
            lines.append("")
            lines.append(f"Heavy ball with beta fixed at {SETTINGS['heavy_ball']['beta']} can reach at best "
                         f"{th['heavy_ball_beta_bound']:.4f} per step (any lr).")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
