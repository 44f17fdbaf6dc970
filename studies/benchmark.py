"""Which optimizer wins, tuned the same way: time to target on the workloads (AlgoPerf-style).

Protocol.  For every optimizer of ``optimizers`` (each with its search space in
:data:`lab.protocol.SPACES`) and every workload of ``workloads`` (:mod:`lab.workloads`, each
with a fixed target), ``trials x studies`` configs are drawn from the optimizer's space by
a scrambled Sobol sequence (seed ``sample_seed``) and randomly partitioned into ``studies``
studies of ``trials`` (:func:`lab.protocol.partition_trials`): the same number of tries for
every optimizer.  All the configs of one (workload, optimizer) train as one sweep through
the engine (one compiled program, the knobs vmapped), ``budget_fraction`` of the workload's
step budget each, one training seed.

Measured.  A trial's steps to target are the first evaluation step at which its held-out
metric reaches the target (:func:`lab.workloads.steps_to_target`); its seconds to target
are those steps times the sweep's measured seconds per run-step (run seconds over
run-steps computed: all trials of a sweep run in one program, so each costs the same per
step), its compile seconds the sweep's compile time shared over its trials, reported
apart.  A run that never reaches the target counts as ``inf``.  Per study the best trial is
the fastest to reach (:func:`lab.protocol.tune`); over studies the median; across workloads
performance ratios to the fastest optimizer, profiles ``rho(tau)`` for tau in [1, 4] and
AlgoPerf's benchmark score (the normalised area under the profile), with 95% bootstrap
intervals over the studies.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from lab import plotting, protocol, workloads
from lab.sweep import SweepSpec
from studies import common

NAME = "benchmark"
DESCRIPTION = ("which optimizer reaches each workload's target first, every optimizer tuned by the same "
               "quasi-random search budget: time to target, performance profiles, benchmark scores")
FIGURES = {
    "benchmark_profiles": "performance profiles: the fraction of workloads each optimizer reaches within tau "
                          "times the fastest optimizer's median time to target, tau in [1, 4], with the "
                          "benchmark score (area under the profile) and its bootstrap interval in the legend",
    "benchmark_time_to_target": "median seconds to target over the studies (bars; lines span the studies' "
                                "min to max), one panel per workload; x where an optimizer never reached",
    "benchmark_lr_sensitivity": "every trial's best held-out metric against its learning rate, one panel per "
                                "workload and one colour per optimizer, the target dashed",
}
OPTIMIZERS = ("sgd", "adam", "adamw", "nadamw", "lion", "lamb", "adopt", "madgrad", "prodigy", "muon")
TAUS = np.linspace(1.0, protocol.R_MAX, 301)


@dataclasses.dataclass(frozen=True)
class Config:
    workloads: tuple[str, ...] = workloads.NAMES
    optimizers: tuple[str, ...] = OPTIMIZERS
    trials: int = 5                 # configs per study (AlgoPerf: 5)
    studies: int = 5                # independent repetitions of the search (AlgoPerf: 5)
    budget_fraction: float = 1.0    # of each workload's step budget
    sample_seed: int = 0            # the Sobol scramble and the partition into studies
    seed: int = 0                   # the training seed of every trial


FULL = Config()
QUICK = Config(workloads=("digits_mlp", "mnist1d_logistic", "mnist1d_mlp", "breast_cancer_logistic"),
               optimizers=("sgd", "adam", "adamw", "nadamw", "lion", "lamb", "adopt", "prodigy"),
               trials=3, studies=2)


def check(config: Config) -> None:
    """Raise ValueError naming the first unusable name in ``config`` (the counts and
    ``budget_fraction`` are range-checked by :func:`studies.common.check_ranges`)."""
    if not isinstance(config, Config):
        raise TypeError(f"expected a benchmark.Config, got {type(config).__name__}")
    for name in config.workloads:
        workloads.get(name)
    unknown = [o for o in config.optimizers if o not in protocol.SPACES]
    if unknown:
        raise ValueError(f"optimizers {unknown} have no search space; known: {sorted(protocol.SPACES)}")
    for field in ("workloads", "optimizers"):
        values = getattr(config, field)
        if len(set(values)) != len(values):
            raise ValueError(f"{field} lists a name twice: {values}")


def steps_of(config: Config, w: workloads.Workload) -> int:
    """The step budget of ``w`` under ``config``: a whole number of evaluations, at least one."""
    return max(1, int(config.budget_fraction * w.steps) // w.eval_every) * w.eval_every


def samples(config: Config, optimizer: str) -> list[dict]:
    """The ``trials x studies`` configs drawn from ``optimizer``'s space (Sobol, ``sample_seed``)."""
    return protocol.search_space(optimizer).sample(config.trials * config.studies, seed=config.sample_seed)


