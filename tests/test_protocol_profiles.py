"""lab.protocol.profiles: performance profiles and AlgoPerf's score, by hand and by quadrature.

Score (AlgoPerf technical documentation, "Integrating performance profiles for the
benchmark score"): B_s = 1/(r_max - 1) int_1^{r_max} rho_s(tau) dtau, r_max = 4.
"""
from __future__ import annotations

import numpy as np
import pytest

from lab.protocol import profiles

INF = np.inf

# The hand-computed fixture: 3 submissions x 4 workloads, times to target (medians over studies).
#            w1    w2    w3    w4
#   A        10    20    30    inf     (never reaches w4)
#   B        20    10    45    40
#   C        15    80    30    20
#   min      10    10    30    20
# ratios r = t / min:
#   A         1     2     1    inf
#   B         2     1   1.5      2
#   C       1.5     8     1      1
# profiles rho(tau) = #{w : r_w <= tau} / 4, right-continuous steps:
#   A: 2/4 on [1, 2), 3/4 on [2, inf)                      (w4 never counts)
#   B: 1/4 on [1, 1.5), 2/4 on [1.5, 2), 4/4 on [2, inf)
#   C: 2/4 on [1, 1.5), 3/4 on [1.5, 8), 4/4 on [8, inf)
# integrals over [1, 4], as areas of the steps:
#   A: (2/4)(2 - 1) + (3/4)(4 - 2)                 = 0.5 + 1.5          = 2.0
#   B: (1/4)(0.5) + (2/4)(0.5) + (4/4)(4 - 2)      = 0.125 + 0.25 + 2   = 2.375
#   C: (2/4)(0.5) + (3/4)(4 - 1.5)                 = 0.25 + 1.875       = 2.125
# scores B = integral / (4 - 1): A = 2/3, B = 2.375/3 = 19/24, C = 2.125/3 = 17/24;
# the same as sum_w max(0, 4 - r_w) / (4 * 3): A (3 + 2 + 3 + 0)/12 = 8/12, B (2 + 3 + 2.5 + 2)/12
# = 9.5/12, C (2.5 + 0 + 3 + 3)/12 = 8.5/12.
TIMES = np.array([[10.0, 20.0, 30.0, INF],
                  [20.0, 10.0, 45.0, 40.0],
                  [15.0, 80.0, 30.0, 20.0]])
RATIOS = np.array([[1.0, 2.0, 1.0, INF],
                   [2.0, 1.0, 1.5, 2.0],
                   [1.5, 8.0, 1.0, 1.0]])
SCORES = np.array([2 / 3, 19 / 24, 17 / 24])


def test_hand_fixture_ratios_profiles_and_scores():
    np.testing.assert_array_equal(profiles.performance_ratios(TIMES), RATIOS)
    taus = [1.0, 1.25, 1.5, 1.75, 2.0, 3.0, 4.0, 7.99, 8.0, 100.0]
    rho = profiles.performance_profile(RATIOS, taus)
    np.testing.assert_array_equal(rho, [[2, 2, 2, 2, 3, 3, 3, 3, 3, 3],
                                        [1, 1, 2, 2, 4, 4, 4, 4, 4, 4],
                                        [2, 2, 3, 3, 3, 3, 3, 3, 4, 4]] / np.float64(4))
    steps = profiles.profile_steps(RATIOS)
    np.testing.assert_array_equal(steps[0].taus, [1.0, 2.0])
    np.testing.assert_array_equal(steps[0].values, [0.5, 0.75])
    np.testing.assert_array_equal(steps[1].taus, [1.0, 1.5, 2.0])
    np.testing.assert_array_equal(steps[1].values, [0.25, 0.5, 1.0])
    np.testing.assert_array_equal(steps[2].taus, [1.0, 1.5, 8.0])
    np.testing.assert_array_equal(steps[2].values, [0.5, 0.75, 1.0])
    np.testing.assert_allclose(profiles.benchmark_score(TIMES), SCORES, rtol=0, atol=1e-15)


def test_hand_fixture_from_studies():
    # three studies per pair whose medians are the fixture; A's w4 reached in one study of three
    studies = np.stack([TIMES * 0.5, TIMES, TIMES * 3.0], axis=-1)
    studies[0, 3] = [12.0, INF, INF]
    np.testing.assert_array_equal(profiles.median_over_studies(studies), TIMES)
    np.testing.assert_allclose(profiles.study_scores(studies), SCORES, rtol=0, atol=1e-15)


