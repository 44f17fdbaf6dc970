"""The sweep engine on the tiny study: compile count, learning, divergence, determinism,
early stop, resume, no rerun, progress, bad input before compute.

Most sweeps here share one program shape (tests/sweep_problem.spec: 40 steps, chunks of
20, 4 runs per device), so the engine's in-process cache compiles it once for the module.
"""
import dataclasses
import json
import sqlite3

import jax
import numpy as np
import pytest
from jax import monitoring

from lab import optim
from lab import store as storelib
from lab.sweep import program as prog
from lab.sweep import run_sweep
from tests.sweep_problem import STUDY, spec

COMPILES: list = []
monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **kw: COMPILES.append(event) if event == "/jax/core/compile/backend_compile_duration" else None)


def assert_same_runs(a, b, index_a, index_b):
    """Curves and final metrics of the runs at ``index_a`` in ``a`` equal those at ``index_b`` in ``b`` bit for bit."""
    for metric in a.curves:
        np.testing.assert_array_equal(a.curves[metric][index_a], b.curves[metric][index_b], err_msg=metric)
        np.testing.assert_array_equal(a.final[metric][index_a], b.final[metric][index_b], err_msg=metric)
    np.testing.assert_array_equal(a.diverged_step[index_a], b.diverged_step[index_b])


LRS = [0.03, 0.1, 0.3, 60.0] + [float(v) for v in np.geomspace(1.1e-3, 0.9, 28)]   # 60.0 diverges


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """32 learning rates x 4 seeds x batch sizes 16 and 8, with the XLA compilations it caused."""
    path = tmp_path_factory.mktemp("base") / "lab.sqlite"
    prog._COMPILED.clear()  # count from a cold cache even if another test compiled these shapes
    before = len(COMPILES)
    result = run_sweep(spec({"learning_rate": LRS, "batch_size": [16, 8]}, seeds=4, divergence_factor=3.0),
                       store=path, progress=False)
    return result, path, len(COMPILES) - before


def test_one_compile_per_static_group_and_none_for_new_values(base):
    result, _, compiles = base
    assert result.shape == (32, 2, 4) and result.execution["runs_per_device"] == {"0": 4, "1": 4}
    assert compiles == 2                                        # one XLA compilation per static group
    before = len(COMPILES)
    again = run_sweep(spec({"learning_rate": [lr * 0.5 for lr in LRS], "batch_size": [16, 8]}, seeds=[4, 5, 6, 7],
                           divergence_factor=3.0), store=":memory:", progress=False)
    assert again.shape == (32, 2, 4) and len(COMPILES) - before == 0   # new values, same programs


def test_result_shapes_metrics_and_records(base):
    result, path, _ = base
    assert result.status == "done"
    assert list(result.axes) == ["learning_rate", "batch_size", "seed"]
    assert result.axes["learning_rate"] == tuple(LRS) and result.axes["seed"] == (0, 1, 2, 3)
    np.testing.assert_array_equal(result.eval_steps, [10, 20, 30, 40])
    assert sorted(result.curves) == ["eval_accuracy", "eval_loss", "grad_norm", "param_norm", "train_loss",
                                     "update_norm"]
    assert all(c.shape == (32, 2, 4, 4) for c in result.curves.values())
    env = result.environment
    assert env["jax"] == jax.__version__ and env["prng_impl"] == str(jax.config.jax_default_prng_impl)
    assert env["device_kind"] == jax.devices()[0].device_kind and "xla_flags" in env
    assert result.timings["compile_seconds"] > 0 and result.timings["ended"] >= result.timings["started"]
    rows = result.rows()
    assert len(rows) == 256
    assert rows[13] == dict(rows[13], learning_rate=0.1, batch_size=8, momentum=0.9, seed=1, width=16)
    assert storelib.load_sweep(path).sweep_id == result.sweep_id


def test_healthy_runs_learn_and_the_diverging_one_is_marked(base):
    result, _, _ = base
    loss = result.curves["train_loss"][:3, 0]                       # batch size 16
    assert (loss[..., -1] < 0.8 * loss[..., 0]).all()              # every healthy run improved
    assert (result.final["eval_accuracy"][1:3, 0] > 0.6).all()      # well above chance (0.25)
    assert (result.diverged_step[:3] == -1).all() and (result.run_status[:3] == "done").all()
    d = result.diverged_step[3]
    assert ((d >= 0) & (d < 10)).all() and (result.run_status[3] == "diverged").all()
    assert np.isnan(result.curves["train_loss"][3]).all()            # diverged inside the first block
    assert np.isnan(result.final["eval_loss"][3]).all()
    gn = result.curves["grad_norm"][:3]
    assert np.isfinite(gn).all() and (gn > 0).all()


