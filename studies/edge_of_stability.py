"""Edge of stability: full-batch gradient descent drives the sharpness up to 2/eta and holds it there.

Theory.  On a quadratic with curvature ``lambda``, gradient descent with step size ``eta``
multiplies the error along that eigenvector by ``1 - eta lambda`` each step, so it is stable
only while ``lambda < 2 / eta``.  For a neural network the *sharpness* (the largest eigenvalue
of the Hessian of the training loss) changes along the path.  Cohen et al. (ICLR 2021,
"Gradient descent on neural networks typically occurs at the edge of stability") found two
regimes: *progressive sharpening*, the sharpness rising while it is below ``2 / eta``, and the
*edge of stability*, where it stops at about ``2 / eta`` and hovers there (at or slightly above)
while the loss keeps falling, non-monotonically, over long times.  The quadratic model
predicts divergence once the sharpness passes ``2 / eta``; the network instead regulates it.

Problem.  The Chebyshev fit: ``points`` Chebyshev nodes ``x_k = cos(pi (k + 1/2) / points)``
on [-1, 1], target the Chebyshev polynomial ``T_degree(x)``, a ``1-hidden-hidden-1`` tanh MLP
(Glorot-normal weights, zero biases), mean squared error ``mean_k (f(x_k) - y_k)^2`` (no 1/2).
Training is full-batch gradient descent (``lab.optim.sgd`` with ``batch_size = points``; the
engine draws each step's batch as a permutation of the whole set, so every step sees all the
examples, in a shuffled order that changes only the rounding of the mean).

Why this problem rather than a digits subset (both were tried) is in
``docs/studies_edge_of_stability.md``.

What is measured (one :func:`lab.sweep.run_sweep`, the step size ``eta`` a dynamic axis,
``seeds`` seeds).  Every ``eval_every`` steps the engine records the loss on the whole set
and the sharpness (``SweepSpec(sharpness_iters=m, sharpness_batch=points)``: ``m`` Lanczos
steps on the Hessian of the full-batch loss).  The sharpness at initialisation (step 0) is
computed here, from the same initial parameters, with the dense Hessian.  Per eta:

* the sharpness at init (median over seeds) and its ratio to 2/eta;
* the first step at which the sharpness reaches ``reach_fraction * 2/eta`` (median over the
  seeds that reach it; how many do);
* the late sharpness: the median over the last ``late_fraction`` of the evaluations, per seed,
  then the median over seeds, and its ratio to ``2/eta`` (theory: about 1, a little above);
* seeds whose loss diverged (not finite or above ``divergence_factor`` times the first loss).

Validation of the Lanczos sharpness: one run (seed 0 at the largest eta none of whose seeds
diverged) is rebuilt by a plain full-batch gradient-descent loop (natural example order), and
the engine's sharpness estimator (same Lanczos steps and start key) is compared with the top
eigenvalue of the dense Hessian at the rebuilt final parameters; the engine's recorded final
sharpness is reported beside it (it may differ a little where the rounding of the shuffled
batch order has moved the trajectory).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lab import curvature, losses, nets, optim, plotting
from lab.sweep import Problem, Study, SweepSpec, run_keys
from studies import common

NAME = "edge_of_stability"
DESCRIPTION = ("edge of stability: full-batch GD on a tanh MLP (Chebyshev fit, MSE); sharpness rises to "
               "2/eta and hovers there, for several step sizes")
FIGURES = {
    "edge_of_stability_sharpness": "sharpness (top Hessian eigenvalue, Lanczos) against step for each step size "
                                   "eta, median and IQR over seeds, with 2/eta dashed in the same colour; right: "
                                   "the same divided by 2/eta",
    "edge_of_stability_loss": "full-batch training loss (MSE, log scale) against step for each step size: "
                              "median and IQR over seeds",
    "edge_of_stability_ratio": "late-training sharpness / (2/eta) against eta, each seed and the median, beside "
                               "the same ratio at initialisation",
}
DIVERGENCE_FACTOR = 1e3
DENSE_HESSIAN_MAX_PARAMS = 4000   # above this the validation uses a long Lanczos run instead


@dataclasses.dataclass(frozen=True)
class Config:
    points: int = 20                  # Chebyshev nodes on [-1, 1] (the whole training set: full batch)
    degree: int = 4                   # target T_degree(x)
    hidden: int = 32                  # width of both tanh hidden layers: 1-hidden-hidden-1
    learning_rates: tuple = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)  # step sizes eta (2/eta = 200 .. 6.7)
    steps: int = 20000                # gradient-descent steps per run
    eval_every: int = 50              # steps between evaluations (loss and sharpness)
    sharpness_iters: int = 30         # Lanczos steps per sharpness measurement
    seeds: int = 8                    # initialisations per step size
    late_fraction: float = 0.25       # the last fraction of the evaluations that counts as "late"
    reach_fraction: float = 0.9       # "reached the edge": sharpness >= reach_fraction * 2/eta


FULL = Config()
QUICK = Config(learning_rates=(0.02, 0.05, 0.1, 0.2, 0.3), steps=8000, eval_every=50, seeds=3)


def check(config: Config) -> None:
    """Raise TypeError / ValueError naming the first unusable field of ``config``."""
    if not isinstance(config, Config):
        raise TypeError(f"expected an edge_of_stability.Config, got {type(config).__name__}")
    for name, minimum in (("points", 2), ("degree", 0), ("hidden", 1), ("steps", 1), ("eval_every", 1),
                          ("sharpness_iters", 1), ("seeds", 1)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if config.steps % config.eval_every:
        raise ValueError(f"steps={config.steps} must be a multiple of eval_every={config.eval_every}")
    lrs = config.learning_rates
    if not isinstance(lrs, tuple) or not lrs:
        raise ValueError(f"learning_rates must be a non-empty tuple of step sizes, got {lrs!r}")
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0) for v in lrs):
        raise ValueError(f"every learning rate must be a finite number > 0, got {lrs}")
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"learning_rates repeats a value: {lrs}")
    if not 0 < config.late_fraction <= 1:
        raise ValueError(f"late_fraction must be in (0, 1], got {config.late_fraction}")
    if not 0 < config.reach_fraction <= 1:
        raise ValueError(f"reach_fraction must be in (0, 1], got {config.reach_fraction}")


# --------------------------------------------------------------------------- the problem


def chebyshev_data(points: int, degree: int, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``, each ``(points, 1)``: the Chebyshev nodes and ``T_degree`` at them."""
    dtype = np.dtype(common.float_dtype() if dtype is None else dtype)
    x = np.cos(np.pi * (np.arange(points) + 0.5) / points)
    y = np.polynomial.chebyshev.chebval(x, np.eye(degree + 1)[degree])
    return x[:, None].astype(dtype), y[:, None].astype(dtype)


