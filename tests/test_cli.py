"""The ``lab`` command: list, run, plot, show, the figure index and its usage errors.

Most tests drive a stand-in study (the tiny sweep of tests/sweep_problem.py behind the
study contract) registered under the name ``tiny``, so they take seconds."""
import dataclasses
import sys
import types

import numpy as np
import pytest

import studies
from studies import cli
from lab.sweep import run_sweep
from tests import sweep_problem


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    steps: int = 40                          # SGD steps per run
    learning_rates: tuple = (0.03, 0.1, 0.3)  # the grid
    label: str = "tiny"                      # shown in the report


def _make_tiny_module():
    mod = types.ModuleType("tests_tiny_study")
    mod.NAME = "tiny"
    mod.DESCRIPTION = "a stand-in study: the tiny MLP sweep"
    mod.FIGURES = {"tiny_final": "final loss against the learning rate"}
    mod.Config, mod.FULL = TinyConfig, TinyConfig()
    mod.QUICK = TinyConfig(steps=20)

    def spec(config):
        return sweep_problem.spec({"learning_rate": list(config.learning_rates)}, steps=config.steps, seeds=1)

    def results(config, sweep):
        return {"lr": np.asarray(sweep.axes["learning_rate"]), "final": sweep.final["eval_loss"][:, 0],
                "label": config.label, "steps": config.steps}

    mod.run = lambda config, *, store, progress=True, rerun=False: results(
        config, run_sweep(spec(config), store=store, progress=progress, rerun=rerun))
    mod.load = lambda config, *, store: results(config, studies.stored_sweep(spec(config), store))

    def plot(res, outdir="figures"):
        from lab import plotting
        fig, ax = plotting.figure()
        ax.plot(res["lr"], res["final"])
        return list(plotting.save(fig, outdir, "tiny_final"))

    mod.plot = plot
    mod.report = lambda res: f"| quantity | measured |\n|---|---|\n| {res['label']} steps | {res['steps']} |"
    return mod


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setitem(sys.modules, "tests_tiny_study", _make_tiny_module())
    monkeypatch.setattr(studies, "STUDIES", {"tiny": "tests_tiny_study", "broken": "tests_no_such_module_xyz"})


def test_list_shows_every_study_and_unavailable_ones(tiny, capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:2] == ["tiny", "a"] and "stand-in study" in out[0]
    assert out[1].startswith("broken") and "unavailable: ModuleNotFoundError" in out[1]


def test_real_registry_lists_every_study_and_each_imports(capsys):
    assert list(studies.STUDIES) == ["learning_rate", "batch_size", "momentum", "newton", "edge_of_stability",
                                     "optimizers", "lr_free", "benchmark", "claims"]
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in studies.STUDIES:
        module = studies.import_study(name)
        assert f"{name}  " in out and module.DESCRIPTION in out
        assert module.QUICK != module.FULL and callable(module.run) and callable(module.load)


