"""Batch size: steps to a target loss, the gradient noise scale, and what large batches end at.

The problem.  An MLP 64-``hidden``-10 (tanh) trained by plain SGD on a fixed training subset
of the 8x8 digits (the first ``train_size`` images, so that the batch sizes 1, 2, 4, ...,
``train_size`` end at the full batch); the remaining images are the held-out set.  Mini-batches
are drawn without replacement within each epoch (the sweep engine's schedule).

What is measured, in four parts.

* **Steps to target** (Shallue et al. 2019).  For every batch size ``B`` one sweep over a
  shared log-spaced learning-rate grid (dynamic, vmapped) and several seeds; the step budget
  shrinks as ``B`` grows (``budget_min_steps * (1 + budget_noise / B)``, a guess of the shape
  measured below, with room to spare).  Every run evaluates the cross-entropy on the *whole*
  training subset every ``eval_every(B) = budget(B) / evals`` steps; its steps to target is the
  first step where that loss reaches ``target_loss``, interpolated linearly in log loss between
  the two evaluations that bracket the crossing (so the resolution is well below one
  ``eval_every``; a run already below target at its first evaluation is given that step, an
  upper bound).  Runs that never reach it count as infinite.  Per batch size the tuned rate
  is the one with the smallest median (over seeds) steps; its median is the batch size's steps
  to target ``S(B)``, and ``E(B) = B S(B)`` the examples to target.
* **Theory** (McCandlish et al. 2018, "An empirical model of large-batch training").  With an
  optimally tuned rate, ``S = S_min (1 + B_noise / B)`` and ``E = E_min (1 + B / B_noise)``,
  ``E_min = S_min B_noise``: perfect scaling (``S ~ 1/B``) for ``B << B_noise`` and
  diminishing returns (``S -> S_min``) for ``B >> B_noise``.  ``S_min`` and ``B_noise`` are
  fitted to the measured ``S(B)`` by least squares on the relative error
  (``S = a + b / B`` is linear in ``a = S_min`` and ``b = S_min B_noise``).  Beside it, the
  *simple noise scale* ``B_simple = tr(Sigma) / |G|^2`` is measured exactly on the training
  subset, from per-example gradients (``vmap(grad)``): ``G`` the full-batch gradient and
  ``tr(Sigma) = mean_i |g_i - G|^2``.  It is taken at three points of one full-batch gradient
  descent path from seed 0's initialisation (rate ``noise_lr``): the start, where the loss
  first reaches the geometric mean of the start loss and the target ("halfway" in log loss),
  and where it reaches the target.  McCandlish et al. find ``B_simple`` tracks the critical
  batch size up to a factor (it ignores the curvature weighting in ``tr(H Sigma) / G^T H G``)
  and grows as the loss falls; the ratio ``B_noise / B_simple`` is reported, not judged.
* **Gradient-estimate noise.**  At each of those three points, ``|g_B - G|^2`` for
  ``noise_draws`` mini-batches of each size drawn without replacement, where ``g_B`` is the
  mean of the per-example gradients in the batch (the gradient of the batch's mean loss),
  against the exact finite-population formula
  ``E |g_B - G|^2 = tr(Sigma) / B * (N - B) / (N - 1)`` (zero at the full batch, ``B = N``:
  gradient descent has no gradient noise).  The mean over draws has a standard error the
  sample itself gives; the figure shows it and the test checks the formula within it.
  (Computed on the host in float64 from the Gram matrix of the centred per-example gradients.)
* **Generalisation gap and sharpness at the target.**  Compared *at the same training loss*,
  not after a fixed number of epochs (which would leave the large batches far less trained
  and confound the gap with under-fitting).  The gap is held-out minus training cross-entropy
  of each seed at the tuned rate at its first evaluation at or below the target (read from the
  tuning sweep).  The sharpness, the top Hessian eigenvalue of the training loss on the whole
  training subset (``SweepSpec(sharpness_iters=...)``, Lanczos), is recorded by one more sweep
  per batch size in ``sharpness_batch_sizes``: the tuned rate, all seeds, trained for the
  median steps to target rounded up to an evaluation of the tuning sweep, one evaluation at
  the end (it costs one more compiled program per batch size, hence the subset in QUICK).
  Reference: gradient descent on a quadratic is stable only while the sharpness stays below
  ``2 / lr`` (drawn dashed); Keskar et al. (2017) report sharper minima and larger gaps for
  large batches.

Layout (imports run one way): :mod:`~studies.batch_size.config`,
:mod:`~studies.batch_size.sweeps` (problem and sweeps), :mod:`~studies.batch_size.noise`
(the host-side gradient-noise part), :mod:`~studies.batch_size.analysis` and
:mod:`~studies.batch_size.figures`; this module holds the study contract.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studies import common
from studies.batch_size import figures
from studies.batch_size.analysis import analyse_tuning, crossing_steps, finish, fit_steps, predicted_steps, target_plan
from studies.batch_size.config import (
    CHECKPOINTS,
    DIVERGENCE_FACTOR,
    FULL,
    QUICK,
    Config,
    check,
    learning_rates,
    schedule,
)
from studies.batch_size.noise import (
    finite_population_noise,
    gd_checkpoints,
    gradient_noise,
    minibatch_noise,
    noise_statistics,
    per_example_gradients,
)
from studies.batch_size.sweeps import NAME, _digits, _net, target_spec, tuning_specs

__all__ = ["NAME", "DESCRIPTION", "FIGURES", "Config", "FULL", "QUICK", "check", "run", "load", "plot", "report",
           "tuning_specs", "target_spec", "learning_rates", "schedule", "crossing_steps", "fit_steps",
           "predicted_steps", "finite_population_noise", "noise_statistics", "minibatch_noise",
           "per_example_gradients", "gd_checkpoints", "gradient_noise", "CHECKPOINTS", "DIVERGENCE_FACTOR",
           "_digits", "_net"]

DESCRIPTION = ("steps to a target loss vs batch size with the rate tuned per batch size, against "
               "S_min (1 + B_noise / B) and the measured noise scale B_simple; gradient noise vs batch; gap and "
               "sharpness at the target")
FIGURES = {
    "batch_size_steps": "steps (left) and examples (right) to the target training loss against batch size, each at "
                        "its tuned rate, with the fit S_min (1 + B_noise/B), perfect scaling S ~ 1/B, and the "
                        "fitted B_noise and measured B_simple as vertical lines",
    "batch_size_gradient_noise": "mean squared error of the mini-batch gradient |g_B - G|^2 against batch size at "
                                 "three points of training, against tr(Sigma)/B (N-B)/(N-1) (dashed), and the "
                                 "measured / predicted ratio with its standard error",
    "batch_size_gap_sharpness": "held-out minus training cross-entropy, and the top Hessian eigenvalue, against "
                                "batch size, each batch size trained at its tuned rate to the target loss",
    "batch_size_learning_rate": "steps to target against learning rate for every batch size (the tuning curves), "
                                "and the tuned rate against batch size with the linear-scaling rule lr ~ B",
}


def plan(config: Config) -> list:
    """The tuning sweeps, and for each batch size a sharpness sweep of the shape the tuning
    will choose (its rate and length come from the tuning, so a placeholder stands in)."""
    check(config)
    return tuning_specs(config) + [target_spec(config, b, 1.0, config.budget_min_steps)
                                   for b in config.sharpness_batch_sizes]


def _results(config: Config, sweep) -> dict:
    tuning_sweeps = [sweep(spec) for spec in tuning_specs(config)]
    plan = target_plan(config, analyse_tuning(config, tuning_sweeps))
    target_sweeps = [None if item is None else sweep(target_spec(config, *item)) for item in plan]
    return finish(config, tuning_sweeps, target_sweeps, plan)


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch) the tuning sweeps, then the sharpness sweeps they define, and measure the
    gradient noise (host side)."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` rebuilt from the database (LookupError if a sweep is missing);
    the gradient-noise part (seconds, deterministic) is recomputed."""
    return common.load(_results, config, store=store)


