"""The optimizers study's configuration: :class:`Config` (defaults: the full size), ``FULL``,
``QUICK`` and :func:`check_config`, with the per-problem fields it names."""
from __future__ import annotations

import dataclasses

import numpy as np

from studies.optimizers.settings import ALL_OPTIMIZERS, NET_PROBLEMS, PROBLEMS


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
        steps, every, target = schedule(p, c)
        if steps < 1 or every < 1 or steps % every:
            raise ValueError(f"{p}: steps ({steps}) and eval_every ({every}) must be positive and steps a multiple "
                             f"of eval_every")
        if not target > 0:
            raise ValueError(f"{p}: the loss target must be > 0")


def optimizers_for(problem: str, c: Config) -> tuple:
    return c.net_optimizers if problem in NET_PROBLEMS else c.optimizers


def prefix(problem: str) -> str:
    return {"quadratic": "quad", "rosenbrock": "rosen"}.get(problem, problem)


def lr_factors(c: Config) -> np.ndarray:
    """The dynamic grid: ``lr_points`` factors geometric over ``lr_decades`` decades around 1."""
    if c.lr_points == 1:
        return np.ones(1)
    half = c.lr_decades / 2
    return np.logspace(-half, half, c.lr_points)


def schedule(problem: str, c: Config) -> tuple[int, int, float]:
    """``(steps, eval_every, target loss)`` of ``problem`` from the config."""
    p = prefix(problem)
    return getattr(c, f"{p}_steps"), getattr(c, f"{p}_eval_every"), getattr(c, f"{p}_target")
