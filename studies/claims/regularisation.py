"""Claims about regularisation and depth: dropout (standard vs inverted, train/test gap),
L2, overfitting with epochs, weight initialisation, batch norm and skip connections."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lab import init as initializers
from lab import losses, nets, optim, plotting
from lab.sweep import Study, SweepSpec, run_sweep
from studies.claims.base import CAVEAT, FAILS, HOLDS, Claim, Verdict
from studies import common
from studies.claims._common import (DIGIT_FEATURES, SMALL_TEST, SMALL_TRAIN, ce, dense_grad_norms, digits_facts,
                                   digits_subset, key, small_digits)

# --- dropout keeps the expectation, in both conventions ----------------------------------------

def run_dropout_expectation(config, store) -> dict:
    x = jax.random.uniform(key(1), (1, 200), jnp.float32, minval=0.5, maxval=1.5)
    out = {"masks": 4000}
    for mode in ("standard", "inverted"):
        layer = nets.Dropout(0.5, mode)
        keys = jax.random.split(key(2), out["masks"])
        train = jax.vmap(lambda k, layer=layer: layer.apply((), x, key=k, train=True))(keys)[:, 0]      # (masks, 200)
        test = layer.apply((), x, train=False)[0]
        running = jnp.cumsum(train, axis=0) / jnp.arange(1, out["masks"] + 1, dtype=train.dtype)[:, None]
        rel = jnp.linalg.norm(running - test[None], axis=1) / jnp.linalg.norm(test)
        out[mode] = {"relative_error": np.asarray(rel).tolist(), "final": float(rel[-1]),
                     "test_over_input": float(jnp.mean(test / x[0]))}
    return out


def verdict_dropout_expectation(m) -> Verdict:
    s, i = m["standard"]["final"], m["inverted"]["final"]
    key_text = (f"|mean train output - test output| / |test output| over {m['masks']} masks: standard {s:.2g}, inverted {i:.2g}; "
                f"test-time scale standard {m['standard']['test_over_input']:.2f}, inverted {m['inverted']['test_over_input']:.2f}")
    return Verdict(HOLDS if s < 0.02 and i < 0.02 else FAILS, key_text)


def plot_dropout_expectation(m):
    fig, ax = plotting.figure(width=5)
    n = np.arange(1, m["masks"] + 1)
    for mode in ("standard", "inverted"):
        ax.loglog(n, m[mode]["relative_error"], label=f"{mode} dropout (rate 0.5)")
    ax.loglog(n, 1 / np.sqrt(n), "k--", lw=1, label="1/sqrt(masks)")
    ax.set(xlabel="masks averaged", ylabel="relative distance to test output", title="train-time mean -> test-time output")
    ax.legend()
    return fig


# --- dropout, L2 and epochs on a small data set, one sweep -------------------------------------

REG_SIZES, REG_ACTIVATION = (128, 128, common.DIGITS_CLASSES), "relu"   # nets.mlp's Dense widths
REG_DROPOUT, REG_L2 = 0.5, 1e-2            # the "dropout" arm's rate on the hidden units, the "l2" arm's coefficient


def _small_digits(static):
    reg = static["reg"]
    net = nets.mlp(REG_SIZES, activation=REG_ACTIVATION, dropout=REG_DROPOUT if reg == "dropout" else None)

    def loss(params, xb, yb, k):
        value = losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb, key=k, train=True), yb)
        return value + (losses.l2_penalty(params, REG_L2) if reg == "l2" else 0.0)

    def evaluate(params, xe, ye, x, y):
        test = net.apply(params, xe)
        train = net.apply(params, x)
        return {"test_loss": losses.softmax_cross_entropy_with_integer_labels(test, ye),
                "train_clean_loss": losses.softmax_cross_entropy_with_integer_labels(train, y),
                "weight_norm": jnp.sqrt(sum(jnp.sum(jnp.square(l)) for l in jax.tree_util.tree_leaves(params)))}
    return small_digits(net, loss, evaluate)


REG_STUDY = Study("claims_regularisation", _small_digits, lambda c: optim.adam(c["learning_rate"]),
                  hyperparameters={"learning_rate": 1e-3}, static={"batch_size": 32, "reg": "none"},
                  description=digits_facts(SMALL_TRAIN, SMALL_TEST, net=common.mlp_name((DIGIT_FEATURES, *REG_SIZES), REG_ACTIVATION),
                                           problem=_small_digits, dropout=REG_DROPOUT, l2=REG_L2, penalty=losses.l2_penalty,
                                           loss=losses.softmax_cross_entropy_with_integer_labels))
REGS = ("none", "dropout", "l2")


@functools.cache
def _reg_sweep(steps: int, seeds: int, store: str):
    every = max(steps // 10, 1)
    spec = SweepSpec(REG_STUDY, {"reg": list(REGS)}, seeds=seeds, steps=20 * every, eval_every=2 * every, chunk_steps=20 * every)
    res = run_sweep(spec, store=store, progress=False)
    curves = {name: np.median(res.curves[f"eval_{name}"], axis=1) for name in ("test_loss", "train_clean_loss", "weight_norm")}
    return {"steps": res.eval_steps.tolist(), **{f"{k}_{r}": v[i].tolist() for k, v in curves.items() for i, r in enumerate(REGS)}}


def run_reg(config, store) -> dict:
    return _reg_sweep(config.steps, config.seeds, str(store))


def _gap(m, reg):
    return m[f"test_loss_{reg}"][-1] - m[f"train_clean_loss_{reg}"][-1]


def verdict_dropout_gap(m) -> Verdict:
    g0, g1 = _gap(m, "none"), _gap(m, "dropout")
    return Verdict(HOLDS if g1 < 0.8 * g0 else FAILS, f"final test - train loss: no dropout {g0:.3g}, dropout 0.5 {g1:.3g}")


def verdict_l2(m) -> Verdict:
    g0, g2 = _gap(m, "none"), _gap(m, "l2")
    n0, n2 = m["weight_norm_none"][-1], m["weight_norm_l2"][-1]
    key_text = f"final weight norm {n0:.3g} -> {n2:.3g} with L2 1e-2; test - train loss {g0:.3g} -> {g2:.3g}"
    if n2 < 0.8 * n0 and g2 < 0.8 * g0:
        return Verdict(HOLDS, key_text)
    if n2 < 0.8 * n0:
        return Verdict(CAVEAT, key_text, "L2 shrinks the weights, but the generalisation gap does not fall by 20%")
    return Verdict(FAILS, key_text)


def verdict_overfit(m) -> Verdict:
    test = np.array(m["test_loss_none"])
    best = int(np.argmin(test))
    rise = test[-1] / test[best]
    key_text = f"test loss lowest at step {m['steps'][best]} ({test[best]:.3g}), {rise:.2f}x that at the end; train loss {m['train_clean_loss_none'][-1]:.2g}"
    return Verdict(HOLDS if rise > 1.1 and best < len(test) - 1 else FAILS, key_text)


def plot_reg(m):
    fig, axes = plotting.figure(2, width=4.4)
    for i, reg in enumerate(REGS):
        axes[0].plot(m["steps"], m[f"test_loss_{reg}"], color=f"C{i}", label=f"{reg}: test")
        axes[0].plot(m["steps"], m[f"train_clean_loss_{reg}"], color=f"C{i}", ls=":", label=f"{reg}: train")
        axes[1].plot(m["steps"], m[f"weight_norm_{reg}"], color=f"C{i}", label=reg)
    axes[0].set(yscale="log", xlabel="step", ylabel="cross-entropy", title="128 digits, MLP 128-128 (median of seeds)")
    axes[1].set(xlabel="step", ylabel="weight norm", title="parameter norm")
    axes[0].legend(ncol=2, fontsize=7)
    axes[1].legend()
    return fig


# --- initialisation, batch norm and skip connections vs depth ----------------------------------

DEPTH = 20


def _first_last(seeds, **kwargs):
    x, y, _, _ = digits_subset(256)
    per_seed = []
    for s in range(seeds):
        if kwargs.get("residual"):
            act = kwargs["activation"]
            body = [nets.Dense(32), nets.Activation(act)]
            blocks = [nets.Residual(nets.Dense(32), nets.Activation(act)) for _ in range(DEPTH - 2)]
            net = nets.serial(*body, *blocks, nets.Dense(10))
            p = net.init(key(s), (-1, 64))[1]
            g = jax.grad(ce(net))(p, x, y)
            flat = [l for l in jax.tree_util.tree_leaves(g, is_leaf=lambda t: isinstance(t, dict) and "w" in t) if isinstance(l, dict)]
            norms = [float(jnp.linalg.norm(l["w"])) for l in flat]
        elif kwargs.get("batch_norm"):
            net = nets.mlp([32] * (DEPTH - 1) + [10], activation=kwargs["activation"], batch_norm=True)
            _, p, state = net.init_with_state(key(s), (-1, 64))
            def loss(p, net=net, state=state):
                return losses.softmax_cross_entropy_with_integer_labels(net.apply_with_state(p, state, x, train=True)[0], y)
            norms = dense_grad_norms(jax.grad(loss)(p))
        else:
            net = nets.mlp([32] * (DEPTH - 1) + [10], activation=kwargs["activation"], w_init=kwargs["w_init"])
            norms = dense_grad_norms(jax.grad(ce(net))(net.init(key(s), (-1, 64))[1], x, y))
        per_seed.append(norms)
    return np.median(np.array(per_seed), axis=0).tolist()


def run_init(config, store) -> dict:
    out = {"depth": DEPTH}
    for name, w_init in (("normal_0.01", initializers.normal(0.01)), ("glorot", "glorot_normal")):
        out[name] = _first_last(config.seeds, activation="tanh", w_init=w_init)
    return out


def verdict_init(m) -> Verdict:
    small = m["normal_0.01"][0] / m["glorot"][0]
    glorot = m["glorot"][0] / m["glorot"][-1]
    key_text = (f"tanh depth {m['depth']}: first-layer gradient with N(0, 0.01^2) init / with Glorot {small:.2g}; "
                f"Glorot first/last {glorot:.2g}")
    return Verdict(HOLDS if small < 1e-3 and glorot > 0.1 else FAILS, key_text)


def plot_depth(m):
    fig, ax = plotting.figure(width=5.5)
    for name, norms in m.items():
        if name != "depth":
            ax.semilogy(np.arange(1, len(norms) + 1), np.maximum(norms, 1e-300), marker=".", label=name.replace("_", " "))
    ax.set(xlabel="layer (1 = input side)", ylabel="weight-gradient norm", title=f"depth {m['depth']}, at initialisation")
    ax.legend()
    return fig


def run_bn_skip(config, store) -> dict:
    return {"depth": DEPTH, "sigmoid_plain": _first_last(config.seeds, activation="sigmoid", w_init="glorot_normal"),
            "sigmoid_batch_norm": _first_last(config.seeds, activation="sigmoid", batch_norm=True),
            "sigmoid_residual": _first_last(config.seeds, activation="sigmoid", residual=True)}


def verdict_bn_skip(m) -> Verdict:
    r = {k: m[k][0] / m[k][-1] for k in ("sigmoid_plain", "sigmoid_batch_norm", "sigmoid_residual")}
    key_text = "first/last gradient ratio, sigmoid depth 20: " + ", ".join(f"{k.split('_', 1)[1]} {v:.2g}" for k, v in r.items())
    bn, skip = r["sigmoid_batch_norm"] > 100 * r["sigmoid_plain"], r["sigmoid_residual"] > 100 * r["sigmoid_plain"]
    if bn and skip:
        return Verdict(HOLDS, key_text)
    if bn or skip:
        return Verdict(CAVEAT, key_text, f"only {'batch norm' if bn else 'skip connections'} restores the gradient 100-fold")
    return Verdict(FAILS, key_text)


CLAIMS = (
    Claim("dropout_keeps_expectation", "004", "dropout",
          "Standard dropout (scale by the keep probability at test time) and inverted dropout (scale by 1/p during training) "
          "give the same expected activation, so test-time outputs match training on average.",
          "lab.nets.Dropout(0.5) in both modes on 200 units; holds if the mean over 4000 train-time masks is within 2% of the test output.",
          run_dropout_expectation, verdict_dropout_expectation, plot_dropout_expectation),
    Claim("dropout_reduces_overfitting", "000", "dropout",
          "Dropout reduces overfitting: the gap between test and training loss shrinks.",
          "MLP 64-128-128-10 on 128 digits (256 test), Adam 1e-3, 20x the base steps, a sweep over regulariser x seeds; holds if dropout 0.5 cuts the "
          "final (test - train) cross-entropy gap by >= 20%.",
          run_reg, verdict_dropout_gap, plot_reg),
    Claim("l2_constrains_weights", "001", "regularisation",
          "An L2 penalty on the weights keeps them small and so reduces overfitting.",
          "same sweep with L2 weight 1e-2; holds if the final weight norm and the test-train gap both fall by >= 20%; "
          "caveat if only the weight norm does.",
          run_reg, verdict_l2, plot_reg),
    Claim("overfitting_with_epochs", "000", "overfitting",
          "Trained long enough on little data, a large network fits the noise: training loss keeps falling while test loss turns back up.",
          "the unregularised run of the same sweep; holds if the final test loss is > 1.1x its minimum, reached before the end.",
          run_reg, verdict_overfit, plot_reg),
    Claim("init_scale_vs_depth", "001", "initialisation",
          "Weights initialised too small make gradients vanish in deep nets; a variance-preserving (Glorot) scale keeps them alive.",
          "tanh MLP depth 20 width 32 on digits at initialisation; holds if the first layer's gradient with N(0, 0.01^2) "
          "weights is < 1e-3x that with Glorot normal, and Glorot's first/last gradient ratio is > 0.1.",
          run_init, verdict_init, plot_depth),
    Claim("batchnorm_and_skips_vs_depth", "001", "normalisation",
          "Batch normalisation and skip connections keep gradients flowing through deep networks.",
          "sigmoid MLP depth 20 width 32 on digits at initialisation; holds if both batch norm and residual blocks raise the "
          "first/last gradient ratio 100-fold over the plain net; caveat if only one does.",
          run_bn_skip, verdict_bn_skip, plot_depth),
)
