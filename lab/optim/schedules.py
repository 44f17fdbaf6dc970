"""Schedules: pure functions ``schedule(count) -> value`` for annealing a hyperparameter.

Contract
--------
A schedule is a pure function of one argument, ``count``, the number of updates
already applied (optax's convention).  The optimizer state starts the counter at
0 and increments it *after* each update, so the first update uses
``schedule(0)``, the second ``schedule(1)``, and update ``k`` (1-based) uses
``schedule(k - 1)``.  A warmup with ``transition_steps = T`` therefore reaches
its end value at ``count = T``, i.e. on the ``(T + 1)``-th update.

* ``count`` may be a Python number or an integer/float array of any shape; every
  schedule here is elementwise in ``count`` (so ``schedule(jnp.arange(n))`` and
  ``jax.vmap(schedule)(jnp.arange(n))`` agree) and works under ``jit``.
* The value is a floating array with the shape of ``count`` (broadcast with the
  hyperparameters).  Its dtype is that of the floating array hyperparameters,
  or the default float (float64 under x64) when they are all Python numbers;
  ``count`` is converted to that dtype first, so everything runs under strict
  dtype promotion.  (float32 counts are exact up to 2**24 updates.)  Consumers
  cast the value to the dtype of the updates they scale.
* Hyperparameters that only enter arithmetic (``init_value``, ``peak_value``,
  ``end_value``, ``power``, ``decay_rate``, ``alpha``, ``exponent``, scales,
  factors) may be JAX arrays or tracers, so a ``vmap`` over a grid of them
  compiles once.  Quantities that decide structure must be concrete Python
  values: ``staircase``, the keys of ``boundaries_and_scales``, ``pct_start``,
  ``pct_final``, the onecycle ``transition_steps`` and the length of
  ``schedules``/``boundaries``.  Step counts used only in arithmetic may be traced.
* Concrete arguments are validated and a bad one raises ``ValueError`` naming
  it.  Traced arguments cannot be checked and are assumed valid.

Values equal ``optax.schedules`` (0.2.x) for valid input (the tests check
1,000 counts per case at rtol 1e-12).  Each difference says "Deviation" in its
docstring.  Two are rounding repairs: JAX on CPU divides by a scalar as a
multiply by its rounded reciprocal, so optax's ``1 - s / T`` can be -2e-17
(NaN from a fractional ``power`` after the transition) and its staircase
``floor(s / T)`` can drop one count late; we compute ``(T - s) / T`` and an
exact floor division.  The rest are invalid inputs optax quietly accepts and
we reject: a negative ``transition_begin`` (optax: logs and uses 0),
``decay_rate <= 0`` (optax: 0 gives a constant, < 0 gives NaN), onecycle phase
boundaries that collide or go backwards (optax: silently overwrites a dict
key), unsorted boundaries or a length mismatch in ``join_schedules`` (optax:
``zip`` truncates), negative ``warmup_steps`` or piecewise boundaries.
``transition_steps <= 0`` in the polynomial/linear/exponential schedules is
*not* an error: as in optax, the schedule is the constant ``init_value`` (optax
logs this; we do it silently).

Reference: optax ``optax/schedules/_schedule.py`` and ``_join.py``.

Module map: the closed-form schedules are in :mod:`lab.optim.basic_schedules`, the
composed ones (joins, warmups, SGDR, one-cycle) in :mod:`lab.optim.composite_schedules`;
this module is their public address, with the short names (``cosine_decay`` for
``cosine_decay_schedule``, ...).
"""
from __future__ import annotations

from lab.optim.base import Schedule
from lab.optim.basic_schedules import (constant_schedule, cosine_decay_schedule, exponential_decay,
                                       linear_schedule, piecewise_constant_schedule,
                                       piecewise_interpolate_schedule, polynomial_schedule)
from lab.optim.composite_schedules import (cosine_onecycle_schedule, join_schedules,
                                           linear_onecycle_schedule, sgdr_schedule,
                                           warmup_constant_schedule, warmup_cosine_decay_schedule,
                                           warmup_exponential_decay_schedule)

__all__ = [
    "Schedule",
    "constant_schedule", "linear_schedule", "polynomial_schedule",
    "exponential_decay", "piecewise_constant_schedule",
    "piecewise_interpolate_schedule", "cosine_decay_schedule",
    "warmup_constant_schedule", "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule", "linear_onecycle_schedule",
    "cosine_onecycle_schedule", "sgdr_schedule", "join_schedules",
    "constant", "linear", "polynomial", "piecewise_constant",
    "piecewise_interpolate", "cosine_decay", "warmup_constant",
    "warmup_cosine_decay", "warmup_exponential_decay", "linear_onecycle",
    "cosine_onecycle", "sgdr", "join",
]

# ----------------------------------------------------------------------------- short names

constant = constant_schedule
linear = linear_schedule
polynomial = polynomial_schedule
piecewise_constant = piecewise_constant_schedule
piecewise_interpolate = piecewise_interpolate_schedule
cosine_decay = cosine_decay_schedule
warmup_constant = warmup_constant_schedule
warmup_cosine_decay = warmup_cosine_decay_schedule
warmup_exponential_decay = warmup_exponential_decay_schedule
linear_onecycle = linear_onecycle_schedule
cosine_onecycle = cosine_onecycle_schedule
sgdr = sgdr_schedule
join = join_schedules
