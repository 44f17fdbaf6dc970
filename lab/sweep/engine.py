"""The host loop: run a sweep group by group, chunk by chunk, committing as it goes.

Contract.  :func:`run_sweep` checks the spec, opens the results database and builds every
group's problem before any compute (bad input raises there), then for each static group
compiles one program (:mod:`lab.sweep.program`) and calls it chunk after chunk on batches
of ``runs_per_device * devices`` runs.  After every chunk it commits one transaction
(curves, progress, divergence, a checkpoint of unfinished batches, the parameters of
finished ones when ``keep_params``), advances the
progress bar and calls ``on_chunk``.  A batch stops early once all its runs diverged.
The devices are kept busy while the host commits: a call's next chunk, or the next call's
first chunk, is dispatched before the chunk just awaited is committed; results do not
depend on it.

A sweep is identified by its fingerprint (:func:`lab.sweep.plan_sweep`): a finished sweep
with the same fingerprint is returned from the database without running anything; an
unfinished one (interrupted, killed, failed) is resumed from its last committed chunk
with the batch plan it was started with, provided every static group it has begun would
run the same compiled program again (:func:`lab.sweep.program.program_identity`, recorded
per group: the lowered program, jaxlib, XLA flags and device kind); otherwise a
``ValueError`` says so and nothing is touched.  ``rerun=True`` starts a fresh copy.
"""
from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from lab import data as datalib
from lab.store import DEFAULT_PATH, BatchUpdate, Store, StoreError, SweepResult
from lab.sweep import program as prog
from lab.sweep.spec import Plan, Problem, SweepSpec, check_execution, plan_sweep


def run_sweep(spec: SweepSpec, *, store: Store | str | Path | None = None, progress: bool = True,
              rerun: bool = False, devices=None, on_chunk: Callable[[dict], None] | None = None,
              process: tuple[int, int] | None = None, wait_seconds: float = 3600.0) -> SweepResult:
    """Run (or resume, or fetch) the sweep ``spec`` and return its results.

    ``store`` is an open :class:`lab.store.Store`, a path, ``":memory:"``, or None for
    ``results/lab.sqlite``.  ``progress`` shows a tqdm bar on stderr (run-steps done,
    run-steps/s, ETA, diverged runs).  ``devices`` defaults to ``jax.local_devices()``;
    each computes a batch of runs at a time, with the same compiled code.  ``on_chunk(info)``
    is called after each commit with ``{"sweep_id", "group", "batches", "step", "diverged"}``.

    Several processes (e.g. one per host after ``jax.distributed.initialize()``):
    ``process = (index, count)``, by default ``(jax.process_index(), jax.process_count())``.
    With ``count > 1`` every process runs the batches ``b`` with ``b % count == index`` on
    its own devices and commits them to its part file ``<store>.part<index>of<count>``
    beside ``store`` (which must be a path every process can read); process 0 then waits up
    to ``wait_seconds`` for every part to finish, merges them into ``store`` and every
    process returns the whole sweep from it.  Interrupted processes resume their parts.

    Timing: each group's program is compiled ahead of time, once; compile and run seconds
    are added to the sweep's row.  Set ``jax.config.update("jax_compilation_cache_dir", ...)``
    to let a later process reuse compiled programs."""
    plan = plan_sweep(spec)
    check_execution(spec)
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices is empty; give at least one device")
    if any(d.process_index != jax.process_index() for d in devices):
        raise ValueError("run_sweep computes on this process's devices only; pass devices=jax.local_devices() "
                         "and let every process run its share (process=(index, count))")
    index, count = _check_process((jax.process_index(), jax.process_count()) if process is None else process)
    if count > 1:
        return _run_in_parts(spec, plan, store, index, count, devices, progress, rerun, on_chunk, wait_seconds)
    db = store if isinstance(store, Store) else Store(DEFAULT_PATH if store is None else store)
    try:
        return _run_here(spec, plan, db, devices, progress, rerun, on_chunk)
    finally:
        if not isinstance(store, Store):
            db.close()


