"""The batch-size study's configuration: :class:`Config` (defaults: the full size), ``FULL``,
``QUICK``, :func:`check`, and the grid and step budget it defines."""
from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from studies.common import DIGITS

DIVERGENCE_FACTOR = 1e3
CHECKPOINTS = ("start", "halfway", "target")


@dataclasses.dataclass(frozen=True)
class Config:
    # problem
    hidden: int = 32                    # width of the one tanh hidden layer: MLP 64-hidden-10
    train_size: int = 1024              # first images used for training; the rest are held out
    batch_sizes: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # increasing, at most train_size
    target_loss: float = 0.1            # training cross-entropy (whole training subset) to reach
    # learning-rate tuning (one log grid shared by every batch size)
    lr_min: float = 0.005               # smallest learning rate tried
    lr_max: float = 5.0                 # largest learning rate tried
    lr_points: int = 16                 # log-spaced rates in [lr_min, lr_max] (ratio 1.58 between neighbours)
    seeds: int = 5                      # seeds per (batch size, rate): initialisation and batch order
    budget_min_steps: int = 400         # step budget at very large batch; budget(B) = this * (1 + noise / B)
    budget_noise: float = 30.0          # the batch size where the budget has doubled
    evals: int = 100                    # evaluations per run (eval_every = budget / evals)
    # gradient noise (host side, float64)
    noise_lr: float = 1.0               # rate of the full-batch GD path on which B_simple is measured
    noise_max_steps: int = 5000         # GD steps allowed to reach the target on that path
    noise_draws: int = 1000             # random mini-batches per batch size for E|g_B - G|^2
    # sharpness at the target (one extra compiled program per batch size listed)
    sharpness_batch_sizes: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # a subset of batch_sizes
    sharpness_iters: int = 40           # Lanczos steps for the top Hessian eigenvalue
    seed: int = 0                       # seeds the mini-batch draws of the gradient-noise part


FULL = Config()
QUICK = Config(batch_sizes=(1, 4, 16, 64, 256, 1024), lr_min=0.01, lr_max=3.0, lr_points=12, seeds=2,
               budget_min_steps=300, evals=40, noise_draws=1000, sharpness_batch_sizes=(1, 16, 1024),
               sharpness_iters=20)


# --------------------------------------------------------------------------- checks and data


def check(config: Config) -> None:
    """Raise TypeError/ValueError naming the first unusable field of ``config``."""
    if not isinstance(config, Config):
        raise TypeError(f"expected a batch_size.Config, got {type(config).__name__}")
    c = config
    for name in ("hidden", "lr_points", "seeds", "budget_min_steps", "noise_max_steps", "sharpness_iters"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, low in (("evals", 2), ("noise_draws", 2)):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(c.train_size, int) or not 2 <= c.train_size < DIGITS:
        raise ValueError(f"train_size must be an integer in [2, {DIGITS - 1}] (the rest is held out), "
                         f"got {c.train_size!r}")
    sizes = tuple(c.batch_sizes)
    if not sizes:
        raise ValueError("batch_sizes is empty; give at least one batch size")
    if any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= c.train_size for b in sizes):
        raise ValueError(f"batch_sizes must be integers in [1, train_size={c.train_size}], got {sizes}")
    if any(a >= b for a, b in itertools.pairwise(sizes)):
        raise ValueError(f"batch_sizes must be strictly increasing, got {sizes}")
    extra = sorted(set(c.sharpness_batch_sizes) - set(sizes))
    if extra:
        raise ValueError(f"sharpness_batch_sizes must be a subset of batch_sizes {sizes}; not there: {extra}")
    if not 0 < c.target_loss < math.log(10.0):
        raise ValueError(f"target_loss must lie in (0, ln 10 = {math.log(10.0):.3f}) (the loss at a random start), "
                         f"got {c.target_loss!r}")
    if not 0 < c.lr_min <= c.lr_max or (c.lr_points > 1 and c.lr_min == c.lr_max):
        raise ValueError(f"learning rates need 0 < lr_min < lr_max, got [{c.lr_min}, {c.lr_max}]")
    if not c.budget_noise >= 0 or not math.isfinite(c.budget_noise):
        raise ValueError(f"budget_noise must be a finite number >= 0, got {c.budget_noise!r}")
    if not c.noise_lr > 0:
        raise ValueError(f"noise_lr must be > 0, got {c.noise_lr!r}")


def learning_rates(config: Config) -> np.ndarray:
    return np.geomspace(config.lr_min, config.lr_max, config.lr_points)


def schedule(config: Config, batch_size: int) -> tuple[int, int]:
    """``(steps, eval_every)`` of the tuning sweep at ``batch_size``: ``evals`` evaluations
    spread over ``budget_min_steps * (1 + budget_noise / B)`` steps (rounded up)."""
    budget = config.budget_min_steps * (1.0 + config.budget_noise / batch_size)
    every = max(1, math.ceil(budget / config.evals))
    return every * config.evals, every
