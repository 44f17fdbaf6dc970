"""A finished sweep is served again only while it is what the code and data would compute.

The config (and so the fingerprint) of these studies never changes: only the code behind
``make_problem`` does, as when a study's model is edited but its description is not.
"""
import json
import sqlite3

import numpy as np
import pytest

from lab import losses, nets, optim
from lab import store as storelib
from lab.sweep import Problem, Study, SweepSpec, fetch_sweep, run_sweep

RNG = np.random.RandomState(1)
X = RNG.randn(48, 6).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)


def study(width: int, x=X, scale: float = 1.0) -> Study:
    """The same config whatever ``width``, ``x`` and ``scale``: they are hidden from it."""
    def make_problem(static):
        net = nets.mlp([width, 2], activation="tanh")

        def loss(params, xb, yb, key):
            return losses.softmax_cross_entropy_with_integer_labels(scale * net.apply(params, xb), yb)

        return Problem(init_params=lambda key: net.init(key, (-1, 6))[1], loss=loss, x=x, y=Y)

    return Study("hidden_width", make_problem, lambda c: optim.sgd(c["learning_rate"]),
                 hyperparameters={"learning_rate": 0.1}, static={"batch_size": 16},
                 description={"net": "mlp 6-[width]-2 tanh"})


def spec(s: Study) -> SweepSpec:
    return SweepSpec(s, {"learning_rate": [0.05, 0.2]}, seeds=2, steps=20, eval_every=10, runs_per_device=4)


def test_a_finished_sweep_is_refused_once_its_model_changed_behind_the_same_config(tmp_path):
    path = tmp_path / "lab.sqlite"
    first = run_sweep(spec(study(8)), store=path, progress=False)
    assert run_sweep(spec(study(8)), store=path, progress=False).sweep_id == first.sweep_id   # same code: served
    assert fetch_sweep(spec(study(8)), store=path).sweep_id == first.sweep_id
    before = path.read_bytes()
    for changed, why in ((study(16), r"the lowered program \(the study's model"),       # width 8 -> 16
                         (study(8, scale=2.0), r"the lowered program \(the study's model"),  # the loss
                         (study(8, x=X[::-1].copy()), "the training or evaluation data differ")):
        assert spec(changed).study.description == spec(study(8)).study.description
        for serve in (lambda s: run_sweep(s, store=path, progress=False), lambda s: fetch_sweep(s, store=path)):
            with pytest.raises(ValueError, match=f"sweep {first.sweep_id} .*finished.*{why}.*stale.*rerun=True"):
                serve(spec(changed))
        assert path.read_bytes() == before                           # refused before anything was written
    fresh = run_sweep(spec(study(16)), store=path, progress=False, rerun=True)
    assert fresh.sweep_id != first.sweep_id and fresh.status == "done"
    assert not np.array_equal(fresh.curves["train_loss"], first.curves["train_loss"])
    assert fetch_sweep(spec(study(16)), store=path).sweep_id == fresh.sweep_id   # the newest is what is served
    with storelib.Store(path) as db:                                  # the old sweep is still there
        assert [s["id"] for s in db.list_sweeps()] == [first.sweep_id, fresh.sweep_id]
        np.testing.assert_array_equal(db.load(first.sweep_id).curves["train_loss"], first.curves["train_loss"])


def test_a_finished_sweep_is_served_whatever_the_chunking_it_was_run_in(tmp_path):
    path = tmp_path / "lab.sqlite"
    first = run_sweep(spec(study(8)), store=path, progress=False)
    again = SweepSpec(study(8), {"learning_rate": [0.05, 0.2]}, seeds=2, steps=20, eval_every=10, runs_per_device=4,
                      chunk_steps=10)
    assert fetch_sweep(again, store=path).sweep_id == first.sweep_id


