"""lab.protocol: the pure mathematics of a fair optimizer benchmark (AlgoPerf-style).

    space = lab.protocol.search_space("adamw")
    configs = space.sample(25, seed=0)            # [{"learning_rate": ..., "b1": ...}, ...]
    studies = lab.protocol.partition_trials(25, 5, seed=0)
    result = lab.protocol.tune([[trials[i] for i in s] for s in studies])  # best per study, medians
    scores = lab.protocol.study_scores(times)     # (k, n, R) study times -> (k,) scores
    ci = lab.protocol.bootstrap_scores(times, samples=1000, seed=0)

Modules: :mod:`~lab.protocol.sequences` (scrambled Sobol and Halton points of the unit
cube), :mod:`~lab.protocol.spaces` (distributions, search spaces, one per optimizer
family), :mod:`~lab.protocol.profiles` (performance profiles, AlgoPerf's benchmark
score integrated exactly, bootstrap intervals over studies), :mod:`~lab.protocol.budget`
(best trial per study, medians over studies with compile time apart, successive halving
and ASHA rung arithmetic).  NumPy only: nothing here imports JAX, touches a device,
prints or writes files.
"""
from lab.protocol.budget import (HalvingPlan, Rung, StudyBest, Trial, TuningResult, asha_promotions,
                                 best_trial, partition_trials, rung_steps, successive_halving, tune)
from lab.protocol.profiles import (R_MAX, BootstrapScores, StepProfile, benchmark_score,
                                   bootstrap_scores, median_over_studies, performance_profile,
                                   performance_ratios, profile_steps, scores_from_ratios,
                                   study_scores)
from lab.protocol.sequences import MAX_SOBOL_DIM, halton, sobol
from lab.protocol.spaces import (SCHEDULE_KNOBS, SPACES, Choice, LogUniform, OneMinus, SearchSpace,
                                 Uniform, search_space, unit_points)

__all__ = [
    "sobol", "halton", "MAX_SOBOL_DIM",
    "Uniform", "LogUniform", "OneMinus", "Choice", "SearchSpace", "SPACES", "SCHEDULE_KNOBS",
    "search_space", "unit_points",
    "R_MAX", "median_over_studies", "performance_ratios", "performance_profile", "profile_steps",
    "StepProfile", "scores_from_ratios", "benchmark_score", "study_scores", "bootstrap_scores",
    "BootstrapScores",
    "Trial", "StudyBest", "TuningResult", "best_trial", "tune", "partition_trials", "Rung",
    "HalvingPlan", "rung_steps", "successive_halving", "asha_promotions",
]
