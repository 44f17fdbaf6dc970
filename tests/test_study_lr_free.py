"""The learning-rate-free study on a tiny config: structure, COCOB's invariance, the good range."""
import math

import numpy as np
import pytest

from studies import common, lr_free

TINY = lr_free.Config(methods=("adamw", "cocob", "dog"), hidden=8, steps=40, eval_every=20,
                      multiplier_min=0.1, multiplier_max=10.0, multiplier_points=3, seeds=1)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return lr_free.run(TINY, store=tmp_path_factory.mktemp("lr_free") / "lab.sqlite", progress=False)


def test_structure_and_rows(results):
    assert results["final"].shape == (3, 3, 1)
    assert results["methods"] == ["adamw", "cocob", "dog"]
    np.testing.assert_allclose(results["multipliers"], [0.1, 1.0, 10.0])
    adamw = results["median"][0]
    assert results["adamw_best"] == pytest.approx(float(np.min(adamw)))
    assert results["threshold"] == pytest.approx(lr_free.GOOD_FACTOR * results["adamw_best"])
    for m, row in results["rows"].items():
        i = results["methods"].index(m)
        assert row["default_loss"] == pytest.approx(float(results["median"][i, 1]))
        assert row["default_is_good"] == (row["default_loss"] <= results["threshold"])
    assert "| cocob |" in lr_free.report(results)


def test_cocob_ignores_its_multiplier(results):
    # optax's (and so lab's) COCOB scales the gradient by learning_rate; COCOB is invariant to that
    cocob = results["median"][1]
    assert np.all(np.isfinite(cocob)) and np.max(cocob) / np.min(cocob) < 1.01


def test_tuned_adamw_and_cocob_learn(results):
    start = math.log(10.0)   # cross-entropy at a uniform prediction
    assert results["adamw_best"] < 0.8 * start
    assert results["rows"]["cocob"]["default_loss"] < 0.8 * start


def test_good_range_is_the_widest_adjacent_run():
    mults = np.array([0.01, 0.1, 1.0, 10.0, 100.0])
    assert lr_free.good_range(mults, np.array([5.0, 1.0, 1.0, 5.0, 1.0]), 2.0) == (0.1, 1.0, pytest.approx(1.0))
    low, high, decades = lr_free.good_range(mults, np.array([5.0, np.inf, 5.0, 5.0, 5.0]), 2.0)
    assert math.isnan(low) and math.isnan(high) and decades == 0.0


def test_bad_configs_are_refused_before_compute():
    with pytest.raises(ValueError, match="must include adamw"):
        common.check_config(lr_free.Config(methods=("dog",)), lr_free.plan)
    with pytest.raises(ValueError, match="unknown"):
        common.check_config(lr_free.Config(methods=("adamw", "sgd")), lr_free.plan)
    with pytest.raises(ValueError, match="multiplier_min < multiplier_max"):
        common.check_config(lr_free.Config(multiplier_min=10.0, multiplier_max=1.0), lr_free.plan)


def test_plot_draws_one_figure(results, tmp_path):
    paths = lr_free.plot(results, tmp_path)
    assert [p.name for p in paths] == ["lr_free_sensitivity.png", "lr_free_sensitivity.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)