def plot(results: dict, outdir="figures") -> list[Path]:
    """Write the four figures (:mod:`studies.batch_size.figures`) and return their paths."""
    return figures.plot(results, outdir)


def report(results: dict) -> str:
    """Per batch size: tuned rate, steps and examples to target (measured and fitted), gap and
    sharpness at the target; then the fit, B_simple and the gradient-noise check."""
    t, g, n = results["tuning"], results["target"], results["noise"]
    cfg = results["config"]
    sharp = {int(b): common.nan_median(s) for b, s in zip(g["batch_sizes"], g["sharpness"])}
    lines = [("| batch | tuned lr | steps to target | fit S_min (1 + B_noise/B) | examples to target | "
              "eval every | gap (held-out - train) | sharpness | 2 / lr |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for i, b in enumerate(t["batch_sizes"]):
        edge = " (grid edge)" if t["edge"][i] and np.isfinite(t["steps"][i]) else ""
        s = sharp.get(int(b), math.nan)
        lines.append(f"| {b} | {t['tuned_lr'][i]:.3g}{edge} | {t['steps'][i]:.4g} | {t['fit'][i]:.4g} | "
                     f"{t['examples'][i]:.4g} | {t['eval_every'][i]} | {common.nan_median(t['gap'][i]):.3g} | "
                     f"{'-' if math.isnan(s) else f'{s:.3g}'} | {2.0 / t['tuned_lr'][i]:.3g} |")
    lines.append("")
    lines.append(f"Target: training cross-entropy {cfg['target_loss']:g} on the {cfg['train_size']} training images; "
                 f"steps are medians over {cfg['seeds']} seeds at the tuned rate, interpolated in log loss between "
                 f"evaluations; gap at the first evaluation at or below the target.")
    lines.append(f"Fit (McCandlish et al. 2018): S_min = {t['s_min']:.4g} steps, B_noise = {t['b_noise']:.4g}, "
                 f"E_min = {t['e_min']:.4g} examples.")
    for i, name in enumerate(n["checkpoints"]):
        lines.append(f"Measured B_simple = tr(Sigma)/|G|^2 at the {name} of the GD path (step {n['step'][i]}, "
                     f"loss {n['loss'][i]:.3g}): {n['b_simple'][i]:.4g}; B_noise / B_simple = "
                     f"{t['b_noise'] / n['b_simple'][i]:.3g}.")
    lines.append(f"Gradient noise E|g_B - G|^2 over {n['draws']} batches per size against tr(Sigma)/B (N-B)/(N-1): "
                 f"max relative error {n['max_relative_error']:.3g}, max |z| = {n['max_z']:.2f} standard errors; "
                 f"at the full batch {np.max(np.abs(n['full_batch_noise'])):.2g} (theory 0).")
    return "\n".join(lines)
