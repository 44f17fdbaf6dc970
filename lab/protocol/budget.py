"""Tuning-protocol bookkeeping: the best trial of each study, medians over studies, and
successive-halving / ASHA rung arithmetic, as pure functions the sweep engine can call.

The contract.  A :class:`Trial` is one training run of one config: its steps and seconds
to reach the target (``inf`` both when it never did) and the seconds it spent compiling,
kept apart.  A *study* is one repetition of the tuning search: ``N`` trials.  Following
AlgoPerf's external-tuning ruleset (Dahl et al. 2023, arXiv:2306.07179; AlgoPerf
technical documentation, "External tuning ruleset": O = 5 trials per study, S = 5
studies, 25 quasi-random configs randomly partitioned into the studies):

* the best trial of a study is the fastest to reach the target among the trials that
  reach it (``by="seconds"``, compile excluded; ``by="steps"``; or ``by="total"``,
  seconds plus compile seconds, the clock AlgoPerf's training time runs on); ties go
  to fewer steps (or seconds), then to the lower trial index.  A study where no trial
  reached has no best trial and time ``inf``;
* the result over ``R`` studies is the median of the best trials' steps, seconds,
  compile seconds and totals, each taken separately (NumPy's median, ``inf`` when at
  least ``R/2`` studies never reached); the compile seconds of every trial are summed
  apart as the tuning's compile cost.

Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018, Hyperband) with
reduction factor ``eta``: rung ``k = 0..K`` trains ``n_k`` configs to ``r_k`` steps,
``r_k = r_min eta^k`` and the top rung at ``r_max`` (``K`` the largest with
``r_min eta^K <= r_max``), ``n_0 = n`` and ``n_{k+1} = max(1, floor(n_k / eta))`` (the
best ``1/eta`` go on, at least one, so some config gets the full budget).  Steps used:
``sum_k n_k (r_k - r_{k-1})`` when promoted runs resume from their checkpoint
(``r_{-1} = 0``), ``sum_k n_k r_k`` when they restart; the full grid uses ``n r_max``.
ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter Tuning",
Algorithm 2) promotes asynchronously: a config finished at rung ``k`` goes on as soon as
it is among the best ``floor(m / eta)`` of the ``m`` configs finished at rung ``k`` so far
and was not promoted yet (:func:`asha_promotions`).
"""
from __future__ import annotations

import math
from typing import Any, Hashable, Mapping, NamedTuple, Sequence

import numpy as np

BY = ("seconds", "steps", "total")


class Trial(NamedTuple):
    """One run of one config."""
    config: Mapping[str, Any]
    steps: float            # steps to reach the target; inf if never reached
    seconds: float          # training seconds to reach the target, compile excluded; inf if never
    compile_seconds: float  # seconds spent compiling (finite, >= 0), reported apart


class StudyBest(NamedTuple):
    """The best trial of one study (``trial = -1`` and times ``inf`` when none reached)."""
    trial: int
    config: Mapping[str, Any] | None
    steps: float
    seconds: float
    compile_seconds: float
    total_seconds: float    # seconds + compile_seconds


class TuningResult(NamedTuple):
    """The tuning protocol over ``R`` studies."""
    best: tuple             # (R,) StudyBest per study, in order
    steps: float            # median over studies of the best trial's steps to target
    seconds: float          # ... of its seconds to target (compile excluded)
    compile_seconds: float  # ... of its compile seconds (inf for a study that never reached)
    total_seconds: float    # ... of its seconds plus compile seconds
    reached: int            # studies whose best trial reached the target
    tuning_compile_seconds: float  # compile seconds of every trial of every study


