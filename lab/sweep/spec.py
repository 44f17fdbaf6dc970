"""What a sweep is: the problem, the study, the grid, and the plan they expand into.

A :class:`Study` names a family of training problems and its knobs; a
:class:`SweepSpec` picks a grid over those knobs, seeds, a step count and an evaluation
schedule; :func:`plan_sweep` checks the spec and expands it into a :class:`Plan`: every
run in canonical order (row-major over the grid axes as written, seed last), the static
groups, and the sweep's identity (its JSON config and fingerprint).  Nothing here touches
a device.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np

# Static names every study understands: the engine itself reads them.
ENGINE_STATIC = ("batch_size",)
MAX_SEED = 2**32 - 1


@dataclasses.dataclass(frozen=True)
class Problem:
    """One training problem, built on the host by ``Study.make_problem(static)``.

    ``init_params(key) -> params`` draws the initial parameters; ``loss(params, x, y, key)``
    is the batch loss (the contract of :func:`lab.train.make_step`); ``x``/``y`` are the
    training data.  ``evaluate(params, x, y) -> {name: scalar}`` gives the evaluation
    metrics on ``eval_x``/``eval_y`` (the training data when those are None); without it
    the one evaluation metric is ``loss`` computed with a fixed key.  Every function must
    be traceable: the engine calls them inside ``jit`` and ``vmap``.

    With ``loss_config=True`` the loss is called ``loss(params, x, y, key, config)``, where
    ``config`` is the run's dict of knobs that ``Study.make_optimizer`` gets (dynamic ones
    as traced scalars): a knob of the loss itself (an L2 penalty, label smoothing) can then
    be a dynamic axis, vmapped like a learning rate, instead of a static one compiled per
    value.  The default evaluation and the opt-in sharpness use the same loss."""

    init_params: Callable[[Any], Any]
    loss: Callable[..., Any]
    x: Any
    y: Any
    evaluate: Callable[[Any, Any, Any], Mapping[str, Any]] | None = None
    eval_x: Any = None
    eval_y: Any = None
    loss_config: bool = False


@dataclasses.dataclass(frozen=True)
class Study:
    """A family of problems and the knobs a sweep may turn.

    * ``make_problem(static) -> Problem`` is called once per static group, on the host,
      with the group's static options (a dict holding ``batch_size`` and every name in
      ``static``).
    * ``make_optimizer(config) -> optimizer`` is called *inside* the traced program with
      one dict holding both kinds of knob: every dynamic hyperparameter as a traced
      scalar and every static option as its Python value.  It must return an optax-style
      ``(init, update)`` pair (a :mod:`lab.optim` optimizer or an optax transform).
    * ``hyperparameters`` names the dynamic knobs (floats, vmapped) with their defaults.
    * ``static`` names the structural knobs (optimizer kind, widths, data set...) with
      their defaults; it must give ``batch_size``.  Values must be JSON-able.
    * ``description`` holds JSON-able facts that identify the problem (data size, widths,
      loss); it is part of the sweep's identity, so change it when the problem changes."""

    name: str
    make_problem: Callable[[Mapping[str, Any]], Problem]
    make_optimizer: Callable[[Mapping[str, Any]], Any]
    hyperparameters: Mapping[str, float]
    static: Mapping[str, Any]
    description: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A grid of runs over a study, or an explicit list of points.

    Identity (these define the sweep; the same values never run twice unless asked):
    ``grid`` maps knob names to the values to try (dynamic or static, in any order; the
    order written is the order of the result arrays' axes).  Or ``configs``, a list of
    dicts knob -> value (points of a search space, e.g. :mod:`lab.protocol` samples;
    knobs a point leaves out take the study's defaults), with ``grid`` left empty: the
    runs are the points times the seeds, the result arrays' first axis is ``config``
    (the point's index in the list) and each run's knobs are in ``run_configs``.  Points
    sharing their static options still share one compiled program.  ``seeds`` is a count n
    (seeds 0..n-1) or explicit seeds, ``steps`` updates per run, metrics every
    ``eval_every`` steps, and a run is *diverged* when its loss is not finite or exceeds
    ``divergence_factor`` times the absolute value of its first loss.

    Execution (these never change a result): ``chunk_steps`` steps per compiled call
    between host commits (rounded down to a multiple of ``eval_every``, at least one
    evaluation).  ``runs_per_device`` fixes the number of runs each device computes at
    once; None picks it from a memory estimate.  Results are bitwise reproducible on CPU
    for a fixed ``runs_per_device`` whatever the chunking, grid layout or device count
    (XLA's CPU reductions round differently for different batch shapes, so the engine
    keeps that shape fixed); the value used is recorded and a resumed sweep reuses it.

    Sharpness (opt-in, costly; part of the identity only when on): with
    ``sharpness_iters = m > 0`` every evaluation also records ``sharpness``, the largest
    eigenvalue of the Hessian of the training loss (``Problem.loss`` with the fixed key
    ``key(0)``) on a fixed batch, the first ``sharpness_batch`` training examples (all of
    them when the set is smaller), by ``m`` Lanczos steps (:func:`lab.curvature.top_eigenvalues`,
    start vector from the run's seed).  Each step costs about one gradient evaluation on that
    batch; ``m`` at least the parameter count gives the exact value (in exact arithmetic).

    Parameters (opt-in; part of the identity only when on): with ``keep_params=True`` each
    run's parameters after its last step (for a diverged run, as frozen before the step it
    diverged at) are stored with its results, for :meth:`lab.store.Store.final_params`."""

    study: Study
    grid: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    seeds: int | Sequence[int] = 1
    steps: int = 100
    eval_every: int = 10
    divergence_factor: float = 1e3
    chunk_steps: int = 100
    runs_per_device: int | None = None
    sharpness_iters: int = 0
    sharpness_batch: int = 256
    keep_params: bool = False
    configs: Sequence[Mapping[str, Any]] | None = None


class Group(NamedTuple):
    """Runs that share every static option, hence one compiled program."""
    index: int
    static: dict            # batch_size and every static option, by name
    runs: np.ndarray        # (n,) canonical run indices, ascending


class Plan(NamedTuple):
    """A checked spec, expanded: every run in canonical order and the static groups."""
    study: str
    axes: tuple             # ((name, values), ...): the grid axes as written, then ("seed", seeds)
    dynamic: tuple          # names of every dynamic hyperparameter (grid or default), study order
    hparams: np.ndarray     # (runs, len(dynamic)) float64: each run's dynamic values
    seeds: np.ndarray       # (runs,) uint32
    run_group: np.ndarray   # (runs,) int: the group of each run
    groups: tuple           # Group per static combination, in order of first appearance
    config: dict            # the sweep's identity as JSON-able data
    fingerprint: str        # sha256 of the canonical JSON of ``config``

    @property
    def shape(self) -> tuple:
        return tuple(len(values) for _, values in self.axes)

    @property
    def num_runs(self) -> int:
        return int(self.seeds.shape[0])

    def run_config(self, index: int) -> dict:
        """Every knob of one run: its dynamic values (floats) and static options."""
        config = dict(self.groups[int(self.run_group[index])].static)
        config.update({name: float(v) for name, v in zip(self.dynamic, self.hparams[index])})
        return config


# --------------------------------------------------------------------------- checks


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _json_value(where: str, value):
    """``value`` as plain JSON data (tuples become lists); raise if it has no JSON form."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        text = json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{where}: {value!r} cannot be stored as JSON ({err}); use numbers, "
                        f"strings, booleans and lists of them") from None
    return json.loads(text)


def _check_study(study: Study) -> None:
    if not isinstance(study, Study):
        raise TypeError(f"spec.study must be a lab.sweep.Study, got {type(study).__name__}")
    if not study.name or not isinstance(study.name, str):
        raise ValueError(f"a study needs a non-empty name, got {study.name!r}")
    clash = sorted(set(study.hyperparameters) & set(study.static))
    if clash:
        raise ValueError(f"study {study.name!r}: {clash} named both as hyperparameters and as static options")
    for reserved in ("seed", "config"):
        if reserved in study.hyperparameters or reserved in study.static:
            raise ValueError(f"study {study.name!r}: {reserved!r} is reserved for the {reserved} axis; rename "
                             f"that knob")
    if "batch_size" not in study.static:
        raise ValueError(f"study {study.name!r}: static options must give a default 'batch_size'")
    for name, value in study.hyperparameters.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise ValueError(f"study {study.name!r}: hyperparameter {name!r} needs a finite float default, got {value!r}")


def _grid_axes(spec: SweepSpec) -> list[tuple[str, tuple]]:
    study = spec.study
    if not isinstance(spec.grid, Mapping):
        raise TypeError(f"grid must be a mapping from knob name to a sequence of values, got {type(spec.grid).__name__}")
    known = set(study.hyperparameters) | set(study.static)
    axes = []
    for name, values in spec.grid.items():
        if name not in known:
            raise ValueError(
                f"grid axis {name!r} is not a knob of study {study.name!r}; hyperparameters "
                f"(vmapped): {sorted(study.hyperparameters)}, static options: {sorted(study.static)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
            raise TypeError(f"grid axis {name!r} must be a sequence of values, got {values!r}")
        values = tuple(v.item() if isinstance(v, np.generic) else v for v in values)
        if not values:
            raise ValueError(f"grid axis {name!r} is empty; give at least one value")
        if name in study.hyperparameters:
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise ValueError(f"grid axis {name!r} is a dynamic hyperparameter and needs finite "
                                     f"real numbers, got {v!r}")
            values = tuple(float(v) for v in values)
        else:
            values = tuple(_json_value(f"grid axis {name!r}", v) for v in values)
            if name == "batch_size":
                for v in values:
                    _check_int("batch_size", v, 1)
        if len(set(json.dumps(v) for v in values)) != len(values):
            raise ValueError(f"grid axis {name!r} repeats a value: {values}")
        axes.append((name, values))
    return axes


def _dynamic_value(where: str, v) -> float:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{where} is a dynamic hyperparameter and needs a finite real number, got {v!r}")
    return float(v)


def _points(spec: SweepSpec) -> list[dict]:
    """``spec.configs`` checked: each point's knobs (dynamic as floats, static as JSON)."""
    study = spec.study
    if spec.grid:
        raise ValueError("give either grid or configs, not both (a list of configs is the whole set of points)")
    if isinstance(spec.configs, Mapping) or not isinstance(spec.configs, Sequence) or not spec.configs:
        raise ValueError(f"configs must be a non-empty list of dicts knob -> value, got {spec.configs!r}")
    known, points = set(study.hyperparameters) | set(study.static), []
    for i, point in enumerate(spec.configs):
        if not isinstance(point, Mapping):
            raise TypeError(f"configs[{i}] must be a dict knob -> value, got {point!r}")
        unknown = sorted(set(point) - known)
        if unknown:
            raise ValueError(f"configs[{i}] names {unknown}, not knobs of study {study.name!r}; hyperparameters "
                             f"(vmapped): {sorted(study.hyperparameters)}, static options: {sorted(study.static)}")
        points.append({n: _dynamic_value(f"configs[{i}][{n!r}]", v) if n in study.hyperparameters
                       else _json_value(f"configs[{i}][{n!r}]", v) for n, v in point.items()})
        if "batch_size" in points[-1]:
            _check_int(f"configs[{i}]['batch_size']", points[-1]["batch_size"], 1)
    texts = [json.dumps(p, sort_keys=True) for p in points]
    if len(set(texts)) != len(texts):
        first = next(t for t in texts if texts.count(t) > 1)
        raise ValueError(f"configs repeats a point: {first}")
    return points


def _seeds(spec: SweepSpec) -> tuple[int, ...]:
    if isinstance(spec.seeds, (int, np.integer)) and not isinstance(spec.seeds, bool):
        return tuple(range(_check_int("seeds", spec.seeds, 1)))
    seeds = tuple(_check_int("each seed", s, 0) for s in spec.seeds)
    if not seeds:
        raise ValueError("seeds is empty; give a count >= 1 or at least one seed")
    if max(seeds) > MAX_SEED or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers in [0, 2**32), got {seeds}")
    return seeds


def check_execution(spec: SweepSpec) -> None:
    """Raise if the execution options (chunking, runs per device) are unusable."""
    _check_int("chunk_steps", spec.chunk_steps, 1)
    if spec.runs_per_device is not None:
        _check_int("runs_per_device", spec.runs_per_device, 1)


# --------------------------------------------------------------------------- expansion


def plan_sweep(spec: SweepSpec) -> Plan:
    """Check ``spec`` and expand it; raises ValueError/TypeError naming the first problem.

    Checks that need the data (batch size against the data set size) run later, in the
    engine, once the problems are built -- still before any compute."""
    if not isinstance(spec, SweepSpec):
        raise TypeError(f"expected a lab.sweep.SweepSpec, got {type(spec).__name__}")
    _check_study(spec.study)
    study = spec.study
    steps = _check_int("steps", spec.steps, 1)
    every = _check_int("eval_every", spec.eval_every, 1)
    if steps % every:
        raise ValueError(f"steps={steps} must be a multiple of eval_every={every}, so every run ends on an evaluation")
    factor = spec.divergence_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
        raise ValueError(f"divergence_factor must be a number > 1 (or inf), got {factor!r}")
    check_execution(spec)
    sharpness_iters = _check_int("sharpness_iters", spec.sharpness_iters, 0)
    sharpness_batch = _check_int("sharpness_batch", spec.sharpness_batch, 1)
    if not isinstance(spec.keep_params, bool):
        raise ValueError(f"keep_params must be True or False, got {spec.keep_params!r}")
    if spec.configs is None:
        axes = _grid_axes(spec)
        names = [name for name, _ in axes]
        chosen_points = [dict(zip(names, point)) for point in itertools.product(*(values for _, values in axes))]
    else:
        chosen_points = _points(spec)
        axes = [("config", tuple(range(len(chosen_points))))]
    seeds = _seeds(spec)
    dynamic = tuple(study.hyperparameters)
    static_names = ("batch_size",) + tuple(n for n in study.static if n != "batch_size")

    hparams, run_seeds, run_group, groups, group_of = [], [], [], [], {}
    for chosen, seed in itertools.product(chosen_points, seeds):
        static = {n: chosen.get(n, _json_value(f"static default {n!r}", study.static[n])) for n in static_names}
        key = json.dumps(static, sort_keys=True)
        if key not in group_of:
            group_of[key] = len(groups)
            groups.append(static)
        hparams.append([float(chosen.get(n, study.hyperparameters[n])) for n in dynamic])
        run_seeds.append(seed)
        run_group.append(group_of[key])
    run_group = np.asarray(run_group, dtype=np.int64)
    for static in groups:
        _check_int("batch_size", static["batch_size"], 1)
    group_tuple = tuple(Group(i, static, np.flatnonzero(run_group == i)) for i, static in enumerate(groups))

    config = {
        "study": study.name,
        "description": _json_value(f"study {study.name!r} description", dict(study.description)),
        "hyperparameters": {n: float(v) for n, v in study.hyperparameters.items()},
        "static": {n: _json_value(f"static default {n!r}", v) for n, v in study.static.items()},
        "grid": [[name, list(values)] for name, values in axes],
        "seeds": list(seeds),
        "steps": steps,
        "eval_every": every,
        "divergence_factor": float(factor),
    }
    if sharpness_iters:  # off by default and then absent, so older fingerprints stay valid
        config["sharpness"] = {"iters": sharpness_iters, "batch": sharpness_batch}
    if spec.keep_params:    # likewise
        config["keep_params"] = True
    if spec.configs is not None:   # likewise: the points themselves, in order
        config["configs"] = chosen_points
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return Plan(
        study=study.name,
        axes=tuple(axes) + (("seed", seeds),),
        dynamic=dynamic,
        hparams=np.asarray(hparams, dtype=np.float64).reshape(len(run_seeds), len(dynamic)),
        seeds=np.asarray(run_seeds, dtype=np.uint32),
        run_group=run_group,
        groups=group_tuple,
        config=config,
        fingerprint=hashlib.sha256(text.encode()).hexdigest(),
    )


def classification_metrics(apply: Callable) -> Callable:
    """An ``evaluate`` for classifiers: ``{"loss", "accuracy"}`` of the logits ``apply(params, x)``
    against integer labels (softmax cross-entropy; fraction of arg-max hits)."""
    from lab import losses, train

    def evaluate(params, x, y):
        logits = apply(params, x)
        return {"loss": losses.softmax_cross_entropy_with_integer_labels(logits, y),
                "accuracy": train.accuracy(logits, y)}

    return evaluate
