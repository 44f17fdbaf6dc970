"""Benchmark: a learning-rate sweep done by hand versus by the lab engine.

Reference sweep: MLP 64-128-128-10 tanh, softmax cross-entropy, 2,048 x 64 data, batch 64,
300 steps, SGD with momentum 0.9, learning rates log-spaced 1e-3..1, 4 seeds.  All variants
run in this one process on the same data, initial parameters and mini-batch schedule
(:func:`lab.sweep.program.batch_schedule`):

  (a) a fresh optax optimizer and a freshly jitted step per config, Python loop over steps;
  (b) one jitted step with ``optax.inject_hyperparams``, Python loop over configs and steps;
  (c) a PyTorch loop with ``torch.optim.SGD`` (only when torch is importable);
  (d) the lab engine, ``lab.sweep.run_sweep`` (compile time reported apart);
  (e) a bare ``lax.scan`` of the same step, vmapped over 16 runs per device (or the first
      ``--runs-per-device``) on every device,
      without divergence checks, metrics or a database: what the engine's step costs with
      nothing around it, the ceiling its bookkeeping is measured against.

(a) and (b) cost the same per run whatever the sweep size, so they are timed on a subset of
configs and reported as run-steps/s.  Throughput counts matmul FLOPs only (forward,
weight gradients, input gradients of the upper layers) against the float32 matmul peak
measured here: a 1024^3 matmul timed at the start and again at the end, the higher taken
(on a shared machine a neighbour's burst lowers one of them, and a low peak would flatter
the percentages).

    python benchmarks/sweep.py                 # 64 and 1,024 runs, 300 steps
    python benchmarks/sweep.py --reduced       # 64 and 256 runs, 60 steps: a quick look
    python benchmarks/sweep.py --devices 1     # the engine on one XLA device only
    python benchmarks/sweep.py --runs 64 1024 10240 --steps 30 --repeats 1   # the 10,000-run check

On a CPU the process is split into one XLA device per core (:func:`lab.sweep.use_cpu_cores`,
as the ``lab`` command does; ``--host-devices`` chooses another count) and the engine is timed
on the first ``k`` devices for each ``k`` in ``--devices`` (default: 1 and all of them), so the
gain from sharding the runs over the cores is a ratio taken in one process.

The last column of the engine table is the process's peak resident set size (ru_maxrss)
after that sweep size ran, so a growth in memory with the number of runs shows there.

The persistent compilation cache (``--cache``, default ``results/jax_cache``) lets a rerun
skip XLA compilation; compile seconds are printed separately.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

SIZES = (64, 128, 128, 10)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reduced", action="store_true", help="60 steps, 64 and 256 runs")
    p.add_argument("--runs", type=int, nargs="*", help="sweep sizes (multiples of 4 seeds)")
    p.add_argument("--steps", type=int, help="steps per run (default 300, 60 reduced)")
    p.add_argument("--subset", type=int, default=8, help="configs timed for (a), (b), (c)")
    p.add_argument("--runs-per-device", type=int, nargs="*", default=[0], help="engine batch sizes to try (0 = auto)")
    p.add_argument("--host-devices", type=int, default=0, help="XLA CPU devices to split the host into (0 = one per core)")
    p.add_argument("--devices", type=int, nargs="*", help="engine device counts to time (default: 1 and all)")
    p.add_argument("--cache", default="results/jax_cache", help="persistent compilation cache ('' = off)")
    p.add_argument("--repeats", type=int, default=2, help="timings of (b) and (d) to take the best of")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from lab import train
    from lab.sweep import run_keys, run_sweep, use_cpu_cores
    from lab.sweep import program as prog

    use_cpu_cores(args.host_devices or None)   # before any computation

    if args.cache:
        Path(args.cache).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", args.cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    steps = args.steps or (60 if args.reduced else 300)
    sizes = args.runs or ([64, 256] if args.reduced else [64, 1024])
    # ------------------------------------------------------------------ the problem
    ref = reference()
    batch, n, seeds = ref.batch, ref.n, ref.seeds
    x, y, loss, init, flops = ref.x, ref.y, ref.loss, ref.init, ref.flops
    peak = matmul_peak(jax, jnp, np)
    schedules = {s: prog.batch_schedule(s, n, batch, 0, steps) for s in range(seeds)}
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} x{len(jax.devices())}, {os.cpu_count()} cores; "
          f"{steps} steps, {flops / 1e6:.2f} MFLOP per run-step; float32 matmul peak {peak:.0f} GFLOP/s", flush=True)

    def configs(count):
        lrs = np.geomspace(1e-3, 1.0, count // seeds)
        return [(float(lr), s) for lr in lrs for s in range(seeds)]

    # ------------------------------------------------------------------ (a), (b)
    def by_hand(make, subset):
        t0, compile_s, mean_losses = time.perf_counter(), 0.0, []
        for lr, seed in subset:
            opt, step = make(lr)
            params = init(run_keys(seed).params)
            state = opt.init(params)
            values = []
            for t, idx in enumerate(device_schedules[seed]):
                c = time.perf_counter()
                params, state, value = step(params, state, xd, yd, idx)
                values.append(value)
                if t == 0:
                    value.block_until_ready()
                    compile_s += time.perf_counter() - c
            mean_losses.append(float(np.mean(np.asarray(values))))
        return len(subset) * steps / (time.perf_counter() - t0), compile_s, mean_losses

    # the by-hand loops gather the batch inside the jitted step from device-resident data
    xd, yd, key = jnp.asarray(x), jnp.asarray(y), jax.random.key(0)
    device_schedules = {s: list(jnp.asarray(v)) for s, v in schedules.items()}

    def gathering(opt):
        step = train.make_step(loss, opt)
        return jax.jit(lambda p, s, xs, ys, idx: step(p, s, xs[idx], ys[idx], key))

    def fresh(lr):
        opt = optax.sgd(lr, momentum=0.9)
        return opt, gathering(opt)

    injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=0.9)
    shared = gathering(injected)

    def inject(lr):
        class Opt:
            def init(self, params):
                s = injected.init(params)
                s.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
                return s
        return Opt(), shared

    subset = configs(64)[::64 // args.subset][:args.subset]
    rate_a, compile_a, _ = by_hand(fresh, subset)               # (a) compiles per config: counted
    by_hand(inject, subset[:1])                                 # (b) compiles once: warm it first
    rate_b, _, mean_b = max(by_hand(inject, subset) for _ in range(args.repeats))
    print(f"(a) fresh optimizer + jit per config: {rate_a:9.0f} run-steps/s  (compiling is {compile_a:.1f}s of it)",
          flush=True)
    print(f"(b) inject_hyperparams, one jit:      {rate_b:9.0f} run-steps/s", flush=True)
    rate_c = torch_rate(subset, x, y, schedules, steps)           # torch's default thread count
    rate_c1 = torch_rate(subset, x, y, schedules, steps, threads=1)
    if rate_c is None:
        print("(c) torch: not installed, skipped")
    else:
        print(f"(c) torch.optim.SGD loop: {rate_c:9.0f} run-steps/s with torch's default threads, "
              f"{rate_c1:.0f} with one; the engine is compared with the faster", flush=True)
        rate_c = max(rate_c, rate_c1)

    # ------------------------------------------------------------------ (d)
    rows = []
    device_counts = sorted(set(args.devices or [1, len(jax.local_devices())]))
    for runs, count, per_device in ((r, c, p) for r in sizes for c in device_counts for p in args.runs_per_device):
        if count > len(jax.local_devices()):
            raise SystemExit(f"--devices {count}: this process has {len(jax.local_devices())} devices")
        spec = ref.spec(runs, steps, runs_per_device=per_device or None)
        timings = []
        for _ in range(args.repeats):  # the first compiles (or loads from the cache); later ones reuse it
            t0 = time.perf_counter()
            result = run_sweep(spec, store=":memory:", progress=False, devices=jax.local_devices()[:count])
            timings.append((runs * steps / result.timings["run_seconds"], result.timings["compile_seconds"],
                            time.perf_counter() - t0))
        rate, wall = max(r for r, _, _ in timings), timings[0][2]
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux -> MiB
        rows.append((runs, count, result.execution["runs_per_device"]["0"], rate, timings[0][1], wall, peak_rss))
        if runs == 64 and count == device_counts[-1] and per_device == args.runs_per_device[0]:  # the subset's configs
            grid = result.axes["learning_rate"]
            ours = np.asarray([result.final["train_loss"][grid.index(lr), s] for lr, s in subset])
            rel = np.abs(ours - np.asarray(mean_b)) / np.abs(mean_b)
            print(f"    check: mean training loss over the {steps} steps, engine vs (b), relative difference "
                  f"by lr: " + ", ".join(f"{lr:.0e}: {r:.0e}" for (lr, _), r in zip(subset, rel)), flush=True)
    rate_e = bare_rate(jax, jnp, np, loss, init, x, y, schedules, steps, args.repeats,
                       per_device=args.runs_per_device[0] or 16)   # 16: the engine's CPU choice
    print(f"(e) bare vmapped lax.scan of the same step on {len(jax.local_devices())} devices: {rate_e:9.0f} run-steps/s",
          flush=True)
    peak_end = matmul_peak(jax, jnp, np)
    print(f"float32 matmul peak {peak:.0f} GFLOP/s at the start, {peak_end:.0f} at the end; the table uses the higher")
    peak = max(peak, peak_end)
    print(f"\nbest of {args.repeats}; compile s and wall s (compile + run + store) are the first sweep's")
    print("| runs | devices | runs/device | engine run-steps/s | GFLOP/s | % of peak | vs (a) | vs (b) | vs (c) "
          "| compile s | wall s | peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for runs, count, per_device, rate, compile_s, wall, peak_rss in rows:
        gflops = rate * flops / 1e9
        vs_c = "-" if rate_c is None else f"{rate / rate_c:.1f}x"
        print(f"| {runs} | {count} | {per_device} | {rate:,.0f} | {gflops:.1f} | {100 * gflops / peak:.0f}% | "
              f"{rate / rate_a:.1f}x | {rate / rate_b:.1f}x | {vs_c} | {compile_s:.1f} | {wall:.1f} | {peak_rss:,.0f} |")
    n_dev = len(jax.local_devices())
    for name, count, per, rate in (("(a)", 1, "-", rate_a), ("(b)", 1, "-", rate_b), ("(c)", 1, "-", rate_c),
                                   ("(e)", n_dev, args.runs_per_device[0] or 16, rate_e)):
        if rate is not None:
            print(f"| {name} | {count} | {per} | {rate:,.0f} | {rate * flops / 1e9:.1f} | {100 * rate * flops / 1e9 / peak:.0f}% "
                  f"| | | | | | |")
    return 0


def reference():
    """The reference sweep's problem: data ``x``, ``y`` (2,048 x 64, labels from a noisy
    linear teacher), ``loss``, ``init``, the engine's ``study`` (SGD, momentum 0.9, batch 64),
    ``flops``, the matmul FLOPs of one run-step, and ``spec(runs, steps, runs_per_device=None)``,
    the engine's sweep of ``runs`` (learning rates 1e-3..1 x 4 seeds, one evaluation, one
    chunk, divergence only on a non-finite loss).  Call after :func:`lab.sweep.use_cpu_cores`."""
    from types import SimpleNamespace

    import numpy as np

    from lab import losses, nets, optim
    from lab.sweep import Problem, Study, SweepSpec

    batch, n, seeds = 64, 2048, 4
    rng = np.random.RandomState(0)
    x = rng.randn(n, SIZES[0]).astype(np.float32)
    teacher = rng.randn(SIZES[0], SIZES[-1]).astype(np.float32)
    y = np.argmax(x @ teacher + rng.randn(n, SIZES[-1]).astype(np.float32), axis=1).astype(np.int32)
    net = nets.mlp(list(SIZES[1:]), activation="tanh")

    def loss(params, xb, yb, key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)

    def init(key):
        return net.init(key, (-1, SIZES[0]))[1]

    study = Study("benchmark_mlp", lambda static: Problem(init, loss, x, y, eval_x=x[:256], eval_y=y[:256]),
                  lambda c: optim.sgd(c["learning_rate"], momentum=0.9), hyperparameters={"learning_rate": 0.01},
                  static={"batch_size": batch}, description={"net": "mlp 64-128-128-10 tanh", "data": "2048x64 teacher"})
    flops = 2 * batch * (2 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:]))
                         + sum(a * b for a, b in zip(SIZES[1:-1], SIZES[2:])))

    def spec(runs, steps, runs_per_device=None):
        return SweepSpec(study, {"learning_rate": list(np.geomspace(1e-3, 1.0, runs // seeds))}, seeds=seeds,
                         steps=steps, eval_every=steps, chunk_steps=steps, divergence_factor=float("inf"),
                         runs_per_device=runs_per_device)

    return SimpleNamespace(x=x, y=y, loss=loss, init=init, study=study, flops=flops, batch=batch, n=n, seeds=seeds,
                           spec=spec)


def matmul_peak(jax, jnp, np, size=1024, repeats=40) -> float:
    """Best float32 GFLOP/s of a jitted size x size matmul on the default device."""
    a = jnp.asarray(np.random.RandomState(1).randn(size, size).astype(np.float32))
    f = jax.jit(lambda m: m @ m)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best / 1e9


def bare_rate(jax, jnp, np, loss, init, x, y, schedules, steps, repeats, per_device=16) -> float:
    """(e): run-steps/s of ``per_device`` runs on each local device, each device computing one
    jitted, vmapped ``lax.scan`` of :func:`lab.train.make_step` (SGD, momentum 0.9, learning
    rates 1e-3..1 as traced scalars) over the seeds' schedules, with no divergence checks or
    metrics; every device is dispatched before any is awaited; the best of ``repeats``."""
    from lab import optim, train
    from lab.sweep import run_keys

    sched = np.stack([schedules[s] for s in range(len(schedules))])    # (seeds, steps, batch)

    def one(seed, lr, xs, ys, sched):
        step = train.make_step(loss, optim.sgd(lr, momentum=0.9))
        params = init(run_keys(seed).params)

        def body(carry, idx):
            p, s = carry
            p, s, value = step(p, s, xs[idx], ys[idx], None)
            return (p, s), value

        return jax.lax.scan(body, (params, optim.sgd(lr, momentum=0.9).init(params)), sched[seed % len(sched)])[1]

    program = jax.jit(jax.vmap(one, in_axes=(0, 0, None, None, None)))
    seeds = np.arange(per_device, dtype=np.uint32)
    lrs = np.geomspace(1e-3, 1.0, per_device).astype(np.float32)   # the reference sweep's range
    args = [jax.device_put((seeds, lrs, x, y, sched), d) for d in jax.local_devices()]
    for a in args:
        program(*a).block_until_ready()          # compile (and load) first
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready([program(*a) for a in args])
        best = min(best, time.perf_counter() - t)
    return len(args) * per_device * steps / best


def torch_rate(subset, x, y, schedules, steps, threads=None):
    """(c): run-steps/s of a plain PyTorch loop (on ``threads`` intra-op threads, default
    torch's own choice), or None when torch is not installed."""
    try:
        import torch
    except ImportError:
        return None
    default_threads = torch.get_num_threads()
    torch.set_num_threads(threads or default_threads)
    try:
        return _torch_loop(torch, subset, x, y, schedules, steps)
    finally:
        torch.set_num_threads(default_threads)


def _torch_loop(torch, subset, x, y, schedules, steps):
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    t0 = time.perf_counter()
    for lr, seed in subset:
        torch.manual_seed(seed)
        layers = []
        for a, b in zip(SIZES[:-1], SIZES[1:]):
            layers += [torch.nn.Linear(a, b), torch.nn.Tanh()]
        model = torch.nn.Sequential(*layers[:-1])
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        for idx in schedules[seed]:
            idx = torch.from_numpy(idx.astype("int64"))
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return len(subset) * steps / (time.perf_counter() - t0)


if __name__ == "__main__":
    sys.exit(main())
