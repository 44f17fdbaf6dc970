"""Claims about activation functions: vanishing gradients, tanh vs sigmoid, dying ReLU,
the step function, no activation at all, XOR and universal approximation."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, optim, plotting
from lab.sweep import Problem, Study, SweepSpec, classification_metrics, run_sweep
from studies.claims.base import CAVEAT, FAILS, HOLDS, Claim, Verdict, ratio_verdict
from studies.common import DIGITS_CLASSES
from studies.claims._common import DIGIT_FEATURES, ce, dense_grad_norms, digits_facts, digits_subset, fit, key

ACTS = ("sigmoid", "tanh", "relu", "leaky_relu", "gelu", "swish")
DEPTH = 10


# --- per-layer gradient norms vs depth --------------------------------------------------------

@functools.cache
def _layer_norms(seeds: int, depth: int = DEPTH, width: int = 32) -> dict:
    x, y, _, _ = digits_subset(256)
    out = {}
    for act in ACTS:
        net = nets.mlp([width] * (depth - 1) + [10], activation=act, w_init="glorot_normal")
        per_seed = [dense_grad_norms(jax.grad(ce(net))(net.init(key(s), (-1, 64))[1], x, y)) for s in range(seeds)]
        out[act] = np.median(np.array(per_seed), axis=0).tolist()
    return out


def run_vanishing(config, store) -> dict:
    norms = _layer_norms(config.seeds)
    return {"depth": DEPTH, "norms": norms, "first_over_last": {a: n[0] / n[-1] for a, n in norms.items()}}


def verdict_sigmoid_vanishes(m) -> Verdict:
    r = m["first_over_last"]["sigmoid"]
    key_text = f"sigmoid first/last layer gradient norm {r:.2g} at depth {m['depth']}"
    return Verdict(HOLDS if r < 1e-2 else FAILS, key_text)


def verdict_relu_family(m) -> Verdict:
    r = m["first_over_last"]
    modern = {a: r[a] for a in ("relu", "leaky_relu", "gelu", "swish")}
    worst = min(modern, key=modern.get)
    key_text = f"worst of relu/leaky/gelu/swish: {worst} {modern[worst]:.2g}; sigmoid {r['sigmoid']:.2g}"
    if modern[worst] > 0.1 and modern[worst] > 10 * r["sigmoid"]:
        return Verdict(HOLDS, key_text)
    if modern[worst] > 10 * r["sigmoid"]:
        return Verdict(CAVEAT, key_text, f"far better than sigmoid, but {worst}'s first layer still gets < 0.1 of the last's")
    return Verdict(FAILS, key_text)


def plot_vanishing(m):
    fig, ax = plotting.figure(width=5.5)
    for act, norms in m["norms"].items():
        ax.semilogy(np.arange(1, len(norms) + 1), norms, marker="o", label=act)
    ax.set(xlabel="layer (1 = input side)", ylabel="weight-gradient norm", title=f"gradient norm per layer, depth {m['depth']}")
    ax.legend(ncol=2)
    return fig


# --- tanh vs sigmoid, through the sweep engine -------------------------------------------------

ACT_TRAIN, ACT_TEST, ACT_SIZES = 512, 256, (32, 32, DIGITS_CLASSES)   # digits; the Dense widths (nets.mlp's sizes)


def _digits_problem(static):
    x, y, xt, yt = digits_subset(ACT_TRAIN)
    net = nets.mlp(ACT_SIZES, activation=static["activation"])

    def loss(params, xb, yb, k):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)
    return Problem(init_params=lambda k: net.init(k, (-1, DIGIT_FEATURES))[1], loss=loss, x=np.asarray(x), y=np.asarray(y),
                   evaluate=classification_metrics(net.apply), eval_x=np.asarray(xt[:ACT_TEST]), eval_y=np.asarray(yt[:ACT_TEST]))


ACT_STUDY = Study("claims_activation_digits", _digits_problem, lambda c: optim.sgd(c["learning_rate"]),
                  hyperparameters={"learning_rate": 0.1}, static={"batch_size": 64, "activation": "tanh"},
                  description=digits_facts(ACT_TRAIN, ACT_TEST, net=nets.mlp, sizes=(DIGIT_FEATURES, *ACT_SIZES),
                                           loss=losses.softmax_cross_entropy_with_integer_labels,
                                           evaluate=classification_metrics))


def run_tanh_sigmoid(config, store) -> dict:
    every = max(config.steps // 10, 1)
    spec = SweepSpec(ACT_STUDY, {"activation": ["sigmoid", "tanh"], "learning_rate": [0.1]}, seeds=config.seeds,
                     steps=10 * every, eval_every=every, chunk_steps=10 * every)
    res = run_sweep(spec, store=store, progress=False)
    curves = res.curves["train_loss"][:, 0]  # (activation, seed, evals)
    final = np.median(curves[:, :, -1], axis=1)
    return {"steps": res.eval_steps.tolist(), "sigmoid": curves[0].tolist(), "tanh": curves[1].tolist(),
            "final_sigmoid": float(final[0]), "final_tanh": float(final[1])}


def verdict_tanh_sigmoid(m) -> Verdict:
    return ratio_verdict("final train loss tanh/sigmoid", m["final_tanh"], m["final_sigmoid"], below=0.8)


def plot_tanh_sigmoid(m):
    fig, ax = plotting.figure(width=5)
    for act in ("sigmoid", "tanh"):
        plotting.median_band(ax, m["steps"], m[act], label=act)
    ax.set(yscale="log", xlabel="step", ylabel="train loss (CE)", title="digits MLP, SGD lr 0.1")
    ax.legend()
    return fig


# --- dying ReLU and leaky ReLU ---------------------------------------------------------------

def run_dying(config, store) -> dict:
    x, y = data.function_1d(key(0), 256, grid=True)
    out = {"learning_rates": [0.01, 0.1, 0.5]}
    for act in ("relu", "leaky_relu"):
        dead, zero_grad = [], []
        for lr in out["learning_rates"]:
            fr, zg = [], []
            for s in range(config.seeds):
                net = nets.mlp([64, 64, 1], activation=act, w_init="he_normal")
                p = net.init(key(s), (-1, 1))[1]
                p, _ = fit(lambda p, net=net: losses.mse(net.apply(p, x), y), p, optim.sgd(lr, momentum=0.9), config.steps)
                h1 = x @ p[0]["w"] + p[0]["b"][None, :]                      # first hidden layer pre-activations
                unit_grad = jax.grad(lambda p, net=net: losses.mse(net.apply(p, x), y))(p)[0]["w"]
                fr.append(float(jnp.mean(jnp.all(h1 <= 0, axis=0))))
                zg.append(float(jnp.mean(jnp.all(unit_grad == 0, axis=0))))
            dead.append(float(np.median(fr)))
            zero_grad.append(float(np.median(zg)))
        out[act] = {"dead": dead, "zero_grad": zero_grad}
    return out


def verdict_dying(m) -> Verdict:
    relu_dead = max(m["relu"]["zero_grad"])
    leaky_zero = max(m["leaky_relu"]["zero_grad"])
    key_text = f"units with zero gradient: relu up to {relu_dead:.0%}, leaky relu {leaky_zero:.0%}"
    if relu_dead >= 0.05 and leaky_zero == 0:
        return Verdict(HOLDS, key_text)
    if leaky_zero == 0:
        return Verdict(CAVEAT, key_text, "leaky relu never stalls, but relu units rarely died in this setting")
    return Verdict(FAILS, key_text)


def plot_dying(m):
    fig, ax = plotting.figure(width=5)
    lrs = m["learning_rates"]
    ax.plot(lrs, m["relu"]["dead"], marker="o", label="relu: units never active")
    ax.plot(lrs, m["relu"]["zero_grad"], marker="s", ls="--", label="relu: units with zero gradient")
    ax.plot(lrs, m["leaky_relu"]["zero_grad"], marker="^", label="leaky relu: units with zero gradient")
    ax.set(xscale="log", xlabel="learning rate (SGD, momentum 0.9)", ylabel="fraction of first-layer units",
           title="dead units after training on sin(x)")
    ax.legend()
    return fig


# --- the step function and the perceptron rule -------------------------------------------------

def run_step(config, store) -> dict:
    x = jax.random.uniform(key(1), (400, 2), jnp.float32, minval=-1.0, maxval=1.0)
    margin = x @ jnp.array([1.0, -2.0], jnp.float32) + 0.3                   # a separable rule with a margin of 0.1
    keep = np.asarray(jnp.abs(margin) > 0.1 * 5.0 ** 0.5)
    x, y = x[keep], (margin[keep] > 0).astype(jnp.float32)
    net = nets.perceptron(2)
    p0 = {"w": jnp.array([0.3, -0.2], jnp.float32), "b": jnp.zeros((), jnp.float32)}
    acc = lambda p: float(jnp.mean(net.apply(p, x) == y))
    surrogate = lambda p: losses.mse(net.apply(p, x), y)       # the loss GD would descend
    grad_norm = float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree_util.tree_leaves(jax.grad(surrogate)(p0))))
    p_gd, _ = fit(surrogate, p0, optim.sgd(0.5), 50)
    p, rule_acc = p0, [acc(p0)]
    for _ in range(10):
        p = nets.perceptron_update(p, x, y)
        rule_acc.append(acc(p))
    return {"grad_norm": grad_norm, "gd_accuracy": [acc(p0), acc(p_gd)], "rule_accuracy": rule_acc}


def verdict_step(m) -> Verdict:
    key_text = f"gradient norm {m['grad_norm']:.2g}; GD accuracy {m['gd_accuracy'][-1]:.2f}, perceptron rule {m['rule_accuracy'][-1]:.2f}"
    ok = m["grad_norm"] == 0 and m["gd_accuracy"][-1] == m["gd_accuracy"][0] and m["rule_accuracy"][-1] >= 0.99
    return Verdict(HOLDS if ok else FAILS, key_text)


def plot_step(m):
    fig, ax = plotting.figure(width=5)
    ax.plot(range(len(m["rule_accuracy"])), m["rule_accuracy"], marker="o", label="perceptron rule (epochs)")
    ax.axhline(m["gd_accuracy"][-1], color="C3", ls="--", label=f"GD through step, after 50 steps (grad norm {m['grad_norm']:.0f})")
    ax.set(xlabel="epoch", ylabel="training accuracy", ylim=(0, 1.05), title="step activation: no gradient to follow")
    ax.legend(loc="lower right")
    return fig


CLAIMS = (
    Claim("sigmoid_vanishing", "001", "vanishing gradients",
          "Sigmoid squashes gradients, so in a deep net the layers near the input receive far smaller gradients than those near the output.",
          "holds if sigmoid's first-layer weight-gradient norm is < 1e-2 x the last layer's in a depth-10 width-32 MLP "
          "(Glorot init, digits, median over seeds); otherwise does not hold.",
          run_vanishing, verdict_sigmoid_vanishes, plot_vanishing),
    Claim("relu_family_gradients", "001", "vanishing gradients",
          "ReLU, Leaky ReLU, GELU and Swish keep gradients from vanishing with depth, unlike sigmoid.",
          "same nets as sigmoid_vanishing; holds if each of relu/leaky/gelu/swish has first/last gradient ratio > 0.1 "
          "and > 10x sigmoid's; with a caveat if only the second; otherwise does not hold.",
          run_vanishing, verdict_relu_family, plot_vanishing),
    Claim("tanh_beats_sigmoid", "000", "activations",
          "Because tanh is zero-centred, a network with tanh converges faster than the same network with sigmoid.",
          "digits MLP 64-32-32-10, SGD lr 0.1, batch 64 (a sweep over activation x seeds); holds if tanh's median final "
          "train loss is < 0.8x sigmoid's.",
          run_tanh_sigmoid, verdict_tanh_sigmoid, plot_tanh_sigmoid),
    Claim("dying_relu", "000", "activations",
          "ReLU units can die (output zero for every input and stop learning); Leaky ReLU's small negative slope keeps them learning.",
          "MLP 1-64-64-1 on sin(x), SGD+momentum at lr 0.01/0.1/0.5; holds if at some lr >= 5% of relu's first-layer units "
          "have zero gradient on every input and no leaky-relu unit does; caveat if leaky is fine but relu units hardly die.",
          run_dying, verdict_dying, plot_dying),
    Claim("step_has_no_gradient", "003", "activations",
          "A step activation has zero derivative almost everywhere, so gradient descent cannot train it; the perceptron rule can.",
          "points in the square labelled by a line, with a margin; holds if the gradient through the step is exactly 0, 50 GD steps leave the accuracy unchanged "
          "and the perceptron rule reaches >= 99% accuracy within 10 epochs.",
          run_step, verdict_step, plot_step),
)
