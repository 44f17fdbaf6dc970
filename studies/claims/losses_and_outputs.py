"""Claims about losses, outputs and what a network can represent: L1 vs L2 under outliers,
cross-entropy vs MSE, the softmax + cross-entropy gradient, one-hot labels, backprop as the
chain rule, XOR, networks without activations, and width vs approximation error."""
from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lab import backprop, data, losses, nets, optim, plotting
from lab.sweep import Problem, Study, SweepSpec, run_sweep
from studies.claims.base import FAILS, HOLDS, Claim, Verdict, graded, ratio_verdict
from studies import common
from studies.claims._common import fit, key

# --- L1 vs L2 with outliers ---------------------------------------------------------------------

def run_l1_l2(config, store) -> dict:
    x, y, w, b, outlier = data.linear_regression(key(3), 200, noise=0.1, outlier_fraction=0.1, outlier_scale=10.0)
    out = {"x": np.asarray(x[:, 0]).tolist(), "y": np.asarray(y[:, 0]).tolist(), "outlier": np.asarray(outlier).tolist(),
           "true": [float(w[0, 0]), float(b[0])]}
    for name, loss in (("l1", losses.mae), ("l2", losses.mse)):
        p0 = {"w": jnp.zeros((1, 1), jnp.float32), "b": jnp.zeros((1,), jnp.float32)}
        p, _ = fit(lambda p, loss=loss: loss(x @ p["w"] + p["b"][None, :], y), p0, optim.adam(0.05), max(config.steps, 300))
        out[name] = [float(p["w"][0, 0]), float(p["b"][0])]
        out[f"{name}_error"] = float(np.hypot(out[name][0] - out["true"][0], out[name][1] - out["true"][1]))
    return out


def verdict_l1_l2(m) -> Verdict:
    return ratio_verdict("parameter error L1/L2", m["l1_error"], m["l2_error"], below=0.5)


def plot_l1_l2(m):
    fig, ax = plotting.figure(width=5)
    x, y, o = np.array(m["x"]), np.array(m["y"]), np.array(m["outlier"], bool)
    ax.scatter(x[~o], y[~o], s=8, color="0.5", label="data")
    ax.scatter(x[o], y[o], s=14, color="C3", marker="x", label="outliers (10%)")
    grid = np.linspace(x.min(), x.max(), 2)
    for name, style in (("true", "k--"), ("l1", "C0-"), ("l2", "C1-")):
        ax.plot(grid, m[name][0] * grid + m[name][1], style, label={"true": "true line", "l1": "L1 (MAE) fit", "l2": "L2 (MSE) fit"}[name])
    ax.set(xlabel="x", ylabel="y", title="linear fit with gross outliers")
    ax.legend()
    return fig


# --- cross-entropy vs MSE on a saturated sigmoid ------------------------------------------------

def run_ce_mse(config, store) -> dict:
    z = jnp.linspace(-10.0, 10.0, 81)           # logit of the true class (label 1)
    ce = jax.vmap(jax.grad(lambda t: losses.binary_cross_entropy_with_logits(t[None], jnp.ones((1,), t.dtype))))(z)
    mse = jax.vmap(jax.grad(lambda t: losses.mse(jax.nn.sigmoid(t)[None], jnp.ones((1,), t.dtype))))(z)
    i = int(jnp.argmin(jnp.abs(z + 8.0)))
    return {"z": np.asarray(z).tolist(), "ce": np.abs(np.asarray(ce)).tolist(), "mse": np.abs(np.asarray(mse)).tolist(),
            "ratio_at_minus8": float(abs(ce[i]) / abs(mse[i]))}


def verdict_ce_mse(m) -> Verdict:
    r = m["ratio_at_minus8"]
    return Verdict(HOLDS if r > 100 else FAILS, f"|dCE/dz| / |dMSE/dz| {r:.3g} at a confidently wrong logit z = -8")


def plot_ce_mse(m):
    fig, ax = plotting.figure(width=5)
    ax.semilogy(m["z"], m["ce"], label="cross-entropy")
    ax.semilogy(m["z"], m["mse"], label="MSE on sigmoid output")
    ax.set(xlabel="logit of the true class (label 1)", ylabel="|gradient w.r.t. logit|",
           title="wrong and confident: CE still pushes, MSE stalls")
    ax.legend()
    return fig


# --- softmax + CE gradient, one-hot, backprop ---------------------------------------------------

