"""Sweeps across processes: resume after kill -9, four devices equal one, and two
``jax.distributed`` processes sharing a sweep equal one process.

The children start together (module fixture) and run ``python -m tests.sweep_problem``;
the parent computes the single-device reference meanwhile.
"""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lab import store as storelib
from lab.sweep import run_sweep
from tests.sweep_problem import spec
from tests.test_sweep_engine import assert_same_runs

ROOT = Path(__file__).resolve().parent.parent


def _child(db, *extra, env=None):
    environment = dict(os.environ, JAX_PLATFORMS="cpu", **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "tests.sweep_problem", str(db), *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    folder = tmp_path_factory.mktemp("processes")
    killed_db, sharded_db = folder / "killed.sqlite", folder / "sharded.sqlite"
    victim = _child(killed_db, "--kill-after", "1")
    sharded = _child(sharded_db, "--devices", "4", env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    with socket.socket() as s:   # a free port for the coordinator
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    shared_db = folder / "shared.sqlite"
    pair = [_child(shared_db, "--distributed", str(port), str(i), "2") for i in range(2)]
    reference = run_sweep(spec(), store=":memory:", progress=False)
    yield reference, (victim, killed_db), (sharded, sharded_db), (pair, shared_db)
    for child in (victim, sharded, *pair):
        if child.poll() is None:
            child.kill()
        child.communicate()  # reap it and close its pipes


def test_resume_after_kill_9_equals_the_uninterrupted_run(children):
    reference, (victim, db), _, _ = children
    line = victim.stdout.readline()
    assert line.strip() == "committed 20", (line, victim.stderr.read() if victim.poll() is not None else "")
    os.kill(victim.pid, signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL
    with storelib.Store(db) as store:
        (row,) = store.list_sweeps()
        assert row["status"] == "running"                        # killed: nothing marked it otherwise
        assert store.checkpoint(row["id"], 0)[0] == 20           # the one committed chunk
        assert store.checkpoint(row["id"], 1) is None
    steps = []
    resumed = run_sweep(spec(), store=db, progress=False, on_chunk=lambda info: steps.append(info["step"]))
    assert steps == [20, 40, 40] and resumed.sweep_id == row["id"] and resumed.status == "done"
    assert_same_runs(reference, resumed, np.s_[:], np.s_[:])


def test_four_devices_give_the_single_device_results(children):
    reference, _, (sharded, db), _ = children
    out, err = sharded.communicate(timeout=300)
    assert sharded.returncode == 0, err[-3000:]
    assert out.splitlines()[-1] == "done 1 4"                   # sweep 1, on 4 devices
    result = storelib.load_sweep(db)
    assert result.environment["device_count"] == 4
    assert "--xla_force_host_platform_device_count=4" in result.environment["xla_flags"]
    assert reference.environment["device_count"] == 1
    assert_same_runs(reference, result, np.s_[:], np.s_[:])


def test_two_distributed_processes_share_a_sweep_and_equal_one_process(children):
    reference, _, _, (pair, db) = children
    for child in pair:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-3000:]
        assert out.splitlines()[-1] == "done 1 1"          # both return the merged sweep 1 (one device each)
    from lab.sweep.engine import part_path
    for i in range(2):                                      # each part ran its own batch only
        with storelib.Store(part_path(db, i, 2)) as part:
            (row,) = part.list_sweeps()
            assert row["status"] == "done"
            assert {b: v[2] for b, v in part.batches(row["id"]).items()} == {0: i == 0, 1: i == 1}
    merged = storelib.load_sweep(db)
    assert merged.execution["process_count"] == 2 and merged.execution["parts"] == {"0": 1, "1": 1}
    assert merged.environment["process_count"] == 2
    assert_same_runs(reference, merged, np.s_[:], np.s_[:])
