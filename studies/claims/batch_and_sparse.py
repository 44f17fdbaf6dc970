"""Claims about batches and adaptive steps: Adam and Adagrad on rarely active features,
small vs large batches (generalisation gap, sharpness, the usable learning rate), and
full-batch gradient descent reaching the global minimum of a convex problem.

Every grid of runs here goes through :func:`lab.sweep.run_sweep`: the optimizer kind and
the batch size are static knobs (one compiled program each), learning rates and seeds are
vmapped.  Contracts and the theory each verdict is read against are in the claims'
``rule`` texts and in the comments of each section.
"""
from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, optim, plotting
from lab.sweep import Problem, Study, SweepSpec, classification_metrics, run_sweep
from studies.claims.base import CAVEAT, FAILS, HOLDS, Claim, Verdict, graded
from studies import common
from studies.claims._common import DIGIT_FEATURES, digits_facts, digits_subset, key

# --- Adam / Adagrad on sparse features ----------------------------------------------------------
#
# Linear least squares y = x w* with 10 dense features (standard normal, present in every
# example) and 10 rare binary features (each 1 in about 1% of examples, else 0).  With SGD the
# rare weights see a curvature of only ~0.01 (their mean squared input), so at a learning rate
# the dense features allow they move ~100x slower; Adagrad and Adam divide each coordinate by
# its own gradient scale, so a rarely active weight takes a full-sized step whenever its
# feature appears.  Each optimizer runs over the same learning-rate grid; its best rate is the
# one with the lowest final full-data loss, and the claim compares the rare weights' relative
# error at those rates.

SPARSE_N, SPARSE_DENSE, SPARSE_RARE, SPARSE_P = 1024, 10, 10, 0.01
SPARSE_SEED = 0          # of the NumPy generator that draws the features and w*
SPARSE_KINDS = ("sgd", "adagrad", "adam")
SPARSE_LRS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


@functools.cache
def _sparse_data():
    rng = np.random.RandomState(SPARSE_SEED)
    dense = rng.standard_normal((SPARSE_N, SPARSE_DENSE))
    rare = (rng.uniform(size=(SPARSE_N, SPARSE_RARE)) < SPARSE_P).astype(np.float64)
    rare[rng.randint(SPARSE_N, size=SPARSE_RARE), np.arange(SPARSE_RARE)] = 1.0   # every rare feature occurs at least once
    x = np.concatenate([dense, rare], axis=1)
    w_star = rng.standard_normal((SPARSE_DENSE + SPARSE_RARE, 1))
    return x, x @ w_star, w_star


def _half_mse(w, x, y):
    """The least-squares loss of the linear model ``x w``: half the mean squared error."""
    return 0.5 * losses.mse(x @ w, y)


def _sparse_problem(static):
    x, y, w_star = _sparse_data()
    dtype = jnp.result_type(float)
    w_star = jnp.asarray(w_star, dtype)
    error = lambda w, sl: jnp.linalg.norm(w[sl] - w_star[sl]) / jnp.linalg.norm(w_star[sl])

    def evaluate(params, xe, ye):
        w = params["w"]
        return {"loss": _half_mse(w, xe, ye), "dense_error": error(w, slice(0, SPARSE_DENSE)),
                "rare_error": error(w, slice(SPARSE_DENSE, None))}
    return Problem(init_params=lambda k: {"w": jax.random.normal(k, (x.shape[1], 1), dtype)},
                   loss=lambda p, xb, yb, k: _half_mse(p["w"], xb, yb),
                   x=x.astype(dtype), y=y.astype(dtype), evaluate=evaluate)


def _sparse_optimizer(c):
    return {"sgd": optim.sgd, "adagrad": optim.adagrad, "adam": optim.adam}[c["kind"]](c["learning_rate"])


SPARSE_STUDY = Study("claims_sparse_features", _sparse_problem, _sparse_optimizer,
                     hyperparameters={"learning_rate": 0.1}, static={"batch_size": 16, "kind": "sgd"},
                     description=common.describe(data=_sparse_data, seed=SPARSE_SEED, examples=SPARSE_N, dense=SPARSE_DENSE,
                                                 rare=SPARSE_RARE, rare_probability=SPARSE_P, loss=_half_mse))


