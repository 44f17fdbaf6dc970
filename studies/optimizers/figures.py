"""The optimizers study's figures: one per problem, ranked bars of the median final loss at
each optimizer's best rate beside the loss curves of the best few."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from lab import plotting
from studies.optimizers.settings import FAMILY, SECOND_ORDER

LINE_STYLES = ("-", "--", "-.", ":")


def _style(k: int) -> dict:
    return {"color": plotting.PALETTE[k % len(plotting.PALETTE)], "linestyle": LINE_STYLES[k // 8 % 4]}


def _bars(ax_bar, r: dict, order: list) -> None:
    """Ranked bars of the median final loss at each optimizer's best rate, IQR whiskers."""
    names = r["optimizers"]
    shown = np.where(np.isfinite(r["best_median"]), r["best_median"], np.nan)
    finite = shown[np.isfinite(shown)]
    positive = finite[finite > 0]
    ceiling = float(np.max(finite)) * 10 if positive.size else 1.0
    floor = float(np.min(positive)) / 10 if positive.size else ceiling * 1e-6
    ypos = np.arange(len(order))[::-1]
    for y, i in zip(ypos, order):
        family = FAMILY[names[i]]
        color = "#D55E00" if family == "second_order" else ("#0072B2" if family == "gradient" else "#999999")
        value = max(shown[i], floor) if np.isfinite(shown[i]) else ceiling
        ax_bar.barh(y, value - floor, left=floor, color=color, alpha=0.85, height=0.7)
        lo, hi = r["best_iqr"][i]
        if np.isfinite(shown[i]):
            ax_bar.plot([max(lo, floor), min(hi, ceiling)], [y, y], color="k", linewidth=1.0)
        if not np.isfinite(shown[i]):
            ax_bar.text(ceiling, y, " diverged", va="center", fontsize=7)
        elif shown[i] <= 0:
            ax_bar.text(floor, y, "  exactly 0", va="center", fontsize=7)
    ax_bar.set_yticks(ypos, [f"{names[i]} ({r['best_lr'][i]:.2g})" for i in order], fontsize=7)
    plotting.theory(ax_bar, r["target"], label=f"target {r['target']:g}")
    ax_bar.set(xscale="log", xlim=(floor, ceiling * 3), xlabel="median final loss at the best lr (log scale; whisker: IQR)",
               title="ranked, lower is better; label: optimizer (best lr)\n"
                     "blue: gradient-scaled, grey: adaptive, red: 2nd order")
    ax_bar.legend(loc="lower right", fontsize=7)


def _picks(r: dict, problem: str, order: list) -> list:
    """The best five optimizers (finite loss), then the baselines and the second-order methods."""
    names = r["optimizers"]
    picks = [i for i in order if np.isfinite(r["best_median"][i])][:5]
    for extra in ("sgd", "heavy_ball") if problem == "quadratic" else ("sgd",):
        if extra in names and names.index(extra) not in picks:
            picks.append(names.index(extra))
    for extra in SECOND_ORDER:
        if extra in names and names.index(extra) not in picks:
            picks.append(names.index(extra))
    return picks


def _curves(ax_curve, r: dict, problem: str, picks: list) -> None:
    """Loss against step at each best rate (median, IQR band), with the quadratic's bounds."""
    names, steps = r["optimizers"], r["eval_steps"]
    for k, i in enumerate(picks[:8]):
        curves = np.where(np.isfinite(r["best_curves"][i]), r["best_curves"][i], np.nan)
        with warnings.catch_warnings():   # evaluations where every seed has stopped are NaN: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            plotting.median_band(ax_curve, steps, curves, axis=0,
                                 label=f"{names[i]} (lr {r['best_lr'][i]:.2g})", **_style(k), linewidth=1.4)
    ax_curve.axhline(r["target"], color="0.55", linestyle=":", linewidth=1.2, label=f"target {r['target']:g}")
    if problem == "quadratic" and "theory" in r:
        th = r["theory"]
        start = np.nanmedian(r["best_curves"][:, :, 0])
        t = np.concatenate([[0], steps])
        for rate, label in ((th["gd_bound"], "GD bound ((k-1)/(k+1))^2t"),
                            (th["momentum_bound"], "momentum bound ((sqrt k-1)/(sqrt k+1))^2t")):
            ax_curve.plot(t, start * rate ** (2 * t), color="0.3", linestyle=(0, (4, 3)) if "GD" in label
                          else (0, (6, 2, 1, 2)), linewidth=1.0, label=label)
    positive = np.concatenate([r["best_curves"][i].ravel() for i in picks[:8]]) if picks else np.zeros(0)
    positive = positive[np.isfinite(positive) & (positive > 0)]
    low = max(float(positive.min()) / 3, 1e-30) if positive.size else None
    ax_curve.set(yscale="log", xlabel="step", ylabel="training loss (log scale)",
                 title=f"loss at each best lr:\nmedian, IQR band over {r['best_curves'].shape[1]} seeds",
                 ylim=(low, None) if low else None)
    ax_curve.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot(results: dict, outdir="figures") -> list[Path]:
    """One figure per problem (PNG + SVG each)."""
    paths = []
    for problem, r in results["problems"].items():
        order = list(r["rank"])
        fig, (ax_bar, ax_curve) = plotting.figure(2, width=5.2, height=max(3.8, 0.22 * len(r["optimizers"]) + 2.2))
        _bars(ax_bar, r, order)
        _curves(ax_curve, r, problem, _picks(r, problem, order))
        fig.suptitle(f"optimizers on {problem}: learning rate tuned on a {len(r['lr_factors'])}-point log grid "
                     f"per optimizer, {r['best_curves'].shape[1]} seeds")
        paths += plotting.save(fig, outdir, f"optimizers_{problem}")
    return [Path(p) for p in paths]
