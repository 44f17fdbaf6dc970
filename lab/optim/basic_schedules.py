"""Closed-form schedules ``schedule(count) -> value``, and the checks every schedule shares.

Contract: the one in :mod:`lab.optim.schedules` (import the schedules from there).  Each
function here builds a schedule that is a closed-form, elementwise function of the
count: constant, polynomial and linear, exponential decay, piecewise constant and
piecewise interpolated, cosine decay.  The private helpers validate *concrete*
arguments (``ValueError`` naming the argument; tracers pass unchecked) and fix the one
floating dtype a schedule computes in; :mod:`lab.optim.composite_schedules` reuses them.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from lab.optim.base import Schedule

Array = jax.Array

# ----------------------------------------------------------------------------- helpers

def _concrete(x: Any) -> Optional[np.ndarray]:
    """``x`` as a NumPy array, or None when it is a tracer (cannot be checked)."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check(fn: str, name: str, value: Any, ok: Callable[[np.ndarray], Any], what: str) -> None:
    """Raise ValueError unless the concrete ``value`` satisfies ``ok`` (tracers pass)."""
    v = _concrete(value)
    if v is not None and not np.all(ok(v)):
        raise ValueError(f"{fn}: {name} must be {what}, got {name}={value!r}")


def _is_nonpositive(x: Any) -> bool:
    """True when ``x`` is concrete and <= 0 (structural 'disabled' switch)."""
    v = _concrete(x)
    return v is not None and bool(np.all(v <= 0))


def _float_dtype(*values: Any) -> np.dtype:
    """Common dtype of the floating hyperparameters; default float if there are none."""
    floats = [v for v in values if v is not None and jnp.issubdtype(jnp.result_type(v), jnp.floating)]
    return jnp.result_type(*floats) if floats else jnp.result_type(float)


def _as(x: Any, dtype: np.dtype) -> Array:
    return jnp.asarray(x, dtype=dtype)


def _hold(value: Array, count: ArrayLike) -> Array:
    """``value`` broadcast to the shape of ``count`` (a constant schedule's output)."""
    shape = jnp.broadcast_shapes(jnp.shape(value), jnp.shape(count))
    return jnp.broadcast_to(value, shape)


# ----------------------------------------------------------------------------- basic schedules

def constant_schedule(value: ArrayLike) -> Schedule:
    """v(t) = value for every count t.

    Unlike optax (which returns ``value`` itself, possibly a Python int), the
    value is returned as a float array broadcast to the shape of ``count``.
    """
    v = _as(value, _float_dtype(value))
    return lambda count: _hold(v, count)


