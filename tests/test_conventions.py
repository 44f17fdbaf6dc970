"""Where optimizer implementations disagree, measured: the source of docs/conventions.md.

Each row runs the lab's optimizer (``lab.optim``) and the rival convention (a float64
textbook loop below, or optax) on the same gradients and reports the numbers that tell
them apart.  ``test_conventions_numbers`` asserts each difference; ``test_doc_is_current``
asserts docs/conventions.md is exactly the rendering of these measurements, so the doc
cannot drift.  Regenerate it with ``python -m tests.test_conventions``.
"""
from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab import optim

DOC = Path(__file__).resolve().parent.parent / "docs" / "conventions.md"
GRADS = np.random.default_rng(0).normal(size=(20, 3))  # a fixed gradient sequence
STEP_LR = optim.piecewise_constant_schedule(0.1, {10: 0.1})  # lr 0.1, then 0.01 from step 10


def run_lab(opt, grads, p0=None, grad_fn=None, **extra):
    """Apply ``opt`` to a sequence of gradients (or ``grad_fn(p)``); return the iterates."""
    p = jnp.zeros(3) if p0 is None else jnp.asarray(p0, dtype=jnp.float64)
    state, path = opt.init(p), []
    for g in (grads if grad_fn is None else range(len(grads))):
        g = grad_fn(p) if grad_fn is not None else jnp.asarray(g)
        u, state = opt.update(g, state, p, **extra)
        p = optim.apply_updates(p, u)
        path.append(np.asarray(p))
    return np.stack(path)


def momentum_placement():
    """sgd: buffer of raw gradients, lr applied after; rmsprop-style: buffer of lr-scaled steps."""
    out = {}
    for tag, lr in (("constant", 0.1), ("step", STEP_LR)):
        before = run_lab(optim.sgd(lr, momentum=0.9), GRADS)
        after = run_lab(optim.chain(optim.scale_by_learning_rate(lr), optim.trace(0.9)), GRADS)
        out[tag] = float(np.max(np.abs(before - after)))
    return out


def pytorch_vs_sutskever():
    """Nesterov: PyTorch's iterate is Sutskever's look-ahead point p + mu v (constant lr)."""
    mu, lr, a = 0.9, 0.05, np.array([1.0, 10.0, 0.1])
    grad = lambda x: a * x  # noqa: E731  (quadratic 1/2 sum a x^2)
    torch_p = run_lab(optim.sgd(lr, momentum=mu, nesterov=True), GRADS, p0=np.ones(3),
                      grad_fn=lambda p: a * p)
    p, v, plain, ahead = np.ones(3), np.zeros(3), [], []
    for _ in range(len(GRADS)):  # Sutskever et al. 2013, eq. (3)-(4)
        v = mu * v - lr * grad(p + mu * v)
        p = p + v
        plain.append(p.copy())
        ahead.append(p + mu * v)
    return {"vs_plain": float(np.max(np.abs(torch_p - np.stack(plain)))),
            "vs_lookahead": float(np.max(np.abs(torch_p - np.stack(ahead))))}


def heavy_ball_forms():
    """EMA form with lr a vs accumulator form with lr a and with lr a (1 - beta)."""
    const = np.ones((200, 3))
    ema = run_lab(optim.heavy_ball(0.1, beta=0.9), const)
    acc = run_lab(optim.sgd(0.1, momentum=0.9), const)
    acc_scaled = run_lab(optim.sgd(0.1 * (1 - 0.9), momentum=0.9), const)
    step = lambda path: abs(path[-1, 0] - path[-2, 0])  # noqa: E731
    return {"late_step_ratio": step(acc) / step(ema),
            "scaled_max_diff": float(np.max(np.abs(ema - acc_scaled)))}