def network(hidden: int):
    return nets.mlp([hidden, hidden, 1], activation="tanh")


def _make_problem(static) -> Problem:
    x, y = chebyshev_data(int(static["points"]), int(static["degree"]))
    net = network(int(static["hidden"]))

    def init_params(key):
        return net.init(key, (-1, 1), dtype=common.float_dtype())[1]

    def loss(params, xb, yb, key):
        return losses.mse(net.apply(params, xb), yb)

    return Problem(init_params=init_params, loss=loss, x=x, y=y)


STUDY = Study(NAME, _make_problem, lambda c: optim.sgd(c["learning_rate"]),
              hyperparameters={"learning_rate": 0.1},
              static={"batch_size": 20, "points": 20, "degree": 4, "hidden": 32},
              description=common.describe(data=chebyshev_data, net=network, loss=losses.mse, optimizer=optim.sgd))


def spec(config: Config) -> SweepSpec:
    """The one sweep: step size (dynamic) x seeds, sharpness recorded at every evaluation."""
    check(config)
    study = dataclasses.replace(STUDY, static={"batch_size": config.points, "points": config.points,
                                               "degree": config.degree, "hidden": config.hidden})
    return SweepSpec(study, {"learning_rate": [float(v) for v in config.learning_rates]}, seeds=config.seeds,
                     steps=config.steps, eval_every=config.eval_every, divergence_factor=DIVERGENCE_FACTOR,
                     chunk_steps=min(config.steps, 20 * config.eval_every),
                     sharpness_iters=config.sharpness_iters, sharpness_batch=config.points)


class Tools(NamedTuple):
    """Jitted pieces on the whole training set (natural order), compiled once per problem."""
    init: Callable          # seed -> the engine's initial parameters, init_params(run_keys(seed).params)
    loss: Callable          # params -> full-batch loss
    hessian: Callable       # params -> dense (P, P) Hessian of the full-batch loss
    lanczos: Callable       # (params, seed) -> the engine's sharpness estimate (same steps, same start key)
    descend: Callable       # (params, eta, steps) -> (params after `steps` GD steps, losses before each)