def polynomial_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial transition from ``init_value`` I to ``end_value`` E.

        v(t) = (I - E) * ((T - s) / T)**P + E,   s = clip(t - B, 0, T)

    so v = I for t <= B, v = E for t >= B + T.  T = ``transition_steps``,
    B = ``transition_begin``, P = ``power``.

    ``transition_steps <= 0`` disables annealing: v(t) = I (as in optax).
    Deviation: ``transition_begin < 0`` raises ValueError (optax logs and uses 0).
    Deviation: the fraction is computed as (T - s) / T.  optax's 1 - s / T can
    come out as -2e-17 at s = T because XLA divides by a scalar as a multiply
    by its rounded reciprocal; with a non-integer power (e.g. 0.5) optax then
    returns NaN for every t >= B + T (T = 300 or 500, for instance).
    """
    fn = "polynomial_schedule"
    _check(fn, "transition_begin", transition_begin, lambda b: b >= 0, "non-negative")
    dtype = _float_dtype(init_value, end_value, power)
    init, end = _as(init_value, dtype), _as(end_value, dtype)
    if not isinstance(power, int):  # a Python int keeps the exact integer power
        power = _as(power, dtype)
    if _is_nonpositive(transition_steps):
        return lambda count: _hold(init, count)

    def schedule(count: ArrayLike) -> Array:
        s = jnp.clip(_as(count, dtype) - transition_begin, 0, transition_steps)
        frac = (transition_steps - s) / transition_steps  # exactly 0 at s = T, never < 0
        return (init - end) * frac**power + end

    return schedule


def linear_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Linear transition: v(t) = I + (E - I) * clip(t - B, 0, T) / T.

    ``polynomial_schedule`` with power 1; the same rules for T <= 0 and B < 0.
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def exponential_decay(init_value: ArrayLike, transition_steps: int, decay_rate: ArrayLike,
                      transition_begin: int = 0, staircase: bool = False,
                      end_value: Optional[ArrayLike] = None) -> Schedule:
    """Exponential decay: v(t) = I * r**p  for t > B, and I for t <= B, where

        p = (t - B) / T           (staircase=False)
        p = floor((t - B) / T)    (staircase=True: drops by r every T steps)

    with I = ``init_value``, r = ``decay_rate``, T = ``transition_steps``,
    B = ``transition_begin``.  With ``end_value`` E the value is clipped:
    max(v, E) when r < 1 (E is a floor), min(v, E) when r >= 1 (E is a ceiling).

    Surprises kept from optax: the clip is applied at *every* count, including
    t <= B, so E beyond I in the direction of the decay is returned from count 0
    (r < 1 with E > I gives E everywhere; r = 1 counts as growth, so E < I
    gives E everywhere).  ``transition_steps <= 0`` gives the constant I and
    then ``end_value`` is ignored.

    Deviation: with ``staircase=True`` p is an exact floor division.  optax's
    floor((t - B) / T) can land one below an exact multiple, because XLA
    divides by a scalar as a multiply by its rounded reciprocal: for T = 49 optax
    holds the old value at t - B = 49, 98, 147, ... and drops one count late.

    Deviation: ``decay_rate <= 0`` raises ValueError (optax returns the constant
    I for r = 0 and NaN for fractional powers of r < 0); a traced r is not
    checked, and r may be traced (optax needs it concrete).  A negative
    ``transition_begin`` raises ValueError (optax uses 0).
    """
    fn = "exponential_decay"
    _check(fn, "decay_rate", decay_rate, lambda r: r > 0, "positive")
    _check(fn, "transition_begin", transition_begin, lambda b: b >= 0, "non-negative")
    dtype = _float_dtype(init_value, decay_rate, end_value)
    init, rate = _as(init_value, dtype), _as(decay_rate, dtype)
    end = None if end_value is None else _as(end_value, dtype)
    if _is_nonpositive(transition_steps):
        return lambda count: _hold(init, count)

    def schedule(count: ArrayLike) -> Array:
        s = _as(count, dtype) - transition_begin
        if staircase:
            p = jnp.floor_divide(s, transition_steps)  # exact, unlike floor(s / T)
        else:
            p = s / transition_steps
        value = jnp.where(s <= 0, init, init * rate**p)
        if end is not None:
            value = jnp.where(rate < 1, jnp.maximum(value, end), jnp.minimum(value, end))
        return value

    return schedule


def _sorted_boundaries(fn: str, boundaries_and_scales: Optional[Mapping[int, ArrayLike]]):
    """Sorted (boundary, scale) pairs; concrete scales must be non-negative."""
    items = sorted((boundaries_and_scales or {}).items())
    for b, s in items:
        _check(fn, "boundaries_and_scales", s, lambda x: x >= 0,
               f"a map to non-negative scales (boundary {b} has scale {s!r})")
    return items


def piecewise_constant_schedule(
    init_value: ArrayLike,
    boundaries_and_scales: Optional[Mapping[int, ArrayLike]] = None,
) -> Schedule:
    """Step schedule: v(t) = I * prod_{i : t >= b_i} s_i.

    ``boundaries_and_scales = {b_i: s_i}``; the scales are cumulative factors,
    not values: ``{100: 0.1, 200: 0.1}`` gives I, 0.1 I, 0.01 I.  A scale takes
    effect *at* its boundary (count == b_i is already scaled).  Scales must be
    non-negative (ValueError, as in optax); they may be traced.
    """
    fn = "piecewise_constant_schedule"
    dtype = _float_dtype(init_value, *(boundaries_and_scales or {}).values())
    items = [(b, _as(s, dtype)) for b, s in _sorted_boundaries(fn, boundaries_and_scales)]
    init = _as(init_value, dtype)

    def schedule(count: ArrayLike) -> Array:
        t = _as(count, dtype)
        value = _hold(init, t)
        for boundary, scale in items:
            value = jnp.where(t >= boundary, value * scale, value)
        return value

    return schedule


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: ArrayLike,
    boundaries_and_scales: Optional[Mapping[int, ArrayLike]] = None,
) -> Schedule:
    """Interpolate between cumulative values at boundaries.

    With sorted boundaries 0 = b_0, b_1 < ... < b_n, values v_0 = I and
    v_i = v_{i-1} * s_i, and u = (t - b_i) / max(b_{i+1} - b_i, 1):

        v(t) = v_i + (v_{i+1} - v_i) * u                       'linear'
        v(t) = v_{i+1} + (v_i - v_{i+1}) / 2 * (cos(pi u) + 1)  'cosine'

    for b_i <= t < b_{i+1}, and v(t) = v_n for t >= b_n.

    Surprise kept from optax: the value is 0 for t < 0.  Deviation: a negative
    boundary raises ValueError (optax then leaves [0, b_1) empty and mixes up
    the segments).
    """
    fn = "piecewise_interpolate_schedule"
    if interpolate_type == "linear":
        interpolate = lambda a, b, u: (b - a) * u + a  # noqa: E731
    elif interpolate_type == "cosine":
        interpolate = lambda a, b, u: b + (a - b) / 2.0 * (jnp.cos(jnp.pi * u) + 1)  # noqa: E731
    else:
        raise ValueError(f"{fn}: interpolate_type must be 'linear' or 'cosine', got {interpolate_type!r}")
    items = _sorted_boundaries(fn, boundaries_and_scales)
    if items and items[0][0] < 0:
        raise ValueError(f"{fn}: boundaries_and_scales keys must be non-negative, got {items[0][0]}")
    dtype = _float_dtype(init_value, *(s for _, s in items))
    bounds = [0] + [b for b, _ in items]
    values = [_as(init_value, dtype)]
    for _, s in items:
        values.append(values[-1] * _as(s, dtype))  # cumulative product

    def schedule(count: ArrayLike) -> Array:
        t = _as(count, dtype)
        value = jnp.where(t >= bounds[-1], values[-1], jnp.zeros((), dtype))
        for i in range(len(bounds) - 1):
            lo, hi = bounds[i], bounds[i + 1]
            u = (t - lo) / max(hi - lo, 1)
            inside = (t >= lo) & (t < hi)
            value = jnp.where(inside, interpolate(values[i], values[i + 1], u), value)
        return value

    return schedule


def cosine_decay_schedule(
    init_value: ArrayLike,
    decay_steps: int,
    alpha: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017, SGDR, arXiv:1608.03983):

        c(t) = (1 + cos(pi * min(t, T) / T)) / 2
        v(t) = I * ((1 - alpha) * c(t)**p + alpha)

    with T = ``decay_steps``, p = ``exponent``.  ``alpha`` is a *fraction* of I,
    not an absolute end value: v(t >= T) = alpha * I.  ``decay_steps`` must be
    positive (ValueError, as in optax).
    """
    fn = "cosine_decay_schedule"
    _check(fn, "decay_steps", decay_steps, lambda n: n > 0, "positive")
    dtype = _float_dtype(init_value, alpha, exponent)
    init, a, p = _as(init_value, dtype), _as(alpha, dtype), _as(exponent, dtype)

    def schedule(count: ArrayLike) -> Array:
        t = jnp.minimum(_as(count, dtype), decay_steps)
        c = 0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps))
        return init * ((1 - a) * c**p + a)

    return schedule
