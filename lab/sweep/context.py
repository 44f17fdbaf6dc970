"""One sweep being run: the record every stage of the engine reads, and what a stored sweep may be used for.

Contract.  :meth:`SweepRun.build` checks a spec and builds, before any compute, what the
engine needs to run or fetch it: the plan, the devices, the host-side options (progress
bar, ``on_chunk``, the share of a multi-process sweep) and one checked
:class:`lab.sweep.Problem` per static group.  :meth:`SweepRun.lowering` traces and lowers a
group's program once per (runs per device, platform): the one lowering that gives the
metric names, the identity (:func:`lab.sweep.program.identity_record`) and, compiled, the
program.

What a stored sweep may be used for is decided here, from the identities recorded per
static group in its ``execution``:

* a finished sweep is served again only while every group would compute the same program
  on the same data (:meth:`SweepRun.check_finished`): change the model, the loss, the
  optimizer or the data and the stored numbers are refused as stale, with what changed
  named, instead of being returned;
* an unfinished one resumes only while every group it has begun would run under the same
  identity, jaxlib, XLA flags and device kind included (:meth:`SweepRun.check_resumable`).

Either refusal is a ``ValueError`` raised before anything is computed or written;
``rerun=True`` starts a fresh copy and the stored sweep stays in the database.
"""
from __future__ import annotations

import dataclasses
import platform as platform_module
import subprocess
from pathlib import Path
from typing import Callable

import jax
import numpy as np

from lab import data as datalib
from lab.sweep import program as prog
from lab.sweep.runs import estimate_run_bytes, runs_per_device
from lab.sweep.spec import Plan, Problem, SweepSpec, check_execution, plan_sweep

# How each part of an identity record is named when it differs.
_WHAT = {"program": "the lowered program (the study's model, loss, optimizer, initialisation or shapes)",
         "data": "the training or evaluation data", "jaxlib": "jaxlib", "xla_flags": "XLA_FLAGS",
         "device": "the device kind"}


