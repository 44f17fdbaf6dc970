"""Momentum on quadratics: measured convergence rates against the heavy-ball theory.

Heavy ball as optax-style SGD with momentum (``v = beta v + g``; ``w -= lr v``) acts on the
error ``e = w - w*`` of a quadratic with Hessian eigenvalue ``lambda`` as the 2x2 linear map

    (e_{t+1}, e_t) = [[1 + beta - lr lambda, -beta], [1, 0]] (e_t, e_{t-1}),

so its asymptotic rate is the largest spectral radius of that matrix over the Hessian's
eigenvalues (Polyak, 1964).  Nesterov's variant (``u = g + beta v``) acts on ``(e_t, v_{t-1})``
as ``[[1 - lr lambda (1 + beta), -lr beta^2], [lambda, beta]]``; gradient descent is beta = 0.
With eigenvalues in ``[mu, L]`` and ``kappa = L / mu``, Polyak's choice
``lr = (2 / (sqrt L + sqrt mu))^2``, ``beta = ((sqrt kappa - 1) / (sqrt kappa + 1))^2`` gives the
rate ``(sqrt kappa - 1) / (sqrt kappa + 1)``; gradient descent at ``lr = 2 / (L + mu)`` gives
``(kappa - 1) / (kappa + 1)``.

What is measured.  The quadratic problems are written in the error coordinates,
``f(e) = 1/2 e^T A e`` with ``A = Q diag(eigenvalues) Q^T`` from :func:`lab.data.quadratic`
(a random rotation), ``L = 1`` and ``mu = 1 / kappa`` with the eigenvalues spaced
geometrically between them (both ends included).  Moving the minimiser to the origin
changes no iterate's error but keeps the error exact down to the smallest normal float, so
rates can be read off over many decades even in float32.  The loss ignores the batch
(full-batch training on a dummy data set of one example).  Each run starts from a random
unit error; the measured rate is ``exp(slope)`` of a least-squares line through
``log ||e_t||`` over the later half of the evaluations that are still above the float
underflow floor (a geometric mean of the per-step contraction).

Four parts:

* ``heatmap``: the measured rate over a (learning rate, beta) grid at one ``kappa``, heavy
  ball and Nesterov, beside the closed-form rate (one :func:`lab.sweep.run_sweep`, the grid
  axes are dynamic: one compiled program per method).
* ``kappa``: gradient descent, heavy ball and Nesterov at their textbook settings for each
  ``kappa`` (GD ``2/(L+mu)``; heavy ball Polyak's; Nesterov ``lr = 1/L``,
  ``beta = (sqrt kappa - 1)/(sqrt kappa + 1)``), measured against the closed-form rate.
* ``trajectories``: 2-D paths of GD, heavy ball and Nesterov on an ill-conditioned quadratic
  and on the Rosenbrock function (no sweep: six short deterministic runs, recomputed by
  :func:`load`).
* ``mlp``: final training loss of an MLP on the 8x8 digits against beta, at a fixed
  *effective* learning rate ``lr / (1 - beta)`` (so ``lr = effective_lr (1 - beta)``), median
  and interquartile range over seeds.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lab import optim, plotting
from lab.sweep import Problem, Study, SweepSpec
from studies import common

DESCRIPTION = "momentum: heavy ball / Nesterov rates on quadratics vs theory, 2-D paths, beta on an MLP"
METHODS = ("gd", "heavy_ball", "nesterov")
METHOD_LABELS = {"gd": "gradient descent", "heavy_ball": "heavy ball", "nesterov": "Nesterov"}
FIGURES = {
    "momentum_rate_heatmap": "measured per-step convergence rate over a (learning rate, beta) grid on a kappa = 100 "
                             "quadratic, heavy ball and Nesterov, each beside its closed-form spectral radius, with "
                             "Polyak's optimum marked",
    "momentum_kappa": "gradient descent, heavy ball and Nesterov at their textbook settings: measured rate against "
                      "the closed-form rate for kappa = 10, 100, 1000, and the ratio of their logarithms",
    "momentum_trajectories": "2-D paths of gradient descent, heavy ball and Nesterov on a rotated ill-conditioned "
                             "quadratic and on the Rosenbrock function",
    "momentum_mlp": "final training cross-entropy of SGD on the digits MLP against beta at a fixed effective "
                    "learning rate lr / (1 - beta), median and interquartile band over seeds",
}


@dataclasses.dataclass(frozen=True)
class Config:
    # --- quadratics (L = 1, mu = 1 / kappa)
    dimension: int = 20                       # number of Hessian eigenvalues, geometric in [1/kappa, 1]
    heatmap_kappa: float = 100.0              # condition number of the heat-map quadratic
    heatmap_lrs: int = 24                     # learning rates on the grid, geometric in [lr_min, lr_max]
    lr_min: float = 0.01                      # smallest learning rate (times L)
    lr_max: float = 4.0                       # largest learning rate (times L)
    heatmap_betas: int = 21                   # betas on the grid, linear in [0, beta_max]
    beta_max: float = 0.98                    # largest beta on the grid
    heatmap_steps: int = 400                  # steps per heat-map run
    kappas: tuple[float, ...] = (10.0, 100.0, 1000.0)  # condition numbers of the tuned comparison
    kappa_steps: int = 1000                   # steps per tuned run (long, so kappa = 1000 shows its rate)
    eval_every: int = 5                       # steps between distance measurements
    # --- 2-D trajectories
    trajectory_kappa: float = 25.0            # condition number of the 2-D quadratic (L = 1)
    quadratic_steps: int = 60                 # steps drawn on the 2-D quadratic
    quadratic_gd_lr: float = 1.8              # GD's learning rate there: near 2 / L, the zig-zag regime
    quadratic_lr: float = 0.5                 # learning rate of heavy ball and Nesterov there
    quadratic_beta: float = 0.8               # beta of heavy ball and Nesterov there
    rosenbrock_steps: int = 1000              # steps drawn on Rosenbrock
    rosenbrock_lr: float = 1e-3               # learning rate on Rosenbrock (all three methods)
    rosenbrock_beta: float = 0.9              # beta of heavy ball and Nesterov on Rosenbrock
    # --- digits MLP
    mlp_hidden: int = 32                      # hidden width of the 64-hidden-10 tanh MLP
    mlp_betas: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99)  # momentum values
    mlp_effective_lrs: tuple[float, ...] = (0.1, 0.5)  # lr / (1 - beta), held fixed along a line
    mlp_batch_size: int = 64                  # mini-batch size
    mlp_steps: int = 600                      # SGD steps per run
    mlp_eval_every: int = 50                  # steps between evaluations
    seeds: int = 5                            # seeds of the MLP sweep


FULL = Config()
QUICK = Config(dimension=12, heatmap_lrs=20, heatmap_betas=15, heatmap_steps=300, kappa_steps=600,
               mlp_betas=(0.0, 0.5, 0.9, 0.95, 0.99), mlp_effective_lrs=(0.1, 0.5),
               mlp_steps=300, seeds=3)


# --------------------------------------------------------------------------- closed-form theory


def iteration_matrices(lr, beta, eigenvalues, *, nesterov: bool = False) -> np.ndarray:
    """The 2x2 error-iteration matrix of SGD with momentum for each eigenvalue: (..., 2, 2)."""
    lr, beta, lam = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (lr, beta, eigenvalues)))
    if nesterov:   # state (e_t, v_{t-1})
        rows = [[1 - lr * lam * (1 + beta), -lr * beta ** 2], [lam, beta]]
    else:          # state (e_t, e_{t-1})
        rows = [[1 + beta - lr * lam, -beta], [np.ones_like(lam), np.zeros_like(lam)]]
    return np.stack([np.stack(r, axis=-1) for r in rows], axis=-2)


def theoretical_rate(lr, beta, eigenvalues, *, nesterov: bool = False) -> np.ndarray:
    """Largest spectral radius over ``eigenvalues`` (last axis) for broadcast ``lr``, ``beta``."""
    lr, beta = np.asarray(lr, np.float64)[..., None], np.asarray(beta, np.float64)[..., None]
    radius = np.abs(np.linalg.eigvals(iteration_matrices(lr, beta, eigenvalues, nesterov=nesterov))).max(-1)
    return radius.max(-1)


def tuned_settings(method: str, kappa: float) -> tuple[float, float]:
    """(lr, beta) of each method's textbook setting for eigenvalues in [1/kappa, 1]."""
    big, small = 1.0, 1.0 / kappa
    root = np.sqrt(kappa)
    if method == "gd":
        return 2.0 / (big + small), 0.0
    if method == "heavy_ball":
        return (2.0 / (np.sqrt(big) + np.sqrt(small))) ** 2, ((root - 1) / (root + 1)) ** 2
    if method == "nesterov":
        return 1.0 / big, (root - 1) / (root + 1)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


