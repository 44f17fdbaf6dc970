"""Search spaces: named knobs with a distribution each, sampled as an explicit list of configs.

The contract: a distribution maps a coordinate ``u`` of the unit cube to a knob value
(``Uniform``, ``LogUniform``, ``Choice``, and ``OneMinus`` of either of the first two);
a :class:`SearchSpace` is an ordered mapping ``knob -> distribution``, and
``space.sample(n, seed, method)`` draws ``n`` points of the cube (scrambled Sobol or
Halton from :mod:`lab.protocol.sequences`, or plain pseudo-random) and maps coordinate
``c`` through the ``c``-th knob's distribution.  The result is a list of ``n`` dicts
``{knob: value}`` in the space's knob order, values plain Python numbers (floats for the
continuous distributions), ready to be fed to the sweep engine as explicit configs.
Quasi-random search over such a space is the tuning protocol of AlgoPerf's external
tuning ruleset (Dahl et al. 2023, after Bousquet et al. 2017, arXiv:1706.03200).

* ``Uniform(low, high)``: ``low + u (high - low)``, ``low < high``.
* ``LogUniform(low, high)``: ``exp(log low + u log(high / low))``, ``0 < low < high``.
* ``Choice(values)``: ``values[floor(u len(values))]``, each value equally likely.
* ``OneMinus(d)``: ``1 - d(u)``, for a knob near 1 searched on the scale of ``1 - knob``
  (a momentum ``b1 = 1 - LogUniform(1e-2, 0.5)``); the knob keeps its optimizer's name.

:data:`SPACES` holds one space per optimizer family as data: the knob names are
arguments of the ``lab.optim`` function of the same name, or one of
:data:`SCHEDULE_KNOBS` (``warmup_fraction``: the fraction of the step budget spent in a
linear learning-rate warmup, for the caller's schedule).  Bad input (an empty or
inverted range, a non-positive log range, an unknown knob, method or optimizer name,
``n <= 0``) raises ValueError naming the problem.  NumPy only.
"""
from __future__ import annotations

import dataclasses
import math
import types
from typing import Any, Mapping, Sequence

import numpy as np

from lab.protocol import sequences

METHODS = ("sobol", "halton", "random")
SCHEDULE_KNOBS = ("warmup_fraction",)  # knobs of the learning-rate schedule, not of the optimizer