def test_run_plot_show_and_index(tiny, tmp_path, capsys):
    db, out = tmp_path / "lab.sqlite", tmp_path / "figs"
    argv = ["run", "tiny", "--quick", "--set", "label=first", "--db", str(db), "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "| first steps | 20 |" in printed and "tiny: wall time" in printed
    assert (out / "tiny_final.png").stat().st_size > 1000
    index = (out / "README.md").read_text()
    assert index.startswith("# Figure index")
    assert f"`lab run tiny --quick --set label=first --db {db} --out {out}`" in index
    assert "| [tiny_final.png](tiny_final.png) | final loss against the learning rate |" in index

    # A second run (stored sweep, new label) rewrites the section instead of adding one.
    (out / "README.md").write_text(index + "\nkept by hand\n")
    assert cli.main(argv[:4] + ["label=second"] + argv[5:]) == 0
    index = (out / "README.md").read_text()
    assert index.count("## tiny") == 1 and "| second steps | 20 |" in index and "first" not in index
    assert "kept by hand" in index

    (out / "tiny_final.png").unlink()
    assert cli.main(["plot", "tiny", "--quick", "--db", str(db), "--out", str(out)]) == 0
    assert (out / "tiny_final.png").exists()

    capsys.readouterr()
    assert cli.main(["show", "--db", str(db)]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split()[:4] == ["id", "study", "status", "runs"]
    assert rows[1].split()[:4] == ["1", "tiny_mlp", "done", "3"] and len(rows) == 2


def test_plot_without_a_stored_sweep_says_what_to_run(tiny, tmp_path, capsys):
    assert cli.main(["plot", "tiny", "--quick", "--set", "steps=10", "--db", str(tmp_path / "x.sqlite")]) == 1
    err = capsys.readouterr().err
    assert "run `lab run tiny --quick --set steps=10` first" in err
    assert cli.main(["show", "--db", str(tmp_path / "x.sqlite")]) == 1
    assert "no results database" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "nope"], "unknown study 'nope'; known studies: tiny, broken (or 'all')"),
    (["run", "broken"], "study 'broken' is unavailable: ModuleNotFoundError"),
    (["run", "tiny", "--set", "stepz=3"], "not a config field of study tiny; valid keys: steps, learning_rates, label"),
    (["run", "tiny", "--set", "steps=3.5"], "steps is an integer; '3.5' is not one"),
    (["run", "tiny", "--set", "learning_rates=0.1,x"], "each item of learning_rates is a number; 'x' is not one"),
    (["run", "tiny", "--set", "steps"], "--set expects KEY=VALUE, got 'steps'"),
    (["plot", "nope"], "unknown study 'nope'"),
    (["run"], ""),
    (["run", "tiny", "--quick", "--full"], ""),
])
def test_usage_errors_exit_2(tiny, capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_make_config_coerces_each_field_type(tiny):
    mod = sys.modules["tests_tiny_study"]
    cfg = cli.make_config(mod, quick=False, settings=["learning_rates=0.5, 1e-2", "steps=30", "label=a=b"])
    assert cfg == TinyConfig(steps=30, learning_rates=(0.5, 0.01), label="a=b")
    assert cli.make_config(mod, quick=True, settings=[]) == mod.QUICK


def test_run_all_skips_broken_studies_and_reports_failure(tiny, tmp_path, capsys):
    code = cli.main(["run", "all", "--quick", "--db", str(tmp_path / "db.sqlite"), "--out", str(tmp_path),
                     "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    assert "tiny: wall time" in captured.out
    assert "skipping study 'broken' is unavailable" in captured.err and "failed: broken" in captured.err


def test_compilation_cache_sits_beside_the_database_unless_turned_off(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_COMPILATION_CACHE", raising=False)
    assert cli.compilation_cache_dir(tmp_path / "r" / "lab.sqlite") == tmp_path / "r" / "jax_cache"
    assert cli.compilation_cache_dir(":memory:") is None
    monkeypatch.setenv("LAB_COMPILATION_CACHE", str(tmp_path / "elsewhere"))
    assert cli.compilation_cache_dir("lab.sqlite") == tmp_path / "elsewhere"
    monkeypatch.setenv("LAB_COMPILATION_CACHE", "off")
    assert cli.compilation_cache_dir("lab.sqlite") is None


def test_index_sections_follow_the_registry_order_and_link_into_subfolders(tmp_path):
    index = tmp_path / "README.md"
    module = types.SimpleNamespace(DESCRIPTION="d", FIGURES={"x": "an x"})
    for name in ("c", "a", "b"):
        section = cli.index_section(name, module, f"lab run {name}", [tmp_path / "sub" / "x.png"], "| t |", 1.0,
                                    root=tmp_path)
        cli.update_index(index, name, section, order=["a", "b", "c"])
    text = index.read_text()
    assert [text.index(f"## {n}\n") for n in "abc"] == sorted(text.index(f"## {n}\n") for n in "abc")
    assert text.count("## a\n") == 1 and "| [x.png](sub/x.png) | an x |" in text
    assert text.startswith("# Figure index")


def _child_devices(tmp_path, code, **env):
    """Run ``code`` in a fresh interpreter (JAX not yet started) and return its last stdout line."""
    import os
    import subprocess
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LAB_CPU_DEVICES")}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_lab_command_splits_the_cpu_into_one_device_per_core_or_as_told(tmp_path):
    import os
    code = "import jax; from studies import cli; rc = cli.main(['list']); print(rc, jax.local_device_count())"
    cores = len(os.sched_getaffinity(0))
    assert _child_devices(tmp_path, code) == f"0 {cores}"
    assert _child_devices(tmp_path, code, LAB_CPU_DEVICES="3") == "0 3"
    # an explicit XLA_FLAGS device count wins over the default
    assert _child_devices(tmp_path, code, XLA_FLAGS="--xla_force_host_platform_device_count=5") == "0 5"
    # the library call alone: it reports what it set, and None when the flags already chose
    lib = "from lab.sweep import use_cpu_cores; n = use_cpu_cores(2); import jax; print(n, jax.local_device_count())"
    assert _child_devices(tmp_path, lib) == "2 2"
    assert _child_devices(tmp_path, lib, XLA_FLAGS="--xla_force_host_platform_device_count=4") == "None 4"


def test_use_cpu_cores_is_a_no_op_once_jax_has_started_and_refuses_zero():
    import jax

    from lab.sweep import use_cpu_cores
    before = jax.local_device_count()
    assert use_cpu_cores(7) is None and jax.local_device_count() == before
    with pytest.raises(ValueError, match="positive number of CPU devices"):
        use_cpu_cores(0)


@pytest.mark.parametrize("value", ["zero", "0", "-2", "1.5"])
def test_a_bad_lab_cpu_devices_value_exits_2_naming_it(monkeypatch, capsys, value):
    monkeypatch.setenv("LAB_CPU_DEVICES", value)
    assert cli.main(["list"]) == 2
    assert f"LAB_CPU_DEVICES must be a positive whole number of CPU devices, got {value!r}" in capsys.readouterr().err


def test_plot_without_a_size_draws_the_size_stored_last(tiny, tmp_path, capsys):
    # `lab run all --quick` then `lab plot STUDY`: the quick results, not an error about --full
    db, out = tmp_path / "lab.sqlite", tmp_path / "figs"
    assert cli.main(["run", "tiny", "--quick", "--db", str(db), "--out", str(out), "--no-progress"]) == 0
    (out / "tiny_final.png").unlink()
    capsys.readouterr()
    assert cli.main(["plot", "tiny", "--db", str(db), "--out", str(out)]) == 0
    assert "plotting the quick results of tiny, the newest stored" in capsys.readouterr().out
    assert (out / "tiny_final.png").exists()
    # with both sizes stored, the one stored last; an explicit size still wins
    assert cli.main(["run", "tiny", "--full", "--db", str(db), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["plot", "tiny", "--db", str(db), "--out", str(out)]) == 0
    assert "plotting the full results" in capsys.readouterr().out
    assert cli.main(["plot", "tiny", "--quick", "--db", str(db), "--out", str(out)]) == 0
    assert "plotting" not in capsys.readouterr().out
    # nothing stored: both commands are named
    assert cli.main(["plot", "tiny", "--db", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 1
    assert "run `lab run tiny --quick` or `lab run tiny --full` first" in capsys.readouterr().err


def test_plot_refuses_stale_results_in_one_line(tiny, tmp_path, capsys, monkeypatch):
    db, out = tmp_path / "lab.sqlite", tmp_path / "figs"
    assert cli.main(["run", "tiny", "--quick", "--db", str(db), "--out", str(out), "--no-progress"]) == 0
    monkeypatch.setattr(sweep_problem, "X", sweep_problem.X[::-1].copy())   # the data changed behind the config
    capsys.readouterr()
    assert cli.main(["plot", "tiny", "--quick", "--db", str(db), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lab: error: study tiny (quick): sweep 1") and "data differ" in err and "--rerun" in err
