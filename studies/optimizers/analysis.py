"""The optimizers study's analysis: per problem and optimizer, the best learning rate, its
final loss, steps to target and divergence, and on the quadratic the rates against theory."""
from __future__ import annotations

import math

import numpy as np

from studies import common
from studies.momentum import measured_rate  # the momentum study's rate reading
from studies.optimizers.config import Config, schedule
from studies.optimizers.settings import SETTINGS, learning_rate

median_or_inf = common.median_or_inf


def steps_to_target(curves, eval_steps, target: float) -> np.ndarray:
    """First evaluation step with loss <= ``target`` along the last axis; inf where never."""
    curves = np.asarray(curves, np.float64)
    hit = np.nan_to_num(curves, nan=np.inf) <= target
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(axis=-1), np.asarray(eval_steps, np.float64)[first], np.inf)



def gd_rate(lr: float, eigenvalues) -> float:
    """Exact per-step error contraction of GD at ``lr``: ``max_i |1 - lr lambda_i|``."""
    return float(np.max(np.abs(1.0 - lr * np.asarray(eigenvalues, np.float64))))


def heavy_ball_rate(lr: float, beta: float, eigenvalues) -> float:
    """Exact asymptotic rate of EMA heavy ball (``sgd(lr (1 - beta), momentum=beta)``): the
    largest spectral radius of ``[[1 + beta - a lambda, -beta], [1, 0]]``, ``a = lr (1 - beta)``."""
    lam = np.asarray(eigenvalues, np.float64)
    a = lr * (1.0 - beta)
    mats = np.zeros(lam.shape + (2, 2))
    mats[:, 0, 0], mats[:, 0, 1], mats[:, 1, 0] = 1 + beta - a * lam, -beta, 1.0
    return float(np.abs(np.linalg.eigvals(mats)).max())


def _last_finite(curve) -> float:
    ok = np.flatnonzero(np.isfinite(curve))
    return float(curve[ok[-1]]) if ok.size else np.inf


def analyse_problem(problem: str, c: Config, res) -> dict:
    names = list(res.axes["optimizer"])
    factors = np.asarray(res.axes["lr_factor"], np.float64)
    lrs = np.array([[learning_rate(problem, n, f) for f in factors] for n in names])
    target = schedule(problem, c)[2]
    steps = np.asarray(res.eval_steps)
    curves = res.curves["eval_loss"]                                   # (opt, lr, seed, E)
    hits = steps_to_target(curves, steps, target)                      # (opt, lr, seed)
    # A run the engine froze counts as diverged (+inf) unless it had already reached the target:
    # then the failure is a numerical breakdown after convergence (e.g. 0/0 once the loss
    # underflows), and its last finite loss stands.
    frozen = res.diverged_step >= 0
    broke_down = frozen & (hits <= res.diverged_step)
    diverged = frozen & ~broke_down
    last_finite = np.array([[[_last_finite(c) for c in row] for row in opt] for opt in curves]) if curves.size else \
        np.zeros(curves.shape[:-1])
    final = np.where(broke_down, last_finite, res.final["eval_loss"])
    final = np.where(diverged | ~np.isfinite(final), np.inf, final)
    med, med_steps = median_or_inf(final), median_or_inf(hits)
    best = np.array([np.lexsort((med_steps[i], med[i]))[0] for i in range(len(names))])
    idx = np.arange(len(names))
    q25, q75 = np.percentile(final[idx, best], [25, 75], axis=-1)
    evaluations = res.curves["eval_evaluations"][idx, best]            # (opt, seed, E): cumulative
    total_steps = int(steps[-1])
    out = {
        "optimizers": names, "learning_rates": lrs, "lr_factors": factors, "target": target,
        "eval_steps": steps, "final": final, "median_final": med, "steps_to_target": hits,
        "median_steps": med_steps, "diverged": diverged, "broke_down": broke_down,
        "best_index": best, "best_lr": lrs[idx, best], "best_median": med[idx, best],
        "best_iqr": np.stack([q25, q75], -1), "best_steps": med_steps[idx, best],
        "best_diverged": diverged[idx, best].mean(-1), "best_broke_down": broke_down[idx, best].mean(-1),
        "best_curves": curves[idx, best],                              # (opt, seed, E)
        "extra_per_step": np.nanmedian(np.nanmax(evaluations, -1), -1) / total_steps,
        "compile_seconds": float(res.timings.get("compile_seconds") or 0.0),
        "run_seconds": float(res.timings.get("run_seconds") or 0.0),
    }
    if "eval_test_accuracy" in res.final:
        out["best_test_accuracy"] = np.median(res.final["eval_test_accuracy"][idx, best], -1)
    out["rank"] = np.lexsort((out["best_steps"], out["best_median"]))
    if problem == "quadratic":
        out["theory"] = _quadratic_theory(c, names, out, res)
    return out


def _quadratic_theory(c: Config, names, out, res) -> dict:
    ev = common.spectrum(c.quad_kappa, c.quad_dimension)
    k = c.quad_kappa
    theory = {"kappa": k, "gd_bound": (k - 1) / (k + 1),
              "momentum_bound": (math.sqrt(k) - 1) / (math.sqrt(k) + 1), "rows": {}}
    beta = SETTINGS["heavy_ball"]["beta"]
    fine = np.geomspace(1e-3, 1e3, 4001)
    theory["heavy_ball_beta_bound"] = min(heavy_ball_rate(lr, beta, ev) for lr in fine)
    for name, exact in (("sgd", lambda lr: gd_rate(lr, ev)), ("heavy_ball", lambda lr: heavy_ball_rate(lr, beta, ev))):
        if name not in names:
            continue
        i = names.index(name)
        dist = res.curves["eval_distance"][i, out["best_index"][i]]      # (seed, E)
        rates = measured_rate(dist, res.eval_steps)
        theory["rows"][name] = {"lr": float(out["best_lr"][i]), "measured": float(np.nanmedian(rates)),
                                "measured_seeds": rates, "exact": exact(float(out["best_lr"][i]))}
    return theory