def _real(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a real number, got {value!r} of type {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}")
    return float(value)


def _check_range(kind: str, low, high) -> tuple[float, float]:
    low, high = _real(f"{kind} low", low), _real(f"{kind} high", high)
    if low == high:
        raise ValueError(f"{kind}({low!r}, {high!r}) is an empty range: low must be below high")
    if low > high:
        raise ValueError(f"{kind}({low!r}, {high!r}) is inverted: low must be below high")
    return low, high


@dataclasses.dataclass(frozen=True)
class Uniform:
    """``low + u (high - low)``: uniform on ``[low, high]``."""
    low: float
    high: float

    def __post_init__(self):
        low, high = _check_range("Uniform", self.low, self.high)
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def transform(self, u: np.ndarray) -> list:
        return [float(v) for v in np.clip(self.low + u * (self.high - self.low), self.low, self.high)]


@dataclasses.dataclass(frozen=True)
class LogUniform:
    """``exp(log low + u log(high / low))``: ``log`` of the value uniform on ``[log low, log high]``."""
    low: float
    high: float

    def __post_init__(self):
        low, high = _check_range("LogUniform", self.low, self.high)
        if low <= 0:
            raise ValueError(f"LogUniform({low!r}, {high!r}) needs a positive range (0 < low < high); "
                             f"use Uniform for a range that reaches 0 or below")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def transform(self, u: np.ndarray) -> list:
        values = np.exp(math.log(self.low) + u * math.log(self.high / self.low))
        return [float(v) for v in np.clip(values, self.low, self.high)]


@dataclasses.dataclass(frozen=True)
class OneMinus:
    """``1 - d(u)`` for a ``Uniform`` or ``LogUniform`` ``d`` over the values of ``1 - knob``."""
    of: Uniform | LogUniform

    def __post_init__(self):
        if not isinstance(self.of, (Uniform, LogUniform)):
            raise TypeError(f"OneMinus takes a Uniform or LogUniform over 1 - knob, got {self.of!r}")

    def transform(self, u: np.ndarray) -> list:
        return [1.0 - v for v in self.of.transform(u)]


@dataclasses.dataclass(frozen=True)
class Choice:
    """``values[floor(u len(values))]``: one of finitely many values, equally likely.

    Values are numbers (returned as given: an int stays an int), strings or booleans."""
    values: tuple

    def __post_init__(self):
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, (Sequence, np.ndarray)):
            raise TypeError(f"Choice takes a sequence of values, got {self.values!r}")
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in self.values)
        if not values:
            raise ValueError("Choice(()) is empty: give at least one value")
        for v in values:
            if not isinstance(v, (bool, int, float, str)):
                raise TypeError(f"Choice values must be numbers, strings or booleans, got {v!r}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"Choice values must be finite, got {v!r}")
        if len({(type(v), v) for v in values}) != len(values):
            raise ValueError(f"Choice{values!r} repeats a value")
        object.__setattr__(self, "values", values)

    def transform(self, u: np.ndarray) -> list:
        index = np.minimum((u * len(self.values)).astype(np.int64), len(self.values) - 1)
        return [self.values[i] for i in index]


DISTRIBUTIONS = (Uniform, LogUniform, OneMinus, Choice)


def unit_points(n: int, dim: int, seed: int, method: str = "sobol") -> np.ndarray:
    """``(n, dim)`` points of ``[0, 1)^dim``: scrambled Sobol or Halton from ``seed``, or pseudo-random."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an integer, got {n!r} of type {type(n).__name__}")
    if n <= 0:
        raise ValueError(f"n must be a positive number of configs, got {n}")
    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}; choose one of {METHODS}")
    if method == "sobol":
        return sequences.sobol(int(n), dim, seed=seed)
    if method == "halton":
        return sequences.halton(int(n), dim, seed=seed)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a nonnegative integer, got {seed!r}")
    return np.random.default_rng(int(seed)).random((int(n), dim))


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """An ordered mapping ``knob -> distribution``; coordinate ``c`` of a sample point is knob ``c``."""
    distributions: Mapping[str, Any]

    def __post_init__(self):
        if not isinstance(self.distributions, Mapping):
            raise TypeError(f"a SearchSpace takes a mapping knob -> distribution, got {self.distributions!r}")
        if not self.distributions:
            raise ValueError("a SearchSpace needs at least one knob")
        for knob, dist in self.distributions.items():
            if not isinstance(knob, str) or not knob.isidentifier():
                raise ValueError(f"knob names must be identifiers, got {knob!r}")
            if not isinstance(dist, DISTRIBUTIONS):
                raise TypeError(f"knob {knob!r}: expected one of "
                                f"{[d.__name__ for d in DISTRIBUTIONS]}, got {dist!r}")
        object.__setattr__(self, "distributions", types.MappingProxyType(dict(self.distributions)))

    @property
    def knobs(self) -> tuple[str, ...]:
        return tuple(self.distributions)

    def _check_known(self, names) -> None:
        unknown = [name for name in names if name not in self.distributions]
        if unknown:
            raise ValueError(f"unknown knob(s) {unknown}; this space has {list(self.knobs)}")

    def restrict(self, knobs: Sequence[str]) -> "SearchSpace":
        """The space over ``knobs`` only (in the order given)."""
        if isinstance(knobs, str):
            knobs = (knobs,)
        self._check_known(knobs)
        return SearchSpace({k: self.distributions[k] for k in knobs})

    def replace(self, **distributions) -> "SearchSpace":
        """The same knobs with some distributions replaced (a fixed value is ``Choice((v,))``)."""
        self._check_known(distributions)
        return SearchSpace({**self.distributions, **distributions})

    def sample(self, n: int, seed: int = 0, method: str = "sobol") -> list[dict]:
        """``n`` configs ``{knob: value}``: the distributions applied to ``n`` points of the cube."""
        points = unit_points(n, len(self.knobs), seed, method)
        columns = [dist.transform(points[:, c]) for c, dist in enumerate(self.distributions.values())]
        return [dict(zip(self.knobs, row)) for row in zip(*columns)]


# --------------------------------------------------------------------------- the spaces, as data

_LR_ADAM = LogUniform(1e-4, 1e-1)
_B1 = OneMinus(LogUniform(1e-2, 0.5))      # b1 in [0.5, 0.99]
_B2 = OneMinus(LogUniform(1e-4, 1e-1))     # b2 in [0.9, 0.9999]
_MOMENTUM = OneMinus(LogUniform(1e-3, 0.5))  # momentum in [0.5, 0.999]
_WEIGHT_DECAY = LogUniform(1e-5, 1e-1)
_WARMUP = Uniform(0.0, 0.1)

_SPACES = {
    "sgd": {"learning_rate": LogUniform(1e-3, 1.0), "momentum": _MOMENTUM, "warmup_fraction": _WARMUP},
    "heavy_ball": {"learning_rate": LogUniform(1e-3, 1.0), "beta": _MOMENTUM, "warmup_fraction": _WARMUP},
    "rmsprop": {"learning_rate": LogUniform(1e-5, 1e-1), "decay": OneMinus(LogUniform(1e-3, 0.5)),
                "eps": LogUniform(1e-10, 1e-3), "warmup_fraction": _WARMUP},
    "adam": {"learning_rate": _LR_ADAM, "b1": _B1, "b2": _B2, "warmup_fraction": _WARMUP},
    "adamw": {"learning_rate": _LR_ADAM, "b1": _B1, "b2": _B2, "weight_decay": _WEIGHT_DECAY,
              "warmup_fraction": _WARMUP},
    "nadamw": {"learning_rate": _LR_ADAM, "b1": _B1, "b2": _B2, "weight_decay": _WEIGHT_DECAY,
               "warmup_fraction": _WARMUP},
    "lion": {"learning_rate": LogUniform(1e-5, 1e-2), "b1": _B1, "b2": OneMinus(LogUniform(1e-3, 1e-1)),
             "weight_decay": LogUniform(1e-4, 1.0), "warmup_fraction": _WARMUP},
    # LAMB's learning rate is a relative step per layer (||dw|| = lr ||w||): above 0.1 it
    # collapsed the digits MLP to chance in 1000 steps (lr 3e-2 already did), so the range stops there
    "lamb": {"learning_rate": LogUniform(1e-4, 1e-1), "b1": _B1, "b2": _B2, "weight_decay": _WEIGHT_DECAY,
             "warmup_fraction": _WARMUP},
    "schedule_free_adamw": {"learning_rate": LogUniform(1e-4, 1e-1), "b1": _B1, "b2": _B2,
                            "weight_decay": _WEIGHT_DECAY, "warmup_fraction": _WARMUP},
    "prodigy": {"learning_rate": LogUniform(0.1, 10.0), "weight_decay": _WEIGHT_DECAY,
                "warmup_fraction": _WARMUP},
    "adopt": {"learning_rate": _LR_ADAM, "b1": _B1, "b2": OneMinus(LogUniform(1e-5, 1e-2)),
              "warmup_fraction": _WARMUP},
    "madgrad": {"learning_rate": LogUniform(1e-4, 1e-1), "momentum": _MOMENTUM,
                "weight_decay": _WEIGHT_DECAY, "warmup_fraction": _WARMUP},
    "muon": {"learning_rate": LogUniform(1e-3, 1.0), "beta": OneMinus(LogUniform(1e-2, 0.5)),
             "weight_decay": _WEIGHT_DECAY, "warmup_fraction": _WARMUP},
    "sophia": {"learning_rate": LogUniform(1e-5, 1e-2), "b1": OneMinus(LogUniform(1e-2, 0.2)),
               "b2": OneMinus(LogUniform(1e-3, 1e-1)), "weight_decay": _WEIGHT_DECAY,
               "gamma": LogUniform(1e-3, 1e-1), "warmup_fraction": _WARMUP},
}
# read-only: optimizer name -> {knob: distribution}
SPACES = types.MappingProxyType({name: types.MappingProxyType(space) for name, space in _SPACES.items()})


def search_space(optimizer: str) -> SearchSpace:
    """The search space of ``optimizer`` (a name in :data:`SPACES`)."""
    if optimizer not in SPACES:
        raise ValueError(f"no search space for optimizer {optimizer!r}; known: {sorted(SPACES)}")
    return SearchSpace(SPACES[optimizer])