def test_a_finished_sweep_stored_without_its_identities_is_refused(tmp_path):
    path = tmp_path / "lab.sqlite"
    run_sweep(spec(study(8)), store=path, progress=False)
    with sqlite3.connect(path) as conn:                               # as stored by an older lab
        (execution,) = conn.execute("SELECT execution FROM sweeps").fetchone()
        execution = json.loads(execution)
        del execution["identities"]
        conn.execute("UPDATE sweeps SET execution = ?", (json.dumps(execution),))
    with pytest.raises(ValueError, match="stored before the lab recorded what each sweep computed"):
        fetch_sweep(spec(study(8)), store=path)


def test_fetch_finds_nothing_without_computing_or_creating_a_file(tmp_path):
    with pytest.raises(LookupError, match="no results database"):
        fetch_sweep(spec(study(8)), store=tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()
    with pytest.raises(LookupError, match="is not in"):
        fetch_sweep(spec(study(8)), store=":memory:")


def two_groups(s: Study, chunk_steps: int = 20) -> SweepSpec:
    return SweepSpec(s, {"batch_size": [16, 8], "learning_rate": [0.05, 0.2]}, seeds=1, steps=20, eval_every=10,
                     runs_per_device=2, chunk_steps=chunk_steps)


def _stop_after_the_first_group(path, s: Study, chunk_steps: int = 20):
    def stop(info):
        if info["group"] == 0 and info["step"] == 20:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_sweep(two_groups(s, chunk_steps), store=path, progress=False, on_chunk=stop)


def test_a_resume_does_not_join_a_finished_group_to_a_changed_program(tmp_path):
    path = tmp_path / "lab.sqlite"
    _stop_after_the_first_group(path, study(8))          # group 0 done, group 1 not begun
    with pytest.raises(ValueError, match=r"static group \{'batch_size': 16\} would now compute something else: "
                                         r"the lowered program"):
        run_sweep(two_groups(study(16)), store=path, progress=False)
    resumed = run_sweep(two_groups(study(8)), store=path, progress=False)   # the same code resumes
    assert resumed.status == "done"
    whole = run_sweep(two_groups(study(8)), store=":memory:", progress=False)
    np.testing.assert_array_equal(resumed.curves["train_loss"], whole.curves["train_loss"])


def test_a_sweep_resumed_in_other_chunks_is_served_afterwards(tmp_path):
    path = tmp_path / "lab.sqlite"
    _stop_after_the_first_group(path, study(8), chunk_steps=20)
    done = run_sweep(two_groups(study(8), chunk_steps=10), store=path, progress=False)   # group 1 in chunks of 10
    for chunk in (10, 20):
        assert fetch_sweep(two_groups(study(8), chunk), store=path).sweep_id == done.sweep_id


def test_a_part_is_checked_only_for_the_groups_its_process_computed(tmp_path):
    # batch 0 (group 0) is process 0's, batch 1 (group 1) process 1's: process 1's finished part
    # has no record of group 0, and running process 1 again must wait for the merge, not refuse
    path = tmp_path / "lab.sqlite"
    small = SweepSpec(study(8), {"batch_size": [16, 8]}, seeds=2, steps=20, eval_every=10, runs_per_device=2)
    for _ in range(2):
        with pytest.raises(TimeoutError, match="no merged sweep"):
            run_sweep(small, store=path, progress=False, process=(1, 2), wait_seconds=0)


def test_a_part_left_by_older_code_is_not_merged(tmp_path):
    # process 1's part was computed by the old code; process 0, rerun under new code, finds
    # it finished before process 1 has begun its new part: merging it would serve stale numbers
    path = tmp_path / "lab.sqlite"

    def small(s):
        return SweepSpec(s, {"batch_size": [16, 8]}, seeds=2, steps=20, eval_every=10, runs_per_device=2)

    with pytest.raises(TimeoutError):
        run_sweep(small(study(8)), store=path, progress=False, process=(1, 2), wait_seconds=0)
    with pytest.raises(ValueError, match=r"static group \{'batch_size': 8\} would now compute something else"):
        run_sweep(small(study(16)), store=path, progress=False, process=(0, 2), rerun=True, wait_seconds=5)
    assert not path.exists()                                   # nothing was merged
