"""lab.sweep: many training runs as one compiled program, resumable, stored in SQLite.

The model::

    study = Study(name, make_problem, make_optimizer, hyperparameters={...}, static={...})
    spec = SweepSpec(study, grid={"learning_rate": [...], "batch_size": [...]}, seeds=4,
                     steps=300, eval_every=50)
    result = run_sweep(spec, store="results/lab.sqlite")   # a lab.store.SweepResult
    result.curves["eval_loss"]    # (*grid shape, seeds, evaluations)
    points = SweepSpec(study, configs=[{"learning_rate": 0.1, "momentum": 0.9}, ...], seeds=4)
                                  # explicit points (a search-space sample): axes (config, seed)

* **Dynamic knobs** (every name in ``Study.hyperparameters``: learning rate, momentum,
  damping, weight decay...) and the **seed** are vmapped: one compiled program per
  **static group** (the runs sharing ``batch_size`` and every ``Study.static`` option).
  ``make_optimizer(config)`` is called inside that program, with traced scalars for the
  dynamic knobs, so new values never recompile.  A problem built with
  ``Problem(..., loss_config=True)`` gets the same ``config`` in its loss, so a knob of
  the loss (an L2 penalty, label smoothing) is a dynamic axis too.
* Training is :func:`lab.train.make_step`, vmapped over runs inside ``lax.scan``; the host
  runs it in chunks of ``chunk_steps`` to show progress (tqdm; ``progress=False`` turns it
  off), commit to the database and stop early when every run of a batch diverged.
* Every ``eval_every`` steps each run records ``train_loss`` (mean mini-batch loss over
  the block), ``grad_norm`` and ``update_norm`` (last step of the block), ``param_norm``,
  and ``eval_<name>`` for each value of the problem's ``evaluate`` (default: ``eval_loss``);
  opt-in and costly, ``SweepSpec(sharpness_iters=m)`` adds ``sharpness``, the top Hessian
  eigenvalue of the training loss on the first ``sharpness_batch`` training examples by
  ``m`` Lanczos steps (:mod:`lab.curvature`).
* A run whose loss is not finite, or exceeds ``divergence_factor`` times the absolute
  value of its first loss, is frozen at that step (recorded as ``diverged_step``); the
  others continue bit for bit as if it were not there.
* Runs are spread over ``jax.local_devices()`` in batches of ``runs_per_device`` (chosen
  from a memory estimate unless given), one batch per device at a time; the group's
  program is compiled once and the same code is loaded on every device.
  On a CPU-only machine JAX makes one device; call :func:`use_cpu_cores` first thing
  (the ``lab`` command does) to get one device per core: XLA computes one device's
  small matmuls on about one core, so this is what puts every core to work.  A group
  whose program calls a CPU linear-algebra kernel (LAPACK) runs on one of them
  (:func:`lab.sweep.program.build_program` says why).
* ``SweepSpec(keep_params=True)`` also stores each run's parameters after its last step
  (frozen ones for a diverged run): ``Store(path).final_params(result.sweep_id,
  result.index(learning_rate=0.1, seed=0))`` gives their leaves back.
* Results go to :mod:`lab.store`; a finished sweep is never rerun unless ``rerun=True``,
  and an interrupted one resumes from its last committed chunk with identical results.
  Each static group records what it computed (its lowered program, data, jaxlib, XLA
  flags, device kind): a finished sweep whose program or data would now differ (the
  model or the data changed behind an unchanged config) is refused as stale rather than
  served, and so is resuming one whose program changed since it began; the error names
  what changed (``rerun=True`` computes afresh, the old sweep is kept).
  :func:`fetch_sweep` reads a finished sweep, with the same check, computing nothing;
  :func:`check_sweep` makes only the checks run_sweep makes before compute.
  :func:`run_keys` gives a run's keys as the engine draws them.

Determinism: per-run randomness comes only from (seed, step); on CPU a run's numbers are
bitwise the same whatever the chunking, grid layout or device count, at a fixed
``runs_per_device`` (which is recorded and reused on resume).  The engine does not
partition one program over a device mesh: XLA compiles a partitioned module differently,
and a full-batch Adam sweep differed at float32 rounding between 1 and 2 CPU devices.

Several processes or hosts: call ``jax.distributed.initialize()`` in every process (e.g.
one per node under SLURM: ``srun python sweep.py``) and give them one database path on a
shared filesystem.  Process ``i`` of ``n`` runs every ``n``-th batch on its local devices
into its own part file (``<db>.part<i>of<n>``); process 0 merges the parts into the
database and every process returns the whole sweep (``run_sweep(process=(i, n))`` without
``jax.distributed``).  The merged results equal a one-process run bit for bit.
"""
from lab.store import SweepResult
from lab.sweep.engine import check_sweep, fetch_sweep, run_sweep, use_cpu_cores
from lab.sweep.program import TRAIN_METRICS
from lab.sweep.runs import RunKeys, run_keys
from lab.sweep.spec import Group, Plan, Problem, Study, SweepSpec, classification_metrics, plan_sweep

__all__ = ["Problem", "Study", "SweepSpec", "Plan", "Group", "plan_sweep", "classification_metrics", "run_sweep", "fetch_sweep", "check_sweep",
           "SweepResult", "TRAIN_METRICS", "use_cpu_cores", "run_keys", "RunKeys"]
