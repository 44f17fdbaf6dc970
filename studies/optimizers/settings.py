"""What the optimizers study compares and how each optimizer is set: the problems, the
optimizer names, each one's learning-rate family and grid centre, what its swept "learning
rate" means (:data:`TUNED`), every other knob (:data:`SETTINGS`), and the constructors
(:func:`build_optimizer`, :func:`counting` for the second-order methods)."""
from __future__ import annotations

from lab import optim

PROBLEMS = ("quadratic", "rosenbrock", "digits", "spirals")
NET_PROBLEMS = ("digits", "spirals")
SECOND_ORDER = ("newton_cg", "lbfgs")
ALL_OPTIMIZERS = tuple(optim.OPTIMIZERS) + SECOND_ORDER

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

