"""Schedules composed from the closed-form ones: joins, warmups, restarts and one-cycle.

Contract: the one in :mod:`lab.optim.schedules` (import the schedules from there).
:func:`join_schedules` runs schedule ``i`` between boundaries ``i - 1`` and ``i``,
restarting its count at each boundary; every other schedule here is such a join
(warmup then decay, SGDR cycles) or a piecewise interpolation (one-cycle) of the
:mod:`lab.optim.basic_schedules`, with that module's argument checks.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from lab.optim.base import Schedule
from lab.optim.basic_schedules import (Array, _as, _check, _concrete, _float_dtype, _is_nonpositive,
                                       cosine_decay_schedule, exponential_decay, linear_schedule,
                                       piecewise_interpolate_schedule)


# ----------------------------------------------------------------------------- joined schedules

def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` on [b_{i-1}, b_i), restarting its count at each boundary:

        v(t) = schedules[i](t - b_{i-1})   for b_{i-1} <= t < b_i   (b_{-1} = 0, b_n = inf)

    Schedule 0 sees the raw count.  Every schedule is evaluated and the right
    one selected, so the join is traceable.  Deviation: ``len(boundaries)``
    must be ``len(schedules) - 1`` and concrete boundaries non-decreasing
    (ValueError; optax truncates with ``zip``).
    """
    fn = "join_schedules"
    schedules, boundaries = list(schedules), list(boundaries)
    if not schedules:
        raise ValueError(f"{fn}: schedules must not be empty")
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(f"{fn}: need len(boundaries) == len(schedules) - 1, got "
                         f"{len(boundaries)} boundaries for {len(schedules)} schedules")
    concrete = [_concrete(b) for b in boundaries]
    for a, b in zip(concrete, concrete[1:]):
        if a is not None and b is not None and np.any(b < a):
            raise ValueError(f"{fn}: boundaries must be non-decreasing, got {boundaries}")

    def schedule(count: ArrayLike) -> Array:
        value = schedules[0](count)
        for boundary, later in zip(boundaries, schedules[1:]):
            value = jnp.where(count < boundary, value, later(count - boundary))
        return value

    return schedule


def warmup_constant_schedule(init_value: ArrayLike, peak_value: ArrayLike, warmup_steps: int) -> Schedule:
    """Linear warmup from I to P over W steps, then P: ``linear_schedule(I, P, W)``."""
    return linear_schedule(init_value, peak_value, warmup_steps)


def _check_warmup(fn: str, warmup_steps: Any) -> None:
    _check(fn, "warmup_steps", warmup_steps, lambda w: w >= 0, "non-negative")