@functools.lru_cache(maxsize=8)
def _tools(points: int, degree: int, hidden: int, sharpness_iters: int, dtype: str) -> Tools:
    problem = _make_problem({"points": points, "degree": degree, "hidden": hidden})
    x, y = jnp.asarray(problem.x), jnp.asarray(problem.y)

    def loss(params):
        return problem.loss(params, x, y, jax.random.key(0))

    def keys(seed):  # the engine's keys, from a uint32 seed
        return run_keys(jnp.asarray(seed).astype(jnp.uint32))

    def init(seed):
        return problem.init_params(keys(seed).params)

    def lanczos(params, seed):
        m = min(sharpness_iters, sum(math.prod(np.shape(v)) for v in jax.tree.leaves(params)))
        pairs = curvature.top_eigenvalues(loss, params, k=1, num_iters=m,
                                          key=keys(seed).sharpness)
        return pairs.eigenvalues[0]

    def descend(params, eta, steps):
        def body(p, _):
            value, grads = jax.value_and_grad(loss)(p)
            return jax.tree.map(lambda w, g: w - eta.astype(w.dtype) * g, p, grads), value
        return jax.lax.scan(body, params, None, length=steps)

    return Tools(jax.jit(init), jax.jit(loss), jax.jit(lambda p: curvature.hessian_matrix(loss, p)),
                 jax.jit(lanczos), jax.jit(descend, static_argnums=2))


def tools(config: Config) -> Tools:
    check(config)
    return _tools(config.points, config.degree, config.hidden, config.sharpness_iters, str(common.float_dtype()))


def dense_sharpness(config: Config, params) -> float:
    """Top eigenvalue of the full-batch Hessian by dense ``eigvalsh`` (for nets of at most
    ``DENSE_HESSIAN_MAX_PARAMS`` parameters; otherwise Lanczos with four times the study's steps)."""
    t = tools(config)
    p = sum(math.prod(np.shape(v)) for v in jax.tree.leaves(params))
    if p <= DENSE_HESSIAN_MAX_PARAMS:
        h = np.asarray(t.hessian(params), np.float64)
        return float(np.linalg.eigvalsh(0.5 * (h + h.T))[-1])
    long = dataclasses.replace(config, sharpness_iters=4 * config.sharpness_iters)
    return float(tools(long).lanczos(params, 1))


def gradient_descent(config: Config, learning_rate: float, seed: int, steps: int):
    """Plain full-batch gradient descent from seed ``seed``'s initial parameters:
    ``(params after `steps` steps, losses (steps,) before each step)``."""
    t = tools(config)
    params, history = t.descend(t.init(seed), jnp.asarray(learning_rate, common.float_dtype()), steps)
    return params, np.asarray(history, np.float64)


# --------------------------------------------------------------------------- analysis


def _first_reach(steps: np.ndarray, sharp: np.ndarray, level: float) -> float:
    hit = np.flatnonzero(np.isfinite(sharp) & (sharp >= level))
    return float(steps[hit[0]]) if hit.size else np.nan


def validate(config: Config, sweep, learning_rate: float, seed: int) -> dict:
    """Lanczos against the dense Hessian at the final parameters of one run, rebuilt by
    :func:`gradient_descent`; the engine's recorded final sharpness beside them."""
    params, _ = gradient_descent(config, learning_rate, seed, config.steps)
    lanczos = float(tools(config).lanczos(params, seed))
    i = list(sweep.axes["learning_rate"]).index(learning_rate)
    j = list(sweep.axes["seed"]).index(seed)
    return {"learning_rate": learning_rate, "seed": seed,
            "lanczos": lanczos, "dense": dense_sharpness(config, params),
            "engine_final": float(sweep.curves["sharpness"][i, j, -1])}