def run_softmax_grad(config, store) -> dict:
    logits = jax.random.normal(key(4), (64, 10)) * 3.0
    labels = jax.random.randint(key(5), (64,), 0, 10)
    y = data.one_hot(labels, 10, dtype=logits.dtype)
    auto = jax.grad(lambda z: losses.softmax_cross_entropy(z, y))(logits)
    formula = (jax.nn.softmax(logits) - y) / logits.shape[0]
    return {"max_abs_diff": float(jnp.max(jnp.abs(auto - formula))), "max_abs_grad": float(jnp.max(jnp.abs(auto))),
            "auto": np.asarray(auto[:4]).tolist(), "formula": np.asarray(formula[:4]).tolist()}


def verdict_softmax_grad(m) -> Verdict:
    rel = m["max_abs_diff"] / m["max_abs_grad"]
    return Verdict(HOLDS if rel < 1e-5 else FAILS, f"max |autodiff - (softmax - onehot)/B| relative {rel:.2g}")


def plot_softmax_grad(m):
    fig, axes = plotting.figure(2, width=3.6)
    for ax, name in zip(axes, ("auto", "formula")):
        ax.imshow(np.array(m[name]), cmap="coolwarm", vmin=-0.02, vmax=0.02)
        ax.set(title={"auto": "autodiff dL/dz", "formula": "(softmax(z) - y) / B"}[name], xlabel="class", ylabel="example")
        ax.grid(False)
    return fig


def run_one_hot(config, store) -> dict:
    labels = jnp.array([0, 3, 9, 3, 1])
    logits = jax.random.normal(key(6), (5, 10))
    y = data.one_hot(labels, 10, dtype=logits.dtype)
    a = losses.softmax_cross_entropy(logits, y)
    b = losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    return {"row_sums": np.asarray(jnp.sum(y, axis=1)).tolist(), "argmax_equals_label": bool(jnp.all(jnp.argmax(y, 1) == labels)),
            "values": sorted(set(np.asarray(y).ravel().tolist())), "ce_diff": float(jnp.abs(a - b)), "matrix": np.asarray(y).tolist()}


def verdict_one_hot(m) -> Verdict:
    ok = all(s == 1 for s in m["row_sums"]) and m["argmax_equals_label"] and m["values"] == [0.0, 1.0] and m["ce_diff"] < 1e-6
    return Verdict(HOLDS if ok else FAILS, f"rows sum to 1, entries in {{0,1}}; CE(one-hot) - CE(labels) = {m['ce_diff']:.1g}")


def plot_one_hot(m):
    fig, ax = plotting.figure(width=5, height=2.4)
    ax.imshow(np.array(m["matrix"]), cmap="Greys")
    ax.set(xlabel="class", ylabel="example", title="one_hot([0, 3, 9, 3, 1], 10)")
    ax.grid(False)
    return fig


def run_backprop(config, store) -> dict:
    x, labels = data.load_digits()
    x, y = x[:128], data.one_hot(labels[:128], 10)
    params = backprop.init_mlp_params(key(7), [64, 32, 32, 10], dtype=jnp.float32)
    _, grads, _, _ = backprop.gradients(params, x, y, "tanh", "softmax_cross_entropy")

    def loss(ps):
        a = x
        for layer in ps[:-1]:
            a = jnp.tanh(a @ layer["W"].T + layer["b"][None, :])
        return losses.softmax_cross_entropy(a @ ps[-1]["W"].T + ps[-1]["b"][None, :], y)
    auto = jax.grad(loss)(params)
    rel = [float(jnp.linalg.norm(g["W"] - a["W"]) / jnp.linalg.norm(a["W"])) for g, a in zip(grads, auto)]
    return {"relative_error": rel, "norms": [float(jnp.linalg.norm(a["W"])) for a in auto]}


def verdict_backprop(m) -> Verdict:
    worst = max(m["relative_error"])
    return Verdict(HOLDS if worst < 1e-5 else FAILS, f"worst layer relative difference, chain rule vs autodiff {worst:.2g}")


def plot_backprop(m):
    fig, ax = plotting.figure(width=5)
    layers = np.arange(1, len(m["relative_error"]) + 1)
    ax.bar(layers, np.maximum(m["relative_error"], 1e-17))
    ax.set(yscale="log", xlabel="layer", ylabel="||hand-written - autodiff|| / ||autodiff||",
           title="backprop by the chain rule = jax.grad", xticks=layers)
    return fig


# --- XOR and linear models ----------------------------------------------------------------------

def _grid():
    g = np.linspace(-0.5, 1.5, 81, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)
    return g, jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1))


