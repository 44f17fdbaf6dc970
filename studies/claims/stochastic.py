"""Claims about stochastic gradients: mini-batch noise in the loss curve, and noise
carrying SGD off a saddle point where exact gradient descent stays put."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, optim, plotting, train
from studies.claims.base import FAILS, HOLDS, Claim, Verdict
from studies.claims._common import dress, key

BATCHES = (1, 8, 64, 256)


def run_batch_noise(config, store) -> dict:
    x, y, _, _, _ = data.linear_regression(key(10), 256, features=5, noise=0.5)
    params = {"w": jnp.zeros((5, 1), jnp.float32), "b": jnp.zeros((1,), jnp.float32)}
    full = jax.jit(lambda p: losses.mse(x @ p["w"] + p["b"][None, :], y))
    out = {"batches": list(BATCHES)}
    for b in BATCHES:
        p = params
        curve = [float(full(p))]
        for epoch in range(max(config.steps // 100, 2)):
            p = train.train(lambda p, xb, yb, k: losses.mse(xb @ p["w"] + p["b"][None, :], yb), p, optim.sgd(0.01), x, y,
                            key=jax.random.fold_in(key(11), epoch), batch_size=b, epochs=1).params
            curve.append(float(full(p)))
        # per-update noise: full-data loss after each of 64 single updates from the same start
        steps = train.train(lambda p, xb, yb, k: losses.mse(xb @ p["w"] + p["b"][None, :], yb), params, optim.sgd(0.01), x, y,
                            key=key(12), batch_size=b, epochs=1).step_losses
        out[str(b)] = {"epoch_curve": curve, "batch_losses": np.asarray(steps[:64]).tolist(),
                       "rise_fraction": float(np.mean(np.diff(np.asarray(steps[:64])) > 0)) if len(steps) > 1 else 0.0}
    return out


def verdict_batch_noise(m) -> Verdict:
    small, large = m["1"]["rise_fraction"], m[str(m["batches"][-1])]["rise_fraction"]
    key_text = f"share of updates whose mini-batch loss rose: batch 1 {small:.0%}, batch {m['batches'][-1]} (full) {large:.0%}"
    return Verdict(HOLDS if small >= 0.2 and large == 0 else FAILS, key_text)


def plot_batch_noise(m):
    fig, axes = plotting.figure(2, width=4.4)
    for b in m["batches"]:
        axes[0].semilogy(m[str(b)]["batch_losses"], label=f"batch {b}")
        axes[1].semilogy(m[str(b)]["epoch_curve"], marker=".", label=f"batch {b}")
    axes[0].set(xlabel="update", ylabel="mini-batch loss", title="first updates: noise grows as the batch shrinks")
    axes[1].set(xlabel="epoch", ylabel="full-data MSE", title="per epoch (SGD lr 0.01)")
    axes[1].legend()
    return fig


def _saddle(w):
    """f(u, v) = u^2 / 2 - v^2 / 2 + v^4 / 4: a saddle at 0, minima at (0, +-1) with f = -1/4."""
    return 0.5 * w[0] ** 2 - 0.5 * w[1] ** 2 + 0.25 * w[1] ** 4


def run_saddle(config, store) -> dict:
    steps, lr = 200, 0.1
    w0 = jnp.array([1.0, 0.0], jnp.float32)                      # on the saddle's attracting axis: v stays 0 under GD
    out = {"steps": steps}
    for name, sigma in (("gd", 0.0), ("sgd", 0.1)):
        finals, paths = [], []
        for s in range(config.seeds):
            noise = sigma * jax.random.normal(key(20 + s), (steps, 2), jnp.float32)   # gradient noise of a mini-batch

            def body(w, eps):
                w = w - lr * (jax.grad(_saddle)(w) + eps)
                return w, w
            _, ws = jax.lax.scan(body, w0, noise)
            paths.append(np.asarray(ws).tolist())
            finals.append(float(_saddle(ws[-1])))
        out[name] = {"final": float(np.median(finals)), "path": paths[0], "values": [float(_saddle(jnp.asarray(p))) for p in paths[0]]}
    return out


def verdict_saddle(m) -> Verdict:
    gd, sgd = m["gd"]["final"], m["sgd"]["final"]
    key_text = f"f after {m['steps']} steps: GD {gd:.3g} (saddle value 0), noisy SGD {sgd:.3g} (minimum -0.25)"
    return Verdict(HOLDS if gd > -0.01 and sgd < -0.2 else FAILS, key_text)


def plot_saddle(m):
    fig, axes = plotting.figure(2, width=4.4)
    g = np.linspace(-1.5, 1.5, 121)
    uu, vv = np.meshgrid(g, g)
    axes[0].contour(uu, vv, 0.5 * uu**2 - 0.5 * vv**2 + 0.25 * vv**4, levels=20, cmap="Greys", linewidths=0.6)
    for name, label in (("gd", "GD"), ("sgd", "noisy SGD")):
        p = np.array(m[name]["path"])
        axes[0].plot(p[:, 0], p[:, 1], marker=".", ms=2, label=label)
        axes[1].plot(m[name]["values"], label=label)
    return dress(axes, dict(xlabel="u", ylabel="v", title="u^2/2 - v^2/2 + v^4/4, start (1, 0)"),
                 dict(xlabel="step", ylabel="f", title="GD stalls at the saddle (f = 0)"), legend={1: {}})


# --- learning-rate schedules ------------------------------------------------------------------

def run_schedule(config, store) -> dict:
    x, y, _, _, _ = data.linear_regression(key(30), 256, features=5, noise=0.5)
    xb = jnp.concatenate([x, jnp.ones((256, 1), x.dtype)], axis=1)
    best = losses.mse(xb @ jnp.linalg.lstsq(xb, y)[0], y)             # the least-squares floor
    full = jax.jit(lambda p: losses.mse(x @ p["w"] + p["b"][None, :], y))
    epochs = max(config.steps // 32, 5)
    total = epochs * (256 // 8)
    out = {"epochs": epochs}
    for name, lr in (("constant", 0.05), ("cosine", optim.cosine_decay_schedule(0.05, total))):
        curves = []
        for s in range(config.seeds):
            p = {"w": jnp.zeros((5, 1), jnp.float32), "b": jnp.zeros((1,), jnp.float32)}
            curve, opt = [], optim.sgd(lr)
            train.train(lambda p, xb_, yb, k: losses.mse(xb_ @ p["w"] + p["b"][None, :], yb), p, opt, x, y,
                                 key=key(40 + s), batch_size=8, epochs=epochs,
                                 callback=lambda e, p, _, curve=curve: curve.append(float(full(p) - best)))
            curves.append(curve)
        out[name] = {"excess": curves, "final": float(np.median([c[-1] for c in curves]))}
    return out


def verdict_schedule(m) -> Verdict:
    ratio = m["cosine"]["final"] / m["constant"]["final"]
    key_text = f"final excess MSE cosine / constant lr {ratio:.2g} ({m['cosine']['final']:.2g} vs {m['constant']['final']:.2g})"
    return Verdict(HOLDS if ratio < 0.5 else FAILS, key_text)


def plot_schedule(m):
    fig, ax = plotting.figure(width=5)
    for name, label in (("constant", "constant lr 0.05"), ("cosine", "cosine decay from 0.05")):
        plotting.median_band(ax, np.arange(1, m["epochs"] + 1), np.maximum(np.array(m[name]["excess"]), 1e-12), label=label)
    ax.set(yscale="log", xlabel="epoch", ylabel="MSE above the least-squares floor", title="SGD, batch 8, linear regression")
    ax.legend()
    return fig


# --- epochs vs wall-clock ---------------------------------------------------------------------

EPOCH_BATCHES = (1, 32, 512)


def run_epochs_vs_clock(config, store) -> dict:
    """The first 512 digits, a 64-32-10 tanh MLP, plain SGD lr 0.05 at batch 1, 32 and 512 (full):
    training loss on the 512 images after each of a few epochs, and the wall-clock seconds of an
    epoch: one compiled ``lax.scan`` over the epoch's batches (:func:`lab.train.make_step`),
    compiled before timing, the fastest of 20 timed epochs (from the final state) kept, since a
    full-batch epoch lasts well under a millisecond and single timings scatter by 2x."""
    import time

    from lab import nets
    from studies.claims._common import ce, digits_subset
    x, y, _, _ = digits_subset(512)
    net = nets.mlp([32, 10], activation="tanh")
    loss = ce(net)
    full = jax.jit(lambda p: loss(p, x, y))
    opt = optim.sgd(0.05)
    step = train.make_step(lambda p, xb, yb, k: loss(p, xb, yb), opt)

    @jax.jit
    def epoch(params, state, batches):
        def body(carry, idx):
            p, s, _ = step(*carry, x[idx], y[idx], key(0))
            return (p, s), None
        return jax.lax.scan(body, (params, state), batches)[0]

    epochs = max(config.steps // 100, 3)
    out = {"batches": list(EPOCH_BATCHES), "epochs": epochs}
    for b in EPOCH_BATCHES:
        params = net.init(key(60), (-1, 64))[1]
        state = opt.init(params)
        jax.block_until_ready(epoch(params, state, data.epoch_batches(key(61), 512, b)))   # compile, untimed
        curve = [float(full(params))]
        for e in range(epochs):
            params, state = epoch(params, state, data.epoch_batches(jax.random.fold_in(key(62), e), 512, b))
            curve.append(float(full(params)))
        timing_batches, seconds = jax.block_until_ready(data.epoch_batches(key(63), 512, b)), []
        for _ in range(20):
            t0 = time.perf_counter()
            jax.block_until_ready(epoch(params, state, timing_batches))
            seconds.append(time.perf_counter() - t0)
        out[str(b)] = {"loss": curve, "seconds_per_epoch": float(min(seconds))}
    return out


def verdict_epochs_vs_clock(m) -> Verdict:
    small, big = m[str(m["batches"][0])], m[str(m["batches"][-1])]
    fewer_epochs = small["loss"][-1] < big["loss"][-1]
    costlier = small["seconds_per_epoch"] > 3 * big["seconds_per_epoch"]
    key_text = (f"after {m['epochs']} epochs: loss batch {m['batches'][0]} {small['loss'][-1]:.3g} vs full batch "
                f"{big['loss'][-1]:.3g}; seconds per epoch {small['seconds_per_epoch']:.3g} vs {big['seconds_per_epoch']:.3g} "
                f"({small['seconds_per_epoch'] / big['seconds_per_epoch']:.0f}x)")
    if fewer_epochs and costlier:
        return Verdict(HOLDS, key_text)
    return Verdict(FAILS, key_text)


def plot_epochs_vs_clock(m):
    fig, axes = plotting.figure(2, width=4.4)
    for b in m["batches"]:
        r = m[str(b)]
        epochs = np.arange(len(r["loss"]))
        axes[0].plot(epochs, r["loss"], marker="o", label=f"batch {b}")
        axes[1].plot(1e3 * epochs * r["seconds_per_epoch"], r["loss"], marker="o",
                     label=f"batch {b}: {1e3 * r['seconds_per_epoch']:.2g} ms per epoch")
    return dress(axes, dict(yscale="log", xlabel="epoch", ylabel="training cross-entropy (512 digits)",
                            title="per epoch: small batches make more progress"),
                 dict(yscale="log", xlabel="wall-clock milliseconds (fastest compiled epoch x epochs)",
                      ylabel="training cross-entropy", title="the same runs against the clock"),
                 legend={0: {}, 1: {"fontsize": 8}})


CLAIMS = (
    Claim("minibatch_noise", "002", "GD vs SGD",
          "Full-batch gradient descent descends smoothly; SGD on single examples is much noisier, and mini-batches sit in between.",
          "linear regression, 256 points, SGD lr 0.01 at batch 1, 8, 64, 256; holds if >= 20% of batch-1 updates see their "
          "mini-batch loss rise and no full-batch update does.",
          run_batch_noise, verdict_batch_noise, plot_batch_noise),
    Claim("sgd_escapes_saddle", "002", "GD vs SGD",
          "The randomness of SGD lets it escape saddle points where plain gradient descent can stall.",
          "f = u^2/2 - v^2/2 + v^4/4 from (1, 0), lr 0.1, 200 steps, gradient noise 0.1 for SGD; holds if GD ends at f > -0.01 "
          "(still at the saddle) and SGD's median final f < -0.2 (near a minimum).",
          run_saddle, verdict_saddle, plot_saddle),
    Claim("lr_schedule_helps", "004", "learning rate",
          "Scheduling the learning rate (large early, small late) improves on a constant rate: SGD's noise settles as the steps shrink.",
          "linear regression, SGD batch 8, lr 0.05 constant vs cosine-decayed to 0 over the run; holds if the decayed run's "
          "median final excess MSE is < 0.5x the constant run's.",
          run_schedule, verdict_schedule, plot_schedule),
    Claim("small_batches_fewer_epochs_more_seconds", "002", "GD vs SGD",
          "Smaller batches reach a given loss in fewer epochs, but very small batches use the hardware poorly, so an "
          "epoch of single-example SGD takes much longer on the clock than a full-batch epoch.",
          "first 512 digits, MLP 64-32-10 tanh, SGD lr 0.05 at batch 1, 32 and 512 for max(steps / 100, 3) epochs; "
          "holds if batch 1 ends at a lower training loss than the full batch AND its epoch takes more than 3x "
          "the full batch's wall-clock time (fastest timed epoch, compilation excluded); else does not hold.",
          run_epochs_vs_clock, verdict_epochs_vs_clock, plot_epochs_vs_clock),
)
