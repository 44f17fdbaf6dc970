"""What the studies share, written once.

* Numbers: :func:`float_dtype` (the default float: float32, float64 under x64),
  :func:`final_or_inf` (a sweep's final metric, +inf where the run diverged),
  :func:`median_or_inf`, :func:`nan_median`, :func:`ceil` (medians over seeds; +inf drawn at
  a ceiling on a log axis) and :func:`contraction_rate` (per-step rate of a distance).
* Problems: :func:`digits` (the 8x8 digits as host arrays), :func:`digits_mlp` (the tanh MLP
  64-hidden-10), :func:`classifier` (from :mod:`lab.workloads`: a softmax cross-entropy
  :class:`lab.sweep.Problem` for a net), :func:`digits_mlp_problem` (the two together, on every image),
  :func:`spectrum` / :func:`quadratic_hessian` (the quadratics with geometric eigenvalues)
  and :func:`rosenbrock`.
* Identity: :func:`describe` builds a Study description from the values that shape the
  problem (config fields, constants, functions by name), so it cannot drift from the code.
* The contract's ``run`` / ``load``: a study writes ``results(config, sweep)`` once, where
  ``sweep(spec) -> SweepResult``; :func:`run` hands it a ``sweep`` that runs
  (:func:`lab.sweep.run_sweep`, finished sweeps are fetched), :func:`load` one that only
  reads (:func:`studies.stored_sweep`, LookupError when a sweep is missing).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets
from lab.store import Store
from lab.sweep import Problem, SweepResult, SweepSpec, check_sweep, classification_metrics, run_sweep
from lab.workloads import classifier
from studies import stored_sweep

Sweep = Callable[[SweepSpec], SweepResult]
DIGITS = 1797                     # images in the 8x8 digits set
DIGITS_CLASSES = 10
QUADRATIC_ROTATION_KEY = 0        # key of lab.data.quadratic's random rotation in every quadratic study


# --------------------------------------------------------------------------- numbers


def float_dtype():
    """The default float dtype (float32; float64 when x64 is on)."""
    return jnp.result_type(float)


def np_float() -> np.dtype:
    return np.dtype(float_dtype())


def final_or_inf(result: SweepResult, metric: str = "eval_loss") -> np.ndarray:
    """Final ``metric`` of every run, +inf where the run diverged."""
    return np.where(result.diverged_step >= 0, np.inf, result.final[metric])


def median_or_inf(values, axis=-1) -> np.ndarray:
    """Median over ``axis``, +inf counted as a value (so more than half inf gives inf)."""
    return np.median(np.asarray(values), axis=axis)


def nan_median(values) -> float:
    """Median of the finite-or-inf entries, NaN ignored; NaN when none is finite."""
    values = np.asarray(values, np.float64)
    return float(np.nanmedian(values)) if np.any(np.isfinite(values)) else math.nan


def ceil(values, ceiling: float) -> np.ndarray:
    """``values`` with every non-finite entry replaced by ``ceiling`` (drawn at the top of a plot)."""
    v = np.asarray(values, np.float64)
    return np.where(np.isfinite(v), v, ceiling)


def contraction_rate(distance, steps, floor: float) -> np.ndarray:
    """Per-step contraction of ``distance`` (last axis, measured at ``steps``): ``exp`` of the
    least-squares slope of ``log distance`` over the later half of the points above ``floor``;
    NaN where fewer than two points are usable (a run that diverged at once)."""
    distance = np.asarray(distance, np.float64)
    steps = np.asarray(steps, np.float64)
    flat = distance.reshape(-1, distance.shape[-1])
    out = np.full(flat.shape[0], np.nan)
    for i, d in enumerate(flat):
        ok = np.flatnonzero(np.isfinite(d) & (d > floor))
        if ok.size < 2:
            continue
        last = ok[-1]
        window = ok[(ok >= last // 2) & (ok <= last)]
        if window.size < 2:
            window = ok[-2:]
        out[i] = np.exp(np.polyfit(steps[window], np.log(d[window]), 1)[0])
    return out.reshape(distance.shape[:-1])


# --------------------------------------------------------------------------- problems


@functools.cache
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits, ``(x (1797, 64) float32 in [0, 1], y (1797,) int32)`` as NumPy arrays."""
    x, y = data.load_digits()
    return np.asarray(x, np.float32), np.asarray(y, np.int32)


def digits_mlp(hidden: int, activation: str = "tanh"):
    """The MLP 64-``hidden``-10 the digits studies train."""
    return nets.mlp([int(hidden), DIGITS_CLASSES], activation=activation)


def digits_mlp_problem(hidden: int) -> Problem:
    """The tanh MLP 64-``hidden``-10 on every digit (training set = evaluation set)."""
    x, y = digits()
    return classifier(digits_mlp(hidden), x, y)


def digits_mlp_facts(hidden: int, **more) -> dict:
    """The description facts of :func:`digits_mlp_problem` (data, net, loss, evaluation)."""
    x, _ = digits()
    facts = dict(data=data.load_digits, examples=x.shape[0], features=x.shape[1],
                 net=mlp_name((x.shape[1], int(hidden), DIGITS_CLASSES), "tanh"),
                 loss=losses.softmax_cross_entropy_with_integer_labels, evaluate=classification_metrics)
    return describe(**{**facts, **more})


def mlp_name(widths, activation: str) -> str:
    """``"mlp 64-32-10 tanh"``: the widths from input to output and the activation."""
    return f"mlp {'-'.join(str(int(w)) for w in widths)} {activation}"


def spectrum(kappa: float, dimension: int) -> np.ndarray:
    """``dimension`` eigenvalues geometric in ``[1/kappa, 1]`` (both ends included)."""
    return np.geomspace(1.0 / kappa, 1.0, dimension)


