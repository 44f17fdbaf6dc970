"""Study scripts and the list of studies the ``lab`` command knows.

Every study module follows one contract (issue 6): ``DESCRIPTION`` (one line), a frozen
``Config`` dataclass whose defaults are the full size, ``QUICK`` and ``FULL`` configs,
``run(config, *, store, progress=True, rerun=False) -> results``,
``load(config, *, store) -> results`` (the same dict rebuilt from the results database),
``plot(results, outdir) -> paths`` and ``report(results) -> str`` (a markdown table).
A study may also give ``FIGURES``: short figure name -> what the figure shows, which the
figure index (``figures/README.md``) quotes.

``STUDIES`` maps each study name to its module path; modules are imported only when
asked for (:func:`import_study`), so one broken study never stops the others.

What several studies share lives once in :mod:`studies.common`: the digits problem and its
MLP, the float dtype, medians and ceilings, descriptions built from the values that shape a
problem, and the contract's run-or-load (a study writes ``results(config, sweep)`` once;
``common.run`` passes a ``sweep`` that runs through :func:`lab.sweep.run_sweep`,
``common.load`` one that reads through :func:`stored_sweep`).  A large study is a package
(``studies/newton/``, ``studies/batch_size/``, ``studies/optimizers/``) whose ``__init__``
holds the contract and whose modules import one way (figures read the experiments, never
the reverse).  Measurement history and benchmark notes are in ``docs/studies_*.md``.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path
from types import ModuleType

from lab.store import Store, SweepResult
from lab.sweep import SweepSpec, fetch_sweep

# name -> module, in the order `lab list` and `lab run all` use.
STUDIES = {
    "learning_rate": "studies.learning_rate",
    "batch_size": "studies.batch_size",
    "momentum": "studies.momentum",
    "newton": "studies.newton",
    "edge_of_stability": "studies.edge_of_stability",
    "optimizers": "studies.optimizers",
    "lr_free": "studies.lr_free",
    "benchmark": "studies.benchmark",
    "claims": "studies.claims",
}


def import_study(name: str) -> ModuleType:
    """The module of study ``name``; KeyError for an unknown name (listing the known
    ones), ImportError (with the cause) when the module cannot be imported."""
    if name not in STUDIES:
        raise KeyError(f"unknown study {name!r}; known studies: {', '.join(STUDIES)}")
    return importlib.import_module(STUDIES[name])


# Lists that stored_sweep adds each sweep it serves to, while open (see served_sweeps).
_SERVED: list = []


@contextlib.contextmanager
def served_sweeps():
    """Within the block, the list of every :class:`SweepResult` that :func:`stored_sweep`
    serves: how ``lab plot`` learns which stored sweeps a study's ``load`` read (and so
    which of its sizes was computed last)."""
    served: list = []
    _SERVED.append(served)
    try:
        yield served
    finally:
        _SERVED.remove(served)


def stored_sweep(spec: SweepSpec, store: Store | str | Path) -> SweepResult:
    """The finished sweep ``spec`` read from ``store`` without computing anything
    (:func:`lab.sweep.fetch_sweep`: LookupError when the database holds none, ValueError
    when it holds one that this code and data would no longer compute)."""
    result = fetch_sweep(spec, store=store)
    for served in _SERVED:
        served.append(result)
    return result
