"""Learning-rate-free methods: does the default work, and how far off may the multiplier be?

Claim.  Prodigy (Mishchenko & Defazio 2024), D-Adaptation (Defazio & Mishchenko 2023), DoG
(Ivgi, Hinder & Carmon 2023), DoWG (Khaled, Mishchenko & Jin 2023), COCOB (Orabona &
Tommasi 2017) and Mechanic (Cutkosky, Defazio & Mehta 2023) estimate their own step size;
their ``learning_rate`` is a multiplier whose default, 1, is meant to need no tuning
(in optax's COCOB, and so here, it scales the gradient, to which COCOB is invariant: its
curve is flat by construction).
AdamW needs its learning rate tuned.  The study measures, on one problem, the final loss of
each method against its multiplier, beside AdamW's against its learning rate.

Problem.  The digits MLP 64-``hidden``-10 (tanh), softmax cross-entropy on all 1,797
images, mini-batches of ``batch_size``, ``steps`` steps (one sweep through the engine: one
compiled program per method, the multiplier a dynamic axis, ``seeds`` seeds).  AdamW's
learning rate is ``multiplier x ADAMW_BASE`` (weight decay 1e-4); Mechanic wraps Adam at
``multiplier x ADAMW_BASE`` (its own scale is learned on top); the others take
``learning_rate = multiplier``.  Schedule-free AdamW is left out: it is meant to be
evaluated at its averaged point, which the engine does not evaluate.

Measured (median over seeds of the final full-set loss, +inf where a run diverged): for
each method the loss at multiplier 1 (the default), its best over the grid and where, and
the width in decades of the multipliers whose loss is within ``GOOD_FACTOR`` of the best
loss of tuned AdamW (the grid's best AdamW run).  A method "needs no tuning here" when its
default lies inside that range.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from lab import optim, plotting
from lab.sweep import Study, SweepSpec
from studies import common

NAME = "lr_free"
DESCRIPTION = ("learning-rate-free methods (Prodigy, D-Adaptation, DoG, DoWG, COCOB, Mechanic): final loss "
               "against the learning-rate multiplier on the digits MLP, beside tuned AdamW")
FIGURES = {
    "lr_free_sensitivity": "final full-set loss (median and IQR over seeds) against the learning-rate multiplier "
                           "for each learning-rate-free method and for AdamW (multiplier x 1e-3); the band of "
                           "losses within 1.5x of tuned AdamW's best shaded, the default multiplier 1 dashed",
}
ADAMW_BASE = 1e-3      # AdamW's (and Mechanic's inner Adam's) learning rate at multiplier 1
GOOD_FACTOR = 1.5      # "good" = final loss within this factor of tuned AdamW's best
DIVERGENCE_FACTOR = 1e3
METHODS = ("adamw", "prodigy", "dadapt_adamw", "dog", "dowg", "cocob", "mechanic")


@dataclasses.dataclass(frozen=True)
class Config:
    methods: tuple[str, ...] = METHODS
    hidden: int = 32                  # MLP 64-hidden-10
    batch_size: int = 64
    steps: int = 1500
    eval_every: int = 50
    multiplier_min: float = 1e-3      # the multiplier grid, geometric
    multiplier_max: float = 1e3
    multiplier_points: int = 13
    seeds: int = 3


FULL = Config()
QUICK = Config(steps=400, eval_every=20, multiplier_points=7, seeds=2)


def check(config: Config) -> None:
    """Raise ValueError naming the first unusable field of ``config``."""
    if not isinstance(config, Config):
        raise TypeError(f"expected an lr_free.Config, got {type(config).__name__}")
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown or not config.methods:
        raise ValueError(f"methods must be a non-empty subset of {', '.join(METHODS)}; unknown: {unknown}")
    if "adamw" not in config.methods:
        raise ValueError("methods must include adamw, the tuned baseline every method is compared with")
    if not config.multiplier_min < config.multiplier_max:
        raise ValueError(f"need multiplier_min < multiplier_max, got {config.multiplier_min} and "
                         f"{config.multiplier_max}")
    if config.steps % config.eval_every:
        raise ValueError(f"steps={config.steps} must be a multiple of eval_every={config.eval_every}")


def build_optimizer(method: str, multiplier) -> optim.Optimizer:
    """``method`` at learning-rate multiplier ``multiplier`` (a float or a traced array)."""
    if method == "adamw":
        return optim.adamw(multiplier * ADAMW_BASE, weight_decay=1e-4)
    if method == "mechanic":
        return optim.mechanize(optim.adam(multiplier * ADAMW_BASE))
    return getattr(optim, method)(learning_rate=multiplier)


def _make_problem(static):
    return common.digits_mlp_problem(static["hidden"])


STUDY = Study(NAME, _make_problem, lambda c: build_optimizer(c["method"], c["multiplier"]),
              hyperparameters={"multiplier": 1.0}, static={"batch_size": 64, "hidden": 32, "method": "adamw"},
              description=common.digits_mlp_facts(32, adamw_base=ADAMW_BASE, optimizers=build_optimizer,
                                                  adamw_weight_decay=1e-4))


def multipliers(config: Config) -> np.ndarray:
    return np.geomspace(config.multiplier_min, config.multiplier_max, config.multiplier_points)


def spec(config: Config) -> SweepSpec:
    check(config)
    study = dataclasses.replace(
        STUDY, static={"batch_size": config.batch_size, "hidden": config.hidden, "method": "adamw"},
        description=common.digits_mlp_facts(config.hidden, adamw_base=ADAMW_BASE, optimizers=build_optimizer,
                                            adamw_weight_decay=1e-4))
    return SweepSpec(study, {"method": list(config.methods), "multiplier": [float(m) for m in multipliers(config)]},
                     seeds=config.seeds, steps=config.steps, eval_every=config.eval_every,
                     chunk_steps=config.steps, divergence_factor=DIVERGENCE_FACTOR)


def plan(config: Config) -> list:
    """The one sweep :func:`run` computes."""
    return [spec(config)]


# --------------------------------------------------------------------------- analysis


def good_range(mults: np.ndarray, losses: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """``(low, high, decades)``: the widest run of adjacent grid points whose loss is at most
    ``threshold`` (NaN, NaN, 0 when none is)."""
    good = np.isfinite(losses) & (losses <= threshold)
    best_len, best = 0, (math.nan, math.nan)
    i = 0
    while i < len(good):
        if good[i]:
            j = i
            while j + 1 < len(good) and good[j + 1]:
                j += 1
            if j - i + 1 > best_len:
                best_len, best = j - i + 1, (float(mults[i]), float(mults[j]))
            i = j + 1
        else:
            i += 1
    decades = 0.0 if best_len == 0 else math.log10(best[1] / best[0])
    return best[0], best[1], decades


def analyse(config: Config, sweep) -> dict:
    mults = multipliers(config)
    final = common.final_or_inf(sweep)                        # (methods, multipliers, seeds)
    median = common.median_or_inf(final, axis=-1)             # (methods, multipliers)
    methods = list(sweep.axes["method"])
    adamw_best = float(np.min(median[methods.index("adamw")]))
    threshold = GOOD_FACTOR * adamw_best
    default = int(np.argmin(np.abs(np.log(mults))))           # the grid point nearest multiplier 1
    rows = {}
    for i, m in enumerate(methods):
        low, high, decades = good_range(mults, median[i], threshold)
        best = int(np.argmin(median[i]))
        rows[m] = {"default_loss": float(median[i, default]), "best_loss": float(median[i, best]),
                   "best_multiplier": float(mults[best]), "good_low": low, "good_high": high,
                   "good_decades": decades, "default_is_good": bool(median[i, default] <= threshold)}
    return {"config": dataclasses.asdict(config), "sweep": sweep, "multipliers": mults, "methods": methods,
            "final": final, "median": median, "adamw_best": adamw_best, "threshold": threshold,
            "default_multiplier": float(mults[default]), "rows": rows}


def _results(config: Config, sweep) -> dict:
    return analyse(config, sweep(spec(config)))


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch) the sweep and analyse it."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` from the database (LookupError when the sweep is missing)."""
    return common.load(_results, config, store=store)


