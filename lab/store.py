"""The results database: every sweep, run and curve in one SQLite file.

Contract.  A results database is an SQLite file (default ``results/lab.sqlite``; any
path, or ``":memory:"``) marked with ``PRAGMA application_id = 0x4C414253`` ("LABS") and
``PRAGMA user_version = SCHEMA_VERSION`` (new files get ``PAGE_SIZE`` pages of 32 KiB, so
that the checkpoint rewritten every chunk spans few pages).  It holds these tables:

* ``sweeps``: one row per sweep: study, fingerprint and full config (JSON), execution
  choices (runs per device, chunking, devices), code version and git hash, jax / jaxlib /
  optax versions, device kind, environment (PRNG implementation, XLA flags, x64),
  metric names, start and end times, status (running, done, interrupted, failed),
  compile and run seconds;
* ``runs``: one row per run: canonical index, static group, batch, every knob (JSON),
  seed, status (pending, done, diverged), diverged step, steps done, final metrics (JSON);
* ``curves``: per-run metric arrays, stored as segments of float64 (one per committed
  chunk) that :meth:`Store.load` joins;
* ``checkpoints``: the training state of each unfinished batch after its last committed
  chunk, as npz bytes, so an interrupted sweep resumes exactly;
* ``params``: for sweeps that keep them (``SweepSpec(keep_params=True)``), each finished
  run's parameters after its last step, as npz bytes (a database made before this table
  existed gets it the first time such a sweep commits).

Every write is one transaction (one per chunk during a sweep), so a sweep killed at any
moment leaves the database at its last committed chunk.  Arrays are stored as raw
little-endian bytes or npz, read back with ``allow_pickle=False``: no pickle anywhere.
Opening never overwrites a file that is not a results database of this schema: a
foreign, corrupt or newer file raises :class:`StoreError` and stays as it was.

Reading back: :func:`load_sweep` returns a :class:`lab.results.SweepResult` (also
importable from here) whose arrays are indexed by the grid axes (as written in the spec,
seed last).  This module writes files because
that is its job; it never prints.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from lab.results import SweepResult

DEFAULT_PATH = Path("results") / "lab.sqlite"
SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C414253  # "LABS"
SQLITE_HEADER = b"SQLite format 3\x00"

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
PARAMS_TABLE = """
CREATE TABLE IF NOT EXISTS params (
    sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
    run_index INTEGER NOT NULL,
    data BLOB NOT NULL,               -- npz of the run's parameter leaves after its last step
    PRIMARY KEY (sweep_id, run_index)
);
"""


class StoreError(Exception):
    """The results database cannot be used: not writable, foreign, corrupt or of another schema."""


@dataclasses.dataclass(frozen=True)
class BatchUpdate:
    """What one chunk did to one batch: the engine's side of a commit."""
    batch_index: int
    run_indices: np.ndarray        # (n,) canonical indices of the batch's runs
    first_eval: int                # index of the chunk's first evaluation
    metrics: dict                  # metric -> (n, evals) float64
    steps_done: int
    diverged_step: np.ndarray      # (n,) int, -1 for healthy runs
    finished: bool
    checkpoint: list | None = None  # the state's leaves for the n runs, when not finished
    params: list | None = None      # the parameters' leaves for the n runs, when finished and kept


PAGE_SIZE = 32768   # bytes per database page, set when a database is created


# --------------------------------------------------------------------------- array bytes


def _f64_bytes(values) -> bytes:
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def _npz_bytes(arrays: list) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *[np.asarray(a) for a in arrays])
    return buffer.getvalue()


def _npz_arrays(blob: bytes) -> list:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def _json_finite(value: float):
    return None if not math.isfinite(value) else float(value)


# --------------------------------------------------------------------------- the store


