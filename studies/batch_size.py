"""Batch size: steps to a target loss, the gradient noise scale, and what large batches end at.

The problem.  An MLP 64-``hidden``-10 (tanh) trained by plain SGD on a fixed training subset
of the 8x8 digits (the first ``train_size`` images, so that the batch sizes 1, 2, 4, ...,
``train_size`` end at the full batch); the remaining images are the held-out set.  Mini-batches
are drawn without replacement within each epoch (the sweep engine's schedule).

What is measured, in four parts.

* **Steps to target** (Shallue et al. 2019).  For every batch size ``B`` one sweep over a
  shared log-spaced learning-rate grid (dynamic, vmapped) and several seeds; the step budget
  shrinks as ``B`` grows (``budget_min_steps * (1 + budget_noise / B)``, a guess of the shape
  measured below, with room to spare).  Every run evaluates the cross-entropy on the *whole*
  training subset every ``eval_every(B) = budget(B) / evals`` steps; its steps to target is the
  first step where that loss reaches ``target_loss``, interpolated linearly in log loss between
  the two evaluations that bracket the crossing (so the resolution is well below one
  ``eval_every``; a run already below target at its first evaluation is given that step, an
  upper bound).  Runs that never reach it count as infinite.  Per batch size the tuned rate
  is the one with the smallest median (over seeds) steps; its median is the batch size's steps
  to target ``S(B)``, and ``E(B) = B S(B)`` the examples to target.
* **Theory** (McCandlish et al. 2018, "An empirical model of large-batch training").  With an
  optimally tuned rate, ``S = S_min (1 + B_noise / B)`` and ``E = E_min (1 + B / B_noise)``,
  ``E_min = S_min B_noise``: perfect scaling (``S ~ 1/B``) for ``B << B_noise`` and
  diminishing returns (``S -> S_min``) for ``B >> B_noise``.  ``S_min`` and ``B_noise`` are
  fitted to the measured ``S(B)`` by least squares on the relative error
  (``S = a + b / B`` is linear in ``a = S_min`` and ``b = S_min B_noise``).  Beside it, the
  *simple noise scale* ``B_simple = tr(Sigma) / |G|^2`` is measured exactly on the training
  subset, from per-example gradients (``vmap(grad)``): ``G`` the full-batch gradient and
  ``tr(Sigma) = mean_i |g_i - G|^2``.  It is taken at three points of one full-batch gradient
  descent path from seed 0's initialisation (rate ``noise_lr``): the start, where the loss
  first reaches the geometric mean of the start loss and the target ("halfway" in log loss),
  and where it reaches the target.  McCandlish et al. find ``B_simple`` tracks the critical
  batch size up to a factor (it ignores the curvature weighting in ``tr(H Sigma) / G^T H G``)
  and grows as the loss falls; the ratio ``B_noise / B_simple`` is reported, not judged.
* **Gradient-estimate noise.**  At each of those three points, ``|g_B - G|^2`` for
  ``noise_draws`` mini-batches of each size drawn without replacement, where ``g_B`` is the
  mean of the per-example gradients in the batch (the gradient of the batch's mean loss),
  against the exact finite-population formula
  ``E |g_B - G|^2 = tr(Sigma) / B * (N - B) / (N - 1)`` (zero at the full batch, ``B = N``:
  gradient descent has no gradient noise).  The mean over draws has a standard error the
  sample itself gives; the figure shows it and the test checks the formula within it.
  (Computed on the host in float64 from the Gram matrix of the centred per-example gradients.)
* **Generalisation gap and sharpness at the target.**  Compared *at the same training loss*,
  not after a fixed number of epochs (which would leave the large batches far less trained
  and confound the gap with under-fitting).  The gap is held-out minus training cross-entropy
  of each seed at the tuned rate at its first evaluation at or below the target (read from the
  tuning sweep).  The sharpness, the top Hessian eigenvalue of the training loss on the whole
  training subset (``SweepSpec(sharpness_iters=...)``, Lanczos), is recorded by one more sweep
  per batch size in ``sharpness_batch_sizes``: the tuned rate, all seeds, trained for the
  median steps to target rounded up to an evaluation of the tuning sweep, one evaluation at
  the end (it costs one more compiled program per batch size, hence the subset in QUICK).
  Reference: gradient descent on a quadratic is stable only while the sharpness stays below
  ``2 / lr`` (drawn dashed); Keskar et al. (2017) report sharper minima and larger gaps for
  large batches.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from lab import losses, nets, optim, train
from lab.sweep import Problem, Study, SweepSpec, run_sweep

NAME = "batch_size"
DESCRIPTION = ("steps to a target loss vs batch size with the rate tuned per batch size, against "
               "S_min (1 + B_noise / B) and the measured noise scale B_simple; gradient noise vs batch; gap and "
               "sharpness at the target")
DIVERGENCE_FACTOR = 1e3
DIGITS = 1797
CHECKPOINTS = ("start", "halfway", "target")
FIGURES = {
    "batch_size_steps": "steps (left) and examples (right) to the target training loss against batch size, each at "
                        "its tuned rate, with the fit S_min (1 + B_noise/B), perfect scaling S ~ 1/B, and the "
                        "fitted B_noise and measured B_simple as vertical lines",
    "batch_size_gradient_noise": "mean squared error of the mini-batch gradient |g_B - G|^2 against batch size at "
                                 "three points of training, against tr(Sigma)/B (N-B)/(N-1) (dashed), and the "
                                 "measured / predicted ratio with its standard error",
    "batch_size_gap_sharpness": "held-out minus training cross-entropy, and the top Hessian eigenvalue, against "
                                "batch size, each batch size trained at its tuned rate to the target loss",
    "batch_size_learning_rate": "steps to target against learning rate for every batch size (the tuning curves), "
                                "and the tuned rate against batch size with the linear-scaling rule lr ~ B",
}


@dataclasses.dataclass(frozen=True)
class Config:
    # problem
    hidden: int = 32                    # width of the one tanh hidden layer: MLP 64-hidden-10
    train_size: int = 1024              # first images used for training; the rest are held out
    batch_sizes: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # increasing, at most train_size
    target_loss: float = 0.1            # training cross-entropy (whole training subset) to reach
    # learning-rate tuning (one log grid shared by every batch size)
    lr_min: float = 0.005               # smallest learning rate tried
    lr_max: float = 5.0                 # largest learning rate tried
    lr_points: int = 16                 # log-spaced rates in [lr_min, lr_max] (ratio 1.58 between neighbours)
    seeds: int = 5                      # seeds per (batch size, rate): initialisation and batch order
    budget_min_steps: int = 400         # step budget at very large batch; budget(B) = this * (1 + noise / B)
    budget_noise: float = 30.0          # the batch size where the budget has doubled
    evals: int = 100                    # evaluations per run (eval_every = budget / evals)
    # gradient noise (host side, float64)
    noise_lr: float = 1.0               # rate of the full-batch GD path on which B_simple is measured
    noise_max_steps: int = 5000         # GD steps allowed to reach the target on that path
    noise_draws: int = 1000             # random mini-batches per batch size for E|g_B - G|^2
    # sharpness at the target (one extra compiled program per batch size listed)
    sharpness_batch_sizes: tuple = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)  # a subset of batch_sizes
    sharpness_iters: int = 40           # Lanczos steps for the top Hessian eigenvalue
    seed: int = 0                       # seeds the mini-batch draws of the gradient-noise part


FULL = Config()
QUICK = Config(batch_sizes=(1, 4, 16, 64, 256, 1024), lr_min=0.01, lr_max=3.0, lr_points=12, seeds=2,
               budget_min_steps=300, evals=40, noise_draws=1000, sharpness_batch_sizes=(1, 16, 1024),
               sharpness_iters=20)


# --------------------------------------------------------------------------- checks and data


def check(config: Config) -> None:
    """Raise TypeError/ValueError naming the first unusable field of ``config``."""
    if not isinstance(config, Config):
        raise TypeError(f"expected a batch_size.Config, got {type(config).__name__}")
    c = config
    for name in ("hidden", "lr_points", "seeds", "budget_min_steps", "noise_max_steps", "sharpness_iters"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, low in (("evals", 2), ("noise_draws", 2)):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if not isinstance(c.train_size, int) or not 2 <= c.train_size < DIGITS:
        raise ValueError(f"train_size must be an integer in [2, {DIGITS - 1}] (the rest is held out), "
                         f"got {c.train_size!r}")
    sizes = tuple(c.batch_sizes)
    if not sizes:
        raise ValueError("batch_sizes is empty; give at least one batch size")
    if any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= c.train_size for b in sizes):
        raise ValueError(f"batch_sizes must be integers in [1, train_size={c.train_size}], got {sizes}")
    if any(a >= b for a, b in itertools.pairwise(sizes)):
        raise ValueError(f"batch_sizes must be strictly increasing, got {sizes}")
    extra = sorted(set(c.sharpness_batch_sizes) - set(sizes))
    if extra:
        raise ValueError(f"sharpness_batch_sizes must be a subset of batch_sizes {sizes}; not there: {extra}")
    if not 0 < c.target_loss < math.log(10.0):
        raise ValueError(f"target_loss must lie in (0, ln 10 = {math.log(10.0):.3f}) (the loss at a random start), "
                         f"got {c.target_loss!r}")
    if not 0 < c.lr_min <= c.lr_max or (c.lr_points > 1 and c.lr_min == c.lr_max):
        raise ValueError(f"learning rates need 0 < lr_min < lr_max, got [{c.lr_min}, {c.lr_max}]")
    if not c.budget_noise >= 0 or not math.isfinite(c.budget_noise):
        raise ValueError(f"budget_noise must be a finite number >= 0, got {c.budget_noise!r}")
    if not c.noise_lr > 0:
        raise ValueError(f"noise_lr must be > 0, got {c.noise_lr!r}")


def _digits(config: Config):
    """``(x_train, y_train, x_held, y_held)`` as float32 / int32 NumPy arrays."""
    from lab.data import load_digits
    x, y = load_digits()
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int32)
    n = config.train_size
    return x[:n], y[:n], x[n:], y[n:]


def _net(config: Config):
    return nets.mlp([config.hidden, 10], activation="tanh")


def _mean_loss(net):
    def loss(params, xb, yb):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)
    return loss


def learning_rates(config: Config) -> np.ndarray:
    return np.geomspace(config.lr_min, config.lr_max, config.lr_points)


def schedule(config: Config, batch_size: int) -> tuple[int, int]:
    """``(steps, eval_every)`` of the tuning sweep at ``batch_size``: ``evals`` evaluations
    spread over ``budget_min_steps * (1 + budget_noise / B)`` steps (rounded up)."""
    budget = config.budget_min_steps * (1.0 + config.budget_noise / batch_size)
    every = max(1, math.ceil(budget / config.evals))
    return every * config.evals, every


# --------------------------------------------------------------------------- the sweeps


def _study(config: Config) -> Study:
    x, y, xh, yh = _digits(config)
    net = _net(config)
    mean_loss = _mean_loss(net)
    n = x.shape[0]
    x_all, y_all = np.concatenate([x, xh]), np.concatenate([y, yh])

    def evaluate(params, ex, ey):
        # eval_x holds the training subset followed by the held-out images
        logits = net.apply(params, ex)
        xent = losses.softmax_cross_entropy_with_integer_labels    # mean over the rows given
        return {"train_loss": xent(logits[:n], ey[:n]), "train_accuracy": train.accuracy(logits[:n], ey[:n]),
                "heldout_loss": xent(logits[n:], ey[n:]), "heldout_accuracy": train.accuracy(logits[n:], ey[n:])}

    def make_problem(static):
        return Problem(init_params=lambda key: net.init(key, (-1, x.shape[1]))[1],
                       loss=lambda params, xb, yb, key: mean_loss(params, xb, yb),
                       x=x, y=y, evaluate=evaluate, eval_x=x_all, eval_y=y_all)

    return Study(NAME, make_problem, lambda cfg: optim.sgd(cfg["learning_rate"]),
                 hyperparameters={"learning_rate": 0.1}, static={"batch_size": 1},
                 description={"data": f"8x8 digits, first {n} images for training, the other {DIGITS - n} held out",
                              "net": f"mlp 64-{config.hidden}-10 tanh", "loss": "softmax cross-entropy",
                              "optimizer": "sgd", "evaluate": "train/heldout loss and accuracy"})


def tuning_specs(config: Config) -> list[SweepSpec]:
    """One sweep per batch size over the shared learning-rate grid (index = batch size's position)."""
    check(config)
    study = _study(config)
    lrs = [float(v) for v in learning_rates(config)]
    out = []
    for b in config.batch_sizes:
        steps, every = schedule(config, b)
        out.append(SweepSpec(study, {"batch_size": [int(b)], "learning_rate": lrs}, seeds=config.seeds,
                             steps=steps, eval_every=every, chunk_steps=steps,
                             divergence_factor=DIVERGENCE_FACTOR))
    return out


def target_spec(config: Config, batch_size: int, lr: float, steps: int) -> SweepSpec:
    """``batch_size`` at rate ``lr`` for ``steps`` steps (about the steps to target), one evaluation
    at the end with the sharpness of the whole training subset."""
    return SweepSpec(_study(config), {"batch_size": [int(batch_size)], "learning_rate": [float(lr)]},
                     seeds=config.seeds, steps=int(steps), eval_every=int(steps), chunk_steps=int(steps),
                     divergence_factor=DIVERGENCE_FACTOR, sharpness_iters=config.sharpness_iters,
                     sharpness_batch=config.train_size)


# --------------------------------------------------------------------------- analysis helpers


def crossing_steps(curves, eval_steps, target: float) -> np.ndarray:
    """First step where each loss curve (last axis, at ``eval_steps``) reaches ``target``,
    interpolated linearly in log loss between the bracketing evaluations; ``eval_steps[0]``
    when the first evaluation is already at or below target; +inf when never (NaN entries,
    from diverged runs, count as not reached)."""
    curves = np.asarray(curves, np.float64)
    steps = np.asarray(eval_steps, np.float64)
    below = np.nan_to_num(curves, nan=np.inf) <= target
    first = np.argmax(below, axis=-1)
    reached = np.any(below, axis=-1)
    prev = np.maximum(first - 1, 0)
    l0 = np.take_along_axis(curves, prev[..., None], -1)[..., 0]
    l1 = np.take_along_axis(curves, first[..., None], -1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = (np.log(l0) - np.log(target)) / (np.log(l0) - np.log(l1))
    frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
    out = steps[prev] + frac * (steps[first] - steps[prev])
    out = np.where(first == 0, steps[0], out)
    return np.where(reached, out, np.inf)


def fit_steps(batch_sizes, steps) -> tuple[float, float]:
    """``(S_min, B_noise)`` of ``S = S_min (1 + B_noise / B)`` by least squares on the relative
    error ``(S_min + S_min B_noise / B) / S - 1`` over the finite points; NaN with fewer than two."""
    b, s = np.asarray(batch_sizes, np.float64), np.asarray(steps, np.float64)
    ok = np.isfinite(s) & (s > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    design = np.stack([1.0 / s[ok], 1.0 / (b[ok] * s[ok])], axis=1)
    (a, c), *_ = np.linalg.lstsq(design, np.ones(int(ok.sum())), rcond=None)
    return float(a), float(c / a) if a != 0 else math.nan


def predicted_steps(batch_sizes, s_min: float, b_noise: float) -> np.ndarray:
    return s_min * (1.0 + b_noise / np.asarray(batch_sizes, np.float64))


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
    params = net.init(jax.random.fold_in(jax.random.key(0), 0), (-1, x.shape[1]))[1]  # the engine's seed-0 init
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


# --------------------------------------------------------------------------- run / load


def _at_crossing(result, lr_index: int, target: float) -> dict:
    """Per seed, the metrics of the tuned rate at its first evaluation at or below target (NaN if none)."""
    train_loss = result.curves["eval_train_loss"][0, lr_index]                   # (seeds, E)
    below = np.nan_to_num(train_loss, nan=np.inf) <= target
    first = np.argmax(below, axis=-1)[:, None]

    def pick(name):
        return np.where(below.any(-1), np.take_along_axis(result.curves[name][0, lr_index], first, -1)[:, 0], np.nan)
    return {"train_loss": pick("eval_train_loss"), "heldout_loss": pick("eval_heldout_loss"),
            "heldout_accuracy": pick("eval_heldout_accuracy"), "train_accuracy": pick("eval_train_accuracy")}


def _analyse_tuning(config: Config, sweeps) -> dict:
    lrs = learning_rates(config)
    sizes = np.asarray(config.batch_sizes, np.int64)
    per_run = np.stack([crossing_steps(r.curves["eval_train_loss"][0], r.eval_steps, config.target_loss)
                        for r in sweeps])                                       # (B, lr, seed)
    medians = np.median(per_run, axis=-1)                                      # (B, lr)
    best = np.argmin(medians, axis=1)
    rows = np.arange(len(sizes))
    steps = medians[rows, best]
    tuned_lr = np.where(np.isfinite(steps), lrs[best], np.nan)
    s_min, b_noise = fit_steps(sizes, steps)
    at = [_at_crossing(r, int(i), config.target_loss) for r, i in zip(sweeps, best)]
    at = {k: np.stack([a[k] for a in at]) for k in at[0]}                      # (B, seed) each
    return {"batch_sizes": sizes, "learning_rates": lrs, "steps_per_run": per_run, "median_steps": medians,
            "best_index": best, "tuned_lr": tuned_lr, "steps": steps, "examples": steps * sizes,
            "steps_at_tuned": per_run[rows, best], "budget": np.asarray([int(r.eval_steps[-1]) for r in sweeps]),
            "eval_every": np.asarray([int(r.eval_steps[0]) for r in sweeps]),
            "edge": (best == 0) | (best == len(lrs) - 1), "s_min": s_min, "b_noise": b_noise,
            "e_min": s_min * b_noise, "fit": predicted_steps(sizes, s_min, b_noise),
            "gap": at["heldout_loss"] - at["train_loss"], "at_target": at,
            "curves": [r.curves["eval_train_loss"][0, i] for r, i in zip(sweeps, best)],   # (seed, E) per B
            "curve_steps": [np.asarray(r.eval_steps) for r in sweeps]}


def _target_plan(config: Config, tuning: dict) -> list:
    """``(batch_size, lr, steps)`` of each sharpness sweep: the tuned rate for the median steps to
    target rounded up to an evaluation of the tuning sweep; None where the target was never reached."""
    plan = []
    for b in config.sharpness_batch_sizes:
        i = config.batch_sizes.index(b)
        s, every = tuning["steps"][i], int(tuning["eval_every"][i])
        plan.append(None if not np.isfinite(s) else (int(b), float(tuning["tuned_lr"][i]),
                                                     every * max(1, math.ceil(s / every))))
    return plan


def _analyse_target(config: Config, plan, sweeps) -> dict:
    shape = (len(plan), config.seeds)
    out = {k: np.full(shape, np.nan) for k in ("train_loss", "heldout_loss", "sharpness")}
    steps = np.full(len(plan), np.nan)
    for i, (item, result) in enumerate(zip(plan, sweeps)):
        if item is None:
            continue
        steps[i] = item[2]
        healthy = result.diverged_step[0, 0] < 0
        for key, metric in (("train_loss", "eval_train_loss"), ("heldout_loss", "eval_heldout_loss"),
                            ("sharpness", "sharpness")):
            out[key][i] = np.where(healthy, result.final[metric][0, 0], np.nan)
    lr = np.array([np.nan if item is None else item[1] for item in plan])
    return {"batch_sizes": np.asarray(config.sharpness_batch_sizes, np.int64), "steps": steps, "lr": lr, **out}


def _finish(config: Config, tuning_sweeps, target_sweeps, plan) -> dict:
    return {"config": dataclasses.asdict(config), "tuning": _analyse_tuning(config, tuning_sweeps),
            "target": _analyse_target(config, plan, target_sweeps), "noise": gradient_noise(config),
            "sweeps": {"tuning": list(tuning_sweeps), "target": list(target_sweeps)}}


def run(config: Config = FULL, *, store, progress: bool = True, rerun: bool = False) -> dict:
    """Run (or fetch) the tuning sweeps, then the sharpness sweeps they define, and measure the
    gradient noise (host side)."""
    from lab.store import Store
    db = store if isinstance(store, Store) else Store(store)
    try:
        tuning_sweeps = [run_sweep(spec, store=db, progress=progress, rerun=rerun) for spec in tuning_specs(config)]
        plan = _target_plan(config, _analyse_tuning(config, tuning_sweeps))
        target_sweeps = [None if item is None else
                         run_sweep(target_spec(config, *item), store=db, progress=progress, rerun=rerun)
                         for item in plan]
    finally:
        if not isinstance(store, Store):
            db.close()
    return _finish(config, tuning_sweeps, target_sweeps, plan)


def load(config: Config = FULL, *, store) -> dict:
    """The results of :func:`run` rebuilt from the database (LookupError if a sweep is missing);
    the gradient-noise part (seconds, deterministic) is recomputed."""
    from studies import stored_sweep
    tuning_sweeps = [stored_sweep(spec, store) for spec in tuning_specs(config)]
    plan = _target_plan(config, _analyse_tuning(config, tuning_sweeps))
    target_sweeps = [None if item is None else stored_sweep(target_spec(config, *item), store) for item in plan]
    return _finish(config, tuning_sweeps, target_sweeps, plan)


# --------------------------------------------------------------------------- report


def _median(values) -> float:
    values = np.asarray(values, np.float64)
    return float(np.nanmedian(values)) if np.any(np.isfinite(values)) else math.nan


def report(results: dict) -> str:
    """Per batch size: tuned rate, steps and examples to target (measured and fitted), gap and
    sharpness at the target; then the fit, B_simple and the gradient-noise check."""
    t, g, n = results["tuning"], results["target"], results["noise"]
    cfg = results["config"]
    sharp = {int(b): _median(s) for b, s in zip(g["batch_sizes"], g["sharpness"])}
    lines = [("| batch | tuned lr | steps to target | fit S_min (1 + B_noise/B) | examples to target | "
              "eval every | gap (held-out - train) | sharpness | 2 / lr |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for i, b in enumerate(t["batch_sizes"]):
        edge = " (grid edge)" if t["edge"][i] and np.isfinite(t["steps"][i]) else ""
        s = sharp.get(int(b), math.nan)
        lines.append(f"| {b} | {t['tuned_lr'][i]:.3g}{edge} | {t['steps'][i]:.4g} | {t['fit'][i]:.4g} | "
                     f"{t['examples'][i]:.4g} | {t['eval_every'][i]} | {_median(t['gap'][i]):.3g} | "
                     f"{'-' if math.isnan(s) else f'{s:.3g}'} | {2.0 / t['tuned_lr'][i]:.3g} |")
    lines.append("")
    lines.append(f"Target: training cross-entropy {cfg['target_loss']:g} on the {cfg['train_size']} training images; "
                 f"steps are medians over {cfg['seeds']} seeds at the tuned rate, interpolated in log loss between "
                 f"evaluations; gap at the first evaluation at or below the target.")
    lines.append(f"Fit (McCandlish et al. 2018): S_min = {t['s_min']:.4g} steps, B_noise = {t['b_noise']:.4g}, "
                 f"E_min = {t['e_min']:.4g} examples.")
    for i, name in enumerate(n["checkpoints"]):
        lines.append(f"Measured B_simple = tr(Sigma)/|G|^2 at the {name} of the GD path (step {n['step'][i]}, "
                     f"loss {n['loss'][i]:.3g}): {n['b_simple'][i]:.4g}; B_noise / B_simple = "
                     f"{t['b_noise'] / n['b_simple'][i]:.3g}.")
    lines.append(f"Gradient noise E|g_B - G|^2 over {n['draws']} batches per size against tr(Sigma)/B (N-B)/(N-1): "
                 f"max relative error {n['max_relative_error']:.3g}, max |z| = {n['max_z']:.2f} standard errors; "
                 f"at the full batch {np.max(np.abs(n['full_batch_noise'])):.2g} (theory 0).")
    return "\n".join(lines)


# --------------------------------------------------------------------------- figures


def plot(results: dict, outdir="figures") -> list[Path]:
    """Write the four figures (PNG + SVG each) and return their paths."""
    from lab import plotting

    t, g, n, cfg = results["tuning"], results["target"], results["noise"], results["config"]
    sizes = t["batch_sizes"].astype(np.float64)
    paths = []
    grid = np.geomspace(sizes.min(), sizes.max(), 200)
    ok = np.isfinite(t["steps"])
    colors = {"start": plotting.PALETTE[5], "halfway": plotting.PALETTE[4], "target": plotting.PALETTE[3]}

    # 1. steps and examples to target, with the fit, perfect scaling and the noise scales.
    fig, (ax, ax_e) = plotting.figure(2, width=5.2, height=4.0)
    per = t["steps_at_tuned"]
    for axis, scale in ((ax, np.ones_like(sizes)), (ax_e, sizes)):
        lo, hi = (np.nanpercentile(np.where(np.isfinite(per), per, np.nan), q, axis=1) * scale for q in (25, 75))
        mid = t["steps"] * scale
        axis.errorbar(sizes[ok], mid[ok], yerr=[(mid - lo)[ok], (hi - mid)[ok]],
                      fmt="o", color=plotting.PALETTE[0], capsize=3, zorder=5,
                      label="measured: median (IQR) over seeds, tuned lr")
        if np.isfinite(t["s_min"]) and t["s_min"] > 0:
            fit = predicted_steps(grid, t["s_min"], t["b_noise"])
            axis.plot(grid, fit * (grid if axis is ax_e else 1.0), "--", color="0.2",
                      label=(f"fit S_min(1 + B_noise/B): S_min={t['s_min']:.3g}" if axis is ax else
                             f"fit E_min(1 + B/B_noise): E_min={t['e_min']:.3g}"))
        if ok.any():
            k = int(np.flatnonzero(ok)[0])
            perfect = t["steps"][k] * sizes[k] / grid
            axis.plot(grid, perfect * (grid if axis is ax_e else 1.0), ":", color=plotting.PALETTE[2],
                      label="perfect scaling S ~ 1/B (through the smallest batch)")
        if np.isfinite(t["b_noise"]) and t["b_noise"] > 0:
            axis.axvline(t["b_noise"], color="0.2", linewidth=1.5, alpha=0.6,
                         label=f"fitted B_noise = {t['b_noise']:.3g}")
        for i, name in enumerate(n["checkpoints"]):
            axis.axvline(n["b_simple"][i], color=colors[name], linestyle="-.", linewidth=1.2,
                         label=f"B_simple at GD {name} (loss {n['loss'][i]:.2g}) = {n['b_simple'][i]:.3g}")
        axis.set(xscale="log", yscale="log", xlabel="batch size B (examples)")
    ax.set(ylabel="steps to target (SGD updates)",
           title=f"steps to training loss {cfg['target_loss']:g}, lr tuned per batch size")
    ax_e.set(ylabel="examples to target (steps x B)", title="examples processed to reach the target")
    ax.legend(fontsize=7, loc="lower left")
    if ok.any():
        measured = t["steps"][ok]
        ax.set_ylim(0.5 * measured.min(), 2.0 * measured.max())
        ax_e.set_ylim(0.5 * t["examples"][ok].min(), 2.0 * t["examples"][ok].max())
    handles, labels = ax_e.get_legend_handles_labels()
    keep = [i for i, label in enumerate(labels) if label.startswith(("fit", "perfect"))]
    ax_e.legend([handles[i] for i in keep], [labels[i] for i in keep], fontsize=7, loc="upper left")
    ax_e.set_xlim(ax.get_xlim())
    fig.suptitle(f"SGD on MLP 64-{cfg['hidden']}-10 (digits, {cfg['train_size']} training images): perfect scaling "
                 f"below B_noise, diminishing returns above")
    paths += plotting.save(fig, outdir, "batch_size_steps")

    # 2. gradient noise vs batch size with the finite-population formula.
    fig, (ax, ax_r) = plotting.figure(2, width=5.0, height=3.9)
    nb = n["batch_sizes"].astype(np.float64)
    partial = nb < n["n"]
    fine = np.geomspace(1, n["n"] - 1, 300)
    for i, name in enumerate(n["checkpoints"]):
        color = colors[name]
        ax.errorbar(nb[partial], n["measured"][i, partial], yerr=2 * n["stderr"][i, partial], fmt="o", color=color,
                    markersize=4, capsize=2, label=f"GD {name} (loss {n['loss'][i]:.2g}): measured, 2 s.e.")
        ax.plot(fine, finite_population_noise(n["trace_sigma"][i], fine, n["n"]), "--", color=color, linewidth=1)
        ax.axhline(n["grad_sq"][i], color=color, linestyle=":", linewidth=1)
        ratio = n["measured"][i, partial] / n["predicted"][i, partial]
        rel_err = n["stderr"][i, partial] / n["predicted"][i, partial]
        ax_r.errorbar(nb[partial] * (1.0 + 0.06 * (i - 1)), ratio, yerr=2 * rel_err, fmt="o", color=color,
                      markersize=4, capsize=2, label=f"GD {name}")
    ax.plot([], [], "--", color="0.3", label="theory tr(Sigma)/B (N-B)/(N-1)")
    ax.plot([], [], ":", color="0.3", label="signal |G|^2 (crosses the noise near B_simple)")
    full = np.max(np.abs(n["full_batch_noise"]))
    ax.set(xscale="log", yscale="log", xlabel="batch size B (examples)", ylabel="E |g_B - G|^2",
           title=f"mini-batch gradient noise, {n['draws']} batches per size\n(full batch B = N = {n['n']}: "
                 f"measured {full:.1g}, theory 0; not drawn on log axes)")
    ax.legend(fontsize=7, loc="lower left")
    plotting.theory(ax_r, 1.0, orientation="h", label="exact agreement")
    ax_r.set(xscale="log", xlabel="batch size B (examples)", ylabel="measured / predicted",
             title=f"ratio to the finite-population formula\nmax relative error {n['max_relative_error']:.3f}, "
                   f"max |z| = {n['max_z']:.2f}")
    ax_r.legend(fontsize=8)
    paths += plotting.save(fig, outdir, "batch_size_gradient_noise")

    # 3. generalisation gap and sharpness at the target.
    fig, (ax, ax_s) = plotting.figure(2, width=4.6, height=3.7)
    have = np.any(np.isfinite(t["gap"]), axis=1)
    if have.any():
        plotting.median_band(ax, sizes[have], t["gap"][have], axis=1, marker="o",
                             label=f"median, IQR over {cfg['seeds']} seeds")
    measured = np.any(np.isfinite(g["sharpness"]), axis=1)
    if measured.any():
        sb = g["batch_sizes"][measured].astype(np.float64)
        plotting.median_band(ax_s, sb, g["sharpness"][measured], axis=1, marker="o",
                             label=f"top Hessian eigenvalue ({cfg['sharpness_iters']} Lanczos steps)")
        ax_s.plot(sb, 2.0 / g["lr"][measured], "--", color="0.2", marker="x", label="2 / tuned lr (GD stability limit)")
    ax.set(xscale="log", xlabel="batch size B (examples)", ylabel="held-out - training cross-entropy",
           title="generalisation gap at the target loss")
    ax.set_ylim(bottom=0.0)
    ax.legend(fontsize=8)
    ax_s.set(xscale="log", yscale="log", xlabel="batch size B (examples)",
             ylabel="sharpness (top Hessian eigenvalue)", title="sharpness of the training loss at the target")
    ax_s.legend(fontsize=8)
    fig.suptitle(f"each batch size at its tuned rate, when its training loss first reaches {cfg['target_loss']:g}")
    paths += plotting.save(fig, outdir, "batch_size_gap_sharpness")

    # 4. tuning curves and the tuned rate.
    fig, (ax, ax_l) = plotting.figure(2, width=4.8, height=3.8)
    lrs = t["learning_rates"]
    for i, b in enumerate(t["batch_sizes"]):
        color = plotting.PALETTE[i % len(plotting.PALETTE)]
        ax.plot(lrs, np.where(np.isfinite(t["median_steps"][i]), t["median_steps"][i], np.nan), "o-",
                color=color, markersize=3, label=f"B = {b}")
        if ok[i]:
            ax.plot(lrs[t["best_index"][i]], t["steps"][i], "*", color=color, markersize=10)
    ax.set(xscale="log", yscale="log", xlabel="learning rate", ylabel="median steps to target",
           title="tuning curves (star: tuned rate; gaps: target not reached)")
    ax.legend(fontsize=7, ncol=2)
    ax_l.plot(sizes[ok], t["tuned_lr"][ok], "o-", label="tuned lr")
    if ok.any():
        k = int(np.flatnonzero(ok)[0])
        ax_l.plot(grid, t["tuned_lr"][k] * grid / sizes[k], ":", color=plotting.PALETTE[2],
                  label="linear scaling lr ~ B")
        ax_l.plot(grid, t["tuned_lr"][k] * np.sqrt(grid / sizes[k]), "-.", color=plotting.PALETTE[4],
                  label="square-root scaling lr ~ sqrt(B)")
    sharp_full = g["sharpness"][-1] if len(g["batch_sizes"]) else np.array([np.nan])
    if np.any(np.isfinite(sharp_full)):
        limit = 2.0 / float(np.nanmedian(sharp_full))
        plotting.theory(ax_l, limit, orientation="h",
                        label=f"2 / sharpness at the target, B = {g['batch_sizes'][-1]}: {limit:.3g}")
    for edge in (lrs[0], lrs[-1]):
        ax_l.axhline(edge, color="0.7", linewidth=0.8)
    ax_l.set(xscale="log", yscale="log", xlabel="batch size B (examples)", ylabel="tuned learning rate",
             title="tuned rate (grey: ends of the grid)", ylim=(lrs[0] / 1.5, lrs[-1] * 1.5))
    ax_l.legend(fontsize=8)
    paths += plotting.save(fig, outdir, "batch_size_learning_rate")
    return [Path(p) for p in paths]
