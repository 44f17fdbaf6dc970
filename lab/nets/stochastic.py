"""Random regularisers: Dropout (drops units) and DropConnect (drops weights).

With drop rate r the retention (keep) probability is p = 1 - r, and a mask entry
m ~ Bernoulli(p).  Both layers keep the expectation: the test-time output equals
the mean of the train-time output over masks.

    Dropout, inverted (default):  train  y = m x / p        test  y = x
    Dropout, standard:            train  y = m x            test  y = p x
    DropConnect:                  train  y = x (M * W) + b  test  y = x (p W) + b

In train mode these layers need ``key=``; without one they raise a ValueError.
Test mode (``train=False``) is deterministic and ignores ``key``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lab.nets.core import Layer, add_bias, check_features, need_key, stateless
from lab.nets.layers import InitSpec, dense_init


def _keep_probability(name: str, rate: float) -> float:
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name}: rate is the drop probability and must lie in [0, 1), got {rate}")
    return 1.0 - rate


def Dropout(rate: float, mode: str = "inverted") -> Layer:
    """Zero each unit independently with probability ``rate`` at train time (Srivastava et al. 2014).

    ``mode='inverted'`` rescales the kept units by 1/p while training, so test time is
    the identity; ``mode='standard'`` trains without rescaling and multiplies by p at
    test time.  Any input shape; no params."""
    keep = _keep_probability("Dropout", rate)
    if mode not in ("inverted", "standard"):
        raise ValueError(f"Dropout: mode must be 'inverted' or 'standard', got {mode!r}")

    def init(key, in_shape, *, dtype=jnp.float32):
        return tuple(in_shape), ()

    def apply(params, x, *, key=None, train=False):
        if not train:
            return x if mode == "inverted" else x * keep
        mask = jax.random.bernoulli(need_key("Dropout", key), keep, x.shape)
        kept = x / keep if mode == "inverted" else x
        return jnp.where(mask, kept, jnp.zeros_like(x))

    return stateless(init, apply)


def DropConnect(out: int, rate: float, w_init: InitSpec = "glorot_normal",
                b_init: InitSpec = "zeros", use_bias: bool = True) -> Layer:
    """Dense layer whose individual weights are dropped at train time (Wan et al. 2013).

    Train: one mask M ~ Bernoulli(p) of W's shape per call, shared by the batch (Wan
    et al. draw one per example; the expectation is the same), y = x (M * W) + b.
    Test: the expected weights, y = x (p W) + b.  The bias is never dropped.
    Params as for ``Dense``: ``{'w': (in, out), 'b': (out,)}``."""
    keep = _keep_probability("DropConnect", rate)
    init = dense_init("DropConnect", out, w_init, b_init, use_bias)

    def apply(params, x, *, key=None, train=False):
        w = params["w"]
        check_features("DropConnect", x.shape, w.shape[0])
        if train:
            mask = jax.random.bernoulli(need_key("DropConnect", key), keep, w.shape)
            w = jnp.where(mask, w, jnp.zeros_like(w))
        else:
            w = keep * w
        y = x @ w
        return add_bias(y, params["b"]) if use_bias else y

    return stateless(init, apply)