def adam_eps():
    """First step for a tiny gradient g = 1e-8 with lr = 1: where eps enters decides the size."""
    g = np.full((1, 3), 1e-8)
    outside = run_lab(optim.adam(1.0, eps=1e-8), g)[0, 0]
    in_root = run_lab(optim.adam(1.0, eps=0.0, eps_root=1e-8), g)[0, 0]
    b1, b2, t, eps_hat = 0.9, 0.999, 1, 1e-8  # TensorFlow/Keras: eps-hat on the uncorrected sqrt(v)
    m, v = (1 - b1) * g[0, 0], (1 - b2) * g[0, 0] ** 2
    tf = -(math.sqrt(1 - b2 ** t) / (1 - b1 ** t)) * m / (math.sqrt(v) + eps_hat)
    return {"eps_outside": float(-outside), "eps_root": float(-in_root), "tf_eps_hat": float(-tf)}


def amsgrad_max():
    """A large gradient then small ones: the running max of corrected vs raw second moments."""
    g = np.concatenate([np.full((1, 3), 10.0), np.full((9, 3), 1.0)])
    lab_path = run_lab(optim.amsgrad(1.0), g)[:, 0]
    b1, b2, m, v, vmax, p, raw_path = 0.9, 0.999, 0.0, 0.0, 0.0, 0.0, []
    for t, gt in enumerate(g[:, 0], start=1):  # PyTorch: max of raw v, corrected by the current t
        m, v = b1 * m + (1 - b1) * gt, b2 * v + (1 - b2) * gt ** 2
        vmax = max(vmax, v)
        p -= (m / (1 - b1 ** t)) / (math.sqrt(vmax / (1 - b2 ** t)) + 1e-8)
        raw_path.append(p)
    return {"lab_step10": float(lab_path[-2] - lab_path[-1]),
            "raw_max_step10": float(raw_path[-2] - raw_path[-1])}


def adamw_decay():
    """Zero gradients, 100 steps, lr 1e-3, wd 1e-2: how much of p is left."""
    zeros = np.zeros((100, 3))
    lab_p = run_lab(optim.adamw(1e-3, weight_decay=1e-2), zeros, p0=np.ones(3))[-1, 0]
    return {"lab_times_lr": float(lab_p), "fully_decoupled": (1 - 1e-2) ** 100}


def adadelta_no_lr():
    """learning_rate=None on f(x) = sum x^2 from (1, 2, 3), 20 steps: f before and after."""
    f = lambda x: float(np.sum(np.asarray(x) ** 2))  # noqa: E731
    x0 = jnp.array([1.0, 2.0, 3.0])
    lab_x = run_lab(optim.adadelta(), np.zeros((20, 3)), p0=x0, grad_fn=lambda p: 2 * p)[-1]
    tx, x = optax.adadelta(), x0
    state = tx.init(x)
    for _ in range(20):
        u, state = tx.update(2 * x, state, x)
        x = optax.apply_updates(x, u)
    return {"f0": f(x0), "lab": f(lab_x), "optax": f(x)}


def adagrad_init():
    """First step for g = 0.01, lr = 1: accumulator starting at 0.1 (optax, lab, TF) vs 0 (PyTorch)."""
    lab_step = -run_lab(optim.adagrad(1.0), np.full((1, 3), 0.01))[0, 0]
    torch_step = 0.01 / (math.sqrt(0.01 ** 2) + 1e-10)
    return {"init_0.1": float(lab_step), "init_0": torch_step}


def counters():
    """Warmup 0 -> 0.1 over 10 steps and Adam's bias correction on the first update."""
    warm = optim.linear_schedule(0.0, 0.1, 10)
    first = -run_lab(optim.sgd(warm), np.ones((2, 3)))[:, 0]
    adam_first = -run_lab(optim.adam(0.1, eps=0.0), np.full((1, 3), 3.0))[0, 0]
    return {"warmup_step1": float(first[0]), "warmup_step2": float(first[1] - first[0]),
            "adam_step1": float(adam_first)}


def sam_pick():
    """SAM (sync period 2) from p = (1, 1, 1): a gradient, then a zero gradient at the
    perturbed point, where the unused ascent branch normalises 0 (NaN)."""
    grads = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    lab_p = run_lab(optim.sharpness_aware(optim.sgd(0.1), rho=0.05), grads, p0=np.ones(3))[-1]
    import jax
    import optax.contrib
    tx = optax.contrib.sam(optax.sgd(0.1), optax.chain(optax.contrib.normalize(), optax.sgd(0.05)))
    x = jnp.ones(3)
    with jax.numpy_dtype_promotion("standard"):   # optax mixes bools and floats
        state = tx.init(x)
        for grad in grads:
            u, state = tx.update(jnp.asarray(grad), state, x)
            x = optax.apply_updates(x, u)
    return {"lab": lab_p.tolist(), "optax_nan": int(np.isnan(np.asarray(x)).sum())}


