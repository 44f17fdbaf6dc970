"""Per-step cost of curvature products against gradients as the parameter count P grows (not a test).

    python benchmarks/curvature.py            # P = 1e2 .. 1e6, about 2-3 minutes on 2 cores
    python benchmarks/curvature.py --quick    # P = 1e2 .. 1e5, memory probe at P = 1e5 (~20 s)

Problem: a one-hidden-layer tanh MLP ``x (B, h) -> tanh(x W1 + b1) W2 + b2 (B, 10)`` with a
squared-error loss on one fixed batch of B = 512, float32; the width ``h`` is chosen so that
``P = h*h + h + 10 h + 10`` is log-spaced.  Per P, each column is one jitted step:

* ``grad``: ``jax.value_and_grad`` of the loss;
* ``hvp``: ``lab.curvature.hessian_vector_product`` (forward-over-reverse);
* ``adam``: gradient + ``lab.optim.adam`` update + ``apply_updates``;
* ``newton``: gradient + dense Hessian (``lab.curvature.hessian_matrix``) + ``solve(H + 1e-3 I, g)``,
  only where P <= 4,000 (the Hessian is P^2 floats and P HVPs);
* ``newton_cg``: one ``lab.optim.newton_cg`` step (10 CG iterations at most), if that optimizer
  is importable -- see ``newton_cg_step`` (the hook for the lead), else the column is skipped.

Timing: each step is compiled and run once, then called repeatedly (at least 3 times and until
``--min-time`` seconds have passed); the best wall time per call is reported (with
``block_until_ready``), since load from other processes only adds time.  Log-log slopes are least-squares fits of ``log t`` on ``log P`` over
P >= 1e4, where the per-call dispatch overhead (tens of microseconds) no longer dominates; the
dense Newton slope is fitted over all its points.

Memory at P = 1e6 (1e5 with --quick): the matrix-free path (``lab.curvature.top_eigenvalues``: 20 Lanczos
iterations of HVPs, full reorthogonalisation) runs in a **child process**, which reports the
growth of ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the peak resident set size, KiB on
Linux) from just before the first call to just after it.  Linux carries the parent's peak into
a forked-and-exec'd child, so the child is started first, while the parent is still small, and
the child checks that its baseline peak is its own (``baseline_is_own``).  tracemalloc cannot see XLA's
buffers, which are allocated outside Python; the rusage peak counts them, and also XLA's
compilation scratch, so the delta is an upper bound on the run's working memory.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lab import curvature, optim  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

BATCH, OUTPUTS, NEWTON_MAX_P, DAMPING = 512, 10, 4_000, 1e-3


# ---------------------------------------------------------------- the problem

def width_for(p_target: float) -> int:
    """The hidden width h with h*h + h + 10 h + 10 closest to p_target."""
    return max(1, round((-(OUTPUTS + 1) + np.sqrt((OUTPUTS + 1) ** 2 + 4 * (p_target - OUTPUTS))) / 2))


def make_problem(h: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    params = {"w1": f32(rng.standard_normal((h, h)) / np.sqrt(h)), "b1": f32(np.zeros(h)),
              "w2": f32(rng.standard_normal((h, OUTPUTS)) / np.sqrt(h)), "b2": f32(np.zeros(OUTPUTS))}
    x, y = f32(rng.standard_normal((BATCH, h))), f32(rng.standard_normal((BATCH, OUTPUTS)))
    return params, x, y


def loss(params, x, y):
    hidden = jnp.tanh(x @ params["w1"] + params["b1"][None, :])
    out = hidden @ params["w2"] + params["b2"][None, :]
    return jnp.mean(jnp.sum((out - y) ** 2, axis=1))


def tangent(params):
    """A fixed random direction shaped like params (the HVP's v)."""
    rng = np.random.default_rng(1)
    return jax.tree.map(lambda a: jnp.asarray(rng.standard_normal(a.shape), a.dtype), params)


def num_params(params) -> int:
    return sum(int(leaf.size) for leaf in jax.tree.leaves(params))


# ---------------------------------------------------------------- the steps

def grad_step(params, x, y):
    return jax.value_and_grad(loss)(params, x, y)


def hvp_step(params, v, x, y):
    return curvature.hessian_vector_product(loss, params, v, x, y)  # v is an input: no constant folding


ADAM = optim.adam(1e-3)


def adam_step(params, state, x, y):
    grads = jax.grad(loss)(params, x, y)
    updates, state = ADAM.update(grads, state, params)
    return optim.apply_updates(params, updates), state


def newton_step(params, x, y):
    flat, unravel = ravel_pytree(params)
    g = ravel_pytree(jax.grad(loss)(params, x, y))[0]
    h = curvature.hessian_matrix(loss, params, x, y)
    d = jnp.linalg.solve(h + DAMPING * jnp.eye(flat.size, dtype=flat.dtype), g)
    return unravel(flat - d)


def newton_cg_step():
    """HOOK (lead): return ``(step, None)`` with ``step(params, state, x, y) -> (params, state)``
    and an ``init(params) -> state``, doing one Newton-CG step; or ``(None, note)`` to skip the
    column with a printed note.  Wired to the ``newton_cg(...)`` / ``update(..., value_fn=)``
    signature seen in lab/optim/hessian_free.py; adjust here if that API changes."""
    try:
        from lab.optim import newton_cg
    except ImportError as err:
        return None, f"newton_cg column skipped: `from lab.optim import newton_cg` failed ({err})"
    opt = newton_cg(1.0, damping=DAMPING, max_cg_iterations=10)

    def step(params, state, x, y):
        value_fn = lambda p: loss(p, x, y)
        grads = jax.grad(value_fn)(params)
        updates, state = opt.update(grads, state, params, value_fn=value_fn)
        return optim.apply_updates(params, updates), state

    return (opt.init, step), None


# ---------------------------------------------------------------- timing

def best_time(fn, *args, min_time: float) -> float:
    """Fastest seconds per call of a jitted ``fn`` after one warm-up (compile) call: on a shared
    machine other processes only ever add time, so the minimum is the steadiest estimate."""
    jax.block_until_ready(fn(*args))
    times, start = [], time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < 200):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return min(times)


