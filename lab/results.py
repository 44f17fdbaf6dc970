"""A sweep read back from the results database, as arrays indexed by its grid.

Contract.  :class:`SweepResult` is what :meth:`lab.store.Store.load` (and so
:func:`lab.sweep.run_sweep`) returns: every curve and final metric as an array whose
axes are the sweep's grid axes as written in its spec, seed last (``shape``), with the
sweep's config, execution choices, environment and timings beside them; ``rows()`` gives
one dict per run, ``index(**coords)`` a run's canonical index, and ``to_dataframe()`` the
rows as a pandas DataFrame when pandas is installed.  It is a plain frozen record: it
reads nothing and writes nothing.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """One sweep read back.  Arrays are indexed by the grid axes, seed last (``shape``)."""
    sweep_id: int
    study: str
    status: str
    axes: dict               # axis name -> tuple of values (grid order, then "seed")
    eval_steps: np.ndarray   # (E,) steps done at each evaluation
    curves: dict             # metric -> (*shape, E) float64; NaN from the diverging block on
    final: dict              # metric -> shape float64: last evaluation before divergence
    diverged_step: np.ndarray  # shape int64; -1 where the run never diverged
    run_status: np.ndarray   # shape str: pending, done or diverged
    run_configs: tuple       # every knob of every run, canonical order
    config: dict
    execution: dict
    environment: dict
    timings: dict            # started, ended, compile_seconds, run_seconds

    @property
    def shape(self) -> tuple:
        return tuple(len(v) for v in self.axes.values())

    def rows(self) -> list[dict]:
        """One dict per run (canonical order): its knobs, seed, status, diverged step, final metrics."""
        out = []
        for i, config in enumerate(self.run_configs):
            where = np.unravel_index(i, self.shape)
            row = dict(config)
            row.update(seed=self.axes["seed"][where[-1]], status=str(self.run_status[where]),
                       diverged_step=int(self.diverged_step[where]))
            row.update({m: float(v[where]) for m, v in self.final.items()})
            out.append(row)
        return out

    def index(self, **coords) -> int:
        """The canonical index of the run at ``coords``, one value for every axis (seed
        included): ``result.index(learning_rate=0.1, seed=0)``."""
        if set(coords) != set(self.axes):
            raise ValueError(f"give one value for each axis {list(self.axes)}, got {sorted(coords)}")
        where = []
        for name, values in self.axes.items():
            if coords[name] not in values:
                raise ValueError(f"{name}={coords[name]!r} is not on the axis {name}: {list(values)}")
            where.append(values.index(coords[name]))
        return int(np.ravel_multi_index(where, self.shape))

    def to_dataframe(self):
        """``rows()`` as a pandas DataFrame (pandas is optional; ImportError names it)."""
        try:
            import pandas
        except ImportError as err:
            raise ImportError("SweepResult.to_dataframe needs pandas; install it or use rows()") from err
        return pandas.DataFrame(self.rows())
