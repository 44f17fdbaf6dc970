"""The compiled program of one static group: init, train and evaluate many runs at once.

Contract.  :func:`lower_group` traces and lowers a static group's program once (its metric
names and identity come from that lowering); :func:`build_program` compiles it into a
:class:`Program` whose ``calls[k](state, hparams,
seeds, slots, schedule, data, t0, start, factor)`` runs ``blocks`` blocks of ``eval_every``
steps for every run of a batch on device ``k`` and returns ``(state, metrics)``.  It is one
``jax.jit`` of a function that

* initialises the runs when ``start`` is true (a ``lax.cond`` outside the run axis, so the
  same executable starts and continues a batch),
* vmaps :func:`lab.train.make_step` over the run axis inside two nested ``lax.scan``
  (steps within a block, blocks within the call), and evaluates after each block; the
  block's last step is built ``with_stats=True`` (gradient and update norms), the others
  without, since the norms are recorded at that step only,
* freezes a run at the first step whose loss is not finite or exceeds ``factor`` times the
  absolute value of its first loss: that update and every later one are discarded and the
  step is kept in ``diverged_step``; the other runs are untouched.  On a CPU the only value
  that crosses the run axis is whether every run took its step: if so the new state is kept
  as it is, else a select per run restores the old state of the others.  Both give an
  accepting run the same bits; the first (XLA copies the state out of the branch) reads
  one state where the select reads two: 4% faster on the reference sweep of BENCHMARKS.md.
  On an accelerator, whose host would wait on that predicate at every step, the select
  runs at every step,
* ignores steps at or after ``steps``, so a last, partial call reuses the executable,
* with ``sharpness_iters > 0``, adds the metric ``sharpness`` (see ``SweepSpec``).

Randomness depends only on (seed, step), by :func:`run_keys`: ``k = key(seed)``; parameters
from ``fold_in(k, 0)``; the loss's key at step ``t`` is ``fold_in(fold_in(k, 2), t)``; the
sharpness start vector from ``fold_in(k, 3)``.  The
mini-batch order comes from :func:`batch_schedule`, a host-side function of (seed, epoch)
alone: each call receives the index window of its steps for each seed it holds
(``schedule``, shape (seeds, steps, batch)) and each run's row in it (``slots``).  So a
run's result never depends on which batch, chunk or device computed it, and the baselines
of ``benchmarks/sweep.py`` can replay the same schedule.  (Drawing the permutations on the
host keeps them out of the compiled program, whose compile time they would triple.)

The state crosses the program boundary as plain arrays (typed PRNG keys as their key data),
so it can be checkpointed as npz and put back.  The program is compiled once per device,
each device computing its own batch of runs with its own copy of the data (see
:func:`build_program`).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import os
import re
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import SingleDeviceSharding

from lab import curvature, train
from lab.sweep.runs import (RunKeys, batch_schedule, device_memory_budget, epoch_permutation,  # noqa: F401 (re-exported)
                            estimate_run_bytes, is_key, run_config, run_keys, runs_per_device, tree_bytes)
from lab.sweep.spec import Problem

TRAIN_METRICS = ("train_loss", "grad_norm", "update_norm", "param_norm")


# Compiled executables by the text of their lowered program: {"calls": by device id, "source":
# the one compiled in this process that load_on copies}, so a second sweep over the same shapes
# in this process skips XLA; the oldest programs are dropped.
_COMPILED: dict = {}
_COMPILED_MAX = 16
_CACHE_HITS = [0]   # executables this process read from JAX's persistent compilation cache


def _count_cache_hits(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS[0] += 1


jax.monitoring.register_event_listener(_count_cache_hits)


class RunState(NamedTuple):
    params: Any
    opt_state: Any
    first_loss: jax.Array     # loss at step 0, the yardstick for divergence
    diverged_step: jax.Array  # int32; -1 while the run is healthy


class Program(NamedTuple):
    calls: tuple              # one compiled executable per device, all from the same program
    devices: tuple            # calls[k] runs on devices[k]
    metrics: tuple            # metric names, in the order of the metrics dict
    state_shapes: Any         # RunState of ShapeDtypeStruct (packed), batch axis (runs_per_device) first
    schedule_shape: tuple     # (seeds, steps, batch_size) of the schedule argument
    compile_seconds: float
    identity: str             # program_identity of the code: equal identities, equal numbers

    @property
    def call(self) -> Callable:
        """The first device's executable."""
        return self.calls[0]

    @property
    def device_count(self) -> int:
        """Devices the program runs on (fewer than asked for when it calls CPU kernels)."""
        return len(self.devices)


