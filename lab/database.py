"""The SQLite file under :mod:`lab.store`: its schema, opening it, transactions, errors, owners.

Contract.

* :func:`connect` opens a results database for writing or (``readonly=True``) for reading.
  It never writes into a file that is not a results database of this schema: a foreign,
  corrupt, locked, unreadable or newer file raises :class:`StoreError` naming the path and
  the problem, and the file stays byte for byte as it was.  Opening for writing runs
  SQLite's ``PRAGMA quick_check`` first, so a file with corrupt interior pages is refused
  before a sweep row is written or anything is computed.  Opening for reading never writes
  at all: not even a schema into an empty file (that reads as an empty database).
* :class:`Transaction` is ``BEGIN IMMEDIATE ... COMMIT``, or ``ROLLBACK`` if its body
  raises.  A lock held by another process is waited for with a bounded back-off (up to
  ``LOCK_WAIT`` seconds in all) before :class:`StoreError` says the file is locked.  Any
  SQLite error inside (disk full, file made read-only, I/O error) becomes a
  :class:`StoreError` naming the path and what to do; the database stays at its last
  commit.
* Owners: a sweep being computed has a row in ``owners`` (host, process id, a random
  token, heartbeat time).  A process may compute a sweep only when no other live process
  owns it (:func:`owner_alive`: a process on this host that still exists; one on another
  host whose heartbeat is younger than ``STALE_AFTER`` seconds).  A dead owner's sweep is
  taken over; so is a claim left by a closed Store of this very process (an error
  stopped it), while another open Store of this process holding it counts as alive.
"""
from __future__ import annotations

import os
import socket
import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C414253  # "LABS"
SQLITE_HEADER = b"SQLite format 3\x00"
PAGE_SIZE = 32768   # bytes per database page, set when a database is created
LOCK_WAIT = 60.0    # seconds a transaction waits in all for another process's lock
STALE_AFTER = 600.0  # seconds without a heartbeat after which another host's owner counts as gone

SCHEMA = """
CREATE TABLE sweeps (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL,
    fingerprint TEXT NOT NULL,        -- sha256 of the canonical config JSON
    config TEXT NOT NULL,             -- JSON: grid, seeds, steps, defaults, description
    execution TEXT NOT NULL,          -- JSON: runs per device, chunk steps, devices
    code_version TEXT NOT NULL,
    git_hash TEXT,                    -- commit, with "+dirty" when the tree had changes
    jax_version TEXT NOT NULL,
    jaxlib_version TEXT NOT NULL,
    optax_version TEXT NOT NULL,
    device_kind TEXT NOT NULL,
    environment TEXT NOT NULL,        -- JSON: PRNG implementation, XLA flags, x64, python, numpy
    metrics TEXT NOT NULL,            -- JSON list of metric names
    started REAL NOT NULL,            -- unix time
    ended REAL,
    status TEXT NOT NULL CHECK (status IN ('running', 'done', 'interrupted', 'failed')),
    compile_seconds REAL NOT NULL DEFAULT 0,
    run_seconds REAL NOT NULL DEFAULT 0
);
CREATE INDEX sweeps_by_fingerprint ON sweeps (fingerprint);
CREATE TABLE runs (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    run_index INTEGER NOT NULL,       -- row-major position over the grid axes, seed last
    group_index INTEGER NOT NULL,     -- static group (one compiled program)
    batch_index INTEGER NOT NULL,     -- the runs one device computes together
    config TEXT NOT NULL,             -- JSON: every knob of this run
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done', 'diverged')),
    diverged_step INTEGER,
    steps_done INTEGER NOT NULL DEFAULT 0,
    final_metrics TEXT,               -- JSON: metric -> value at the last evaluation before divergence
    PRIMARY KEY (sweep_id, run_index)
);
CREATE INDEX runs_by_batch ON runs (sweep_id, batch_index);
CREATE TABLE curves (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    run_index INTEGER NOT NULL,
    metric TEXT NOT NULL,
    first_eval INTEGER NOT NULL,      -- index of this segment's first evaluation
    data BLOB NOT NULL,               -- float64, little-endian
    PRIMARY KEY (sweep_id, run_index, metric, first_eval)
);
CREATE TABLE checkpoints (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    batch_index INTEGER NOT NULL,
    step INTEGER NOT NULL,            -- steps done by every run of the batch
    state BLOB NOT NULL,              -- npz of the state's leaves (real runs only)
    PRIMARY KEY (sweep_id, batch_index)
);
"""
# Tables added after schema version 1 was released: created when first needed, so older
# databases stay readable and writable without a version change.
PARAMS_TABLE = """
CREATE TABLE IF NOT EXISTS params (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    run_index INTEGER NOT NULL,
    data BLOB NOT NULL,               -- npz of the run's parameter leaves after its last step
    PRIMARY KEY (sweep_id, run_index)
);
"""
OWNERS_TABLE = """
CREATE TABLE IF NOT EXISTS owners (
    sweep_id INTEGER PRIMARY KEY REFERENCES sweeps (id),
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    token TEXT NOT NULL,              -- random, one per open Store
    heartbeat REAL NOT NULL           -- unix time of the owner's last claim or commit
);
"""


