"""The host loop: run a sweep group by group, chunk by chunk, committing as it goes.

Contract.  :func:`run_sweep` checks the spec, opens the results database and builds every
group's problem before any compute (bad input raises there; :class:`lab.sweep.context.SweepRun`
is the record of all that), lowers each static group's program once, then for each group
compiles it (:mod:`lab.sweep.program`) and calls it chunk after chunk on batches of
``runs_per_device * devices`` runs.  After every chunk it commits one transaction
(curves, progress, divergence, a checkpoint of unfinished batches, the parameters of
finished ones when ``keep_params``), advances the progress bar and calls ``on_chunk``.  A
batch stops early once all its runs diverged.  The devices are kept busy while the host
commits: a call's next chunk, or the next call's first chunk, is dispatched before the
chunk just awaited is committed; results do not depend on it.

A sweep is found by its fingerprint (:func:`lab.sweep.plan_sweep`, the spec's config) and
checked against what it computed: each static group records the identity of its program
(:func:`lab.sweep.program.identity_record`: the lowered program, the data, jaxlib, XLA
flags, device kind).  A finished sweep is returned from the database without running
anything only while every group would compute the same program on the same data;
otherwise (new code, new data behind an unchanged config) a ``ValueError`` names what
changed instead of serving stale numbers.  An unfinished one (interrupted, killed, failed)
is resumed from its last committed chunk with the batch plan it was started with,
provided every group it has begun would run under the same identity; otherwise a
``ValueError`` says so.  Nothing is touched by either refusal; ``rerun=True`` starts a
fresh copy.  :func:`fetch_sweep` is the same lookup without compute.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from lab.store import DEFAULT_PATH, BatchUpdate, Store, SweepResult
from lab.sweep import program as prog
from lab.sweep.context import SweepRun, environment
from lab.sweep.parts import check_process, part_path, run_in_parts  # noqa: F401 (part_path: public here too)
from lab.sweep.runs import batch_schedule
from lab.sweep.spec import SweepSpec


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
    process returns the whole sweep from it (:mod:`lab.sweep.parts`).  Interrupted
    processes resume their parts.

    Timing: each group's program is compiled ahead of time, once; compile and run seconds
    are added to the sweep's row.  Set ``jax.config.update("jax_compilation_cache_dir", ...)``
    to let a later process reuse compiled programs."""
    index, count = check_process((jax.process_index(), jax.process_count()) if process is None else process)
    run = SweepRun.build(spec, devices, progress=progress, on_chunk=on_chunk,
                         share=(index, count) if count > 1 else None)
    if count > 1:
        return run_in_parts(run, store, index, count, rerun, wait_seconds, _run_here)
    db = store if isinstance(store, Store) else Store(DEFAULT_PATH if store is None else store)
    try:
        return _run_here(run, db, rerun)
    finally:
        if not isinstance(store, Store):
            db.close()


def check_sweep(spec: SweepSpec, devices=None) -> None:
    """Every check :func:`run_sweep` makes before compute (the spec, the execution options,
    each static group's problem and data), computing and writing nothing: a study plans
    all its sweeps with it before running the first."""
    SweepRun.build(spec, devices)


def fetch_sweep(spec: SweepSpec, *, store: Store | str | Path | None = None, devices=None) -> SweepResult:
    """The finished sweep ``spec`` read from ``store`` (as in :func:`run_sweep`), computing
    nothing: its groups are lowered, not compiled, to check that the stored numbers are
    what this code and data would compute (a ``ValueError`` names what changed).

    Raises LookupError when the database (a missing file counts as empty and is not
    created) holds no finished sweep of this spec."""
    run = SweepRun.build(spec, devices)
    path = DEFAULT_PATH if store is None else store
    if not isinstance(store, Store) and str(path) != ":memory:" and not Path(path).exists():
        raise LookupError(f"no results database at {path}, so no sweep of study {run.plan.study!r} with this config")
    db = store if isinstance(store, Store) else Store(path, readonly=str(path) != ":memory:")
    try:
        found = db.find_sweep(run.plan.fingerprint)
        if found is None or found["status"] != "done":
            state = "is not" if found is None else f"is {found['status']}, not finished,"
            raise LookupError(f"the sweep of study {run.plan.study!r} with this config {state} in {db.path}")
        run.check_finished(found, db)
        return db.load(found["id"])
    finally:
        if not isinstance(store, Store):
            db.close()


