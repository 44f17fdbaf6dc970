"""Claims from the seed flashcards, each put to a small experiment on ``lab``.

A claim is a :class:`Claim` record (:mod:`studies.claims.base`): where it came from (``seed``,
one of the flashcard decks of :data:`SEED_FILES`, the lab's shared source material, which is
not shipped in this repository), what it says (``statement``, in our words), the rule that turns a
measurement into a verdict (``rule``, written out), and three pure functions:

    run(config, store) -> measurement     a JSON-able dict of numbers (store: sqlite path for sweeps)
    verdict(measurement) -> Verdict       (verdict, key number text, caveat), from the numbers only
    plot(measurement) -> matplotlib figure

A verdict is one of ``HOLDS``, ``CAVEAT`` (holds with a caveat, stated) or ``FAILS`` (does
not hold here).  Because ``verdict`` reads nothing but the measurement, a test can feed it
a contrary measurement and get the contrary verdict.  Definitions (epoch vs iteration,
one-hot) are checked against the lab's implementation of them.

The study contract (``studies/__init__.py``): ``DESCRIPTION``, ``Config`` with ``QUICK`` and
``FULL``, ``run``, ``load``, ``plot``, ``report``; :func:`write_claims_md` writes the table
``CLAIMS.md``.  ``run`` also writes its results as JSON next to the store
(``<store dir>/claims.json``), which :func:`load` reads back.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

from studies import common
from studies.claims.base import CAVEAT, FAILS, HOLDS, SEED_DECKS, SEED_FILES, Claim, Verdict, graded, ratio_verdict

__all__ = ["DESCRIPTION", "Config", "QUICK", "FULL", "run", "load", "plot", "report", "write_claims_md", "all_claims",
           "select", "evaluate", "Claim", "Verdict", "HOLDS", "CAVEAT", "FAILS", "SEED_FILES", "SEED_DECKS", "graded",
           "ratio_verdict"]

DESCRIPTION = "claims from the seed flashcards, each with an experiment, a figure, a number and a verdict"


@dataclasses.dataclass(frozen=True)
class Config:
    steps: int = 1500    # base number of training steps; each claim scales from it
    seeds: int = 5       # seeds for claims that take a median over seeds
    only: str = ""       # comma-separated claim ids to run; empty runs every claim


QUICK = Config(steps=300, seeds=3)
FULL = Config()


def __getattr__(name: str):
    """``FIGURES`` (figure name -> what it shows, for the figure index) is built on first use
    from the claims themselves, so importing this package stays cheap."""
    if name == "FIGURES":
        return {c.id: f"claim {c.id} ({c.topic}): {c.statement}" for c in all_claims()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def all_claims() -> tuple[Claim, ...]:
    """Every claim, in table order (imported here so one module stays one topic)."""
    from studies.claims import (
        activations,
        batch_and_sparse,
        capacity_and_curvature,
        loss_definitions,
        losses_and_outputs,
        optimizers,
        dropconnect_and_capacity,
        recurrent,
        regularisation,
        stochastic,
    )
    claims = (*activations.CLAIMS, *losses_and_outputs.CLAIMS, *loss_definitions.CLAIMS, *optimizers.CLAIMS, *stochastic.CLAIMS,
              *regularisation.CLAIMS, *capacity_and_curvature.CLAIMS, *batch_and_sparse.CLAIMS,
              *recurrent.CLAIMS, *dropconnect_and_capacity.CLAIMS)
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate claim ids: {duplicates}")
    return claims


def select(config: Config) -> tuple[Claim, ...]:
    """The claims ``config.only`` names (all when empty); unknown ids raise, naming the known ones."""
    claims = all_claims()
    if not config.only:
        return claims
    wanted = [s.strip() for s in config.only.split(",") if s.strip()]
    known = {c.id: c for c in claims}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise KeyError(f"unknown claim ids {unknown}; known: {', '.join(known)}")
    return tuple(known[w] for w in wanted)


def evaluate(claim: Claim, measurement: dict) -> dict:
    """One result row: the claim's identity, its measurement and the verdict read from it."""
    v = claim.verdict(measurement)
    if v.verdict not in (HOLDS, CAVEAT, FAILS):
        raise ValueError(f"claim {claim.id}: verdict {v.verdict!r} is not one of {HOLDS!r}, {CAVEAT!r}, {FAILS!r}")
    return {"id": claim.id, "seed": SEED_FILES[claim.seed], "topic": claim.topic, "statement": claim.statement,
            "rule": claim.rule, "verdict": v.verdict, "key": v.key, "caveat": v.caveat, "measurement": measurement}


