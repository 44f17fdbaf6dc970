"""The ``lab`` command: the only place that parses arguments and prints.

    lab demo [--epochs N] [--out DIR]          train an MLP on the digits data, write a figure
    lab list                                   the registered studies, one line each
    lab run STUDY... | all [--quick | --full] [--set KEY=VALUE ...] [--db PATH] [--rerun] [--out DIR]
                                               run studies (sweeps go to the database), print each
                                               report, write the figures and the figure index
    lab plot STUDY [--quick | --full] [--set KEY=VALUE ...] [--db PATH] [--out DIR]
                                               redraw a study's figures from the database (without
                                               a size: the size whose sweeps were stored last)
    lab show [--db PATH]                       the sweeps stored in the database ("stopped": left
                                               running by a process that is gone; lab run resumes it)

``--full`` (the default of ``run``) uses a study's ``FULL`` config, ``--quick`` its ``QUICK`` one;
``--set`` overrides one config field (repeatable; tuples as comma-separated values).
Usage errors (unknown study, bad ``--set`` key or value) exit with status 2; a failure of the
results database or the file system (foreign, corrupt, locked, full or read-only file; a sweep
another process is computing) is one line ``lab: error: ...`` naming the path, exit 1; Ctrl-C
exits 130 and ``lab run`` resumes where it stopped.  ``lab show`` and ``lab plot`` only read.
The figure index ``OUT/README.md`` keeps one section per study, rewritten on each run.
On a CPU-only machine the command splits the CPU into one XLA device per core before any
computation (:func:`lab.sweep.use_cpu_cores`), so sweeps use every core;
``LAB_CPU_DEVICES=N`` chooses another count (``1``: a single device, as plain JAX).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import re
import sys
import time
from pathlib import Path

import studies
from studies import common

DEFAULT_DB = Path("results") / "lab.sqlite"
INDEX_HEADER = ("# Figure index\n\n"
                "Written by `lab run`: one section per study, rewritten each time the study runs.  For each "
                "figure, the command that made it and what it shows; then the study's measured-vs-theory "
                "table.  Every PNG has an SVG twin beside it.\n")


class UsageError(Exception):
    """A bad command line: reported as ``lab: error: ...`` with exit status 2."""


# --------------------------------------------------------------------------- demo


def _demo(args) -> int:
    from studies import digits_demo

    cfg = digits_demo.Config(epochs=args.epochs)
    print(f"training an MLP {cfg.sizes} ({cfg.activation}) on the 8x8 digits: "
          f"{cfg.epochs} epochs, batch {cfg.batch_size}, {cfg.optimizer} lr={cfg.learning_rate}")
    t0 = time.perf_counter()

    def report(epoch, row):
        print(f"  epoch {epoch + 1:3d}/{cfg.epochs}  train loss {row['train_loss']:.4f}  "
              f"test loss {row['test_loss']:.4f}  test accuracy {row['test_accuracy']:.3f}", flush=True)

    results = digits_demo.run(cfg, callback=report)
    paths = digits_demo.plot(results, args.out)
    print(f"done in {time.perf_counter() - t0:.1f}s; final test accuracy "
          f"{results['test_accuracy'][-1]:.3f}; figure: {', '.join(str(p) for p in paths)}")
    return 0


# --------------------------------------------------------------------------- studies and configs


def _registry() -> dict:
    from studies import STUDIES
    return STUDIES


def _resolve(names: list[str]) -> list[str]:
    """Expand ``all`` and check every name against the registry."""
    known = list(_registry())
    out = []
    for name in names:
        if name == "all":
            out += [n for n in known if n not in out]
        elif name not in known:
            raise UsageError(f"unknown study {name!r}; known studies: {', '.join(known)} (or 'all')")
        elif name not in out:
            out.append(name)
    return out


def _coerce(text: str, default, field: str):
    """``text`` as a value of the type of ``default`` (tuples: comma-separated)."""
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{field} is a boolean; give true or false, not {text!r}")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{field} is an integer; {text!r} is not one") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{field} is a number; {text!r} is not one") from None
    if isinstance(default, tuple):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise ValueError(f"{field} is a tuple; give comma-separated values, got {text!r}")
        example = default[0] if default else ""
        return tuple(_coerce(t, example, f"each item of {field}") for t in items)
    if isinstance(default, str):
        return text
    raise ValueError(f"{field} has type {type(default).__name__}, which --set cannot write")


def make_config(module, *, quick: bool, settings: list[str]):
    """The study's QUICK or FULL config with each ``KEY=VALUE`` of ``settings`` applied."""
    base = module.QUICK if quick else module.FULL
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        if key not in fields:
            raise UsageError(f"--set {key}: not a config field of study {_study_name(module)}; "
                             f"valid keys: {', '.join(fields)}")
        try:
            changes[key] = _coerce(value, fields[key], key)
        except ValueError as err:
            raise UsageError(f"--set {item}: {err}") from None
    return dataclasses.replace(base, **changes)