def run_xor(config, store) -> dict:
    x, y = data.xor()
    out = {}
    for name, sizes, act in (("linear", [2], "identity"), ("deep_linear", [8, 8, 2], "identity"), ("mlp", [8, 2], "tanh")):
        accs, best = [], None
        for s in range(config.seeds):
            net = nets.mlp(sizes, activation=act)
            p = net.init(key(s), (-1, 2))[1]
            p, _ = fit(lambda p, net=net: losses.softmax_cross_entropy_with_integer_labels(net.apply(p, x), y), p, optim.adam(0.05), max(config.steps, 300))
            accs.append(float(jnp.mean(jnp.argmax(net.apply(p, x), 1).astype(y.dtype) == y)))
            if best is None or accs[-1] > best[0]:
                best = (accs[-1], p, net)
        g, pts = _grid()
        out[name] = {"accuracy": accs, "surface": np.asarray(jax.nn.softmax(best[2].apply(best[1], pts))[:, 1]).reshape(81, 81).tolist()}
    out["grid"] = g.tolist()
    return out


def verdict_xor(m) -> Verdict:
    lin, deep, mlp = (max(m[k]["accuracy"]) for k in ("linear", "deep_linear", "mlp"))
    key_text = f"best accuracy: linear {lin:.2f}, 3-layer linear {deep:.2f}, tanh MLP {mlp:.2f}"
    return Verdict(HOLDS if lin <= 0.75 and deep <= 0.75 and mlp == 1.0 else FAILS, key_text)


def plot_xor(m):
    fig, axes = plotting.figure(3, width=3.2, height=3.0)
    x, y = data.xor()
    for ax, name in zip(axes, ("linear", "deep_linear", "mlp")):
        g = m["grid"]
        ax.imshow(np.array(m[name]["surface"]), origin="lower", extent=(g[0], g[-1], g[0], g[-1]), cmap="coolwarm",
                  vmin=0, vmax=1, alpha=0.7)                          # P(class 1); the boundary is where it crosses 0.5
        ax.scatter(x[:, 0], x[:, 1], c=np.asarray(y), cmap="coolwarm", edgecolors="k", s=60)
        ax.set(title=f"{name.replace('_', ' ')}: acc {max(m[name]['accuracy']):.2f}", xlabel="x1", ylabel="x2")
        ax.grid(False)
    return fig


def run_linear_collapse(config, store) -> dict:
    net = nets.mlp([16, 16, 16, 1], activation="identity")
    p = net.init(key(8), (-1, 3))[1]
    x = jax.random.normal(key(9), (100, 3), jnp.float32)
    w, b = jnp.eye(3, dtype=jnp.float32), jnp.zeros((3,), jnp.float32)
    for layer in p:
        if layer:
            w, b = w @ layer["w"], b @ layer["w"] + layer["b"]
    deep, single = net.apply(p, x), x @ w + b[None, :]
    return {"max_abs_diff": float(jnp.max(jnp.abs(deep - single))), "scale": float(jnp.max(jnp.abs(deep))),
            "deep": np.asarray(deep[:, 0]).tolist(), "single": np.asarray(single[:, 0]).tolist()}


def verdict_linear_collapse(m) -> Verdict:
    rel = m["max_abs_diff"] / m["scale"]
    return Verdict(HOLDS if rel < 1e-5 else FAILS, f"4-layer linear net vs its collapsed single layer: relative difference {rel:.2g}")


def plot_linear_collapse(m):
    fig, ax = plotting.figure(width=4.2)
    ax.scatter(m["single"], m["deep"], s=10)
    ax.set(xlabel="x W + b (one layer, W = W1 W2 W3 W4)", ylabel="4-layer net without activations",
           title="stacked linear layers are one linear map")
    return fig


# --- width vs approximation error, through the sweep engine -------------------------------------

SINE_N, SINE_FN, SINE_RANGE, SINE_ACTIVATION = 256, jnp.sin, (-math.pi, math.pi), "tanh"   # grid points of fn on the range


def _sine_problem(static):
    x, y = data.function_1d(key(0), SINE_N, fn=SINE_FN, low=SINE_RANGE[0], high=SINE_RANGE[1], grid=True)
    net = nets.mlp([static["width"], 1], activation=SINE_ACTIVATION)
    return Problem(init_params=lambda k: net.init(k, (-1, 1))[1], loss=lambda p, xb, yb, k: losses.mse(net.apply(p, xb), yb),
                   x=np.asarray(x), y=np.asarray(y))


WIDTH_STUDY = Study("claims_width_sine", _sine_problem, lambda c: optim.adam(c["learning_rate"]),
                    hyperparameters={"learning_rate": 0.01}, static={"batch_size": 256, "width": 8},
                    description=common.describe(data=data.function_1d, examples=SINE_N, fn=SINE_FN, range=SINE_RANGE, grid=True,
                                                net=nets.mlp, sizes=(1, "width", 1), activation=SINE_ACTIVATION,
                                                loss=losses.mse))