def test_median_over_studies_with_unreached_studies():
    t = np.array([[[1.0, 2.0, INF], [1.0, INF, INF], [3.0, 1.0, 2.0]],
                  [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]])
    np.testing.assert_array_equal(profiles.median_over_studies(t), [[2.0, INF, 2.0], [2.0, 5.0, 8.0]])
    even = np.array([[[1.0, 3.0, INF, 5.0], [1.0, INF, 2.0, INF]]])
    # even R: the mean of the middle two; half the studies unreached gives inf
    np.testing.assert_array_equal(profiles.median_over_studies(even), [[4.0, INF]])


def midpoint_integral(ratios, r_max, points=300_000, unreached="count"):
    taus = 1 + (np.arange(points) + 0.5) * (r_max - 1) / points
    return profiles.performance_profile(ratios, taus, unreached=unreached).mean(axis=1)


@pytest.mark.parametrize("r_max", [4.0, 1.5, 10.0])
def test_exact_integral_against_quadrature(r_max):
    rng = np.random.default_rng(0)
    times = np.exp(rng.normal(size=(5, 9)))
    times[rng.random(times.shape) < 0.2] = INF
    times[:, 4] = INF  # a workload nobody reached
    ratios = profiles.performance_ratios(times)
    for unreached in profiles.UNREACHED:
        exact = profiles.scores_from_ratios(ratios, r_max, unreached=unreached)
        # midpoint rule on a step function: error <= jumps * h / 2 = 9 (r_max - 1) / (2 * 300000)
        np.testing.assert_allclose(exact, midpoint_integral(ratios, r_max, unreached=unreached),
                                   rtol=0, atol=2e-5 * (r_max - 1))
    assert exact.shape == (5,) and np.all((0 <= exact) & (exact <= 1))


def test_ties_share_full_credit():
    times = np.array([[5.0, 2.0], [5.0, 4.0], [20.0, 2.0]])
    np.testing.assert_array_equal(profiles.performance_ratios(times), [[1, 1], [1, 2], [4, 1]])
    # credit per workload max(0, 4 - r) / 3: A 1 + 1, B 1 + 2/3, C 0 + 1 (ratio exactly r_max: no credit)
    np.testing.assert_allclose(profiles.benchmark_score(times), [1.0, 5 / 6, 0.5], rtol=1e-15)
    np.testing.assert_array_equal(profiles.benchmark_score(np.full((3, 4), 7.0)), [1.0, 1.0, 1.0])


def test_workloads_nobody_reached():
    # AlgoPerf ("count"): the workload stays in n, credit to nobody; "drop": it leaves n
    times = np.concatenate([TIMES, np.full((3, 1), INF)], axis=1)
    np.testing.assert_allclose(profiles.benchmark_score(times), SCORES * 4 / 5, rtol=1e-15)
    np.testing.assert_allclose(profiles.benchmark_score(times, unreached="drop"), SCORES, rtol=1e-15)
    rho = profiles.performance_profile(profiles.performance_ratios(times), [100.0])
    np.testing.assert_array_equal(rho[:, 0], [3 / 5, 4 / 5, 4 / 5])
    steps = profiles.profile_steps(profiles.performance_ratios(times), unreached="drop")
    np.testing.assert_array_equal(steps[1].values, [0.25, 0.5, 1.0])
    nobody = np.full((2, 3), INF)
    np.testing.assert_array_equal(profiles.benchmark_score(nobody), [0.0, 0.0])
    with pytest.raises(ValueError, match="no workload was reached"):
        profiles.benchmark_score(nobody, unreached="drop")


def test_scores_are_scale_free_and_permute_with_the_rows():
    rng = np.random.default_rng(1)
    times = np.exp(rng.normal(size=(4, 6)))
    scores = profiles.benchmark_score(times)
    scaled = times * np.array([1e-3, 1.0, 7.0, 1e4, 0.5, 2.0])  # another time unit per workload
    np.testing.assert_allclose(profiles.benchmark_score(scaled), scores, rtol=1e-12)
    order = [2, 0, 3, 1]
    np.testing.assert_allclose(profiles.benchmark_score(times[order][:, ::-1]), scores[order], rtol=1e-12)