eigenvalues = common.spectrum
UNDERFLOW_FLOOR = 1e6 * np.finfo(np.float32).tiny   # distances below this are float32 rounding


def measured_rate(distance, steps) -> np.ndarray:
    """Per-step contraction of ``distance`` (last axis, at ``steps``) above the float32 underflow
    floor (:func:`studies.common.contraction_rate`); NaN where a run diverged at once."""
    return common.contraction_rate(distance, steps, UNDERFLOW_FLOOR)


# --------------------------------------------------------------------------- the quadratic study


def _quadratic_problem(static) -> Problem:
    kappa, dim = float(static["kappa"]), int(static["dimension"])
    a = common.quadratic_hessian(kappa, dim)

    def init_params(key):
        e = jax.random.normal(key, (dim,), dtype=common.float_dtype())
        return e / jnp.linalg.norm(e)

    def loss(e, xb, yb, key):   # the batch is a dummy: full-batch training
        return 0.5 * e @ (a @ e)

    def evaluate(e, x, y):
        return {"loss": 0.5 * e @ (a @ e), "distance": jnp.linalg.norm(e)}

    dummy_x, dummy_y = common.dummy_data()
    return Problem(init_params=init_params, loss=loss, x=dummy_x, y=dummy_y, evaluate=evaluate)


