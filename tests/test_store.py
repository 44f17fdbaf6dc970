"""The results database on its own: schema, transactions, reading back, refusing foreign files."""
import dataclasses
import sqlite3

import numpy as np
import pytest

from lab import database
from lab import store as storelib
from lab.store import BatchUpdate, Store, StoreError

ENV = {"code_version": "0.1.0", "git_hash": "abc", "jax": "j", "jaxlib": "jl", "optax": "o",
       "device_kind": "cpu", "prng_impl": "threefry2x32", "xla_flags": ""}
CONFIG = {"study": "toy", "grid": [["lr", [0.1, 0.2, 0.4]]], "seeds": [0, 1], "steps": 40, "eval_every": 10}


def make_sweep(db: Store) -> int:
    """Six runs (3 lrs x 2 seeds) in two batches of three."""
    runs = [(i, 0, i // 3, {"lr": [0.1, 0.2, 0.4][i // 2], "batch_size": 8}, i % 2) for i in range(6)]
    return db.create_sweep(study="toy", fingerprint="f" * 64, config=CONFIG, execution={"runs_per_device": {"0": 3}},
                           environment=ENV, metrics=["train_loss", "eval_loss"], runs=runs)


def chunk(batch, runs, first_eval, steps_done, diverged, finished, value):
    n = len(runs)
    metrics = {"train_loss": np.full((n, 2), value) + np.arange(2), "eval_loss": np.full((n, 2), -value)}
    return BatchUpdate(batch, np.asarray(runs), first_eval, metrics, steps_done, np.asarray(diverged), finished,
                       None if finished else [np.arange(n, dtype=np.float32), np.ones((n, 2), np.int32)])


def test_schema_marks_and_tables(tmp_path):
    path = tmp_path / "r" / "lab.sqlite"            # the directory is created
    Store(path).close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA application_id").fetchone()[0] == storelib.APPLICATION_ID
    assert conn.execute("PRAGMA user_version").fetchone()[0] == storelib.SCHEMA_VERSION
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"sweeps", "runs", "curves", "checkpoints", "params", "owners"}
    cols = {r[1] for r in conn.execute("PRAGMA table_info(sweeps)")}
    assert {"study", "config", "code_version", "git_hash", "jax_version", "jaxlib_version", "optax_version",
            "device_kind", "started", "ended", "status"} <= cols
    assert conn.execute("PRAGMA page_size").fetchone()[0] == storelib.PAGE_SIZE == 32768
    conn.close()
    with Store(path) as db:                          # reopening keeps it
        assert db.list_sweeps() == []


def test_a_database_made_with_small_pages_is_still_read_and_written(tmp_path, monkeypatch):
    path = tmp_path / "lab.sqlite"
    monkeypatch.setattr(database, "PAGE_SIZE", 4096)       # as databases were made before 32 KiB pages
    with Store(path) as db:
        sweep = make_sweep(db)
        db.commit_chunk(sweep, [chunk(0, [0, 1, 2], 0, 20, [-1, -1, -1], False, 1.0)], 10)
    monkeypatch.undo()
    with Store(path) as db:
        assert db.checkpoint(sweep, 0)[0] == 20
        db.commit_chunk(sweep, [chunk(0, [0, 1, 2], 2, 40, [-1, -1, -1], True, 2.0)], 10)
        assert db.checkpoint(sweep, 0) is None and db.batches(sweep)[0][2]
    assert sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0] == 4096


def test_kept_parameters_are_stored_with_finished_runs_and_copied(tmp_path):
    path = tmp_path / "old.sqlite"
    with Store(path) as db:
        sid = make_sweep(db)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE params")                 # as databases were made before the table
    conn.commit()
    conn.close()
    leaves = [np.arange(6, dtype=np.float32).reshape(3, 2), np.array([1.0, 2.0, 3.0])]
    with Store(path) as db:
        assert db.final_params(sid, 0) is None        # no table: nothing kept
        db.commit_chunk(sid, [chunk(1, [3, 4, 5], 0, 20, [-1, -1, -1], False, 2.0),
                              dataclasses.replace(chunk(0, [0, 1, 2], 0, 40, [-1, 7, -1], True, 1.0), params=leaves)],
                        every=10)
        got = db.final_params(sid, 1)
        np.testing.assert_array_equal(got[0], [2, 3])
        assert got[0].dtype == np.float32 and got[1] == 2.0
        assert db.final_params(sid, 3) is None        # batch 1 has not finished
        with Store(tmp_path / "merged.sqlite") as merged:
            mid = make_sweep(merged)
            merged.copy_batches(mid, db, sid, [0])
            np.testing.assert_array_equal(merged.final_params(mid, 2)[0], [4, 5])
            assert merged.final_params(mid, 2)[1] == 3.0


