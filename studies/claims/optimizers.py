"""Claims about optimisation: epochs and iterations, the learning rate, momentum, Nesterov,
Adagrad's shrinking steps, RMSprop, Adam's composition, gradient clipping, and RNN vs LSTM
gradients over long sequences."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, optim, plotting, train
from lab.sweep import SweepSpec, run_sweep
from studies.claims.base import CAVEAT, FAILS, HOLDS, Claim, Verdict
from studies.claims._common import digits_subset, dress, fit, key
from studies.claims.activations import ACT_STUDY

# --- epochs, iterations, batches (a definition, checked in lab.data and lab.train) ---------------

def run_epochs(config, store) -> dict:
    x, y, _, _ = digits_subset(200)
    net = nets.mlp([10], activation="identity")
    p = net.init(key(0), (-1, 64))[1]
    loss = lambda p, xb, yb, k: losses.softmax_cross_entropy_with_integer_labels(net.apply(p, xb), yb)
    cases = []
    for batch in (1, 7, 64, 200):
        result = train.train(loss, p, optim.sgd(0.01), x, y, key=key(1), batch_size=batch, epochs=2)
        cases.append({"batch": batch, "expected": 2 * int(np.ceil(200 / batch)), "per_epoch": data.iterations_per_epoch(200, batch),
                      "per_epoch_drop_last": data.iterations_per_epoch(200, batch, drop_last=True),
                      "steps": int(result.step_losses.shape[0])})
    return {"n": 200, "epochs": 2, "cases": cases}


def verdict_epochs(m) -> Verdict:
    full = all(c["steps"] == c["expected"] == c["per_epoch"] * m["epochs"] for c in m["cases"])
    dropped = all(c["steps"] == c["per_epoch_drop_last"] * m["epochs"] for c in m["cases"])
    text = "; ".join(f"B={c['batch']}: {c['steps']} (2 ceil(n/B) = {c['expected']})" for c in m["cases"])
    key_text = f"updates in 2 epochs of n=200: {text}"
    if full:
        return Verdict(HOLDS, key_text)
    if dropped:
        return Verdict(CAVEAT, key_text, "lab.train drops the n mod B leftover examples of each epoch (documented in "
                       "lab.data.epoch_batches), so its epoch is floor(n/B) updates; iterations_per_epoch's default says ceil(n/B)")
    return Verdict(FAILS, key_text)


def plot_epochs(m):
    fig, ax = plotting.figure(width=5)
    b = [c["batch"] for c in m["cases"]]
    ax.plot(b, [c["steps"] for c in m["cases"]], "o", ms=9, label="updates lab.train ran")
    ax.plot(b, [c["expected"] for c in m["cases"]], "k--", label="epochs x ceil(n / batch)")
    ax.plot(b, [c["per_epoch_drop_last"] * m["epochs"] for c in m["cases"]], "x", color="C3", ms=9, label="epochs x floor(n / batch)")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="updates in 2 epochs (n = 200)", title="one epoch = ceil(n/B) iterations")
    ax.legend()
    return fig


# --- learning rate too high / too low, through the sweep engine --------------------------------

LRS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


def run_lr(config, store) -> dict:
    every = max(config.steps // 10, 1)
    spec = SweepSpec(ACT_STUDY, {"learning_rate": list(LRS)}, seeds=config.seeds, steps=10 * every, eval_every=every, chunk_steps=10 * every)
    res = run_sweep(spec, store=store, progress=False)
    curves = res.curves["train_loss"]                           # (lr, seed, evals), NaN once diverged
    final = np.where(res.diverged_step >= 0, np.inf, res.final["train_loss"])
    return {"lrs": list(LRS), "steps": res.eval_steps.tolist(), "curves": np.nan_to_num(curves, nan=np.inf).tolist(),
            "final": np.median(final, axis=1).tolist(), "initial": float(np.median(curves[:, :, 0])),
            "diverged": (res.diverged_step >= 0).mean(axis=1).tolist()}


def verdict_lr(m) -> Verdict:
    final, start = np.array(m["final"]), m["initial"]
    best = int(np.argmin(final))
    slow = final[0] > 0.5 * start
    bad_high = (not np.isfinite(final[-1])) or final[-1] > start
    key_text = f"final loss at lr {m['lrs'][0]:g}: {final[0]:.3g}, best lr {m['lrs'][best]:g}: {final[best]:.3g}, lr {m['lrs'][-1]:g}: {final[-1]:.3g}"
    if slow and bad_high and 0 < best < len(final) - 1:
        return Verdict(HOLDS, key_text)
    return Verdict(FAILS, key_text)


def plot_lr(m):
    fig, ax = plotting.figure(width=5.5)
    for lr, curve in zip(m["lrs"], m["curves"]):
        c = np.array(curve)
        c[~np.isfinite(c)] = np.nan
        plotting.median_band(ax, m["steps"], c, label=f"lr {lr:g}")
    ax.set(yscale="log", xlabel="step", ylabel="train loss (gaps: diverged)", title="digits MLP, SGD: too small, right, too large")
    ax.legend()
    return fig


# --- momentum and Nesterov on a ravine ---------------------------------------------------------

def _ravine():
    return data.quadratic(key(2), jnp.array([0.01, 1.0]))


def _path(q, optimizer, steps):
    """Iterates in error coordinates e = w - w* (f - f* = e A e / 2), so no float32 floor near w*."""
    values, eig = jnp.linalg.eigh(q.A)
    e0 = eig @ jnp.array([2.0, 1.0], eig.dtype)                            # 2 along the shallow axis, 1 along the steep one
    gap = lambda e: 0.5 * e @ (q.A @ e)
    def body(carry, _):
        e, s = carry
        u, s = optimizer.update(jax.grad(gap)(e), s, e)
        return (e + u, s), e
    _, es = jax.lax.scan(body, (e0, optimizer.init(e0)), None, length=steps)
    coords = es @ eig                                            # (steps, 2): shallow, steep
    return np.asarray(coords), np.asarray(0.5 * jnp.sum(values[None, :] * coords ** 2, axis=1))  # f - f*, exact in the eigenbasis


def run_momentum(config, store) -> dict:
    q, steps = _ravine(), 150
    out = {}
    polyak_beta, polyak_lr = (9 / 11) ** 2, (2 / (1 + 0.1)) ** 2     # Polyak's optimum for eigenvalues in [0.01, 1]
    for name, opt in (("gd", optim.sgd(1.5)), ("momentum", optim.sgd(1.5, momentum=0.9)),
                      ("momentum_tuned", optim.sgd(polyak_lr, momentum=polyak_beta)),
                      ("heavy_ball_lr1", optim.sgd(1.0, momentum=0.9)), ("nesterov_lr1", optim.sgd(1.0, momentum=0.9, nesterov=True))):
        coords, gap = _path(q, opt, steps)
        swing = float(np.sum(np.abs(np.diff(coords[:, 1]))))          # distance travelled across the ravine
        out[name] = {"coords": coords.tolist(), "gap": np.maximum(gap, 1e-30).tolist(), "steep_path": swing, "final": float(max(gap[-1], 1e-30))}
    return out


def verdict_momentum(m) -> Verdict:
    faster = m["momentum"]["final"] / m["gd"]["final"]
    tuned = m["momentum_tuned"]["final"] / m["gd"]["final"]
    calmer = m["momentum"]["steep_path"] <= m["gd"]["steep_path"]
    key_text = (f"final loss gap / GD's: momentum 0.9 {faster:.2g}, Polyak-tuned momentum {tuned:.2g}; distance travelled "
                f"across the ravine: GD {m['gd']['steep_path']:.3g}, momentum 0.9 {m['momentum']['steep_path']:.3g}")
    if faster < 1e-2 and calmer:
        return Verdict(HOLDS, key_text)
    if faster < 1e-2 or tuned < 1e-2:
        return Verdict(CAVEAT, key_text, "momentum gets down the ravine much faster, but it swings further across the steep "
                       "direction than GD, not less" if faster < 1e-2 else "only Polyak-tuned momentum is 100x faster")
    return Verdict(FAILS, key_text)


def plot_momentum(m):
    fig, axes = plotting.figure(2, width=4.4)
    for name, label in (("gd", "GD lr 1.5"), ("momentum", "momentum 0.9, lr 1.5"), ("momentum_tuned", "momentum 0.67, lr 3.3 (Polyak)")):
        c = np.array(m[name]["coords"])
        axes[0].plot(c[:60, 0], c[:60, 1], marker=".", ms=3, label=label)
        axes[1].semilogy(m[name]["gap"], label=label)
    axes[0].set(xlabel="shallow direction (eigenvalue 0.01)", ylabel="steep direction (1)", title="first 60 steps")
    axes[1].set(xlabel="step", ylabel="f - f*", title="ravine, condition number 100")
    axes[1].legend()
    return fig


def verdict_nesterov(m) -> Verdict:
    ratio = m["nesterov_lr1"]["final"] / m["heavy_ball_lr1"]["final"]
    return Verdict(HOLDS if ratio < 0.5 else FAILS, f"final loss gap Nesterov / heavy ball {ratio:.2g} (lr 1, beta 0.9, 150 steps)")


def plot_nesterov(m):
    fig, ax = plotting.figure(width=5)
    for name, label in (("heavy_ball_lr1", "heavy ball"), ("nesterov_lr1", "Nesterov")):
        ax.semilogy(m[name]["gap"], label=label)
    ax.set(xlabel="step", ylabel="f - f*", title="quadratic, kappa 100, lr 1/L, beta 0.9")
    ax.legend()
    return fig


# --- Adagrad's shrinking steps vs RMSprop ------------------------------------------------------

def run_adaptive(config, store) -> dict:
    """Noisy gradients of f(w) = |w - w*|^2 / 2 in 10-D, starting 20 away; per-step |u|/|g|."""
    steps, target = max(config.steps, 300), jnp.full((10,), 20.0)
    noise = jax.random.normal(key(3), (steps, 10))
    out = {}
    for name, opt in (("adagrad", optim.adagrad(0.1)), ("rmsprop", optim.rmsprop(0.1))):
        def body(carry, eps, opt=opt):
            w, s = carry
            g = (w - target) + eps
            u, s = opt.update(g, s, w)
            return (w + u, s), (jnp.linalg.norm(u) / jnp.linalg.norm(g), jnp.linalg.norm(w - target))
        _, (ratio, dist) = jax.lax.scan(body, (jnp.zeros(10), opt.init(jnp.zeros(10))), noise)
        ratio, dist = np.asarray(ratio), np.asarray(dist)
        k = max(steps // 10, 1)
        out[name] = {"step_ratio": ratio.tolist(), "distance": dist.tolist(), "late_over_early": float(ratio[-k:].mean() / ratio[:k].mean()),
                     "final_distance": float(dist[-k:].mean())}
    return out


def verdict_adagrad(m) -> Verdict:
    r = m["adagrad"]["late_over_early"]
    return Verdict(HOLDS if r < 0.5 else FAILS, f"Adagrad's |update|/|gradient|, last 10% / first 10% of steps: {r:.2g}")


def verdict_rmsprop(m) -> Verdict:
    r, a = m["rmsprop"]["late_over_early"], m["rmsprop"]["final_distance"] / m["adagrad"]["final_distance"]
    key_text = f"RMSprop step ratio late/early {r:.2g}; final distance RMSprop/Adagrad {a:.2g}"
    if r > 0.5 and a < 0.5:
        return Verdict(HOLDS, key_text)
    if a < 0.5:
        return Verdict(CAVEAT, key_text, "RMSprop gets closer, but its effective step also shrank")
    return Verdict(FAILS, key_text)


def plot_adaptive(m):
    fig, axes = plotting.figure(2, width=4.4)
    for name in ("adagrad", "rmsprop"):
        axes[0].loglog(np.arange(1, len(m[name]["step_ratio"]) + 1), m[name]["step_ratio"], label=name)
        axes[1].semilogy(m[name]["distance"], label=name)
    return dress(axes, dict(xlabel="step", ylabel="|update| / |gradient|", title="effective learning rate (lr 0.1)"),
                 dict(xlabel="step", ylabel="distance to the minimum", title="noisy quadratic, start 63 away"),
                 legend={1: {}})


# --- Adam = momentum + RMSprop + bias correction -----------------------------------------------

def run_adam(config, store) -> dict:
    grads = jax.random.normal(key(4), (100, 6)) * jnp.array([[0.01, 0.1, 1.0, 10.0, 100.0, 1.0]])
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    opt = optim.adam(lr, b1=b1, b2=b2, eps=eps)
    w = jnp.zeros(6)
    s = opt.init(w)
    m = v = jnp.zeros(6)
    diffs, raw_first = [], None
    for t, g in enumerate(grads, start=1):
        u, s = opt.update(g, s, w)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g               # momentum; RMSprop's average
        mine = -lr * (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + eps)  # bias-corrected ratio
        if t == 1:
            raw_first = float(jnp.max(jnp.abs(lr * m / (jnp.sqrt(v) + eps))))
        diffs.append(float(jnp.max(jnp.abs(u - mine)) / jnp.max(jnp.abs(mine))))
    return {"relative_diff": diffs, "first_step_corrected": lr, "first_step_uncorrected": raw_first}


def verdict_adam(m) -> Verdict:
    worst = max(m["relative_diff"])
    return Verdict(HOLDS if worst < 1e-4 else FAILS,
                   f"lab.optim.adam vs momentum + RMSprop + bias correction written out: worst relative difference {worst:.2g} over 100 steps")


def plot_adam(m):
    fig, ax = plotting.figure(width=5)
    ax.semilogy(np.maximum(m["relative_diff"], 1e-17))
    ax.set(xlabel="step", ylabel="relative difference", title="adam = EMA(g) / sqrt(EMA(g^2)), bias-corrected")
    return fig


# --- gradient clipping -------------------------------------------------------------------------

def run_clipping(config, store) -> dict:
    x, y, _, _ = digits_subset(256)
    net = nets.mlp([32] * 7 + [10], activation="relu", w_init="he_normal")
    loss = lambda p: losses.softmax_cross_entropy_with_integer_labels(net.apply(p, x), y)
    out = {}
    for name, opt in (("plain", optim.sgd(2.0)), ("clipped", optim.chain(optim.clip_by_global_norm(1.0), optim.sgd(2.0)))):
        finals, peaks, curves = [], [], []
        for s in range(config.seeds):
            _, c = fit(loss, net.init(key(s), (-1, 64))[1], opt, max(config.steps // 3, 50))
            c = np.where(np.isfinite(c), c, np.inf)
            curves.append(c.tolist())
            finals.append(float(c[-1]))
            peaks.append(float(c.max()))
        middle = len(finals) // 2                                  # (upper) median, safe with inf
        out[name] = {"curves": curves, "final": sorted(finals)[middle], "peak": sorted(peaks)[middle]}
    out["initial"] = float(np.median([c[0] for c in out["plain"]["curves"]]))
    return out


def verdict_clipping(m) -> Verdict:
    plain, clipped, start = m["plain"]["peak"], m["clipped"]["peak"], m["initial"]
    key_text = (f"median peak loss at lr 2: plain {plain:.3g}, clipped (norm 1) {clipped:.3g}, initial {start:.3g}; "
                f"final: plain {m['plain']['final']:.3g}, clipped {m['clipped']['final']:.3g}")
    ok = plain > 100 * start and clipped < 2 * start and m["clipped"]["final"] < start
    return Verdict(HOLDS if ok else FAILS, key_text)


def plot_clipping(m):
    fig, ax = plotting.figure(width=5)
    for name in ("plain", "clipped"):
        c = np.array(m[name]["curves"], dtype=float)
        c[~np.isfinite(c)] = np.nan
        plotting.median_band(ax, np.arange(c.shape[1]), c, label={"plain": "SGD lr 2", "clipped": "SGD lr 2, clip global norm 1"}[name])
    ax.set(yscale="log", xlabel="step", ylabel="train loss (gap: diverged)", title="8-layer ReLU net on digits")
    ax.legend()
    return fig


# --- RNN vs LSTM: gradient reaching early time steps -------------------------------------------

def run_rnn_lstm(config, store) -> dict:
    T = 60
    x = jax.random.normal(key(5), (16, T, 2), jnp.float32)
    out = {"T": T}
    for name, net in (("rnn", nets.rnn(32, 1)), ("lstm", nets.lstm(32, 1)), ("lstm_fb3", nets.lstm(32, 1, forget_bias=3.0))):
        per_seed = []
        for s in range(config.seeds):
            p = net.init(key(s), (-1, T, 2))[1]
            g = jax.grad(lambda xs, net=net, p=p: jnp.sum(net.apply(p, xs)))(x)       # d output(T) / d x_t
            per_seed.append(np.asarray(jnp.linalg.norm(g, axis=(0, 2))))
        norms = np.median(per_seed, axis=0)
        out[name] = {"norms": norms.tolist(), "first_over_last": float(norms[0] / norms[-1])}
    return out


def verdict_rnn_lstm(m) -> Verdict:
    r, l, l3 = (m[k]["first_over_last"] for k in ("rnn", "lstm", "lstm_fb3"))
    key_text = f"gradient at t=1 / t={m['T']}: RNN {r:.2g}, LSTM {l:.2g}, LSTM with forget bias 3 {l3:.2g}"
    if l > 100 * r:
        return Verdict(HOLDS, key_text)
    if l3 > 100 * r:
        return Verdict(CAVEAT, key_text, "only with the forget gate biased open (bias 3); at the default bias 1 the LSTM "
                       "loses gradient as fast as the RNN at initialisation")
    return Verdict(FAILS, key_text)


def plot_rnn_lstm(m):
    fig, ax = plotting.figure(width=5)
    for name, label in (("rnn", "RNN (tanh)"), ("lstm", "LSTM, forget bias 1"), ("lstm_fb3", "LSTM, forget bias 3")):
        ax.semilogy(np.arange(1, m["T"] + 1), m[name]["norms"], label=label)
    ax.set(xlabel="input time step t", ylabel="|d output(T) / d x_t|", title=f"gradient through time, T = {m['T']}, default init")
    ax.legend()
    return fig


CLAIMS = (
    Claim("epoch_iteration_batch", "002", "definitions",
          "An epoch is one pass over the training set; with batch size B it takes ceil(n/B) iterations (updates).",
          "lab.train.train on n=200 for 2 epochs at B = 1, 7, 64, 200; holds if it runs exactly 2 ceil(n/B) updates and "
          "lab.data.iterations_per_epoch agrees.",
          run_epochs, verdict_epochs, plot_epochs),
    Claim("learning_rate_window", "000", "learning rate",
          "Too small a learning rate barely makes progress, too large a one diverges; the best lies in between.",
          "digits MLP, SGD, a sweep over lr in 1e-3..10 x seeds; holds if the smallest lr keeps > 0.5x the initial loss, "
          "the largest ends above the initial loss or diverges, and the best lr is an interior one.",
          run_lr, verdict_lr, plot_lr),
    Claim("momentum_damps_oscillation", "000", "momentum",
          "Momentum accumulates past gradients, which damps oscillations and speeds up descent.",
          "2-D quadratic with eigenvalues 0.01 and 1, 150 steps; holds if momentum 0.9 at GD's lr 1.5 ends with < 1e-2x GD's "
          "loss gap and travels no further along the steep direction than GD; caveat if it, or only Polyak-tuned momentum, "
          "is 100x faster without the smaller swing.",
          run_momentum, verdict_momentum, plot_momentum),
    Claim("nesterov_faster", "002", "momentum",
          "Nesterov momentum, which evaluates the gradient at the look-ahead point, converges faster than plain momentum.",
          "same quadratic, lr 1, beta 0.9, 150 steps; holds if Nesterov's final loss gap is < 0.5x heavy ball's.",
          run_momentum, verdict_nesterov, plot_nesterov),
    Claim("adagrad_steps_shrink", "002", "adaptive methods",
          "Adagrad accumulates squared gradients forever, so its effective step size keeps shrinking.",
          "noisy 10-D quadratic, lr 0.1; holds if Adagrad's |update|/|gradient| over the last 10% of steps is < 0.5x the first 10%.",
          run_adaptive, verdict_adagrad, plot_adaptive),
    Claim("rmsprop_fixes_adagrad", "002", "adaptive methods",
          "RMSprop replaces Adagrad's sum with a moving average, so its step does not decay and it keeps making progress.",
          "same run; holds if RMSprop's step ratio late/early is > 0.5 and it ends < 0.5x Adagrad's distance to the minimum; "
          "caveat if only the second.",
          run_adaptive, verdict_rmsprop, plot_adaptive),
    Claim("adam_is_momentum_plus_rmsprop", "004", "adaptive methods",
          "Adam combines momentum (a moving average of gradients) with RMSprop (a moving average of squared gradients), both bias-corrected.",
          "100 steps on gradients of scales 0.01..100; holds if lab.optim.adam matches the written-out composition to relative 1e-4 (float32 rounding).",
          run_adam, verdict_adam, plot_adam),
    Claim("clipping_tames_explosion", "001", "exploding gradients",
          "Gradient clipping prevents exploding gradients from derailing training.",
          "8-layer ReLU net on digits, SGD lr 2; holds if the unclipped loss explodes (median peak > 100x the initial loss) "
          "while with the global norm clipped to 1 it never exceeds 2x the initial loss and ends below it.",
          run_clipping, verdict_clipping, plot_clipping),
    Claim("lstm_keeps_long_gradients", "001", "recurrent nets",
          "Gradients vanish over long sequences in a plain RNN; an LSTM's memory cell carries them much further back.",
          "width-32 nets at initialisation, T=60, ratio of |d out / d x_1| to |d out / d x_T|; holds if the LSTM's (default "
          "forget bias 1) ratio is > 100x the RNN's; caveat if only an LSTM with forget bias 3 gets there.",
          run_rnn_lstm, verdict_rnn_lstm, plot_rnn_lstm),
)