class Store:
    """An open results database.  ``Store(path)`` checks (or creates) the file at once, so
    a bad path fails before any compute.  Use as a context manager or call :meth:`close`."""

    def __init__(self, path: str | Path = DEFAULT_PATH):
        self.path = path if str(path) == ":memory:" else Path(path)
        self._conn = _connect(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._conn.close()

    def _transaction(self):
        return _Transaction(self._conn)

    # ---------------------------------------------------------------- sweeps

    def find_sweep(self, fingerprint: str) -> dict | None:
        """The latest sweep with this fingerprint: ``{id, status, execution}``, or None."""
        row = self._conn.execute("SELECT id, status, execution FROM sweeps WHERE fingerprint = ? "
                                 "ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        return None if row is None else {"id": row[0], "status": row[1], "execution": json.loads(row[2])}

    def create_sweep(self, *, study: str, fingerprint: str, config: dict, execution: dict,
                     environment: dict, metrics: Iterable[str], runs: Iterable[tuple]) -> int:
        """Insert a sweep and its runs ``(run_index, group, batch, config, seed)``; returns its id."""
        env = dict(environment)
        with self._transaction() as c:
            cursor = c.execute(
                "INSERT INTO sweeps (study, fingerprint, config, execution, code_version, git_hash, "
                "jax_version, jaxlib_version, optax_version, device_kind, environment, metrics, started, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running')",
                (study, fingerprint, json.dumps(config), json.dumps(execution), env.pop("code_version"),
                 env.pop("git_hash"), env.pop("jax"), env.pop("jaxlib"), env.pop("optax"),
                 env.pop("device_kind"), json.dumps(env), json.dumps(list(metrics)), time.time()))
            sweep_id = cursor.lastrowid
            c.executemany("INSERT INTO runs (sweep_id, run_index, group_index, batch_index, config, seed, status) "
                          "VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                          ((sweep_id, int(i), int(g), int(b), json.dumps(cfg), int(s)) for i, g, b, cfg, s in runs))
        return sweep_id

    def execution(self, sweep_id: int) -> dict:
        """How a sweep is being computed (JSON: runs per device, chunk steps, devices, programs)."""
        row = self._conn.execute("SELECT execution FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise StoreError(f"no sweep {sweep_id} in {self.path}")
        return json.loads(row[0])

    def set_execution(self, sweep_id: int, execution: dict) -> None:
        with self._transaction() as c:
            c.execute("UPDATE sweeps SET execution = ? WHERE id = ?", (json.dumps(execution), sweep_id))

    def checkpointed(self, sweep_id: int) -> set:
        """Indices of the batches with a saved checkpoint (part-way through)."""
        return {row[0] for row in self._conn.execute("SELECT batch_index FROM checkpoints WHERE sweep_id = ?",
                                                     (sweep_id,))}

    def set_status(self, sweep_id: int, status: str, *, compile_seconds: float = 0.0,
                   run_seconds: float = 0.0) -> None:
        """Record a sweep's status; time spent is added to its totals; 'done' stamps the end."""
        with self._transaction() as c:
            c.execute("UPDATE sweeps SET status = ?, ended = CASE WHEN ? = 'done' THEN ? ELSE ended END, "
                      "compile_seconds = compile_seconds + ?, run_seconds = run_seconds + ? WHERE id = ?",
                      (status, status, time.time(), compile_seconds, run_seconds, sweep_id))

    def batches(self, sweep_id: int) -> dict:
        """``batch_index -> (group_index, run_indices, finished)`` for every batch of a sweep."""
        out: dict = {}
        for batch, group, run, status in self._conn.execute(
                "SELECT batch_index, group_index, run_index, status FROM runs WHERE sweep_id = ? "
                "ORDER BY batch_index, run_index", (sweep_id,)):
            g, runs, done = out.get(batch, (group, [], True))
            out[batch] = (g, runs + [run], done and status != "pending")
        return {b: (g, np.asarray(r, dtype=np.int64), done) for b, (g, r, done) in out.items()}

    def checkpoint(self, sweep_id: int, batch_index: int) -> tuple[int, list] | None:
        """``(step, leaves)`` saved after the batch's last committed chunk, or None."""
        row = self._conn.execute("SELECT step, state FROM checkpoints WHERE sweep_id = ? AND batch_index = ?",
                                 (sweep_id, batch_index)).fetchone()
        return None if row is None else (row[0], _npz_arrays(row[1]))

    def commit_chunk(self, sweep_id: int, updates: Iterable[BatchUpdate], every: int) -> None:
        """Write one chunk of one or more batches as a single transaction: curve segments,
        run progress and divergence, checkpoints, and final metrics of finished batches."""
        with self._transaction() as c:
            for u in updates:
                runs = [int(r) for r in u.run_indices]
                c.executemany(
                    "INSERT OR REPLACE INTO curves (sweep_id, run_index, metric, first_eval, data) VALUES (?, ?, ?, ?, ?)",
                    ((sweep_id, r, name, u.first_eval, _f64_bytes(values[k]))
                     for name, values in u.metrics.items() for k, r in enumerate(runs)))
                c.executemany(
                    "UPDATE runs SET steps_done = ?, diverged_step = ?, status = ? WHERE sweep_id = ? AND run_index = ?",
                    ((u.steps_done, None if d < 0 else int(d), "diverged" if d >= 0 else ("done" if u.finished else "pending"),
                      sweep_id, r) for r, d in zip(runs, u.diverged_step)))
                if u.finished:
                    c.execute("DELETE FROM checkpoints WHERE sweep_id = ? AND batch_index = ?", (sweep_id, u.batch_index))
                    self._write_finals(c, sweep_id, runs, u.diverged_step, every)
                    if u.params is not None:
                        c.execute(PARAMS_TABLE)
                        c.executemany("INSERT OR REPLACE INTO params (sweep_id, run_index, data) VALUES (?, ?, ?)",
                                      ((sweep_id, r, _npz_bytes([leaf[k] for leaf in u.params]))
                                       for k, r in enumerate(runs)))
                else:
                    c.execute("INSERT OR REPLACE INTO checkpoints (sweep_id, batch_index, step, state) VALUES (?, ?, ?, ?)",
                              (sweep_id, u.batch_index, u.steps_done, _npz_bytes(u.checkpoint)))

    def _write_finals(self, c, sweep_id: int, runs: list, diverged_step, every: int) -> None:
        for r, d in zip(runs, diverged_step):
            last = (int(d) // every - 1) if d >= 0 else None  # last evaluation before the diverging block
            finals = {}
            for name, segments in _segments(c, sweep_id, r).items():
                curve = np.concatenate([seg for _, seg in sorted(segments)])
                j = len(curve) - 1 if last is None else last
                finals[name] = _json_finite(curve[j]) if 0 <= j < len(curve) else None
            c.execute("UPDATE runs SET final_metrics = ? WHERE sweep_id = ? AND run_index = ?",
                      (json.dumps(finals), sweep_id, r))

    def copy_batches(self, sweep_id: int, source: "Store", source_id: int, batches: Iterable[int]) -> None:
        """Copy the finished ``batches`` of sweep ``source_id`` in ``source`` (another database
        holding the same sweep, e.g. one process's part of a multi-process sweep) into sweep
        ``sweep_id`` here: run status, divergence, steps, final metrics, curves and kept
        parameters, as one transaction.  Raises ValueError when a batch is unfinished in
        ``source`` or holds other runs than here."""
        batches = sorted(int(b) for b in batches)
        theirs, mine = source.batches(source_id), self.batches(sweep_id)
        for b in batches:
            if b not in theirs or not theirs[b][2]:
                raise ValueError(f"batch {b} is not finished in {source.path}; nothing was copied")
            if b not in mine or not np.array_equal(theirs[b][1], mine[b][1]):
                raise ValueError(f"batch {b} holds other runs in {source.path} than in {self.path}; nothing was copied")
        runs = [int(r) for b in batches for r in theirs[b][1]]
        src = source._conn
        kept = _has_params(src)
        with self._transaction() as c:
            if kept:
                c.execute(PARAMS_TABLE)
            for r in runs:
                status, diverged, steps, finals = src.execute(
                    "SELECT status, diverged_step, steps_done, final_metrics FROM runs WHERE sweep_id = ? AND run_index = ?",
                    (source_id, r)).fetchone()
                c.execute("UPDATE runs SET status = ?, diverged_step = ?, steps_done = ?, final_metrics = ? "
                          "WHERE sweep_id = ? AND run_index = ?", (status, diverged, steps, finals, sweep_id, r))
                c.executemany(
                    "INSERT OR REPLACE INTO curves (sweep_id, run_index, metric, first_eval, data) VALUES (?, ?, ?, ?, ?)",
                    ((sweep_id, r, metric, first, blob) for metric, first, blob in src.execute(
                        "SELECT metric, first_eval, data FROM curves WHERE sweep_id = ? AND run_index = ?",
                        (source_id, r))))
                if kept:
                    c.executemany("INSERT OR REPLACE INTO params (sweep_id, run_index, data) VALUES (?, ?, ?)",
                                  ((sweep_id, r, blob) for (blob,) in src.execute(
                                      "SELECT data FROM params WHERE sweep_id = ? AND run_index = ?", (source_id, r))))
            c.execute(f"DELETE FROM checkpoints WHERE sweep_id = ? AND batch_index IN ({', '.join('?' * len(batches))})",
                      (sweep_id, *batches))

    # ---------------------------------------------------------------- reading

    def metric_names(self, sweep_id: int) -> list[str]:
        """The metric names sweep ``sweep_id`` records, in order."""
        row = self._conn.execute("SELECT metrics FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"no sweep with id {sweep_id} in {self.path}")
        return json.loads(row[0])

    def final_params(self, sweep_id: int, run_index: int) -> list | None:
        """The parameters of run ``run_index`` (canonical order: :meth:`SweepResult.index`)
        after its last step, frozen before the step where it diverged, as the leaves of the
        study's parameter pytree in ``jax.tree.leaves`` order;
        ``jax.tree.unflatten(jax.tree.structure(problem.init_params(key)), leaves)`` rebuilds
        it.  None when the sweep did not keep them (``SweepSpec(keep_params=True)``) or the
        run has not finished."""
        if not _has_params(self._conn):
            return None
        row = self._conn.execute("SELECT data FROM params WHERE sweep_id = ? AND run_index = ?",
                                 (sweep_id, run_index)).fetchone()
        return None if row is None else _npz_arrays(row[0])

    def run_counts(self) -> dict:
        """``sweep_id -> {run status: count}`` for every sweep with runs."""
        counts: dict = {}
        for sweep_id, status, n in self._conn.execute(
                "SELECT sweep_id, status, COUNT(*) FROM runs GROUP BY sweep_id, status"):
            counts.setdefault(sweep_id, {})[status] = n
        return counts

    def list_sweeps(self) -> list[dict]:
        """One summary dict per sweep, oldest first."""
        cols = ("id", "study", "fingerprint", "status", "started", "ended", "compile_seconds", "run_seconds")
        return [dict(zip(cols, row)) for row in self._conn.execute(f"SELECT {', '.join(cols)} FROM sweeps ORDER BY id")]

    def load(self, sweep_id: int | None = None, *, study: str | None = None,
             fingerprint: str | None = None) -> SweepResult:
        """A sweep as arrays: by id, else the latest sweep of ``study`` or with ``fingerprint``,
        else the latest of all."""
        if sweep_id is None:
            where, args = ("WHERE study = ?", (study,)) if study else (("WHERE fingerprint = ?", (fingerprint,))
                                                                       if fingerprint else ("", ()))
            row = self._conn.execute(f"SELECT id FROM sweeps {where} ORDER BY id DESC LIMIT 1", args).fetchone()
            if row is None:
                raise KeyError(f"no sweep in {self.path}" + (f" for study {study!r}" if study else ""))
            sweep_id = row[0]
        row = self._conn.execute(
            "SELECT study, status, config, execution, environment, metrics, started, ended, compile_seconds, "
            "run_seconds, code_version, git_hash, jax_version, jaxlib_version, optax_version, device_kind "
            "FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"no sweep with id {sweep_id} in {self.path}")
        study_name, status, config, execution, environment, metrics = row[:6]
        config, metrics = json.loads(config), json.loads(metrics)
        environment = dict(json.loads(environment), code_version=row[10], git_hash=row[11], jax=row[12],
                           jaxlib=row[13], optax=row[14], device_kind=row[15])
        axes = {name: tuple(values) for name, values in config["grid"]}
        axes["seed"] = tuple(config["seeds"])
        shape = tuple(len(v) for v in axes.values())
        n, evals = math.prod(shape), config["steps"] // config["eval_every"]
        curves = {m: np.full((n, evals), np.nan) for m in metrics}
        for run, metric, first, blob in self._conn.execute(
                "SELECT run_index, metric, first_eval, data FROM curves WHERE sweep_id = ?", (sweep_id,)):
            seg = np.frombuffer(blob, dtype="<f8")
            curves[metric][run, first:first + len(seg)] = seg
        finals = {m: np.full(n, np.nan) for m in metrics}
        diverged, run_status, configs = np.full(n, -1, np.int64), np.full(n, "pending", dtype=object), [None] * n
        for run, cfg, st, d, fin in self._conn.execute(
                "SELECT run_index, config, status, diverged_step, final_metrics FROM runs WHERE sweep_id = ?",
                (sweep_id,)):
            configs[run], run_status[run] = json.loads(cfg), st
            diverged[run] = -1 if d is None else d
            for m, v in (json.loads(fin) if fin else {}).items():
                finals[m][run] = np.nan if v is None else v
        return SweepResult(
            sweep_id=sweep_id, study=study_name, status=status, axes=axes,
            eval_steps=config["eval_every"] * np.arange(1, evals + 1),
            curves={m: c.reshape(shape + (evals,)) for m, c in curves.items()},
            final={m: f.reshape(shape) for m, f in finals.items()},
            diverged_step=diverged.reshape(shape), run_status=run_status.astype(str).reshape(shape),
            run_configs=tuple(configs), config=config, execution=json.loads(execution), environment=environment,
            timings={"started": row[6], "ended": row[7], "compile_seconds": row[8], "run_seconds": row[9]})


def load_sweep(path: str | Path = DEFAULT_PATH, sweep_id: int | None = None, *, study: str | None = None) -> SweepResult:
    """Read one sweep from the database at ``path`` (see :meth:`Store.load`)."""
    if str(path) != ":memory:" and not Path(path).exists():
        raise FileNotFoundError(f"no results database at {path}")
    with Store(path) as store:
        return store.load(sweep_id, study=study)


# --------------------------------------------------------------------------- opening


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the body raises."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, *exc):
        self.conn.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _has_params(conn) -> bool:
    """Whether the database has the ``params`` table (older ones get it when first needed)."""
    return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'params'").fetchone()[0])


def _segments(c, sweep_id: int, run: int) -> dict:
    out: dict = {}
    for metric, first, blob in c.execute("SELECT metric, first_eval, data FROM curves WHERE sweep_id = ? AND run_index = ?",
                                         (sweep_id, run)):
        out.setdefault(metric, []).append((first, np.frombuffer(blob, dtype="<f8")))
    return out


def _connect(path) -> sqlite3.Connection:
    """Open, check and if new initialise a results database; never writes into a foreign file."""
    if str(path) != ":memory:":
        if path.is_dir():
            raise StoreError(f"results database path {path} is a directory; give a file path")
        if path.exists() and path.stat().st_size > 0:
            with open(path, "rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
            if head != SQLITE_HEADER:
                raise StoreError(f"{path} exists and is not an SQLite database (it starts with {head!r}); "
                                 f"it was left untouched: choose another results path")
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreError(f"results database path {path} is not writable: cannot create "
                                 f"its directory ({err})") from None
    try:
        conn = sqlite3.connect(str(path), isolation_level=None)
    except sqlite3.Error as err:
        raise StoreError(f"results database path {path} is not writable: {err}") from None
    try:
        app = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as err:
        conn.close()
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
    try:
        if not tables:
            # pages of 32 KiB: a checkpoint (megabytes, rewritten every chunk) then spans 8x
            # fewer overflow pages, which made its commit 1.5-2x faster than SQLite's 4 KiB
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        with _Transaction(conn) as c:  # also proves the file is writable before any compute
            if not tables:
                for statement in (SCHEMA + PARAMS_TABLE).split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except sqlite3.Error as err:
        conn.close()
        raise StoreError(f"results database path {path} is not writable: {err}") from None
    return conn
