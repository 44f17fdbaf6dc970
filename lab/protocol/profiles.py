"""Performance profiles and AlgoPerf's benchmark score, computed exactly, with bootstrap intervals.

The contract: ``times`` is an array ``(..., k, n)`` of times to target ``t_{s,w}`` for
``k`` submissions on ``n`` workloads (positive, ``inf`` where never reached); study
times ``(k, n, R)`` hold ``R`` repetitions of the tuning search ("studies") per pair,
reduced by :func:`median_over_studies` first.  Everything is NumPy, pure, and seeded
where random.  Definitions (Dolan & More 2002, "Benchmarking optimization software with
performance profiles", Math. Program. 91; as AlgoPerf scores with them, Dahl et al.
2023, "Benchmarking Neural Network Training Algorithms", arXiv:2306.07179, section
"Scoring", and the AlgoPerf technical documentation, "Benchmark score using performance
profiles"):

* ``t_{s,w} = median_r t_{s,w,r}``: the median over the studies of the per-study time
  (the fastest trial of the study; ``inf`` if none reached): ``inf`` when at least
  ``R/2`` studies never reached (NumPy's median, the mean of the middle two for even R).
* ratio ``r_{s,w} = t_{s,w} / min_{s'} t_{s',w}`` in ``[1, inf]``.
* profile ``rho_s(tau) = (1/n) #{w : r_{s,w} <= tau}``, a right-continuous step function.
* score ``B_s = 1/(r_max - 1) int_1^{r_max} rho_s(tau) dtau`` with ``r_max = 4``.
  Integrated exactly: each workload adds ``1/n`` on ``[r_{s,w}, r_max]``, so
  ``B_s = sum_w max(0, r_max - r_{s,w}) / (n (r_max - 1))``: a submission more than
  ``r_max`` times slower than the fastest gets no credit on that workload, the fastest
  gets full credit, ``B_s`` lies in ``[0, 1]``.

Workloads no submission reached (``min_s t_{s,w} = inf``): with ``unreached="count"``,
the default and what AlgoPerf's scoring code does (``rho`` divides by the fixed number of
workloads, and ``inf / inf`` compares false against every ``tau``), they stay in ``n``
and give credit to nobody; ``unreached="drop"`` removes them from ``n`` (the profile over
the workloads someone solved).  With ``"drop"`` and no workload reached at all the score
is undefined: :func:`benchmark_score` raises, and a bootstrap draw scores 0.

Bootstrap (Efron & Tibshirani 1993, percentile interval): for each draw, every pair
``(s, w)`` resamples its ``R`` studies with replacement, independently; the medians,
ratios and scores are recomputed; the interval is the ``(1 - level)/2`` and
``(1 + level)/2`` quantiles of the draws.  Ratios couple submissions (the fastest sets
every ratio), so the draws of all submissions are kept for joint questions
(``P(B_a > B_b) ~ mean(draws[:, a] > draws[:, b])``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

R_MAX = 4.0  # AlgoPerf's upper integration limit (and plot limit)
UNREACHED = ("count", "drop")


# --------------------------------------------------------------------------- checks


def check_times(times, name: str = "times", min_ndim: int = 2) -> np.ndarray:
    """``times`` as float64, or ValueError naming the first entry that is not a positive time or inf."""
    array = np.asarray(times, dtype=np.float64)
    if array.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} axes, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    bad = np.isnan(array) | ~(array > 0)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}{list(where)} = {float(array[where])!r} is not a time to target "
                         f"(a positive number, or inf for never reached)")
    return array


def _check_r_max(r_max) -> float:
    if isinstance(r_max, bool) or not isinstance(r_max, (int, float, np.integer, np.floating)) \
            or not 1 < r_max < np.inf:
        raise ValueError(f"r_max must be a finite number above 1, got {r_max!r}")
    return float(r_max)


def _check_unreached(unreached: str) -> str:
    if unreached not in UNREACHED:
        raise ValueError(f"unreached must be one of {UNREACHED}, got {unreached!r}")
    return unreached


# --------------------------------------------------------------------------- profiles


def median_over_studies(study_times) -> np.ndarray:
    """``(..., k, n, R) -> (..., k, n)``: the median over the ``R`` studies of each pair."""
    return np.median(check_times(study_times, "study_times", 3), axis=-1)


def performance_ratios(times) -> np.ndarray:
    """``(..., k, n)`` ratios ``t_{s,w} / min_s t_{s,w}``; ``inf`` where ``t`` is, or no one reached ``w``."""
    times = check_times(times)
    best = times.min(axis=-2, keepdims=True)
    return np.divide(times, best, out=np.full(times.shape, np.inf), where=np.isfinite(best))


def _counted(ratios: np.ndarray, unreached: str) -> np.ndarray:
    """``(..., n)`` number of workloads in the profile's denominator, per leading index."""
    n = ratios.shape[-1]
    if unreached == "count":
        return np.full(ratios.shape[:-2], n, dtype=np.int64)
    return np.isfinite(ratios).any(axis=-2).sum(axis=-1)