@dataclasses.dataclass
class SweepRun:
    """A checked spec and what running or fetching it needs (see the module docstring)."""
    spec: SweepSpec
    plan: Plan
    devices: list
    problems: list                          # one Problem per static group, in plan order
    progress: bool = False
    on_chunk: Callable[[dict], None] | None = None
    share: tuple | None = None              # (index, count): this process's batches only
    _lowered: dict = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, spec: SweepSpec, devices=None, **options) -> "SweepRun":
        plan = plan_sweep(spec)
        check_execution(spec)
        devices = list(jax.local_devices() if devices is None else devices)
        if not devices:
            raise ValueError("devices is empty; give at least one device")
        if any(d.process_index != jax.process_index() for d in devices):
            raise ValueError("run_sweep computes on this process's devices only; pass devices=jax.local_devices() "
                             "and let every process run its share (process=(index, count))")
        return cls(spec, plan, devices, [build_problem(spec, g) for g in plan.groups], **options)

    @property
    def groups(self):
        """``(group, problem)`` for every static group."""
        return zip(self.plan.groups, self.problems)

    def owns(self, batch: int) -> bool:
        """Whether this process computes ``batch`` (always, unless the sweep is shared)."""
        return self.share is None or batch % self.share[1] == self.share[0]

    # ---------------------------------------------------------------- programs

    def program_args(self, group, per_device: dict, chunk_steps: int | None = None) -> dict:
        """The shape arguments of ``group``'s program at ``per_device`` runs per device and
        ``chunk_steps`` steps per call (default the spec's)."""
        spec, rpd = self.spec, per_device[str(group.index)]
        return dict(steps=spec.steps, every=spec.eval_every, blocks=blocks(spec, chunk_steps), runs_per_dev=rpd,
                    schedule_rows=schedule_rows(self.plan, rpd), sharpness_iters=spec.sharpness_iters,
                    sharpness_batch=spec.sharpness_batch)

    def lowering(self, group, per_device: dict, platform: str | None = None,
                 chunk_steps: int | None = None) -> prog.Lowering:
        """``group``'s program lowered for the first device (on ``platform``'s form of the
        divergence freeze, default the device's own), made once per run (until
        :meth:`release`)."""
        args = self.program_args(group, per_device, chunk_steps)
        key = (group.index, args["runs_per_dev"], args["blocks"], platform)
        if key not in self._lowered:
            self._lowered[key] = prog.lower_group(self.problems[group.index], self.spec.study.make_optimizer,
                                                  group.static, self.plan.dynamic, device=self.devices[0],
                                                  platform=platform, **args)
        return self._lowered[key]

    def release(self, group) -> None:
        """Drop ``group``'s lowerings (its program is compiled; the modules are large)."""
        for key in [k for k in self._lowered if k[0] == group.index]:
            del self._lowered[key]

    def choose_runs_per_device(self) -> dict:
        """Runs per device for each group (a JSON object keyed by group index)."""
        out = {}
        for group, problem in self.groups:
            if self.spec.runs_per_device is not None:
                out[str(group.index)] = int(self.spec.runs_per_device)
            else:
                size = estimate_run_bytes(problem, self.spec.study.make_optimizer, group.static, self.plan.dynamic)
                out[str(group.index)] = runs_per_device(size, self.devices[0])
        return out

    def metric_names(self, per_device: dict) -> list:
        """The metrics every group records (they must agree), from the groups' lowerings."""
        names = None
        for group, _ in self.groups:
            group_names = list(self.lowering(group, per_device).metrics)
            if names is not None and group_names != names:
                raise ValueError(f"every static group must report the same metrics; group {group.static} reports "
                                 f"{group_names}, an earlier one {names}")
            names = group_names
        return names

    def batch_rows(self, per_device: dict):
        """Cut each group's runs (canonical order) into batches of ``runs_per_device``:
        ``(run, group, batch, knobs, seed)`` rows for :meth:`lab.store.Store.create_sweep`."""
        batch, plan = 0, self.plan
        for group in plan.groups:
            size = per_device[str(group.index)]
            for start in range(0, len(group.runs), size):
                for run in group.runs[start:start + size]:
                    yield (run, group.index, batch, plan.run_config(run), int(plan.seeds[run]))
                batch += 1

    # ---------------------------------------------------------------- stored sweeps

    def check_finished(self, found: dict, db=None) -> None:
        """Refuse the finished sweep ``found`` (``Store.find_sweep``) unless each group's
        program and data are the ones it was computed with (on the platform it ran on, in
        the chunks it ran in: neither changes a number, but both change the program).  In
        one process's part of a shared sweep (``db`` given) only the groups it computed."""
        execution = found["execution"]
        computed = None
        if "process" in execution and db is not None:
            index, count = execution["process"]
            computed = {v[0] for b, v in db.batches(found["id"]).items() if b % count == index}
        for group, _ in self.groups:
            if computed is None or group.index in computed:
                self._check_computed(found, group, finished=True)

    def _check_computed(self, found: dict, group, finished: bool) -> None:
        """Refuse ``found`` unless ``group``'s stored numbers are what its program and data
        would compute now (lowered as it was run: the chunk's blocks, the platform)."""
        execution = found["execution"]
        stored = (execution.get("identities") or {}).get(str(group.index))
        if stored is None:
            self._refuse(found, group, "was stored before the lab recorded what each sweep computed (its "
                                       "program and data), so it cannot be told apart from a stale result",
                         finished=finished)
        every = self.spec.eval_every
        chunk_steps = stored["blocks"] * every if "blocks" in stored else execution["chunk_steps"]
        platform = stored["device"].split()[0]
        lowering = self.lowering(group, execution["runs_per_device"], platform, chunk_steps)
        changed = [k for k in ("program", "data") if stored.get(k) != lowering.identity[k]]
        if changed:
            why = f"would now compute something else: {_changes(changed, stored, lowering.identity)}"
            if platform != self.devices[0].platform:
                why += (f" (it was computed on {stored['device']!r} and is lowered here for "
                        f"{self.devices[0].platform!r}, whose programs can differ; Store.load(id) reads it as stored)")
            self._refuse(found, group, why, finished=finished)

    def check_resumable(self, db, found: dict) -> None:
        """Refuse, before any compute, to continue a static group that has begun (a batch
        finished or checkpointed) under another identity than the one it would run under
        now: its later steps would round differently (or compute something else), so the
        result would equal no uninterrupted run.  A group already done is refused, as a
        finished sweep is, when its program or data would now differ."""
        execution = found["execution"]
        recorded, legacy = execution.get("identities") or {}, execution.get("programs")
        per_device = execution["runs_per_device"]
        batches, checkpointed = db.batches(found["id"]), db.checkpointed(found["id"])
        for group, _ in self.groups:
            mine = [b for b, v in batches.items() if v[0] == group.index]
            pending = [b for b in mine if not batches[b][2] and self.owns(b)]
            if not pending and str(group.index) in recorded and any(batches[b][2] and self.owns(b) for b in mine):
                # done here already: its numbers join the result only if still what the code computes
                self._check_computed(found, group, finished=False)
                continue
            if not pending or not any(batches[b][2] or b in checkpointed for b in mine):
                continue
            now = self.lowering(group, per_device)
            stored = recorded.get(str(group.index))
            if stored is not None:
                changed = [k for k in _WHAT if stored.get(k) != now.identity[k]]
                if changed:
                    self._refuse(found, group, f"was begun under another compiled program than it would run now "
                                               f"({_changes(changed, stored, now.identity)})")
                continue
            old = None if legacy is None else legacy.get(str(group.index))
            if old is None:
                self._refuse(found, group, "was begun before the engine recorded its compiled programs")
            if old != prog.program_identity(now.text, self.devices[0]):
                self._refuse(found, group, "was begun under another compiled program than this code, jaxlib, "
                                           "XLA flags and device give now")

    def _refuse(self, found: dict, group, why: str, finished: bool = False):
        what = ("serving it would return stale numbers" if finished else
                "continuing it would mix two programs whose float rounding differs")
        raise ValueError(
            f"sweep {found['id']} of study {self.plan.study!r} ({'finished' if finished else found['status']}): "
            f"static group {group.static} {why}; {what}. Start it afresh with rerun=True (the lab run option "
            f"--rerun); the stored sweep stays in the database")


