"""The benchmark study on a tiny config: the protocol's bookkeeping by hand, load = run, bad input."""
import math

import numpy as np
import pytest

from lab import protocol, workloads
from studies import benchmark, common

TINY = benchmark.Config(workloads=("breast_cancer_logistic", "mnist1d_logistic"), optimizers=("adam", "sgd", "prodigy"),
                        trials=2, studies=2, budget_fraction=0.5)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("benchmark") / "lab.sqlite"


@pytest.fixture(scope="module")
def results(db):
    return benchmark.run(TINY, store=db, progress=False)


def test_structure_and_budget(results):
    assert results["study_times"].shape == (3, 2, 2) and results["times"].shape == (3, 2)
    assert results["profiles"].shape == (3, benchmark.TAUS.size)
    np.testing.assert_array_equal(results["times"], np.median(results["study_times"], axis=-1))
    for key, trials in results["trials"].items():
        assert len(trials) == TINY.trials * TINY.studies
    assert benchmark.steps_of(TINY, workloads.get("mnist1d_logistic")) == 1000
    assert np.all((results["scores"] >= 0) & (results["scores"] <= 1))
    assert np.all(results["score_low"] <= results["score_high"])
    assert "| prodigy |" in benchmark.report(results)


def test_every_optimizer_gets_the_same_sobol_configs_per_space(results):
    for (name, opt), trials in results["trials"].items():
        drawn = protocol.search_space(opt).sample(4, seed=TINY.sample_seed)
        assert [{k: v for k, v in t.config.items() if k != "batch_size"} for t in trials] == drawn
        assert {t.config["batch_size"] for t in trials} == {workloads.get(name).batch_size}


def test_best_trial_per_study_by_hand(results, db):
    parts = benchmark.partition(TINY)
    for j, name in enumerate(TINY.workloads):
        for i, opt in enumerate(TINY.optimizers):
            trials = results["trials"][(name, opt)]
            for r, part in enumerate(parts):
                seconds = [trials[t].seconds for t in part]
                assert results["study_times"][i, j, r] == min(seconds)     # inf when none reached
    sweep = common.load(lambda c, sweep: sweep(benchmark.spec(c, "mnist1d_logistic", "adam")), TINY, store=db)
    steps = workloads.steps_to_target(workloads.get("mnist1d_logistic"), sweep)[:, 0]
    per_step = sweep.timings["run_seconds"] / (steps.size * 1000)
    trials = results["trials"][("mnist1d_logistic", "adam")]
    for s, t in zip(steps, trials):
        assert t.steps == s and (t.seconds == s * per_step if math.isfinite(s) else t.seconds == math.inf)
        assert t.compile_seconds == pytest.approx(sweep.timings["compile_seconds"] / steps.size)


def test_somebody_reaches_each_target(results):
    # a quarter of the budget is enough for some tuned optimizer on both workloads
    assert np.all(np.isfinite(results["times"]).any(axis=0))


def test_load_equals_run(results, db):
    again = benchmark.load(TINY, store=db)
    np.testing.assert_array_equal(again["study_times"], results["study_times"])
    np.testing.assert_array_equal(again["scores"], results["scores"])


@pytest.mark.parametrize("change, message", [
    (dict(workloads=("imagenet",)), "unknown workload 'imagenet'"),
    (dict(optimizers=("adam", "adamx")), r"optimizers \['adamx'\] have no search space"),
    (dict(optimizers=("adam", "adam")), "lists a name twice"),
    (dict(trials=0), "trials"),
    (dict(studies=0), "studies"),
    (dict(budget_fraction=0.0), "budget_fraction"),
    (dict(budget_fraction=1.5), "budget_fraction"),
])
def test_bad_configs_are_refused_before_compute(change, message, tmp_path):
    import dataclasses
    config = dataclasses.replace(TINY, **change)
    with pytest.raises(ValueError, match=message):
        benchmark.run(config, store=tmp_path / "lab.sqlite", progress=False)
    assert not (tmp_path / "lab.sqlite").exists()


def test_plot_draws_three_figures(results, tmp_path):
    paths = benchmark.plot(results, tmp_path)
    assert sorted(p.name for p in paths) == sorted(f"{stem}.{ext}" for stem in benchmark.FIGURES
                                                   for ext in ("png", "svg"))
    assert all(p.stat().st_size > 1000 for p in paths)
