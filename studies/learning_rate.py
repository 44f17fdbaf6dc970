"""Learning rate: where gradient descent stops working, and what schedules buy.

Three sweeps, each one compiled program per static group:

* **quadratic**: full-batch GD on ``f(w) = 1/2 (w - w*)^T A (w - w*)`` with eigenvalues
  of ``A`` spaced geometrically in ``[lambda_max / condition, lambda_max]``.  GD multiplies
  the error along eigenvector ``i`` by ``1 - lr * lambda_i`` each step, so it diverges
  exactly when ``lr > 2 / lambda_max``.  The start ``w0 = w* + Q 1`` puts the same error on
  every eigenvector.  The measured threshold is the smallest learning rate whose final loss
  exceeds the initial loss (or that diverged), interpolated in log-log between the two grid
  points that bracket it; the grid is dense (``quad_fine_points`` across +-20%) around
  ``2 / lambda_max``.
* **mlp**: mini-batch SGD on an MLP (tanh) on the 8x8 digits, final loss on the whole data
  set against the learning rate, over seeds: too small is slow, too large oscillates then
  diverges.
* **schedules**: the same MLP with each schedule (a static axis: constant, step,
  exponential, cosine, warmup+cosine, one-cycle), the peak learning rate swept per
  schedule; the best rate of each is the one with the lowest median final loss.

A run counts as diverged when the engine froze it (loss not finite or above
``divergence_factor`` times its first loss); its final loss is then taken as +inf.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from lab import optim
from lab.sweep import Problem, Study, SweepSpec
from studies import common

NAME = "learning_rate"
DESCRIPTION = ("final loss vs learning rate: GD on a quadratic against 2/lambda_max, SGD on an MLP "
               "(digits), six schedules at their best rate")
SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine", "onecycle")
DIVERGENCE_FACTOR = 1e3
FIGURES = {
    "learning_rate_quadratic": "final / initial loss of full-batch GD on the ill-conditioned quadratic against the "
                               "learning rate (log-log), with the predicted divergence threshold 2/lambda_max dashed",
    "learning_rate_mlp": "final cross-entropy of SGD on the digits MLP against the learning rate: median over "
                         "seeds with the interquartile band; diverged runs drawn at the ceiling",
    "learning_rate_curves": "training loss against step for three rates: too small (barely moves), the best, "
                            "too large (jumps up, oscillates at a high loss or diverges)",
    "learning_rate_schedules": "training loss against step for each schedule at its best peak rate, and the "
                               "schedule shapes (rate / peak rate against step)",
}


@dataclasses.dataclass(frozen=True)
class Config:
    # quadratic (full-batch GD)
    quad_dim: int = 100                 # dimension of the quadratic
    quad_lambda_max: float = 4.0        # largest Hessian eigenvalue: the threshold is 2 / quad_lambda_max
    quad_condition: float = 1000.0      # lambda_max / lambda_min
    quad_steps: int = 400               # GD steps per run
    quad_coarse_points: int = 31        # log grid over [1e-3, 3] x 2/lambda_max, for the figure
    quad_fine_points: int = 81          # log grid over [0.8, 1.25] x 2/lambda_max, to locate the threshold
    # MLP on the 8x8 digits (mini-batch SGD)
    hidden: int = 64                    # width of the one tanh hidden layer
    batch_size: int = 32                # examples per SGD step
    mlp_steps: int = 2000               # SGD steps per run
    lr_min: float = 1e-3                # smallest learning rate tried
    lr_max: float = 30.0                # largest learning rate tried
    lr_points: int = 16                 # log-spaced rates in [lr_min, lr_max] for the constant-rate sweep
    schedule_lr_min: float = 0.03       # smallest peak rate tried per schedule
    schedule_lr_max: float = 3.0        # largest peak rate tried per schedule
    schedule_lr_points: int = 9         # log-spaced peak rates per schedule
    schedules: tuple = SCHEDULES        # schedule kinds compared (a static axis)
    seeds: int = 5                      # seeds per MLP grid point (init and batch order)
    eval_every: int = 20                # steps between recorded evaluations
    seed: int = 0                       # draws the quadratic's eigenbasis


QUICK = Config(quad_dim=50, quad_steps=200, quad_coarse_points=19, quad_fine_points=41, hidden=32,
               mlp_steps=300, lr_max=10.0, lr_points=13, schedule_lr_min=0.1, schedule_lr_points=6, seeds=3,
               eval_every=10)
FULL = Config()


# --------------------------------------------------------------------------- problems


def _check(config: Config) -> None:
    if not isinstance(config, Config):
        raise TypeError(f"expected a learning_rate.Config, got {type(config).__name__}")
    if config.quad_lambda_max <= 0 or config.quad_condition < 1:
        raise ValueError(f"need quad_lambda_max > 0 and quad_condition >= 1, got {config.quad_lambda_max} "
                         f"and {config.quad_condition}")
    if not 0 < config.lr_min < config.lr_max or not 0 < config.schedule_lr_min < config.schedule_lr_max:
        raise ValueError(f"learning-rate ranges must satisfy 0 < min < max, got lr [{config.lr_min}, "
                         f"{config.lr_max}], schedule_lr [{config.schedule_lr_min}, {config.schedule_lr_max}]")
    unknown = sorted(set(config.schedules) - set(SCHEDULES))
    if unknown or not config.schedules:
        raise ValueError(f"schedules must be a non-empty subset of {SCHEDULES}, got {config.schedules}")
    for name in ("quad_steps", "mlp_steps"):
        if getattr(config, name) % config.eval_every:
            raise ValueError(f"{name}={getattr(config, name)} must be a multiple of eval_every={config.eval_every}")


def quadratic_matrices(config: Config):
    """``(A, eigenvalues, w_star, w0)`` as float32 NumPy arrays (host-side, nothing compiles)."""
    d = config.quad_dim
    eigenvalues = config.quad_lambda_max * np.geomspace(1.0 / config.quad_condition, 1.0, d)
    q, r = np.linalg.qr(np.random.RandomState(config.seed).randn(d, d))
    q = q * np.sign(np.diag(r))[None, :]
    a = (q * eigenvalues[None, :]) @ q.T
    w_star = np.random.RandomState(config.seed + 1).randn(d)
    w0 = w_star + q @ np.ones(d)            # equal error on every eigenvector
    f32 = np.float32
    return (0.5 * (a + a.T)).astype(f32), eigenvalues, w_star.astype(f32), w0.astype(f32)


def initial_quadratic_loss(config: Config) -> float:
    """``f(w0) = 1/2 sum(lambda_i)`` for the start ``w0 = w* + Q 1``."""
    return 0.5 * float(np.sum(quadratic_matrices(config)[1]))


def _quadratic_study(config: Config) -> Study:
    a, _, w_star, w0 = quadratic_matrices(config)

    def make_problem(static):
        def loss(w, xb, yb, key):
            err = w - w_star
            return 0.5 * err @ (a @ err)

        return Problem(init_params=lambda key: w0, loss=loss, x=np.zeros((1, 1), np.float32),
                       y=np.zeros((1,), np.float32))

    return Study(f"{NAME}_quadratic", make_problem, lambda cfg: optim.sgd(cfg["learning_rate"]),
                 hyperparameters={"learning_rate": 0.1}, static={"batch_size": 1},
                 description=common.describe(config, ("quad_dim", "quad_lambda_max", "quad_condition", "seed"),
                                             problem=quadratic_matrices, dtype=str(a.dtype)))


def make_schedule(kind: str, peak, steps: int):
    """The learning-rate schedule ``kind`` with peak value ``peak`` over ``steps`` updates."""
    if kind == "constant":
        return peak
    if kind == "step":       # x0.1 at 50% and again at 75% of training
        return optim.piecewise_constant_schedule(peak, {steps // 2: 0.1, (3 * steps) // 4: 0.1})
    if kind == "exponential":  # smooth decay to 1% of the peak at the end
        return optim.exponential_decay(peak, transition_steps=steps, decay_rate=0.01)
    if kind == "cosine":
        return optim.cosine_decay_schedule(peak, decay_steps=steps)
    if kind == "warmup_cosine":  # linear warmup over the first 10%, then cosine to 0
        return optim.warmup_cosine_decay_schedule(0.0, peak, warmup_steps=max(1, steps // 10), decay_steps=steps)
    if kind == "onecycle":
        return optim.cosine_onecycle_schedule(steps, peak)
    raise ValueError(f"unknown schedule {kind!r}; choose one of {SCHEDULES}")


def _mlp_study(config: Config, name: str) -> Study:
    problem = common.digits_mlp_problem(config.hidden)
    steps = config.mlp_steps

    def make_optimizer(cfg):
        return optim.sgd(make_schedule(cfg["schedule"], cfg["learning_rate"], steps))

    return Study(name, lambda static: problem, make_optimizer, hyperparameters={"learning_rate": 0.1},
                 static={"batch_size": config.batch_size, "schedule": "constant"},
                 description=common.digits_mlp_facts(config.hidden, optimizer=optim.sgd, schedule=make_schedule,
                                                     steps=steps))


def specs(config: Config) -> dict:
    """The three sweeps of the study, by part name."""
    _check(config)
    thr = 2.0 / config.quad_lambda_max
    coarse = thr * np.geomspace(1e-3, 3.0, config.quad_coarse_points)
    fine = thr * np.geomspace(0.8, 1.25, config.quad_fine_points)
    quad_lrs = np.unique(np.concatenate([coarse, fine]))
    quad_lrs = quad_lrs[np.concatenate([[True], np.diff(np.log(quad_lrs)) > 1e-9])]
    mlp_lrs = np.geomspace(config.lr_min, config.lr_max, config.lr_points)
    sched_lrs = np.geomspace(config.schedule_lr_min, config.schedule_lr_max, config.schedule_lr_points)
    common = {"divergence_factor": DIVERGENCE_FACTOR, "eval_every": config.eval_every}
    return {
        "quadratic": SweepSpec(_quadratic_study(config), {"learning_rate": [float(v) for v in quad_lrs]},
                               seeds=1, steps=config.quad_steps, chunk_steps=config.quad_steps, **common),
        "mlp": SweepSpec(_mlp_study(config, f"{NAME}_mlp"), {"learning_rate": [float(v) for v in mlp_lrs]},
                         seeds=config.seeds, steps=config.mlp_steps, chunk_steps=config.mlp_steps, **common),
        "schedules": SweepSpec(_mlp_study(config, f"{NAME}_schedules"),
                               {"schedule": list(config.schedules), "learning_rate": [float(v) for v in sched_lrs]},
                               seeds=config.seeds, steps=config.mlp_steps, chunk_steps=config.mlp_steps, **common),
    }


# --------------------------------------------------------------------------- run / load


def plan(config: Config) -> list:
    """The sweeps :func:`run` computes, checked before the first runs."""
    return list(specs(config).values())


def _results(config: Config, sweep) -> dict:
    return analyse(config, {part: sweep(spec) for part, spec in specs(config).items()})


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch, when already stored) the three sweeps and analyse them."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` rebuilt from the database; LookupError if a sweep is missing."""
    return common.load(_results, config, store=store)


