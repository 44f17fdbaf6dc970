"""Sweeps over an explicit list of points (``SweepSpec(configs=[...])``), as a search-space
sample gives them: the same runs as a grid gives, one compile per static group, refused
bad points."""
import numpy as np
import pytest

from lab.protocol import search_space
from lab.store import Store
from lab.sweep import plan_sweep, run_sweep
from lab.sweep import program as prog
from tests.sweep_problem import STUDY, spec
from tests.test_sweep_engine import COMPILES

POINTS = [{"learning_rate": 0.03, "momentum": 0.5}, {"learning_rate": 0.1},
          {"learning_rate": 0.3, "momentum": 0.0, "batch_size": 8}, {"learning_rate": 0.1, "batch_size": 8}]


def test_points_run_as_the_same_runs_of_a_grid_and_compile_once_per_static_group(tmp_path):
    prog._COMPILED.clear()
    before = len(COMPILES)
    result = run_sweep(spec(grid={}, configs=POINTS), store=tmp_path / "lab.sqlite", progress=False)
    assert len(COMPILES) - before == 2                       # batch sizes 16 (default) and 8
    assert result.shape == (4, 2) and result.axes["config"] == (0, 1, 2, 3)
    third = result.run_configs[result.index(config=2, seed=1)]
    assert third == {"batch_size": 8, "width": 16, "learning_rate": 0.3, "momentum": 0.0}
    assert result.run_configs[result.index(config=3, seed=0)]["momentum"] == 0.9   # defaults fill the rest
    for i, point in enumerate(POINTS):                       # each point equals the same run in a grid
        grid = {name: [value] for name, value in point.items()}
        alone = run_sweep(spec(grid=grid), store=":memory:", progress=False)
        for metric in result.curves:
            np.testing.assert_array_equal(result.curves[metric][i], alone.curves[metric].reshape(2, -1))
    again = run_sweep(spec(grid={}, configs=POINTS), store=tmp_path / "lab.sqlite", progress=False)
    assert again.sweep_id == result.sweep_id                 # found, not recomputed
    with Store(tmp_path / "lab.sqlite", readonly=True) as db:
        assert len(db.list_sweeps()) == 1


def test_the_points_are_the_identity():
    a = plan_sweep(spec(grid={}, configs=POINTS))
    b = plan_sweep(spec(grid={}, configs=POINTS[::-1]))
    assert a.fingerprint != b.fingerprint and a.config["configs"][0] == POINTS[0]
    assert "configs" not in plan_sweep(spec()).config          # grid sweeps keep their fingerprints


def test_a_search_space_sample_feeds_the_engine():
    sample = search_space("sgd").sample(6, seed=0)
    knobs = {k: v for k, v in sample[0].items() if k in STUDY.hyperparameters}
    points = [{k: v for k, v in p.items() if k in STUDY.hyperparameters} for p in sample]
    plan = plan_sweep(spec(grid={}, configs=points))
    assert plan.shape == (6, 2) and len(plan.groups) == 1 and set(knobs) <= set(plan.dynamic)


@pytest.mark.parametrize("configs, words", [
    ([], "non-empty list"),
    ({"learning_rate": 0.1}, "non-empty list"),
    ([{"learning_rate": 0.1}, 3], r"configs\[1\] must be a dict"),
    ([{"lr": 0.1}], r"configs\[0\] names \['lr'\]"),
    ([{"learning_rate": float("nan")}], "finite real number"),
    ([{"learning_rate": 0.1}, {"learning_rate": 0.1}], "repeats a point"),
    ([{"batch_size": 0}], "must be >= 1"),
])
def test_bad_points_are_refused(configs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        plan_sweep(spec(grid={}, configs=configs))


def test_grid_and_points_together_are_refused():
    with pytest.raises(ValueError, match="either grid or configs"):
        plan_sweep(spec(configs=POINTS))