def _quadratic_optimizer(config):
    method = config["method"]
    if config["tuned"]:
        lr, beta = tuned_settings(method, float(config["kappa"]))
    else:
        lr, beta = config["learning_rate"], config["momentum"]
    if method == "gd":
        return optim.sgd(lr)
    return optim.sgd(lr, momentum=beta, nesterov=method == "nesterov")


QUADRATIC = Study(
    "momentum_quadratic", _quadratic_problem, _quadratic_optimizer,
    hyperparameters={"learning_rate": 0.1, "momentum": 0.0},
    static={"batch_size": 1, "kappa": 100.0, "dimension": 20, "method": "heavy_ball", "tuned": False},
    description=common.describe(loss="1/2 e^T A e", hessian=common.quadratic_hessian,
                                spectrum=common.spectrum, rotation_key=common.QUADRATIC_ROTATION_KEY,
                                init="unit normal direction", rate=measured_rate))


def _heatmap_spec(c: Config) -> SweepSpec:
    lrs = np.geomspace(c.lr_min, c.lr_max, c.heatmap_lrs).tolist()
    betas = np.linspace(0.0, c.beta_max, c.heatmap_betas).tolist()
    study = dataclasses.replace(QUADRATIC, static={**QUADRATIC.static, "kappa": float(c.heatmap_kappa),
                                                   "dimension": c.dimension})
    return SweepSpec(study, grid={"method": ["heavy_ball", "nesterov"], "learning_rate": lrs, "momentum": betas},
                     seeds=1, steps=c.heatmap_steps, eval_every=c.eval_every, divergence_factor=1e6,
                     chunk_steps=c.heatmap_steps)


