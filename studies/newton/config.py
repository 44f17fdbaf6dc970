"""The Newton study's configuration: :class:`Config` (defaults: the full size), ``FULL``,
``QUICK`` and :func:`check_config`."""
from __future__ import annotations

import dataclasses
import math

from studies.common import DIGITS

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
    if c.mlp_examples > DIGITS:
        raise ValueError(f"newton config: mlp_examples={c.mlp_examples} exceeds the {DIGITS} digits")
    if c.logistic_examples <= c.logistic_features:
        raise ValueError("newton config: logistic_examples must exceed logistic_features")