def measure_threshold(lrs, ratios) -> float:
    """The smallest learning rate where ``ratio = final / initial loss`` exceeds 1, found by
    interpolating ``log ratio`` linearly in ``log lr`` between the bracketing grid points
    (their geometric mean when the upper one diverged).  NaN when no rate crosses 1."""
    lrs, ratios = np.asarray(lrs, np.float64), np.asarray(ratios, np.float64)
    above = np.flatnonzero(ratios > 1.0)
    if above.size == 0:
        return math.nan
    k = int(above[0])
    if k == 0:
        return float(lrs[0])
    lo, hi, r0, r1 = lrs[k - 1], lrs[k], ratios[k - 1], ratios[k]
    if not np.isfinite(r1) or r0 <= 0:
        return float(np.sqrt(lo * hi))
    t = -np.log(r0) / (np.log(r1) - np.log(r0))
    return float(np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo))))


def analyse(config: Config, sweeps: dict) -> dict:
    """The results dict from the three SweepResults (no training)."""
    quad, mlp, sched = sweeps["quadratic"], sweeps["mlp"], sweeps["schedules"]
    _, eigenvalues, _, _ = quadratic_matrices(config)
    lambda_max = float(eigenvalues.max())
    initial = initial_quadratic_loss(config)
    quad_lr = np.asarray(quad.axes["learning_rate"])
    quad_ratio = common.final_or_inf(quad)[:, 0] / initial
    predicted = 2.0 / lambda_max
    measured = measure_threshold(quad_lr, quad_ratio)

    mlp_lr = np.asarray(mlp.axes["learning_rate"])
    mlp_final = common.final_or_inf(mlp)                     # (lrs, seeds)
    mlp_median = common.median_or_inf(mlp_final)
    best = int(np.argmin(mlp_median))
    diverged_any = np.any(mlp.diverged_step >= 0, axis=-1)
    large = [i for i in range(best + 1, len(mlp_lr)) if diverged_any[i] or mlp_median[i] > mlp_median[0]]
    large_i = large[0] if large else len(mlp_lr) - 1
    worse = (mlp_median > math.log(10.0)) | diverged_any
    unstable = [i for i in range(best + 1, len(mlp_lr)) if worse[i]]
    curve_index = np.array([0, best, large_i])

    sched_names = tuple(sched.axes["schedule"])
    sched_lr = np.asarray(sched.axes["learning_rate"])
    sched_final = common.final_or_inf(sched)                 # (schedules, lrs, seeds)
    sched_median = common.median_or_inf(sched_final)
    sched_best = np.argmin(sched_median, axis=1)
    rows = np.arange(len(sched_names))
    return {
        "config": dataclasses.asdict(config),
        "sweeps": sweeps,
        "lambda_max": lambda_max, "initial_loss": initial,
        "quad_lr": quad_lr, "quad_ratio": quad_ratio, "quad_diverged_step": quad.diverged_step[:, 0],
        "threshold_predicted": predicted, "threshold_measured": measured,
        "threshold_relative_error": abs(measured - predicted) / predicted,
        "mlp_lr": mlp_lr, "mlp_final": mlp_final, "mlp_median": mlp_median,
        "mlp_best_lr": float(mlp_lr[best]), "mlp_best_loss": float(mlp_median[best]),
        "mlp_unstable_lr": float(mlp_lr[unstable[0]]) if unstable else math.nan,
        "mlp_initial_loss": math.log(10.0),
        "eval_steps": np.asarray(mlp.eval_steps),
        "curve_lrs": mlp_lr[curve_index], "curves": mlp.curves["train_loss"][curve_index],  # (3, seeds, E)
        "curve_diverged_step": mlp.diverged_step[curve_index],
        "schedules": sched_names, "sched_lr": sched_lr, "sched_final": sched_final, "sched_median": sched_median,
        "sched_best_lr": sched_lr[sched_best], "sched_best_loss": sched_median[rows, sched_best],
        "sched_curves": sched.curves["train_loss"][rows, sched_best],   # (schedules, seeds, E)
    }


