"""Faults a user meets: corrupt, locked, full or read-only databases, the same sweep started
twice, errors while recording a failure, reading commands that must not write, and the
command line's one-line errors (issue 21).  docs/reliability.md tabulates the same faults
injected many times (benchmarks/faults.py)."""
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lab import database
from lab.store import Store, StoreError, SweepBusy, load_sweep
from lab.sweep import fetch_sweep, run_sweep
from studies import cli
from tests.sweep_problem import spec
from tests.test_store import chunk, make_sweep
from tests.test_sweep_engine import assert_same_runs as same_runs

ROOT = Path(__file__).resolve().parent.parent


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def small_database(path) -> int:
    with Store(path) as db:
        sweep = make_sweep(db)
        for i in range(3):
            db.commit_chunk(sweep, [chunk(0, [0, 1, 2], 2 * i, 20 * (i + 1), [-1, -1, -1], False, 1.0)], 10)
    return sweep


def assert_same_runs(a, b):
    """Every run of ``a`` equals the same run of ``b`` bit for bit."""
    everything = (slice(None),) * a.diverged_step.ndim
    same_runs(a, b, everything, everything)


@pytest.fixture(scope="module")
def reference():
    return run_sweep(spec(), store=":memory:", progress=False)


# --------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("page", [1, 2, 5])
def test_interior_corruption_is_refused_and_the_file_left_byte_identical(tmp_path, page):
    path = tmp_path / "lab.sqlite"
    small_database(path)
    with open(path, "r+b") as fh:   # one interior page overwritten; the header stays valid
        fh.seek(page * database.PAGE_SIZE)
        fh.write(np.random.default_rng(page).bytes(database.PAGE_SIZE))
    before = digest(path)
    with pytest.raises(StoreError, match=r"is corrupt .*left untouched") as err:
        Store(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(StoreError, match="is corrupt"):
        run_sweep(spec(), store=path, progress=False)   # before a sweep row or any compute
    assert digest(path) == before


# --------------------------------------------------------------------------- locks


def hold_lock(path, seconds: float) -> threading.Thread:
    """Another connection holds the write lock on ``path`` for ``seconds``."""
    ready = threading.Event()

    def hold():
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        ready.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait()
    return thread


def test_a_lock_is_waited_for_then_reported_as_a_lock(tmp_path, monkeypatch):
    path = tmp_path / "lab.sqlite"
    sweep = small_database(path)
    holder = hold_lock(path, 1.5)      # shorter than the wait: the commit goes through
    t = time.perf_counter()
    with Store(path) as db:
        db.commit_chunk(sweep, [chunk(1, [3, 4, 5], 0, 20, [-1, -1, -1], False, 2.0)], 10)
    assert time.perf_counter() - t >= 1.0
    holder.join()
    monkeypatch.setattr(database, "LOCK_WAIT", 0.5)
    holder = hold_lock(path, 3.0)      # longer than the wait: a clear error, not "not writable"
    with pytest.raises(StoreError, match="locked by another process") as err:
        Store(path)
    assert "not writable" not in str(err.value) and str(path) in str(err.value)
    holder.join()
    with Store(path) as db:
        assert db.checkpoint(sweep, 1)[0] == 20


# --------------------------------------------------------------------------- mid-run I/O failures


class FullDisk:
    """A store connection on a disk that has just filled up: every write raises the error
    SQLite raises then (SQLITE_FULL); reads and transaction control pass through."""

    def __init__(self, conn):
        self.conn = conn

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def execute(self, sql, *args):
        if sql.split()[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.execute(sql, *args)

    def executemany(self, sql, rows):
        raise sqlite3.OperationalError("database or disk is full")


def fail_after_first_chunk(fault: str):
    """An on_chunk hook that, after the first commit, makes the store's writes fail: a full
    disk, or the file turned read-only (SQLite's ``PRAGMA query_only``)."""
    state = {"db": None, "chunks": 0}

    def on_chunk(info):
        state["chunks"] += 1
        if state["chunks"] == 1:
            if fault == "full":
                state["db"]._conn = FullDisk(state["db"]._conn)
            else:
                state["db"]._conn.execute("PRAGMA query_only = 1")
    return state, on_chunk


def test_a_full_disk_mid_run_is_one_clear_error_and_the_sweep_resumes(tmp_path, reference):
    path = tmp_path / "lab.sqlite"
    state, on_chunk = fail_after_first_chunk("full")
    with Store(path) as db:
        state["db"] = db
        with pytest.raises(StoreError, match="disk is full") as err:
            run_sweep(spec(), store=db, progress=False, on_chunk=on_chunk)
        db._conn = db._conn.conn
    assert str(path) in str(err.value) and "free space and run the same command" in str(err.value)
    with Store(path) as db:
        (row,) = db.list_sweeps()
        assert row["status"] in ("failed", "running") and not db.owner(row["id"])["alive"]
    resumed = run_sweep(spec(), store=path, progress=False)
    assert resumed.status == "done"
    assert_same_runs(resumed, reference)


def test_a_store_made_read_only_mid_run_keeps_the_first_error(tmp_path, reference):
    path = tmp_path / "lab.sqlite"
    state, on_chunk = fail_after_first_chunk("read-only")
    with Store(path) as db:
        state["db"] = db
        with pytest.raises(StoreError, match="not writable") as err:
            run_sweep(spec(), store=db, progress=False, on_chunk=on_chunk)
    notes = " ".join(getattr(err.value, "__notes__", []))
    assert "recording the sweep's status as 'failed'" in notes   # the second failure, kept as a note
    with Store(path, readonly=True) as db:
        (row,) = db.list_sweeps()
        assert row["status"] == "running" and not db.owner(row["id"])["alive"]   # its Store is closed
    assert_same_runs(run_sweep(spec(), store=path, progress=False), reference)


# --------------------------------------------------------------------------- the same sweep twice


def test_the_same_sweep_started_twice_is_computed_once(tmp_path, reference):
    path = tmp_path / "lab.sqlite"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    child = subprocess.Popen([sys.executable, "-m", "tests.sweep_problem", str(path), "--kill-after", "1"],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "committed 20", (line, child.stderr.read() if child.poll() is not None else "")
        before = digest(path)
        with pytest.raises(SweepBusy, match=rf"being computed by process {child.pid} ") as err:
            run_sweep(spec(), store=path, progress=False)
        assert "wait for it" in str(err.value)
        assert digest(path) == before                  # the second process wrote nothing
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    resumed = run_sweep(spec(), store=path, progress=False)   # a dead owner's sweep is taken over
    with Store(path, readonly=True) as db:
        assert len(db.list_sweeps()) == 1 and db.owner(resumed.sweep_id) is None
    assert_same_runs(resumed, reference)


def test_a_twin_created_between_look_and_create_is_refused(tmp_path):
    path = tmp_path / "lab.sqlite"
    with Store(path) as db:
        make_sweep(db)
        with pytest.raises(SweepBusy, match="another process started the same sweep"):
            make_sweep_unless(db, None)
        assert len(db.list_sweeps()) == 1


def make_sweep_unless(db, unless):
    runs = [(i, 0, 0, {"lr": 0.1}, 0) for i in range(2)]
    return db.create_sweep(study="toy", fingerprint="f" * 64, config={}, execution={}, claim=True, unless=unless,
                           environment=dict(code_version="0", git_hash=None, jax="0", jaxlib="0", optax="0",
                                            device_kind="cpu"), metrics=["train_loss"], runs=runs)


def test_owners_alive_or_gone():
    here, now = database.this_host(), time.time()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert database.owner_alive(here, os.getppid(), now)                 # a live process here
    assert not database.owner_alive(here, gone.pid, now)                 # an exited one
    assert database.owner_alive("elsewhere", 1, now - 10)                # another host, heard from lately
    assert not database.owner_alive("elsewhere", 1, now - database.STALE_AFTER - 1)
    with Store(":memory:") as db:                                        # this process: by open Store
        sweep = make_sweep(db)
        db.claim(sweep)
        assert db.owner(sweep)["alive"]
        db.release(sweep)
        assert db.owner(sweep) is None


# --------------------------------------------------------------------------- reading never writes


def test_reading_commands_never_write(tmp_path, capsys):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    assert cli.main(["show", "--db", str(empty)]) == 0
    assert empty.stat().st_size == 0 and "no sweeps" in capsys.readouterr().out
    with Store(empty, readonly=True) as db:
        assert db.list_sweeps() == []
        with pytest.raises(StoreError, match="read-only"):
            make_sweep(db)
    assert empty.stat().st_size == 0
    path = tmp_path / "lab.sqlite"
    run_sweep(spec(), store=path, progress=False)
    before, stamp = digest(path), path.stat().st_mtime_ns
    assert cli.main(["show", "--db", str(path)]) == 0
    load_sweep(path)
    fetch_sweep(spec(), store=path)
    assert digest(path) == before and path.stat().st_mtime_ns == stamp
    assert not Path(f"{path}-journal").exists()


# --------------------------------------------------------------------------- the command line


def unwritable_folder(tmp_path) -> Path:
    """A folder this process cannot create files in (root ignores permissions: /proc then)."""
    if os.geteuid() == 0:
        return Path("/proc/lab-no-such-folder")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


@pytest.mark.parametrize("command", [["show"], ["plot", "momentum"], ["run", "momentum", "--quick"]])
def test_store_failures_are_one_line_not_a_traceback(tmp_path, capsys, command):
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database\n")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    cases = [(foreign, "is not an SQLite database"), (tmp_path, "is a directory"),
             (other, "of another application")]
    if command[0] == "run":
        cases.append((unwritable_folder(tmp_path) / "x.sqlite", "not writable"))
    for db, problem in cases:
        before = digest(db) if db.is_file() else None
        assert cli.main([*command, "--db", str(db)]) == 1, db
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("lab: error: ") and problem in err[0], err
        assert str(db) in err[0] and "Traceback" not in err[0]
        assert before is None or digest(db) == before


def test_ctrl_c_in_lab_run_says_how_to_resume(tmp_path, capsys, monkeypatch):
    from studies import momentum

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(momentum, "run", interrupted)
    assert cli.main(["run", "momentum", "--quick", "--db", str(tmp_path / "lab.sqlite"), "--out",
                     str(tmp_path / "figures")]) == 130
    assert capsys.readouterr().err.strip() == "lab: interrupted; run the same command to resume"


# --------------------------------------------------------------------------- planning and knob ranges


@pytest.mark.parametrize("study, setting, problem", [
    ("learning_rate", "batch_size=-5", "batch_size=-5: must be in [1, inf)"),
    ("learning_rate", "batch_size=5000", "larger than the training set"),   # the engine's check, planned
    ("learning_rate", "lr_min=-0.1", "lr_min=-0.1: must be in (0, inf)"),
    ("momentum", "mlp_betas=0.5,1.0", "each value must be in [0, 1)"),
    ("momentum", "mlp_batch_size=4000", "larger than the training set"),
    ("newton", "rosenbrock_beta=-0.5", "rosenbrock_beta=-0.5: must be in [0, 1)"),
    ("batch_size", "sharpness_iters=0", "sharpness_iters=0: must be in [1, inf)"),
    ("edge_of_stability", "learning_rates=0.01,-0.02", "each value must be in (0, inf)"),
    ("optimizers", "quad_kappa=-3", "quad_kappa=-3.0: must be in (0, inf)"),
    ("claims", "steps=0", "steps=0: must be in [1, inf)"),
])
def test_every_sweep_of_a_study_is_checked_before_any_compute(tmp_path, capsys, study, setting, problem):
    db = tmp_path / "lab.sqlite"
    assert cli.main(["run", study, "--quick", "--set", setting, "--db", str(db), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert problem in err and f"study {study}" in err
    assert not db.exists()                              # nothing stored, nothing created


def test_every_study_config_passes_its_own_checks():
    from studies import STUDIES, common, import_study
    for name in STUDIES:
        module = import_study(name)
        for config in (module.QUICK, module.FULL):
            specs = common.check_config(config, getattr(module, "plan", None))
            assert name == "claims" or len(specs) >= 1, name