def quadratic_hessian(kappa: float, dimension: int):
    """``A = Q diag(spectrum(kappa, dimension)) Q^T`` with :func:`lab.data.quadratic`'s rotation
    from ``key(QUADRATIC_ROTATION_KEY)``, in the default float dtype."""
    return data.quadratic(jax.random.key(QUADRATIC_ROTATION_KEY), spectrum(kappa, dimension), dtype=float_dtype()).A


def rosenbrock(w):
    """``(1 - x)^2 + 100 (y - x^2)^2``: minimum 0 at (1, 1)."""
    return (1.0 - w[0]) ** 2 + 100.0 * (w[1] - w[0] ** 2) ** 2


def rosenbrock_contours(ax, color="0.7"):
    """Rosenbrock's level sets on [-2, 2] x [-1, 3] (the window of the 2-D path figures)."""
    gx, gy = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    ax.contour(gx, gy, rosenbrock((gx, gy)), levels=np.geomspace(0.1, 2000, 15), colors=color, linewidths=0.6)


def dummy_data() -> tuple[np.ndarray, np.ndarray]:
    """A one-example data set for problems whose loss ignores the batch (full-batch training)."""
    return np.zeros((1, 1), np.float32), np.zeros((1,), np.int32)


# --------------------------------------------------------------------------- identity


def _plain(value):
    if callable(value):   # a function by name (lab's with their module; a study's own by name alone)
        module = value.__module__ or ""
        return value.__qualname__ if module.startswith("studies") else f"{module}.{value.__qualname__}"
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe(config=None, fields=(), **facts) -> dict:
    """A Study description from what shapes the problem: the named ``fields`` of ``config``
    (their values) and ``facts`` (constants; a function stands as its qualified name, a tuple
    as a list), so that it is computed from the code instead of retyped beside it."""
    out = {name: getattr(config, name) for name in fields}
    out.update(facts)
    return _plain(out)


# --------------------------------------------------------------------------- checks


def knob_range(name: str, value) -> str | None:
    """The range a config field must lie in for its meaning, read from its name and type:
    integers are counts, sizes and steps (>= 1; seeds and degrees >= 0); of other numbers,
    momenta and betas lie in [0, 1), fractions in (0, 1], noise, L2, decay and decades are
    >= 0, the rest (learning rates, targets, condition numbers, dampings) > 0.  None for
    text and flags."""
    if isinstance(value, (bool, str)) or value is None:
        return None
    low = name.lower()
    if isinstance(value, int):
        if low == "seed" or low.endswith("_seed") or "degree" in low:
            return "whole [0, inf)"
        return "whole [1, inf)"
    if "beta" in low or "momentum" in low:
        return "[0, 1)"
    if "fraction" in low:
        return "(0, 1]"
    if any(word in low for word in ("noise", "l2", "decay", "decades")):
        return "[0, inf)"
    return "(0, inf)"


def _outside(value, interval: str) -> bool:
    whole = interval.startswith("whole ")
    interval = interval.removeprefix("whole ")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        return True
    low, high = (float(t) for t in interval[1:-1].split(","))
    above = value > low if interval[0] == "(" else value >= low
    below = value < high if interval[-1] == ")" else value <= high
    return not (math.isfinite(value) and above and below)


def check_ranges(config) -> None:
    """Raise ValueError naming the first field of the dataclass ``config`` outside
    :func:`knob_range` (for a tuple: empty, or any item outside)."""
    defaults = type(config)()
    for field in dataclasses.fields(config):
        value, default = getattr(config, field.name), getattr(defaults, field.name)
        items = value if isinstance(value, tuple) else (value,)
        if isinstance(value, tuple) and not value:
            raise ValueError(f"{field.name} is empty; give at least one value")
        example = (default[0] if default else None) if isinstance(default, tuple) else default
        interval = knob_range(field.name, example)
        if interval is None:
            continue
        bad = [v for v in items if _outside(v, interval)]
        if bad:
            kind = "whole numbers" if interval.startswith("whole") else "finite numbers"
            raise ValueError(f"{field.name}={value!r}: {'each value ' if isinstance(value, tuple) else ''}must "
                             f"be in {interval.removeprefix('whole ')} ({kind}); {bad[0]!r} is not")


def check_config(config, plan: Callable | None = None) -> list:
    """Everything a study can check before computing: the config's field ranges
    (:func:`check_ranges`), the study's own checks and every sweep it plans from the config
    alone (``plan(config) -> [SweepSpec]``, which runs those checks), each checked as the
    engine would (:func:`lab.sweep.check_sweep`).  Returns the planned specs."""
    check_ranges(config)
    specs = [] if plan is None else list(plan(config))
    for spec in specs:
        check_sweep(spec)
    return specs


# --------------------------------------------------------------------------- run / load


def run(results: Callable, config, *, store, progress: bool = True, rerun: bool = False,
        plan: Callable | None = None):
    """``results(config, sweep)`` where ``sweep(spec)`` runs the sweep (or fetches it when it is
    already finished and ``rerun`` is False), every sweep on one open :class:`lab.store.Store`;
    first the config and every sweep of ``plan(config)`` are checked (:func:`check_config`),
    so a bad setting in a later sweep stops the study before the first computes."""
    check_config(config, plan)
    db = store if isinstance(store, Store) else Store(store)
    try:
        return results(config, lambda spec: run_sweep(spec, store=db, progress=progress, rerun=rerun))
    finally:
        if db is not store:
            db.close()


def load(results: Callable, config, *, store):
    """``results(config, sweep)`` where ``sweep(spec)`` reads the finished sweep from ``store``
    (:func:`studies.stored_sweep`): nothing is trained, LookupError when a sweep is missing."""
    return results(config, lambda spec: stored_sweep(spec, store))
