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
  existed gets it the first time such a sweep commits);
* ``owners``: the process computing each unfinished sweep (:meth:`Store.claim`), so the
  same sweep started twice is computed once; a dead owner's sweep is taken over.

Every write is one transaction (one per chunk during a sweep), so a sweep killed at any
moment leaves the database at its last committed chunk.  Arrays are stored as raw
little-endian bytes or npz, read back with ``allow_pickle=False``: no pickle anywhere.
Opening and the file's failures are :mod:`lab.database`'s: a foreign, corrupt, locked
or newer file raises :class:`StoreError` and stays as it was; reading
(``Store(path, readonly=True)``, :func:`load_sweep`) never writes.

Reading back: :func:`load_sweep` returns a :class:`lab.results.SweepResult` (also
importable from here) whose arrays are indexed by the grid axes (as written in the spec,
seed last).  This module writes files because
that is its job; it never prints.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import secrets
import sqlite3
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from lab import database
from lab.database import (APPLICATION_ID, OWNERS_TABLE, PAGE_SIZE, PARAMS_TABLE,  # noqa: F401
                          SCHEMA_VERSION, SQLITE_HEADER, StoreError, SweepBusy)
from lab.results import SweepResult

DEFAULT_PATH = Path("results") / "lab.sqlite"


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