def performance_profile(ratios, taus, *, unreached: str = "count") -> np.ndarray:
    """``rho_s(tau)``: ``(k, n)`` ratios, ``(m,)`` taus -> ``(k, m)`` fractions of workloads with ``r <= tau``."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 2:
        raise ValueError(f"ratios must be (submissions, workloads), got shape {ratios.shape}")
    taus = np.asarray(taus, dtype=np.float64)
    if taus.ndim != 1:
        raise ValueError(f"taus must be one-dimensional, got shape {taus.shape}")
    counted = _counted(ratios, _check_unreached(unreached))
    if counted == 0:
        raise ValueError("no workload was reached by any submission, so with unreached='drop' "
                         "the profile is empty")
    hits = (ratios[:, :, None] <= taus[None, None, :]).sum(axis=1)
    return hits / counted


class StepProfile(NamedTuple):
    """One submission's exact profile: ``rho(tau) = values[i]`` for ``taus[i] <= tau < taus[i+1]``
    (0 before ``taus[0]``; draw with ``where="post"``)."""
    taus: np.ndarray    # (m,) the distinct finite ratios, ascending: where rho jumps
    values: np.ndarray  # (m,) rho from each jump on


def profile_steps(ratios, *, unreached: str = "count") -> list[StepProfile]:
    """The exact step function ``rho_s`` of each submission of ``(k, n)`` ``ratios``."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 2:
        raise ValueError(f"ratios must be (submissions, workloads), got shape {ratios.shape}")
    counted = _counted(ratios, _check_unreached(unreached))
    if counted == 0:
        raise ValueError("no workload was reached by any submission, so with unreached='drop' "
                         "the profile is empty")
    steps = []
    for row in ratios:
        taus, jumps = np.unique(row[np.isfinite(row)], return_counts=True)
        steps.append(StepProfile(taus, np.cumsum(jumps) / counted))
    return steps


def scores_from_ratios(ratios, r_max: float = R_MAX, *, unreached: str = "count") -> np.ndarray:
    """``(..., k, n)`` ratios -> ``(..., k)`` exact scores ``sum_w max(0, r_max - r) / (n (r_max - 1))``.

    With ``unreached="drop"``, a leading index with no reached workload scores 0."""
    ratios = np.asarray(ratios, dtype=np.float64)
    r_max = _check_r_max(r_max)
    credit = np.maximum(r_max - ratios, 0.0).sum(axis=-1)  # (..., k); inf ratios give 0
    counted = _counted(ratios, _check_unreached(unreached))[..., None] * (r_max - 1.0)
    return np.divide(credit, counted, out=np.zeros(credit.shape), where=counted > 0)


def benchmark_score(times, r_max: float = R_MAX, *, unreached: str = "count") -> np.ndarray:
    """AlgoPerf's score ``B_s`` of each submission, ``(k, n)`` times to target -> ``(k,)``."""
    times = check_times(times)
    if times.ndim != 2:
        raise ValueError(f"times must be (submissions, workloads), got shape {times.shape}; "
                         f"reduce study times with median_over_studies first")
    if _check_unreached(unreached) == "drop" and not np.isfinite(times).any():
        raise ValueError("no workload was reached by any submission, so with unreached='drop' "
                         "the score is undefined")
    return scores_from_ratios(performance_ratios(times), r_max, unreached=unreached)


def study_scores(study_times, r_max: float = R_MAX, *, unreached: str = "count") -> np.ndarray:
    """``(k, n, R)`` study times -> ``(k,)`` scores of the medians over studies."""
    return benchmark_score(median_over_studies(study_times), r_max, unreached=unreached)


# --------------------------------------------------------------------------- bootstrap


class BootstrapScores(NamedTuple):
    """Scores with percentile bootstrap intervals; every array is per submission."""
    score: np.ndarray  # (k,) the score of the medians of the studies as given
    low: np.ndarray    # (k,) the (1 - level)/2 quantile of the draws
    high: np.ndarray   # (k,) the (1 + level)/2 quantile of the draws
    draws: np.ndarray  # (samples, k) the score of each resample
    level: float


def bootstrap_scores(study_times, *, samples: int = 1000, seed: int = 0, level: float = 0.95,
                     r_max: float = R_MAX, unreached: str = "count") -> BootstrapScores:
    """Percentile bootstrap of the scores over the studies: ``(k, n, R)`` study times.

    Each draw resamples, for every submission and workload independently, ``R`` of its
    studies with replacement (``numpy.random.default_rng(seed)``), then takes medians,
    ratios and scores as :func:`study_scores` does."""
    times = check_times(study_times, "study_times", 3)
    if times.ndim != 3:
        raise ValueError(f"study_times must be (submissions, workloads, studies), got shape {times.shape}")
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a nonnegative integer, got {seed!r}")
    if isinstance(level, bool) or not isinstance(level, (float, int)) or not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    r_max, unreached = _check_r_max(r_max), _check_unreached(unreached)
    score = study_scores(times, r_max, unreached=unreached)
    k, n, repetitions = times.shape
    pick = np.random.default_rng(int(seed)).integers(0, repetitions, size=(int(samples), k, n, repetitions))
    resampled = np.take_along_axis(np.broadcast_to(times, pick.shape), pick, axis=-1)
    draws = scores_from_ratios(performance_ratios(np.median(resampled, axis=-1)), r_max,
                               unreached=unreached)
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return BootstrapScores(score, low, high, draws, float(level))
