"""The figures of the Newton study: one function per figure, each taking the ``results`` dict
of ``studies.newton.run`` / ``load`` and the output folder and returning the paths it wrote
(:func:`lab.plotting.save`)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lab import plotting
from studies import common
from studies.newton.constants import COST_THEORY, LABELS, MLP_SECOND_ORDER, ROSENBROCK_METHODS, ROSENBROCK_START


def _band(ax, x, values, **kwargs):
    """``plotting.median_band`` without NumPy's all-NaN warnings (runs frozen at divergence, or
    errors below the log axis, leave whole columns empty)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return plotting.median_band(ax, x, values, **kwargs)


def _pos(values):
    """Values for a log axis: non-positive and non-finite entries become NaN."""
    v = np.asarray(values, np.float64)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def _plot_quadratic_logistic(results, outdir):
    q, lg = results["quadratic"], results["logistic"]
    fig, (ax_q, ax_l, ax_r) = plotting.figure(3, width=4.3, height=3.6)
    steps = np.concatenate([[0], q["steps"]])
    for i, m in enumerate(q["methods"]):
        d = np.concatenate([np.ones((q["distance"].shape[1], 1)), q["distance"][i]], axis=1)
        _band(ax_q, steps, _pos(d), axis=0, color=plotting.PALETTE[i], label=LABELS[m],
              marker="o" if m == "newton" else None, markersize=4)
        if m != "newton":
            ax_q.plot(steps, q["theory_rate"][m] ** steps, "--", color=plotting.PALETTE[i], linewidth=1,
                      label=f"theory rate {q['theory_rate'][m]:.3f}")
    d = np.concatenate([np.ones((q["adam_distance"].shape[0], 1)), q["adam_distance"]], axis=1)
    _band(ax_q, steps, _pos(d), axis=0, color=plotting.PALETTE[3], label=f"Adam (lr {q['adam_lr']:g})")
    ax_q.set(yscale="log", xlabel="iteration", ylabel="||w - w*|| (start: 1)", ylim=(1e-17, 3),
             title=f"quadratic, kappa = {q['kappa']:g}: Newton is exact in one step")
    ax_q.legend(fontsize=7, loc="lower left")

    steps = lg["steps"]
    for i, m in enumerate(("newton", "gd")):
        _band(ax_l, steps, _pos(lg["errors"][i]), axis=0, color=plotting.PALETTE[i], label=LABELS[m],
              marker="o" if m == "newton" else None, markersize=4)
    e0 = np.median(lg["errors"][1, :, 0])
    ax_l.plot(steps, e0 * lg["gd_rate"] ** steps, "--", color=plotting.PALETTE[1], linewidth=1,
              label=f"GD theory rate (kappa* - 1)/(kappa* + 1) = {lg['gd_rate']:.3f}")
    plotting.theory(ax_l, lg["floor"], orientation="h", label="cut-off for ratios: 100 eps max(1, |w*|)")
    ax_l.set(yscale="log", xlabel="iteration", ylabel="||w_k - w*||",
             title=f"logistic regression (kappa* = {lg['kappa']:.1f})")
    ax_l.legend(fontsize=7, loc="upper right")

    for i, m in enumerate(("newton", "gd")):
        e = lg["errors"][i]
        ok = (e[:, :-1] > lg["floor"]) & (e[:, 1:] > lg["floor"])
        ax_r.loglog(e[:, :-1][ok], e[:, 1:][ok], "o", color=plotting.PALETTE[i], markersize=3.5, label=LABELS[m],
                    alpha=0.8)
    grid = np.geomspace(1e-9, 10, 100)
    ax_r.loglog(grid, lg["bound_asymptotic"] * grid ** 2, "--", color=plotting.PALETTE[0], linewidth=1,
                label=f"L_H / (2 lambda_min(H*)) e^2, {lg['bound_asymptotic']:.2g} e^2")
    ax_r.loglog(grid, lg["gd_rate"] * grid, "--", color=plotting.PALETTE[1], linewidth=1,
                label=f"GD theory {lg['gd_rate']:.3f} e")
    ax_r.set(xlabel="e_k = ||w_k - w*||", ylabel="e_k+1", ylim=(1e-17, 10), xlim=(1e-9, 10),
             title="one step: slope 2 (Newton) vs slope 1 (GD)")
    ax_r.legend(fontsize=7, loc="lower right")
    fig.suptitle("Newton against first-order methods on convex problems (median and IQR over starting points)")
    return plotting.save(fig, outdir, "newton_quadratic_logistic")