def _results_path(store) -> Path | None:
    return None if str(store) == ":memory:" else Path(store).parent / "claims.json"


def plan(config: Config) -> list:
    """Claims plan their own sweeps as they run; checked up front: the claim selection."""
    select(config)
    return []


def run(config: Config, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run the selected claims; returns ``{"config": ..., "claims": [row, ...]}`` and writes it
    as JSON beside ``store``.  Every claim is measured afresh; sweeps inside claims are read
    back from the store when already finished (``rerun`` is accepted for the study contract
    and ignored; ``progress`` too: claims run quietly)."""
    common.check_config(config, plan)
    rows = []
    for claim in select(config):
        started = time.perf_counter()
        measurement = claim.run(config, store)
        row = evaluate(claim, measurement)
        row["seconds"] = round(time.perf_counter() - started, 2)
        rows.append(row)
    results = {"config": dataclasses.asdict(config), "claims": rows}
    path = _results_path(store)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))
    return results


def load(config: Config, *, store) -> dict:
    """The results :func:`run` wrote beside ``store``; LookupError when absent or for another config."""
    path = _results_path(store)
    if path is None or not path.exists():
        raise LookupError(f"no claims results at {path}; run `lab run claims` first")
    results = json.loads(path.read_text())
    if results["config"] != dataclasses.asdict(config):
        raise LookupError(f"{path} holds claims run with {results['config']}, not {dataclasses.asdict(config)}")
    return results


def plot(results: dict, outdir="figures") -> list[Path]:
    """One figure per claim, ``<outdir>/claims/<id>.png`` and ``.svg``, and ``CLAIMS.md``
    beside ``outdir`` (the project root for the default ``figures``), linking to them."""
    from lab import plotting
    by_id = {c.id: c for c in all_claims()}
    paths = []
    for row in results["claims"]:
        fig = by_id[row["id"]].plot(row["measurement"])
        paths.extend(plotting.save(fig, Path(outdir) / "claims", row["id"]))
    claims_md = Path(outdir).resolve().parent / "CLAIMS.md"
    figures = os.path.relpath(Path(outdir).resolve() / "claims", claims_md.parent)
    paths.append(write_claims_md(results, claims_md, figures=figures))
    return paths


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report(results: dict, figures: str = "claims") -> str:
    """The markdown table: one row per claim (id, claim, seed file, verdict, key number, figure).

    ``figures`` is the figures' folder relative to the file the table goes into (the default
    suits ``figures/README.md``)."""
    rows = results["claims"]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (HOLDS, CAVEAT, FAILS)}
    lines = ["| id | claim | seed file | verdict | key number | figure |", "|---|---|---|---|---|---|"]
    for r in rows:
        verdict = r["verdict"] + (f" ({r['caveat']})" if r["caveat"] else "")
        lines.append(f"| {r['id']} | {_cell(r['statement'])} | {r['seed']} | {_cell(verdict)} | {_cell(r['key'])} "
                     f"| [{r['id']}.png]({figures}/{r['id']}.png) |")
    summary = ", ".join(f"{n} {v}" for v, n in counts.items())
    return f"{len(rows)} claims: {summary}.\n\n" + "\n".join(lines) + "\n"


def seed_list() -> str:
    """The seed decks as a markdown list: file name and what the deck covers (a list, so the
    only table in ``CLAIMS.md`` is the claims table)."""
    return "".join(f"* `{SEED_FILES[k]}`: {SEED_DECKS[k]}\n" for k in SEED_FILES)


def claims_md_header(config: dict) -> str:
    """The lines of ``CLAIMS.md`` above the claims table (title, how it was made, the seed decks)."""
    return ("# Claims from the seed flashcards, put to the test\n\n"
            "Generated by `lab run claims` (studies/claims); do not edit by hand. "
            f"Run with steps={config['steps']}, seeds={config['seeds']}. Each verdict is read from the "
            "measured number by the rule listed below the table.\n\n"
            f"The claims come from {len(SEED_FILES)} flashcard decks, the lab's shared source material (kept "
            "outside this repository and not shipped with it); the table's seed file column names the deck "
            "each claim was taken from:\n\n" + seed_list() + "\n")


def write_claims_md(results: dict, path="CLAIMS.md", figures: str = "figures/claims") -> Path:
    """Write ``CLAIMS.md``: how the table was made and the seed decks, then :func:`report`, then
    each claim's rule."""
    path = Path(path)
    rules = "\n".join(f"* **{r['id']}** ({r['topic']}): {r['rule']}" for r in results["claims"])
    text = (claims_md_header(results["config"]) + report(results, figures) + "\n## Verdict rules\n\n" + rules
            + "\n")
    path.write_text(text)
    return path