def partition(config: Config) -> tuple[np.ndarray, ...]:
    return protocol.partition_trials(config.trials * config.studies, config.studies, seed=config.sample_seed)


def spec(config: Config, workload: str, optimizer: str) -> SweepSpec:
    w = workloads.get(workload)
    steps = steps_of(config, w)
    study = workloads.study(w, optimizer)
    study = dataclasses.replace(study, description={**study.description, "steps": steps})
    return SweepSpec(study, configs=samples(config, optimizer), seeds=[config.seed], steps=steps,
                     eval_every=w.eval_every, chunk_steps=steps)


def plan(config: Config) -> list[SweepSpec]:
    """Every sweep of the benchmark, workload-major."""
    check(config)
    return [spec(config, w, o) for w in config.workloads for o in config.optimizers]


# --------------------------------------------------------------------------- analysis


def trials_of(config: Config, w: workloads.Workload, sweep) -> list[protocol.Trial]:
    """The sweep's runs as protocol trials (steps, seconds and compile seconds to target)."""
    steps = workloads.steps_to_target(w, sweep)[:, 0]
    runs = steps.size
    run_steps = runs * steps_of(config, w)
    per_step = sweep.timings["run_seconds"] / run_steps
    compile_share = sweep.timings["compile_seconds"] / runs
    return [protocol.Trial(dict(sweep.run_configs[i]), float(s), float(s) * per_step if math.isfinite(s) else math.inf,
                           compile_share) for i, s in enumerate(steps)]


def best_metric(w: workloads.Workload, sweep) -> np.ndarray:
    """Each run's best target metric over its evaluations (NaN where it diverged at once)."""
    curves = sweep.curves[w.target.metric][:, 0]
    seen = np.isfinite(curves).any(axis=-1)
    filled = np.where(np.isfinite(curves), curves, np.inf if w.target.mode == "min" else -np.inf)
    best = filled.min(axis=-1) if w.target.mode == "min" else filled.max(axis=-1)
    return np.where(seen, best, np.nan)


def analyse(config: Config, sweeps: dict) -> dict:
    """``sweeps[(workload, optimizer)]`` -> the tables, profiles and scores."""
    parts = partition(config)
    k, n = len(config.optimizers), len(config.workloads)
    study_times = np.full((k, n, config.studies), np.inf)
    study_steps = np.full((k, n, config.studies), np.inf)
    tuning, trials, best = {}, {}, {}
    for j, name in enumerate(config.workloads):
        w = workloads.get(name)
        for i, opt in enumerate(config.optimizers):
            sweep = sweeps[(name, opt)]
            t = trials_of(config, w, sweep)
            result = protocol.tune([[t[r] for r in part] for part in parts])
            study_times[i, j] = [b.seconds for b in result.best]
            study_steps[i, j] = [b.steps for b in result.best]
            tuning[(name, opt)], trials[(name, opt)], best[(name, opt)] = result, t, best_metric(w, sweep)
    times = protocol.median_over_studies(study_times)
    ratios = protocol.performance_ratios(times)
    boot = protocol.bootstrap_scores(study_times, samples=1000, seed=0)
    return {"config": dataclasses.asdict(config), "optimizers": list(config.optimizers),
            "workloads": list(config.workloads), "study_times": study_times, "study_steps": study_steps,
            "times": times, "steps": protocol.median_over_studies(study_steps), "ratios": ratios,
            "profiles": protocol.performance_profile(ratios, TAUS), "taus": TAUS, "scores": boot.score,
            "score_low": boot.low, "score_high": boot.high, "tuning": tuning, "trials": trials,
            "best_metric": best}


def _results(config: Config, sweep) -> dict:
    return analyse(config, {(w, o): sweep(spec(config, w, o)) for w in config.workloads for o in config.optimizers})


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch) every sweep and analyse them."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` from the database (LookupError when a sweep is missing)."""
    return common.load(_results, config, store=store)


# --------------------------------------------------------------------------- figures and report