def g(x: float) -> str:
    """3 significant digits; rounding-level differences print as "< 1e-12" on every machine."""
    return "< 1e-12" if abs(x) < 1e-12 else f"{x:.3g}"


ROWS = [
    ("Momentum buffer before or after the learning rate", momentum_placement,
     "optax `sgd`: `v = g + mu v`, `u = -lr v`; optax `rmsprop(momentum=...)`: the buffer holds `lr`-scaled steps",
     "lab follows optax in both (`sgd` before, `rmsprop` after)",
     lambda r: f"equal under a constant lr (max diff {g(r['constant'])}); after a 10x lr drop at step 10 they differ by {g(r['step'])}"),
    ("PyTorch vs Sutskever momentum (Nesterov)", pytorch_vs_sutskever,
     "PyTorch/optax: `u = -lr (g + mu v)`; Sutskever et al. 2013: `v = mu v - lr grad(p + mu v)`, `p += v`",
     "lab uses the PyTorch/optax form: its iterate is Sutskever's look-ahead point `p + mu v`",
     lambda r: f"lab vs Sutskever's `p`: {g(r['vs_plain'])}; vs Sutskever's `p + mu v`: {g(r['vs_lookahead'])}"),
    ("Heavy ball: EMA form vs accumulator form", heavy_ball_forms,
     "EMA `v = b v + (1-b) g` (the seeds, Keras-style) vs accumulator `v = b v + g` (optax, PyTorch)",
     "`heavy_ball` is the EMA form; `sgd(momentum=b)` the accumulator; `heavy_ball(a) == sgd(a (1-b))`",
     lambda r: f"same lr: accumulator's late step is {g(r['late_step_ratio'])}x larger (1/(1-b) = 10); with lr scaled by (1-b): max diff {g(r['scaled_max_diff'])}"),
    ("Adam: eps outside the root, inside it, or TensorFlow's eps-hat", adam_eps,
     "optax/PyTorch: `m^/(sqrt(v^) + eps)`; optax `eps_root`: `m^/sqrt(v^ + eps_root)`; TF/Keras: `eps` added to the *uncorrected* `sqrt(v)` with the corrections folded into lr",
     "lab follows optax (`eps` outside, optional `eps_root`)",
     lambda r: f"first step for g = 1e-8, lr = 1: eps outside {g(r['eps_outside'])}, eps_root {g(r['eps_root'])}, TF eps-hat {g(r['tf_eps_hat'])}"),
    ("AMSGrad: max over corrected or raw second moments", amsgrad_max,
     "optax: `max(vmax, v^)` over bias-corrected `v^`; PyTorch: max over raw `v`, then corrected by the current step",
     "lab follows optax",
     lambda r: f"gradients 10, then 1 x 9: step 10 is {g(r['lab_step10'])} (lab) vs {g(r['raw_max_step10'])} (raw max)"),
    ("AdamW: decay times the learning rate, or fully decoupled", adamw_decay,
     "optax/PyTorch: `u = -lr (adam + wd p)`; Loshchilov & Hutter's decoupled form multiplies `wd` only by the schedule multiplier",
     "lab follows optax: `weight_decay` is multiplied by `learning_rate`",
     lambda r: f"zero gradients, lr 1e-3, wd 1e-2, 100 steps: p keeps {g(r['lab_times_lr'])} (lab) vs {g(r['fully_decoupled'])} (fully decoupled)"),
    ("AdaDelta with no learning rate", adadelta_no_lr,
     "Zeiler 2012 has no learning rate (i.e. 1); optax's `learning_rate=None` skips the sign flip, so it *ascends*",
     "lab: `learning_rate=None` means 1 and descends (a deliberate difference from optax)",
     lambda r: f"f(x) = sum x^2 from f = {g(r['f0'])}, 20 steps: lab {g(r['lab'])}, optax {g(r['optax'])}"),
    ("AdaGrad's initial accumulator", adagrad_init,
     "optax and TF start the sum of squares at 0.1; PyTorch at 0 (with eps outside the root)",
     "lab follows optax (`initial_accumulator_value=0.1`, `eps=1e-7` inside the root)",
     lambda r: f"first step for g = 0.01, lr = 1: {g(r['init_0.1'])} (start 0.1) vs {g(r['init_0'])} (start 0: a sign step)"),
    ("Counters: schedules from 0, bias correction from 1", counters,
     "optax: the first update uses `schedule(0)` and bias correction with t = 1; some loops step the scheduler first (lr(1) on the first update)",
     "lab follows optax: a warmup from 0 wastes its first update; Adam's first step is exactly `lr` in size",
     lambda r: f"warmup 0->0.1 over 10 steps: step 1 moves {g(r['warmup_step1'])}, step 2 moves {g(r['warmup_step2'])}; Adam step 1 (eps 0): {g(r['adam_step1'])}"),
    ("SAM: choosing the ascent or the descent step", sam_pick,
     "optax.contrib `sam` blends them, `c x + (1 - c) y` with `c` 0 or 1, so a NaN in the unused branch poisons the step",
     "lab selects with `where` (a deliberate difference from optax; equal wherever both branches are finite)",
     lambda r: f"a zero gradient at the perturbed point: lab's params {', '.join(g(v) for v in r['lab'])}; optax's {r['optax_nan']} of 3 NaN"),
]