def test_commits_join_into_arrays_indexed_by_the_grid(tmp_path):
    with Store(tmp_path / "lab.sqlite") as db:
        sid = make_sweep(db)
        db.commit_chunk(sid, [chunk(0, [0, 1, 2], 0, 20, [-1, -1, -1], False, 1.0),
                              chunk(1, [3, 4, 5], 0, 20, [-1, 15, -1], False, 2.0)], every=10)
        step, leaves = db.checkpoint(sid, 1)
        assert step == 20 and leaves[0].dtype == np.float32 and leaves[1].shape == (3, 2)
        db.commit_chunk(sid, [chunk(0, [0, 1, 2], 2, 40, [-1, -1, -1], True, 3.0),
                              chunk(1, [3, 4, 5], 2, 40, [-1, 15, -1], True, 4.0)], every=10)
        assert db.checkpoint(sid, 0) is None and db.checkpoint(sid, 1) is None
        db.set_status(sid, "done", compile_seconds=1.5, run_seconds=2.0)
        result = db.load(sid)
    assert result.shape == (3, 2) and result.axes == {"lr": (0.1, 0.2, 0.4), "seed": (0, 1)}
    np.testing.assert_array_equal(result.eval_steps, [10, 20, 30, 40])
    np.testing.assert_array_equal(result.curves["train_loss"][0, 0], [1, 2, 3, 4])
    np.testing.assert_array_equal(result.curves["eval_loss"][2, 1], [-2, -2, -4, -4])  # run 5
    # run 4 diverged at step 15, inside the second block: its last good evaluation is the first
    np.testing.assert_array_equal(result.diverged_step, [[-1, -1], [-1, -1], [15, -1]])
    assert result.final["train_loss"][2, 0] == 2.0 and result.final["train_loss"][2, 1] == 5.0
    assert result.run_status.tolist() == [["done", "done"], ["done", "done"], ["diverged", "done"]]
    assert result.status == "done" and result.timings["compile_seconds"] == 1.5
    rows = result.rows()
    assert rows[4] == {"lr": 0.4, "batch_size": 8, "seed": 0, "status": "diverged", "diverged_step": 15,
                       "train_loss": 2.0, "eval_loss": -2.0}
    assert result.environment["git_hash"] == "abc" and result.environment["prng_impl"] == "threefry2x32"


def test_a_failed_commit_leaves_nothing_behind():
    with Store(":memory:") as db:
        sid = make_sweep(db)
        good = chunk(0, [0, 1, 2], 0, 20, [-1, -1, -1], False, 1.0)
        bad = BatchUpdate(1, np.asarray([3, 4, 5]), 0, good.metrics, 20, np.asarray([-1, -1, -1]), False, None)
        with pytest.raises(TypeError):
            db.commit_chunk(sid, [good, bad], every=10)     # unfinished without a checkpoint
        assert db.checkpoint(sid, 0) is None
        assert np.isnan(db.load(sid).curves["train_loss"]).all()


def test_find_and_list_sweeps():
    with Store(":memory:") as db:
        assert db.find_sweep("f" * 64) is None
        first, second = make_sweep(db), make_sweep(db)
        assert db.find_sweep("f" * 64) == {"id": second, "status": "running", "execution": {"runs_per_device": {"0": 3}}}
        db.set_status(first, "interrupted")
        assert [(s["id"], s["status"]) for s in db.list_sweeps()] == [(first, "interrupted"), (second, "running")]
        assert db.load(study="toy").sweep_id == second
        with pytest.raises(KeyError, match="no sweep with id 99"):
            db.load(99)
        assert db.metric_names(first) == ["train_loss", "eval_loss"]
        with pytest.raises(KeyError, match="no sweep with id 99"):
            db.metric_names(99)
        assert set(db.batches(first)) == {0, 1} and db.batches(first)[1][1].tolist() == [3, 4, 5]


def test_dataframe_needs_pandas():
    with Store(":memory:") as db:
        result = db.load(make_sweep(db))
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="needs pandas"):
            result.to_dataframe()
    else:
        assert result.to_dataframe().shape == (6, 7)


def test_foreign_corrupt_and_other_files_are_never_touched(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"hello\n" * 100)
    with pytest.raises(StoreError, match="is not an SQLite database"):
        Store(text)
    assert text.read_bytes() == b"hello\n" * 100
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(storelib.SQLITE_HEADER + b"\xff" * 2000)
    with pytest.raises(StoreError, match="not a readable SQLite database"):
        Store(corrupt)
    assert corrupt.read_bytes() == storelib.SQLITE_HEADER + b"\xff" * 2000
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE mine (x)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(StoreError, match="of another application"):
        Store(other)
    assert other.read_bytes() == before
    with pytest.raises(StoreError, match="is a directory"):
        Store(tmp_path)
    with pytest.raises(FileNotFoundError, match="no results database"):
        storelib.load_sweep(tmp_path / "missing.sqlite")