def test_a_diverging_run_leaves_the_others_bit_for_bit(base):
    result, _, _ = base
    calm = run_sweep(spec({"learning_rate": [0.03, 0.1, 0.3, 0.01]}, seeds=4, divergence_factor=3.0),
                     store=":memory:", progress=False)
    assert (calm.diverged_step == -1).all()
    assert_same_runs(result, calm, np.s_[:3, 0], np.s_[:3])


def test_results_do_not_depend_on_chunking_layout_or_order(base):
    result, _, _ = base
    rechunked = run_sweep(spec({"learning_rate": LRS[:4]}, seeds=4, divergence_factor=3.0, chunk_steps=10),
                          store=":memory:", progress=False)
    assert_same_runs(result, rechunked, np.s_[:4, 0], np.s_[:])
    reordered = run_sweep(spec({"batch_size": [8], "learning_rate": [0.3, 0.03]}, seeds=[1], divergence_factor=3.0),
                          store=":memory:", progress=False)
    assert_same_runs(result, reordered, np.s_[2, 1, 1], np.s_[0, 0, 0])   # lr 0.3, batch 8, seed 1
    assert_same_runs(result, reordered, np.s_[0, 1, 1], np.s_[0, 1, 0])   # lr 0.03


def test_a_batch_stops_early_when_every_run_diverged():
    chunks = []
    result = run_sweep(spec({"learning_rate": [50.0, 80.0]}, divergence_factor=3.0, chunk_steps=10),
                       store=":memory:", progress=False, on_chunk=chunks.append)
    assert (result.run_status == "diverged").all() and (result.diverged_step < 10).all()
    assert [c["step"] for c in chunks] == [10]                  # one chunk of the four, then stop
    assert np.isnan(result.curves["train_loss"]).all()


def test_kept_parameters_are_each_runs_last_ones(tmp_path):
    grid = {"learning_rate": [0.1, 60.0]}                            # 60.0 diverges
    kept = run_sweep(spec(grid, divergence_factor=3.0, keep_params=True), store=tmp_path / "a.sqlite", progress=False)
    plain = run_sweep(spec(grid, divergence_factor=3.0), store=":memory:", progress=False)
    assert "keep_params" not in plain.config and kept.config["keep_params"] is True   # older fingerprints hold
    assert_same_runs(kept, plain, np.s_[:], np.s_[:])               # keeping them changes no number
    rechunked = run_sweep(spec(grid, divergence_factor=3.0, keep_params=True, chunk_steps=10),
                          store=tmp_path / "b.sqlite", progress=False)
    problem = STUDY.make_problem({"batch_size": 16, "width": 16})
    structure = jax.tree.structure(problem.init_params(jax.random.key(0)))
    with storelib.Store(tmp_path / "a.sqlite") as a, storelib.Store(tmp_path / "b.sqlite") as b:
        for seed in (0, 1):                                         # the last evaluation saw these parameters
            params = jax.tree.unflatten(structure, a.final_params(kept.sweep_id, kept.index(learning_rate=0.1, seed=seed)))
            np.testing.assert_allclose(problem.evaluate(params, problem.eval_x, problem.eval_y)["loss"],
                                       kept.final["eval_loss"][0, seed], rtol=1e-6)
        assert (kept.diverged_step[1] >= 0).all()
        frozen = a.final_params(kept.sweep_id, kept.index(learning_rate=60.0, seed=0))
        assert all(np.isfinite(leaf).all() for leaf in frozen)       # frozen before the step that blew up
        for run in range(4):                                         # chunking changes no bit
            for x, y in zip(a.final_params(kept.sweep_id, run), b.final_params(rechunked.sweep_id, run)):
                np.testing.assert_array_equal(x, y)
        assert a.final_params(kept.sweep_id, 4) is None
    with pytest.raises(ValueError, match="learning_rate=0.2 is not on the axis"):
        kept.index(learning_rate=0.2, seed=0)
    with pytest.raises(ValueError, match="one value for each axis"):
        kept.index(learning_rate=0.1)
    with pytest.raises(ValueError, match="keep_params must be True or False"):
        run_sweep(spec(grid, keep_params=1), store=":memory:", progress=False)


