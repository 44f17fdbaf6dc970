"""The Newton study's analysis: rates and slopes read from measured sequences, and the results
dict built from the sweeps and the direct measurements (:func:`analyse`, no training)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from lab.sweep import run_keys
from studies import common
from studies.newton.config import Config
from studies.newton.constants import FIRST_ORDER, MLP_SECOND_ORDER, QUAD_METHODS
from studies.newton.sweeps import logistic_problem, logistic_setup, logistic_static, param_count, quad_theory_rate


def loglog_slope(x, y) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (NaN with fewer than two finite points)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def geometric_rate(distance, floor: float) -> float:
    """Per-step contraction of ``distance`` (one run, every step): ``exp`` of the slope of
    ``log distance`` over the later half of the points above ``floor``."""
    d = np.asarray(distance, np.float64)
    return float(common.contraction_rate(d, np.arange(d.shape[-1]), floor))



def quadratic_convergence_ratios(errors, floor: float) -> np.ndarray:
    """``e_{k+1} / e_k^2`` for every k where both errors lie above ``floor`` (NaN elsewhere)."""
    e = np.asarray(errors, np.float64)
    before, after = e[..., :-1], e[..., 1:]
    ok = (before > floor) & (after > floor) & np.isfinite(before) & np.isfinite(after)
    return np.where(ok, after / np.where(ok, before, 1.0) ** 2, np.nan)



def analyse(c: Config, sweeps: dict, extra: dict) -> dict:
    """The results dict from the sweeps and the direct (non-sweep) measurements."""
    quad, qadam = sweeps["quad"], sweeps["quad_adam"]
    q_dist = quad.curves["eval_distance"]                       # (methods, seeds, steps)
    q_first = quad.curves["train_loss"][..., 0]                 # loss before step 1, (methods, seeds)
    a_final = np.median(common.final_or_inf(qadam, "eval_distance")[0], axis=-1)  # (lrs,)
    best_adam = int(np.nanargmin(np.where(np.isfinite(a_final), a_final, np.nan)))
    floor = 1e3 * float(np.finfo(common.np_float()).eps)
    q_rates = {m: float(np.median([geometric_rate(q_dist[i, s], floor) for s in range(q_dist.shape[1])]))
               for i, m in enumerate(QUAD_METHODS) if m != "newton"}
    newton_i = QUAD_METHODS.index("newton")
    quadratic = {
        "steps": quad.eval_steps, "methods": QUAD_METHODS, "distance": q_dist,
        "initial_distance": np.ones(q_dist.shape[1]),
        "adam_distance": qadam.curves["eval_distance"][0, best_adam], "adam_lr": float(c.quad_adam_lrs[best_adam]),
        "newton_one_step_loss_ratio": quad.curves["eval_loss"][newton_i, :, 0] / q_first[newton_i],
        "newton_one_step_distance": q_dist[newton_i, :, 0],
        "measured_rate": q_rates,
        "theory_rate": {m: quad_theory_rate(m, c.quad_kappa) for m in q_rates},
        "kappa": c.quad_kappa,
    }

    lg = sweeps["logistic"]
    setup = logistic_setup(c.logistic_examples, c.logistic_features, float(c.logistic_l2))
    errors = lg.curves["eval_error"]                            # (2, seeds, steps)
    e0 = np.linalg.norm(logistic_initial_points(c) - setup["w_star"][None], axis=1)  # (seeds,)
    full = np.concatenate([np.broadcast_to(e0, errors.shape[:2])[..., None], errors], axis=-1)
    err_floor = 100 * float(np.finfo(common.np_float()).eps) * max(1.0, float(np.linalg.norm(setup["w_star"])))
    ratios = quadratic_convergence_ratios(full[0], err_floor)  # Newton, (seeds, steps)
    target = max(1e-10, 10 * err_floor)   # 1e-10 in float64; float32 stops near 1e-6
    below = full[0] < target
    logistic = {
        "errors": full, "steps": np.arange(full.shape[-1]), "newton_ratios": ratios,
        "newton_max_ratio": float(np.nanmax(ratios)) if np.isfinite(ratios).any() else math.nan,
        "iterations_to_target": np.where(below.any(-1), below.argmax(-1), -1), "target": target,
        "gd_measured_rate": float(np.median([geometric_rate(full[1, s], err_floor) for s in range(full.shape[1])])),
        "floor": err_floor,
        **{k: setup[k] for k in ("kappa", "gd_lr", "gd_rate", "hessian_lipschitz", "bound_global",
                                 "bound_asymptotic", "grad_norm_at_star")},
    }

    damp, cg, first = sweeps["damping"], sweeps["cg"], sweeps["first_order"]
    dampings = np.asarray(damp.axes["damping"], np.float64)
    d_final = common.final_or_inf(damp)                                       # (2, dampings, seeds)
    d_median = np.median(d_final, axis=-1)
    cg_final = common.final_or_inf(cg)[0, :, 0]                               # (caps, seeds)
    f_final = common.final_or_inf(first)                                      # (2, lrs, seeds)
    curves = {}
    for i, m in enumerate(MLP_SECOND_ORDER):
        j = int(np.argmin(d_median[i]))
        curves[m] = {"setting": f"damping {dampings[j]:g}", "loss": damp.curves["eval_loss"][i, j]}
    k = int(np.argmin(np.median(cg_final, axis=-1)))
    curves["newton_cg"] = {"setting": f"{c.mlp_cg_iterations[k]} CG its", "loss": cg.curves["eval_loss"][0, k, 0]}
    for i, m in enumerate(FIRST_ORDER):
        j = int(np.argmin(np.median(f_final[i], axis=-1)))
        curves[m] = {"setting": f"lr {c.mlp_learning_rates[j]:g}", "loss": first.curves["eval_loss"][i, j]}
    mlp = {"P": param_count(c), "dampings": dampings, "damping_final": d_final,
           "best_damping": {m: float(dampings[int(np.argmin(d_median[i]))]) for i, m in enumerate(MLP_SECOND_ORDER)},
           "cg_iterations": np.asarray(c.mlp_cg_iterations), "cg_final": cg_final,
           "learning_rates": np.asarray(c.mlp_learning_rates), "first_order_final": f_final,
           "steps": damp.eval_steps, "curves": curves,
           "best_final": {m: float(np.median(v["loss"][..., -1])) for m, v in curves.items()}}
    return {"config": dataclasses.asdict(c), "quadratic": quadratic, "logistic": logistic, "mlp": mlp,
            "rosenbrock": extra["rosenbrock"], "cost": extra["cost"], "spectrum": extra["spectrum"],
            "sweeps": sweeps}


def logistic_initial_points(c: Config) -> np.ndarray:
    """The sweep's initial points, rebuilt from the seeds as the engine draws them."""
    problem = logistic_problem(logistic_static(c))
    return np.stack([np.asarray(problem.init_params(run_keys(s).params), np.float64)
                     for s in range(c.logistic_seeds)])