def run_sparse(config, store) -> dict:
    every = max(config.steps // 10, 1)
    spec = SweepSpec(SPARSE_STUDY, {"kind": list(SPARSE_KINDS), "learning_rate": list(SPARSE_LRS)}, seeds=config.seeds,
                     steps=10 * every, eval_every=every, chunk_steps=10 * every)
    res = run_sweep(spec, store=store, progress=False)
    diverged = res.diverged_step >= 0                                      # (kind, lr, seed)
    loss = np.where(diverged, np.inf, res.final["eval_loss"])
    out = {"kinds": list(SPARSE_KINDS), "lrs": list(SPARSE_LRS), "steps": res.eval_steps.tolist(),
           "rare_frequency": float(_sparse_data()[0][:, SPARSE_DENSE:].mean())}
    for i, kind in enumerate(SPARSE_KINDS):
        best = int(np.argmin(np.median(loss[i], axis=1)))
        curves = {name: np.nan_to_num(res.curves[f"eval_{name}"][i, best], nan=np.inf) for name in ("rare_error", "dense_error")}
        out[kind] = {"best_lr": SPARSE_LRS[best], "rare_curves": curves["rare_error"].tolist(),
                     "dense_curves": curves["dense_error"].tolist(),
                     "rare_error": float(np.median(curves["rare_error"][:, -1])),
                     "dense_error": float(np.median(curves["dense_error"][:, -1])),
                     "final_loss": float(np.median(loss[i, best]))}
    return out


def verdict_sparse(m) -> Verdict:
    sgd, adam, adagrad = (m[k]["rare_error"] for k in ("sgd", "adam", "adagrad"))
    key_text = (f"rare-feature weight error at each optimizer's best lr: SGD {sgd:.2g} (lr {m['sgd']['best_lr']:g}), "
                f"Adagrad {adagrad:.2g} (lr {m['adagrad']['best_lr']:g}), Adam {adam:.2g} (lr {m['adam']['best_lr']:g}); "
                f"dense-feature error SGD {m['sgd']['dense_error']:.2g}, Adam {m['adam']['dense_error']:.2g}")
    if adam < 0.5 * sgd and adagrad < 0.5 * sgd:
        return Verdict(HOLDS, key_text)
    if adam < 0.5 * sgd or adagrad < 0.5 * sgd:
        return Verdict(CAVEAT, key_text, f"only {'Adam' if adam < 0.5 * sgd else 'Adagrad'} halves SGD's error on the rare weights")
    return Verdict(FAILS, key_text)


def plot_sparse(m):
    fig, axes = plotting.figure(2, width=4.4)
    for kind in m["kinds"]:
        label = f"{kind} (lr {m[kind]['best_lr']:g})"
        plotting.median_band(axes[0], m["steps"], np.array(m[kind]["rare_curves"]), label=label)
        plotting.median_band(axes[1], m["steps"], np.array(m[kind]["dense_curves"]), label=label)
    axes[0].set(yscale="log", xlabel="step", ylabel="relative weight error",
                title=f"rare features (on in {m['rare_frequency']:.1%} of examples)")
    axes[1].set(yscale="log", xlabel="step", ylabel="relative weight error", title="dense features (always on)")
    axes[0].legend()
    return fig


# --- small vs large batches: generalisation gap, sharpness and the usable learning rate ----------
#
# One sweep: an MLP 64-64-10 (tanh) on the first 256 digits, SGD for 2x the base steps at batch
# 8 and 256 (the whole training set: gradient descent) x learning rate x seeds, with the top
# Hessian eigenvalue of the training loss (20 Lanczos steps on all 256 examples) at every
# evaluation.  Theory: gradient descent at rate lr is only stable where the sharpness is below
# 2 / lr, and mini-batch noise (scale ~ lr / batch) keeps SGD out of narrow valleys, so small
# batches are expected to end in flatter minima (Keskar et al. 2017) and, by the same
# noise, to tolerate a smaller learning rate before diverging.

BATCH_TRAIN, BATCH_TEST = 256, 512      # the first digits, and the next ones as the test set
BATCH_SIZES, BATCH_ACTIVATION = (64, common.DIGITS_CLASSES), "tanh"   # nets.mlp's Dense widths
BATCHES = (8, BATCH_TRAIN)
BATCH_LRS = (0.1, 0.3, 1.0, 3.0)
COMMON_LR = 0.1          # the rate at which small and large batches are compared (fixed before the first run)


def _batch_problem(static):
    x, y, xt, yt = digits_subset(BATCH_TRAIN)
    net = nets.mlp(BATCH_SIZES, activation=BATCH_ACTIVATION)
    ce = lambda p, xe, ye: losses.softmax_cross_entropy_with_integer_labels(net.apply(p, xe), ye)
    test_metrics = classification_metrics(net.apply)

    def evaluate(params, xe, ye):
        test = test_metrics(params, xe, ye)
        train = test_metrics(params, x, y)
        return {"test_loss": test["loss"], "test_accuracy": test["accuracy"], "train_loss_full": train["loss"],
                "train_accuracy": train["accuracy"]}
    return Problem(init_params=lambda k: net.init(k, (-1, DIGIT_FEATURES))[1], loss=lambda p, xb, yb, k: ce(p, xb, yb),
                   x=np.asarray(x), y=np.asarray(y), evaluate=evaluate, eval_x=np.asarray(xt[:BATCH_TEST]),
                   eval_y=np.asarray(yt[:BATCH_TEST]))


BATCH_STUDY = Study("claims_batch_size", _batch_problem, lambda c: optim.sgd(c["learning_rate"]),
                    hyperparameters={"learning_rate": COMMON_LR}, static={"batch_size": 32},
                    description=digits_facts(BATCH_TRAIN, BATCH_TEST,
                                             net=common.mlp_name((DIGIT_FEATURES, *BATCH_SIZES), BATCH_ACTIVATION),
                                             loss=losses.softmax_cross_entropy_with_integer_labels,
                                             evaluate=classification_metrics))


@functools.cache
def _batch_sweep(steps: int, seeds: int, store: str) -> dict:
    every = max(2 * steps // 5, 1)
    spec = SweepSpec(BATCH_STUDY, {"batch_size": list(BATCHES), "learning_rate": list(BATCH_LRS)}, seeds=seeds,
                     steps=5 * every, eval_every=every, chunk_steps=5 * every, sharpness_iters=20, sharpness_batch=BATCH_TRAIN)
    res = run_sweep(spec, store=store, progress=False)
    diverged = res.diverged_step >= 0                                       # (batch, lr, seed)
    clean = lambda a: np.where(np.isfinite(a), a, np.inf)
    names = {name: f"eval_{name}" for name in ("test_loss", "train_loss_full", "test_accuracy", "train_accuracy")}
    names["sharpness"] = "sharpness"
    final = {name: np.where(diverged, np.inf, clean(res.final[metric])) for name, metric in names.items()}
    return {"batches": list(BATCHES), "lrs": list(BATCH_LRS), "common_lr": COMMON_LR, "steps": res.eval_steps.tolist(),
            "diverged": diverged.mean(axis=2).tolist(),
            "final_train_loss": np.median(final["train_loss_full"], axis=2).tolist(),
            "initial_loss": float(np.median(res.curves["train_loss"][..., 0])),
            # (batch, lr, seed); inf where the run diverged
            "gap": (final["test_loss"] - final["train_loss_full"]).tolist(),
            "test_accuracy": final["test_accuracy"].tolist(),
            "sharpness": final["sharpness"].tolist()}


def run_batch(config, store) -> dict:
    return _batch_sweep(config.steps, config.seeds, str(store))


def verdict_batch_generalisation(m) -> Verdict:
    j = m["lrs"].index(m["common_lr"])
    gap = np.median(np.array(m["gap"])[:, j], axis=1)
    acc = np.median(np.array(m["test_accuracy"])[:, j], axis=1)
    key_text = (f"test - train loss at lr {m['common_lr']:g}: batch {m['batches'][0]} {gap[0]:.3g}, batch {m['batches'][-1]} "
                f"(full) {gap[-1]:.3g}; test accuracy {acc[0]:.3f} vs {acc[-1]:.3f}")
    return Verdict(HOLDS if gap[0] < 0.8 * gap[-1] else FAILS, key_text)


def verdict_batch_sharpness(m) -> Verdict:
    j = m["lrs"].index(m["common_lr"])
    sharp = np.median(np.array(m["sharpness"])[:, j], axis=1)
    bound = 2 / m["common_lr"]
    key_text = (f"top Hessian eigenvalue at the end, lr {m['common_lr']:g}: batch {m['batches'][0]} {sharp[0]:.3g}, "
                f"batch {m['batches'][-1]} (full) {sharp[-1]:.3g} (GD stability bound 2/lr = {bound:g})")
    return Verdict(HOLDS if sharp[0] < 0.8 * sharp[-1] else FAILS, key_text)


def _largest_stable(m) -> list:
    """Per batch size: the largest lr at which no seed diverged and the median run ended below its start."""
    out = []
    for b, row in enumerate(m["final_train_loss"]):
        ok = [lr for lr, loss, div in zip(m["lrs"], row, m["diverged"][b]) if div == 0 and loss < m["initial_loss"]]
        out.append(max(ok) if ok else 0.0)
    return out


def verdict_batch_lr(m) -> Verdict:
    best = [m["lrs"][int(np.argmin(row))] for row in m["final_train_loss"]]
    stable = _largest_stable(m)
    key_text = ("best lr / largest stable lr by batch: "
                + ", ".join(f"B={b}: {x:g} / {s:g}" for b, x, s in zip(m["batches"], best, stable)))
    rising = all(b >= a for a, b in itertools.pairwise(stable)) and stable[-1] > stable[0]
    best_rising = all(b >= a for a, b in itertools.pairwise(best)) and best[-1] > best[0]
    if rising and best_rising:
        return Verdict(HOLDS, key_text)
    if rising or best_rising:
        return Verdict(CAVEAT, key_text, "only the " + ("largest stable" if rising else "best") + " learning rate grows with the batch")
    return Verdict(FAILS, key_text)


def plot_batch(m):
    fig, axes = plotting.figure(3, width=3.9)
    labels = [f"batch {b}" + (" (full)" if i == len(m["batches"]) - 1 else "") for i, b in enumerate(m["batches"])]
    finite = lambda a: np.where(np.isfinite(np.array(a, dtype=float)), np.array(a, dtype=float), np.nan)
    gap, sharp = finite(m["gap"]), finite(m["sharpness"])
    untrained = ~(finite(m["final_train_loss"]) < m["initial_loss"])         # (batch, lr): the median run did not learn
    gap[untrained], sharp[untrained] = np.nan, np.nan
    for i, label in enumerate(labels):
        plotting.median_band(axes[0], m["lrs"], gap[i], axis=1, marker="o", label=label)
        plotting.median_band(axes[1], m["lrs"], sharp[i], axis=1, marker="o", label=label)
        axes[2].plot(m["lrs"], finite(m["final_train_loss"])[i], marker="o", label=label)
    lrs = np.array(m["lrs"], dtype=float)
    axes[1].plot(lrs, 2 / lrs, "k--", lw=1.2, label="2 / lr (GD stability edge)")
    plotting.theory(axes[2], m["initial_loss"], orientation="h", label="initial loss")
    for ax in axes:
        plotting.theory(ax, m["common_lr"], color="0.6")
    axes[0].set(xscale="log", xlabel="learning rate (left out where the median run did not learn)",
                ylabel="final test - train cross-entropy", title="generalisation gap (grey: compared lr)")
    axes[1].set(xscale="log", yscale="log", xlabel="learning rate", ylabel="top Hessian eigenvalue at the end",
                ylim=(0.05, 100), title="sharpness of the final point")
    axes[2].set(xscale="log", yscale="log", xlabel="learning rate", ylabel="final train loss (gaps: diverged)",
                title="usable learning rate")
    axes[0].legend()
    axes[1].legend(loc="upper right")
    axes[2].legend(loc="upper left")
    return fig


# --- gradient descent on a convex problem reaches the global minimum ------------------------------
#
# Least squares y ~ x w + b on 256 points with 5 features (noise 0.5): the loss is convex and its
# only minimum is the least-squares solution, computed here in float64 by numpy.  Each seed starts
# from a different random point (parameters N(0, 3^2)); gradient descent (batch 256 = all data)
# and constant-rate SGD (batch 8) run at lr 0.1.  Theory: GD contracts the error by at most
# max|1 - lr lambda| < 1 per step for every Hessian eigenvalue lambda, so it converges to that
# minimum from any start; SGD's gradient noise keeps it at a distance ~ sqrt(lr) from it.

CONVEX_N, CONVEX_FEATURES, CONVEX_BATCHES = 256, 5, (256, 8)
CONVEX_NOISE, CONVEX_DATA_KEY, CONVEX_INIT_SCALE = 0.5, 90, 3.0


@functools.cache
def _convex_data():
    x, y, _, _, _ = data.linear_regression(key(CONVEX_DATA_KEY), CONVEX_N, features=CONVEX_FEATURES,
                                           noise=CONVEX_NOISE)   # float32 data
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    design = np.concatenate([x, np.ones((CONVEX_N, 1))], axis=1)
    theta = np.linalg.lstsq(design, y, rcond=None)[0]                       # (features + 1, 1)
    return x, y, theta


def _convex_init(k, dtype):
    """A random start: weights N(0, CONVEX_INIT_SCALE^2), bias 0."""
    return {"w": CONVEX_INIT_SCALE * jax.random.normal(k, (CONVEX_FEATURES, 1), dtype), "b": jnp.zeros((1,), dtype)}


def _convex_problem(static):
    x, y, theta = _convex_data()
    dtype = jnp.result_type(float)
    theta = jnp.asarray(theta, dtype)
    loss = lambda p, xb, yb: losses.mse(xb @ p["w"] + p["b"][None, :], yb)
    best = float(losses.mse(jnp.asarray(x, dtype) @ theta[:-1] + theta[-1][None, :], jnp.asarray(y, dtype)))

    def evaluate(params, xe, ye):
        flat = jnp.concatenate([params["w"][:, 0], params["b"]])
        return {"distance": jnp.linalg.norm(flat - theta[:, 0]) / jnp.linalg.norm(theta), "excess_loss": loss(params, xe, ye) - best}
    return Problem(init_params=lambda k: _convex_init(k, dtype), loss=lambda p, xb, yb, k: loss(p, xb, yb), x=x.astype(dtype), y=y.astype(dtype),
                   evaluate=evaluate)


CONVEX_STUDY = Study("claims_convex_gd", _convex_problem, lambda c: optim.sgd(c["learning_rate"]),
                     hyperparameters={"learning_rate": 0.1}, static={"batch_size": 256},
                     description=common.describe(data=data.linear_regression, data_key=CONVEX_DATA_KEY, examples=CONVEX_N,
                                                 features=CONVEX_FEATURES, noise=CONVEX_NOISE, loss=losses.mse,
                                                 init=_convex_init, init_scale=CONVEX_INIT_SCALE))


def run_convex(config, store) -> dict:
    every = max(config.steps // 10, 1)
    spec = SweepSpec(CONVEX_STUDY, {"batch_size": list(CONVEX_BATCHES)}, seeds=config.seeds, steps=10 * every,
                     eval_every=every, chunk_steps=10 * every)
    res = run_sweep(spec, store=store, progress=False)
    distance = np.nan_to_num(res.curves["eval_distance"], nan=np.inf)          # (batch, seed, evals)
    return {"batches": list(CONVEX_BATCHES), "steps": res.eval_steps.tolist(), "distance": distance.tolist(),
            "gd_worst": float(distance[0, :, -1].max()), "sgd_median": float(np.median(distance[1, :, -1])),
            "excess_loss": np.median(res.final["eval_excess_loss"], axis=1).tolist()}


def verdict_convex(m) -> Verdict:
    gd, sgd = m["gd_worst"], m["sgd_median"]
    key_text = (f"relative distance to the least-squares solution after {m['steps'][-1]} steps: GD worst seed {gd:.2g}, "
                f"SGD batch {m['batches'][1]} median {sgd:.2g}")
    return graded(key_text, holds=gd < 1e-4 and sgd > 1e-3, core=gd < 1e-4,
                  caveat="constant-rate SGD got as close as gradient descent here")


def plot_convex(m):
    fig, ax = plotting.figure(width=5.5)
    d = np.array(m["distance"], dtype=float)
    for i, (b, label) in enumerate(zip(m["batches"], ("gradient descent (batch 256 = all)", f"SGD, batch {m['batches'][1]}"))):
        for run in d[i]:
            ax.semilogy(m["steps"], np.maximum(run, 1e-12), color=f"C{i}", alpha=0.35, lw=0.8)
        plotting.median_band(ax, m["steps"], np.maximum(d[i], 1e-12), label=label, color=f"C{i}")
    ax.set(xlabel="step", ylabel="|theta - theta_LS| / |theta_LS|",
           title="least squares (convex), random starts, lr 0.1")
    ax.legend()
    return fig


CLAIMS = (
    Claim("adaptive_steps_for_sparse_features", "002", "adaptive methods",
          "Adagrad and Adam suit sparse data: a weight whose feature is rarely non-zero still learns quickly, because "
          "its step is scaled by its own (small) gradient history, while SGD's shared rate leaves it behind.",
          f"linear least squares, {SPARSE_DENSE} dense + {SPARSE_RARE} binary features on in ~1% of {SPARSE_N} examples, "
          "batch 16, a sweep over optimizer (SGD, Adagrad, Adam) x lr in 0.01..3 x seeds, each at its lr with the lowest "
          "final loss; holds if Adam's and Adagrad's median relative error on the rare weights are both < 0.5x SGD's; "
          "caveat if only one is.",
          run_sparse, verdict_sparse, plot_sparse),
    Claim("small_batch_generalises", "002", "batch size",
          "Small mini-batches generalise better than large ones: the gradient noise acts as a regulariser, so the gap between "
          "test and training loss is smaller.",
          "MLP 64-64-10 tanh on 256 digits (512 test), SGD for 2x the base steps, a sweep over batch {8, 256} x lr in 0.1..3 x seeds; "
          "at lr 0.1 (fixed before the first run; the figure shows every lr) holds if batch 8's median final (test - train) "
          "cross-entropy is < 0.8x full-batch's.  Equal step counts: the full-batch run makes 32x more passes over the data.",
          run_batch, verdict_batch_generalisation, plot_batch),
    Claim("large_batch_sharp_minima", "002", "batch size",
          "Large batches tend to converge to sharper minima than small ones.",
          "same sweep, top Hessian eigenvalue of the training loss on all 256 examples by 20 Lanczos steps at the end; at lr 0.1 "
          "holds if batch 8's median sharpness is < 0.8x full-batch's.",
          run_batch, verdict_batch_sharpness, plot_batch),
    Claim("larger_batch_larger_lr", "002", "batch size",
          "Batch size and learning rate must be chosen together: the less noisy gradients of a larger batch tolerate a larger "
          "learning rate.",
          "same sweep, lr in 0.1..3; the largest stable lr is the largest with no diverged seed and a median final train loss "
          "below the initial one; holds if both it and the best lr (lowest median final train loss) are higher at batch 256 "
          "than at batch 8; caveat if only one of them is.",
          run_batch, verdict_batch_lr, plot_batch),
    Claim("gd_reaches_convex_minimum", "002", "GD vs SGD",
          "On a convex loss, full-batch gradient descent converges to the true (global) minimum from any start, while "
          "mini-batch SGD with a constant rate only gets close to it.",
          "least squares, 256 points, 5 features, starts w ~ N(0, 9) per seed, lr 0.1 for the base steps, a sweep over batch "
          "{256 (all), 8} x seeds; holds if every GD run ends within relative distance 1e-4 of the least-squares solution and "
          "SGD's median is > 1e-3 away; caveat if SGD gets as close too.",
          run_convex, verdict_convex, plot_convex),
)