def test_a_knob_of_the_loss_is_a_dynamic_axis_when_the_problem_asks_for_its_config(tmp_path):
    from lab import losses, nets
    from lab.sweep import Problem, Study
    from tests.sweep_problem import X, Y

    net = nets.mlp([16, 4], activation="tanh")

    def loss(params, xb, yb, key, config):        # cross-entropy plus an L2 penalty swept as a dynamic knob
        penalty = sum(jax.numpy.sum(w ** 2) for w in jax.tree.leaves(params))
        return (losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)
                + jax.numpy.asarray(config["l2"], penalty.dtype) * penalty)

    study = Study("tiny_mlp_l2", lambda static: Problem(lambda key: net.init(key, (-1, 8))[1], loss, X, Y,
                                                        loss_config=True),
                  STUDY.make_optimizer, hyperparameters={"learning_rate": 0.3, "momentum": 0.9, "l2": 0.0},
                  static={"batch_size": 16})
    sweep = dataclasses.replace(spec({"l2": [0.0, 0.01, 0.1]}, seeds=1, keep_params=True), study=study)
    before = len(COMPILES)
    result = run_sweep(sweep, store=tmp_path / "l2.sqlite", progress=False)
    assert len(COMPILES) - before == 1                              # three penalties, one program
    norms = result.final["param_norm"][:, 0]
    assert norms[0] > norms[1] > norms[2]                           # the penalty reached the loss
    structure = jax.tree.structure(net.init(jax.random.key(0), (-1, 8))[1])
    with storelib.Store(tmp_path / "l2.sqlite") as db:              # the default evaluation is that same loss
        for i, l2 in enumerate((0.0, 0.01, 0.1)):
            params = jax.tree.unflatten(structure, db.final_params(result.sweep_id, result.index(l2=l2, seed=0)))
            np.testing.assert_allclose(loss(params, X, Y, jax.random.key(0), {"l2": l2}),
                                       result.final["eval_loss"][i, 0], rtol=1e-6)
    sharp = run_sweep(dataclasses.replace(sweep, sharpness_iters=8, keep_params=False), store=":memory:", progress=False)
    assert np.isfinite(sharp.curves["sharpness"]).all() and (sharp.curves["sharpness"] > 0).all()
    vague = dataclasses.replace(study, make_problem=lambda static: dataclasses.replace(study.make_problem(static),
                                                                                        loss_config="yes"))
    with pytest.raises(ValueError, match="loss_config must be True or False"):
        run_sweep(dataclasses.replace(sweep, study=vague), store=":memory:", progress=False)


def test_the_same_config_is_not_run_twice_unless_asked(tmp_path):
    path = tmp_path / "lab.sqlite"
    chunks = []
    first = run_sweep(spec(), store=path, progress=False)
    again = run_sweep(spec(chunk_steps=10), store=path, progress=False, on_chunk=chunks.append)
    assert again.sweep_id == first.sweep_id and chunks == []
    fresh = run_sweep(spec(), store=path, progress=False, rerun=True, on_chunk=chunks.append)
    assert fresh.sweep_id != first.sweep_id and len(chunks) == 4   # two batches of two chunks
    assert_same_runs(first, fresh, np.s_[:], np.s_[:])
    with storelib.Store(path) as db:
        assert [s["status"] for s in db.list_sweeps()] == ["done", "done"]


def test_the_next_chunk_is_dispatched_before_the_last_one_is_committed(monkeypatch):
    from lab.sweep import engine
    events = []
    dispatch, commit = engine._CallRun.dispatch, storelib.Store.commit_chunk

    def logged_dispatch(self):
        events.append(("dispatch", self.members[0][0], self.t))
        dispatch(self)

    def logged_commit(self, sweep_id, updates, every):
        events.append(("commit", updates[0].batch_index, updates[0].steps_done))
        commit(self, sweep_id, updates, every)

    monkeypatch.setattr(engine._CallRun, "dispatch", logged_dispatch)
    monkeypatch.setattr(storelib.Store, "commit_chunk", logged_commit)
    pipelined = run_sweep(spec(), store=":memory:", progress=False, devices=jax.devices()[:1])   # batches 0, 1
    # the next call's first chunk goes before the current call is awaited; within a call the
    # next chunk goes before the last one is committed
    assert events == [("dispatch", 0, 0), ("dispatch", 1, 0), ("dispatch", 0, 20), ("commit", 0, 20),
                      ("commit", 0, 40), ("dispatch", 1, 20), ("commit", 1, 20), ("commit", 1, 40)]
    one_batch = run_sweep(spec(seeds=[0]), store=":memory:", progress=False)     # runs 0, 2, 4 of the sweep
    assert_same_runs(pipelined, one_batch, np.s_[:, 0], np.s_[:, 0])