def _translated(method):
    """Report an SQLite error inside a Store method as a StoreError naming the path."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as err:
            raise database.failure(self.path, err, method.__name__.strip("_").replace("_", " ")) from None
    return wrapper


class Store:
    """An open results database.  ``Store(path)`` checks (or creates) the file at once, so
    a bad path fails before any compute; ``Store(path, readonly=True)`` only reads and
    never changes the file.  Use as a context manager or call :meth:`close`.  Every
    failure of the file (corrupt, locked, full, not writable) is a :class:`StoreError`
    naming the path."""

    def __init__(self, path: str | Path = DEFAULT_PATH, *, readonly: bool = False):
        self.path = path if str(path) == ":memory:" else Path(path)
        self.readonly = readonly
        self._conn = database.connect(self.path, readonly=readonly)
        self._token = secrets.token_hex(8)
        self._owned: set[int] = set()
        database.LIVE_TOKENS.add(self._token)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        database.LIVE_TOKENS.discard(self._token)   # a claim not released (after an error) is now dead
        self._conn.close()

    def _transaction(self):
        if self.readonly:
            raise StoreError(f"results database {self.path} was opened read-only")
        return database.Transaction(self._conn, self.path)

    # ---------------------------------------------------------------- owners

    @_translated
    def claim(self, sweep_id: int) -> None:
        """Mark sweep ``sweep_id`` as computed by this process; raises :class:`SweepBusy` when
        another live process holds it (a dead owner's claim is taken over)."""
        with self._transaction() as c:
            self._claim(c, sweep_id)

    def _claim(self, c, sweep_id: int) -> None:
        c.execute(OWNERS_TABLE)
        row = c.execute("SELECT host, pid, token, heartbeat FROM owners WHERE sweep_id = ?", (sweep_id,)).fetchone()
        if row is not None and row[2] != self._token and database.owner_alive(row[0], row[1], row[3], row[2]):
            study = c.execute("SELECT study FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
            raise SweepBusy(
                f"sweep {sweep_id} (study {study[0] if study else '?'}) in {self.path} is being computed by "
                f"process {row[1]} on {row[0]} (last heard from {time.time() - row[3]:.0f} s ago); wait for it "
                f"to finish (then the same command reads its results) or stop it and run again to resume")
        c.execute("INSERT OR REPLACE INTO owners (sweep_id, host, pid, token, heartbeat) VALUES (?, ?, ?, ?, ?)",
                  (sweep_id, database.this_host(), os.getpid(), self._token, time.time()))
        self._owned.add(sweep_id)

    @_translated
    def release(self, sweep_id: int) -> None:
        """Give up this process's claim on sweep ``sweep_id`` (a no-op without one)."""
        if sweep_id in self._owned:
            with self._transaction() as c:
                c.execute("DELETE FROM owners WHERE sweep_id = ? AND token = ?", (sweep_id, self._token))
            self._owned.discard(sweep_id)

    @_translated
    def owner(self, sweep_id: int) -> dict | None:
        """``{host, pid, heartbeat, alive}`` of the process computing sweep ``sweep_id``, or None."""
        if not _has_table(self._conn, "owners"):
            return None
        row = self._conn.execute("SELECT host, pid, heartbeat, token FROM owners WHERE sweep_id = ?",
                                 (sweep_id,)).fetchone()
        return None if row is None else {"host": row[0], "pid": row[1], "heartbeat": row[2],
                                         "alive": database.owner_alive(*row)}

    # ---------------------------------------------------------------- sweeps

    @_translated
    def find_sweep(self, fingerprint: str) -> dict | None:
        """The latest sweep with this fingerprint: ``{id, status, execution}``, or None."""
        row = self._conn.execute("SELECT id, status, execution FROM sweeps WHERE fingerprint = ? "
                                 "ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        return None if row is None else {"id": row[0], "status": row[1], "execution": json.loads(row[2])}

    @_translated
    def create_sweep(self, *, study: str, fingerprint: str, config: dict, execution: dict,
                     environment: dict, metrics: Iterable[str], runs: Iterable[tuple],
                     claim: bool = False, unless: int | None = -1) -> int:
        """Insert a sweep and its runs ``(run_index, group, batch, config, seed)``; returns its id.

        ``claim=True`` also claims it for this process (:meth:`claim`) in the same transaction.
        ``unless`` is the id of the latest sweep with this fingerprint the caller saw (None for
        none): if another process has since added a newer one, :class:`SweepBusy` is raised
        and nothing is written (``-1``, the default, skips that check)."""
        env = dict(environment)
        with self._transaction() as c:
            if unless != -1:
                row = c.execute("SELECT id, status FROM sweeps WHERE fingerprint = ? ORDER BY id DESC LIMIT 1",
                                (fingerprint,)).fetchone()
                if row is not None and row[0] != unless:
                    raise SweepBusy(f"another process started the same sweep of study {study!r} in {self.path} "
                                    f"(sweep {row[0]}, {row[1]}) a moment ago; run the same command again to "
                                    f"wait for its results or resume it")
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
            if claim:
                self._claim(c, sweep_id)
        return sweep_id

    @_translated
    def execution(self, sweep_id: int) -> dict:
        """How a sweep is being computed (JSON: runs per device, chunk steps, devices, programs)."""
        row = self._conn.execute("SELECT execution FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise StoreError(f"no sweep {sweep_id} in {self.path}")
        return json.loads(row[0])

    @_translated
    def set_execution(self, sweep_id: int, execution: dict) -> None:
        with self._transaction() as c:
            c.execute("UPDATE sweeps SET execution = ? WHERE id = ?", (json.dumps(execution), sweep_id))

    @_translated
    def checkpointed(self, sweep_id: int) -> set:
        """Indices of the batches with a saved checkpoint (part-way through)."""
        return {row[0] for row in self._conn.execute("SELECT batch_index FROM checkpoints WHERE sweep_id = ?",
                                                     (sweep_id,))}

    @_translated
    def set_status(self, sweep_id: int, status: str, *, compile_seconds: float = 0.0,
                   run_seconds: float = 0.0) -> None:
        """Record a sweep's status; time spent is added to its totals; 'done' stamps the end."""
        with self._transaction() as c:
            c.execute("UPDATE sweeps SET status = ?, ended = CASE WHEN ? = 'done' THEN ? ELSE ended END, "
                      "compile_seconds = compile_seconds + ?, run_seconds = run_seconds + ? WHERE id = ?",
                      (status, status, time.time(), compile_seconds, run_seconds, sweep_id))

    @_translated
    def batches(self, sweep_id: int) -> dict:
        """``batch_index -> (group_index, run_indices, finished)`` for every batch of a sweep."""
        out: dict = {}
        for batch, group, run, status in self._conn.execute(
                "SELECT batch_index, group_index, run_index, status FROM runs WHERE sweep_id = ? "
                "ORDER BY batch_index, run_index", (sweep_id,)):
            g, runs, done = out.get(batch, (group, [], True))
            out[batch] = (g, runs + [run], done and status != "pending")
        return {b: (g, np.asarray(r, dtype=np.int64), done) for b, (g, r, done) in out.items()}

    @_translated
    def checkpoint(self, sweep_id: int, batch_index: int) -> tuple[int, list] | None:
        """``(step, leaves)`` saved after the batch's last committed chunk, or None."""
        row = self._conn.execute("SELECT step, state FROM checkpoints WHERE sweep_id = ? AND batch_index = ?",
                                 (sweep_id, batch_index)).fetchone()
        return None if row is None else (row[0], _npz_arrays(row[1]))

    @_translated
    def commit_chunk(self, sweep_id: int, updates: Iterable[BatchUpdate], every: int) -> None:
        """Write one chunk of one or more batches as a single transaction: curve segments,
        run progress and divergence, checkpoints, and final metrics of finished batches."""
        with self._transaction() as c:
            if sweep_id in self._owned:   # the owner's heartbeat
                c.execute("UPDATE owners SET heartbeat = ? WHERE sweep_id = ? AND token = ?",
                          (time.time(), sweep_id, self._token))
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

    @_translated
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

    @_translated
    def metric_names(self, sweep_id: int) -> list[str]:
        """The metric names sweep ``sweep_id`` records, in order."""
        row = self._conn.execute("SELECT metrics FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise KeyError(f"no sweep with id {sweep_id} in {self.path}")
        return json.loads(row[0])

    @_translated
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

    @_translated
    def run_counts(self) -> dict:
        """``sweep_id -> {run status: count}`` for every sweep with runs."""
        counts: dict = {}
        for sweep_id, status, n in self._conn.execute(
                "SELECT sweep_id, status, COUNT(*) FROM runs GROUP BY sweep_id, status"):
            counts.setdefault(sweep_id, {})[status] = n
        return counts

    @_translated
    def list_sweeps(self) -> list[dict]:
        """One summary dict per sweep, oldest first."""
        cols = ("id", "study", "fingerprint", "status", "started", "ended", "compile_seconds", "run_seconds")
        return [dict(zip(cols, row)) for row in self._conn.execute(f"SELECT {', '.join(cols)} FROM sweeps ORDER BY id")]

    @_translated
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
    with Store(path, readonly=str(path) != ":memory:") as store:
        return store.load(sweep_id, study=study)


# --------------------------------------------------------------------------- opening


def _has_table(conn, name: str) -> bool:
    """Whether the database has table ``name`` (``params`` and ``owners`` are made when first needed)."""
    return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
                             (name,)).fetchone()[0])


def _has_params(conn) -> bool:
    return _has_table(conn, "params")


def _segments(c, sweep_id: int, run: int) -> dict:
    out: dict = {}
    for metric, first, blob in c.execute("SELECT metric, first_eval, data FROM curves WHERE sweep_id = ? AND run_index = ?",
                                         (sweep_id, run)):
        out.setdefault(metric, []).append((first, np.frombuffer(blob, dtype="<f8")))
    return out