def _kappa_spec(c: Config) -> SweepSpec:
    study = dataclasses.replace(QUADRATIC, static={**QUADRATIC.static, "dimension": c.dimension, "tuned": True})
    return SweepSpec(study, grid={"kappa": [float(k) for k in c.kappas], "method": list(METHODS)},
                     seeds=1, steps=c.kappa_steps, eval_every=c.eval_every, divergence_factor=1e6,
                     chunk_steps=c.kappa_steps)


# --------------------------------------------------------------------------- the digits MLP study


def _mlp_optimizer(config):
    beta = config["momentum"]
    return optim.sgd(config["effective_lr"] * (1 - beta), momentum=beta)


def _mlp_spec(c: Config) -> SweepSpec:
    study = Study("momentum_mlp", lambda static: common.digits_mlp_problem(static["hidden"]), _mlp_optimizer,
                  hyperparameters={"effective_lr": 0.1, "momentum": 0.9},
                  static={"batch_size": c.mlp_batch_size, "hidden": c.mlp_hidden},
                  description=common.digits_mlp_facts(c.mlp_hidden, optimizer="sgd(effective_lr (1 - momentum), momentum)"))
    return SweepSpec(study, grid={"effective_lr": [float(v) for v in c.mlp_effective_lrs],
                                  "momentum": [float(b) for b in c.mlp_betas]},
                     seeds=c.seeds, steps=c.mlp_steps, eval_every=c.mlp_eval_every, chunk_steps=c.mlp_steps)


# --------------------------------------------------------------------------- 2-D trajectories


rosenbrock = common.rosenbrock


def _rotated_quadratic(kappa: float):
    angle = np.pi / 6
    q = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    a = q @ np.diag([1.0, 1.0 / kappa]) @ q.T

    def f(w):
        return 0.5 * w @ (jnp.asarray(a, w.dtype) @ w)
    return f, a


def _path(f, start, opt, steps: int) -> np.ndarray:
    w0 = jnp.asarray(start, common.float_dtype())

    def body(carry, _):
        w, state = carry
        updates, state = opt.update(jax.grad(f)(w), state, w)
        w = optim.apply_updates(w, updates)
        return (w, state), w

    _, ws = jax.lax.scan(body, (w0, opt.init(w0)), None, length=steps)
    return np.concatenate([np.asarray(start, np.float64)[None], np.asarray(ws, np.float64)])


def trajectories(c: Config) -> dict:
    """Paths (steps + 1, 2) of GD, heavy ball and Nesterov on the 2-D quadratic and Rosenbrock."""
    f, a = _rotated_quadratic(c.trajectory_kappa)
    out = {"quadratic": {}, "rosenbrock": {}, "quadratic_matrix": a}
    settings = {"gd": (c.quadratic_gd_lr, 0.0), "heavy_ball": (c.quadratic_lr, c.quadratic_beta),
                "nesterov": (c.quadratic_lr, c.quadratic_beta)}
    out["quadratic_settings"] = settings
    for method, (lr, beta) in settings.items():
        opt = optim.sgd(lr) if method == "gd" else optim.sgd(lr, momentum=beta, nesterov=method == "nesterov")
        out["quadratic"][method] = _path(f, [-4.0, 3.0], opt, c.quadratic_steps)
    lr, beta = c.rosenbrock_lr, c.rosenbrock_beta
    for method in METHODS:
        opt = optim.sgd(lr) if method == "gd" else optim.sgd(lr, momentum=beta, nesterov=method == "nesterov")
        out["rosenbrock"][method] = _path(rosenbrock, [-1.2, 1.0], opt, c.rosenbrock_steps)
    out["rosenbrock_settings"] = {"gd": (lr, 0.0), "heavy_ball": (lr, beta), "nesterov": (lr, beta)}
    return out