def _interrupt_at_step_20(path):
    """Run spec() into ``path`` and stop it with Ctrl-C after its chunk ending at step 20."""
    def interrupt(info):
        if info["step"] == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec(), store=path, progress=False, on_chunk=interrupt)


def test_ctrl_c_then_resume_gives_the_uninterrupted_result(tmp_path):
    path = tmp_path / "lab.sqlite"
    full = run_sweep(spec(), store=":memory:", progress=False)
    _interrupt_at_step_20(path)
    with storelib.Store(path) as db:
        (row,) = db.list_sweeps()
        assert row["status"] == "interrupted"
        assert db.checkpoint(row["id"], 0)[0] == 20
    steps = []
    resumed = run_sweep(spec(), store=path, progress=False, on_chunk=lambda i: steps.append(i["step"]))
    # batch 0 continues from step 20 (one chunk), batch 1 starts afresh (two chunks)
    assert steps == [20, 40, 40] and resumed.status == "done"
    assert_same_runs(full, resumed, np.s_[:], np.s_[:])


def test_a_sweep_begun_under_another_program_is_not_resumed(tmp_path):
    path = tmp_path / "lab.sqlite"
    _interrupt_at_step_20(path)
    with storelib.Store(path) as db:
        (row,) = db.list_sweeps()
        recorded = db.execution(row["id"])
    assert list(recorded["programs"]) == ["0"] and len(recorded["programs"]["0"]) == 64   # one group, a sha256
    assert sorted(recorded["identities"]["0"]) == ["blocks", "data", "device", "jaxlib", "program", "xla_flags"]

    def tamper(change):
        with sqlite3.connect(path) as conn:
            (execution,) = conn.execute("SELECT execution FROM sweeps").fetchone()
            execution = json.loads(execution)
            change(execution)
            conn.execute("UPDATE sweeps SET execution = ?", (json.dumps(execution),))

    def restore(execution):
        execution.clear()
        execution.update(recorded)

    def part(key, value):
        return lambda e: e["identities"]["0"].update({key: value})

    def old_style(programs):   # as a sweep begun before the part-by-part record
        def change(execution):
            del execution["identities"]
            if programs is None:
                del execution["programs"]                 # ... or before programs were recorded at all
            else:
                execution["programs"] = programs
        return change

    cases = [(old_style({"0": "0" * 64}), "another compiled program"), (old_style(None), "before the engine recorded"),
             (part("program", "0" * 64), r"the lowered program \(the study's model"),
             (part("data", "0" * 64), "the training or evaluation data differ"),
             (part("jaxlib", "0.0.1"), "jaxlib '0.0.1' -> ")]
    for change, why in cases:
        tamper(restore)
        tamper(change)
        with pytest.raises(ValueError, match=f"static group .*{why}.*rerun=True"):
            run_sweep(spec(), store=path, progress=False)
        with storelib.Store(path) as db:                           # nothing was lost or changed
            (row,) = db.list_sweeps()
            assert row["status"] == "interrupted" and db.checkpoint(row["id"], 0)[0] == 20
    tamper(restore)                                                # the same program again: it resumes
    resumed = run_sweep(spec(), store=path, progress=False)
    assert resumed.status == "done" and resumed.sweep_id == row["id"]
    assert_same_runs(resumed, run_sweep(spec(), store=":memory:", progress=False), np.s_[:], np.s_[:])


def test_parts_that_ran_a_group_under_different_programs_are_not_merged():
    from lab.sweep import parts
    same = [{"programs": {"0": "a", "1": "b"}}, {"programs": {"0": "a"}}, {}]
    assert parts.merged_programs(same) == {"0": "a", "1": "b"}
    with pytest.raises(ValueError, match="static group 1 under different compiled programs"):
        parts.merged_programs([{"programs": {"1": "b"}}, {"programs": {"1": "c"}}])


def test_progress_bar_reports_runs_and_divergence(capfd):
    run_sweep(spec({"learning_rate": [0.1, 60.0]}, divergence_factor=3.0), store=":memory:", progress=True)
    err = capfd.readouterr().err
    assert "sweep of 4 runs" in err and "run-steps" in err and "diverged=2" in err


