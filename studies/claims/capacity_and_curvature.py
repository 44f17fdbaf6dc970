"""Claims about architecture and curvature: a convolution shares its weights across
positions, more parameters fit more (random labels), and Newton's method converges in a
few steps near the optimum at the price of a Hessian."""
from __future__ import annotations

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from lab import losses, nets, optim, plotting
from lab.sweep import Problem, Study, SweepSpec, run_sweep
from studies.claims.base import FAILS, HOLDS, Claim, Verdict
from studies import common
from studies.claims._common import DIGIT_FEATURES, digits_subset, key

# --- a convolution shares weights ---------------------------------------------------------------

def run_cnn_sharing(config, store) -> dict:
    conv = nets.Conv2D(16, 3)
    _, p = conv.init(key(0), (-1, 8, 8, 8))
    x = jax.random.normal(key(1), (1, 8, 8, 8), jnp.float32)
    shifted = jnp.roll(x, 1, axis=2)                             # move the image one pixel right
    y, y_shifted = conv.apply(p, x), conv.apply(p, shifted)
    interior = jnp.abs(jnp.roll(y, 1, axis=2)[:, 1:-1, 2:-1] - y_shifted[:, 1:-1, 2:-1])   # away from the borders
    dense_params = (8 * 8 * 8) * (8 * 8 * 16) + 8 * 8 * 16     # a Dense layer with the same input and output sizes
    return {"conv_params": nets.param_count(p), "dense_params": dense_params,
            "equivariance_error": float(jnp.max(interior) / jnp.max(jnp.abs(y)))}


def verdict_cnn_sharing(m) -> Verdict:
    ratio = m["conv_params"] / m["dense_params"]
    key_text = (f"conv 3x3, 8->16 channels on 8x8: {m['conv_params']:,} params vs {m['dense_params']:,} for the same map as a "
                f"Dense layer ({ratio:.2g}x); shift error {m['equivariance_error']:.1g}")
    return Verdict(HOLDS if ratio < 0.01 and m["equivariance_error"] < 1e-5 else FAILS, key_text)


def plot_cnn_sharing(m):
    fig, ax = plotting.figure(width=4.5)
    ax.bar(["Conv2D 3x3", "Dense, same shapes"], [m["conv_params"], m["dense_params"]], color=["C0", "C1"])
    ax.set(yscale="log", ylabel="parameters", title="8x8x8 -> 8x8x16")
    return fig


# --- more parameters fit more: random labels, through the sweep engine -------------------------

CAPACITY_N, CAPACITY_LABEL_SEED, CAPACITY_ACTIVATION = 256, 0, "relu"   # the first digits, their labels' generator


def _uniform_labels(n: int) -> np.ndarray:
    """``n`` labels drawn uniformly from the digit classes, independent of the images."""
    return np.random.RandomState(CAPACITY_LABEL_SEED).randint(0, common.DIGITS_CLASSES, size=n).astype(np.int32)


def _random_labels(static):
    x, _, _, _ = digits_subset(CAPACITY_N)
    y = _uniform_labels(CAPACITY_N)
    net = nets.mlp([static["width"], common.DIGITS_CLASSES], activation=CAPACITY_ACTIVATION)
    accuracy = lambda p, xe, ye: {"accuracy": jnp.mean((jnp.argmax(net.apply(p, xe), 1).astype(ye.dtype) == ye).astype(jnp.float32))}
    return Problem(init_params=lambda k: net.init(k, (-1, DIGIT_FEATURES))[1],
                   loss=lambda p, xb, yb, k: losses.softmax_cross_entropy_with_integer_labels(net.apply(p, xb), yb),
                   x=np.asarray(x), y=y, evaluate=accuracy, eval_x=np.asarray(x), eval_y=y)


CAPACITY_STUDY = Study("claims_capacity_random_labels", _random_labels, lambda c: optim.adam(c["learning_rate"]),
                       hyperparameters={"learning_rate": 1e-2}, static={"batch_size": 256, "width": 16},
                       description=common.describe(data=digits_subset, examples=CAPACITY_N, labels=_uniform_labels,
                                                   label_seed=CAPACITY_LABEL_SEED, net=nets.mlp,
                                                   sizes=(DIGIT_FEATURES, "width", common.DIGITS_CLASSES),
                                                   activation=CAPACITY_ACTIVATION,
                                                   loss=losses.softmax_cross_entropy_with_integer_labels))
WIDTHS = (2, 8, 32, 128)