# --------------------------------------------------------------------------- key packing


def pack(tree):
    """Replace typed PRNG key leaves by their raw key data (plain uint32 arrays)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def unpack(tree, template):
    """Undo :func:`pack`, using ``template`` (an abstract tree) to find the key leaves."""
    return jax.tree.map(lambda x, t: jax.random.wrap_key_data(x) if is_key(t) else x, tree, template)


def _select(pred, new, old):
    """Per-leaf ``where(pred, new, old)`` for a scalar ``pred``; works for key leaves too."""
    def one(a, b):
        if is_key(a):
            return jax.random.wrap_key_data(jnp.where(pred, jax.random.key_data(a), jax.random.key_data(b)))
        return jnp.where(pred, a, b)
    return jax.tree.map(one, new, old)


# --------------------------------------------------------------------------- the program


def _program_functions(problem: Problem, make_optimizer, static: dict, dynamic: tuple, *,
                       steps: int, every: int, blocks: int, sharpness_iters: int = 0,
                       sharpness_batch: int = 256, freeze_by_batch: bool = False):
    """The per-run ``init`` and ``evaluate`` (vmapped by the caller) and the batch-level
    ``chunk``.  ``freeze_by_batch`` puts the divergence select behind a ``lax.cond`` on every
    run taking its step (measured faster on CPU; an accelerator would wait on the predicate
    each step, so elsewhere the select runs every step); the numbers are the same."""
    batch_size = int(static["batch_size"])
    sharp_n = min(int(sharpness_batch), int(np.shape(problem.x)[0]))

    def optimizer(hp):
        return make_optimizer(run_config(static, dynamic, hp))

    def loss_of(hp):
        """A run's training loss ``(params, x, y, key) -> scalar`` (``Problem.loss_config``)."""
        if not problem.loss_config:
            return problem.loss
        config = run_config(static, dynamic, hp)
        return lambda params, x, y, key: problem.loss(params, x, y, key, config)

    def evaluate(params, hp, ex, ey):
        """Evaluation metrics (``hp`` is read only by the default, loss-only evaluation)."""
        if problem.evaluate is None:
            return {"loss": loss_of(hp)(params, ex, ey, jax.random.key(0))}
        return dict(problem.evaluate(params, ex, ey))

    def sharpness(params, hp, seed, x, y):
        """Top Hessian eigenvalue of the training loss on the first ``sharp_n`` examples."""
        xs, ys, key, loss = x[:sharp_n], y[:sharp_n], jax.random.key(0), loss_of(hp)
        m = min(sharpness_iters, sum(math.prod(np.shape(p)) for p in jax.tree.leaves(params)))
        pairs = curvature.top_eigenvalues(lambda p: loss(p, xs, ys, key), params, k=1, num_iters=m,
                                          key=run_keys(seed).sharpness)
        return pairs.eigenvalues[0]

    def init(seed, hp, x, y):
        keys = run_keys(seed)
        params = problem.init_params(keys.params)
        loss_shape = jax.eval_shape(loss_of(hp), params, x[:batch_size], y[:batch_size], keys.seed_key)
        return RunState(params, optimizer(hp).init(params), jnp.zeros((), loss_shape.dtype),
                        jnp.full((), -1, jnp.int32))

    def chunk(state: RunState, seeds, hps, slots, schedule, data, t0, factor):
        """A batch of runs (every argument before ``schedule`` has the run axis first) through
        ``blocks`` blocks; metrics come out with shape (runs, blocks)."""
        x, y, ex, ey = data
        step_keys = jax.vmap(lambda seed: run_keys(seed).steps)(seeds)

        def batched_step(with_stats: bool):
            def one(params, opt_state, hp, slot, key, t):
                idx = schedule[slot, t - t0]
                step = train.make_step(loss_of(hp), optimizer(hp), with_stats=with_stats)
                return step(params, opt_state, x[idx], y[idx], jax.random.fold_in(key, t))
            return jax.vmap(one, in_axes=(0, 0, 0, 0, 0, None))

        plain_step, stats_step = batched_step(False), batched_step(True)

        def guarded(step_fn, st: RunState, t):
            """One step of ``step_fn``, discarded (and the run frozen) unless the run is live and healthy."""
            params, opt_state, out = step_fn(st.params, st.opt_state, hps, slots, step_keys, t)
            loss = out.loss if isinstance(out, train.StepStats) else out
            first = jnp.where(t == 0, loss, st.first_loss)
            limit = factor.astype(first.dtype) * jnp.abs(first)
            healthy = jnp.isfinite(loss) & ~(loss > limit)
            live = (st.diverged_step < 0) & (t < steps)
            accept = live & healthy
            # When every run takes its step (the usual case) the new state can be used as it
            # is; otherwise the runs that do not take it keep their old state.  Both give every
            # accepting run the same bits; the first reads one state instead of two.
            def keep_old():
                return jax.vmap(_select)(accept, (params, opt_state), (st.params, st.opt_state))

            if freeze_by_batch:
                params, opt_state = lax.cond(jnp.all(accept), lambda: (params, opt_state), keep_old)
            else:
                params, opt_state = keep_old()
            return RunState(params, opt_state, first, jnp.where(live & ~healthy, t.astype(jnp.int32),
                                                                st.diverged_step)), out

        def one_block(st: RunState, b):
            # The gradient and update norms are wanted at the block's last step only: the
            # other steps skip them (they cost ~15% of a small MLP's step); same updates.
            start = t0 + b * every
            st, losses = lax.scan(functools.partial(guarded, plain_step), st,
                                  start + jnp.arange(every - 1, dtype=t0.dtype))
            st, last = guarded(stats_step, st, start + every - 1)
            losses = jnp.concatenate([losses, last.loss[None]])      # (every, runs)
            values = {"train_loss": jnp.mean(losses, axis=0), "grad_norm": last.grad_norm,
                      "update_norm": last.update_norm, "param_norm": jax.vmap(train.global_norm)(st.params)}
            by_run = 0 if problem.loss_config else None     # hps reach the loss only when asked
            evals = jax.vmap(evaluate, in_axes=(0, by_run, None, None))(st.params, hps, ex, ey)
            values.update({f"eval_{k}": v for k, v in evals.items()})
            if sharpness_iters:
                values["sharpness"] = jax.vmap(sharpness, in_axes=(0, by_run, 0, None, None))(
                    st.params, hps, seeds, x, y)
            bad = (st.diverged_step >= 0) & (st.diverged_step < start + every)
            values = {k: jnp.where(bad, jnp.nan, v.astype(jnp.result_type(float))) for k, v in values.items()}
            return st, values

        state, metrics = lax.scan(one_block, state, jnp.arange(blocks, dtype=t0.dtype))
        return state, {k: v.T for k, v in metrics.items()}

    return init, chunk, evaluate


