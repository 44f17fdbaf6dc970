"""The batch-size study's analysis of the sweeps: steps to target per run, the tuned rate per
batch size, the fit ``S = S_min (1 + B_noise / B)``, and the gap and sharpness at the target."""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from studies.batch_size.config import Config, learning_rates
from studies.batch_size.noise import gradient_noise


def crossing_steps(curves, eval_steps, target: float) -> np.ndarray:
    """First step where each loss curve (last axis, at ``eval_steps``) reaches ``target``,
    interpolated linearly in log loss between the bracketing evaluations; ``eval_steps[0]``
    when the first evaluation is already at or below target; +inf when never (NaN entries,
    from diverged runs, count as not reached)."""
    curves = np.asarray(curves, np.float64)
    steps = np.asarray(eval_steps, np.float64)
    below = np.nan_to_num(curves, nan=np.inf) <= target
    first = np.argmax(below, axis=-1)
    reached = np.any(below, axis=-1)
    prev = np.maximum(first - 1, 0)
    l0 = np.take_along_axis(curves, prev[..., None], -1)[..., 0]
    l1 = np.take_along_axis(curves, first[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (np.log(l0) - np.log(target)) / (np.log(l0) - np.log(l1))
    frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
    out = steps[prev] + frac * (steps[first] - steps[prev])
    out = np.where(first == 0, steps[0], out)
    return np.where(reached, out, np.inf)


def fit_steps(batch_sizes, steps) -> tuple[float, float]:
    """``(S_min, B_noise)`` of ``S = S_min (1 + B_noise / B)`` by least squares on the relative
    error ``(S_min + S_min B_noise / B) / S - 1`` over the finite points; NaN with fewer than two."""
    b, s = np.asarray(batch_sizes, np.float64), np.asarray(steps, np.float64)
    ok = np.isfinite(s) & (s > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    design = np.stack([1.0 / s[ok], 1.0 / (b[ok] * s[ok])], axis=1)
    (a, c), *_ = np.linalg.lstsq(design, np.ones(int(ok.sum())), rcond=None)
    return float(a), float(c / a) if a != 0 else math.nan


def predicted_steps(batch_sizes, s_min: float, b_noise: float) -> np.ndarray:
    return s_min * (1.0 + b_noise / np.asarray(batch_sizes, np.float64))



def _at_crossing(result, lr_index: int, target: float) -> dict:
    """Per seed, the metrics of the tuned rate at its first evaluation at or below target (NaN if none)."""
    train_loss = result.curves["eval_train_loss"][0, lr_index]                   # (seeds, E)
    below = np.nan_to_num(train_loss, nan=np.inf) <= target
    first = np.argmax(below, axis=-1)[:, None]

    def pick(name):
        return np.where(below.any(-1), np.take_along_axis(result.curves[name][0, lr_index], first, -1)[:, 0], np.nan)
    return {"train_loss": pick("eval_train_loss"), "heldout_loss": pick("eval_heldout_loss"),
            "heldout_accuracy": pick("eval_heldout_accuracy"), "train_accuracy": pick("eval_train_accuracy")}


def analyse_tuning(config: Config, sweeps) -> dict:
    lrs = learning_rates(config)
    sizes = np.asarray(config.batch_sizes, np.int64)
    per_run = np.stack([crossing_steps(r.curves["eval_train_loss"][0], r.eval_steps, config.target_loss)
                        for r in sweeps])                                       # (B, lr, seed)
    medians = np.median(per_run, axis=-1)                                      # (B, lr)
    best = np.argmin(medians, axis=1)
    rows = np.arange(len(sizes))
    steps = medians[rows, best]
    tuned_lr = np.where(np.isfinite(steps), lrs[best], np.nan)
    s_min, b_noise = fit_steps(sizes, steps)
    at = [_at_crossing(r, int(i), config.target_loss) for r, i in zip(sweeps, best)]
    at = {k: np.stack([a[k] for a in at]) for k in at[0]}                      # (B, seed) each
    return {"batch_sizes": sizes, "learning_rates": lrs, "steps_per_run": per_run, "median_steps": medians,
            "best_index": best, "tuned_lr": tuned_lr, "steps": steps, "examples": steps * sizes,
            "steps_at_tuned": per_run[rows, best], "budget": np.asarray([int(r.eval_steps[-1]) for r in sweeps]),
            "eval_every": np.asarray([int(r.eval_steps[0]) for r in sweeps]),
            "edge": (best == 0) | (best == len(lrs) - 1), "s_min": s_min, "b_noise": b_noise,
            "e_min": s_min * b_noise, "fit": predicted_steps(sizes, s_min, b_noise),
            "gap": at["heldout_loss"] - at["train_loss"], "at_target": at,
            "curves": [r.curves["eval_train_loss"][0, i] for r, i in zip(sweeps, best)],   # (seed, E) per B
            "curve_steps": [np.asarray(r.eval_steps) for r in sweeps]}


def target_plan(config: Config, tuning: dict) -> list:
    """``(batch_size, lr, steps)`` of each sharpness sweep: the tuned rate for the median steps to
    target rounded up to an evaluation of the tuning sweep; None where the target was never reached."""
    plan = []
    for b in config.sharpness_batch_sizes:
        i = config.batch_sizes.index(b)
        s, every = tuning["steps"][i], int(tuning["eval_every"][i])
        plan.append(None if not np.isfinite(s) else (int(b), float(tuning["tuned_lr"][i]),
                                                     every * max(1, math.ceil(s / every))))
    return plan


def _analyse_target(config: Config, plan, sweeps) -> dict:
    shape = (len(plan), config.seeds)
    out = {k: np.full(shape, np.nan) for k in ("train_loss", "heldout_loss", "sharpness")}
    steps = np.full(len(plan), np.nan)
    for i, (item, result) in enumerate(zip(plan, sweeps)):
        if item is None:
            continue
        steps[i] = item[2]
        healthy = result.diverged_step[0, 0] < 0
        for key, metric in (("train_loss", "eval_train_loss"), ("heldout_loss", "eval_heldout_loss"),
                            ("sharpness", "sharpness")):
            out[key][i] = np.where(healthy, result.final[metric][0, 0], np.nan)
    lr = np.array([np.nan if item is None else item[1] for item in plan])
    return {"batch_sizes": np.asarray(config.sharpness_batch_sizes, np.int64), "steps": steps, "lr": lr, **out}


def finish(config: Config, tuning_sweeps, target_sweeps, plan) -> dict:
    return {"config": dataclasses.asdict(config), "tuning": analyse_tuning(config, tuning_sweeps),
            "target": _analyse_target(config, plan, target_sweeps), "noise": gradient_noise(config),
            "sweeps": {"tuning": list(tuning_sweeps), "target": list(target_sweeps)}}