def analyse(config: Config, sweep) -> dict:
    lrs = np.asarray(sweep.axes["learning_rate"], np.float64)
    seeds = list(sweep.axes["seed"])
    threshold = 2.0 / lrs
    t = tools(config)
    init_params = [t.init(s) for s in seeds]
    init_sharp = np.array([dense_sharpness(config, p) for p in init_params])           # (seeds,)
    init_loss = np.array([float(t.loss(p)) for p in init_params])
    e = sweep.eval_steps.shape[0]
    steps = np.concatenate([[0], np.asarray(sweep.eval_steps, np.float64)])
    # step 0 prepended: the initial parameters do not depend on eta
    sharp = np.concatenate([np.broadcast_to(init_sharp[None, :, None], (lrs.size, len(seeds), 1)),
                            sweep.curves["sharpness"]], axis=-1)                       # (etas, seeds, E + 1)
    loss = np.concatenate([np.broadcast_to(init_loss[None, :, None], (lrs.size, len(seeds), 1)),
                           sweep.curves["eval_loss"]], axis=-1)
    diverged = sweep.diverged_step >= 0                                                 # (etas, seeds)
    late = slice(e - max(1, round(config.late_fraction * e)), e)
    late_sharp = np.full(diverged.shape, np.nan)
    reach = np.full(diverged.shape, np.nan)
    for i in range(lrs.size):
        for j in range(len(seeds)):
            if not diverged[i, j]:
                late_sharp[i, j] = np.median(sweep.curves["sharpness"][i, j, late])
            reach[i, j] = _first_reach(steps, sharp[i, j], config.reach_fraction * threshold[i])
    healthy = ~diverged.all(axis=1)
    late_median = np.array([np.nanmedian(r) if ok else np.nan for r, ok in zip(late_sharp, healthy)])
    reach_median = np.array([np.nanmedian(r) if np.isfinite(r).any() else np.nan for r in reach])
    stable = np.flatnonzero((~diverged).all(axis=1))        # etas none of whose seeds diverged
    stable = stable if stable.size else np.flatnonzero(~diverged[:, 0])
    check_lr = float(lrs[stable[-1]] if stable.size else lrs[0])
    return {
        "config": dataclasses.asdict(config),
        "learning_rates": lrs, "threshold": threshold, "seeds": np.asarray(seeds),
        "steps": steps, "sharpness": sharp, "loss": loss,
        "init_sharpness": init_sharp, "init_ratio": np.median(init_sharp) / threshold,
        "reach_step": reach, "reach_step_median": reach_median, "reached": np.isfinite(reach).sum(axis=1),
        "late_sharpness": late_sharp, "late_sharpness_median": late_median,
        "late_ratio": late_sharp / threshold[:, None], "late_ratio_median": late_median / threshold,
        "max_sharpness": np.fmax.reduce(sharp, axis=-1),    # NaN-blind: a diverged run up to its divergence
        "diverged": diverged, "final_loss": sweep.final["eval_loss"],
        "validation": validate(config, sweep, check_lr, int(seeds[0])),
        "sweep": sweep,
    }


# --------------------------------------------------------------------------- run / load


def plan(config: Config) -> list:
    """The one sweep :func:`run` computes (the validation run after it is direct)."""
    return [spec(config)]