def _label(results: dict, i: int) -> str:
    return (f"{results['optimizers'][i]}  {results['scores'][i]:.2f} "
            f"[{results['score_low'][i]:.2f}, {results['score_high'][i]:.2f}]")


def plot(results: dict, outdir="figures") -> list[Path]:
    paths = []
    c = results["config"]
    budget = f"{c['trials']} trials x {c['studies']} studies per optimizer and workload"
    fig, ax = plotting.figure(1, width=8.0, height=4.6)
    order = np.argsort(-results["scores"])
    for rank, i in enumerate(order):
        ax.step(results["taus"], results["profiles"][i], where="post", label=_label(results, i),
                linestyle="-" if rank < 8 else "--")
    ax.set_xlim(1.0, protocol.R_MAX)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tau (time to target / fastest optimizer's)")
    ax.set_ylabel("fraction of workloads reached within tau")
    ax.set_title(f"{len(results['workloads'])} workloads, {budget}", fontsize=9)
    ax.legend(fontsize=7, title="optimizer  score [95% CI]", title_fontsize=7, loc="center left",
              bbox_to_anchor=(1.02, 0.5))
    paths += plotting.save(fig, outdir, "benchmark_profiles")

    n = len(results["workloads"])
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plotting.figure(cols, rows, width=3.4, height=2.9)
    axes = np.atleast_1d(axes)
    x = np.arange(len(results["optimizers"]))
    for j, name in enumerate(results["workloads"]):
        ax, target = axes[j], workloads.get(name).target
        study = results["study_times"][:, j]
        med = results["times"][:, j]
        finite = np.isfinite(med)
        top = float(np.max(study[np.isfinite(study)])) if np.isfinite(study).any() else 1.0
        ax.bar(x[finite], med[finite], color=[plotting.PALETTE[i % len(plotting.PALETTE)] for i in x[finite]])
        for i in x:
            reached = study[i][np.isfinite(study[i])]
            if reached.size:
                ax.plot([i, i], [reached.min(), reached.max()], color="0.2", linewidth=1)
            if not finite[i]:
                ax.plot(i, 0.05 * top, marker="x", color="0.3")
        ax.set_xticks(x, results["optimizers"], rotation=60, fontsize=7)
        ax.set_title(f"{name} ({target.metric[5:]} {'<=' if target.mode == 'min' else '>='} {target.value:g})",
                     fontsize=8)
        ax.set_ylabel("seconds to target", fontsize=8)
    for ax in axes[n:]:
        ax.set_visible(False)
    paths += plotting.save(fig, outdir, "benchmark_time_to_target")

    fig, axes = plotting.figure(cols, rows, width=3.4, height=2.9)
    axes = np.atleast_1d(axes)
    for j, name in enumerate(results["workloads"]):
        ax, w = axes[j], workloads.get(name)
        for i, opt in enumerate(results["optimizers"]):
            lrs = [t.config["learning_rate"] for t in results["trials"][(name, opt)]]
            ax.scatter(lrs, results["best_metric"][(name, opt)], s=12, label=opt,
                       color=plotting.PALETTE[i % len(plotting.PALETTE)], marker="o" if i < 8 else "^")
        plotting.theory(ax, w.target.value, orientation="h")
        ax.set_xscale("log")
        if w.target.mode == "min":
            ax.set_yscale("log" if w.target.value > 0 else "linear")
        ax.set_title(name, fontsize=8)
        ax.set_xlabel("learning rate", fontsize=8)
        ax.set_ylabel(f"best {w.target.metric[5:]}", fontsize=8)
    axes[0].legend(fontsize=6, ncol=2)
    for ax in axes[n:]:
        ax.set_visible(False)
    paths += plotting.save(fig, outdir, "benchmark_lr_sensitivity")
    return list(paths)


def report(results: dict) -> str:
    opts, names = results["optimizers"], results["workloads"]
    lines = ["| optimizer | score [95% CI] | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for i in np.argsort(-results["scores"]):
        cells = [f"{results['times'][i, j]:.3g} s ({results['steps'][i, j]:.0f})"
                 if np.isfinite(results["times"][i, j]) else "not reached" for j in range(len(names))]
        lines.append(f"| {opts[i]} | {results['scores'][i]:.3f} [{results['score_low'][i]:.3f}, "
                     f"{results['score_high'][i]:.3f}] | " + " | ".join(cells) + " |")
    lines += ["", "Cells: median over studies of the best trial's seconds to target (steps), compile excluded."]
    return "\n".join(lines)