def _plot_rosenbrock(results, outdir):
    r, cfg = results["rosenbrock"], results["config"]
    fig, (ax_p, ax_d) = plotting.figure(2, width=4.8, height=3.9)
    common.rosenbrock_contours(ax_p, color="0.75")
    for i, m in enumerate(ROSENBROCK_METHODS):
        path, its = r["paths"][m], r["iterations"][m]
        shown = path[: (its + 1 if its >= 0 else len(path))]
        tag = f"{its} its" if its >= 0 else f"not in {cfg['rosenbrock_budget']} its"
        ax_p.plot(shown[:, 0], shown[:, 1], ".-" if len(shown) < 200 else "-", color=plotting.PALETTE[i],
                  markersize=3, linewidth=1.0, label=f"{LABELS[m]}: {tag}")
        dist = np.linalg.norm(path - 1.0, axis=1)
        ax_d.loglog(np.arange(1, len(dist) + 1), _pos(dist), color=plotting.PALETTE[i], label=LABELS[m])
    ax_p.plot(*ROSENBROCK_START, "ks", markersize=5)
    ax_p.plot(1.0, 1.0, "k*", markersize=10)
    ax_p.set(xlim=(-2, 2), ylim=(-1, 3), xlabel="w1", ylabel="w2", title="paths from (-1.2, 1) to the star (1, 1)")
    ax_p.legend(fontsize=7, loc="lower right")
    plotting.theory(ax_d, cfg["rosenbrock_tolerance"], orientation="h", label="tolerance")
    ax_d.set(xlabel="iteration + 1 (log scale)", ylabel="||w - (1, 1)||", title="distance to the minimiser")
    ax_d.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"Rosenbrock: Newton + Armijo backtracking, Levenberg-Marquardt, GD (lr {cfg['rosenbrock_gd_lr']:g}), "
                 f"heavy ball (beta {cfg['rosenbrock_beta']:g}), Adam (lr {cfg['rosenbrock_adam_lr']:g})")
    return plotting.save(fig, outdir, "newton_rosenbrock")


def _plot_mlp(results, outdir):
    m, cfg = results["mlp"], results["config"]
    ceiling = 10.0 * math.log(10.0)
    fig, axes = plotting.figure(3, width=4.3, height=3.6)
    ax_d, ax_c, ax_t = axes
    for i, meth in enumerate(MLP_SECOND_ORDER):
        _band(ax_d, m["dampings"], common.ceil(m["damping_final"][i], ceiling), axis=-1, marker="o",
                  color=plotting.PALETTE[4 + i], label=LABELS[meth])
    best = min(m["best_final"].get("gd", np.inf), m["best_final"].get("adam", np.inf))
    plotting.theory(ax_d, best, orientation="h", label=f"best first-order ({best:.3g})")
    ax_d.axhline(ceiling, color="0.5", linewidth=0.8, linestyle=":")
    ax_d.set(xscale="log", yscale="log", xlabel="damping lambda", ylabel=f"loss after {cfg['mlp_steps']} steps",
             title="(H + lambda I) and (|H| + lambda I) steps\n(diverged runs at the dotted ceiling)")
    ax_d.legend(fontsize=7, loc="upper right")
    _band(ax_c, m["cg_iterations"], common.ceil(m["cg_final"], ceiling), axis=-1, marker="o",
          color=plotting.PALETTE[2], label=f"Newton-CG (damping {cfg['mlp_cg_damping']:g})")
    plotting.theory(ax_c, best, orientation="h", label=f"best first-order ({best:.3g})")
    ax_c.set(xscale="log", yscale="log", xlabel="max CG iterations per step (Hessian-vector products)",
             ylabel=f"loss after {cfg['mlp_steps']} steps", title="Newton-CG + Armijo line search")
    ax_c.legend(fontsize=7)
    steps = m["steps"]
    colors = {"damped_newton": 4, "saddle_free_newton": 5, "newton_cg": 2, "gd": 1, "adam": 3}
    for meth, curve in m["curves"].items():
        loss = np.asarray(curve["loss"], np.float64)
        loss = loss if loss.ndim == 2 else loss[None]
        _band(ax_t, steps, _pos(loss), axis=0, color=plotting.PALETTE[colors[meth]],
              label=f"{LABELS[meth]} ({curve['setting']})")
    ax_t.set(yscale="log", xlabel="step", ylabel="training cross-entropy", title="best setting of each method")
    ax_t.legend(fontsize=7)
    fig.suptitle(f"digits MLP ({m['P']} parameters, {cfg['mlp_examples']} examples, full batch): "
                 f"median and IQR over {cfg['seeds']} seeds")
    return plotting.save(fig, outdir, "newton_mlp")