WIDTHS = (1, 2, 4, 8, 32)


def run_width(config, store) -> dict:
    every = max(config.steps // 2, 1)  # full batch and tiny nets: 5x the base steps
    spec = SweepSpec(WIDTH_STUDY, {"width": list(WIDTHS)}, seeds=config.seeds, steps=10 * every, eval_every=every, chunk_steps=10 * every)
    res = run_sweep(spec, store=store, progress=False)
    final = res.final["eval_loss"] if "eval_loss" in res.final else res.final["train_loss"]
    return {"widths": list(WIDTHS), "final": np.asarray(final).tolist(), "median": np.median(final, axis=1).tolist()}


def verdict_width(m) -> Verdict:
    med = m["median"]
    ratio = med[-1] / med[0]
    monotone = all(b <= a * 1.05 for a, b in itertools.pairwise(med))
    key_text = f"MSE width {m['widths'][-1]} / width 1 = {ratio:.2g}"
    return graded(key_text, holds=ratio < 1e-2 and monotone, core=ratio < 1e-2,
                  caveat="the error falls with width overall, but not at every step of the grid")


def plot_width(m):
    fig, ax = plotting.figure(width=5)
    plotting.median_band(ax, m["widths"], np.array(m["final"]), axis=1, marker="o")
    ax.set(xscale="log", yscale="log", xlabel="hidden width", ylabel="final MSE", title="one tanh hidden layer fitting sin(x)")
    return fig


CLAIMS = (
    Claim("l1_robust_to_outliers", "003", "losses",
          "L1 (absolute) loss is robust to outliers, while L2 (squared) loss lets a few large errors pull the fit away.",
          "linear regression, 200 points, 10% gross outliers; holds if the L1 fit's parameter error is < 0.5x the L2 fit's.",
          run_l1_l2, verdict_l1_l2, plot_l1_l2),
    Claim("ce_beats_mse_gradient", "002", "losses",
          "For classification, cross-entropy gives a useful gradient where MSE on a sigmoid output saturates.",
          "a single logit for label 1; holds if |dCE/dz| > 100x |dMSE(sigmoid)/dz| at z = -8 (confidently wrong).",
          run_ce_mse, verdict_ce_mse, plot_ce_mse),
    Claim("softmax_ce_gradient", "004", "losses",
          "The gradient of softmax cross-entropy with respect to the logits is the prediction minus the one-hot target.",
          "64 random examples; holds if autodiff matches (softmax(z) - y)/B to relative 1e-5.",
          run_softmax_grad, verdict_softmax_grad, plot_softmax_grad),
    Claim("one_hot_encoding", "000", "definitions",
          "One-hot encoding turns a class label into a 0/1 vector with a single 1 at the label's index (definition: lab.data.one_hot).",
          "holds if every row sums to 1, entries are 0/1, the argmax is the label, and CE on one-hot rows equals CE on the labels.",
          run_one_hot, verdict_one_hot, plot_one_hot),
    Claim("backprop_is_chain_rule", "001", "backprop",
          "Backpropagation is the chain rule applied layer by layer from the output back to the input.",
          "lab.backprop's hand-written deltas on a 64-32-32-10 tanh net vs jax.grad; holds if every layer agrees to relative 1e-5.",
          run_backprop, verdict_backprop, plot_backprop),
    Claim("xor_needs_hidden_layer", "003", "representation",
          "No linear model separates XOR; one hidden layer with a non-linearity does.",
          "Adam on the four XOR points, best of the seeds; holds if linear and 3-layer linear models reach <= 75% and a tanh MLP 100%.",
          run_xor, verdict_xor, plot_xor),
    Claim("no_activation_is_linear", "000", "representation",
          "Without activation functions, a stack of layers is just one linear model.",
          "a 4-layer identity-activation net vs the product of its weight matrices; holds if outputs agree to relative 1e-5.",
          run_linear_collapse, verdict_linear_collapse, plot_linear_collapse),
    Claim("width_approximates", "003", "representation",
          "A wide enough hidden layer approximates any (continuous) function: error falls as width grows.",
          "tanh nets 1-w-1 fit sin(x), Adam, a sweep over w in 1..32 x seeds; holds if median MSE at w=32 is < 1e-2x that at w=1 "
          "and never rises by > 5% with width; caveat if only the first.",
          run_width, verdict_width, plot_width),
)
