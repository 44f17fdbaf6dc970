"""Newton's method and its relatives against first-order methods: steps, rates, cost and curvature.

What is measured, how, and what theory predicts:

* ``quadratic``: ``f(w) = 1/2 (w - w*)^T A (w - w*)`` with ``A``'s eigenvalues geometric in
  ``[1/kappa, 1]`` (:func:`lab.data.quadratic`'s random rotation).  Newton with ``lr = 1``
  lands on ``w*`` in one step (``f(w_1) / f(w_0)`` is rounding error); gradient descent at
  ``lr = 2 / (L + mu)`` contracts ``||w - w*||`` by ``(kappa - 1) / (kappa + 1)`` per step,
  heavy ball at Polyak's setting by ``(sqrt kappa - 1) / (sqrt kappa + 1)``; Adam at the best
  rate of a small grid.  One sweep (method static) plus one for Adam's rate.
* ``logistic``: L2-regularised logistic regression on a fixed, non-separable synthetic
  set (labels drawn from a logistic model), so the minimiser ``w*`` is finite; ``w*`` is
  computed on the host in float64 by Newton's method to gradient norm 1e-13.  The error
  ``e_k = ||w_k - w*||`` of Newton and of gradient descent (at ``2 / (l_max + l_min)`` of
  ``H(w*)``) is recorded every step.  Theory: ``e_{k+1} <= L_H / (2 lambda_min(H(w_k))) e_k^2``
  with ``L_H`` the Lipschitz constant of the Hessian; here ``L_H <= max|sigma''| mean ||x_i||^3``
  (``max|sigma''| = 1 / (6 sqrt 3)``) and ``lambda_min(H) >= l2`` everywhere, which bounds
  every ratio ``e_{k+1} / e_k^2`` (the *global* bound); near ``w*`` the constant tends to
  ``L_H / (2 lambda_min(H(w*)))`` (the *asymptotic* bound).  GD's error ratio tends to
  ``(kappa* - 1) / (kappa* + 1)`` with ``kappa*`` the condition number of ``H(w*)``.
* ``rosenbrock``: 2-D paths from (-1.2, 1) of Newton with a backtracking (Armijo) line
  search, damped Newton (Levenberg-Marquardt's adaptive damping), GD, heavy ball and Adam;
  the number of iterations until ``||w - (1, 1)|| < tolerance`` (or the budget).  Direct
  ``lax.scan`` runs, no sweep (five deterministic 2-D paths).
* ``mlp``: a small tanh MLP on a subset of the digits, full batch.  Damped Newton
  ``(H + lambda I)^{-1} g`` and saddle-free Newton ``(|H| + lambda I)^{-1} g`` with the
  damping ``lambda`` a dynamic (vmapped) log-grid axis; Newton-CG (with Armijo backtracking)
  with the CG iteration cap a static axis; GD and Adam over a learning-rate grid, all for
  the same number of steps.  Small damping lets Newton jump along negative or tiny
  curvature (the loss blows up); large damping turns it into gradient descent with rate
  ``1 / lambda``; in between lies the best damping.
* ``cost``: for MLPs of growing width (P parameters) the wall time of one jitted step
  (median of repeats, after compilation) and the memory of the compiled step
  (``memory_analysis()``: temporaries + arguments + outputs), with log-log slopes.  Theory:
  dense Newton forms ``H`` from P Hessian-vector products (``~ n P^2`` flops for a batch of
  ``n``) and solves in ``~ P^3 / 3``, and stores ``P^2`` numbers (memory slope 2); the LU
  solve alone is timed too, to say which term dominates; Newton-CG costs ``k`` HVPs
  (``~ k n P``, slope 1) and GD one gradient (slope 1).
* ``spectrum``: the Hessian spectrum of the MLP's training loss at initialisation and after
  Adam training, by stochastic Lanczos quadrature (:func:`lab.curvature.spectral_density`),
  cross-checked against the exact eigenvalues of the dense Hessian (small P): the top and
  bottom eigenvalues and the fraction of negative eigenvalues.

Layout (imports run one way: ``figures`` and ``analysis`` read ``sweeps`` and the constants,
nothing reads this package's ``__init__``): :mod:`~studies.newton.config` (``Config``),
:mod:`~studies.newton.constants` (method names, labels, theory constants, fixed draws),
:mod:`~studies.newton.sweeps` (the swept problems), :mod:`~studies.newton.direct` (the
measurements without a sweep), :mod:`~studies.newton.analysis` and
:mod:`~studies.newton.figures`; this module holds the study contract.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from studies import common
from studies.newton import figures
from studies.newton.analysis import analyse, geometric_rate, loglog_slope, quadratic_convergence_ratios
from studies.newton.config import FULL, QUICK, Config, check_config
from studies.newton.constants import COST_THEORY, FIRST_ORDER, LABELS, ROSENBROCK_METHODS
from studies.newton.direct import cost_measurements, rosenbrock_paths, spectrum
from studies.newton.sweeps import param_count, specs

__all__ = ["DESCRIPTION", "FIGURES", "Config", "FULL", "QUICK", "check_config", "run", "load", "plot", "report",
           "specs", "analyse", "param_count", "geometric_rate", "loglog_slope", "quadratic_convergence_ratios",
           "ROSENBROCK_METHODS"]

DESCRIPTION = ("Newton vs GD/momentum/Adam: one step on a quadratic, quadratic convergence on logistic "
               "regression, Rosenbrock, damping/CG sweeps on an MLP, cost vs P, Hessian spectra")
FIGURES = {
    "newton_quadratic_logistic": "distance to the minimiser against iteration on a quadratic (Newton: one step) "
                                 "and on logistic regression, and e_k+1 against e_k (Newton's slope 2 vs GD's 1)",
    "newton_rosenbrock": "paths of five methods on the Rosenbrock contours and distance to (1, 1) against iteration",
    "newton_mlp": "digits MLP: final loss against damping (damped and saddle-free Newton), against the CG "
                  "iteration cap (Newton-CG), and the loss curves of the best setting of every method",
    "newton_cost": "time and memory of one step against the parameter count P (log-log) with fitted slopes",
    "newton_spectrum": "Hessian spectral density (SLQ) of the MLP loss at initialisation and after training, "
                       "over the exact eigenvalues of the dense Hessian",
}

def plan(config: Config) -> list:
    """The six sweeps :func:`run` computes, checked before the first runs."""
    check_config(config)
    return list(specs(config).values())


def _results(config: Config, sweep) -> dict:
    check_config(config)
    sweeps = {name: sweep(spec) for name, spec in specs(config).items()}
    direct = {"rosenbrock": rosenbrock_paths(config), "cost": cost_measurements(config), "spectrum": spectrum(config)}
    return analyse(config, sweeps, direct)


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch) the six sweeps, then the direct parts (Rosenbrock paths, cost, spectrum)."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` with the sweeps read from the database (LookupError if one is
    missing); the direct parts (a few seconds: 2-D paths, timings, spectra) are recomputed."""
    return common.load(_results, config, store=store)