def slope(ps, ts) -> float:
    ps, ts = np.asarray(ps, float), np.asarray(ts, float)
    ok = np.isfinite(ts)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(ps[ok]), np.log(ts[ok]), 1)[0])


def machine() -> str:
    return describe()


# ---------------------------------------------------------------- the P = 1e6 probe (child process)

def lanczos_probe(p_target: float, num_iters: int) -> dict:
    """Run in a fresh process: time and peak-RSS growth of top_eigenvalues at ~p_target."""
    params, x, y = make_problem(width_for(p_target))
    top = jax.jit(lambda p, k: curvature.top_eigenvalues(loss, p, x, y, k=5, num_iters=num_iters, key=k))
    hvp = jax.jit(hvp_step)
    jax.block_until_ready((params, x, y))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open("/proc/self/statm") as fh:  # resident pages now, to compare with the peak so far
        resident_kib = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    t = time.perf_counter()
    pairs = jax.block_until_ready(top(params, jax.random.key(0)))
    first = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(top(params, jax.random.key(1)))
    second = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hvp_time = best_time(hvp, params, tangent(params), x, y, min_time=0.5)
    return dict(p=num_params(params), num_iters=num_iters, first_call_s=first, second_call_s=second,
                hvp_s=hvp_time, maxrss_before_mib=before / 1024, maxrss_after_mib=after / 1024,
                baseline_is_own=before <= 1.1 * resident_kib, top_eigenvalue=float(pairs.eigenvalues[0]),
                top_residual=float(pairs.residuals[0]))