def test_frozen_run_parameters_stop_changing(base):
    problem = STUDY.make_problem({"batch_size": 16, "width": 16})
    lowering = prog.lower_group(problem, STUDY.make_optimizer, {"batch_size": 16, "width": 16},
                                ("learning_rate", "momentum"), steps=40, every=10, blocks=2, runs_per_dev=4,
                                schedule_rows=4, device=jax.devices()[0])
    p = prog.build_program(lowering, devices=jax.devices()[:1])
    leaves, treedef = jax.tree.flatten(p.state_shapes)
    state = jax.tree.unflatten(treedef, [np.zeros(s.shape, s.dtype) for s in leaves])
    hp = np.array([[0.1, 0.9], [60.0, 0.9], [0.1, 0.9], [0.1, 0.9]])
    seeds, slots = np.zeros(4, np.uint32), np.zeros(4, np.int32)
    sched = np.stack([prog.batch_schedule(0, 64, 16, 0, 20)] * 4)
    args = (hp, seeds, slots, sched, prog.problem_data(problem))
    state, _ = p.call(state, *args, np.int32(0), np.bool_(True), np.float64(3.0))
    params1 = jax.tree.map(np.asarray, state.params)
    sched2 = np.stack([prog.batch_schedule(0, 64, 16, 20, 20)] * 4)
    state, _ = p.call(state, hp, seeds, slots, sched2, args[-1], np.int32(20), np.bool_(False), np.float64(3.0))
    d = np.asarray(state.diverged_step)
    assert d[1] >= 0 and (d[[0, 2, 3]] == -1).all()
    for before, after in zip(jax.tree.leaves(params1), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(np.asarray(after)[1], before[1])          # frozen
        assert not np.array_equal(np.asarray(after)[0], before[0])             # still training
        np.testing.assert_array_equal(np.asarray(after)[0], np.asarray(after)[2])  # same seed and lr


def test_the_batch_level_freeze_gives_the_select_every_step_bits():
    # CPU programs skip the per-run select when every run took its step; accelerators select
    # at every step.  Both must give the same numbers, with and without a diverging run.
    static = {"batch_size": 16, "width": 16}
    problem = STUDY.make_problem(static)
    data = tuple(jax.numpy.asarray(a) for a in prog.problem_data(problem))
    sched = np.stack([prog.batch_schedule(0, 64, 16, 0, 20)] * 4)
    seeds, slots = np.zeros(4, np.uint32), np.zeros(4, np.int32)
    outputs = {}
    for by_batch in (True, False):
        init, chunk, _ = prog._program_functions(problem, STUDY.make_optimizer, static, ("learning_rate", "momentum"),
                                                 steps=20, every=10, blocks=2, freeze_by_batch=by_batch)
        for lr in (0.1, 60.0):
            hp = np.array([[0.1, 0.9], [lr, 0.9], [0.03, 0.9], [0.3, 0.9]])
            state = jax.vmap(init, in_axes=(0, 0, None, None))(seeds, hp, data[0], data[1])
            out = jax.jit(chunk)(state, seeds, hp, slots, sched, data, np.int32(0), np.float64(3.0))
            outputs[by_batch, lr] = out
    assert (np.asarray(outputs[True, 60.0][0].diverged_step) >= 0).tolist() == [False, True, False, False]
    assert (np.asarray(outputs[True, 0.1][0].diverged_step) == -1).all()
    for lr in (0.1, 60.0):
        for a, b in zip(jax.tree.leaves(outputs[True, lr]), jax.tree.leaves(outputs[False, lr])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_input_stops_before_any_compute(tmp_path, monkeypatch):
    def no_compile(*args, **kwargs):
        raise AssertionError("compiled despite bad input")

    monkeypatch.setattr(prog, "build_program", no_compile)
    with pytest.raises(ValueError, match=r"batch_size=100 is larger than the training set of 64 examples"):
        run_sweep(spec({"batch_size": [16, 100]}), store=tmp_path / "a.sqlite", progress=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(storelib.StoreError, match="is not writable"):
        run_sweep(spec(), store=blocker / "lab.sqlite", progress=False)
    foreign = tmp_path / "notes.sqlite"
    foreign.write_bytes(b"my precious notes\n" * 10)
    with pytest.raises(storelib.StoreError, match="is not an SQLite database"):
        run_sweep(spec(), store=foreign, progress=False)
    assert foreign.read_bytes() == b"my precious notes\n" * 10
    broken = dataclasses.replace(STUDY, make_problem=lambda static: {"x": 1})
    with pytest.raises(TypeError, match="make_problem must return a lab.sweep.Problem"):
        run_sweep(dataclasses.replace(spec(), study=broken), store=":memory:", progress=False)
    with pytest.raises(ValueError, match="grid axis 'lr' is not a knob"):
        run_sweep(spec({"lr": [0.1]}), store=":memory:", progress=False)


def test_a_database_of_another_schema_is_refused(tmp_path):
    path = tmp_path / "old.sqlite"
    storelib.Store(path).close()
    import sqlite3
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(storelib.StoreError, match="schema version 99, but this code reads version 1"):
        run_sweep(spec(), store=path, progress=False)
    assert json.dumps(storelib.SCHEMA_VERSION) == "1"


def test_a_wide_batch_of_runs_matches_runs_one_at_a_time():
    """32 runs vmapped together give each run's own numbers (to rounding): a guard against
    batched code mixing runs up.  (The XLA CPU case that returned runs 0-13's evaluation
    losses for runs 18-31 needs larger shapes than this tiny problem; tests/test_losses.py
    pins it with those shapes.)"""
    lrs = list(np.geomspace(0.01, 0.3, 16))
    wide = run_sweep(spec({"learning_rate": lrs}, runs_per_device=32, steps=20, chunk_steps=20),
                     store=":memory:", progress=False)
    single = run_sweep(spec({"learning_rate": lrs}, runs_per_device=1, steps=20, chunk_steps=20),
                       store=":memory:", progress=False)
    for name in ("train_loss", "eval_loss", "eval_accuracy", "param_norm"):
        np.testing.assert_allclose(wide.curves[name], single.curves[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_parts_of_a_multi_process_sweep_merge_into_the_single_process_result(tmp_path):
    from lab.sweep.engine import part_path
    reference = run_sweep(spec(), store=":memory:", progress=False)
    db = tmp_path / "shared.sqlite"
    # process 1 alone: it runs its batch (1), then gives up waiting for process 0's merge
    with pytest.raises(TimeoutError, match="process 1: no merged sweep"):
        run_sweep(spec(), store=db, progress=False, process=(1, 2), wait_seconds=0)
    assert not db.exists() and part_path(db, 1, 2).exists()
    with storelib.Store(part_path(db, 1, 2)) as part:            # batch 0 is process 0's: not finished here
        with pytest.raises(ValueError, match="batch 0 is not finished"):
            part.copy_batches(1, part, 1, [0])
    merged = run_sweep(spec(), store=db, progress=False, process=(0, 2), wait_seconds=0)
    assert merged.execution["parts"] == {"0": 1, "1": 1} and merged.status == "done"
    assert_same_runs(reference, merged, np.s_[:], np.s_[:])
    again = run_sweep(spec(), store=db, progress=False, process=(1, 2), wait_seconds=0)   # fetched, not rerun
    assert again.sweep_id == merged.sweep_id
    # process 0 with no part from process 1 names the missing one
    with pytest.raises(TimeoutError, match=r"processes \[1\] have not finished"):
        run_sweep(spec(), store=tmp_path / "other.sqlite", progress=False, process=(0, 2), wait_seconds=0)


def test_bad_process_arguments_are_refused():
    for bad in ((2, 2), (0, 0), (-1, 3), "ab", 3):
        with pytest.raises(ValueError, match="process"):
            run_sweep(spec(), store=":memory:", progress=False, process=bad)
    with pytest.raises(ValueError, match="needs a database path on a filesystem every process can read"):
        run_sweep(spec(), store=":memory:", progress=False, process=(0, 2))


def test_an_optimizer_whose_state_holds_a_prng_key_runs_and_resumes(tmp_path):
    # noisy SGD keeps its noise key in its state: the engine packs it as raw key data
    noisy = dataclasses.replace(STUDY, make_optimizer=lambda c: optim.noisy_sgd(c["learning_rate"], key=jax.random.key(5)))
    whole = run_sweep(dataclasses.replace(spec(), study=noisy),
                      store=":memory:", progress=False)
    assert np.all(np.isfinite(whole.final["train_loss"]))
    stopped = []

    def interrupt(info):
        stopped.append(info["step"])
        if len(stopped) == 1:
            raise KeyboardInterrupt

    db = tmp_path / "noisy.sqlite"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(dataclasses.replace(spec(), study=noisy), store=db, progress=False, on_chunk=interrupt)
    resumed = run_sweep(dataclasses.replace(spec(), study=noisy), store=db, progress=False)
    assert_same_runs(whole, resumed, np.s_[:], np.s_[:])
