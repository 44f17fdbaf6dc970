"""Optimizers compared: every first-order optimizer of ``lab.optim`` plus Newton-CG and
L-BFGS on four problems, each with its learning rate tuned on a log grid.

What is measured.  For each problem, one :func:`lab.sweep.run_sweep` with the grid
``optimizer`` (static: one compiled program per optimizer) x ``lr_factor`` (dynamic,
vmapped) x seeds.  The learning rate of a run is ``centre x lr_factor``, where the centre
depends on the problem and on the optimizer's *family* (:data:`FAMILY`, :data:`LR_CENTRES`):
gradient-scaled methods (SGD...) want a rate near ``1 / L``, sign-like and adaptive methods
(Adam...) a per-coordinate step, trust-ratio methods (LAMB, LARS) a relative step, and
the factors ``10^(-decades/2) .. 10^(decades/2)`` (``lr_points`` of them, geometric)
span ``lr_decades`` decades around it.  Some optimizers' "learning rate" means something
else; :data:`TUNED` says what is swept for each and :data:`SETTINGS` lists every other knob
(library defaults unless stated).

For each optimizer the best learning rate is the one with the lowest median (over seeds)
final loss, a diverged run counting as +inf (ties go to the fewer median steps to
target).  At that rate the study reports the median final loss with its interquartile
range, the steps to target (the first evaluation whose loss is at most the problem's
target; median over seeds, "not reached" when more than half the seeds miss), and the
fraction of seeds that diverged.  A run the engine froze (loss not finite, or above
``divergence_factor`` times its first loss) counts as diverged unless it had already reached
the target: then it is a numerical breakdown after convergence (L-BFGS in float32 hits 0/0
once its secant pairs underflow) and its last finite loss stands; the report lists these.
The loss is the full training loss (``eval_loss``, the
whole training set for the two MLPs); the MLPs also report held-out accuracy.

Problems (noise-free ones full batch):

* ``quadratic``: ``f(e) = 1/2 e^T A e`` in error coordinates (the minimiser at the origin,
  ``f* = 0``), ``A`` from :func:`lab.data.quadratic` with eigenvalues geometric in
  ``[1/kappa, 1]``; the seed draws the start ``e_0 ~ N(0, I / d)``.
* ``rosenbrock``: ``(1 - x)^2 + 100 (y - x^2)^2`` from ``(-1.2, 1) + sigma N(0, I)``.
* ``digits``: 64-32-10 tanh MLP, softmax cross-entropy, mini-batch 64 on 75% of the
  1797 UCI 8x8 digits; held-out accuracy on the other 25%.
* ``spirals``: 2-h-h-2 tanh MLP on two spirals (:func:`lab.data.two_spirals`), full
  batch; held-out accuracy on spirals drawn from another key.

Theory.  On the quadratic, gradient descent with any fixed rate contracts the error by at
best ``(kappa - 1)/(kappa + 1)`` per step, and while the step count stays below the dimension no
method in the gradient's Krylov span can beat ``(sqrt kappa - 1)/(sqrt kappa + 1)`` in the worst
case (Nesterov's lower bound; heavy ball reaches that rate with Polyak's tuning; this
study's heavy ball keeps ``beta = 0.9`` and so is slower); the loss contracts as the square of
these.  The measured rate is ``exp`` of the slope of ``log ||e_t||`` over the later half of
the evaluations; the study also gives the exact rate at the chosen grid point
(``max_i |1 - lr lambda_i|`` for GD, the 2x2 spectral radius for heavy ball).  Newton-CG and
L-BFGS are outside that class: their steps cost more (a Newton-CG step is one gradient plus
up to ``max_cg_iterations`` Hessian-vector products; an L-BFGS step one gradient plus the line
search's loss evaluations).  The sweep counts them in every run: for these two methods the
parameters carry a counter the loss ignores (:func:`counting`), recorded as the metric
``eval_evaluations``; the report gives the count per step beside the step counts.

Layout (imports run one way): :mod:`~studies.optimizers.settings` (names, families, grid
centres, knobs, constructors), :mod:`~studies.optimizers.config`,
:mod:`~studies.optimizers.problems` (the four problems and their sweeps),
:mod:`~studies.optimizers.analysis` and :mod:`~studies.optimizers.figures`; this module holds
the study contract.  Why QUICK runs fewer optimizers on the MLPs (compile time) is in
``docs/studies_optimizers.md``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from studies import common
from studies.optimizers import figures
from studies.optimizers.analysis import (
    analyse_problem,
    gd_rate,
    heavy_ball_rate,
    measured_rate,
    median_or_inf,
    steps_to_target,
)
from studies.optimizers.config import FULL, QUICK, QUICK_NET_OPTIMIZERS, Config, check_config, lr_factors
from studies.optimizers.problems import _make_optimizer, _make_problem, study, sweep_spec
from studies.optimizers.settings import (
    ALL_OPTIMIZERS,
    FAMILY,
    LR_CENTRES,
    PROBLEMS,
    SECOND_ORDER,
    SETTINGS,
    TUNED,
    build_optimizer,
    counting,
)

__all__ = ["DESCRIPTION", "FIGURES", "Config", "FULL", "QUICK", "QUICK_NET_OPTIMIZERS", "check_config", "run", "load",
           "plot", "report", "sweep_spec", "study", "build_optimizer", "counting", "lr_factors", "steps_to_target",
           "median_or_inf", "gd_rate", "heavy_ball_rate", "measured_rate", "analyse_problem", "ALL_OPTIMIZERS",
           "FAMILY", "LR_CENTRES", "PROBLEMS", "SECOND_ORDER", "SETTINGS", "TUNED", "_make_optimizer", "_make_problem"]

DESCRIPTION = ("every lab.optim first-order optimizer plus Newton-CG and L-BFGS, learning rate tuned on a log "
               "grid, on a quadratic, Rosenbrock, a digits MLP and a spirals MLP")
FIGURES = {f"optimizers_{p}": f"{p}: median final loss of every optimizer at its best learning rate (ranked bars "
                              f"with IQR), and loss against step of the best few (median, IQR band over seeds)"
           for p in PROBLEMS}
FIGURES["optimizers_quadratic"] += "; dashed: the GD and heavy-ball rate bounds"


def plan(config: Config) -> list:
    """One sweep per problem, checked before the first runs."""
    check_config(config)
    return [sweep_spec(p, config) for p in config.problems]


def _results(config: Config, sweep) -> dict:
    check_config(config)
    sweeps = {p: sweep(sweep_spec(p, config)) for p in config.problems}
    return {"config": dataclasses.asdict(config), "sweeps": sweeps,
            "problems": {p: analyse_problem(p, config, res) for p, res in sweeps.items()}}


def run(config: Config, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """One sweep per problem (one compiled program per optimizer), then the analysis."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config, *, store) -> dict:
    """:func:`run`'s results with the sweeps read from the database (LookupError if one is missing)."""
    return common.load(_results, config, store=store)


