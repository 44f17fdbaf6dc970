"""The Newton study's direct measurements (no sweep; recomputed by ``load``): 2-D paths on
Rosenbrock, the time and memory of one step against the parameter count, and the Hessian
spectrum of the digits MLP."""
from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from lab import curvature, losses, optim, train
from lab.sweep import run_keys
from studies import common
from studies.newton.analysis import loglog_slope
from studies.newton.config import Config
from studies.newton.constants import LANCZOS_KEY, ROSENBROCK_METHODS, ROSENBROCK_START, SLQ_KEY, SOLVE_KEY
from studies.newton.sweeps import mlp_data, mlp_net

# =========================================================================== Rosenbrock


def _rosenbrock_optimizer(method: str, c: Config):
    if method == "newton":
        return optim.newton(1.0, linesearch=optim.backtracking_linesearch())
    if method == "damped_newton":
        return optim.damped_newton(1.0, c.rosenbrock_damping, adaptive=True)
    if method == "gd":
        return optim.sgd(c.rosenbrock_gd_lr)
    if method == "heavy_ball":
        return optim.sgd(c.rosenbrock_gd_lr, momentum=c.rosenbrock_beta)
    if method == "adam":
        return optim.adam(c.rosenbrock_adam_lr)
    raise ValueError(f"Rosenbrock method must be one of {ROSENBROCK_METHODS}, got {method!r}")


def rosenbrock_paths(c: Config) -> dict:
    """Paths ``(budget + 1, 2)`` of every method from :data:`ROSENBROCK_START` and the first iteration with
    ``||w - (1, 1)|| < tolerance`` (-1 when the budget ran out first)."""
    out = {"paths": {}, "iterations": {}, "final_distance": {}}
    for method in ROSENBROCK_METHODS:
        opt = _rosenbrock_optimizer(method, c)
        w0 = jnp.asarray(ROSENBROCK_START, common.float_dtype())

        def body(carry, _, opt=opt):
            w, state = carry
            value, grad = jax.value_and_grad(common.rosenbrock)(w)
            updates, state = opt.update(grad, state, w, value=value, grad=grad, value_fn=common.rosenbrock)
            w = optim.apply_updates(w, updates)
            return (w, state), w

        run = jax.jit(lambda w: jax.lax.scan(body, (w, opt.init(w)), None, length=c.rosenbrock_budget)[1])
        path = np.concatenate([np.asarray(w0, np.float64)[None], np.asarray(run(w0), np.float64)])
        distance = np.linalg.norm(path - 1.0, axis=1)
        hit = np.flatnonzero(distance < c.rosenbrock_tolerance)
        out["paths"][method] = path
        out["iterations"][method] = int(hit[0]) if hit.size else -1
        out["final_distance"][method] = float(distance[-1])
    return out



# =========================================================================== cost against P


def _cost_step(method: str, loss, c: Config):
    if method == "newton":
        opt = optim.newton(1.0)
    elif method == "newton_cg":
        opt = optim.newton_cg(1.0, 0.0, 0.0, max_cg_iterations=c.cost_cg_iterations)
    else:
        opt = optim.sgd(0.1)

    def step(params, state):
        value, grad = jax.value_and_grad(loss)(params)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
        return optim.apply_updates(params, updates), state

    return step, opt


