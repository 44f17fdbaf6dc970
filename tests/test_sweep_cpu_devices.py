"""Sweeps over several CPU devices (``lab.sweep.use_cpu_cores``): every device runs the same
compiled code (compiled once, loaded on each), so the numbers do not depend on the device
count; a program that calls a CPU linear-algebra kernel runs on one device, since jaxlib's
batched LAPACK kernels wait on XLA's CPU thread pool and hang when every pool thread runs a
device's share (a batched eigh on 2 devices of a 2-core CPU never returned)."""
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

from lab.sweep.program import host_kernels

CHILD = textwrap.dedent("""
    import numpy as np
    from lab.sweep import use_cpu_cores
    assert use_cpu_cores(2) == 2
    import jax, jax.numpy as jnp
    from lab import optim
    from lab.sweep import Problem, Study, SweepSpec, run_sweep
    rng = np.random.RandomState(0)
    X = rng.randn(64, 40).astype(np.float32)
    Y = (X @ rng.randn(40)).astype(np.float32)
    loss = lambda p, xb, yb, key: 0.5 * jnp.mean(jnp.square(xb @ p["w"] - yb))
    study = Study("ls", lambda s: Problem(lambda key: {"w": jnp.zeros(40, jnp.float32)}, loss, X, Y),
                  lambda c: optim.sgd(c["learning_rate"]), hyperparameters={"learning_rate": 0.01},
                  static={"batch_size": 16})
    spec = SweepSpec(study, {"learning_rate": list(np.geomspace(1e-3, 1e-1, 8))}, seeds=4, steps=4, eval_every=2,
                     chunk_steps=4, sharpness_iters=30, runs_per_device=16)
    both = run_sweep(spec, store=":memory:", progress=False)             # 32 runs: a batched eigh per device
    one = run_sweep(spec, store=":memory:", progress=False, devices=jax.local_devices()[:1])
    for name in both.curves:
        np.testing.assert_array_equal(both.curves[name], one.curves[name], err_msg=name)
    print("sharpness", float(np.median(both.curves["sharpness"])))
""")


def test_a_sweep_with_a_batched_eigh_finishes_on_two_cpu_devices_with_one_device_numbers(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LAB_CPU_DEVICES")}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=240)   # the hang this guards against never returns
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) > 0.0                  # a top Hessian eigenvalue was measured


def test_host_kernels_names_the_custom_calls_of_a_lowered_program():
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        eigh = jax.jit(jnp.linalg.eigh).lower(jnp.ones((4, 3, 3), jnp.float32)).as_text()
        plain = jax.jit(lambda a: jnp.tanh(a) @ a).lower(jnp.ones((3, 3), jnp.float32)).as_text()
    assert host_kernels(eigh) == {"lapack_ssyevd_ffi"}
    assert host_kernels(plain) == set()


COUNTS = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from lab.sweep import use_cpu_cores
    assert use_cpu_cores(2) == 2
    from lab.sweep import program as prog, run_sweep
    from tests.sweep_problem import spec
    used, build = [], prog.build_program
    def counting(*args, devices, **kwargs):
        used.append(len(devices))
        return build(*args, devices=devices, **kwargs)
    prog.build_program = counting
    run_sweep(spec({{"learning_rate": [0.03, 0.1]}}), store=":memory:", progress=False)             # 4 runs: 1 batch
    run_sweep(spec({{"learning_rate": [0.01, 0.03, 0.1, 0.3]}}), store=":memory:", progress=False)  # 8 runs: 2 batches
    print(*used)