# --------------------------------------------------------------------------- run / load


def _analyse(c: Config, heat, kap, mlp) -> dict:
    lrs = np.asarray(heat.axes["learning_rate"])
    betas = np.asarray(heat.axes["momentum"])
    ev_heat = eigenvalues(c.heatmap_kappa, c.dimension)
    measured = measured_rate(heat.curves["eval_distance"][..., 0, :], heat.eval_steps)  # (2, lrs, betas)
    measured = np.where(heat.diverged_step[..., 0] >= 0, np.inf, measured)
    theory = np.stack([theoretical_rate(lrs[:, None], betas[None, :], ev_heat, nesterov=n) for n in (False, True)])
    best_lr, best_beta = tuned_settings("heavy_ball", c.heatmap_kappa)

    kappas = np.asarray(kap.axes["kappa"], np.float64)
    k_measured = measured_rate(kap.curves["eval_distance"][..., 0, :], kap.eval_steps)  # (kappas, methods)
    k_measured = np.where(kap.diverged_step[..., 0] >= 0, np.inf, k_measured)
    k_theory = np.array([[theoretical_rate(*tuned_settings(m, k), eigenvalues(k, c.dimension),
                                           nesterov=m == "nesterov") for m in METHODS] for k in kappas])
    return {
        "config": dataclasses.asdict(c),
        "heatmap": {"methods": ("heavy_ball", "nesterov"), "learning_rates": lrs, "betas": betas,
                    "measured": measured, "theory": theory, "kappa": c.heatmap_kappa,
                    "optimum": (best_lr, best_beta),
                    "optimum_rate": (np.sqrt(c.heatmap_kappa) - 1) / (np.sqrt(c.heatmap_kappa) + 1)},
        "kappa": {"kappas": kappas, "methods": METHODS, "measured": k_measured, "theory": k_theory,
                  "settings": np.array([[tuned_settings(m, k) for m in METHODS] for k in kappas])},
        "mlp": {"betas": np.asarray(mlp.axes["momentum"]), "effective_lrs": np.asarray(mlp.axes["effective_lr"]),
                "final_loss": mlp.final["eval_loss"], "final_accuracy": mlp.final["eval_accuracy"],
                "diverged": mlp.diverged_step >= 0},
        "trajectories": trajectories(c),
        "sweeps": {"heatmap": heat, "kappa": kap, "mlp": mlp},
    }


def plan(c: Config) -> list:
    """The three sweeps :func:`run` computes (heat map, tuned kappas, digits MLP), checked first."""
    return [_heatmap_spec(c), _kappa_spec(c), _mlp_spec(c)]


def _results(c: Config, sweep) -> dict:
    return _analyse(c, *(sweep(spec) for spec in plan(c)))