def _run_here(run: SweepRun, db: Store, rerun: bool) -> SweepResult:
    """The sweep in ``db``: fetched when done (and still what the code computes), else
    created or resumed and run (only this process's batches of a shared sweep)."""
    plan = run.plan
    found = None if rerun else db.find_sweep(plan.fingerprint)
    if found is not None and found["status"] == "done":
        run.check_finished(found, db)
        return db.load(found["id"])
    if found is None:
        per_device = run.choose_runs_per_device()
        execution = {"runs_per_device": per_device, "chunk_steps": run.spec.chunk_steps, "devices": len(run.devices),
                     "programs": {}, "identities": {}}
        if run.share is not None:
            execution["process"] = list(run.share)
        sweep_id = db.create_sweep(   # SweepBusy if another process made it since find_sweep
            study=plan.study, fingerprint=plan.fingerprint, config=plan.config, execution=execution,
            environment=environment(run.devices), metrics=run.metric_names(per_device),
            runs=run.batch_rows(per_device), claim=True, unless=-1 if rerun else None)
    else:
        sweep_id, per_device = found["id"], found["execution"]["runs_per_device"]
        db.claim(sweep_id)               # SweepBusy while another live process computes it
    try:
        if found is not None:
            run.metric_names(per_device)     # the groups must still agree
            run.check_resumable(db, found)
        _execute(run, db, sweep_id, per_device)
    except BaseException as first:
        _quietly(first, "giving up the claim on the sweep", db.release, sweep_id)
        raise
    db.release(sweep_id)
    return db.load(sweep_id)


def _quietly(first: BaseException, doing: str, call, *args, **kwargs) -> None:
    """``call(*args, **kwargs)`` while ``first`` is on its way up: a failure of it is added to
    ``first`` as a note instead of replacing it."""
    try:
        call(*args, **kwargs)
    except Exception as err:  # noqa: BLE001 -- the first error is the one to report
        first.add_note(f"also, {doing} failed: {err}")


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



# --------------------------------------------------------------------------- compute


def _execute(run: SweepRun, db: Store, sweep_id: int, per_device: dict) -> None:
    steps = run.spec.steps
    batches = db.batches(sweep_id)
    pending = {b: v for b, v in batches.items() if not v[2] and run.owns(b)}
    starts = {b: (db.checkpoint(sweep_id, b) or (0, None)) for b in pending}
    total = sum(len(runs) * (steps - starts[b][0]) for b, (_, runs, _) in pending.items())
    bar = _progress_bar(total, len(run.plan.seeds), run.progress)
    diverged_total = 0
    compile_seconds = run_seconds = 0.0
    try:
        for group, problem in run.groups:
            mine = sorted((starts[b][0], b) for b, v in pending.items() if v[0] == group.index)
            if not mine:
                continue
            # no more devices than batches: a device without a batch would compile for nothing
            lowering = run.lowering(group, per_device)
            program = prog.build_program(lowering, devices=run.devices[:min(len(run.devices), len(mine))])
            compile_seconds += program.compile_seconds
            _check_checkpoints(program, [(b, starts[b][1]) for _, b in mine])
            _record_program(db, sweep_id, group.index, program.identity,
                            dict(lowering.identity, blocks=run.program_args(group, per_device)["blocks"]))
            run.release(group)
            data = [jax.device_put(prog.problem_data(problem), d) for d in program.devices]
            windows = _Windows(int(np.shape(problem.x)[0]), *program.schedule_shape[1:])
            t = time.perf_counter()
            # Each call's first chunk is dispatched before the call ahead of it is awaited
            # and committed, so the devices compute while the host writes the database.
            ahead = None
            for call in _calls(mine, program.device_count):
                call_run = _CallRun(run, program, data, windows, group.index,
                                    [(b, pending[b][1], starts[b]) for b in call], per_device[str(group.index)])
                call_run.dispatch()
                if ahead is not None:
                    diverged_total += ahead.run_to_end(db, sweep_id, bar, diverged_total)
                ahead = call_run
            diverged_total += ahead.run_to_end(db, sweep_id, bar, diverged_total)
            ahead = call_run = None   # its device buffers go before the next group compiles
            run_seconds += time.perf_counter() - t
    except BaseException as first:
        bar.close()
        status = "interrupted" if isinstance(first, KeyboardInterrupt) else "failed"
        _quietly(first, f"recording the sweep's status as {status!r}", db.set_status, sweep_id, status,
                 compile_seconds=compile_seconds, run_seconds=run_seconds)
        raise
    bar.close()
    db.set_status(sweep_id, "done", compile_seconds=compile_seconds, run_seconds=run_seconds)


def _record_program(db: Store, sweep_id: int, group: int, identity: str, record: dict) -> None:
    """Note the program a group runs under, as one hash and part by part with the blocks per
    call it was lowered with (a group that has begun was checked, before it resumed, to run
    under the one it began with)."""
    execution = db.execution(sweep_id)
    programs, identities = execution.setdefault("programs", {}), execution.setdefault("identities", {})
    if programs.get(str(group)) != identity or identities.get(str(group)) != record:
        programs[str(group)], identities[str(group)] = identity, record
        db.set_execution(sweep_id, execution)


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
            found = batch_schedule(key[0], self.n, self.batch_size, key[1], self.length)
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

    def __init__(self, run: SweepRun, program, data, windows, group, members, per_dev):
        spec, plan = run.spec, run.plan
        self.spec, self.plan, self.on_chunk = spec, plan, run.on_chunk
        self.program, self.data, self.windows = program, data, windows
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

    def run_to_end(self, db, sweep_id, bar, diverged_before) -> int:
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
            if self.on_chunk is not None:
                self.on_chunk({"sweep_id": sweep_id, "group": self.group, "batches": [m[0] for m in members],
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