def _study_name(module) -> str:
    return getattr(module, "NAME", module.__name__.rsplit(".", 1)[-1])


def _import(name: str):
    from studies import import_study
    try:
        return import_study(name)
    except Exception as err:  # noqa: BLE001 -- any broken study module: name it, keep the rest usable
        raise UsageError(f"study {name!r} is unavailable: {type(err).__name__}: {err}") from None


def _command(name: str, args) -> str:
    parts = ["lab run", name, "--quick" if args.quick else "--full"]
    parts += [f"--set {s}" for s in args.set]
    if Path(args.db) != DEFAULT_DB:
        parts.append(f"--db {args.db}")
    if args.out != "figures":
        parts.append(f"--out {args.out}")
    return " ".join(parts)


# --------------------------------------------------------------------------- the figure index


def index_section(name: str, module, command: str, paths, report: str, seconds: float, root=None) -> str:
    """One study's section of the figure index (markdown, between marker comments); figure
    links are relative to ``root``, the index's folder (the figures' own folder when None)."""
    described = getattr(module, "FIGURES", {})
    pngs = [Path(p) for p in paths if Path(p).suffix == ".png"]
    lines = [f"<!-- study: {name} -->", f"## {name}", "", getattr(module, "DESCRIPTION", ""), "",
             f"Made by `{command}` in {seconds:.0f} s on {datetime.date.today().isoformat()}.", "",
             "| figure | what it shows |", "|---|---|"]
    for png in pngs:
        link = png.name if root is None else Path(os.path.relpath(png, root)).as_posix()
        lines.append(f"| [{png.name}]({link}) | {described.get(png.stem, '(not described by the study)')} |")
    lines += ["", "Measured against theory:", "", report.strip(), f"<!-- end: {name} -->", ""]
    return "\n".join(lines)