# --------------------------------------------------------------------------- report and figures


def report(results: dict) -> str:
    """Measured against predicted numbers, as a markdown table."""
    r = results
    lines = ["| quantity | measured | theory | note |", "|---|---|---|---|",
             (f"| GD divergence threshold on the quadratic (lr) | {r['threshold_measured']:.4g} | "
              f"{r['threshold_predicted']:.4g} (2/lambda_max) | relative error "
              f"{100 * r['threshold_relative_error']:.2f}%, lambda_max = {r['lambda_max']:.4g} |"),
             (f"| SGD on the MLP: best constant rate | {r['mlp_best_lr']:.3g} | - | median final loss "
              f"{r['mlp_best_loss']:.4g} (start ln 10 = {r['mlp_initial_loss']:.3f}) |"),
             (f"| SGD on the MLP: smallest rate above the best that ends worse than it started | "
              f"{r['mlp_unstable_lr']:.3g} | - | median final loss > ln 10, or a seed diverged |")]
    for name, lr, loss in zip(r["schedules"], r["sched_best_lr"], r["sched_best_loss"]):
        lines.append(f"| schedule {name}: best peak rate | {lr:.3g} | - | median final loss {loss:.4g} |")
    return "\n".join(lines)


def plot(results: dict, outdir="figures") -> list[Path]:
    """Write the four figures (PNG + SVG each) and return their paths."""
    from lab import plotting

    r, cfg = results, results["config"]
    paths = []

    # 1. quadratic: final / initial loss against lr, with 2/lambda_max; right: zoom on the threshold.
    fig, (ax, zoom) = plotting.figure(2, width=4.8, height=3.8)
    cap = DIVERGENCE_FACTOR
    ratio, lrs = r["quad_ratio"], r["quad_lr"]
    diverged = ~np.isfinite(ratio)
    thr, measured = r["threshold_predicted"], r["threshold_measured"]
    near = (lrs >= 0.8 * thr) & (lrs <= 1.25 * thr)
    for axis, keep, xs in ((ax, np.ones_like(near), lrs), (zoom, near, lrs / thr)):
        axis.plot(xs[keep], common.ceil(ratio, cap)[keep], marker=".", markersize=4, label="GD, final / initial loss")
        axis.plot(xs[keep & diverged], np.full(int((keep & diverged).sum()), cap), "x", color=plotting.PALETTE[3],
                  label=f"diverged (loss > {DIVERGENCE_FACTOR:g} x initial)")
        axis.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
    plotting.theory(ax, thr, label=f"2/lambda_max = {thr:.3g}")
    ax.axvline(measured, color=plotting.PALETTE[2], linewidth=1, label=f"measured threshold = {measured:.4g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final loss / initial loss",
           title=f"GD on a quadratic (d={cfg['quad_dim']}, kappa={cfg['quad_condition']:g}), {cfg['quad_steps']} steps")
    ax.legend(loc="lower left", fontsize=8)
    plotting.theory(zoom, 1.0, label="theory: 2/lambda_max")
    zoom.axvline(measured / thr, color=plotting.PALETTE[2], linewidth=1,
                 label=f"measured: {measured / thr:.4f} x 2/lambda_max")
    zoom.axvspan(0.95, 1.05, color="0.85", alpha=0.5, linewidth=0, label="+-5%")
    zoom.set(yscale="log", xlabel="learning rate / (2 / lambda_max)", ylabel="final loss / initial loss",
             title="zoom on the threshold (fine grid)")
    zoom.legend(loc="center left", fontsize=8)
    paths += plotting.save(fig, outdir, "learning_rate_quadratic")

    # 2. MLP: final loss against lr (median, IQR over seeds), diverged runs at a ceiling.
    fig, ax = plotting.figure(width=5.6, height=3.8)
    finite = r["mlp_final"][np.isfinite(r["mlp_final"])]
    ceiling = 2.0 * max(float(finite.max()) if finite.size else 1.0, r["mlp_initial_loss"])
    plotting.median_band(ax, r["mlp_lr"], common.ceil(r["mlp_final"], ceiling), axis=1, marker=".",
                         label=f"SGD, median and IQR over {r['mlp_final'].shape[1]} seeds")
    plotting.theory(ax, r["mlp_initial_loss"], orientation="h", label="loss at start (ln 10)")
    if not np.all(np.isfinite(r["mlp_final"])):
        ax.axhline(ceiling, color=plotting.PALETTE[3], linestyle=":", linewidth=1, label="diverged runs drawn here")
    ax.axvline(r["mlp_best_lr"], color=plotting.PALETTE[2], linewidth=1, label=f"best lr = {r['mlp_best_lr']:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final cross-entropy (all data)",
           title=f"SGD on MLP 64-{cfg['hidden']}-10 (digits), {cfg['mlp_steps']} steps, batch {cfg['batch_size']}")
    ax.legend(loc="lower left")
    paths += plotting.save(fig, outdir, "learning_rate_mlp")

    # 3. loss curves for three rates.
    fig, ax = plotting.figure(width=5.6, height=3.8)
    steps = r["eval_steps"]
    for label, lr, curves, dsteps in zip(("too small", "best", "too large"), r["curve_lrs"], r["curves"],
                                         r["curve_diverged_step"]):
        note = f", {int(np.sum(dsteps >= 0))}/{len(dsteps)} seeds diverged" if np.any(dsteps >= 0) else ""
        plotting.median_band(ax, steps, curves, axis=0, label=f"{label}: lr = {lr:.3g}{note}")
    ax.set(yscale="log", xlabel="step", ylabel="training loss (mean over each block)",
           title="SGD on the digits MLP: three learning rates (median, IQR)")
    ax.legend()
    paths += plotting.save(fig, outdir, "learning_rate_curves")

    # 4. schedules at their best peak rate, and the schedule shapes.
    fig, (ax, ax_shape) = plotting.figure(2, width=5.2, height=3.8)
    total = cfg["mlp_steps"]
    counts = np.arange(total)
    for i, (name, lr, curves) in enumerate(zip(r["schedules"], r["sched_best_lr"], r["sched_curves"])):
        color = plotting.PALETTE[i % len(plotting.PALETTE)]
        plotting.median_band(ax, steps, curves, axis=0, color=color, label=f"{name} (peak lr {lr:.3g})")
        shape = np.asarray(_schedule_values(name, total, counts), np.float64)
        ax_shape.plot(counts, shape, color=color, label=name)
    ax.set(yscale="log", xlabel="step", ylabel="training loss (mean over each block)",
           title="each schedule at its best peak rate (median, IQR)")
    ax.legend(fontsize=8)
    ax_shape.set(xlabel="step", ylabel="learning rate / peak", title="schedule shapes")
    paths += plotting.save(fig, outdir, "learning_rate_schedules")
    return paths


def _schedule_values(kind: str, steps: int, counts):
    fn = make_schedule(kind, 1.0, steps)
    if not callable(fn):
        return np.full(len(counts), float(fn))
    return np.asarray(fn(jnp.asarray(counts)))
