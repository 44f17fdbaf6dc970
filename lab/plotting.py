"""The one plotting style of the lab: palette, figure factory, band plots and saving.

Contract: :func:`figure` returns a matplotlib ``(fig, axes)`` styled the lab's way
(Okabe-Ito colour-blind-safe palette, grid, readable sizes); :func:`median_band`
draws a median line with an interquartile band over a seed axis; :func:`theory`
draws a theoretical value as a dashed line; :func:`save` writes the figure as PNG
(150 dpi) and SVG and returns the two paths.  Plotting is this module's job, so it
writes files; it never prints.  The non-interactive Agg backend is used so figures
render on machines without a display.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "svg.fonttype": "none",
    "svg.hashsalt": "lab",   # fixed element ids: the same figure gives the same file
}


def figure(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.2, **kwargs):
    """A styled figure with ``nrows x ncols`` axes of the given size each (inches)."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                 squeeze=False, constrained_layout=True, **kwargs)
    for ax in axes.ravel():
        _apply(ax)
    return fig, (axes[0, 0] if axes.size == 1 else axes.ravel())


def _apply(ax) -> None:
    ax.set_prop_cycle(color=PALETTE)
    ax.grid(True, alpha=0.3)
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)


def median_band(ax, x, values, *, label=None, color=None, axis: int = 0, **kwargs):
    """Median of ``values`` over ``axis`` (the seeds) with its 25-75% band."""
    values = np.asarray(values, dtype=np.float64)
    lo, med, hi = np.nanpercentile(values, [25, 50, 75], axis=axis)
    (line,) = ax.plot(x, med, label=label, color=color, **kwargs)
    ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def theory(ax, value, *, orientation: str = "v", label=None, color="0.2"):
    """A theoretical value as a dashed line (vertical at x=value, or horizontal)."""
    draw = ax.axvline if orientation == "v" else ax.axhline
    return draw(value, linestyle="--", color=color, linewidth=1.2, label=label)


def save(fig, directory, name: str) -> tuple[Path, Path]:
    """Write ``directory/name.png`` (150 dpi) and ``directory/name.svg``; close the figure.
    Neither file records a date, so the same figure drawn again gives the same bytes."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png, svg = directory / f"{name}.png", directory / f"{name}.svg"
    with plt.rc_context(STYLE):
        fig.savefig(png, dpi=150)
        fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    return png, svg