def fetch_sweep(spec: SweepSpec, *, store: Store | str | Path | None = None) -> SweepResult:
    """The finished sweep ``spec`` read from ``store`` (as in :func:`run_sweep`), computing nothing.

    Raises LookupError when the database (a missing file counts as empty and is not
    created) holds no finished sweep of this spec."""
    plan = plan_sweep(spec)
    if not isinstance(store, Store) and str(store) != ":memory:" and not Path(DEFAULT_PATH if store is None else store).exists():
        raise LookupError(f"no results database at {store}, so no sweep of study {plan.study!r} with this config")
    db = store if isinstance(store, Store) else Store(DEFAULT_PATH if store is None else store)
    try:
        found = db.find_sweep(plan.fingerprint)
        if found is None or found["status"] != "done":
            state = "is not" if found is None else f"is {found['status']}, not finished,"
            raise LookupError(f"the sweep of study {plan.study!r} with this config {state} in {db.path}")
        return db.load(found["id"])
    finally:
        if not isinstance(store, Store):
            db.close()


def _run_here(spec, plan, db, devices, progress, rerun, on_chunk, share=None) -> SweepResult:
    """The sweep in ``db`` on ``devices``: fetched when done, else created or resumed and run
    (only the batches of ``share = (index, count)`` when given)."""
    problems = [_build_problem(spec, g) for g in plan.groups]
    metrics = _metric_names(spec, plan, problems)
    found = None if rerun else db.find_sweep(plan.fingerprint)
    if found is not None and found["status"] == "done":
        return db.load(found["id"])
    if found is None:
        per_device = _choose_runs_per_device(spec, plan, problems, devices[0])
        execution = {"runs_per_device": per_device, "chunk_steps": spec.chunk_steps, "devices": len(devices),
                     "programs": {}}
        if share is not None:
            execution["process"] = list(share)
        sweep_id = db.create_sweep(
            study=plan.study, fingerprint=plan.fingerprint, config=plan.config, execution=execution,
            environment=_environment(devices), metrics=metrics, runs=_batch_rows(plan, per_device))
    else:
        sweep_id, per_device = found["id"], found["execution"]["runs_per_device"]
        _check_resumable(spec, plan, problems, db, found, devices, share)
    _execute(spec, plan, problems, db, sweep_id, per_device, devices, progress, on_chunk, share)
    return db.load(sweep_id)


def use_cpu_cores(count: int | None = None) -> int | None:
    """Split the CPU into ``count`` XLA devices (default: the cores this process may use),
    so that a sweep on a CPU-only machine spreads its runs over every core.

    XLA runs one device's program on about one core at the engine's shapes (its small
    batched matmuls are not spread over threads), so a single CPU device leaves the other
    cores idle; with one device per core the batches of runs are spread across them.  Large
    single operations still use every core.  This must run before JAX computes anything; it
    returns the device count it set, or None when it could not: JAX's backends were
    already started, or ``XLA_FLAGS`` already chooses ``xla_force_host_platform_device_count``.
    ``runs_per_device`` does not follow the device count, and every device runs the same
    code, so the results do not depend on the count (see :mod:`lab.sweep`, Determinism).
    A group whose program calls a CPU linear-algebra kernel runs on one device (see
    :func:`lab.sweep.program.build_program`)."""
    if count is None:
        count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if int(count) < 1:
        raise ValueError(f"count must be a positive number of CPU devices, got {count!r}")
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    try:
        jax.config.update("jax_num_cpu_devices", int(count))
    except RuntimeError:   # backends already initialised: too late in this process
        return None
    return int(count)


# --------------------------------------------------------------------------- several processes


def _check_process(process) -> tuple[int, int]:
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