# --------------------------------------------------------------------------- figure and report


def plot(results: dict, outdir="figures") -> list[Path]:
    mults, final = results["multipliers"], results["final"]
    finite = final[np.isfinite(final)]
    ceiling, floor = 10 * float(np.max(finite)), float(np.min(finite)) / 3
    fig, ax = plotting.figure(1, width=6.4, height=5.0)
    for i, m in enumerate(results["methods"]):
        style = dict(color="0.1", linewidth=2.2) if m == "adamw" else {}
        label = f"AdamW (lr = multiplier x {ADAMW_BASE:g})" if m == "adamw" else m
        plotting.median_band(ax, mults, common.ceil(final[i], ceiling), axis=-1, label=label, **style)
    ax.axhspan(floor, results["threshold"], color="0.85", zorder=0,
               label=f"within {GOOD_FACTOR:g}x of tuned AdamW ({results['adamw_best']:.3g})")
    plotting.theory(ax, 1.0, label="default multiplier 1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(floor, 2 * ceiling)
    ax.set_xlabel("learning-rate multiplier")
    ax.set_ylabel("final full-set loss (diverged runs at the top)")
    c = results["config"]
    ax.set_title(f"digits MLP 64-{c['hidden']}-10, batch {c['batch_size']}, {c['steps']} steps; "
                 f"median over {final.shape[-1]} seeds", fontsize=9)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
    return list(plotting.save(fig, outdir, "lr_free_sensitivity"))


def report(results: dict) -> str:
    lines = [f"Tuned AdamW's best final loss: {results['adamw_best']:.4g} (\"good\": <= {results['threshold']:.4g}, "
             f"{GOOD_FACTOR:g}x that); the default is the grid point {results['default_multiplier']:g}.", "",
             "| method | loss at the default | best loss (multiplier) | good multipliers | decades | default good? |",
             "|---|---|---|---|---|---|"]
    for m, r in results["rows"].items():
        span = "none" if r["good_decades"] == 0 and math.isnan(r["good_low"]) else \
            f"{r['good_low']:.3g} .. {r['good_high']:.3g}"
        lines.append(f"| {m} | {r['default_loss']:.4g} | {r['best_loss']:.4g} ({r['best_multiplier']:.3g}) | {span} | "
                     f"{r['good_decades']:.1f} | {'yes' if r['default_is_good'] else 'no'} |")
    return "\n".join(lines)