def plot(results: dict, outdir="figures") -> list[Path]:
    """The study's five figures (:mod:`studies.newton.figures`)."""
    return figures.plot(results, outdir)


def report(results: dict) -> str:
    q, lg, r, m, cost, s = (results[k] for k in ("quadratic", "logistic", "rosenbrock", "mlp", "cost", "spectrum"))
    cfg = results["config"]
    lines = ["| part | quantity | measured | theory |", "|---|---|---|---|"]
    lines.append(f"| quadratic | Newton f(w_1) / f(w_0), lr 1 (max over starts) | "
                 f"{np.max(q['newton_one_step_loss_ratio']):.2e} | 0 (rounding) |")
    for meth, rate in q["measured_rate"].items():
        lines.append(f"| quadratic | {LABELS[meth]} rate per step | {rate:.4f} | {q['theory_rate'][meth]:.4f} |")
    lines.append(f"| quadratic | Adam best lr / final distance | {q['adam_lr']:g} / "
                 f"{np.median(q['adam_distance'][:, -1]):.2e} | - |")
    lines.append(f"| logistic | Newton max e_k+1 / e_k^2 | {lg['newton_max_ratio']:.3g} | <= {lg['bound_asymptotic']:.3g} "
                 f"near w*; <= {lg['bound_global']:.3g} everywhere |")
    its = lg["iterations_to_target"]
    lines.append(f"| logistic | Newton iterations to e < {lg['target']:.1g} (each start) | "
                 f"{', '.join(str(int(i)) for i in its)} | a few |")
    lines.append(f"| logistic | GD rate per step | {lg['gd_measured_rate']:.4f} | {lg['gd_rate']:.4f} |")
    for meth in ROSENBROCK_METHODS:
        its = r["iterations"][meth]
        shown = str(its) if its >= 0 else f"> {cfg['rosenbrock_budget']} (end {r['final_distance'][meth]:.1e})"
        lines.append(f"| Rosenbrock | {LABELS[meth]}: iterations to ||w - w*|| < {cfg['rosenbrock_tolerance']:g} "
                     f"| {shown} | {'superlinear: tens' if 'newton' in meth else 'linear: thousands'} |")
    for meth, damping in m["best_damping"].items():
        lines.append(f"| MLP (P = {m['P']}) | {LABELS[meth]}: best damping / loss | {damping:g} / "
                     f"{m['best_final'][meth]:.3g} | between 0 (Newton) and inf (GD) |")
    lines.append(f"| MLP | Newton-CG best / loss | {m['curves']['newton_cg']['setting']} / "
                 f"{m['best_final']['newton_cg']:.3g} | - |")
    for meth in FIRST_ORDER:
        lines.append(f"| MLP | {LABELS[meth]} best / loss | {m['curves'][meth]['setting']} / "
                     f"{m['best_final'][meth]:.3g} | - |")
    for meth, row in cost.items():
        theory = COST_THEORY[meth]
        lines.append(f"| cost | {LABELS[meth]}: time / memory slope vs P (P {int(row['P'][0])}-{int(row['P'][-1])}) "
                     f"| {row['time_slope']:.2f} / {row['memory_slope']:.2f} | {theory['time']} / {theory['memory']:g} |")
    for name in ("init", "trained"):
        part = s[name]
        lines.append(f"| spectrum ({name}) | top eigenvalue: SLQ / Lanczos / dense | {part['slq_top']:.4g} / "
                     f"{part['lanczos_top']:.4g} / {part['dense_top']:.4g} | equal |")
        lines.append(f"| spectrum ({name}) | bottom eigenvalue: SLQ / dense; negative mass SLQ / dense | "
                     f"{part['slq_bottom']:.3g} / {part['dense_bottom']:.3g}; {part['slq_negative_mass']:.3f} / "
                     f"{part['dense_negative_fraction']:.3f} | equal in expectation |")
    return "\n".join(lines)
