"""The batch-size study's gradient-noise part (host side, float64; recomputed by ``load``):
``B_simple = tr(Sigma) / |G|^2`` from per-example gradients at three points of a full-batch GD
path, and the mini-batch gradient noise ``E |g_B - G|^2`` against the finite-population formula."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lab.sweep import run_keys
from studies.batch_size.config import CHECKPOINTS, Config, check
from studies.batch_size.sweeps import _digits, _mean_loss, _net


def finite_population_noise(trace_sigma: float, batch_sizes, n: int) -> np.ndarray:
    """``E |g_B - G|^2 = tr(Sigma) / B * (N - B) / (N - 1)`` for batches drawn without replacement."""
    b = np.asarray(batch_sizes, np.float64)
    return trace_sigma / b * (n - b) / (n - 1)


def per_example_gradients(config: Config):
    """A function ``params -> (N, P) float64`` per-example gradients of the cross-entropy on
    the training subset (one jitted ``vmap(grad)``, compiled once for every call)."""
    x, y, _, _ = _digits(config)
    mean_loss = _mean_loss(_net(config))
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    @jax.jit
    def grads(p):
        g = jax.vmap(lambda xi, yi: jax.grad(mean_loss)(p, xi[None], yi[None]))(xj, yj)
        return jnp.concatenate([leaf.reshape(x.shape[0], -1) for leaf in jax.tree.leaves(g)], axis=1)

    return lambda params: np.asarray(grads(params), np.float64)


def noise_statistics(per_example: np.ndarray) -> dict:
    """``tr(Sigma)``, ``|G|^2``, ``B_simple`` and the Gram matrix of the centred gradients."""
    g = np.asarray(per_example, np.float64)
    mean = g.mean(axis=0)
    centred = g - mean
    gram = centred @ centred.T
    trace_sigma = float(np.trace(gram)) / g.shape[0]
    grad_sq = float(mean @ mean)
    return {"trace_sigma": trace_sigma, "grad_sq": grad_sq, "b_simple": trace_sigma / grad_sq, "gram": gram}


def minibatch_noise(gram: np.ndarray, batch_sizes, draws: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over ``draws`` batches (without replacement) of ``|g_B - G|^2 =
    1_S^T K 1_S / B^2`` for each batch size, with ``K`` the Gram matrix of the centred gradients
    (so ``g_B - G`` is the mean of the centred per-example gradients of the batch ``S``)."""
    n = gram.shape[0]
    means, errors = [], []
    for b in batch_sizes:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(b)])))
        chosen = np.argsort(rng.random((draws, n)), axis=1)[:, :b]   # uniform subsets of size b
        member = np.zeros((draws, n))
        np.put_along_axis(member, chosen, 1.0, axis=1)
        values = np.einsum("rn,rn->r", member @ gram, member) / float(b) ** 2
        means.append(values.mean())
        errors.append(values.std(ddof=1) / math.sqrt(draws))
    return np.asarray(means), np.asarray(errors)


def gd_checkpoints(config: Config) -> dict:
    """Full-batch GD (rate ``noise_lr``) from seed 0's initialisation until the training loss
    reaches each level (start, halfway in log loss, target): params, step and loss at each."""
    x, y, _, _ = _digits(config)
    net = _net(config)
    mean_loss = _mean_loss(net)
    params = net.init(run_keys(0).params, (-1, x.shape[1]))[1]  # the engine's seed-0 init
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    start_loss = float(mean_loss(params, xj, yj))
    levels = (start_loss, math.sqrt(start_loss * config.target_loss), config.target_loss)

    @jax.jit
    def descend(p, step, level, max_steps):
        def cond(state):
            _, s, loss = state
            return (loss > level) & (s < max_steps)

        def body(state):
            p, s, _ = state
            g = jax.grad(mean_loss)(p, xj, yj)
            p = jax.tree.map(lambda w, d: w - (config.noise_lr * d).astype(w.dtype), p, g)
            return p, s + 1, mean_loss(p, xj, yj)

        return jax.lax.while_loop(cond, body, (p, step, mean_loss(p, xj, yj)))

    out, step = {}, jnp.zeros((), jnp.int32)
    for name, level in zip(CHECKPOINTS, levels):
        params, step, loss = descend(params, step, jnp.asarray(level, jnp.float32),
                                     jnp.asarray(config.noise_max_steps, jnp.int32))
        out[name] = {"params": params, "step": int(step), "loss": float(loss), "level": level,
                     "reached": bool(float(loss) <= level)}
    return out


def gradient_noise(config: Config) -> dict:
    """B_simple and the mini-batch gradient noise at the GD checkpoints (no sweep: deterministic,
    host-side; recomputed by :func:`load`).  Batch sizes: the study's, every power of two up to
    ``N`` and ``N`` itself (the full batch, where the noise is zero)."""
    check(config)
    n = config.train_size
    powers = {2 ** k for k in range(n.bit_length()) if 2 ** k <= n}
    sizes = np.asarray(sorted(set(config.batch_sizes) | powers | {n}), np.int64)
    points = gd_checkpoints(config)
    gradients = per_example_gradients(config)
    out = {"batch_sizes": sizes, "n": n, "checkpoints": CHECKPOINTS, "draws": config.noise_draws}
    rows = {k: [] for k in ("step", "loss", "reached", "trace_sigma", "grad_sq", "b_simple", "measured",
                            "stderr", "predicted")}
    for i, name in enumerate(CHECKPOINTS):
        stats = noise_statistics(gradients(points[name]["params"]))
        mean, err = minibatch_noise(stats["gram"], sizes, config.noise_draws, seed=1000 * config.seed + i)
        for key, value in (("step", points[name]["step"]), ("loss", points[name]["loss"]),
                           ("reached", points[name]["reached"]), ("trace_sigma", stats["trace_sigma"]),
                           ("grad_sq", stats["grad_sq"]), ("b_simple", stats["b_simple"]), ("measured", mean),
                           ("stderr", err), ("predicted", finite_population_noise(stats["trace_sigma"], sizes, n))):
            rows[key].append(value)
    out.update({k: np.asarray(v) for k, v in rows.items()})
    partial = sizes < n
    diff = out["measured"][:, partial] - out["predicted"][:, partial]
    out["max_relative_error"] = float(np.max(np.abs(diff) / out["predicted"][:, partial])) if diff.size else math.nan
    out["max_z"] = float(np.max(np.abs(diff) / out["stderr"][:, partial])) if diff.size else math.nan
    out["full_batch_noise"] = out["measured"][:, ~partial].ravel()
    return out