def plot(results: dict, outdir="figures"):
    """One figure per problem (:mod:`studies.optimizers.figures`)."""
    return figures.plot(results, outdir)


def _fmt_steps(s: float) -> str:
    return "not reached" if not np.isfinite(s) else f"{int(s)}"



def report(results: dict) -> str:
    lines = []
    for problem, r in results["problems"].items():
        names = r["optimizers"]
        acc = "best_test_accuracy" in r
        lines.append(f"**{problem}** (target loss {r['target']:g}; compile {r['compile_seconds']:.1f} s, "
                     f"run {r['run_seconds']:.1f} s)")
        lines.append("")
        head = "| rank | optimizer | best lr | median final loss [IQR] | steps to target | diverged |"
        lines.append(head + (" held-out acc |" if acc else ""))
        lines.append("|---|---|---|---|---|---|" + ("---|" if acc else ""))
        for rank, i in enumerate(r["rank"], 1):
            lo, hi = r["best_iqr"][i]
            row = (f"| {rank} | {names[i]} | {r['best_lr'][i]:.3g} | {r['best_median'][i]:.3g} "
                   f"[{lo:.2g}, {hi:.2g}] | {_fmt_steps(r['best_steps'][i])} | {r['best_diverged'][i]:.0%} |")
            if acc:
                row += f" {r['best_test_accuracy'][i]:.3f} |"
            lines.append(row)
        parts = []
        for name in SECOND_ORDER:
            if name in names:
                i = names.index(name)
                what = "Hessian-vector products" if name == "newton_cg" else "line-search loss evaluations"
                parts.append(f"{name} {r['extra_per_step'][i]:.2f} {what}")
        if parts:
            lines.append("")
            lines.append("Every step costs one gradient; besides it, per step at the best lr (median over seeds): "
                         + "; ".join(parts) + ". A Hessian-vector product (forward-over-reverse) costs about 2-3 gradients; a loss evaluation about half of one.")
        if r["best_broke_down"].any():
            who = ", ".join(f"{names[i]} ({r['best_broke_down'][i]:.0%})" for i in np.flatnonzero(r["best_broke_down"]))
            lines.append("")
            lines.append(f"Runs frozen by a non-finite loss after reaching the target (kept at their last finite loss, "
                         f"not counted as diverged): {who}.")
        if "theory" in r:
            th = r["theory"]
            lines.append("")
            lines.append(f"| method (kappa = {th['kappa']:g}) | lr | measured rate | exact rate at this lr | bound |")
            lines.append("|---|---|---|---|---|")
            bounds = {"sgd": (th["gd_bound"], "(k-1)/(k+1)"),
                      "heavy_ball": (th["momentum_bound"], "(sqrt k-1)/(sqrt k+1)")}
            for name, row in th["rows"].items():
                bound, formula = bounds[name]
                lines.append(f"| {name} | {row['lr']:.3g} | {row['measured']:.4f} | {row['exact']:.4f} | "
                             f"{bound:.4f} = {formula} |")
            lines.append("")
            lines.append(f"Heavy ball with beta fixed at {SETTINGS['heavy_ball']['beta']} can reach at best "
                         f"{th['heavy_ball_beta_bound']:.4f} per step (any lr).")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