# --------------------------------------------------------------------------- checks


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _number(where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a number, got {value!r}")
    return float(value)


def check_trial(trial, where: str = "trial") -> Trial:
    """``trial`` as a :class:`Trial` (a 4-tuple is accepted), or ValueError naming what is wrong."""
    if not isinstance(trial, Trial):
        if not isinstance(trial, Sequence) or len(trial) != 4:
            raise TypeError(f"{where} must be a Trial(config, steps, seconds, compile_seconds), got {trial!r}")
        trial = Trial(*trial)
    if not isinstance(trial.config, Mapping):
        raise TypeError(f"{where}: config must be a mapping knob -> value, got {trial.config!r}")
    steps = _number(f"{where} steps", trial.steps)
    seconds = _number(f"{where} seconds", trial.seconds)
    compile_seconds = _number(f"{where} compile_seconds", trial.compile_seconds)
    for name, value in (("steps", steps), ("seconds", seconds)):
        if math.isnan(value) or not value > 0:
            raise ValueError(f"{where}: {name} = {value!r} must be positive, or inf if the target was never reached")
    if math.isinf(steps) != math.isinf(seconds):
        raise ValueError(f"{where}: steps = {steps!r} and seconds = {seconds!r} disagree on whether "
                         f"the target was reached (both finite, or both inf)")
    if not (math.isfinite(compile_seconds) and compile_seconds >= 0):
        raise ValueError(f"{where}: compile_seconds = {compile_seconds!r} must be finite and >= 0")
    return Trial(trial.config, steps, seconds, compile_seconds)


# --------------------------------------------------------------------------- best trial, median


def best_trial(trials: Sequence, *, by: str = "seconds", where: str = "study") -> StudyBest:
    """The fastest trial of one study that reaches the target (see the module docstring)."""
    if by not in BY:
        raise ValueError(f"by must be one of {BY}, got {by!r}")
    if isinstance(trials, (str, bytes)) or not isinstance(trials, Sequence) or not trials:
        raise ValueError(f"{where} must be a non-empty sequence of trials, got {trials!r}")
    checked = [check_trial(t, f"{where} trial {i}") for i, t in enumerate(trials)]

    def key(i: int):
        t = checked[i]
        total = t.seconds + t.compile_seconds
        first = {"seconds": t.seconds, "steps": t.steps, "total": total}[by]
        second = t.seconds if by == "steps" else t.steps
        return (first, second, i)

    reached = [i for i, t in enumerate(checked) if math.isfinite(t.steps)]
    if not reached:
        return StudyBest(-1, None, math.inf, math.inf, math.inf, math.inf)
    i = min(reached, key=key)
    t = checked[i]
    return StudyBest(i, t.config, t.steps, t.seconds, t.compile_seconds, t.seconds + t.compile_seconds)


def tune(studies: Sequence[Sequence], *, by: str = "seconds") -> TuningResult:
    """Best trial per study (``R`` studies of trials each), then medians over the studies."""
    if isinstance(studies, (str, bytes)) or not isinstance(studies, Sequence) or not studies:
        raise ValueError(f"studies must be a non-empty sequence of studies (each a sequence of trials), "
                         f"got {studies!r}")
    best = tuple(best_trial(study, by=by, where=f"study {r}") for r, study in enumerate(studies))
    compile_total = sum(check_trial(t).compile_seconds for study in studies for t in study)

    def median(field: str) -> float:
        return float(np.median([getattr(b, field) for b in best]))

    return TuningResult(best, median("steps"), median("seconds"), median("compile_seconds"),
                        median("total_seconds"), sum(b.trial >= 0 for b in best), float(compile_total))


def partition_trials(n_trials: int, n_studies: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """A random partition of trial indices ``0..n_trials-1`` into ``n_studies`` equal studies.

    ``(n_studies,)`` ascending index arrays; ``numpy.random.default_rng(seed)``'s permutation
    cut into consecutive blocks (AlgoPerf: 25 configs into 5 studies of 5)."""
    n_trials = _check_int("n_trials", n_trials, 1)
    n_studies = _check_int("n_studies", n_studies, 1)
    seed = _check_int("seed", seed, 0)
    if n_trials % n_studies:
        raise ValueError(f"n_trials = {n_trials} does not split into {n_studies} equal studies")
    order = np.random.default_rng(seed).permutation(n_trials)
    return tuple(np.sort(block) for block in np.split(order, n_studies))


# --------------------------------------------------------------------------- successive halving


class Rung(NamedTuple):
    index: int      # k
    steps: int      # r_k: every config of the rung is trained to this many steps
    configs: int    # n_k: configs trained at this rung
    promoted: int   # n_{k+1}: configs promoted to the next rung (0 at the top)


class HalvingPlan(NamedTuple):
    rungs: tuple        # Rung per rung, bottom first
    eta: int
    resume: bool        # promoted runs continue from their checkpoint (else they restart)
    total_steps: int    # training steps the plan runs, all configs together
    full_steps: int     # n * r_max: every config trained to the full budget

    @property
    def saving(self) -> float:
        """``full_steps / total_steps``: how many times cheaper than the full grid."""
        return self.full_steps / self.total_steps


def rung_steps(min_steps: int, max_steps: int, eta: int = 3) -> tuple[int, ...]:
    """``(r_0, ..., r_K)``: ``r_k = min_steps eta^k`` below the top, ``r_K = max_steps``."""
    min_steps = _check_int("min_steps", min_steps, 1)
    max_steps = _check_int("max_steps", max_steps, 1)
    eta = _check_int("eta", eta, 2)
    if min_steps > max_steps:
        raise ValueError(f"min_steps = {min_steps} exceeds max_steps = {max_steps}")
    steps = [min_steps]
    while steps[-1] * eta <= max_steps:
        steps.append(steps[-1] * eta)
    steps[-1] = max_steps
    return tuple(steps)


def successive_halving(n_configs: int, min_steps: int, max_steps: int, eta: int = 3, *,
                       resume: bool = True) -> HalvingPlan:
    """The rungs of synchronous successive halving and the steps it uses against the full grid."""
    n_configs = _check_int("n_configs", n_configs, 1)
    if not isinstance(resume, bool):
        raise TypeError(f"resume must be True or False, got {resume!r}")
    steps = rung_steps(min_steps, max_steps, eta)
    counts = [n_configs]
    for _ in steps[1:]:
        counts.append(max(1, counts[-1] // eta))
    rungs = tuple(Rung(k, r, n, counts[k + 1] if k + 1 < len(steps) else 0)
                  for k, (r, n) in enumerate(zip(steps, counts)))
    previous = (0,) + steps[:-1]
    total = sum(n * (r - (p if resume else 0)) for r, n, p in zip(steps, counts, previous))
    return HalvingPlan(rungs, int(eta), resume, int(total), n_configs * steps[-1])


def asha_promotions(rung: Mapping[Hashable, float], promoted=(), eta: int = 3) -> list:
    """ASHA's promotable configs of one rung, best first.

    ``rung`` maps each config finished at this rung (in finishing order) to its score,
    lower better (an eval loss at the rung's step; ``inf`` allowed, NaN not); ``promoted``
    holds those already sent on.  A config is promotable when it is among the best
    ``floor(m / eta)`` of the ``m`` finished (ties: the earlier finished) and not promoted."""
    eta = _check_int("eta", eta, 2)
    if not isinstance(rung, Mapping):
        raise TypeError(f"rung must map config ids to scores, got {rung!r}")
    scores = {}
    for config, score in rung.items():
        score = _number(f"rung score of {config!r}", score)
        if math.isnan(score):
            raise ValueError(f"rung score of {config!r} is NaN; use inf for a config with no score")
        scores[config] = score
    promoted = set(promoted)
    unknown = [c for c in promoted if c not in scores]
    if unknown:
        raise ValueError(f"promoted configs {unknown} did not finish this rung")
    ids, values = list(scores), list(scores.values())
    order = sorted(range(len(values)), key=lambda i: (values[i], i))
    top = [ids[i] for i in order[:len(scores) // eta]]
    return [c for c in top if c not in promoted]