def _plot_cost(results, outdir):
    cost = results["cost"]
    fig, (ax_t, ax_m) = plotting.figure(2, width=4.6, height=3.6)
    for i, (meth, row) in enumerate(cost.items()):
        theory = COST_THEORY[meth]
        ax_t.loglog(row["P"], row["seconds"], "o-", color=plotting.PALETTE[i],
                    label=f"{LABELS[meth]}: slope {row['time_slope']:.2f} (theory {theory['time']})")
        if np.isfinite(row["bytes"]).any():
            ax_m.loglog(row["P"], row["bytes"], "o-", color=plotting.PALETTE[i],
                        label=f"{LABELS[meth]}: slope {row['memory_slope']:.2f} (theory {theory['memory']:g})")
    ax_t.set(xlabel="parameters P", ylabel="seconds per step (fastest of repeats)",
             title="time of one jitted step\n(slope fitted on the 3 largest P)")
    ax_m.set(xlabel="parameters P", ylabel="bytes (temp + arguments + outputs)",
             title="memory of the compiled step\n(slope fitted on the 3 largest P)")
    ax_t.legend(fontsize=7)
    ax_m.legend(fontsize=7)
    cfg = results["config"]
    fig.suptitle(f"cost against parameter count: MLP 64-width-10, batch {cfg['cost_examples']}, "
                 f"Newton-CG with {cfg['cost_cg_iterations']} CG products")
    return plotting.save(fig, outdir, "newton_cost")


def _plot_spectrum(results, outdir):
    s = results["spectrum"]
    fig, axes = plotting.figure(2, width=4.6, height=3.6)
    for ax, name, title in zip(axes, ("init", "trained"), ("at initialisation", "after Adam training")):
        part = s[name]
        ax.hist(part["exact"], bins=60, density=True, color="0.75", label=f"exact eigenvalues (dense H, P = {s['P']})")
        ax.plot(part["grid"], _pos(part["density"]), color=plotting.PALETTE[0], label="SLQ density")
        top = float(np.nanmax(_pos(part["density"])))
        ax.set(yscale="log", ylim=(top * 1e-6, top * 3), xlabel="Hessian eigenvalue",
               ylabel="density (log scale, 6 decades shown)",
               title=f"{title}: loss {part['loss']:.3g}\nlambda in [{part['dense_bottom']:.3g}, {part['dense_top']:.3g}], "
                     f"negative {100 * part['dense_negative_fraction']:.0f}%")
        ax.legend(fontsize=7)
    cfg = results["config"]
    fig.suptitle(f"Hessian spectrum of the digits MLP loss ({cfg['spectrum_probes']} probes x "
                 f"{min(cfg['spectrum_iters'], s['P'])} Lanczos steps)")
    return plotting.save(fig, outdir, "newton_spectrum")


def plot(results: dict, outdir="figures") -> list[Path]:
    """The study's five figures (PNG + SVG each)."""
    paths = []
    for draw in (_plot_quadratic_logistic, _plot_rosenbrock, _plot_mlp, _plot_cost, _plot_spectrum):
        paths += draw(results, outdir)
    return [Path(p) for p in paths]
