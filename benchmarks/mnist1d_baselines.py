"""The MNIST-1D baselines of Greydanus (2020) trained with lab.nets + lab.optim.adam (not a test).

    python benchmarks/mnist1d_baselines.py [--steps 6000] [--seeds 1] [--models logistic mlp cnn]

The models are those of the reference code (mnist1d ``notebooks/models.py``), rebuilt from
lab layers:

* logistic: Dense(10) on the 40 inputs (410 parameters);
* mlp: Dense(100) -> ReLU -> Residual(Dense(100) -> ReLU) -> Dense(10) (15,210 parameters);
* cnn: three 1-D convolutions of 25 channels, kernels 5, 3, 3, stride 2, padding 1, ReLU
  after each (40 -> 19 -> 10 -> 5 points), then Dense(10) on the 125 features (5,210
  parameters); written as Conv2D on (N, 1, 40, 1) inputs with 1 x k kernels.

Training follows the reference's ``train.py``: Adam with learning rate 1e-2, batches of 100,
softmax cross-entropy, 6,000 steps (the 2020 setting; the 2024 code uses 8,000).  Batches
are drawn by ``lab.train.train`` (shuffled epochs of 40 batches) rather than the reference's
fixed cyclic order, and the weights start from lab's Glorot-normal initialiser, not
PyTorch's uniform one.  The test accuracy is measured after every epoch (40 steps); the
table shows the final and the best one, mean over ``--seeds`` initialisations, beside the
paper's (README of github.com/greydanus/mnist1d: logistic 32%, MLP 68%, CNN 94%).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, nets, optim, train, workloads

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

PAPER = {"logistic": 32.0, "mlp": 68.0, "cnn": 94.0}  # test accuracy (%), the paper's table
BATCH = 100
LEARNING_RATE = 1e-2


def model(name: str) -> tuple[nets.Layer, tuple[int, ...]]:
    """The network and the input shape it takes (:func:`lab.workloads.mnist1d_model`)."""
    if name not in PAPER:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(PAPER)}")
    return workloads.mnist1d_model(name)


def run(name: str, seed: int, steps: int, split) -> dict:
    x, y, x_test, y_test = split
    net, in_shape = model(name)
    x, x_test = x.reshape((x.shape[0],) + in_shape[1:]), x_test.reshape((x_test.shape[0],) + in_shape[1:])
    _, params = net.init(jax.random.key(seed), in_shape)

    def loss_fn(params, xb, yb, key):
        return losses.softmax_cross_entropy_with_integer_labels(net.apply(params, xb), yb)

    test_accuracy = jax.jit(lambda p: train.accuracy(net.apply(p, x_test), y_test))
    history = []
    epochs = max(1, steps // (x.shape[0] // BATCH))
    start = time.perf_counter()
    result = train.train(loss_fn, params, optim.adam(LEARNING_RATE), x, y, key=jax.random.key(1000 + seed),
                         batch_size=BATCH, epochs=epochs,
                         callback=lambda epoch, p, _: history.append(float(test_accuracy(p))))
    seconds = time.perf_counter() - start
    return {"params": nets.param_count(result.params), "final": 100 * history[-1],
            "best": 100 * max(history), "train_loss": float(np.mean(result.step_losses[-40:])),
            "steps": epochs * (x.shape[0] // BATCH), "seconds": seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["logistic", "mlp", "cnn"], choices=sorted(PAPER))
    args = parser.parse_args(argv)
    start = time.perf_counter()
    split = data.load_mnist1d()
    print(f"MNIST-1D generated in {time.perf_counter() - start:.2f} s; {describe()}")
    print(f"{'model':<9} {'params':>7} {'steps':>6} {'final %':>8} {'best %':>7} {'paper %':>8} "
          f"{'train loss':>10} {'s/run':>6}")
    for name in args.models:
        runs = [run(name, seed, args.steps, split) for seed in range(args.seeds)]
        mean = {k: float(np.mean([r[k] for r in runs])) for k in ("final", "best", "train_loss", "seconds")}
        print(f"{name:<9} {runs[0]['params']:>7} {runs[0]['steps']:>6} {mean['final']:>8.1f} "
              f"{mean['best']:>7.1f} {PAPER[name]:>8.0f} {mean['train_loss']:>10.2e} {mean['seconds']:>6.1f}",
              flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # start JAX before the first timing
    main()
