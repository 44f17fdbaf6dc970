"""The float32 leg: the sweep engine's and the studies' tests as users run them.

The suite runs in float64 (tests/conftest.py), but users get float32.  This test runs the
engine's, the reliability and the studies' test files again in a fresh process with
``LAB_TEST_FLOAT32=1`` (x64 off), where checks that reach rounding take float32
tolerances (tests/helpers.py ``by_precision``).
"""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ["tests/test_sweep_engine.py", "tests/test_sweep_spec.py", "tests/test_sweep_identity.py",
         "tests/test_reliability.py", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_study_*.py"))]


def test_the_engine_and_the_studies_pass_in_float32():
    env = dict(os.environ, LAB_TEST_FLOAT32="1")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider", *FILES],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=3000)
    tail = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, tail
    passed = re.search(r"(\d+) passed", done.stdout)
    assert passed and int(passed.group(1)) >= 150, tail     # every file ran, none skipped
    assert " skipped" not in done.stdout and "deselected" not in done.stdout, tail
