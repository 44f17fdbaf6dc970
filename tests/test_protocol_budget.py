"""lab.protocol.budget: best trial per study, medians over studies, successive halving and ASHA."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lab.protocol import budget
from lab.protocol.budget import Rung, Trial

INF = math.inf

# One study of four trials.  By seconds (compile excluded) t0 wins (50 s); by steps t1 (800);
# by total seconds (seconds + compile, AlgoPerf's clock) t3 (55 + 1 = 56 against 80, 65).
STUDY = [
    Trial({"learning_rate": 0.1}, 1000, 50.0, 30.0),
    Trial({"learning_rate": 0.2}, 800, 60.0, 5.0),
    Trial({"learning_rate": 3.0}, INF, INF, 2.0),   # diverged: never reached the target
    Trial({"learning_rate": 0.05}, 1200, 55.0, 1.0),
]


def test_best_trial_by_each_clock():
    best = budget.best_trial(STUDY)
    assert best == budget.StudyBest(0, {"learning_rate": 0.1}, 1000.0, 50.0, 30.0, 80.0)
    assert budget.best_trial(STUDY, by="steps").trial == 1
    assert budget.best_trial(STUDY, by="total") == budget.StudyBest(3, {"learning_rate": 0.05}, 1200.0,
                                                                    55.0, 1.0, 56.0)


def test_a_study_where_nothing_reached():
    never = [Trial({}, INF, INF, 4.0), Trial({}, INF, INF, 3.0)]
    assert budget.best_trial(never) == budget.StudyBest(-1, None, INF, INF, INF, INF)


def test_ties_go_to_fewer_steps_then_the_lower_index():
    study = [Trial({"i": 0}, 900, 50.0, 0.0), Trial({"i": 1}, 700, 50.0, 9.0), Trial({"i": 2}, 700, 50.0, 0.0)]
    assert budget.best_trial(study).trial == 1              # 50 s each; 700 < 900 steps; index 1 < 2
    assert budget.best_trial(study, by="steps").trial == 1  # 700 steps, 50 s each: the lower index
    assert budget.best_trial(study, by="total").trial == 2  # 50 + 0 beats 50 + 9
    assert budget.best_trial([tuple(t) for t in study]).trial == 1  # plain 4-tuples are trials too


def test_median_over_studies_with_compile_time_apart():
    # study 0: the fixture, best t0 (1000 steps, 50 s, compile 30, total 80)
    # study 1: best 900 steps in 40 s, compile 10 (total 50)
    # study 2: nothing reached (inf everywhere)
    # medians of the three: steps median(1000, 900, inf) = 1000, seconds median(50, 40, inf) = 50,
    # compile median(30, 10, inf) = 30, total median(80, 50, inf) = 80 -- each field on its own
    # compile cost of the tuning: (30 + 5 + 2 + 1) + (10 + 7) + (4 + 4) = 63
    studies = [STUDY,
               [Trial({"learning_rate": 0.3}, 900, 40.0, 10.0), Trial({"learning_rate": 0.01}, 2000, 95.0, 7.0)],
               [Trial({"learning_rate": 9.0}, INF, INF, 4.0), Trial({"learning_rate": 8.0}, INF, INF, 4.0)]]
    result = budget.tune(studies)
    assert [b.trial for b in result.best] == [0, 0, -1]
    assert (result.steps, result.seconds, result.compile_seconds, result.total_seconds) == (1000, 50, 30, 80)
    assert result.reached == 2 and result.tuning_compile_seconds == 63.0
    # a second unreached study: the median is inf (at least half never reached)
    result = budget.tune(studies + [studies[2]])
    assert result.seconds == INF and result.steps == INF and result.reached == 2
    # with four studies the median is the mean of the middle two: seconds median(50, 40, 40, inf) = 45
    result = budget.tune([STUDY, studies[1], studies[1], studies[2]])
    assert result.seconds == 45.0 and result.steps == 950.0


def test_partition_trials_like_algoperf():
    studies = budget.partition_trials(25, 5, seed=0)
    assert len(studies) == 5 and all(len(s) == 5 for s in studies)
    np.testing.assert_array_equal(np.sort(np.concatenate(studies)), np.arange(25))
    assert all(np.all(np.diff(s) > 0) for s in studies)
    again = budget.partition_trials(25, 5, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(studies, again))
    other = budget.partition_trials(25, 5, seed=1)
    assert not all(np.array_equal(a, b) for a, b in zip(studies, other))


# --------------------------------------------------------------------------- successive halving


def test_successive_halving_81_configs():
    # eta = 3, 100 .. 8100 steps: rungs 100, 300, 900, 2700, 8100 with 81, 27, 9, 3, 1 configs
    # resumed: 81*100 + 27*(300-100) + 9*(900-300) + 3*(2700-900) + 1*(8100-2700)
    #        = 8100 + 5400 + 5400 + 5400 + 5400 = 29700
    # restarted: 81*100 + 27*300 + 9*900 + 3*2700 + 1*8100 = 5 * 8100 = 40500
    # full grid: 81 * 8100 = 656100, 22.09x the resumed plan
    plan = budget.successive_halving(81, 100, 8100)
    assert plan.rungs == (Rung(0, 100, 81, 27), Rung(1, 300, 27, 9), Rung(2, 900, 9, 3),
                          Rung(3, 2700, 3, 1), Rung(4, 8100, 1, 0))
    assert (plan.total_steps, plan.full_steps) == (29700, 656100)
    assert plan.saving == pytest.approx(656100 / 29700)
    assert budget.successive_halving(81, 100, 8100, resume=False).total_steps == 40500


def test_successive_halving_uneven_cases():
    # 10 configs, 1..9 steps: counts 10, floor(10/3) = 3, 1; resumed 10*1 + 3*2 + 1*6 = 22,
    # restarted 10 + 9 + 9 = 28, full 90
    plan = budget.successive_halving(10, 1, 9)
    assert [(r.steps, r.configs, r.promoted) for r in plan.rungs] == [(1, 10, 3), (3, 3, 1), (9, 1, 0)]
    assert plan.total_steps == 22 and plan.full_steps == 90
    assert budget.successive_halving(10, 1, 9, resume=False).total_steps == 28
    # the top rung is max_steps when it is not min_steps * eta^K: 100, 300, 1000;
    # 27 configs: 27*100 + 9*200 + 3*700 = 6600
    assert budget.rung_steps(100, 1000) == (100, 300, 1000)
    assert budget.successive_halving(27, 100, 1000).total_steps == 6600
    # fewer configs than eta: at least one goes on at every rung, 2*1 + 1*2 + 1*6 + 1*18 = 28
    plan = budget.successive_halving(2, 1, 27)
    assert [r.configs for r in plan.rungs] == [2, 1, 1, 1] and plan.total_steps == 28
    # one rung when min = max: the full grid itself
    plan = budget.successive_halving(5, 40, 40)
    assert plan.rungs == (Rung(0, 40, 5, 0),) and plan.total_steps == plan.full_steps == 200
    # eta = 2: 16 configs, 10..80 steps: 16*10 + 8*10 + 4*20 + 2*40 = 400 against 1280
    plan = budget.successive_halving(16, 10, 80, eta=2)
    assert [r.configs for r in plan.rungs] == [16, 8, 4, 2] and plan.total_steps == 400


# --------------------------------------------------------------------------- ASHA


def test_asha_promotions_as_configs_finish():
    # configs finish rung 0 one by one (scores: lower is better); promotable = the best
    # floor(m / 3) of the m finished, less those already promoted
    rung, promoted, history = {}, [], []
    for config, score in [("a", 0.9), ("b", 0.5), ("c", 0.7), ("d", 0.2), ("e", INF), ("f", 0.6),
                          ("g", 0.1)]:
        rung[config] = score
        new = budget.asha_promotions(rung, promoted)
        promoted += new[:1]  # a free worker takes the best promotable one
        history.append(new)
    # m=1,2: none; m=3: top 1 = b; m=4: top 1 = d (b no longer in the top); m=5: top 1 = d,
    # promoted already; m=6: top 2 = d, b, both promoted already; m=7: top 2 = g, d: g
    assert history == [[], [], ["b"], ["d"], [], [], ["g"]]
    assert promoted == ["b", "d", "g"]


def test_asha_with_every_config_finished_promotes_as_successive_halving():
    scores = dict(zip(range(27), np.random.default_rng(0).permutation(27).astype(float)))
    promotable = budget.asha_promotions(scores)
    assert len(promotable) == budget.successive_halving(27, 1, 9).rungs[0].promoted == 9
    assert promotable == sorted(scores, key=scores.get)[:9]
    assert budget.asha_promotions({"x": 1.0, "y": 1.0, "z": 1.0}) == ["x"]  # ties: finished first


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,error,match", [
    (lambda: budget.best_trial([Trial({}, 100, INF, 0.0)]), ValueError, "disagree on whether"),
    (lambda: budget.best_trial([Trial({}, INF, 5.0, 0.0)]), ValueError, "disagree on whether"),
    (lambda: budget.best_trial([Trial({}, 0, 5.0, 0.0)]), ValueError, "steps = 0.0 must be positive"),
    (lambda: budget.best_trial([Trial({}, 10, math.nan, 0.0)]), ValueError, "seconds = nan"),
    (lambda: budget.best_trial([STUDY[0], Trial({}, 10, 5.0, -1.0)]), ValueError,
     "study trial 1: compile_seconds = -1.0"),
    (lambda: budget.best_trial([Trial({}, 10, 5.0, INF)]), ValueError, "compile_seconds = inf"),
    (lambda: budget.best_trial([Trial([0.1], 10, 5.0, 0.0)]), TypeError, "config must be a mapping"),
    (lambda: budget.best_trial([(1, 2)]), TypeError, "must be a Trial"),
    (lambda: budget.best_trial([]), ValueError, "non-empty sequence of trials"),
    (lambda: budget.best_trial(STUDY, by="wall"), ValueError, "by must be one of"),
    (lambda: budget.tune([]), ValueError, "non-empty sequence of studies"),
    (lambda: budget.tune([STUDY, []]), ValueError, "study 1 must be a non-empty"),
    (lambda: budget.partition_trials(25, 4), ValueError, "does not split into 4 equal studies"),
    (lambda: budget.partition_trials(0, 1), ValueError, "n_trials must be >= 1"),
    (lambda: budget.rung_steps(100, 10), ValueError, "min_steps = 100 exceeds max_steps = 10"),
    (lambda: budget.rung_steps(1, 10, eta=1), ValueError, "eta must be >= 2"),
    (lambda: budget.successive_halving(0, 1, 9), ValueError, "n_configs must be >= 1"),
    (lambda: budget.successive_halving(9, 1.5, 9), TypeError, "min_steps must be an integer"),
    (lambda: budget.asha_promotions({"a": math.nan}), ValueError, "NaN"),
    (lambda: budget.asha_promotions({"a": 1.0}, promoted=["b"]), ValueError, r"promoted configs \['b'\]"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
