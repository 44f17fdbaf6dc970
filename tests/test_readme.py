"""The README's two commands are the project's entry points; keep them true."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", text, re.S)
    assert block, "README.md must open with a code block holding the two commands"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_readme_opens_with_exactly_two_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "lab " in cmds[0] and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in [ln.strip() for ln in ci]


def test_every_figure_named_in_the_readme_exists():
    text = (ROOT / "README.md").read_text()
    figures = re.findall(r"\((figures/[^)\s]+\.(?:png|svg))\)", text)
    assert figures, "the README shows at least one figure"
    for f in figures:
        assert (ROOT / f).is_file(), f


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102  (the README's own example)
    losses = scope["result"].step_losses
    assert losses.shape == (5 * (1797 // 32),) and losses[-20:].mean() < 0.5 * losses[:20].mean()


def test_your_own_sweep_runs_as_written_and_is_read_back_the_second_time(tmp_path):
    import subprocess
    import sys

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Your own sweep"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "my_sweep.py"
    script.write_text(code)
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("XLA_FLAGS", "LAB_CPU_DEVICES")}
    env["PYTHONPATH"] = str(ROOT)
    runs = [subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, env=env,
                           timeout=600) for _ in range(2)]
    for done in runs:
        assert done.returncode == 0, done.stderr
    lines = runs[0].stdout.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["sgd", "adam"]
    for ln in lines:
        assert float(ln.rsplit(" ", 1)[1]) > 0.85, ln     # both optimizers learn the digits (0.91 here)
    assert runs[1].stdout == runs[0].stdout                 # the second run read the sweep back
    from lab.store import Store
    with Store(tmp_path / "results" / "my_sweep.sqlite") as db:
        (row,) = db.list_sweeps()
        assert row["status"] == "done" and sum(db.run_counts()[row["id"]].values()) == 42   # one sweep of 42 runs
