"""Fault injection: the results database under kills, corruption, a second writer and failing
writes, many times over (not a test; the figures go to docs/reliability.md).

    python benchmarks/faults.py                 # 20 trials of each fault
    python benchmarks/faults.py --trials 5      # a quick look

The sweep is small (an MLP 64-16-10 on 256 digits, 4 learning rates x 2 seeds, 60 steps in
chunks of 10, one CPU device) and runs in child processes (``--child DB``), so a kill is a
real ``kill -9``.  Each fault is checked against an uninterrupted reference computed first:

* kill -9 at a random moment (during start-up, compile, a commit or between commits), then
  the same command again: the resumed sweep must equal the reference bit for bit;
* corruption: one random interior page of a finished database overwritten with random
  bytes: opening for writing must refuse it (StoreError) and leave the file byte-identical;
* two writers: two processes start the same sweep at once: exactly one computes it, the
  other is refused (SweepBusy) or finds it finished; one sweep row, equal to the reference;
* a failing write (disk full, file read-only) injected after a random number of commits:
  one StoreError naming the path, nothing else raised, and the next run resumes to the
  reference.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def sweep_spec():
    from lab import data, losses, nets, optim
    from lab.sweep import Problem, Study, SweepSpec, classification_metrics

    x, y = data.load_digits()
    x, y = np.asarray(x[:256], np.float32), np.asarray(y[:256], np.int32)
    net = nets.mlp([16, 10], activation="tanh")

    def make_problem(static):
        def loss(params, xb, yb, key):
            return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)
        return Problem(init_params=lambda key: net.init(key, (-1, 64))[1], loss=loss, x=x, y=y,
                       evaluate=classification_metrics(net.apply), eval_x=x[:64], eval_y=y[:64])

    study = Study("faults_mlp", make_problem, lambda c: optim.sgd(c["learning_rate"], momentum=0.9),
                  hyperparameters={"learning_rate": 0.1}, static={"batch_size": 32},
                  description={"data": "first 256 digits", "net": "mlp 64-16-10 tanh"})
    return SweepSpec(study, {"learning_rate": [0.01, 0.03, 0.1, 0.3]}, seeds=2, steps=60, eval_every=10,
                     chunk_steps=10, runs_per_device=4)


class Faulty:
    """The store's connection, whose writes start failing after ``after`` commits: with the
    error SQLite raises on a full disk (SQLITE_FULL), or by SQLite's own refusal to write
    (``PRAGMA query_only``, as for a file made read-only)."""

    def __init__(self, conn, fault: str, after: int):
        self.conn, self.fault, self.after, self.commits = conn, fault, after, 0

    def __getattr__(self, name):
        return getattr(self.conn, name)

    def _full(self, sql: str) -> bool:
        return (self.fault == "full" and self.commits >= self.after
                and sql.split()[0].upper() in ("INSERT", "UPDATE", "DELETE"))

    def execute(self, sql, *args):
        if self._full(sql):
            raise sqlite3.OperationalError("database or disk is full")
        result = self.conn.execute(sql, *args)
        if sql.strip().upper() == "COMMIT":
            self.commits += 1
            if self.fault == "read-only" and self.commits == self.after:
                self.conn.execute("PRAGMA query_only = 1")
        return result

    def executemany(self, sql, rows):
        if self._full(sql):
            raise sqlite3.OperationalError("database or disk is full")
        return self.conn.executemany(sql, rows)


def child(db: str, fault: str, after: int) -> int:
    """Run the sweep into ``db``; with a fault, the store's writes fail after ``after``
    commits.  Prints ``committed STEP`` per chunk, then ``done``, ``busy`` or
    ``store-error <message>``."""
    from lab import database
    from lab.store import StoreError, SweepBusy
    from lab.sweep import run_sweep

    if fault != "none":
        plain = database.connect
        database.connect = lambda path, **kw: Faulty(plain(path, **kw), fault, after)
    try:
        run_sweep(sweep_spec(), store=db, progress=False,
                  on_chunk=lambda info: print(f"committed {info['step']}", flush=True))
    except SweepBusy:
        print("busy", flush=True)
        return 0
    except StoreError as err:
        print(f"store-error {err}".replace("\n", " "), flush=True)
        return 0
    print("done", flush=True)
    return 0


def spawn(db, *extra) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu", LAB_CPU_DEVICES="1",
               XLA_FLAGS=os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=1")
    return subprocess.Popen([sys.executable, __file__, "--child", str(db), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(db) -> list[str]:
    proc = spawn(db)
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {err[-2000:]}")
    return out.splitlines()


def curves(db) -> dict:
    from lab.store import Store
    with Store(db, readonly=True) as store:
        (row,) = [s for s in store.list_sweeps() if s["status"] == "done"]
        result = store.load(row["id"])
        return {"sweeps": len(store.list_sweeps()), "curves": result.curves, "final": result.final}


def same(a, b) -> bool:
    return all(np.array_equal(a["curves"][m], b["curves"][m], equal_nan=True) and
               np.array_equal(a["final"][m], b["final"][m], equal_nan=True) for m in a["curves"])


def digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


KILLED_AFTER_A_COMMIT = []


def trial_kill(folder, rng, reference, span) -> bool:
    db = folder / "kill.sqlite"
    proc = spawn(db)
    time.sleep(rng.uniform(0.0, span))
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    KILLED_AFTER_A_COMMIT.append("committed" in out)
    finish(db)
    return same(curves(db), reference) and curves(db)["sweeps"] == 1


def trial_corrupt(folder, rng, finished_db) -> bool:
    from lab.store import Store, StoreError
    from lab.database import PAGE_SIZE
    db = folder / "corrupt.sqlite"
    db.write_bytes(Path(finished_db).read_bytes())
    pages = db.stat().st_size // PAGE_SIZE
    with open(db, "r+b") as fh:
        fh.seek(rng.randrange(1, pages) * PAGE_SIZE)
        fh.write(rng.randbytes(PAGE_SIZE))
    before = digest(db)
    try:
        Store(db).close()
        refused = False
    except StoreError:
        refused = True
    return refused and digest(db) == before


def trial_two_writers(folder, rng, reference) -> bool:
    db = folder / "pair.sqlite"
    first = spawn(db)
    time.sleep(rng.uniform(0.0, 1.0))
    second = spawn(db)
    outs = [p.communicate(timeout=600)[0].splitlines() for p in (first, second)]
    ends = sorted(lines[-1].split()[0] for lines in outs)
    computed = [any(line.startswith("committed") for line in lines) for lines in outs]
    return ends in (["busy", "done"], ["done", "done"]) and sum(computed) == 1 and same(curves(db), reference) \
        and curves(db)["sweeps"] == 1


def trial_write_failure(folder, rng, reference, fault) -> bool:
    db = folder / f"{fault}.sqlite"
    at = rng.randrange(2, 12)   # commits: the sweep's creation, then one or more per chunk
    lines = finish_with(db, fault, at)
    last = lines[-1]
    clear = last.startswith("store-error") and str(db) in last
    finish(db)
    return clear and same(curves(db), reference)


def finish_with(db, fault, at) -> list[str]:
    proc = spawn(db, "--fault", fault, "--after", str(at))
    out, err = proc.communicate(timeout=600)
    if proc.returncode != 0:
        return [f"crash {err.strip().splitlines()[-1] if err.strip() else proc.returncode}"]
    return out.splitlines()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child")
    parser.add_argument("--fault", default="none", choices=["none", "full", "read-only"])
    parser.add_argument("--after", type=int, default=0, help="commits before the fault (child)")
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.fault, args.after)
    from machine import describe
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        finish(folder / "reference.sqlite")
        span = time.perf_counter() - t        # kills land anywhere in a run's lifetime
        reference = curves(folder / "reference.sqlite")
        rows = []
        for name, trial in [
                ("kill -9 at a random moment, then resume", lambda: trial_kill(folder, rng, reference, span)),
                ("interior page corrupted, then opened for writing",
                 lambda: trial_corrupt(folder, rng, folder / "reference.sqlite")),
                ("two processes start the same sweep", lambda: trial_two_writers(folder, rng, reference)),
                ("disk full at a random commit, then resume",
                 lambda: trial_write_failure(folder, rng, reference, "full")),
                ("file made read-only at a random commit, then resume",
                 lambda: trial_write_failure(folder, rng, reference, "read-only"))]:
            good = 0
            for _ in range(args.trials):
                for stale in folder.glob("*.sqlite*"):   # a fresh database per trial
                    if not stale.name.startswith("reference.sqlite"):
                        stale.unlink()
                good += bool(trial())
            rows.append((name, good, args.trials))
            print(f"{name}: {good}/{args.trials}", flush=True)
    print(f"\n{describe()}; a clean run takes {span:.1f} s; {sum(KILLED_AFTER_A_COMMIT)} of "
          f"{len(KILLED_AFTER_A_COMMIT)} kills landed after the first chunk's commit\n")
    print("| fault | as it should be |\n|---|---|")
    for name, good, n in rows:
        print(f"| {name} | {good}/{n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