class StoreError(Exception):
    """The results database cannot be used: not writable, foreign, corrupt, locked, full or of
    another schema.  The message names the path and the problem."""


class SweepBusy(StoreError):
    """Another live process is computing this sweep."""


# --------------------------------------------------------------------------- errors


def _is_busy(err: sqlite3.Error) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


def failure(path, err: sqlite3.Error, doing: str = "writing") -> StoreError:
    """The :class:`StoreError` to raise for SQLite error ``err`` on the database at ``path``."""
    text = str(err)
    low = text.lower()
    if "full" in low:
        problem = (f"the disk is full ({text}); the database stays at its last commit: free space "
                   "and run the same command to resume")
    elif "readonly" in low or "read-only" in low:
        problem = f"it is not writable ({text}); the database stays at its last commit"
    elif "malformed" in low or "not a database" in low or "corrupt" in low:
        problem = f"it is corrupt ({text}): move it aside and run again, or restore a copy"
    elif _is_busy(err):
        problem = (f"it is locked by another process ({text}) and stayed locked for {LOCK_WAIT:.0f} s; "
                   "run the command again when that process is done")
    elif "disk i/o" in low or "unable to open" in low:
        problem = f"the file cannot be read or written ({text})"
    else:
        problem = text
    return StoreError(f"results database {path}: {doing} failed: {problem}")


# --------------------------------------------------------------------------- transactions


class Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` if the body raises); waits out other
    processes' locks with a bounded back-off; SQLite errors become :class:`StoreError`."""

    def __init__(self, conn: sqlite3.Connection, path, wait: float | None = None):
        self.conn, self.path, self.wait = conn, path, LOCK_WAIT if wait is None else wait

    def _retrying(self, statement: str) -> None:
        deadline, delay = time.monotonic() + self.wait, 0.05
        while True:
            try:
                self.conn.execute(statement)
                return
            except sqlite3.OperationalError as err:
                if not _is_busy(err) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(2 * delay, 2.0)

    def __enter__(self) -> sqlite3.Connection:
        try:
            self._retrying("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            raise failure(self.path, err) from None
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self._retrying("COMMIT")
                return False
            except sqlite3.Error as err:
                self._rollback()
                raise failure(self.path, err) from None
        self._rollback()
        if isinstance(exc, sqlite3.Error):
            raise failure(self.path, exc) from None
        return False

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            try:
                self.conn.execute("ROLLBACK")
            except sqlite3.Error:   # SQLite rolled back itself (e.g. after an I/O error)
                pass


# --------------------------------------------------------------------------- owners


def this_host() -> str:
    return socket.gethostname()


# Tokens of the claims open Stores of this process hold (a claim left by a Store of this
# process that was closed, e.g. after an error, is dead although the process lives).
LIVE_TOKENS: set[str] = set()


def owner_alive(host: str, pid: int, heartbeat: float, token: str = "", now: float | None = None) -> bool:
    """Whether the process that claimed a sweep may still be computing it."""
    if host == this_host() and int(pid) == os.getpid():
        return token in LIVE_TOKENS
    if host == this_host():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:   # exists, owned by another user
            return True
        return True
    return (time.time() if now is None else now) - heartbeat < STALE_AFTER


# --------------------------------------------------------------------------- opening


def _check_file(path: Path, readonly: bool) -> bool:
    """Refuse paths that cannot hold a results database; True when the file exists and is
    not empty."""
    if path.is_dir():
        raise StoreError(f"results database path {path} is a directory; give a file path")
    if path.exists() and path.stat().st_size > 0:
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
        except OSError as err:
            raise StoreError(f"results database {path} cannot be read: {err.strerror or err}") from None
        if head != SQLITE_HEADER:
            raise StoreError(f"{path} exists and is not an SQLite database (it starts with {head!r}); "
                             f"it was left untouched: choose another results path")
        return True
    if readonly:
        if not path.exists():
            raise StoreError(f"no results database at {path}")
        return False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"results database path {path} is not writable: cannot create "
                         f"its directory ({err.strerror or err})") from None
    return False


def _open(path, readonly: bool) -> sqlite3.Connection:
    try:
        if readonly:
            return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True,
                                   isolation_level=None, timeout=1.0)
        return sqlite3.connect(str(path), isolation_level=None, timeout=1.0)
    except sqlite3.Error as err:
        raise StoreError(f"results database path {path} cannot be opened"
                         f"{'' if readonly else ' for writing'}: {err}") from None


def _create_schema(conn: sqlite3.Connection, path) -> None:
    # pages of 32 KiB: a checkpoint (megabytes, rewritten every chunk) then spans 8x
    # fewer overflow pages, which made its commit 1.5-2x faster than SQLite's 4 KiB
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    with Transaction(conn, path) as c:
        for statement in (SCHEMA + PARAMS_TABLE + OWNERS_TABLE).split(";"):
            if statement.strip():
                c.execute(statement)
        c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def connect(path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open, check and (for writing, if new) initialise the results database at ``path``
    (a path or ``":memory:"``).  Reading an empty or absent-schema file gives an empty
    in-memory database and leaves the file as it is."""
    memory = str(path) == ":memory:"
    existing = False if memory else _check_file(Path(path), readonly)
    if readonly and not existing:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        _create_schema(conn, path)
        return conn
    conn = _open(path, readonly)
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as err:
        conn.close()
        if _is_busy(err):
            raise failure(path, err, "opening") from None
        raise StoreError(f"{path} is not a readable SQLite database ({err}); it was left untouched") from None
    if tables or app:
        if app != APPLICATION_ID:
            conn.close()
            raise StoreError(f"{path} is an SQLite database of another application (application_id {app}, "
                             f"expected {APPLICATION_ID}); it was left untouched: choose another results path")
        if version != SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"{path} is a results database of schema version {version}, but this code "
                             f"reads version {SCHEMA_VERSION}; it was left untouched: use another path")
    elif readonly:   # an SQLite file without tables: read as an empty database
        conn.close()
        return connect(":memory:", readonly=True)
    if not readonly and tables:
        _check_integrity(conn, path)
    if not readonly:
        try:
            if not tables:
                _create_schema(conn, path)
            else:
                with Transaction(conn, path):   # proves the file is writable before any compute
                    pass
        except StoreError:
            conn.close()
            raise
    return conn


def _check_integrity(conn: sqlite3.Connection, path) -> None:
    """Raise StoreError (closing ``conn``) when SQLite finds the file's pages inconsistent."""
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as err:
        if _is_busy(err):
            conn.close()
            raise failure(path, err, "opening") from None
        problems = [str(err)]
    if problems != ["ok"]:
        conn.close()
        said = " ".join(" ".join(problems).replace("*** in database main ***", "").split())
        raise StoreError(f"{path} is corrupt (SQLite's integrity check says: {said}); "
                         f"it was left untouched: move it aside and run again, or restore a copy")
