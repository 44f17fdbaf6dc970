"""The learning-rate study on a tiny config: shapes, the 2/lambda_max threshold, load == run, figures."""
import dataclasses
import math

import numpy as np
import pytest

from lab.store import Store
from studies import learning_rate as lr
from tests.helpers import by_precision

TINY = dataclasses.replace(
    lr.QUICK, quad_dim=20, quad_steps=100, quad_coarse_points=7, quad_fine_points=41, hidden=8, mlp_steps=20,
    lr_min=0.01, lr_max=3.0, lr_points=3, schedule_lr_min=0.1, schedule_lr_max=1.0, schedule_lr_points=2,
    schedules=("constant", "cosine"), seeds=2, eval_every=10, batch_size=16)


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    db = tmp_path_factory.mktemp("lr") / "lab.sqlite"
    return db, lr.run(TINY, store=db, progress=False)


def test_quadratic_threshold_matches_two_over_lambda_max(ran):
    _, res = ran
    # The fine grid spaces rates 1.1% apart around 2/lambda_max; the interpolated crossing
    # must land within 5% of the prediction (in practice within 1%).
    assert res["lambda_max"] == pytest.approx(TINY.quad_lambda_max)
    assert res["threshold_predicted"] == pytest.approx(2.0 / TINY.quad_lambda_max)
    assert res["threshold_relative_error"] < 0.05, (res["threshold_measured"], res["threshold_predicted"])
    below = res["quad_lr"] < 0.97 * res["threshold_predicted"]
    above = res["quad_lr"] > 1.03 * res["threshold_predicted"]
    assert np.all(res["quad_ratio"][below] < 1.0) and np.all(res["quad_ratio"][above] > 1.0)


def test_result_shapes(ran):
    _, res = ran
    seeds, evals = TINY.seeds, TINY.mlp_steps // TINY.eval_every
    n_quad = TINY.quad_coarse_points + TINY.quad_fine_points
    assert res["quad_lr"].shape == res["quad_ratio"].shape == (n_quad,)
    assert res["mlp_final"].shape == (TINY.lr_points, seeds)
    assert res["curves"].shape == (3, seeds, evals) and res["curve_lrs"].shape == (3,)
    assert res["sched_final"].shape == (2, TINY.schedule_lr_points, seeds)
    assert res["sched_curves"].shape == (2, seeds, evals) and res["schedules"] == TINY.schedules
    assert res["mlp_best_lr"] in set(res["mlp_lr"].tolist())
    # 20 SGD steps at a sensible rate already lower the cross-entropy from about ln 10.
    assert res["mlp_best_loss"] < math.log(10.0)


def test_load_rebuilds_run_without_training(ran, tmp_path):
    db, res = ran
    again = lr.load(TINY, store=db)
    for key in ("quad_ratio", "mlp_final", "sched_final", "curves", "sched_curves", "threshold_measured"):
        np.testing.assert_array_equal(again[key], res[key], err_msg=key)
    with pytest.raises(LookupError, match="not in"):
        lr.load(TINY, store=Store(tmp_path / "empty.sqlite"))
    with pytest.raises(LookupError, match="no results database"):
        lr.load(TINY, store=tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()


def test_plot_and_report(ran, tmp_path):
    _, res = ran
    paths = lr.plot(res, tmp_path)
    names = sorted(p.name for p in paths)
    expected = sorted(f"{stem}.{ext}" for stem in lr.FIGURES for ext in ("png", "svg"))
    assert names == expected
    for p in paths:
        assert p.stat().st_size > 1000
    table = lr.report(res)
    assert "2/lambda_max" in table and f"{res['threshold_measured']:.4g}" in table
    assert table.count("\n| schedule ") == len(TINY.schedules)


def test_measure_threshold_interpolates_in_log_log():
    lrs = np.array([0.1, 0.2, 0.4, 0.8])
    # log ratio crosses 0 a third of the way from 0.2 to 0.4 (in log lr)
    ratios = np.array([0.5, math.exp(-1.0), math.exp(2.0), np.inf])
    assert lr.measure_threshold(lrs, ratios) == pytest.approx(0.2 * 2 ** (1 / 3), rel=1e-12)
    assert lr.measure_threshold(lrs, [0.5, 0.6, np.inf, np.inf]) == pytest.approx(math.sqrt(0.08), rel=1e-12)
    assert math.isnan(lr.measure_threshold(lrs, [0.5] * 4))


@pytest.mark.parametrize("kind, count, expected", [
    ("constant", 70, 1.0), ("step", 49, 1.0), ("step", 50, 0.1), ("step", 75, 0.01),
    ("exponential", 100, 0.01), ("cosine", 50, 0.5), ("warmup_cosine", 0, 0.0), ("warmup_cosine", 10, 1.0),
    ("onecycle", 30, 1.0), ("onecycle", 100, 1.0 / 25 / 1e4),
])
def test_schedule_shapes(kind, count, expected):
    values = lr._schedule_values(kind, 100, np.arange(101))
    assert values[count] == pytest.approx(expected, rel=by_precision(1e-9, 1e-6), abs=1e-12)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr.make_schedule("linear", 1.0, 100)


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="schedules must be a non-empty subset"):
        lr.specs(dataclasses.replace(TINY, schedules=("linear",)))
    with pytest.raises(ValueError, match="mlp_steps=25 must be a multiple of eval_every=10"):
        lr.specs(dataclasses.replace(TINY, mlp_steps=25))