def _results(config: Config, sweep) -> dict:
    return analyse(config, sweep(spec(config)))


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch, when already stored) the sweep and analyse it."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` from the database (LookupError when the sweep is missing);
    the sharpness at init and the validation run (a few seconds) are recomputed."""
    return common.load(_results, config, store=store)


# --------------------------------------------------------------------------- plots and report


def _colors(n: int):
    return [plotting.PALETTE[i % len(plotting.PALETTE)] for i in range(n)]


def plot(results: dict, outdir="figures") -> list[Path]:
    lrs, thr, steps = results["learning_rates"], results["threshold"], results["steps"]
    seeds = results["sharpness"].shape[1]
    colors = _colors(lrs.size)
    c = results["config"]
    what = (f"full-batch GD, 1-{c['hidden']}-{c['hidden']}-1 tanh MLP fitting T_{c['degree']} at {c['points']} "
            f"Chebyshev nodes (MSE); median and IQR over {seeds} seeds")
    paths = []

    fig, (ax, ax_ratio) = plotting.figure(2, width=5.2, height=4.0)
    for i, lr in enumerate(lrs):
        n_div = int(results["diverged"][i].sum())
        tag = f"eta = {lr:g}" + (f" ({n_div}/{seeds} diverged)" if n_div else "")
        plotting.median_band(ax, steps, results["sharpness"][i], axis=0, color=colors[i], label=tag)
        ax.axhline(thr[i], linestyle="--", color=colors[i], linewidth=1.1)
        plotting.median_band(ax_ratio, steps, results["sharpness"][i] / thr[i], axis=0, color=colors[i])
    ax.set(yscale="log", xlabel="gradient-descent step", ylabel="sharpness (top Hessian eigenvalue)",
           title="sharpness; dashed: 2/eta in the same colour")
    plotting.theory(ax_ratio, 1.0, orientation="h", label="sharpness = 2/eta")
    ax_ratio.axhline(results["config"]["reach_fraction"], linestyle=":", color="0.4", linewidth=1.0,
                     label=f"{results['config']['reach_fraction']:g} x 2/eta ('reached')")
    ax_ratio.set(yscale="log", xlabel="gradient-descent step", ylabel="sharpness / (2/eta)",
                 title="sharpness relative to the stability threshold 2/eta")
    handles, labels = ax.get_legend_handles_labels()
    more = ax_ratio.get_legend_handles_labels()
    fig.legend(handles + more[0], labels + more[1], loc="outside lower center",
               ncol=lrs.size + 2 if lrs.size <= 6 else 4, fontsize=9)
    fig.suptitle(f"Progressive sharpening, then the edge of stability\n{what}", fontsize=10)
    paths += plotting.save(fig, outdir, f"{NAME}_sharpness")

    fig, ax = plotting.figure(1, width=6.4, height=4.0)
    for i, lr in enumerate(lrs):
        plotting.median_band(ax, steps, results["loss"][i], axis=0, color=colors[i], label=f"eta = {lr:g}")
    ax.set(yscale="log", xlabel="gradient-descent step", ylabel="full-batch training loss (MSE)",
           title=f"Training loss for each step size\n{what}")
    ax.title.set_fontsize(9)
    ax.legend(loc="lower left", fontsize=8)
    paths += plotting.save(fig, outdir, f"{NAME}_loss")

    fig, ax = plotting.figure(1, width=6.0, height=4.0)
    late = results["late_ratio"]
    for j in range(late.shape[1]):
        ax.plot(lrs, late[:, j], "o", color=plotting.PALETTE[0], alpha=0.35, markersize=4,
                label="late / (2/eta), each seed" if j == 0 else None)
    ax.plot(lrs, results["late_ratio_median"], "o-", color=plotting.PALETTE[0], label="late / (2/eta), median")
    ax.plot(lrs, results["init_ratio"], "s--", color=plotting.PALETTE[1], markerfacecolor="none",
            label="at init / (2/eta), median")
    plotting.theory(ax, 1.0, orientation="h", label="edge of stability: sharpness = 2/eta")
    ax.set(xscale="log", yscale="log", xlabel="step size eta (log scale)", ylabel="sharpness / (2/eta)",
           title=f"Late-training sharpness (median over the last {c['late_fraction']:.0%} of evaluations) "
                 f"vs the\nstability threshold 2/eta, {seeds} seeds; diverged seeds are left out")
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right", fontsize=8)
    paths += plotting.save(fig, outdir, f"{NAME}_ratio")
    return [Path(p) for p in paths]


def report(results: dict) -> str:
    c = results["config"]
    seeds = results["sharpness"].shape[1]
    reach_col = f"step reaching {c['reach_fraction']:g} x 2/eta (seeds)"
    lines = [f"| eta | 2/eta | sharpness at init | {reach_col} | late sharpness | late / (2/eta) | diverged |",
             "|---|---|---|---|---|---|---|"]
    for i, lr in enumerate(results["learning_rates"]):
        step = results["reach_step_median"][i]
        reached = f"{step:.0f} ({results['reached'][i]}/{seeds})" if np.isfinite(step) else f"never (0/{seeds})"
        lines.append(f"| {lr:g} | {results['threshold'][i]:.4g} | {np.median(results['init_sharpness']):.4g} "
                     f"| {reached} | {results['late_sharpness_median'][i]:.4g} "
                     f"| {results['late_ratio_median'][i]:.3f} | {int(results['diverged'][i].sum())}/{seeds} |")
    v = results["validation"]
    theory = (f"Theory (Cohen et al. 2021): once the sharpness reaches 2/eta it hovers there, ratio about 1 "
              f"(at or slightly above). Late = median over the last {c['late_fraction']:.0%} of the evaluations "
              f"per seed, then median over seeds; steps are medians over the seeds that reach the level.")
    check = (f"Lanczos check (eta = {v['learning_rate']:g}, seed {v['seed']}, final parameters rebuilt by a plain "
             f"full-batch GD loop): {c['sharpness_iters']} Lanczos steps give {v['lanczos']:.6g}, the dense Hessian "
             f"{v['dense']:.6g} (relative difference {abs(v['lanczos'] - v['dense']) / abs(v['dense']):.1e}); "
             f"the engine recorded {v['engine_final']:.6g} at its own final step.")
    lines += ["", theory, "", check]
    return "\n".join(lines)
