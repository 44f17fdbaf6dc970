"""Normalisation layers: BatchNorm (with running statistics as explicit state) and LayerNorm.

Both normalise x_hat = (x - mu) / sqrt(sigma^2 + eps) and return y = gamma x_hat + beta,
with a learnable per-feature scale gamma and shift beta (the last axis is the
feature/channel axis, so (N, F) and NHWC (N, H, W, C) inputs both work).

BatchNorm (Ioffe & Szegedy 2015) takes mu, sigma^2 over every axis but the last:

* train mode: the batch's mean and biased (1/n) variance, and the state is updated
  ``running = momentum * running + (1 - momentum) * batch`` (default momentum 0.9);
* eval mode: the running mean and variance from the state; the state is unchanged.

Params ``{'scale': (F,), 'bias': (F,)}``; state ``{'mean': (F,), 'var': (F,)}``, starting
at zeros and ones.  Because it has state, a BatchNorm layer is used through
``init_with_state`` / ``apply_with_state``; its plain ``apply`` raises a ValueError.
Inside ``jax.vmap`` over examples each example is its own batch, so vmap over
parameters or seeds, not over the batch axis.

LayerNorm (Ba et al. 2016) takes mu, sigma^2 over the last axis of each example; it
behaves the same in train and eval mode and keeps no state.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lab.nets.core import Layer, check_features, stateless


def _normalise(x, mean, var, scale, bias, eps):
    """gamma (x - mu) / sqrt(sigma^2 + eps) + beta, all (F,) vectors broadcast on the last axis."""
    lead = (1,) * (x.ndim - 1)
    inv = jax.lax.rsqrt(var + eps) * scale
    return (x - mean.reshape(lead + mean.shape)) * inv.reshape(lead + inv.shape) + bias.reshape(lead + bias.shape)


def _scale_and_bias(name, in_shape, dtype):
    in_shape = tuple(in_shape)
    if len(in_shape) < 2:
        raise ValueError(f"{name}: expected an in_shape (N, ..., features), got {in_shape}")
    features = in_shape[-1]
    return in_shape, {"scale": jnp.ones((features,), dtype), "bias": jnp.zeros((features,), dtype)}


def BatchNorm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
    """Batch normalisation with running statistics in an explicit state (see module docstring)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"BatchNorm: momentum must lie in [0, 1], got {momentum}")

    def init(key, in_shape, *, dtype=jnp.float32):
        return _scale_and_bias("BatchNorm", in_shape, dtype)

    def init_with_state(key, in_shape, *, dtype=jnp.float32):
        out_shape, params = init(key, in_shape, dtype=dtype)
        features = out_shape[-1]
        state = {"mean": jnp.zeros((features,), dtype), "var": jnp.ones((features,), dtype)}
        return out_shape, params, state

    def apply(params, x, *, key=None, train=False):
        raise ValueError("BatchNorm keeps running statistics as state: build the net with "
                         "init_with_state and call apply_with_state(params, state, x, train=...)")

    def apply_with_state(params, state, x, *, key=None, train=False):
        check_features("BatchNorm", x.shape, params["scale"].shape[0], min_rank=2)
        if not train:
            return _normalise(x, state["mean"], state["var"], params["scale"], params["bias"], eps), state
        axes = tuple(range(x.ndim - 1))
        mean, var = jnp.mean(x, axis=axes), jnp.var(x, axis=axes)
        y = _normalise(x, mean, var, params["scale"], params["bias"], eps)
        new_state = {
            "mean": momentum * state["mean"] + (1.0 - momentum) * jax.lax.stop_gradient(mean),
            "var": momentum * state["var"] + (1.0 - momentum) * jax.lax.stop_gradient(var),
        }
        return y, new_state

    return Layer(init, apply, init_with_state, apply_with_state)


def LayerNorm(eps: float = 1e-5) -> Layer:
    """Layer normalisation over the last axis; params ``{'scale': (F,), 'bias': (F,)}``, no state."""

    def init(key, in_shape, *, dtype=jnp.float32):
        return _scale_and_bias("LayerNorm", in_shape, dtype)

    def apply(params, x, *, key=None, train=False):
        check_features("LayerNorm", x.shape, params["scale"].shape[0])
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.var(x, axis=-1, keepdims=True)
        x_hat = (x - mean) * jax.lax.rsqrt(var + eps)
        lead = (1,) * (x.ndim - 1)
        return x_hat * params["scale"].reshape(lead + (-1,)) + params["bias"].reshape(lead + (-1,))

    return stateless(init, apply)