class Lowering(NamedTuple):
    """One static group's program traced and lowered for one device, not compiled: what
    :func:`build_program` compiles, and what it will compute."""
    lower: Callable           # lower(device): the same program lowered for that device alone
    first: Any                # lower(device) for the device it was made for
    text: str                 # first.as_text(): the lowered program, without source locations
    metrics: tuple            # metric names, in the order the engine stores them
    identity: dict            # what fixes its numbers (:func:`identity_record`)
    state_shapes: Any         # RunState of ShapeDtypeStruct (packed), batch axis first
    schedule_shape: tuple     # (seeds, steps, batch_size) of the schedule argument


def lower_group(problem: Problem, make_optimizer, static: dict, dynamic: tuple, *, steps: int, every: int,
                blocks: int, runs_per_dev: int, schedule_rows: int, device, platform: str | None = None,
                sharpness_iters: int = 0, sharpness_batch: int = 256) -> Lowering:
    """Trace and lower the group's program for ``runs_per_dev`` runs whose mini-batches come
    from ``schedule_rows`` distinct seeds at most, on ``device``: one lowering gives the
    metric names, the identity and (:func:`build_program`) the compiled program.
    ``platform`` (default ``device.platform``) picks the platform's form of the divergence
    freeze (see :func:`_program_functions`), e.g. to check a sweep computed elsewhere."""
    lower, state_shapes, schedule_shape = _lowering(
        problem, make_optimizer, static, dynamic, steps=steps, every=every, blocks=blocks,
        runs_per_dev=runs_per_dev, platform=platform or device.platform, schedule_rows=schedule_rows,
        sharpness_iters=sharpness_iters, sharpness_batch=sharpness_batch)
    first = lower(device)
    text = first.as_text()
    keys = set(first.out_info[1])
    metrics = (tuple(TRAIN_METRICS) + tuple(sorted(k for k in keys if k.startswith("eval_")))
               + (("sharpness",) if "sharpness" in keys else ()))
    # the host-side mini-batch order is not in the program: its first two epochs (seed 0) count as data
    n, batch = int(np.shape(problem.x)[0]), int(static["batch_size"])
    order = batch_schedule(0, n, batch, 0, min(steps, 2 * (n // batch)))
    return Lowering(lower, first, text, metrics, identity_record(text, problem_data(problem) + (order,), device),
                    state_shapes, schedule_shape)


def build_program(lowering: Lowering, *, devices) -> Program:
    """Compile ``lowering`` for ``devices[0]`` (the device it was lowered for) and load the
    same machine code on each of the other ``devices`` (:func:`load_on`).

    Every device gets a single-device executable of the same program, rather than one
    program partitioned over a mesh: runs never exchange a value, and XLA compiles a
    partitioned module differently (``num_partitions``), which changed results at float32
    rounding between device counts.  So a run's numbers do not depend on how many devices
    a sweep uses or on which one computed it.  A program whose lowered text was compiled
    before in this process is taken from a small cache.  When the first device's executable
    is read from JAX's persistent compilation cache, the others are compiled (or read from
    that cache) too, since a cached executable cannot be copied (:func:`load_on`); so the
    first rerun of a sweep compiles once more per extra device, and later reruns do not.
    On several CPU devices, a program that calls a host kernel (:func:`host_kernels`:
    LAPACK's eigh, solve, ...) is built for the first device only (``device_count`` 1)."""
    devices = list(devices)
    first, text = lowering.first, lowering.text
    t = time.perf_counter()
    if len(devices) > 1 and devices[0].platform == "cpu" and host_kernels(text):
        # jaxlib's CPU linear-algebra kernels split a batch over XLA's CPU thread pool and
        # block until it is done; when every pool thread is running one device's program,
        # nothing is left to do that work and the call never returns (seen with a batched
        # eigh on 2 devices of a 2-core CPU).  Such programs run on one device.
        devices = devices[:1]
    entry = _COMPILED.setdefault(hashlib.sha256(text.encode()).hexdigest(), {"source": None, "calls": {}})
    for device in devices:
        if device.id in entry["calls"]:
            continue
        loaded = None if entry["source"] is None else load_on(entry["source"], device)
        if loaded is None:
            hits = _CACHE_HITS[0]
            loaded = (first if device == devices[0] else lowering.lower(device)).compile()
            if _CACHE_HITS[0] == hits and entry["source"] is None:
                entry["source"] = loaded      # compiled here, not read from JAX's persistent cache
        entry["calls"][device.id] = loaded
    calls = tuple(entry["calls"][d.id] for d in devices)
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.pop(next(iter(_COMPILED)))
    compile_seconds = time.perf_counter() - t
    return Program(calls, tuple(devices), tuple(calls[0].out_info[1]), lowering.state_shapes,
                   lowering.schedule_shape, compile_seconds, program_identity(text, devices[0]))


def _xla_flags() -> str:
    """``XLA_FLAGS`` less the host device count, which changes no number."""
    return " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                    if not f.startswith("--xla_force_host_platform_device_count"))


def program_identity(lowered_text: str, device) -> str:
    """What fixes a compiled program's numbers, as one hash: the lowered program (without
    source locations), the jaxlib that compiles it, ``XLA_FLAGS`` (less the host device
    count) and the kind of device.  Recorded per static group beside :func:`identity_record`
    (it is all that sweeps begun before that record have)."""
    import jaxlib

    parts = (lowered_text, jaxlib.__version__, _xla_flags(), device.platform, device.device_kind)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def data_hash(arrays) -> str:
    """sha256 of arrays' dtypes, shapes and bytes (the problem's data, which the program
    takes as arguments and so does not hold in its text)."""
    digest = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(np.asarray(a))
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def identity_record(lowered_text: str, data, device) -> dict:
    """What fixes a group's numbers, part by part, so that a mismatch can be named:
    ``program`` (sha256 of the lowered text: the study's model, loss, optimizer, initial
    parameters and shapes), ``data`` (:func:`data_hash` of ``data``: ``(x, y, eval_x,
    eval_y)`` and the first mini-batch indices, which the host computes),
    ``jaxlib``, ``xla_flags`` and ``device`` (platform and kind).  A finished sweep is served
    again only while its program and data are the same; an unfinished one resumes only
    while all five are (:mod:`lab.sweep.engine`)."""
    import jaxlib

    return {"program": hashlib.sha256(lowered_text.encode()).hexdigest(), "data": data_hash(data),
            "jaxlib": jaxlib.__version__, "xla_flags": _xla_flags(), "device": f"{device.platform} {device.device_kind}"}


def _lowering(problem: Problem, make_optimizer, static: dict, dynamic: tuple, *, steps: int, every: int,
              blocks: int, runs_per_dev: int, platform: str, schedule_rows: int, sharpness_iters: int,
              sharpness_batch: int):
    """``(lower, state_shapes, schedule_shape)``: ``lower(device)`` lowers the group's program
    for that device alone."""
    init, chunk, evaluate = _program_functions(problem, make_optimizer, static, dynamic,
                                               steps=steps, every=every, blocks=blocks,
                                               sharpness_iters=sharpness_iters, sharpness_batch=sharpness_batch,
                                               freeze_by_batch=platform == "cpu")
    float_dtype = jnp.result_type(float)
    runs = runs_per_dev   # the batch of runs each executable computes

    def program(packed, hparams, seeds, slots, schedule, data, t0, start, factor):
        state = unpack(packed, abstract_state)
        state = lax.cond(start, lambda: jax.vmap(init, in_axes=(0, 0, None, None))(seeds, hparams, data[0], data[1]),
                         lambda: state)
        state, metrics = chunk(state, seeds, hparams, slots, schedule, data, t0, factor)
        return pack(state), metrics

    jitted = jax.jit(program, donate_argnums=(0,))
    data = problem_data(problem)
    abstract_state = jax.eval_shape(jax.vmap(init, in_axes=(0, 0, None, None)),
                                    jax.ShapeDtypeStruct((runs,), jnp.uint32),
                                    jax.ShapeDtypeStruct((runs, len(dynamic)), float_dtype),
                                    jax.ShapeDtypeStruct(np.shape(data[0]), data[0].dtype),
                                    jax.ShapeDtypeStruct(np.shape(data[1]), data[1].dtype))
    state_shapes = jax.eval_shape(pack, abstract_state)
    schedule_shape = (schedule_rows, blocks * every, int(static["batch_size"]))

    def lower(device):
        """The program lowered for ``device`` alone."""
        on = SingleDeviceSharding(device)

        def sds(shape, dtype):
            return jax.ShapeDtypeStruct(shape, dtype, sharding=on)

        return jitted.lower(jax.tree.map(lambda s: sds(s.shape, s.dtype), state_shapes),
                            sds((runs, len(dynamic)), float_dtype), sds((runs,), jnp.uint32),
                            sds((runs,), jnp.int32), sds(schedule_shape, jnp.int32),
                            tuple(sds(np.shape(a), a.dtype) for a in data),
                            sds((), jnp.int32), sds((), jnp.bool_), sds((), float_dtype))

    return lower, state_shapes, schedule_shape


def load_on(compiled, device):
    """``compiled``, a single-device executable, loaded on ``device`` without compiling it
    again: its machine code is serialized and loaded with ``device`` as its assignment, and
    wrapped like the original.  ``compiled`` must have been compiled in this process: an XLA
    CPU executable read from JAX's persistent cache loses code when serialized again (jaxlib
    0.10.2: the copy fails with "Function ... not found" when run), so :func:`build_program`
    compiles for each device when its first executable came from that cache.  Returns None
    where that cannot be done (constants hoisted out of the program, another device kind,
    or a JAX whose internals moved on); the caller then compiles for ``device``, to the
    same code at a compile's cost.

    This leans on JAX internals (``Compiled``'s unloaded executable and compile options,
    as ``jax.experimental.serialize_executable`` does, without its pickling); a test checks
    that it still works with the installed JAX."""
    try:
        from jax._src import compiler
        from jax._src.lib import xla_client as xc

        unloaded = compiled._executable._unloaded_executable
        params = compiled._params
        if params.const_args or len(unloaded.device_list) != 1 or unloaded.device_list[0].client is not device.client:
            return None
        if not all(isinstance(s, SingleDeviceSharding) for s in (*unloaded.input_shardings, *unloaded.output_shardings)):
            return None
        options = compiler.get_compile_options(num_replicas=1, num_partitions=1, device_assignment=[device])
        devices = xc.DeviceList((device,))
        code = device.client.deserialize_executable(device.client.serialize_executable(unloaded.xla_executable),
                                                    devices, options)

        def move(s):
            return SingleDeviceSharding(device, memory_kind=s.memory_kind)

        moved = dataclasses.replace(unloaded, xla_executable=code, device_list=devices,
                                    input_shardings=[move(s) for s in unloaded.input_shardings],
                                    output_shardings=[move(s) for s in unloaded.output_shardings])
        return jax.stages.Compiled(moved.load(), [], compiled.args_info, compiled.out_tree,
                                   no_kwargs=compiled._no_kwargs, in_types=params.in_types,
                                   out_types=params.out_types)
    except Exception:  # noqa: BLE001 -- any failure here only means compiling again
        return None


# Custom calls that only annotate sharding; every other custom call is a host kernel.
_SHARDING_CALLS = {"Sharding", "SPMDFullToShardShape", "SPMDShardToFullShape", "MoveToHost", "MoveToDevice"}


def host_kernels(lowered_text: str) -> set:
    """Names of the custom-call kernels (LAPACK and the like) in a lowered program's text."""
    return set(re.findall(r"custom_call @([\w.$-]+)", lowered_text)) - _SHARDING_CALLS


def problem_data(problem: Problem) -> tuple:
    """``(x, y, eval_x, eval_y)``, the evaluation data defaulting to the training data."""
    ex = problem.x if problem.eval_x is None else problem.eval_x
    ey = problem.y if problem.eval_y is None else problem.eval_y
    return problem.x, problem.y, ex, ey


def environment_flags() -> dict:
    """What decides the numbers besides the config: PRNG implementation and XLA flags."""
    return {"prng_impl": str(jax.config.jax_default_prng_impl), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "x64": bool(jax.config.jax_enable_x64)}
