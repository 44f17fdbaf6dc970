"""Per-step update time of every lab optimizer against its optax twin (not a test).

    python benchmarks/optimizers.py [--steps 50] [--repeats 7] [--quick]

A step is ``update`` followed by ``apply_updates`` on a float32 pytree of about 1M
parameters (two matrices, a vector, a scalar, nested in dicts), with fixed gradients.
Each measurement jits a ``lax.fori_loop`` of ``--steps`` steps, so Python dispatch is
paid once per call, and reports the best of ``--repeats`` calls divided by ``--steps``.
lab and optax are timed alternately in the same process (each first in every other
pair), so drift hits both alike.
Ratio = lab / optax; the goal is <= 1.05 for every optimizer.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax
import optax.contrib

from lab import optim

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

LR = 1e-3

# name: (lab factory, optax factory, extra update kwargs)
TWINS = {
    "sgd": (lambda: optim.sgd(LR), lambda: optax.sgd(LR)),
    "sgd_momentum": (lambda: optim.sgd(LR, momentum=0.9), lambda: optax.sgd(LR, momentum=0.9)),
    "sgd_nesterov": (lambda: optim.sgd(LR, 0.9, nesterov=True), lambda: optax.sgd(LR, 0.9, nesterov=True)),
    "heavy_ball": (lambda: optim.heavy_ball(LR, 0.9), lambda: optax.sgd(LR * 0.1, momentum=0.9)),
    "adagrad": (lambda: optim.adagrad(LR), lambda: optax.adagrad(LR)),
    "rmsprop": (lambda: optim.rmsprop(LR), lambda: optax.rmsprop(LR)),
    "rmsprop_centered_mom": (lambda: optim.rmsprop(LR, centered=True, momentum=0.9),
                             lambda: optax.rmsprop(LR, centered=True, momentum=0.9)),
    "adadelta": (lambda: optim.adadelta(LR), lambda: optax.adadelta(LR)),
    "adam": (lambda: optim.adam(LR), lambda: optax.adam(LR)),
    "adamw": (lambda: optim.adamw(LR), lambda: optax.adamw(LR)),
    "amsgrad": (lambda: optim.amsgrad(LR), lambda: optax.amsgrad(LR)),
    "adamax": (lambda: optim.adamax(LR), lambda: optax.adamax(LR)),
    "nadam": (lambda: optim.nadam(LR), lambda: optax.nadam(LR)),
    "nadamw": (lambda: optim.nadamw(LR), lambda: optax.nadamw(LR)),
    "radam": (lambda: optim.radam(LR), lambda: optax.radam(LR)),
    "adabelief": (lambda: optim.adabelief(LR), lambda: optax.adabelief(LR)),
    "yogi": (lambda: optim.yogi(LR), lambda: optax.yogi(LR)),
    "lion": (lambda: optim.lion(LR), lambda: optax.lion(LR)),
    "lamb": (lambda: optim.lamb(LR), lambda: optax.lamb(LR)),
    "lars": (lambda: optim.lars(LR), lambda: optax.lars(LR)),
    "sign_sgd": (lambda: optim.sign_sgd(LR), lambda: optax.sign_sgd(LR)),
    "signum": (lambda: optim.signum(LR), lambda: optax.signum(LR)),
    "rprop": (lambda: optim.rprop(LR), lambda: optax.rprop(LR)),
    "noisy_sgd": (lambda: optim.noisy_sgd(LR, key=jax.random.key(0)),
                  lambda: optax.noisy_sgd(LR, key=jax.random.key(0))),
    "polyak_sgd": (lambda: optim.polyak_sgd(), lambda: optax.polyak_sgd()),
}
# the methods of current research, against optax.contrib
TWINS.update({
    "schedule_free_sgd": (lambda: optim.schedule_free_sgd(), lambda: optax.contrib.schedule_free_sgd()),
    "schedule_free_adamw": (lambda: optim.schedule_free_adamw(), lambda: optax.contrib.schedule_free_adamw()),
    "prodigy": (lambda: optim.prodigy(), lambda: optax.contrib.prodigy()),
    "dadapt_adamw": (lambda: optim.dadapt_adamw(), lambda: optax.contrib.dadapt_adamw()),
    "mechanize_adam": (lambda: optim.mechanize(optim.adam(LR)), lambda: optax.contrib.mechanize(optax.adam(LR))),
    "dog": (lambda: optim.dog(), lambda: optax.contrib.dog()),
    "dowg": (lambda: optim.dowg(), lambda: optax.contrib.dowg()),
    "cocob": (lambda: optim.cocob(), lambda: optax.contrib.cocob()),
    "adopt": (lambda: optim.adopt(LR), lambda: optax.contrib.adopt(LR)),
    "ademamix": (lambda: optim.ademamix(LR), lambda: optax.contrib.ademamix(LR)),
    "simplified_ademamix": (lambda: optim.simplified_ademamix(LR), lambda: optax.contrib.simplified_ademamix(LR)),
    "madgrad": (lambda: optim.madgrad(LR), lambda: optax.contrib.madgrad(LR)),
    "muon": (lambda: optim.muon(LR), lambda: optax.contrib.muon(LR)),
    "sam": (lambda: optim.sharpness_aware(optim.sgd(LR), rho=0.05),
            lambda: optax.contrib.sam(optax.sgd(LR), optax.chain(optax.contrib.normalize(), optax.sgd(0.05)))),
    "sophia": (lambda: optim.sophia(LR), lambda: optax.contrib.sophia(LR)),
})


def half_square(params):
    return 0.5 * sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(params))


# extra keyword arguments of update, by optimizer
EXTRA = {"polyak_sgd": lambda: {"value": jnp.asarray(1.0, jnp.float32)},
         "sophia": lambda: {"obj_fn": half_square}}


def make_params(scale: int = 1):
    """About 1M float32 parameters (scale=1) in a mixed, nested pytree."""
    k = jax.random.split(jax.random.key(0), 4)
    return {"dense": {"w": jax.random.normal(k[0], (1024 // scale, 512), jnp.float32),
                      "b": jax.random.normal(k[1], (512,), jnp.float32)},
            "out": {"w": jax.random.normal(k[2], (512, 960 // scale), jnp.float32)},
            "gain": jnp.ones((), jnp.float32)}


def timed_loop(opt, params, grads, steps: int, extra: dict):
    @jax.jit
    def run(params, state):
        def body(_, carry):
            p, s = carry
            u, s = opt.update(grads, s, p, **extra)
            return optax.apply_updates(p, u), s
        return jax.lax.fori_loop(0, steps, body, (params, state))

    state = opt.init(params)
    jax.block_until_ready(run(params, state))  # compile and warm up

    def once():
        t0 = time.perf_counter()
        jax.block_until_ready(run(params, state))
        return (time.perf_counter() - t0) / steps

    return once


def machine() -> str:
    return describe()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="8x fewer parameters, 3 repeats")
    ap.add_argument("--only", nargs="*", help="optimizer names to run")
    args = ap.parse_args()
    params = make_params(8 if args.quick else 1)
    repeats = 3 if args.quick else args.repeats
    n = sum(x.size for x in jax.tree_util.tree_leaves(params))
    grads = jax.tree_util.tree_map(lambda p: 1e-2 * jnp.cos(p), params)
    print(f"# optimizer update benchmark: {n:,} float32 parameters, {args.steps} steps per call, "
          f"best of {repeats}\n# {machine()}\n")
    print("| optimizer | lab (us/step) | optax (us/step) | lab/optax |")
    print("|---|---:|---:|---:|")
    worst = 0.0
    for name, (ours, theirs) in TWINS.items():
        if args.only and name not in args.only:
            continue
        extra = EXTRA.get(name, dict)()
        lab_once = timed_loop(ours(), params, grads, args.steps, extra)
        tax_once = timed_loop(theirs(), params, grads, args.steps, extra)
        t_lab, t_tax = [], []
        for i in range(repeats):  # alternate so both see the same machine state, and
            pair = [(t_lab, lab_once), (t_tax, tax_once)]  # each goes first half the time
            for times, once in (pair if i % 2 == 0 else pair[::-1]):
                times.append(once())
        a, b = min(t_lab), min(t_tax)
        worst = max(worst, a / b)
        print(f"| {name} | {a * 1e6:,.0f} | {b * 1e6:,.0f} | {a / b:.3f} |", flush=True)
    print(f"\nworst ratio {worst:.3f} (goal <= 1.05)")


if __name__ == "__main__":
    main()
