"""The tiny study every sweep test runs: an MLP 8-16-4 (tanh) on 64 fixed examples.

The data are made with NumPy so that building the problem compiles nothing (the
compile-count test counts every XLA compilation).  Also run as a script by the
subprocess tests: ``python tests/sweep_problem.py DB [--kill-after N] [--devices D]``
runs :func:`spec` (printing ``committed STEP`` after each chunk) and, with
``--kill-after``, sleeps after that many chunks so that the parent can kill it; with
``--distributed PORT INDEX COUNT`` it first joins a ``jax.distributed`` job of COUNT
processes whose coordinator listens on localhost:PORT.
"""
from __future__ import annotations

import sys

import numpy as np

from lab import losses, nets, optim
from lab.sweep import Problem, Study, SweepSpec, classification_metrics

RNG = np.random.RandomState(0)
X = RNG.randn(64, 8).astype(np.float32)
Y = (np.argmax(X[:, :4] + 0.5 * RNG.randn(64, 4), axis=1)).astype(np.int32)


def make_problem(static):
    net = nets.mlp([static["width"], 4], activation="tanh")

    def loss(params, xb, yb, key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)

    return Problem(init_params=lambda key: net.init(key, (-1, 8))[1], loss=loss, x=X, y=Y,
                   evaluate=classification_metrics(net.apply), eval_x=X[:32], eval_y=Y[:32])


def make_optimizer(config):
    return optim.sgd(config["learning_rate"], momentum=config["momentum"])


STUDY = Study("tiny_mlp", make_problem, make_optimizer,
              hyperparameters={"learning_rate": 0.1, "momentum": 0.9},
              static={"batch_size": 16, "width": 16},
              description={"data": "64 x 8 gaussian, 4 classes", "net": "mlp 8-[width]-4 tanh"})


def spec(grid=None, **overrides) -> SweepSpec:
    """The shared sweep shape: 40 steps, evaluations every 10, chunks of 20, 4 runs per device."""
    settings = dict(seeds=2, steps=40, eval_every=10, chunk_steps=20, runs_per_device=4)
    settings.update(overrides)
    return SweepSpec(STUDY, grid if grid is not None else {"learning_rate": [0.03, 0.1, 0.3]}, **settings)


def _main(argv) -> int:
    import argparse
    import time

    import jax

    import os
    jax.config.update("jax_enable_x64", os.environ.get("LAB_TEST_FLOAT32") != "1")   # as the tests run
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    jax.config.update("jax_numpy_rank_promotion", "raise")
    from lab.sweep import run_sweep

    parser = argparse.ArgumentParser()
    parser.add_argument("db")
    parser.add_argument("--kill-after", type=int, default=0)
    parser.add_argument("--devices", type=int, default=0)
    parser.add_argument("--distributed", type=int, nargs=3, metavar=("PORT", "INDEX", "COUNT"))
    args = parser.parse_args(argv)
    if args.distributed:
        port, index, count = args.distributed
        jax.distributed.initialize(f"localhost:{port}", num_processes=count, process_id=index,
                                   initialization_timeout=120)
    chunks = []

    def report(info):
        chunks.append(info["step"])
        print(f"committed {info['step']}", flush=True)
        if args.kill_after and len(chunks) == args.kill_after:
            time.sleep(600)  # the parent kills us here, after a commit

    devices = jax.devices()[:args.devices] if args.devices else None
    result = run_sweep(spec(), store=args.db, progress=False, devices=devices, on_chunk=report)
    print(f"done {result.sweep_id} {result.environment['device_count']}", flush=True)
    if args.distributed:
        jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