def update_index(path: Path, name: str, section: str, order=()) -> None:
    """Replace study ``name``'s section of the index at ``path`` (or add it); sections are
    then sorted by their study's place in ``order`` (names not in it last, as they were)."""
    text = path.read_text() if path.exists() else INDEX_HEADER
    pattern = re.compile(rf"<!-- study: {re.escape(name)} -->.*?<!-- end: {re.escape(name)} -->\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    sections = list(re.finditer(r"<!-- study: (\S+) -->.*?<!-- end: \1 -->\n?", text, re.DOTALL))
    if sections:
        head, tail = text[:sections[0].start()], text[sections[-1].end():]
        rank = {n: i for i, n in enumerate(order)}
        ordered = sorted(range(len(sections)), key=lambda i: (rank.get(sections[i].group(1), len(rank)), i))
        text = head + "\n".join(sections[i].group(0).rstrip("\n") + "\n" for i in ordered) + tail
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --------------------------------------------------------------------------- commands


def _list(args) -> int:
    from studies import import_study
    registry = _registry()
    width = max(len(n) for n in registry)
    for name in registry:
        try:
            line = import_study(name).DESCRIPTION
        except Exception as err:  # noqa: BLE001 -- a broken study is listed, not fatal
            line = f"(unavailable: {type(err).__name__}: {err})"
        print(f"{name:<{width}}  {line}")
    return 0


def compilation_cache_dir(db) -> Path | None:
    """Where ``lab run``/``lab plot`` keep compiled XLA programs (JAX's persistent compilation
    cache), so a second run skips compilation: ``jax_cache/`` beside the results database,
    or ``$LAB_COMPILATION_CACHE``; None (no cache) for an in-memory database or when that
    variable is ``off``."""
    chosen = os.environ.get("LAB_COMPILATION_CACHE", "")
    if chosen.lower() == "off" or str(db) == ":memory:":
        return None
    return Path(chosen) if chosen else Path(db).parent / "jax_cache"


def _use_compilation_cache(db) -> None:
    folder = compilation_cache_dir(db)
    if folder is not None:
        import jax
        jax.config.update("jax_compilation_cache_dir", str(folder))


def _run(args) -> int:
    _use_compilation_cache(args.db)
    names = _resolve(args.studies)
    explicit = "all" not in args.studies
    plans, failed = [], []
    for name in names:
        try:
            module = _import(name)
        except UsageError as err:
            if explicit:
                raise
            print(f"lab: skipping {err}", file=sys.stderr)
            failed.append(name)
            continue
        plans.append((name, module, make_config(module, quick=args.quick, settings=args.set)))
    for name, module, config in plans:   # every study's config and sweeps, before any compute
        try:
            common.check_config(config, getattr(module, "plan", None))
        except (TypeError, ValueError, KeyError) as err:
            raise UsageError(f"study {name}: {err.args[0] if err.args else err}") from None
    from lab.store import Store
    Store(args.db).close()   # the database is usable (not foreign, corrupt, locked, read-only)
    out = Path(args.out)
    for name, module, config in plans:
        print(f"== {name} ({'quick' if args.quick else 'full'}): {module.DESCRIPTION}", flush=True)
        t0 = time.perf_counter()
        try:
            results = module.run(config, store=args.db, progress=not args.no_progress, rerun=args.rerun)
        except ValueError as err:
            print(f"lab: error: study {name}: {err}", file=sys.stderr)
            failed.append(name)
            continue
        paths = module.plot(results, out)
        report = module.report(results)
        seconds = time.perf_counter() - t0
        update_index(out / "README.md", name, index_section(name, module, _command(name, args), paths, report,
                                                            seconds, root=out), order=list(_registry()))
        print(report)
        print(f"figures: {', '.join(str(p) for p in paths if Path(p).suffix == '.png')}")
        print(f"{name}: wall time {seconds:.1f} s", flush=True)
    if failed:
        print(f"lab: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _plot(args) -> int:
    (name,) = _resolve([args.study]) if args.study != "all" else (None,)
    if name is None:
        raise UsageError("lab plot takes one study name, not 'all'")
    module = _import(name)
    _use_compilation_cache(args.db)
    sizes = [True, False] if args.quick is None else [args.quick]   # no size given: what is stored
    loaded, missing, stale = [], [], []
    for quick in sizes:
        config = make_config(module, quick=quick, settings=args.set)
        try:
            with studies.served_sweeps() as served:
                results = module.load(config, store=args.db)
        except LookupError as err:
            missing.append((quick, err.args[0] if err.args else str(err)))
            continue
        except ValueError as err:   # stored, but no longer what the code computes
            stale.append(f"study {name} ({'quick' if quick else 'full'}): {err}")
            continue
        newest = max((r.timings.get("ended") or 0.0 for r in served), default=0.0)
        loaded.append((newest, not quick, quick, results))
    for line in stale:
        print(f"lab: {'error' if not loaded else 'note'}: {line}", file=sys.stderr)
    if stale and not loaded:
        return 1
    if not loaded:
        settings = "".join(f" --set {s}" for s in args.set)
        commands = " or ".join(f"`lab run {name} {'--quick' if q else '--full'}{settings}`" for q in sizes)
        print(f"lab: error: {missing[0][1]}; run {commands} first", file=sys.stderr)
        return 1
    _, _, quick, results = max(loaded, key=lambda item: item[:2])   # the newest; full when no times tell
    if len(sizes) > 1:
        print(f"plotting the {'quick' if quick else 'full'} results of {name}, the newest stored "
              f"(--quick or --full to choose)")
    paths = module.plot(results, Path(args.out))
    print(f"figures: {', '.join(str(p) for p in paths if Path(p).suffix == '.png')}")
    return 0


def _show(args) -> int:
    from lab.store import Store
    db = Path(args.db)
    if not db.exists():
        print(f"lab: error: no results database at {db}", file=sys.stderr)
        return 1
    with Store(db, readonly=True) as store:
        sweeps, counts = store.list_sweeps(), store.run_counts()
        owners = {s["id"]: store.owner(s["id"]) for s in sweeps if s["status"] == "running"}
    if not sweeps:
        print(f"no sweeps in {db}")
        return 0

    def when(t):
        return "-" if t is None else datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")

    print(f"{'id':>4}  {'study':<28} {'status':<12} {'runs':>6} {'diverged':>8}  {'started':<19}  {'ended':<19}")
    for s in sweeps:
        c = counts.get(s["id"], {})
        owner = owners.get(s["id"])
        status = "stopped" if s["status"] == "running" and not (owner and owner["alive"]) else s["status"]
        print(f"{s['id']:>4}  {s['study']:<28} {status:<12} {sum(c.values()):>6} {c.get('diverged', 0):>8}  "
              f"{when(s['started']):<19}  {when(s['ended']):<19}")
    return 0


# --------------------------------------------------------------------------- parser


def _size_flags(p, *, stored: bool = False) -> None:
    group = p.add_mutually_exclusive_group()
    default = "the size stored last" if stored else "the default"
    group.add_argument("--quick", action="store_true", default=None if stored else False,
                       help="the study's small QUICK config")
    group.add_argument("--full", dest="quick", action="store_false", help=f"the study's FULL config ({default})")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config field (repeatable); tuples as comma-separated values")
    p.add_argument("--db", default=str(DEFAULT_DB), help=f"results database (default {DEFAULT_DB})")
    p.add_argument("--out", default="figures", help="directory for figures and README.md (default figures/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab", description="A JAX functional optimization laboratory.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train an MLP on the 8x8 digits and write figures/digits_demo.png")
    demo.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    demo.add_argument("--out", default="figures", help="directory for the figure (default figures/)")
    demo.set_defaults(func=_demo)
    sub.add_parser("list", help="the registered studies").set_defaults(func=_list)
    run = sub.add_parser("run", help="run studies, print their reports, write figures and the index")
    run.add_argument("studies", nargs="+", metavar="STUDY", help="study names, or 'all'")
    _size_flags(run)
    run.add_argument("--rerun", action="store_true", help="recompute sweeps already in the database")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    run.set_defaults(func=_run)
    plot = sub.add_parser("plot", help="redraw a study's figures from the database, without training")
    plot.add_argument("study", metavar="STUDY")
    _size_flags(plot, stored=True)
    plot.set_defaults(func=_plot)
    show = sub.add_parser("show", help="list the sweeps in the results database")
    show.add_argument("--db", default=str(DEFAULT_DB), help=f"results database (default {DEFAULT_DB})")
    show.set_defaults(func=_show)
    return parser


def cpu_devices_wanted() -> int | None:
    """``$LAB_CPU_DEVICES`` as a device count, or None (one per core) when unset."""
    chosen = os.environ.get("LAB_CPU_DEVICES", "").strip()
    if not chosen:
        return None
    if not chosen.isdigit() or int(chosen) < 1:
        raise UsageError(f"LAB_CPU_DEVICES must be a positive whole number of CPU devices, got {chosen!r}")
    return int(chosen)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse's own usage errors (2) and --help (0)
        return int(exit_.code or 0)
    if args.command == "demo" and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")  # SystemExit(2), as before
    try:
        from lab.sweep import use_cpu_cores
        use_cpu_cores(cpu_devices_wanted())   # before any JAX computation; a no-op when too late
        return args.func(args)
    except UsageError as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        again = "run the same command to resume" if args.command == "run" else "nothing was changed"
        print(f"\nlab: interrupted; {again}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 -- the file system's and the database's failures: one line
        message = _environment_failure(err, getattr(args, "db", None))
        if message is None:
            raise
        print(f"lab: error: {message}", file=sys.stderr)
        return 1


def _environment_failure(err: Exception, db) -> str | None:
    """One line for a failure of the machine rather than of the code (the results database,
    the disk, the file system), or None for anything else (a bug: its traceback is shown)."""
    import sqlite3

    from lab.store import StoreError
    if isinstance(err, StoreError):
        return str(err)
    if isinstance(err, sqlite3.Error):
        return f"results database {db}: {err}"
    if isinstance(err, OSError):
        where = err.filename if err.filename is not None else db
        return f"{where}: {err.strerror or err}"
    return None


if __name__ == "__main__":
    sys.exit(main())
