"""Small helpers the claim modules share: keys, full-batch training, per-layer gradient norms, data
and the description of a problem on a slice of the digits (:func:`digits_facts`)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lab import data, losses, train
from studies import common

DIGIT_FEATURES = 64                  # pixels of an 8x8 digit: the input width of every digits net here
SMALL_TRAIN, SMALL_TEST = 128, 256   # :func:`small_digits`' training and evaluation examples


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


def small_digits(net, loss, evaluate, *, train: int = SMALL_TRAIN, test: int = SMALL_TEST):
    """A Problem on the first ``train`` digits with the next ``test`` as the evaluation set;
    ``evaluate(params, x_eval, y_eval, x_train, y_train)`` sees both."""
    from lab.sweep import Problem
    x, y, xt, yt = digits_subset(train)
    return Problem(init_params=lambda k: net.init(k, (-1, DIGIT_FEATURES))[1], loss=loss, x=np.asarray(x), y=np.asarray(y),
                   evaluate=lambda params, xe, ye: evaluate(params, xe, ye, x, y),
                   eval_x=np.asarray(xt[:test]), eval_y=np.asarray(yt[:test]))


def digits_facts(train: int, test: int, **facts) -> dict:
    """The description of a problem trained on the first ``train`` digits and evaluated on the
    next ``test`` (:func:`digits_subset`), with ``facts`` (net, loss, ...) through
    :func:`studies.common.describe`."""
    return common.describe(data=digits_subset, train=train, test=test, **facts)


def dress(axes, *settings: dict, legend: dict | None = None):
    """``axes[i].set(**settings[i])`` for each given setting, a legend on each ``legend`` index
    (with its keyword arguments); returns the figure."""
    for ax, setting in zip(axes, settings):
        ax.set(**setting)
    for i, kwargs in (legend or {}).items():
        axes[i].legend(**kwargs)
    return axes[0].figure