@pytest.mark.parametrize("call,match", [
    (lambda: profiles.benchmark_score([[1.0, np.nan]]), r"times\[0, 1\] = nan is not a time"),
    (lambda: profiles.benchmark_score([[1.0, 0.0]]), r"times\[0, 1\] = 0.0"),
    (lambda: profiles.benchmark_score([[1.0], [-2.0]]), r"times\[1, 0\] = -2.0"),
    (lambda: profiles.benchmark_score([[1.0, -INF]]), "is not a time"),
    (lambda: profiles.benchmark_score([1.0, 2.0]), "at least 2 axes"),
    (lambda: profiles.benchmark_score(np.ones((2, 2, 2))), "reduce study times"),
    (lambda: profiles.benchmark_score(TIMES, r_max=1.0), "r_max must be a finite number above 1"),
    (lambda: profiles.benchmark_score(TIMES, unreached="ignore"), "unreached must be one of"),
    (lambda: profiles.median_over_studies(TIMES), "study_times must have at least 3 axes"),
    (lambda: profiles.bootstrap_scores(np.ones((2, 2, 3)), samples=0), "samples must be a positive"),
    (lambda: profiles.bootstrap_scores(np.ones((2, 2, 3)), level=1.0), r"level must be in \(0, 1\)"),
    (lambda: profiles.bootstrap_scores(np.ones((2, 2, 3)), seed=-1), "seed must be a nonnegative"),
])
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- bootstrap


def synthetic_studies(rng, studies=21, sigma=0.3):
    """A is fastest everywhere; B is 1.5x, 2x, 2.5x, 3x slower in median, so B's true score is
    (2.5 + 2 + 1.5 + 1) / 12 = 7/12 and A's is 1.  Log-normal noise per study."""
    median = np.array([[10.0, 20.0, 30.0, 40.0], [15.0, 40.0, 75.0, 120.0]])
    return median[:, :, None] * np.exp(sigma * rng.standard_normal((2, 4, studies)))


def test_bootstrap_is_deterministic_from_its_seed():
    times = synthetic_studies(np.random.default_rng(5), studies=5)
    a = profiles.bootstrap_scores(times, samples=200, seed=3)
    b = profiles.bootstrap_scores(times, samples=200, seed=3)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert a.draws.shape == (200, 2)
    assert not np.array_equal(a.draws, profiles.bootstrap_scores(times, samples=200, seed=4).draws)
    np.testing.assert_array_equal(a.score, profiles.study_scores(times))
    np.testing.assert_array_equal(a.low, np.quantile(a.draws, (1 - 0.95) / 2, axis=0))
    np.testing.assert_array_equal(a.high, np.quantile(a.draws, (1 + 0.95) / 2, axis=0))
    assert np.all(a.low <= a.high) and a.level == 0.95


def test_bootstrap_of_identical_studies_has_no_width():
    times = np.repeat(TIMES[:, :, None], 5, axis=-1)
    result = profiles.bootstrap_scores(times, samples=50, seed=0)
    np.testing.assert_allclose(result.draws, np.broadcast_to(SCORES, (50, 3)), rtol=1e-15)
    np.testing.assert_allclose([result.low, result.high], [SCORES, SCORES], rtol=1e-15)


def test_bootstrap_resamples_each_pair_separately():
    # one pair's studies vary, every other pair's are identical: only the scores it touches move
    times = np.repeat(TIMES[:, :, None], 5, axis=-1)
    times[1, 3] = [10.0, 15.0, 40.0, 45.0, 50.0]  # B on w4, median 40 as in the fixture
    draws = profiles.bootstrap_scores(times, samples=300, seed=1).draws
    np.testing.assert_allclose(draws[:, 0], SCORES[0], rtol=1e-15)  # A: not on w4, fastest elsewhere
    # B's time on w4 moves its score, and C's ratio there (20 over min(20, B's resampled median))
    assert np.ptp(draws[:, 1]) > 0 and np.ptp(draws[:, 2]) > 0


def test_bootstrap_interval_coverage():
    # 200 synthetic benchmarks of 21 studies: the percentile interval covers B's true score 7/12
    # at about its level (a median bootstrap runs a little conservative), A's 1 always
    true = np.array([1.0, 7 / 12])
    rng = np.random.default_rng(0)
    benchmarks = [synthetic_studies(rng) for _ in range(200)]
    coverage = {}
    for level in (0.5, 0.9):
        hits = np.zeros(2)
        for e, times in enumerate(benchmarks):
            result = profiles.bootstrap_scores(times, samples=400, seed=e, level=level)
            hits += (result.low <= true) & (true <= result.high)
        coverage[level] = hits / len(benchmarks)
    assert coverage[0.9][0] == 1.0 and coverage[0.5][0] == 1.0
    assert 0.82 <= coverage[0.9][1] <= 0.99, coverage
    assert 0.40 <= coverage[0.5][1] <= 0.70, coverage
