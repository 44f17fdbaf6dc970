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
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from lab.optim.base import Schedule

Array = jax.Array

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


def exponential_decay(
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Optional[ArrayLike] = None,
) -> Schedule:
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


def warmup_exponential_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Optional[ArrayLike] = None,
) -> Schedule:
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


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
) -> Schedule:
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
    fn = "linear_onecycle_schedule"
    b1, b2, t_end = _onecycle_bounds(fn, transition_steps, pct_start=pct_start, pct_final=pct_final)
    _check(fn, "div_factor", div_factor, lambda d: d > 0, "positive")
    _check(fn, "final_div_factor", final_div_factor, lambda d: d > 0, "positive")
    dtype = _float_dtype(peak_value, div_factor, final_div_factor)
    div, final_div = _as(div_factor, dtype), _as(final_div_factor, dtype)
    return piecewise_interpolate_schedule(
        "linear", _as(peak_value, dtype) / div, {b1: div, b2: 1.0 / div, t_end: 1.0 / final_div})


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    div_factor: ArrayLike = 25.0,
    final_div_factor: ArrayLike = 1e4,
) -> Schedule:
    """One-cycle policy with cosine phases (Smith & Topin 2017, arXiv:1708.07120).

    With P = ``peak_value``, v0 = P / div_factor, b1 = int(pct_start T):

        v0 -> P on [0, b1),  P -> v0 / final_div_factor on [b1, T),

    each by cosine interpolation a -> b: b + (a - b) / 2 (cos(pi u) + 1), then
    v0 / final_div_factor for t >= T.  Surprise kept from optax: v = 0 for t < 0.
    Deviation: 0 <= b1 < T is required (ValueError) and the factors must be
    positive.
    """
    fn = "cosine_onecycle_schedule"
    b1, t_end = _onecycle_bounds(fn, transition_steps, pct_start=pct_start)
    _check(fn, "div_factor", div_factor, lambda d: d > 0, "positive")
    _check(fn, "final_div_factor", final_div_factor, lambda d: d > 0, "positive")
    dtype = _float_dtype(peak_value, div_factor, final_div_factor)
    div, final_div = _as(div_factor, dtype), _as(final_div_factor, dtype)
    return piecewise_interpolate_schedule(
        "cosine", _as(peak_value, dtype) / div, {b1: div, t_end: 1.0 / (div * final_div)})


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