def _memory_bytes(compiled) -> float:
    """temp + argument + output bytes of a compiled executable; NaN when the backend gives none."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 -- some backends do not implement it
        return math.nan
    if stats is None:
        return math.nan
    fields = ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")
    values = [getattr(stats, f, None) for f in fields]
    return math.nan if any(v is None for v in values) else float(sum(values))


def _time_call(fn, args, repeats: int) -> tuple[float, float]:
    """(fastest, median) seconds of ``repeats`` calls after a warm-up call.  The fastest is the
    one least disturbed by other processes on a shared machine; the fits use it."""
    jax.block_until_ready(fn(*args))   # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.min(times)), float(np.median(times))


def cost_measurements(c: Config) -> dict:
    """Seconds per step and compiled-step bytes of dense Newton, Newton-CG and GD (and the LU
    solve alone) on the digits MLP 64-[width]-10 with a batch of ``cost_examples``.  Slopes are
    fitted on the three largest P (at small P fixed overheads dominate)."""
    x, y = mlp_data(c.cost_examples, 1)
    x, y = jnp.asarray(x, common.float_dtype()), jnp.asarray(y)
    out = {}
    plan = [("newton", c.cost_dense_widths), ("solve", c.cost_dense_widths),
            ("newton_cg", c.cost_matrix_free_widths), ("gd", c.cost_matrix_free_widths)]
    for method, widths in plan:
        rows = []
        for width in widths:
            net = mlp_net(width)
            params = net.init(jax.random.key(0), (-1, x.shape[1]), dtype=common.float_dtype())[1]
            p = int(ravel_pytree(params)[0].size)
            if method == "solve":   # an SPD system of the same size
                m = jax.random.normal(jax.random.key(SOLVE_KEY), (p, p), common.float_dtype())
                args = (m @ m.T + p * jnp.eye(p, dtype=common.float_dtype()), jnp.ones((p,), common.float_dtype()))
                compiled = jax.jit(jnp.linalg.solve).lower(*args).compile()
            else:
                def loss(q, net=net):
                    return losses.softmax_cross_entropy_with_integer_labels(net.apply(q, x), y)
                step, opt = _cost_step(method, loss, c)
                args = (params, opt.init(params))
                compiled = jax.jit(step).lower(*args).compile()
            rows.append((p, *_time_call(compiled, args, c.cost_repeats), _memory_bytes(compiled)))
        rows = np.asarray(rows, np.float64)
        out[method] = {"P": rows[:, 0], "seconds": rows[:, 1], "median_seconds": rows[:, 2], "bytes": rows[:, 3],
                       "time_slope": loglog_slope(rows[-3:, 0], rows[-3:, 1]),
                       "memory_slope": loglog_slope(rows[-3:, 0], rows[-3:, 3])}
    return out



# =========================================================================== Hessian spectrum


def spectrum(c: Config) -> dict:
    """SLQ densities and exact eigenvalues of the MLP loss's Hessian at the seed-0 initial
    point of the sweeps and after ``spectrum_train_steps`` full-batch Adam steps."""
    x, y = mlp_data(c.mlp_examples, c.mlp_pool)
    x, y = jnp.asarray(x, common.float_dtype()), jnp.asarray(y)
    net = mlp_net(c.mlp_hidden)

    def loss(params):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, x), y)

    init = net.init(run_keys(0).params, (-1, x.shape[1]), dtype=common.float_dtype())[1]   # the sweeps' seed 0
    opt = optim.adam(c.spectrum_adam_lr)

    trained, train_curve = train.fit(loss, init, opt, c.spectrum_train_steps)
    p = int(ravel_pytree(init)[0].size)
    iters = min(c.spectrum_iters, p)

    @jax.jit
    def analyse(params):
        slq = curvature.spectral_density(loss, params, num_probes=c.spectrum_probes, num_iters=iters,
                                         key=jax.random.key(SLQ_KEY), num_points=512)
        exact = jnp.linalg.eigvalsh(curvature.hessian_matrix(loss, params))
        top = curvature.top_eigenvalues(loss, params, k=1, num_iters=iters, key=jax.random.key(LANCZOS_KEY), which="both")
        return slq, exact, top.eigenvalues, loss(params)

    out = {"P": p, "train_curve": np.asarray(train_curve, np.float64)}
    for name, params in (("init", init), ("trained", trained)):
        slq, exact, extremes, value = analyse(params)
        nodes, weights = np.asarray(slq.nodes, np.float64), np.asarray(slq.weights, np.float64)
        exact = np.asarray(exact, np.float64)
        out[name] = {"grid": np.asarray(slq.grid, np.float64), "density": np.asarray(slq.density, np.float64),
                     "nodes": nodes, "weights": weights, "exact": exact, "loss": float(value),
                     "slq_top": float(nodes.max()), "slq_bottom": float(nodes.min()),
                     "lanczos_bottom": float(extremes[0]), "lanczos_top": float(extremes[-1]),
                     "dense_top": float(exact[-1]), "dense_bottom": float(exact[0]),
                     "slq_negative_mass": float(weights[nodes < 0].sum()),
                     "dense_negative_fraction": float(np.mean(exact < 0))}
    return out

