"""The sweep model without a device: grid expansion, identity, bad input, batch schedule."""
import dataclasses
from types import SimpleNamespace

import jax
import numpy as np
import pytest

from lab.sweep import SweepSpec, plan_sweep
from lab.sweep import program as prog
from tests.sweep_problem import STUDY, spec


def test_plan_expands_the_grid_row_major_with_seed_last():
    plan = plan_sweep(spec({"width": [8, 16], "learning_rate": [0.1, 0.2, 0.3]}, seeds=[5, 7]))
    assert plan.shape == (2, 3, 2) and plan.num_runs == 12
    assert [name for name, _ in plan.axes] == ["width", "learning_rate", "seed"]
    assert plan.dynamic == ("learning_rate", "momentum")
    # run 7 = (width 16, lr 0.1, seed 7): row-major over (2, 3, 2)
    assert np.unravel_index(7, plan.shape) == (1, 0, 1)
    np.testing.assert_array_equal(plan.hparams[7], [0.1, 0.9])  # momentum from the study default
    assert int(plan.seeds[7]) == 7 and plan.run_group[7] == 1
    assert plan.run_config(7) == {"batch_size": 16, "width": 16, "learning_rate": 0.1, "momentum": 0.9}
    assert [g.static for g in plan.groups] == [{"batch_size": 16, "width": 8}, {"batch_size": 16, "width": 16}]
    np.testing.assert_array_equal(plan.groups[0].runs, np.arange(6))


def test_dynamic_axes_share_one_group_and_static_axes_split():
    plan = plan_sweep(spec({"learning_rate": list(np.geomspace(1e-3, 1, 32)), "batch_size": [8, 16]}, seeds=4))
    assert plan.num_runs == 256 and len(plan.groups) == 2
    assert [len(g.runs) for g in plan.groups] == [128, 128]
    assert plan.hparams.dtype == np.float64 and plan.seeds.dtype == np.uint32


def test_fingerprint_names_the_config_not_the_execution():
    base = plan_sweep(spec())
    assert plan_sweep(spec(chunk_steps=10, runs_per_device=2)).fingerprint == base.fingerprint
    assert plan_sweep(spec({"learning_rate": [0.03, 0.1, 0.31]})).fingerprint != base.fingerprint
    assert plan_sweep(spec(steps=50)).fingerprint != base.fingerprint
    other = dataclasses.replace(STUDY, description={"data": "changed"})
    assert plan_sweep(dataclasses.replace(spec(), study=other)).fingerprint != base.fingerprint
    assert len(base.fingerprint) == 64 and base.config["grid"] == [["learning_rate", [0.03, 0.1, 0.3]]]


BAD_SPECS = [
    # (name, overrides of spec(), error type, message)
    ("unknown knob", dict(grid={"learning_rat": [0.1]}), ValueError, r"grid axis 'learning_rat' is not a knob"),
    ("empty axis", dict(grid={"learning_rate": []}), ValueError, r"grid axis 'learning_rate' is empty"),
    ("negative steps", dict(steps=-5), ValueError, r"steps must be >= 1, got -5"),
    ("zero steps", dict(steps=0), ValueError, r"steps must be >= 1, got 0"),
    ("steps off schedule", dict(steps=45), ValueError, r"steps=45 must be a multiple of eval_every=10"),
    ("string learning rate", dict(grid={"learning_rate": ["0.1"]}), ValueError, r"needs finite real numbers"),
    ("nan learning rate", dict(grid={"learning_rate": [float("nan")]}), ValueError, r"needs finite real numbers"),
    ("repeated value", dict(grid={"learning_rate": [0.1, 0.1]}), ValueError, r"repeats a value"),
    ("axis not a list", dict(grid={"learning_rate": 0.1}), TypeError, r"must be a sequence of values"),
    ("zero seeds", dict(seeds=0), ValueError, r"seeds must be >= 1"),
    ("repeated seeds", dict(seeds=[1, 1]), ValueError, r"seeds must be distinct"),
    ("bad batch size", dict(grid={"batch_size": [0]}), ValueError, r"batch_size must be >= 1"),
    ("float steps", dict(steps=10.0), TypeError, r"steps must be an integer"),
    ("factor 1", dict(divergence_factor=1.0), ValueError, r"divergence_factor must be a number > 1"),
    ("zero chunk", dict(chunk_steps=0), ValueError, r"chunk_steps must be >= 1"),
    ("unstorable static", dict(grid={"width": [object()]}), TypeError, r"cannot be stored as JSON"),
]


@pytest.mark.parametrize("name, overrides, error, message", BAD_SPECS, ids=[row[0] for row in BAD_SPECS])
def test_bad_specs_are_refused_with_a_message(name, overrides, error, message):
    with pytest.raises(error, match=message):
        plan_sweep(spec(**overrides))


def test_bad_studies_are_refused():
    with pytest.raises(ValueError, match="must give a default 'batch_size'"):
        plan_sweep(dataclasses.replace(spec(), study=dataclasses.replace(STUDY, static={"width": 16})))
    with pytest.raises(ValueError, match="'seed' is reserved"):
        plan_sweep(dataclasses.replace(spec(), study=dataclasses.replace(
            STUDY, hyperparameters={"learning_rate": 0.1, "momentum": 0.9, "seed": 1.0})))
    with pytest.raises(TypeError, match="expected a lab.sweep.SweepSpec"):
        plan_sweep({"learning_rate": [0.1]})
    with pytest.raises(TypeError, match="must be a lab.sweep.Study"):
        plan_sweep(SweepSpec(study="tiny", grid={}))