def run_probe_in_child(p_target: float, num_iters: int) -> dict | None:
    cmd = [sys.executable, os.path.abspath(__file__), "--probe", str(p_target), str(num_iters)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"\nP = 1e6 probe failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the two parts of a Newton step

def newton_parts(sizes) -> list[dict]:
    """Time the two costs of a dense Newton step separately, on the same MLP loss:
    forming H (P Hessian-vector products, O(P^2 * batch)) and solving (H + dI) d = g
    (an O(P^3) factorisation).  The solve alone shows the cubic law; at small P the
    Hessian's formation dominates the whole step, which flattens the step's slope."""
    rows = []
    for p_target in sizes:
        params, x, y = make_problem(width_for(p_target))
        p = num_params(params)
        form = jax.jit(lambda q: curvature.hessian_matrix(loss, q, x, y))
        h = form(params)
        g = jnp.ones((p,), h.dtype)
        solve = jax.jit(lambda h, g: jnp.linalg.solve(h + DAMPING * jnp.eye(p, dtype=h.dtype), g))
        rows.append(dict(p=p, form=best_time(form, params, min_time=0.2),
                         solve=best_time(solve, h, g, min_time=0.2)))
    return rows


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="P = 1e2 .. 1e5, shorter timings (~20 s)")
    ap.add_argument("--min-time", type=float, default=None, help="seconds of repeated calls per cell")
    ap.add_argument("--probe", nargs=2, metavar=("P", "ITERS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe:
        print(json.dumps(lanczos_probe(float(args.probe[0]), int(args.probe[1]))))
        return

    exponents = np.arange(2.0, 5.01, 1.0) if args.quick else np.arange(2.0, 6.01, 0.5)
    min_time = args.min_time if args.min_time is not None else (0.05 if args.quick else 0.3)
    probe_p, probe_iters = (1e5, 20) if args.quick else (1e6, 20)
    cg, cg_note = newton_cg_step()
    jit_grad, jit_hvp, jit_adam, jit_newton = (jax.jit(grad_step), jax.jit(hvp_step),
                                               jax.jit(adam_step), jax.jit(newton_step))
    jit_cg = jax.jit(cg[1]) if cg else None

    probe = run_probe_in_child(probe_p, probe_iters)  # first, while this process is small
    print(f"# Curvature cost vs P: tanh MLP, batch {BATCH}, float32, best wall ms per step\n")
    print(f"machine: {machine()}\n")
    rows, started = [], time.perf_counter()
    for e in exponents:
        params, x, y = make_problem(width_for(10.0 ** e))
        p = num_params(params)
        row = dict(p=p, grad=best_time(jit_grad, params, x, y, min_time=min_time),
                   hvp=best_time(jit_hvp, params, tangent(params), x, y, min_time=min_time),
                   adam=best_time(jit_adam, params, ADAM.init(params), x, y, min_time=min_time),
                   newton=(best_time(jit_newton, params, x, y, min_time=min_time)
                           if p <= NEWTON_MAX_P else float("nan")),
                   newton_cg=float("nan"))
        if jit_cg is not None:
            try:
                row["newton_cg"] = best_time(jit_cg, params, cg[0](params), x, y, min_time=min_time)
            except Exception as err:  # the hook guessed the API wrong: report and skip the column
                cg_note, jit_cg = f"newton_cg column skipped: the call failed ({type(err).__name__}: {err})", None
        rows.append(row)

    ms = lambda t: "-" if not np.isfinite(t) else (f"{1e3 * t:.3f}" if t < 1e-2 else f"{1e3 * t:.1f}")
    print("| P | grad ms | HVP ms | HVP/grad | Adam step ms | dense Newton ms | Newton-CG ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['p']:,} | {ms(r['grad'])} | {ms(r['hvp'])} | {r['hvp'] / r['grad']:.2f} | "
              f"{ms(r['adam'])} | {ms(r['newton'])} | {ms(r['newton_cg'])} |")

    big = [r for r in rows if r["p"] >= 1e4]
    fit = lambda key, rs: slope([r["p"] for r in rs], [r[key] for r in rs])
    print(f"\nlog-log slopes (t ~ P^s), fitted over P >= 1e4 ({len(big)} points): "
          f"grad {fit('grad', big):.2f}, HVP {fit('hvp', big):.2f}, Adam step {fit('adam', big):.2f}, "
          f"Newton-CG {fit('newton_cg', big):.2f}")
    dense = [r for r in rows if r["p"] <= NEWTON_MAX_P]
    print(f"dense Newton slope over P = {dense[0]['p']:,} .. {dense[-1]['p']:,}: {fit('newton', dense):.2f} "
          f"(P HVPs for the Hessian plus an O(P^3) solve)")
    if cg_note:
        print(f"note: {cg_note}")
    parts = newton_parts([3e2, 1e3, 3e3] if args.quick else [5e2, 1e3, 2e3, 4e3, 8e3])
    print("\n## Dense Newton, its two parts (ms): forming H from P HVPs, and the O(P^3) solve\n")
    print("| P | form H ms | solve ms | H bytes (MiB) |")
    print("|---:|---:|---:|---:|")
    for r in parts:
        print(f"| {r['p']:,} | {ms(r['form'])} | {ms(r['solve'])} | {r['p'] ** 2 * 4 / 2 ** 20:,.0f} |")
    print(f"\nlog-log slopes over P = {parts[0]['p']:,} .. {parts[-1]['p']:,}: form H "
          f"{fit('form', parts):.2f}, solve {fit('solve', parts):.2f} (theory: 2 for forming at a fixed "
          "batch, 3 for the solve)")
    print(f"sweep time {time.perf_counter() - started:.1f} s; peak RSS of this whole process (every "
          f"column up to P = {rows[-1]['p']:,}, Newton-CG included): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")

    if probe is not None:
        basis_mib = probe["num_iters"] * probe["p"] * 4 / 2 ** 20
        print(f"\n## Matrix-free path at P = {probe['p']:,}: top_eigenvalues, {probe['num_iters']} Lanczos "
              f"iterations (HVPs, full reorthogonalisation)\n")
        print("| first call (compile + run) s | second call s | one HVP ms | peak RSS before MiB | "
              "peak RSS after MiB | delta MiB | Lanczos basis MiB |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {probe['first_call_s']:.2f} | {probe['second_call_s']:.2f} | {1e3 * probe['hvp_s']:.1f} | "
              f"{probe['maxrss_before_mib']:.0f} | {probe['maxrss_after_mib']:.0f} | "
              f"{probe['maxrss_after_mib'] - probe['maxrss_before_mib']:.0f} | {basis_mib:.0f} |")
        print(f"\ntop Hessian eigenvalue {probe['top_eigenvalue']:.6g} (Ritz residual "
              f"{probe['top_residual']:.2g}).  Memory is ru_maxrss growth in a fresh child process "
              "(peak RSS, counts XLA buffers and compile scratch; tracemalloc cannot see them); a dense "
              f"Hessian here would need {probe['p'] ** 2 * 4 / 2 ** 30:,.0f} GiB.")
        if not probe["baseline_is_own"]:
            print("warning: the child's baseline peak RSS exceeds its resident set (a peak inherited "
                  "from the parent?), so the delta understates the run's memory.")


if __name__ == "__main__":
    main()
