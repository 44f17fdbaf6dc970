"""Small helpers the claim modules share: keys, full-batch training, per-layer gradient norms, data."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, train


def key(i: int):
    return jax.random.key(i)


def fit(loss, params, optimizer, steps: int):
    """Full-batch training of ``loss(params)`` for ``steps`` updates in one scan
    (:func:`lab.train.fit`); returns (params, losses before each update as a NumPy array)."""
    p, values = train.fit(loss, params, optimizer, steps)
    return p, np.asarray(values, dtype=np.float64)


def dense_grad_norms(grads) -> list[float]:
    """The Frobenius norm of each Dense layer's weight gradient, input layer first."""
    return [float(jnp.linalg.norm(g["w"])) for g in grads if isinstance(g, dict) and "w" in g]


@functools.cache
def digits_subset(n: int = 512):
    """The first ``n`` digits (float32, scaled) and their labels, with the rest as a test set."""
    x, y = data.load_digits()
    return x[:n], y[:n], x[n:], y[n:]


def ce(net):
    return lambda p, x, y: losses.softmax_cross_entropy_with_integer_labels(net.apply(p, x), y)
