"""Activation functions: pure, elementwise (or along an axis) maps ``x -> f(x)``.

Contract: every activation takes an array and returns an array of the same shape
and dtype.  Parametrised ones take their parameter as a keyword (``leaky_relu``'s
``negative_slope``, ``elu``'s ``alpha``) or, for ``prelu``, as a learnable array
argument ``slope`` that broadcasts against ``x``.  ``get(name)`` looks one up by
name and raises a ValueError listing the valid names.

Derivatives are whatever ``jax.grad`` gives; the tests check them against the
closed forms (``sigmoid' = s(1 - s) <= 1/4``, ``tanh' = 1 - tanh^2 <= 1``) and
central finite differences.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def identity(x: Array) -> Array:
    """f(x) = x.  A network with only identity activations is a linear model."""
    return x


def step(x: Array) -> Array:
    """Heaviside step: 1 where x >= 0, else 0 (the perceptron's activation).

    Its derivative is 0 almost everywhere, so gradient descent gets no signal
    through it; the perceptron uses its own learning rule instead."""
    return jnp.where(x >= 0, jnp.ones_like(x), jnp.zeros_like(x))


def sigmoid(x: Array) -> Array:
    """Logistic function 1 / (1 + exp(-x)); derivative s (1 - s) <= 1/4."""
    return jax.nn.sigmoid(x)


def tanh(x: Array) -> Array:
    """Hyperbolic tangent, zero-centred; derivative 1 - tanh(x)^2 <= 1."""
    return jnp.tanh(x)


def relu(x: Array) -> Array:
    """max(x, 0); derivative 1 for x > 0 and 0 for x < 0 (0 at x = 0)."""
    return jnp.where(x > 0, x, jnp.zeros_like(x))  # jnp.maximum would give grad 1/2 at 0


def leaky_relu(x: Array, negative_slope: float = 0.01) -> Array:
    """x for x >= 0, negative_slope * x otherwise (no dead units)."""
    return jnp.where(x >= 0, x, negative_slope * x)


def prelu(x: Array, slope: Array) -> Array:
    """Parametric ReLU (He et al. 2015): like leaky_relu with a learnable ``slope``.

    ``slope`` is a scalar or an array aligned with the trailing axes of ``x``
    (e.g. one slope per feature, shape (C,) for x of shape (B, C))."""
    slope = jnp.asarray(slope, dtype=x.dtype)
    if slope.ndim < x.ndim:  # a per-feature slope of shape (C,) aligns with x's last axes
        slope = slope.reshape((1,) * (x.ndim - slope.ndim) + slope.shape)
    return jnp.where(x >= 0, x, slope * x)


def elu(x: Array, alpha: float = 1.0) -> Array:
    """x for x > 0, alpha (exp(x) - 1) otherwise (Clevert et al. 2016)."""
    safe = jnp.where(x > 0, jnp.zeros_like(x), x)  # keeps exp finite on the unused branch
    return jnp.where(x > 0, x, alpha * jnp.expm1(safe))


def gelu(x: Array, approximate: bool = False) -> Array:
    """x Phi(x), Phi the standard normal CDF (Hendrycks & Gimpel 2016).

    ``approximate=True`` uses the tanh approximation."""
    return jax.nn.gelu(x, approximate=approximate)


def swish(x: Array) -> Array:
    """x sigmoid(x) (Ramachandran et al. 2017); also called SiLU."""
    return x * jax.nn.sigmoid(x)


silu = swish


def softplus(x: Array) -> Array:
    """log(1 + exp(x)), computed stably; a smooth ReLU whose derivative is sigmoid."""
    return jnp.logaddexp(x, jnp.zeros_like(x))


def softmax(x: Array, axis: int = -1) -> Array:
    """exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis`` (stable for |x| ~ 1e4)."""
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(z)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def log_softmax(x: Array, axis: int = -1) -> Array:
    """x_i - logsumexp(x) along ``axis``, computed after subtracting the max."""
    z = x - jax.lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return z - jnp.log(jnp.sum(jnp.exp(z), axis=axis, keepdims=True))


ACTIVATIONS: dict[str, Callable[..., Array]] = {
    "identity": identity,
    "linear": identity,
    "step": step,
    "sigmoid": sigmoid,
    "tanh": tanh,
    "relu": relu,
    "leaky_relu": leaky_relu,
    "prelu": prelu,
    "elu": elu,
    "gelu": gelu,
    "swish": swish,
    "silu": silu,
    "softplus": softplus,
    "softmax": softmax,
    "log_softmax": log_softmax,
}


def get(name_or_fn: str | Callable[..., Array]) -> Callable[..., Array]:
    """Return the activation called ``name_or_fn``; a callable is returned as is."""
    if callable(name_or_fn):
        return name_or_fn
    try:
        return ACTIVATIONS[name_or_fn]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(ACTIVATIONS))
        raise ValueError(f"unknown activation {name_or_fn!r}; valid names: {valid}") from None