""")


def test_a_group_uses_no_more_cpu_devices_than_it_has_batches(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LAB_CPU_DEVICES")}
    done = subprocess.run([sys.executable, "-c", COUNTS.format(root=root)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2"]


# Adam on a full-batch sine fit with a tanh MLP 1-8-1, 2 runs per device: one program
# partitioned over 2 devices computed this differently from one device at float32 rounding
# (1 ulp in an update norm at step 2, 7e-8 in the loss by step 300).
SINE = textwrap.dedent("""
    import sys
    import numpy as np
    from lab.sweep import use_cpu_cores
    assert use_cpu_cores(2) == 2
    import jax
    from lab import losses, nets, optim
    from lab.sweep import Problem, Study, SweepSpec, run_sweep
    from lab.sweep import program as prog
    loaded, load_on = [], prog.load_on
    def spy(compiled, device):
        out = load_on(compiled, device) if sys.argv[1] == "load" else None
        loaded.append(out is not None)
        return out
    prog.load_on = spy
    x = np.linspace(-np.pi, np.pi, 256, dtype=np.float32)[:, None]
    net = nets.mlp([8, 1], activation="tanh")
    study = Study("sine", lambda s: Problem(lambda k: net.init(k, (-1, 1))[1],
                                            lambda p, xb, yb, k: losses.mse(net.apply(p, xb), yb), x, np.sin(x)),
                  lambda c: optim.adam(c["learning_rate"]), hyperparameters={"learning_rate": 0.01},
                  static={"batch_size": 256})
    spec = SweepSpec(study, {"learning_rate": [0.01]}, seeds=6, steps=300, eval_every=1, chunk_steps=100,
                     runs_per_device=2)                                        # 3 batches of 2 runs
    both = run_sweep(spec, store=":memory:", progress=False)
    one = run_sweep(spec, store=":memory:", progress=False, devices=jax.local_devices()[:1])
    other = run_sweep(spec, store=":memory:", progress=False, devices=jax.local_devices()[1:])
    stopped = []
    def stop(info):   # interrupt the last batch, which runs alone, after its first chunk
        if info["batches"] == [2]:
            stopped.append(info["step"])
            raise KeyboardInterrupt
    try:
        run_sweep(spec, store="part.sqlite", progress=False, on_chunk=stop)
    except KeyboardInterrupt:
        pass
    resumed = run_sweep(spec, store="part.sqlite", progress=False)      # batch 2 goes on from step 100
    assert stopped == [100]
    assert both.environment["device_count"] == 2 and one.environment["device_count"] == 1
    for name in both.curves:
        for result in (both, other, resumed):
            np.testing.assert_array_equal(result.curves[name], one.curves[name], err_msg=name)
    print("loaded", *loaded, float(np.median(one.final["train_loss"])))
""")


@pytest.mark.parametrize("how", ["load", "compile"])
def test_two_cpu_devices_give_the_one_device_bits_on_a_problem_a_partitioned_program_did_not(tmp_path, how):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LAB_CPU_DEVICES")}
    env["PYTHONPATH"] = root
    done = subprocess.run([sys.executable, "-c", SINE, how], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=240)
    assert done.returncode == 0, done.stderr
    words = done.stdout.split()
    # the second device's executable: loaded from the first's code, or (fallback) compiled again
    assert words[:2] == ["loaded", "True" if how == "load" else "False"]
    assert 0.0 < float(words[-1]) < 0.5                     # trained: below the variance of sin (0.5)


CACHED = textwrap.dedent("""
    import sys
    import numpy as np
    from lab.sweep import use_cpu_cores
    assert use_cpu_cores(2) == 2
    import jax
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from lab.sweep import program as prog, run_sweep
    from tests.sweep_problem import spec
    loaded, load_on = [], prog.load_on
    def spy(compiled, device):
        out = load_on(compiled, device)
        loaded.append(out is not None)
        return out
    prog.load_on = spy
    result = run_sweep(spec({"learning_rate": [0.01, 0.03, 0.1, 0.3]}), store=":memory:", progress=False)  # 2 batches
    print("loaded", *loaded, repr(float(np.sum(result.curves["train_loss"]))))
""")


def test_a_rerun_with_the_persistent_compilation_cache_never_copies_a_cached_executable(tmp_path):
    """An executable read from JAX's persistent cache loses code when serialized again (it
    failed with "Function ... not found" when run), so it is never the one loaded on the
    other devices: they are compiled (or read from the cache) instead."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "LAB_CPU_DEVICES")}
    env["PYTHONPATH"] = root
    outputs = []
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", CACHED, str(tmp_path / "cache")], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs.append(done.stdout.split())
    assert [o[:-1] for o in outputs] == [["loaded", "True"], ["loaded"], ["loaded"]]
    assert outputs[0][-1] == outputs[1][-1] == outputs[2][-1]           # the same bits every time
    assert any((tmp_path / "cache").iterdir())