def render() -> str:
    lines = ["# Optimizer conventions: where implementations disagree",
             "",
             "Generated by `python -m tests.test_conventions` from measurements in float64;",
             "`tests/test_conventions.py` fails if this file and the measurements drift apart.",
             "",
             "| convention | the alternatives | what lab does | measured difference |",
             "|---|---|---|---|"]
    for title, measure, alternatives, choice, numbers in ROWS:
        lines.append(f"| {title} | {alternatives} | {choice} | {numbers(measure())} |")
    return "\n".join(lines) + "\n"


def test_conventions_numbers():
    mp = momentum_placement()
    assert mp["constant"] < 1e-12 and mp["step"] > 1e-3
    ps = pytorch_vs_sutskever()
    assert ps["vs_lookahead"] < 1e-12 and ps["vs_plain"] > 1e-3
    hb = heavy_ball_forms()
    assert hb["late_step_ratio"] == pytest.approx(10.0, rel=1e-6) and hb["scaled_max_diff"] < 1e-12
    ae = adam_eps()
    assert ae["eps_outside"] == pytest.approx(0.5, rel=1e-9)
    assert ae["eps_root"] == pytest.approx(1e-4, rel=1e-6)
    assert ae["tf_eps_hat"] == pytest.approx(0.0306, rel=1e-2)
    am = amsgrad_max()
    assert abs(am["lab_step10"] - am["raw_max_step10"]) > 1e-3
    aw = adamw_decay()
    assert aw["lab_times_lr"] == pytest.approx((1 - 1e-5) ** 100, rel=1e-9) and aw["fully_decoupled"] < 0.37
    ad = adadelta_no_lr()
    assert ad["lab"] < ad["f0"] < ad["optax"]
    ag = adagrad_init()
    assert ag["init_0.1"] == pytest.approx(0.01 / math.sqrt(0.1 + 1e-4 + 1e-7), rel=1e-9)
    assert ag["init_0"] == pytest.approx(1.0, rel=1e-6)
    co = counters()
    assert co["warmup_step1"] == 0.0 and co["warmup_step2"] == pytest.approx(0.01, rel=1e-12)
    assert co["adam_step1"] == pytest.approx(0.1, rel=1e-12)
    sp = sam_pick()
    assert np.all(np.isfinite(sp["lab"])) and sp["optax_nan"] == 3


def test_doc_is_current():
    assert DOC.read_text() == render(), "docs/conventions.md is stale: run `python -m tests.test_conventions`"


if __name__ == "__main__":
    import jax

    jax.config.update("jax_enable_x64", True)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render())
    print(f"wrote {DOC}")