def _blocks(spec: SweepSpec) -> int:
    """Evaluation blocks per call of a group's program."""
    return max(1, min(spec.chunk_steps // spec.eval_every, spec.steps // spec.eval_every))


def _program_args(spec, plan, group, per_device) -> dict:
    """What :func:`lab.sweep.program.build_program` (and ``identity_of``) take for ``group``."""
    rpd = per_device[str(group.index)]
    return dict(steps=spec.steps, every=spec.eval_every, blocks=_blocks(spec), runs_per_dev=rpd,
                schedule_rows=_schedule_rows(plan, rpd), sharpness_iters=spec.sharpness_iters,
                sharpness_batch=spec.sharpness_batch)


def _check_resumable(spec, plan, problems, db, found, devices, share) -> None:
    """Refuse, before any compute, to continue a static group that has begun (a batch finished
    or checkpointed) under another compiled program than the one it would run now: its later
    steps would round differently, so the result would equal no uninterrupted run."""
    sweep_id, recorded = found["id"], found["execution"].get("programs")
    per_device = found["execution"]["runs_per_device"]
    batches, checkpointed = db.batches(sweep_id), db.checkpointed(sweep_id)
    for group, problem in zip(plan.groups, problems):
        mine = [b for b, v in batches.items() if v[0] == group.index]
        pending = [b for b in mine if not batches[b][2] and (share is None or b % share[1] == share[0])]
        if not pending or not any(batches[b][2] or b in checkpointed for b in mine):
            continue
        stored = None if recorded is None else recorded.get(str(group.index))
        if stored is not None and stored == prog.identity_of(problem, spec.study.make_optimizer, group.static,
                                                             plan.dynamic, device=devices[0],
                                                             **_program_args(spec, plan, group, per_device)):
            continue
        why = ("was begun before the engine recorded its compiled programs" if stored is None else
               "was begun under another compiled program than this code, jaxlib, XLA flags and device give now")
        raise ValueError(
            f"sweep {sweep_id} of study {plan.study!r}: static group {group.static} {why}; continuing it would "
            f"mix two programs whose float rounding differs. Start it afresh with rerun=True (the lab run "
            f"option --rerun); the unfinished sweep stays in the database")


def _record_program(db, sweep_id: int, group: int, identity: str) -> None:
    """Note the program a group runs under (a group that has begun was checked, before it
    resumed, to run under the one it began with)."""
    execution = db.execution(sweep_id)
    programs = execution.setdefault("programs", {})
    if programs.get(str(group)) != identity:
        programs[str(group)] = identity
        db.set_execution(sweep_id, execution)


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


def _run_in_parts(spec, plan, store, index, count, devices, progress, rerun, on_chunk, wait_seconds) -> SweepResult:
    if isinstance(store, Store) or str(store) == ":memory:":
        raise ValueError(f"a sweep over {count} processes needs a database path on a filesystem every process "
                         f"can read, not {'an open Store' if isinstance(store, Store) else repr(':memory:')}")
    path = Path(DEFAULT_PATH if store is None else store)
    if not rerun and (found := _done_sweep(path, plan.fingerprint)) is not None:
        with Store(path) as db:
            return db.load(found["id"])
    with Store(part_path(path, index, count)) as part:
        _run_here(spec, plan, part, devices, progress, rerun, on_chunk, share=(index, count))
        part_id = part.find_sweep(plan.fingerprint)["id"]
    deadline = time.monotonic() + wait_seconds
    if index != 0:   # process 0 merges; wait for a merged sweep that includes this part
        while True:
            found = _done_sweep(path, plan.fingerprint)
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
            if i not in parts and (found := _done_sweep(part_path(path, i, count), plan.fingerprint)) is not None:
                parts[i] = found["id"]
        if len(parts) < count:
            if time.monotonic() > deadline:
                missing = sorted(set(range(count)) - set(parts))
                raise TimeoutError(f"processes {missing} have not finished their parts of the sweep after "
                                   f"{wait_seconds:g} s (looked for {part_path(path, missing[0], count)})")
            time.sleep(1.0)
    return _merge_parts(plan, path, parts, count, devices)


def _merged_programs(executions: list) -> dict:
    """The programs the parts ran each group under; parts that ran a group under different
    programs (one resumed after an upgrade, another not) are refused."""
    merged: dict = {}
    for e in executions:
        for group, identity in e.get("programs", {}).items():
            if merged.setdefault(group, identity) != identity:
                raise ValueError(f"the parts of the sweep ran static group {group} under different compiled programs "
                                 f"(code, jaxlib, XLA flags or device kind changed between them); rerun every "
                                 f"process with rerun=True")
    return merged


def _merge_parts(plan, path: Path, parts: dict, count: int, devices) -> SweepResult:
    """Copy every process's share into one fresh sweep in ``path``."""
    sources = [Store(part_path(path, i, count)) for i in range(count)]
    try:
        executions = [src.find_sweep(plan.fingerprint)["execution"] for src in sources]
        per_device = executions[0]["runs_per_device"]
        if any(e["runs_per_device"] != per_device for e in executions):
            raise ValueError(f"the parts of the sweep cut runs into batches differently ({[e['runs_per_device'] for e in executions]}); "
                             f"give SweepSpec(runs_per_device=...) so every process uses the same batches")
        with Store(path) as db:
            sweep_id = db.create_sweep(
                study=plan.study, fingerprint=plan.fingerprint, config=plan.config,
                execution={"runs_per_device": per_device, "chunk_steps": executions[0]["chunk_steps"],
                           "programs": _merged_programs(executions),
                           "devices": sum(e["devices"] for e in executions), "process_count": count,
                           "parts": {str(i): parts[i] for i in range(count)}},
                environment={**_environment(devices), "process_count": count}, metrics=sources[0].metric_names(parts[0]),
                runs=_batch_rows(plan, per_device))
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


# --------------------------------------------------------------------------- before compute


def _build_problem(spec: SweepSpec, group) -> Problem:
    problem = spec.study.make_problem(dict(group.static))
    if not isinstance(problem, Problem):
        raise TypeError(f"study {spec.study.name!r}: make_problem must return a lab.sweep.Problem, "
                        f"got {type(problem).__name__}")
    where = f"study {spec.study.name!r}, static {group.static}"
    if not isinstance(problem.loss_config, bool):
        raise ValueError(f"{where}: Problem.loss_config must be True or False, got {problem.loss_config!r}")
    datalib.check_dataset(problem.x, problem.y, name=f"{where}: training data")
    if (problem.eval_x is None) != (problem.eval_y is None):
        raise ValueError(f"{where}: give both eval_x and eval_y, or neither")
    if problem.eval_x is not None:
        datalib.check_dataset(problem.eval_x, problem.eval_y, name=f"{where}: evaluation data")
    n, batch = int(np.shape(problem.x)[0]), int(group.static["batch_size"])
    if batch > n:
        raise ValueError(f"{where}: batch_size={batch} is larger than the training set of {n} examples")
    return problem


def _metric_names(spec: SweepSpec, plan: Plan, problems) -> list:
    names = None
    for group, problem in zip(plan.groups, problems):
        init, _, evaluate = prog._program_functions(problem, spec.study.make_optimizer, group.static, plan.dynamic,
                                                    steps=1, every=1, blocks=1)
        x, y, ex, ey = (jax.ShapeDtypeStruct(np.shape(a), a.dtype) for a in prog.problem_data(problem))
        hp = jax.ShapeDtypeStruct((len(plan.dynamic),), jax.numpy.result_type(float))
        state = jax.eval_shape(init, jax.ShapeDtypeStruct((), np.uint32), hp, x, y)
        evals = jax.eval_shape(evaluate, state.params, hp, ex, ey)
        group_names = (list(prog.TRAIN_METRICS) + [f"eval_{k}" for k in sorted(evals)]
                       + (["sharpness"] if spec.sharpness_iters else []))
        if names is not None and group_names != names:
            raise ValueError(f"every static group must report the same metrics; group {group.static} reports "
                             f"{group_names}, an earlier one {names}")
        names = group_names
    return names


def _choose_runs_per_device(spec: SweepSpec, plan: Plan, problems, device) -> dict:
    """Runs per device for each group (a JSON object keyed by group index)."""
    out = {}
    for group, problem in zip(plan.groups, problems):
        if spec.runs_per_device is not None:
            out[str(group.index)] = int(spec.runs_per_device)
        else:
            size = prog.estimate_run_bytes(problem, spec.study.make_optimizer, group.static, plan.dynamic)
            out[str(group.index)] = prog.runs_per_device(size, device)
    return out


def _batch_rows(plan: Plan, per_device: dict):
    """Cut each group's runs (canonical order) into batches of ``runs_per_device``."""
    batch = 0
    for group in plan.groups:
        size = per_device[str(group.index)]
        for start in range(0, len(group.runs), size):
            for run in group.runs[start:start + size]:
                yield (run, group.index, batch, plan.run_config(run), int(plan.seeds[run]))
            batch += 1


def _git_hash() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _environment(devices) -> dict:
    import jaxlib
    import optax

    import lab
    return {"code_version": lab.__version__, "git_hash": _git_hash(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "optax": optax.__version__, "device_kind": devices[0].device_kind,
            "platform": devices[0].platform, "device_count": len(devices), "process_count": jax.process_count(),
            "python": platform.python_version(), "numpy": np.__version__, **prog.environment_flags()}


# --------------------------------------------------------------------------- compute


def _execute(spec, plan, problems, db, sweep_id, per_device, devices, progress, on_chunk, share=None) -> None:
    steps = spec.steps
    batches = db.batches(sweep_id)
    pending = {b: v for b, v in batches.items() if not v[2] and (share is None or b % share[1] == share[0])}
    starts = {b: (db.checkpoint(sweep_id, b) or (0, None)) for b in pending}
    total = sum(len(runs) * (steps - starts[b][0]) for b, (_, runs, _) in pending.items())
    bar = _progress_bar(total, len(plan.seeds), progress)
    diverged_total = 0
    compile_seconds = run_seconds = 0.0
    status = "failed"
    try:
        for group, problem in zip(plan.groups, problems):
            mine = sorted((starts[b][0], b) for b, v in pending.items() if v[0] == group.index)
            if not mine:
                continue
            # no more devices than batches: a device without a batch would compile for nothing
            used = devices[:min(len(devices), len(mine))]
            program = prog.build_program(problem, spec.study.make_optimizer, group.static, plan.dynamic,
                                         devices=used, **_program_args(spec, plan, group, per_device))
            compile_seconds += program.compile_seconds
            _check_checkpoints(program, [(b, starts[b][1]) for _, b in mine])
            _record_program(db, sweep_id, group.index, program.identity)
            data = [jax.device_put(prog.problem_data(problem), d) for d in program.devices]
            windows = _Windows(int(np.shape(problem.x)[0]), *program.schedule_shape[1:])
            t = time.perf_counter()
            # Each call's first chunk is dispatched before the call ahead of it is awaited
            # and committed, so the devices compute while the host writes the database.
            ahead = None
            for call in _calls(mine, program.device_count):
                run = _CallRun(spec, plan, program, data, windows, group.index,
                               [(b, pending[b][1], starts[b]) for b in call], per_device[str(group.index)])
                run.dispatch()
                if ahead is not None:
                    diverged_total += ahead.run_to_end(db, sweep_id, bar, diverged_total, on_chunk)
                ahead = run
            diverged_total += ahead.run_to_end(db, sweep_id, bar, diverged_total, on_chunk)
            ahead = run = None   # its device buffers go before the next group compiles
            run_seconds += time.perf_counter() - t
        status = "done"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        bar.close()
        db.set_status(sweep_id, status, compile_seconds=compile_seconds, run_seconds=run_seconds)


def _schedule_rows(plan: Plan, runs: int) -> int:
    """Rows of a batch's schedule: room for every distinct seed a batch can hold, rounded
    up to a power of two (at least 4), so sweeps with a few more or fewer seeds share a program."""
    seeds = len(plan.axes[-1][1])
    return min(runs, max(4, 1 << (seeds - 1).bit_length()))


def _check_checkpoints(program, saved: list) -> None:
    """Refuse, before a group computes anything, a checkpoint ``(batch, leaves or None)``
    whose leaves do not fit the program's state."""
    shapes = [s.shape[1:] for s in jax.tree.leaves(program.state_shapes)]
    for batch, leaves in saved:
        if leaves is not None and [a.shape[1:] for a in leaves] != shapes:
            raise ValueError(f"the checkpoint of batch {batch} does not fit this program's state (did the "
                             f"study's code change since the sweep started?); start afresh with rerun=True")


def _calls(mine: list, n_devices: int) -> list:
    """Group a group's pending batches into calls of up to one batch per device, each call's
    batches starting at the same step."""
    calls, current = [], []
    for start, batch in mine:
        if current and (len(current) == n_devices or current[0][0] != start):
            calls.append([b for _, b in current])
            current = []
        current.append((start, batch))
    if current:
        calls.append([b for _, b in current])
    return calls


class _Windows:
    """Mini-batch index windows ``(length, batch_size)`` by (seed, start step), drawn once
    for all the batches of a group that share a seed; kept while they fit ``max_bytes``."""

    def __init__(self, n: int, length: int, batch_size: int, max_bytes: int = 64 << 20):
        self.n, self.length, self.batch_size = n, length, batch_size
        self.room = max_bytes // (4 * length * batch_size)
        self.kept = {}

    def __call__(self, seed: int, start: int) -> np.ndarray:
        key = (int(seed), int(start))
        found = self.kept.get(key)
        if found is None:
            found = prog.batch_schedule(key[0], self.n, self.batch_size, key[1], self.length)
            found.setflags(write=False)   # shared by every batch of the seed
            if len(self.kept) < self.room:
                self.kept[key] = found
        return found


class _CallRun:
    """The batches in ``members`` (``(batch, runs, (step, checkpoint))``), batch ``k`` on
    ``program.devices[k]``, trained chunk by chunk to the end: :meth:`dispatch` sends every
    device its next chunk without waiting, :meth:`run_to_end` awaits a chunk, copies the
    checkpoint to the host, sends the next chunk and then commits, until the batches finish
    (or all their runs diverged)."""

    def __init__(self, spec, plan, program, data, windows, group, members, per_dev):
        self.spec, self.plan, self.program, self.data, self.windows = spec, plan, program, data, windows
        self.group, self.members = group, members
        leaves_shape, treedef = jax.tree.flatten(program.state_shapes)
        float_dtype = jax.numpy.result_type(float)

        def pad(a, n):  # repeat the first row to fill a batch of per_dev
            return np.concatenate([a, np.repeat(a[:1], per_dev - n, axis=0)]) if n < per_dev else a

        self.lanes = []   # per batch: its device's arguments, and the distinct seeds of its schedule rows
        for k, (batch, runs, (_, saved)) in enumerate(members):
            device = program.devices[k]
            seeds = pad(plan.seeds[runs], len(runs))
            distinct, slots = np.unique(seeds, return_inverse=True)   # each run's row of the schedule
            leaves = [pad(np.zeros((len(runs),) + s.shape[1:], s.dtype) if saved is None else saved[i], len(runs))
                      for i, s in enumerate(leaves_shape)]
            self.lanes.append({"state": jax.tree.unflatten(treedef, jax.device_put(leaves, device)),
                               "args": jax.device_put((pad(plan.hparams[runs], len(runs)).astype(float_dtype),
                                                       seeds, slots.astype(np.int32)), device),
                               "factor": jax.device_put(np.asarray(spec.divergence_factor, float_dtype), device),
                               "distinct": distinct, "device": device})
        self.t = members[0][2][0]
        self.outputs = None

    def dispatch(self) -> None:
        sched_rows, length, batch_size = self.program.schedule_shape
        windows = {seed: self.windows(seed, self.t) for lane in self.lanes for seed in lane["distinct"]}
        self.outputs = []
        for k, lane in enumerate(self.lanes):
            schedule = np.zeros((sched_rows, length, batch_size), np.int32)
            for row, seed in enumerate(lane["distinct"]):
                schedule[row] = windows[seed]
            clock = jax.device_put((schedule, np.asarray(self.t, np.int32), np.asarray(self.t == 0)), lane["device"])
            self.outputs.append(self.program.calls[k](lane["state"], *lane["args"], clock[0], self.data[k],
                                                      clock[1], clock[2], lane["factor"]))
            lane["state"] = self.outputs[-1][0]

    def run_to_end(self, db, sweep_id, bar, diverged_before, on_chunk) -> int:
        """Await the dispatched chunk, commit it, and go on until the batches are done;
        returns how many of their runs diverged (``diverged_before``: the sweep's count so far)."""
        steps, every, members = self.spec.steps, self.spec.eval_every, self.members
        real = sum(len(runs) for _, runs, _ in members)
        while True:
            outputs, t = self.outputs, self.t
            blocks = next(iter(outputs[0][1].values())).shape[1]
            done = min(t + blocks * every, steps)
            metrics = [{k: np.asarray(v, dtype=np.float64) for k, v in out[1].items()} for out in outputs]
            diverged = [np.array(out[0].diverged_step)[:len(runs)] for out, (_, runs, _) in zip(outputs, members)]
            finished = done >= steps or all((d >= 0).all() for d in diverged)
            updates = []
            for k, (batch, runs, _) in enumerate(members):
                checkpoint = None if finished else _host_rows(outputs[k][0], len(runs))
                params = _host_rows(outputs[k][0].params, len(runs)) if finished and self.spec.keep_params else None
                updates.append(BatchUpdate(
                    batch_index=batch, run_indices=runs, first_eval=t // every,
                    metrics={name: values[:len(runs), :(done - t) // every] for name, values in metrics[k].items()},
                    steps_done=done, diverged_step=diverged[k], finished=finished, checkpoint=checkpoint,
                    params=params))
            if not finished:   # the checkpoint is on the host: the next chunk runs while this one is committed
                self.t = done
                self.dispatch()
            db.commit_chunk(sweep_id, updates, every)
            diverged_now = int(sum((u.diverged_step >= 0).sum() for u in updates))
            bar.update(real * ((steps if finished else done) - t))
            bar.set_postfix(runs=len(self.plan.seeds), diverged=diverged_before + diverged_now, refresh=False)
            if on_chunk is not None:
                on_chunk({"sweep_id": sweep_id, "group": self.group, "batches": [m[0] for m in members],
                          "step": done, "diverged": diverged_before + diverged_now})
            if finished:
                return diverged_now


def _host_rows(tree, n: int) -> list:
    """The first ``n`` rows (the real runs) of every leaf of ``tree``, as owned host arrays:
    a CPU device's array read to the host is a view of its buffer, which the next chunk,
    dispatched before the commit, takes over (donates)."""
    return [np.array(leaf[:n]) for leaf in jax.device_get(jax.tree.leaves(tree))]


def _progress_bar(total: int, runs: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, unit=" run-steps", unit_scale=True, disable=not enabled, dynamic_ncols=True,
                desc=f"sweep of {runs} runs")
