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
