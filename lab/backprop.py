"""Backprop made visible: a hand-written forward and backward pass for an MLP.

Nothing here calls ``jax.grad``; every derivative is written out, so the code can
be read next to the equations and checked against autodiff in the tests.

Contract.  ``params`` is a list of L layers, layer l a dict ``{'W': (n_l, n_{l-1}),
'b': (n_l,)}`` in the textbook column form ``z_l = W_l a_{l-1} + b_l``.  A batch
holds examples as rows: ``x`` has shape ``(B, n_0)`` and each layer computes

    z_l = a_{l-1} @ W_l.T + b_l          (B, n_l)     pre-activation
    a_l = f(z_l)  for l < L,   a_L = z_L               hidden activation f, linear output

with ``a_0 = x``.  Python lists are 0-based: ``params[l-1]``, ``trace.z[l-1]`` and
``deltas[l-1]`` belong to layer l, while ``trace.a[l]`` is a_l (``trace.a[0] = x``).

The loss is a batch mean  L = (1/B) sum_i ell_i  of a per-example loss on the output:
    'mse':                     ell_i = 1/2 ||a_L,i - y_i||^2
    'softmax_cross_entropy':   ell_i = -sum_k y_ik log softmax(a_L,i)_k     (y one-hot rows)

Backward pass (the chain rule, one example's row at a time).  The error signal of
layer l is the *per-example* derivative  delta_l = d ell / d z_l,  shape (B, n_l):

    delta_L = a_L - y                     (mse)
            = softmax(z_L) - y            (cross-entropy, one-hot y)
    delta_l = (delta_{l+1} @ W_{l+1}) * f'(z_l)      i.e. (W_{l+1}^T delta_{l+1}) ⊙ f'(z_l)

because z_{l+1} depends on z_l only through a_l = f(z_l).  Each weight sees the
error of the unit it feeds and the activation it multiplies, averaged over the batch:

    dL/dW_l = (1/B) sum_i delta_l,i a_{l-1,i}^T = delta_l.T @ a_{l-1} / B
    dL/db_l = (1/B) sum_i delta_l,i

So ``deltas`` are per-example; the derivative of the batch-mean loss with respect
to ``trace.z[l-1]`` is ``deltas[l-1] / B``.

The functions run eagerly, so every intermediate can be printed or stepped
through; for speed wrap them, e.g. ``jax.jit(gradients, static_argnames=
("activation", "loss"))``.  Shape errors are ValueErrors either way.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lab import activations, losses

Array = jax.Array
Params = list  # list of {'W': (n_out, n_in), 'b': (n_out,)}


class Activation(NamedTuple):
    """An activation with its hand-written derivative, both as functions of z."""

    f: Callable[[Array], Array]
    df: Callable[[Array], Array]  # f'(z), elementwise


def _sigmoid_prime(z: Array) -> Array:
    s = activations.sigmoid(z)
    return s * (1 - s)  # s' = s (1 - s)


def _tanh_prime(z: Array) -> Array:
    return 1 - jnp.square(jnp.tanh(z))  # tanh' = 1 - tanh^2


def _relu_prime(z: Array) -> Array:
    return jnp.where(z > 0, jnp.ones_like(z), jnp.zeros_like(z))  # 0 at z = 0


LEAKY_SLOPE = 0.01  # same default as lab.activations.leaky_relu


def _leaky_relu_prime(z: Array) -> Array:
    return jnp.where(z >= 0, jnp.ones_like(z), jnp.full_like(z, LEAKY_SLOPE))


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(activations.sigmoid, _sigmoid_prime),
    "tanh": Activation(activations.tanh, _tanh_prime),
    "relu": Activation(activations.relu, _relu_prime),
    "leaky_relu": Activation(lambda z: activations.leaky_relu(z, LEAKY_SLOPE), _leaky_relu_prime),
    "identity": Activation(activations.identity, jnp.ones_like),
}

LOSSES = ("mse", "softmax_cross_entropy")


class Trace(NamedTuple):
    """Everything the forward pass computed, kept for the backward pass."""

    z: list  # z[l-1] = z_l, shape (B, n_l), l = 1..L
    a: list  # a[l] = a_l, shape (B, n_l), l = 0..L; a[0] = x, a[L] = z_L (linear output)


def _activation(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; backprop supports {', '.join(sorted(ACTIVATIONS))}"
        ) from None


def _check_loss(name: str) -> None:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; backprop supports {', '.join(LOSSES)}")


def _check_shapes(params: Params, x: Array) -> None:
    if not params:
        raise ValueError("params is empty; an MLP needs at least one layer")
    if x.ndim != 2:
        raise ValueError(f"x must have shape (batch, n_in); got shape {x.shape}")
    width = x.shape[1]
    for l, layer in enumerate(params, start=1):
        w_shape, b_shape = jnp.shape(layer["W"]), jnp.shape(layer["b"])
        if len(w_shape) != 2 or w_shape[1] != width or b_shape != (w_shape[0],):
            raise ValueError(
                f"layer {l}: W has shape {w_shape} and b has shape {b_shape}, but its input "
                f"has {width} features; expected W of shape (n_out, {width}) and b of shape (n_out,)"
            )
        width = w_shape[0]


def forward(params: Params, x: Array, activation: str) -> Trace:
    """Run the network on a batch ``x`` of shape (B, n_0), keeping every z_l and a_l.

    z_l = a_{l-1} @ W_l.T + b_l;  a_l = f(z_l) for hidden layers, a_L = z_L."""
    x = jnp.asarray(x)
    _check_shapes(params, x)
    f = _activation(activation).f
    zs, acts = [], [x]
    for l, layer in enumerate(params, start=1):
        z = acts[-1] @ layer["W"].T + layer["b"][None, :]  # b broadcast over the batch rows
        zs.append(z)
        acts.append(z if l == len(params) else f(z))
    return Trace(z=zs, a=acts)


def _check_targets(output: Array, y: Array, loss: str) -> None:
    _check_loss(loss)
    if y.shape != output.shape:
        raise ValueError(f"network output has shape {output.shape} but y has shape {y.shape}")


def _loss_value(output: Array, y: Array, loss: str) -> Array:
    """The batch-mean loss L of the network output a_L = z_L."""
    _check_targets(output, y, loss)
    if loss == "mse":
        return 0.5 * losses.mse(output, y)  # 1/2 mean_i ||a_L - y||^2
    return losses.softmax_cross_entropy(output, y)


def _output_delta(output: Array, y: Array, loss: str) -> Array:
    """delta_L = d ell_i / d z_L for every example i, shape (B, n_L)."""
    _check_targets(output, y, loss)
    y = y.astype(output.dtype)
    if loss == "mse":
        return output - y  # d/dz 1/2 ||z - y||^2
    # d/dz [logsumexp(z) sum_k y_k - y.z] = softmax(z) sum_k y_k - y = softmax(z) - y for one-hot y
    return activations.softmax(output, axis=-1) * jnp.sum(y, axis=-1, keepdims=True) - y


def backward(
    params: Params, trace: Trace, y: Array, activation: str, loss: str
) -> tuple[Params, list]:
    """Propagate the output error back through the layers.

    Returns ``(grads, deltas)``: ``grads`` has the structure of ``params`` and holds
    dL/dW_l and dL/db_l of the batch-mean loss; ``deltas[l-1]`` is the per-example
    delta_l = d ell / d z_l of shape (B, n_l).  See the module docstring for the
    recursion  delta_l = (delta_{l+1} @ W_{l+1}) * f'(z_l)."""
    df = _activation(activation).df
    y = jnp.asarray(y)
    delta = _output_delta(trace.a[-1], y, loss)
    batch = y.shape[0]
    n_layers = len(params)
    grads, deltas = [None] * n_layers, [None] * n_layers
    for l in range(n_layers, 0, -1):  # l = L, L-1, ..., 1 (python index l-1)
        if l < n_layers:
            # chain rule through z_{l+1} = a_l W_{l+1}^T + b and a_l = f(z_l)
            delta = (delta @ params[l]["W"]) * df(trace.z[l - 1])
        deltas[l - 1] = delta
        grads[l - 1] = {
            "W": delta.T @ trace.a[l - 1] / batch,  # (n_l, n_{l-1}) = mean_i delta_i a_i^T
            "b": jnp.mean(delta, axis=0),  # (n_l,)
        }
    return grads, deltas


def gradients(
    params: Params, x: Array, y: Array, activation: str, loss: str
) -> tuple[Array, Params, Trace, list]:
    """Forward then backward: returns ``(loss_value, grads, trace, deltas)``."""
    trace = forward(params, x, activation)
    value = _loss_value(trace.a[-1], jnp.asarray(y), loss)
    grads, deltas = backward(params, trace, y, activation, loss)
    return value, grads, trace, deltas


def init_mlp_params(key: Array, sizes: list[int], scale: float = 1.0, dtype=None) -> Params:
    """Layers for widths ``sizes = [n_0, n_1, ..., n_L]``.

    W_l ~ scale * N(0, 1) / sqrt(n_{l-1}) (LeCun normal when scale = 1), b_l = 0.
    ``dtype`` defaults to JAX's default float (float64 when x64 is enabled)."""
    if len(sizes) < 2 or any(int(n) < 1 for n in sizes):
        raise ValueError(f"sizes must list at least two positive widths [n_in, ..., n_out]; got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]):
        w = jax.random.normal(k, (n_out, n_in), dtype=dtype)
        params.append({"W": w * (scale / math.sqrt(n_in)), "b": jnp.zeros((n_out,), w.dtype)})
    return params
