"""Claims that are definitions about losses, checked against lab.losses: cross-entropy is the
log loss (the negative log of the probability given to the true class), the multi-class
cross-entropy extends the binary one, and a training set's loss is the average of its
examples' losses, so that a random mini-batch's gradient estimates the full gradient
without bias.

Each is a direct computation (no training, no sweep): lab's function against the formula
written out in NumPy float64, with tolerances set by the dtype (float32 in the CLI,
float64 in the tests).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, plotting
from studies.claims.base import FAILS, HOLDS, Claim, Verdict
from studies.claims._common import digits_subset, key


def _tolerance(dtype) -> float:
    """Relative tolerance for a comparison with an exact float64 formula: 1e-5 in float32, 1e-12 in float64."""
    return 1e-12 if jnp.dtype(dtype) == jnp.float64 else 1e-5


# --- cross-entropy = log loss --------------------------------------------------------------------

def run_log_loss(config, store) -> dict:
    dtype = jnp.result_type(float)
    per_example = jax.vmap(lambda z, y: losses.softmax_cross_entropy_with_integer_labels(z[None], y[None]))
    # (a) 10 classes, the true class (0) given probability p, the rest sharing 1 - p
    p = np.geomspace(1e-8, 1 - 1e-6, 60)
    logits = np.concatenate([np.log(p)[:, None], np.repeat(np.log((1 - p) / 9)[:, None], 9, axis=1)], axis=1)
    ce = np.asarray(per_example(jnp.asarray(logits, dtype), jnp.zeros(60, jnp.int32)), np.float64)
    # (b) random logits: lab's mean cross-entropy against -mean log softmax(z)[y] in float64
    z = 5.0 * np.asarray(jax.random.normal(key(100), (1000, 10)), np.float64)
    y = np.asarray(jax.random.randint(key(101), (1000,), 0, 10))
    lse = np.log(np.sum(np.exp(z - z.max(axis=1, keepdims=True)), axis=1)) + z.max(axis=1)
    reference = float(np.mean(lse - z[np.arange(1000), y]))
    mean = float(losses.softmax_cross_entropy_with_integer_labels(jnp.asarray(z, dtype), jnp.asarray(y, jnp.int32)))
    return {"p": p.tolist(), "ce": ce.tolist(), "curve_rel_diff": float(np.max(np.abs(ce + np.log(p)) / np.maximum(-np.log(p), 1.0))),
            "random_rel_diff": abs(mean - reference) / reference, "tolerance": _tolerance(dtype)}


def verdict_log_loss(m) -> Verdict:
    worst = max(m["curve_rel_diff"], m["random_rel_diff"])
    key_text = (f"CE vs -ln p(true class): worst relative difference {worst:.2g}; CE at p = 1e-8 is {m['ce'][0]:.4g} "
                f"(-ln 1e-8 = {-np.log(1e-8):.4g})")
    return Verdict(HOLDS if worst < 10 * m["tolerance"] else FAILS, key_text)


def plot_log_loss(m):
    fig, ax = plotting.figure(width=5)
    p = np.array(m["p"])
    ax.semilogx(p, m["ce"], "o", ms=4, label="lab softmax cross-entropy")
    ax.semilogx(p, -np.log(p), "k--", lw=1.2, label="-ln p")
    ax.set(xlabel="probability given to the true class", ylabel="loss", title="cross-entropy is the log loss (10 classes)")
    ax.legend()
    return fig


# --- multi-class cross-entropy extends the binary one ----------------------------------------------

def run_binary_vs_multiclass(config, store) -> dict:
    dtype = jnp.result_type(float)
    z = jnp.linspace(-12.0, 12.0, 97, dtype=dtype)
    out = {"z": np.asarray(z, np.float64).tolist(), "tolerance": _tolerance(dtype)}
    worst = 0.0
    for label in (0, 1):
        y = jnp.full((1,), label, jnp.int32)
        binary = jax.vmap(lambda zi, y=y: losses.binary_cross_entropy_with_logits(zi[None], y.astype(dtype)))(z)
        two_class = jax.vmap(lambda zi, y=y: losses.softmax_cross_entropy(jnp.stack([jnp.zeros_like(zi), zi])[None],
                                                                           data.one_hot(y, 2, dtype)))(z)
        zz = np.asarray(z, np.float64)
        # the sum over the two classes of -y_c log p_c, p_1 = sigmoid(z), written out stably
        summed = label * np.logaddexp(0.0, -zz) + (1 - label) * np.logaddexp(0.0, zz)
        scale = np.maximum(summed, 1.0)
        worst = max(worst, float(np.max(np.abs(np.asarray(binary) - summed) / scale)),
                    float(np.max(np.abs(np.asarray(two_class) - summed) / scale)))
        out[str(label)] = {"binary": np.asarray(binary, np.float64).tolist(), "two_class": np.asarray(two_class, np.float64).tolist()}
    out["worst"] = worst
    return out


def verdict_binary_vs_multiclass(m) -> Verdict:
    return Verdict(HOLDS if m["worst"] < 10 * m["tolerance"] else FAILS,
                   f"BCE(z, y) vs 2-class softmax CE on logits (0, z) vs sum over classes of -y_c ln p_c: worst relative "
                   f"difference {m['worst']:.2g} over z in [-12, 12]")


def plot_binary_vs_multiclass(m):
    fig, ax = plotting.figure(width=5)
    for label in ("0", "1"):
        ax.plot(m["z"], m[label]["binary"], lw=3, alpha=0.5, label=f"binary CE, y = {label}")
        ax.plot(m["z"], m[label]["two_class"], "k--", lw=1, label="softmax CE on (0, z)" if label == "0" else None)
    ax.set(yscale="log", xlabel="logit z", ylabel="loss", title="binary CE = 2-class cross-entropy")
    ax.legend()
    return fig


# --- the training-set loss is the mean of the examples' losses -------------------------------------

MEAN_BATCH, MEAN_K = 16, 2000


def run_mean_loss(config, store) -> dict:
    x, y, _, _ = digits_subset(512)
    dtype = x.dtype
    params = {"w": 0.1 * jax.random.normal(key(110), (64, 10), dtype), "b": jnp.zeros((10,), dtype)}
    logits = lambda p, xb: xb @ p["w"] + p["b"][None, :]
    onehot = data.one_hot(y, 10, dtype)
    cases = {"softmax CE": lambda p, xb, yb: losses.softmax_cross_entropy_with_integer_labels(logits(p, xb), yb),
             "MSE on one-hot": lambda p, xb, yb: losses.mse(logits(p, xb), onehot[yb]),
             "MAE on one-hot": lambda p, xb, yb: losses.mae(logits(p, xb), onehot[yb])}
    out = {"n": 512, "batch": MEAN_BATCH, "masks": MEAN_K, "loss_rel_diff": {}, "grad_rel_diff": {}}
    @jax.jit
    def per_example(params):
        """Per case: (set loss, per-example losses (512,), set gradient, per-example gradients)."""
        out = {}
        for name, fn in cases.items():
            single = lambda p, xi, yi, fn=fn: fn(p, xi[None], yi[None])
            out[name] = (fn(params, x, y), jax.vmap(single, in_axes=(None, 0, 0))(params, x, y), jax.grad(fn)(params, x, y),
                         jax.vmap(jax.grad(single), in_axes=(None, 0, 0))(params, x, y))
        return out

    computed = per_example(params)
    for name in cases:
        whole, singles, g_whole, g_singles = computed[name]
        g_mean = jax.tree_util.tree_map(lambda g: jnp.mean(g, axis=0), g_singles)
        norm = lambda t: float(jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(t))))
        out["loss_rel_diff"][name] = float(jnp.abs(whole - jnp.mean(singles)) / jnp.abs(whole))
        out["grad_rel_diff"][name] = norm(jax.tree_util.tree_map(jnp.subtract, g_whole, g_mean)) / norm(g_whole)
        if name == "softmax CE":
            # mini-batches of 16 drawn without replacement: their average gradient approaches the full gradient
            flat = lambda t: jnp.concatenate([leaf.reshape(leaf.shape[0], -1) for leaf in jax.tree_util.tree_leaves(t)], axis=1)
            per_ex = np.asarray(flat(g_singles), np.float64)                                  # (512, 650)
            full = per_ex.mean(axis=0)
            idx = jax.jit(jax.vmap(lambda k: jax.random.permutation(k, 512)[:MEAN_BATCH]))(jax.random.split(key(111), MEAN_K))
            batch_grads = per_ex[np.asarray(idx)].mean(axis=1)                                # (K, 650)
            running = np.cumsum(batch_grads, axis=0) / np.arange(1, MEAN_K + 1)[:, None]
            out["batch_error"] = (np.linalg.norm(running - full[None], axis=1) / np.linalg.norm(full)).tolist()
            spread = np.mean(np.sum(np.square(per_ex - full[None]), axis=1))                   # trace of one example's covariance
            variance = spread / MEAN_BATCH * (512 - MEAN_BATCH) / (512 - 1)                    # without replacement
            out["batch_predicted"] = (np.sqrt(variance / np.arange(1, MEAN_K + 1)) / np.linalg.norm(full)).tolist()
    out["tolerance"] = _tolerance(dtype)
    return out


def verdict_mean_loss(m) -> Verdict:
    worst_loss, worst_grad = max(m["loss_rel_diff"].values()), max(m["grad_rel_diff"].values())
    final, predicted = m["batch_error"][-1], m["batch_predicted"][-1]
    key_text = (f"set loss vs mean of per-example losses: worst relative difference {worst_loss:.2g}; gradients {worst_grad:.2g}; "
                f"average of {m['masks']} batch-{m['batch']} gradients off by {final:.2g} (predicted {predicted:.2g})")
    ok = worst_loss < 10 * m["tolerance"] and worst_grad < 100 * m["tolerance"] and 0.5 * predicted < final < 2 * predicted
    return Verdict(HOLDS if ok else FAILS, key_text)


def plot_mean_loss(m):
    fig, ax = plotting.figure(width=5.5)
    k = np.arange(1, m["masks"] + 1)
    ax.loglog(k, m["batch_error"], label=f"mean of K batch-{m['batch']} gradients (softmax CE)")
    ax.loglog(k, m["batch_predicted"], "k--", lw=1.2, label="predicted sqrt(tr Cov / K) / |g|")
    ax.set(xlabel="mini-batches averaged K", ylabel="relative distance to the full gradient",
           title=f"mini-batch gradients average to the full one (n = {m['n']})")
    ax.legend()
    return fig


CLAIMS = (
    Claim("cross_entropy_is_log_loss", "000", "losses",
          "Cross-entropy (log loss) charges the negative logarithm of the probability the model gives the true class, so a "
          "confident wrong answer costs without bound.",
          "lab's softmax cross-entropy on 10 classes with the true class at p in 1e-8..1, and on 1000 random logit rows; holds "
          "if it equals -ln p (and the float64 log-sum-exp formula) to 10x the dtype's tolerance (1e-5 float32, 1e-12 float64), "
          "relative to max(-ln p, 1).  (A first version divided by -ln p itself, which near p = 1 asks float32 for a "
          "relative accuracy on losses of 1e-6 that it cannot give; it read 0.07 there.)",
          run_log_loss, verdict_log_loss, plot_log_loss),
    Claim("multiclass_ce_extends_binary", "000", "losses",
          "Multi-class cross-entropy extends binary cross-entropy: with two classes, summing -y_c log p_c over the classes "
          "gives back the binary loss.",
          "z in [-12, 12], y in {0, 1}; holds if lab's binary CE with logit z, lab's softmax CE on logits (0, z) with a one-hot "
          "target and the two-class sum written out agree to 10x the dtype's tolerance, relative to max(loss, 1).",
          run_binary_vs_multiclass, verdict_binary_vs_multiclass, plot_binary_vs_multiclass),
    Claim("set_loss_is_mean_of_examples", "000", "losses",
          "The loss of a whole training set is the average of the examples' losses, so its gradient is the average of theirs "
          "and a randomly drawn mini-batch gives an unbiased estimate of it.",
          "linear softmax model on 512 digits; holds if softmax CE, MSE and MAE over the set equal the mean of the 512 "
          "single-example losses (10x the dtype's tolerance), the gradients agree to 100x, and the average of 2000 "
          "batch-16 gradients is within 0.5x..2x of the predicted distance sqrt(tr Cov / K) / |g| from the full gradient.",
          run_mean_loss, verdict_mean_loss, plot_mean_loss),
)