def run(config: Config, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run the three sweeps (heat map, tuned kappas, digits MLP) and the 2-D paths."""
    return common.run(_results, config, store=store, progress=progress, rerun=rerun, plan=plan)


def load(config: Config, *, store) -> dict:
    """The results of :func:`run` with the sweeps read from the database (LookupError if one is
    missing); the closed-form rates and the six 2-D paths (a fraction of a second) are recomputed."""
    return common.load(_results, config, store=store)


# --------------------------------------------------------------------------- plots and report


def _rate_image(ax, lrs, betas, rate, norm, cmap):
    shown = np.where(np.isfinite(rate) & (rate < 1), 1 - rate, np.nan)
    return ax.pcolormesh(lrs, betas, shown.T, norm=norm, cmap=cmap, shading="nearest")


def _plot_heatmap(results: dict, outdir) -> list:
    import matplotlib.colors as mcolors
    import matplotlib.pyplot as plt

    h = results["heatmap"]
    lrs, betas = h["learning_rates"], h["betas"]
    fig, axes = plotting.figure(2, 2, width=4.3, height=3.4)
    gap = 1 - h["theory"][h["theory"] < 1]
    norm = mcolors.LogNorm(vmin=max(float(np.min(gap)), 1e-5), vmax=float(np.max(gap)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.85")
    image = None
    for row, method in enumerate(h["methods"]):
        for col, (what, rate) in enumerate((("measured", h["measured"][row]), ("theory", h["theory"][row]))):
            ax = axes[2 * row + col]
            image = _rate_image(ax, lrs, betas, rate, norm, cmap)
            lines = ax.contour(lrs, betas, h["theory"][row].T, levels=[0.9, 0.99], colors="w", linewidths=1.0)
            ax.clabel(lines, fmt="%g", fontsize=7)
            if method == "heavy_ball":
                ax.plot(*h["optimum"], marker="*", color="#D55E00", markersize=12, linestyle="none",
                        label=f"Polyak optimum, rate {h['optimum_rate']:.3f}")
                ax.legend(loc="lower left", fontsize=8, labelcolor="k", frameon=True)
            ax.set(xscale="log", xlabel="learning rate (L = 1)", ylabel="beta",
                   title=f"{METHOD_LABELS[method]}: {what} rate")
    fig.colorbar(image, ax=list(axes), label="1 - rate per step, log scale (grey: rate >= 1)", shrink=0.8)
    fig.suptitle(f"Convergence rate ||e_t+1|| / ||e_t|| on a quadratic, kappa = {h['kappa']:g}\n"
                 f"(white contours: theoretical rate 0.9 and 0.99; brighter = faster)")
    return plotting.save(fig, outdir, "momentum_rate_heatmap")


def _plot_kappa(results: dict, outdir) -> list:
    k = results["kappa"]
    fig, (ax, ax_ratio) = plotting.figure(2, width=4.4, height=3.4)
    for i, method in enumerate(k["methods"]):
        color = plotting.PALETTE[i]
        ax.plot(k["kappas"], 1 - k["measured"][:, i], "o", color=color, label=f"{METHOD_LABELS[method]} measured")
        ax.plot(k["kappas"], 1 - k["theory"][:, i], "--", color=color, label="theory (spectral radius)")
        ax_ratio.plot(k["kappas"], np.log(k["measured"][:, i]) / np.log(k["theory"][:, i]), "o-", color=color,
                      label=METHOD_LABELS[method])
    ax.set(xscale="log", yscale="log", xlabel="condition number kappa", ylabel="1 - rate (per step)",
           title="tuned settings: measured vs theory")
    ax.legend(fontsize=7)
    plotting.theory(ax_ratio, 1.0, orientation="h", label="exact agreement")
    ax_ratio.set(xscale="log", xlabel="condition number kappa", ylabel="log(measured) / log(theory)",
                 title="ratio of log rates")
    ax_ratio.legend(fontsize=8)
    return plotting.save(fig, outdir, "momentum_kappa")


def _plot_trajectories(results: dict, outdir) -> list:
    t = results["trajectories"]
    fig, (ax_q, ax_r) = plotting.figure(2, width=4.6, height=3.8)
    gx, gy = np.meshgrid(np.linspace(-5, 5, 200), np.linspace(-5, 5, 200))
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    a = t["quadratic_matrix"]
    zq = 0.5 * np.einsum("ni,ij,nj->n", pts, a, pts).reshape(gx.shape)
    ax_q.contour(gx, gy, zq, levels=np.geomspace(0.01, 20, 12), colors="0.7", linewidths=0.6)
    common.rosenbrock_contours(ax_r)
    for ax, name, lim in ((ax_q, "quadratic", None), (ax_r, "rosenbrock", None)):
        goal = np.zeros(2) if name == "quadratic" else np.ones(2)
        for i, method in enumerate(METHODS):
            lr, beta = t[f"{name}_settings"][method]
            path = t[name][method]
            gap = np.linalg.norm(path[-1] - goal)
            ax.plot(path[:, 0], path[:, 1], ".-", color=plotting.PALETTE[i], markersize=2.5,
                    linewidth=1.0, alpha=0.6 if method == "gd" else 1.0,
                    label=f"{METHOD_LABELS[method]} (lr {lr:g}, beta {beta:g}): end {gap:.1e} away")
            ax.plot(*path[-1], "o", color=plotting.PALETTE[i], markersize=6, zorder=5)
        ax.plot(*(t[name]["gd"][0]), "ks", markersize=5)
        ax.plot(*((0, 0) if name == "quadratic" else (1, 1)), "k*", markersize=10)
        ax.set(xlabel="w1", ylabel="w2")
        ax.legend(fontsize=7, loc="lower right" if name == "quadratic" else "lower left")
    steps_q, steps_r = len(t["quadratic"]["gd"]) - 1, len(t["rosenbrock"]["gd"]) - 1
    ax_q.set(title=f"rotated quadratic, kappa = {results['config']['trajectory_kappa']:g}, {steps_q} steps",
             xlim=(-5, 5), ylim=(-5, 5))
    ax_r.set(title=f"Rosenbrock, {steps_r} steps", xlim=(-2, 2), ylim=(-1, 3))
    fig.suptitle("2-D paths from the square to the star (dot: last iterate): GD zig-zags across the valley, "
                 "momentum moves along it")
    return plotting.save(fig, outdir, "momentum_trajectories")


def _plot_mlp(results: dict, outdir) -> list:
    m = results["mlp"]
    fig, ax = plotting.figure(1, width=5.0, height=3.6)
    x = 1 - m["betas"]
    for i, lr_eff in enumerate(m["effective_lrs"]):
        loss = np.where(m["diverged"][i], np.nan, m["final_loss"][i])
        plotting.median_band(ax, x, loss, axis=-1, label=f"lr / (1 - beta) = {lr_eff:g}", marker="o")
    ax.set(xscale="log", yscale="log", xlabel="1 - beta (log scale): beta = 0 at the left, 0.99 at the right",
           ylabel="final training cross-entropy",
           title=f"digits MLP 64-{results['config']['mlp_hidden']}-10, SGD {results['config']['mlp_steps']} steps,\n"
                 f"lr = effective lr x (1 - beta); median and IQR over {m['final_loss'].shape[-1]} seeds")
    ax.invert_xaxis()
    ax.legend()
    return plotting.save(fig, outdir, "momentum_mlp")


def plot(results: dict, outdir="figures") -> list[Path]:
    """The four figures of :data:`FIGURES` (PNG + SVG each)."""
    return [Path(p) for draw in (_plot_heatmap, _plot_kappa, _plot_trajectories, _plot_mlp)
            for p in draw(results, outdir)]


def report(results: dict) -> str:
    k = results["kappa"]
    lines = ["| kappa | method | lr | beta | predicted rate | measured rate | ratio of log rates |",
             "|---|---|---|---|---|---|---|"]
    for i, kappa in enumerate(k["kappas"]):
        for j, method in enumerate(k["methods"]):
            lr, beta = k["settings"][i, j]
            pred, meas = k["theory"][i, j], k["measured"][i, j]
            lines.append(f"| {kappa:g} | {METHOD_LABELS[method]} | {lr:.4g} | {beta:.4g} | {pred:.5f} | {meas:.5f} "
                         f"| {np.log(meas) / np.log(pred):.3f} |")
    h = results["heatmap"]
    ok = np.isfinite(h["measured"]) & (h["theory"] < 0.99)
    err = np.abs(h["measured"] - h["theory"])[ok]
    lines.append("")
    lines.append(f"Heat map (kappa = {h['kappa']:g}, {ok.sum()} grid points with predicted rate < 0.99): "
                 f"median |measured - predicted| = {np.median(err):.2g}, max = {np.max(err):.2g}.")
    return "\n".join(lines)