def warmup_cosine_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Linear warmup I -> P over W steps, then cosine decay P -> E until D:

        v(t) = I + (P - I) t / W                                        t < W
        v(t) = P ((1 - a) c**p + a),  a = E / P,
               c = (1 + cos(pi min(t - W, D - W) / (D - W))) / 2        t >= W

    ``decay_steps`` D *includes* the warmup, so the cosine lasts D - W steps
    (D > W required, ValueError).  Surprise kept from optax: when P == 0 the
    ratio a is taken as 0, so the value after warmup is 0 and ``end_value`` is
    ignored.  P may be traced (optax needs it concrete for that test).
    Deviation: a negative ``warmup_steps`` raises ValueError.
    """
    fn = "warmup_cosine_decay_schedule"
    _check_warmup(fn, warmup_steps)
    cosine_steps = decay_steps - warmup_steps
    if _is_nonpositive(cosine_steps):
        raise ValueError(f"{fn}: decay_steps must be greater than warmup_steps (it includes the warmup), "
                         f"got decay_steps={decay_steps!r}, warmup_steps={warmup_steps!r}")
    dtype = _float_dtype(init_value, peak_value, end_value, exponent)
    peak, end = _as(peak_value, dtype), _as(end_value, dtype)
    zero_peak = peak == 0
    alpha = jnp.where(zero_peak, jnp.zeros((), dtype), end / jnp.where(zero_peak, 1, peak))
    return join_schedules(
        [linear_schedule(_as(init_value, dtype), peak, warmup_steps),
         cosine_decay_schedule(peak, cosine_steps, alpha, _as(exponent, dtype))],
        [warmup_steps],
    )


def warmup_exponential_decay_schedule(init_value: ArrayLike, peak_value: ArrayLike,
                                      warmup_steps: int, transition_steps: int,
                                      decay_rate: ArrayLike, transition_begin: int = 0,
                                      staircase: bool = False,
                                      end_value: Optional[ArrayLike] = None) -> Schedule:
    """Linear warmup I -> P over W steps, then ``exponential_decay`` from P:

        v(t) = I + (P - I) t / W                                      t < W
        v(t) = exponential_decay(P, T, r, B, staircase, E)(t - W)     t >= W

    ``transition_begin`` B counts from the end of the warmup.  The end-value
    clip (and its surprise, see ``exponential_decay``) applies from t = W on.
    Deviation: negative ``warmup_steps``, negative B or r <= 0 raise ValueError.
    """
    _check_warmup("warmup_exponential_decay_schedule", warmup_steps)
    dtype = _float_dtype(init_value, peak_value, decay_rate, end_value)
    peak = _as(peak_value, dtype)
    return join_schedules(
        [linear_schedule(_as(init_value, dtype), peak, warmup_steps),
         exponential_decay(peak, transition_steps, decay_rate, transition_begin, staircase, end_value)],
        [warmup_steps],
    )


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    """SGD with warm restarts (Loshchilov & Hutter 2017, arXiv:1608.03983).

    Cycle k is ``warmup_cosine_decay_schedule(**cosine_kwargs[k])`` and lasts
    its ``decay_steps`` D_k (warmup included); cycle k starts at D_0 + ... + D_{k-1}
    and sees its count from 0.  The last cycle continues past its end at its
    end value.  Surprise kept from optax: despite the name, each dict holds
    *warmup* cosine arguments (``init_value``, ``peak_value``, ``warmup_steps``,
    ``decay_steps``, optional ``end_value``, ``exponent``).
    """
    schedules, boundaries, start = [], [], 0
    for kwargs in cosine_kwargs:
        if "decay_steps" not in kwargs:
            raise ValueError(f"sgdr_schedule: every cosine_kwargs entry needs decay_steps, got {dict(kwargs)}")
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        start = start + kwargs["decay_steps"]
        boundaries.append(start)
    if not schedules:
        raise ValueError("sgdr_schedule: cosine_kwargs must hold at least one cycle")
    return join_schedules(schedules, boundaries[:-1])


# ----------------------------------------------------------------------------- one-cycle

def _onecycle_bounds(fn: str, transition_steps: int, **pcts: float) -> list[int]:
    """Phase boundaries int(pct * T) followed by T; they must strictly increase."""
    v = _concrete(transition_steps)
    if v is None:
        raise ValueError(f"{fn}: transition_steps must be a concrete number, got a tracer")
    if not v > 0:
        raise ValueError(f"{fn}: transition_steps must be positive, got transition_steps={transition_steps!r}")
    bounds = [int(p * transition_steps) for p in pcts.values()] + [int(transition_steps)]
    names = [f"int({k} * transition_steps)" for k in pcts] + ["transition_steps"]
    if bounds[0] < 0 or any(b <= a for a, b in zip(bounds, bounds[1:])):
        shown = ", ".join(f"{n}={b}" for n, b in zip(names, bounds))
        raise ValueError(f"{fn}: phase boundaries must satisfy 0 <= {' < '.join(names)}; got {shown} "
                         f"(from {', '.join(f'{k}={p!r}' for k, p in pcts.items())})")
    return bounds


def _onecycle_phases(fn: str, transition_steps: int, peak_value: ArrayLike, div_factor: ArrayLike,
                     final_div_factor: ArrayLike, **pcts: float):
    """What both one-cycle schedules start from: the checked phase boundaries
    (:func:`_onecycle_bounds`), the start value v0 = P / div_factor, and the two positive
    division factors, all in one floating dtype."""
    bounds = _onecycle_bounds(fn, transition_steps, **pcts)
    _check(fn, "div_factor", div_factor, lambda d: d > 0, "positive")
    _check(fn, "final_div_factor", final_div_factor, lambda d: d > 0, "positive")
    dtype = _float_dtype(peak_value, div_factor, final_div_factor)
    div, final_div = _as(div_factor, dtype), _as(final_div_factor, dtype)
    return bounds, _as(peak_value, dtype) / div, div, final_div


def linear_onecycle_schedule(transition_steps: int, peak_value: ArrayLike, pct_start: float = 0.3,
                             pct_final: float = 0.85, div_factor: ArrayLike = 25.0,
                             final_div_factor: ArrayLike = 1e4) -> Schedule:
    """One-cycle policy, three linear phases (Smith & Topin 2017, arXiv:1708.07120).

    With P = ``peak_value``, v0 = P / div_factor, b1 = int(pct_start T),
    b2 = int(pct_final T):

        v0 -> P on [0, b1),  P -> v0 on [b1, b2),  v0 -> v0 / final_div_factor on [b2, T),

    linearly (``piecewise_interpolate_schedule('linear', v0, {b1: div, b2: 1/div,
    T: 1/final_div})``), then v0 / final_div_factor for t >= T.  Surprise kept
    from optax: the boundaries are truncated with ``int``, and v = 0 for t < 0.
    Deviation: the boundaries must satisfy 0 <= b1 < b2 < T (ValueError; optax
    silently overwrites colliding dict keys, e.g. for pct_final = 1), and the
    division factors must be positive.
    """
    (b1, b2, t_end), start, div, final_div = _onecycle_phases(
        "linear_onecycle_schedule", transition_steps, peak_value, div_factor, final_div_factor,
        pct_start=pct_start, pct_final=pct_final)
    return piecewise_interpolate_schedule(
        "linear", start, {b1: div, b2: 1.0 / div, t_end: 1.0 / final_div})


def cosine_onecycle_schedule(transition_steps: int, peak_value: ArrayLike, pct_start: float = 0.3,
                             div_factor: ArrayLike = 25.0,
                             final_div_factor: ArrayLike = 1e4) -> Schedule:
    """One-cycle policy with cosine phases (Smith & Topin 2017, arXiv:1708.07120).

    With P = ``peak_value``, v0 = P / div_factor, b1 = int(pct_start T):

        v0 -> P on [0, b1),  P -> v0 / final_div_factor on [b1, T),

    each by cosine interpolation a -> b: b + (a - b) / 2 (cos(pi u) + 1), then
    v0 / final_div_factor for t >= T.  Surprise kept from optax: v = 0 for t < 0.
    Deviation: 0 <= b1 < T is required (ValueError) and the factors must be
    positive.
    """
    (b1, t_end), start, div, final_div = _onecycle_phases(
        "cosine_onecycle_schedule", transition_steps, peak_value, div_factor, final_div_factor,
        pct_start=pct_start)
    return piecewise_interpolate_schedule(
        "cosine", start, {b1: div, t_end: 1.0 / (div * final_div)})