def _changes(changed: list, stored: dict, now: dict) -> str:
    """What differs between two identity records, in words."""
    parts = []
    for k in changed:
        if k in ("program", "data"):
            parts.append(f"{_WHAT[k]} differ" if k == "data" else f"{_WHAT[k]} differs")
        else:
            parts.append(f"{_WHAT[k]} {stored.get(k)!r} -> {now[k]!r}")
    if "program" in changed and "jaxlib" not in changed and stored.get("jaxlib") != now["jaxlib"]:
        parts.append(f"(jaxlib also changed, {stored.get('jaxlib')} -> {now['jaxlib']}, which alone can change "
                     f"the lowered program)")
    return "; ".join(parts)


# --------------------------------------------------------------------------- before compute


def build_problem(spec: SweepSpec, group) -> Problem:
    """``spec.study.make_problem`` for ``group``, checked (data, evaluation data, batch size)."""
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


def blocks(spec: SweepSpec, chunk_steps: int | None = None) -> int:
    """Evaluation blocks per call of a group's program (``chunk_steps``: default the spec's)."""
    chunk = spec.chunk_steps if chunk_steps is None else chunk_steps
    return max(1, min(chunk // spec.eval_every, spec.steps // spec.eval_every))


def schedule_rows(plan: Plan, runs: int) -> int:
    """Rows of a batch's schedule: room for every distinct seed a batch can hold, rounded
    up to a power of two (at least 4), so sweeps with a few more or fewer seeds share a program."""
    seeds = len(plan.axes[-1][1])
    return min(runs, max(4, 1 << (seeds - 1).bit_length()))


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


def environment(devices) -> dict:
    """The versions, device and flags a sweep is computed with, for its row in the store."""
    import jaxlib
    import optax

    from lab.version import __version__
    return {"code_version": __version__, "git_hash": _git_hash(), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "optax": optax.__version__, "device_kind": devices[0].device_kind,
            "platform": devices[0].platform, "device_count": len(devices), "process_count": jax.process_count(),
            "python": platform_module.python_version(), "numpy": np.__version__, **prog.environment_flags()}
