"""Benchmark: the ceiling the sweep engine's matmuls set, measured apart from everything else.

The engine's reference sweep (benchmarks/sweep.py) trains 32 runs per device of an MLP
64-128-128-10 at batch 64; under ``vmap`` every layer is a batched matmul over the run axis.
This script times those batched matmuls alone (forward ``x W``, weight gradient ``x^T delta``,
and the weight gradient with ``x`` stored transposed) and a 1024^3 float32 matmul, the
machine's peak, in the same process.  No training step can run its matmuls faster than they
run alone, so their percentage of peak bounds the engine's.

    python benchmarks/sweep_dots.py
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RUNS, BATCH = 32, 64
LAYERS = ((64, 128), (128, 128), (128, 10))


def best_seconds(f, *args, calls: int = 100, repeats: int = 5) -> float:
    f(*args).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            out = f(*args)
        out.block_until_ready()
        best = min(best, (time.perf_counter() - t) / calls)
    return best


def main() -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from machine import describe

    rng = np.random.default_rng(0)
    square = jnp.asarray(rng.standard_normal((1024, 1024)), jnp.float32)
    peak = 2 * 1024 ** 3 / best_seconds(jax.jit(lambda a: a @ a), square, calls=20) / 1e9
    forward = jax.jit(lambda x, w: jnp.einsum("rbi,rio->rbo", x, w))
    weight_grad = jax.jit(lambda x, d: jnp.einsum("rbi,rbo->rio", x, d))
    weight_grad_t = jax.jit(lambda xt, d: jnp.einsum("rib,rbo->rio", xt, d))
    print(describe())
    print(f"float32 matmul peak (1024^3): {peak:.0f} GFLOP/s; {RUNS} runs x batch {BATCH}\n")
    print("| layer (in x out) | forward GFLOP/s | % peak | weight grad GFLOP/s | % peak | weight grad, x stored transposed | % peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for i, o in LAYERS:
        x = jnp.asarray(rng.standard_normal((RUNS, BATCH, i)), jnp.float32)
        w = jnp.asarray(rng.standard_normal((RUNS, i, o)), jnp.float32)
        d = jnp.asarray(rng.standard_normal((RUNS, BATCH, o)), jnp.float32)
        xt = jnp.asarray(np.swapaxes(np.asarray(x), 1, 2).copy())
        flops = 2 * RUNS * BATCH * i * o / 1e9
        rates = [flops / best_seconds(forward, x, w), flops / best_seconds(weight_grad, x, d),
                 flops / best_seconds(weight_grad_t, xt, d)]
        print(f"| {i} x {o} | " + " | ".join(f"{r:.0f} | {100 * r / peak:.0f}%" for r in rates) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