def run_capacity(config, store) -> dict:
    every = max(config.steps // 5, 1)
    spec = SweepSpec(CAPACITY_STUDY, {"width": list(WIDTHS)}, seeds=config.seeds, steps=20 * every, eval_every=4 * every,
                     chunk_steps=20 * every)
    res = run_sweep(spec, store=store, progress=False)
    params = [64 * w + w + 10 * w + 10 for w in WIDTHS]
    return {"widths": list(WIDTHS), "params": params, "accuracy": res.final["eval_accuracy"].tolist(),
            "median": np.median(res.final["eval_accuracy"], axis=1).tolist(), "steps": int(res.eval_steps[-1])}


def verdict_capacity(m) -> Verdict:
    med = m["median"]
    key_text = f"train accuracy on random labels: {m['params'][0]} params {med[0]:.2f} -> {m['params'][-1]:,} params {med[-1]:.2f}"
    rising = all(b >= a - 0.02 for a, b in itertools.pairwise(med))
    return Verdict(HOLDS if rising and med[-1] > 0.9 and med[0] < 0.5 else FAILS, key_text)


def plot_capacity(m):
    fig, ax = plotting.figure(width=5)
    plotting.median_band(ax, m["params"], np.array(m["accuracy"]), axis=1, marker="o")
    plotting.theory(ax, 0.1, orientation="h", label="chance")
    ax.set(xscale="log", xlabel="parameters", ylabel="training accuracy", ylim=(0, 1.05),
           title=f"memorising 256 random labels ({m['steps']} Adam steps)")
    ax.legend()
    return fig


# --- Newton near the optimum, and its cost ------------------------------------------------------

def run_newton(config, store) -> dict:
    x, y, _, _ = digits_subset(512)
    params = {"w": jnp.zeros((64, 10), jnp.float32), "b": jnp.zeros((10,), jnp.float32)}
    value = lambda p: losses.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"][None, :], y) + losses.l2_penalty(p, 1e-2)
    grad = jax.jit(jax.grad(value))
    norm = lambda g: float(jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(g))))
    out = {"params": 650}
    for name, opt, steps, extra in (("newton", optim.newton(1.0), 10, {"value_fn": value}), ("gd", optim.sgd(1.0), 200, {})):
        step = jax.jit(lambda p, s, opt=opt, extra=extra: opt.update(grad(p), s, p, **extra))
        p, s = params, opt.init(params)
        jax.block_until_ready(step(p, s))                          # compile before timing
        norms, started = [norm(grad(p))], time.perf_counter()
        for _ in range(steps):
            u, s = step(p, s)
            p = optim.apply_updates(p, u)
            norms.append(norm(grad(p)))
        out[name] = {"grad_norms": norms, "seconds_per_step": (time.perf_counter() - started) / steps}
    return out


def verdict_newton(m) -> Verdict:
    n, g = np.array(m["newton"]["grad_norms"]), np.array(m["gd"]["grad_norms"])
    newton_steps = int(np.argmax(n < 1e-4 * n[0])) if np.any(n < 1e-4 * n[0]) else None
    cost = m["newton"]["seconds_per_step"] / m["gd"]["seconds_per_step"]
    key_text = (f"gradient down 1e4x: Newton in {newton_steps} steps, GD after {len(g) - 1} steps only {g[0] / g[-1]:.3g}x; "
                f"a Newton step costs {cost:.0f}x a GD step ({m['params']} params)")
    ok = newton_steps is not None and newton_steps <= 10 and g[-1] > 1e-4 * g[0] and cost > 5
    return Verdict(HOLDS if ok else FAILS, key_text)


def plot_newton(m):
    fig, ax = plotting.figure(width=5)
    ax.semilogy(m["newton"]["grad_norms"], marker="o", label="Newton (lr 1)")
    ax.semilogy(m["gd"]["grad_norms"], label="gradient descent (lr 1)")
    ax.set(xscale="symlog", xlabel="step", ylabel="gradient norm",
           title="L2-regularised softmax regression on digits (650 params)")
    ax.legend()
    return fig


CLAIMS = (
    Claim("cnn_shares_parameters", "001", "architectures",
          "A convolutional layer reuses the same small kernel at every position, so it needs far fewer parameters than a "
          "dense layer and responds to a shifted input with a shifted output.",
          "Conv2D(16, 3x3) on 8x8x8 inputs; holds if it has < 1% of the parameters of a Dense map between the same shapes "
          "and shifting the input shifts the interior output to relative 1e-5.",
          run_cnn_sharing, verdict_cnn_sharing, plot_cnn_sharing),
    Claim("parameters_add_capacity", "003", "capacity",
          "Increasing the number of parameters lets a network do more: here, memorise more arbitrary labels.",
          "MLP 64-w-10 on 256 digits with random labels, full-batch Adam, a sweep over w in 2..128 x seeds; holds if training "
          "accuracy never falls with width, the widest net exceeds 90% and the narrowest stays below 50%.",
          run_capacity, verdict_capacity, plot_capacity),
    Claim("newton_fast_but_costly", "002", "second-order methods",
          "Using the Hessian (Newton's method) converges in very few steps near the optimum, but each step is expensive.",
          "softmax regression on 512 digits with L2 1e-2 (strictly convex), from zero; holds if Newton cuts the gradient "
          "norm 1e4-fold within 10 steps, GD (lr 1) has not after 200, and a Newton step costs > 5 GD steps in wall time.",
          run_newton, verdict_newton, plot_newton),
)