def test_batch_schedule_is_epochs_without_replacement():
    n, b = 64, 16
    sched = prog.batch_schedule(3, n, b, 0, 12)          # three epochs of four batches
    assert sched.shape == (12, 16) and sched.dtype == np.int32
    for epoch in range(3):
        np.testing.assert_array_equal(np.sort(sched[4 * epoch:4 * epoch + 4].ravel()), np.arange(n))
    assert not np.array_equal(sched[:4], sched[4:8])       # each epoch reshuffles


def test_batch_schedule_depends_only_on_seed_and_step():
    whole = prog.batch_schedule(11, 50, 8, 0, 40)          # 6 batches per epoch, 2 examples dropped
    for start, length in [(0, 7), (7, 13), (20, 20), (33, 7)]:
        np.testing.assert_array_equal(prog.batch_schedule(11, 50, 8, start, length), whole[start:start + length])
    assert not np.array_equal(prog.batch_schedule(12, 50, 8, 0, 40), whole)
    # the stream is pinned: a NumPy upgrade that changed it would change every sweep
    np.testing.assert_array_equal(prog.epoch_permutation(0, 0, 8), [3, 2, 1, 6, 0, 7, 4, 5])


def test_engine_refuses_a_checkpoint_that_does_not_fit_the_program():

    from lab.sweep import engine
    program = SimpleNamespace(state_shapes={"w": jax.ShapeDtypeStruct((4, 3, 2), np.float32)})
    engine._check_checkpoints(program, [(0, None), (1, [np.zeros((2, 3, 2), np.float32)])])   # fits
    with pytest.raises(ValueError, match="checkpoint of batch 1 does not fit"):
        engine._check_checkpoints(program, [(0, None), (1, [np.zeros((2, 3, 5), np.float32)])])


def test_engine_draws_each_window_once_and_keeps_only_what_fits():
    from lab.sweep import engine
    windows = engine._Windows(50, 10, 8, max_bytes=2 * 4 * 10 * 8)     # room for two windows
    for seed, start in [(11, 0), (11, 10), (12, 0), (11, 0)]:
        np.testing.assert_array_equal(windows(seed, start), prog.batch_schedule(seed, 50, 8, start, 10))
    assert sorted(windows.kept) == [(11, 0), (11, 10)]
    kept = windows(11, 0)
    assert kept is windows(11, 0) and kept.base is None and not kept.flags.writeable   # compact, read-only


def test_an_accelerator_gets_forty_percent_of_its_memory_and_a_larger_cap():
    gpu = SimpleNamespace(platform="gpu", memory_stats=lambda: {"bytes_limit": 80 << 30})
    assert prog.device_memory_budget(gpu) == int(0.4 * (80 << 30))
    assert prog.runs_per_device(1 << 20, gpu) == 4096              # accelerator cap
    assert prog.runs_per_device(1 << 30, gpu) == 32                # 32 GiB budget / 1 GiB per run

    def no_stats():
        raise RuntimeError("no memory statistics on this plugin")
    assert prog.device_memory_budget(SimpleNamespace(platform="tpu", memory_stats=no_stats)) == 1 << 30
    assert prog.device_memory_budget(SimpleNamespace(platform="gpu", memory_stats=lambda: None)) == 1 << 30


def test_runs_per_device_follows_memory_and_cap():
    cpu = jax.devices("cpu")[0]
    assert prog.runs_per_device(1000, cpu) == 16                 # CPU cap
    assert prog.runs_per_device(1000, cpu, cap=10_000) == 10_000
    assert prog.runs_per_device(2 ** 28, cpu, cap=10_000) == 4   # 1 GiB budget / 256 MiB per run
    assert prog.runs_per_device(2 ** 40, cpu) == 1               # never zero
    problem = STUDY.make_problem({"batch_size": 16, "width": 16})
    size = prog.estimate_run_bytes(problem, STUDY.make_optimizer, {"batch_size": 16, "width": 16},
                                   ("learning_rate", "momentum"))
    params = (8 * 16 + 16 + 16 * 4 + 4) * 4                      # float32 parameters of the MLP 8-16-4
    assert size == 5 * params + 2 * params + 4 * 16 * 8 * 4      # momentum state = one params copy


def test_large_grids_are_cut_into_device_sized_batches():
    from lab.sweep import context, engine

    big = spec({"learning_rate": list(np.geomspace(1e-3, 1.0, 25)), "width": [8, 16]}, seeds=4, runs_per_device=None)
    run = context.SweepRun.build(big, jax.devices("cpu")[:1])
    plan = run.plan                                               # 2 groups of 100 runs
    per_device = run.choose_runs_per_device()
    assert per_device == {"0": 16, "1": 16}                       # CPU cap; far below the memory budget
    rows = list(run.batch_rows(per_device))
    sizes = np.bincount([batch for _, _, batch, _, _ in rows])
    assert sizes.tolist() == [16] * 6 + [4] + [16] * 6 + [4]                  # batches never mix groups
    assert [r[0] for r in rows] == sorted(r[0] for r in rows if r[1] == 0) + sorted(r[0] for r in rows if r[1] == 1)
    # up to one batch per device in a call, and only batches resuming from the same step share one
    assert engine._calls([(0, 0), (0, 1), (0, 2), (20, 3)], 2) == [[0, 1], [2], [3]]
    assert context.schedule_rows(plan, 128) == 4 and context.schedule_rows(plan, 2) == 2
