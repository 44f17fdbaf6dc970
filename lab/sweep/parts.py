"""A sweep shared by several processes: one part file each, merged by process 0.

Contract.  With ``run_sweep(process=(index, count))`` and ``count > 1``, process ``index``
computes the batches ``b`` with ``b % count == index`` into its own database
:func:`part_path` beside the results database (which every process must be able to read);
process 0 waits for every part to finish, copies each part's own batches into one fresh
sweep of the results database (:func:`merge_parts`) and every process returns the whole
sweep from it.  The merged sweep equals a one-process run bit for bit.  Parts that cut
runs into batches differently, or ran a static group under different programs, are not
merged, nor is a part whose groups' programs or data differ from what this code computes
(one left by an earlier run, found before its process began the new one).
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Callable

from lab.store import DEFAULT_PATH, Store, StoreError, SweepResult
from lab.sweep.context import SweepRun, environment


def check_process(process) -> tuple[int, int]:
    """``process`` as ``(index, count)``, or a ValueError naming what is wrong with it."""
    try:
        index, count = (int(v) for v in process)
    except (TypeError, ValueError):
        raise ValueError(f"process must be a pair (index, count) of integers, got {process!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process (index, count) needs count >= 1 and 0 <= index < count, got {process!r}")
    return index, count


def part_path(store: str | Path, index: int, count: int) -> Path:
    """The database process ``index`` of ``count`` writes its share of a sweep into."""
    store = Path(store)
    return store.with_name(f"{store.stem}.part{index}of{count}{store.suffix}")


def _done_sweep(path: Path, fingerprint: str) -> dict | None:
    """The latest finished sweep with ``fingerprint`` in the database at ``path`` (id, execution),
    or None while the file is missing, being created, or holds no finished such sweep."""
    if not path.exists():
        return None
    try:
        with Store(path) as db:
            found = db.find_sweep(fingerprint)
    except (StoreError, sqlite3.Error):   # another process is creating it: look again later
        return None
    return found if found is not None and found["status"] == "done" else None


def run_in_parts(run: SweepRun, store, index: int, count: int, rerun: bool, wait_seconds: float,
                 run_here: Callable[[SweepRun, Store, bool], SweepResult]) -> SweepResult:
    """Run this process's part of ``run`` with ``run_here`` (the engine's one-database
    loop), then merge (process 0) or wait for the merged sweep (the others)."""
    if isinstance(store, Store) or str(store) == ":memory:":
        raise ValueError(f"a sweep over {count} processes needs a database path on a filesystem every process "
                         f"can read, not {'an open Store' if isinstance(store, Store) else repr(':memory:')}")
    path, fingerprint = Path(DEFAULT_PATH if store is None else store), run.plan.fingerprint
    if not rerun and (found := _done_sweep(path, fingerprint)) is not None:
        with Store(path) as db:
            run.check_finished(found, db)
            return db.load(found["id"])
    with Store(part_path(path, index, count)) as part:
        run_here(run, part, rerun)
        part_id = part.find_sweep(fingerprint)["id"]
    deadline = time.monotonic() + wait_seconds
    if index != 0:   # process 0 merges; wait for a merged sweep that includes this part
        while True:
            found = _done_sweep(path, fingerprint)
            if found is not None and found["execution"].get("parts", {}).get(str(index)) == part_id:
                with Store(path) as db:
                    return db.load(found["id"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {index}: no merged sweep in {path} after {wait_seconds:g} s; "
                                   f"process 0 merges the parts once all {count} have finished")
            time.sleep(1.0)
    parts = {0: part_id}
    while len(parts) < count:
        for i in range(1, count):
            if i not in parts and (found := _done_sweep(part_path(path, i, count), fingerprint)) is not None:
                parts[i] = found["id"]
        if len(parts) < count:
            if time.monotonic() > deadline:
                missing = sorted(set(range(count)) - set(parts))
                raise TimeoutError(f"processes {missing} have not finished their parts of the sweep after "
                                   f"{wait_seconds:g} s (looked for {part_path(path, missing[0], count)})")
            time.sleep(1.0)
    return merge_parts(run, path, parts, count)


def merged_programs(executions: list, key: str = "programs") -> dict:
    """The programs (``key``: ``programs`` or ``identities``) the parts ran each group
    under; parts that ran a group under different programs (one resumed after an upgrade,
    another not) are refused."""
    merged: dict = {}
    for e in executions:
        for group, identity in e.get(key, {}).items():
            if merged.setdefault(group, identity) != identity:
                raise ValueError(f"the parts of the sweep ran static group {group} under different compiled programs "
                                 f"(code, data, jaxlib, XLA flags or device kind changed between them); rerun every "
                                 f"process with rerun=True")
    return merged


def merge_parts(run: SweepRun, path: Path, parts: dict, count: int) -> SweepResult:
    """Copy every process's share into one fresh sweep in ``path``."""
    plan = run.plan
    sources = [Store(part_path(path, i, count)) for i in range(count)]
    try:
        executions = [src.find_sweep(plan.fingerprint)["execution"] for src in sources]
        for i, (src, e) in enumerate(zip(sources, executions)):   # a part left by older code is not merged
            run.check_finished({"id": parts[i], "status": "done", "execution": e}, src)
        per_device = executions[0]["runs_per_device"]
        if any(e["runs_per_device"] != per_device for e in executions):
            raise ValueError(f"the parts of the sweep cut runs into batches differently ({[e['runs_per_device'] for e in executions]}); "
                             f"give SweepSpec(runs_per_device=...) so every process uses the same batches")
        with Store(path) as db:
            sweep_id = db.create_sweep(
                study=plan.study, fingerprint=plan.fingerprint, config=plan.config,
                execution={"runs_per_device": per_device, "chunk_steps": executions[0]["chunk_steps"],
                           "programs": merged_programs(executions),
                           "identities": merged_programs(executions, "identities"),
                           "devices": sum(e["devices"] for e in executions), "process_count": count,
                           "parts": {str(i): parts[i] for i in range(count)}},
                environment={**environment(run.devices), "process_count": count},
                metrics=sources[0].metric_names(parts[0]), runs=run.batch_rows(per_device))
            compile_seconds = run_seconds = 0.0
            for i, src in enumerate(sources):
                owned = [b for b in src.batches(parts[i]) if b % count == i]
                db.copy_batches(sweep_id, src, parts[i], owned)
                row = next(r for r in src.list_sweeps() if r["id"] == parts[i])
                compile_seconds += row["compile_seconds"]
                run_seconds += row["run_seconds"]
            db.set_status(sweep_id, "done", compile_seconds=compile_seconds, run_seconds=run_seconds)
            return db.load(sweep_id)
    finally:
        for src in sources:
            src.close()
