"""The batch-size study's four figures, one function each (``results`` of ``run`` / ``load``
and the output folder in, the paths written out)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lab import plotting
from studies.batch_size.analysis import predicted_steps
from studies.batch_size.noise import finite_population_noise


def _colors() -> dict:
    return {"start": plotting.PALETTE[5], "halfway": plotting.PALETTE[4], "target": plotting.PALETTE[3]}


def _plot_steps(results: dict, outdir) -> list:
    """Steps and examples to target, with the fit, perfect scaling and the noise scales."""
    t, n, cfg = results["tuning"], results["noise"], results["config"]
    sizes = t["batch_sizes"].astype(np.float64)
    grid = np.geomspace(sizes.min(), sizes.max(), 200)
    ok = np.isfinite(t["steps"])
    colors = _colors()
    fig, (ax, ax_e) = plotting.figure(2, width=5.2, height=4.0)
    per = t["steps_at_tuned"]
    for axis, scale in ((ax, np.ones_like(sizes)), (ax_e, sizes)):
        lo, hi = (np.nanpercentile(np.where(np.isfinite(per), per, np.nan), q, axis=1) * scale for q in (25, 75))
        mid = t["steps"] * scale
        axis.errorbar(sizes[ok], mid[ok], yerr=[(mid - lo)[ok], (hi - mid)[ok]],
                      fmt="o", color=plotting.PALETTE[0], capsize=3, zorder=5,
                      label="measured: median (IQR) over seeds, tuned lr")
        if np.isfinite(t["s_min"]) and t["s_min"] > 0:
            fit = predicted_steps(grid, t["s_min"], t["b_noise"])
            axis.plot(grid, fit * (grid if axis is ax_e else 1.0), "--", color="0.2",
                      label=(f"fit S_min(1 + B_noise/B): S_min={t['s_min']:.3g}" if axis is ax else
                             f"fit E_min(1 + B/B_noise): E_min={t['e_min']:.3g}"))
        if ok.any():
            k = int(np.flatnonzero(ok)[0])
            perfect = t["steps"][k] * sizes[k] / grid
            axis.plot(grid, perfect * (grid if axis is ax_e else 1.0), ":", color=plotting.PALETTE[2],
                      label="perfect scaling S ~ 1/B (through the smallest batch)")
        if np.isfinite(t["b_noise"]) and t["b_noise"] > 0:
            axis.axvline(t["b_noise"], color="0.2", linewidth=1.5, alpha=0.6,
                         label=f"fitted B_noise = {t['b_noise']:.3g}")
        for i, name in enumerate(n["checkpoints"]):
            axis.axvline(n["b_simple"][i], color=colors[name], linestyle="-.", linewidth=1.2,
                         label=f"B_simple at GD {name} (loss {n['loss'][i]:.2g}) = {n['b_simple'][i]:.3g}")
        axis.set(xscale="log", yscale="log", xlabel="batch size B (examples)")
    ax.set(ylabel="steps to target (SGD updates)",
           title=f"steps to training loss {cfg['target_loss']:g}, lr tuned per batch size")
    ax_e.set(ylabel="examples to target (steps x B)", title="examples processed to reach the target")
    ax.legend(fontsize=7, loc="lower left")
    if ok.any():
        measured = t["steps"][ok]
        ax.set_ylim(0.5 * measured.min(), 2.0 * measured.max())
        ax_e.set_ylim(0.5 * t["examples"][ok].min(), 2.0 * t["examples"][ok].max())
    handles, labels = ax_e.get_legend_handles_labels()
    keep = [i for i, label in enumerate(labels) if label.startswith(("fit", "perfect"))]
    ax_e.legend([handles[i] for i in keep], [labels[i] for i in keep], fontsize=7, loc="upper left")
    ax_e.set_xlim(ax.get_xlim())
    fig.suptitle(f"SGD on MLP 64-{cfg['hidden']}-10 (digits, {cfg['train_size']} training images): perfect scaling "
                 f"below B_noise, diminishing returns above")
    return plotting.save(fig, outdir, "batch_size_steps")


def _plot_gradient_noise(results: dict, outdir) -> list:
    """Gradient noise vs batch size with the finite-population formula."""
    n = results["noise"]
    colors = _colors()
    fig, (ax, ax_r) = plotting.figure(2, width=5.0, height=3.9)
    nb = n["batch_sizes"].astype(np.float64)
    partial = nb < n["n"]
    fine = np.geomspace(1, n["n"] - 1, 300)
    for i, name in enumerate(n["checkpoints"]):
        color = colors[name]
        ax.errorbar(nb[partial], n["measured"][i, partial], yerr=2 * n["stderr"][i, partial], fmt="o", color=color,
                    markersize=4, capsize=2, label=f"GD {name} (loss {n['loss'][i]:.2g}): measured, 2 s.e.")
        ax.plot(fine, finite_population_noise(n["trace_sigma"][i], fine, n["n"]), "--", color=color, linewidth=1)
        ax.axhline(n["grad_sq"][i], color=color, linestyle=":", linewidth=1)
        ratio = n["measured"][i, partial] / n["predicted"][i, partial]
        rel_err = n["stderr"][i, partial] / n["predicted"][i, partial]
        ax_r.errorbar(nb[partial] * (1.0 + 0.06 * (i - 1)), ratio, yerr=2 * rel_err, fmt="o", color=color,
                      markersize=4, capsize=2, label=f"GD {name}")
    ax.plot([], [], "--", color="0.3", label="theory tr(Sigma)/B (N-B)/(N-1)")
    ax.plot([], [], ":", color="0.3", label="signal |G|^2 (crosses the noise near B_simple)")
    full = np.max(np.abs(n["full_batch_noise"]))
    ax.set(xscale="log", yscale="log", xlabel="batch size B (examples)", ylabel="E |g_B - G|^2",
           title=f"mini-batch gradient noise, {n['draws']} batches per size\n(full batch B = N = {n['n']}: "
                 f"measured {full:.1g}, theory 0; not drawn on log axes)")
    ax.legend(fontsize=7, loc="lower left")
    plotting.theory(ax_r, 1.0, orientation="h", label="exact agreement")
    ax_r.set(xscale="log", xlabel="batch size B (examples)", ylabel="measured / predicted",
             title=f"ratio to the finite-population formula\nmax relative error {n['max_relative_error']:.3f}, "
                   f"max |z| = {n['max_z']:.2f}")
    ax_r.legend(fontsize=8)
    return plotting.save(fig, outdir, "batch_size_gradient_noise")


def _plot_gap_sharpness(results: dict, outdir) -> list:
    """Generalisation gap and sharpness at the target."""
    t, g, cfg = results["tuning"], results["target"], results["config"]
    sizes = t["batch_sizes"].astype(np.float64)
    fig, (ax, ax_s) = plotting.figure(2, width=4.6, height=3.7)
    have = np.any(np.isfinite(t["gap"]), axis=1)
    if have.any():
        plotting.median_band(ax, sizes[have], t["gap"][have], axis=1, marker="o",
                             label=f"median, IQR over {cfg['seeds']} seeds")
    measured = np.any(np.isfinite(g["sharpness"]), axis=1)
    if measured.any():
        sb = g["batch_sizes"][measured].astype(np.float64)
        plotting.median_band(ax_s, sb, g["sharpness"][measured], axis=1, marker="o",
                             label=f"top Hessian eigenvalue ({cfg['sharpness_iters']} Lanczos steps)")
        ax_s.plot(sb, 2.0 / g["lr"][measured], "--", color="0.2", marker="x", label="2 / tuned lr (GD stability limit)")
    ax.set(xscale="log", xlabel="batch size B (examples)", ylabel="held-out - training cross-entropy",
           title="generalisation gap at the target loss")
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=8)
    ax_s.set(xscale="log", yscale="log", xlabel="batch size B (examples)",
             ylabel="sharpness (top Hessian eigenvalue)", title="sharpness of the training loss at the target")
    ax_s.legend(fontsize=8)
    fig.suptitle(f"each batch size at its tuned rate, when its training loss first reaches {cfg['target_loss']:g}")
    return plotting.save(fig, outdir, "batch_size_gap_sharpness")


def _plot_learning_rate(results: dict, outdir) -> list:
    """Tuning curves and the tuned rate."""
    t, g = results["tuning"], results["target"]
    sizes = t["batch_sizes"].astype(np.float64)
    grid = np.geomspace(sizes.min(), sizes.max(), 200)
    ok = np.isfinite(t["steps"])
    fig, (ax, ax_l) = plotting.figure(2, width=4.8, height=3.8)
    lrs = t["learning_rates"]
    for i, b in enumerate(t["batch_sizes"]):
        color = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot(lrs, np.where(np.isfinite(t["median_steps"][i]), t["median_steps"][i], np.nan), "o-",
                color=color, markersize=3, label=f"B = {b}")
        if ok[i]:
            ax.plot(lrs[t["best_index"][i]], t["steps"][i], "*", color=color, markersize=10)
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="median steps to target",
           title="tuning curves (star: tuned rate; gaps: target not reached)")
    ax.legend(fontsize=7, ncol=2)
    ax_l.plot(sizes[ok], t["tuned_lr"][ok], "o-", label="tuned lr")
    if ok.any():
        k = int(np.flatnonzero(ok)[0])
        ax_l.plot(grid, t["tuned_lr"][k] * grid / sizes[k], ":", color=plotting.PALETTE[2],
                  label="linear scaling lr ~ B")
        ax_l.plot(grid, t["tuned_lr"][k] * np.sqrt(grid / sizes[k]), "-.", color=plotting.PALETTE[4],
                  label="square-root scaling lr ~ sqrt(B)")
    sharp_full = g["sharpness"][-1] if len(g["batch_sizes"]) else np.array([np.nan])
    if np.any(np.isfinite(sharp_full)):
        limit = 2.0 / float(np.nanmedian(sharp_full))
        plotting.theory(ax_l, limit, orientation="h",
                        label=f"2 / sharpness at the target, B = {g['batch_sizes'][-1]}: {limit:.3g}")
    for edge in (lrs[0], lrs[-1]):
        ax_l.axhline(edge, color="0.7", linewidth=0.8)
    ax_l.set(xscale="log", yscale="log", xlabel="batch size B (examples)", ylabel="tuned learning rate",
             title="tuned rate (grey: ends of the grid)", ylim=(lrs[0] / 1.5, lrs[-1] * 1.5))
    ax_l.legend(fontsize=8)
    return plotting.save(fig, outdir, "batch_size_learning_rate")


def plot(results: dict, outdir="figures") -> list[Path]:
    """Write the four figures (PNG + SVG each) and return their paths."""
    return [Path(p) for draw in (_plot_steps, _plot_gradient_noise, _plot_gap_sharpness, _plot_learning_rate)
            for p in draw(results, outdir)]
