"""Deterministic layers: Dense, Conv2D, pooling, Flatten and activation layers.

Each constructor returns a ``Layer`` (see ``lab.nets``) with empty state.  Images
are NHWC and convolution kernels HWIO.  Weights use the row-vector convention
z = x W + b with W of shape (in, out), which is the transpose of z = W a + b.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from lab import activations
from lab import init as initializers
from lab.nets.core import Layer, add_bias, check_features, check_rank, stateless

Array = jax.Array
InitSpec = str | Callable[..., Array]


def dense_init(name: str, out: int, w_init: InitSpec, b_init: InitSpec, use_bias: bool) -> Callable:
    """The ``init`` of a dense layer named ``name``: in_shape (..., in) -> (..., out), params
    ``{'w': (in, out), 'b': (out,)}`` (no ``'b'`` without ``use_bias``), ``w`` and ``b`` from
    two subkeys of ``key``."""
    w_fn, b_fn = initializers.resolve(w_init), initializers.resolve(b_init)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) < 1:
            raise ValueError(f"{name}: expected an in_shape (..., features), got {in_shape}")
        kw, kb = jax.random.split(key)
        params = {"w": w_fn(kw, (in_shape[-1], out), dtype)}
        if use_bias:
            params["b"] = b_fn(kb, (out,), dtype)
        return in_shape[:-1] + (out,), params

    return init


def Dense(out: int, w_init: InitSpec = "glorot_normal", b_init: InitSpec = "zeros",
          use_bias: bool = True) -> Layer:
    """Fully connected layer z = x W + b on the last axis.

    in_shape (..., in) -> out_shape (..., out).  Params ``{'w': (in, out), 'b': (out,)}``
    (no ``'b'`` when ``use_bias=False``): in * out + out scalars."""
    init = dense_init("Dense", out, w_init, b_init, use_bias)

    def apply(params, x, *, key=None, train=False):
        check_features("Dense", x.shape, params["w"].shape[0])
        y = x @ params["w"]
        return add_bias(y, params["b"]) if use_bias else y

    return stateless(init, apply)


def _pair(value: int | Sequence[int], what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v > 0 for v in pair):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return pair


def _padding(padding: str | Sequence[tuple[int, int]]) -> str | tuple[tuple[int, int], ...]:
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(f"padding must be 'SAME', 'VALID' or ((lo, hi), (lo, hi)), got {padding!r}")
        return padding.upper()
    pads = tuple(tuple(p) for p in padding)
    if len(pads) != 2 or any(len(p) != 2 for p in pads):
        raise ValueError(f"explicit padding must be ((lo, hi), (lo, hi)), got {padding!r}")
    return pads


def _spatial_out(name: str, in_shape: tuple[int, ...], window, strides, padding) -> tuple[int, int]:
    """Output (H', W') of a window op: floor((H + lo + hi - k) / s) + 1 per axis."""
    spatial = in_shape[1:3]
    pads = lax.padtype_to_pads(spatial, window, strides, padding) if isinstance(padding, str) else padding
    out = tuple((n + lo + hi - k) // s + 1 for n, k, s, (lo, hi) in zip(spatial, window, strides, pads))
    if min(out) < 1:
        raise ValueError(f"{name}: window {window} does not fit input {in_shape} with padding {padding!r}")
    return out


def Conv2D(out_channels: int, kernel: int | Sequence[int] = 3, stride: int | Sequence[int] = 1,
           padding: str | Sequence[tuple[int, int]] = "SAME", w_init: InitSpec = "glorot_normal",
           b_init: InitSpec = "zeros", use_bias: bool = True) -> Layer:
    """2-D convolution (cross-correlation), NHWC input and HWIO kernel.

    (N, H, W, C) -> (N, H', W', out_channels) with H' = floor((H + pads - kh) / sh) + 1
    ('SAME' gives ceil(H / sh)).  Params ``{'w': (kh, kw, C, out), 'b': (out,)}``."""
    window, strides, padding = _pair(kernel, "kernel"), _pair(stride, "stride"), _padding(padding)
    w_fn, b_fn = initializers.resolve(w_init), initializers.resolve(b_init)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check_rank("Conv2D", in_shape, 4, "(N, H, W, C)")
        kw, kb = jax.random.split(key)
        params = {"w": w_fn(kw, window + (in_shape[3], out_channels), dtype)}
        if use_bias:
            params["b"] = b_fn(kb, (out_channels,), dtype)
        out_hw = _spatial_out("Conv2D", in_shape, window, strides, padding)
        return (in_shape[0],) + out_hw + (out_channels,), params

    def apply(params, x, *, key=None, train=False):
        check_rank("Conv2D", x.shape, 4, "(N, H, W, C)")
        check_features("Conv2D", x.shape, params["w"].shape[2])
        y = lax.conv_general_dilated(x, params["w"], strides, padding,
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return add_bias(y, params["b"]) if use_bias else y

    return stateless(init, apply)


def _pool(name: str, window, stride, padding, average: bool) -> Layer:
    window = _pair(window, "window")
    strides = window if stride is None else _pair(stride, "stride")
    padding = _padding(padding)
    dims, steps = (1,) + window + (1,), (1,) + strides + (1,)
    pads = padding if isinstance(padding, str) else ((0, 0),) + padding + ((0, 0),)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check_rank(name, in_shape, 4, "(N, H, W, C)")
        out_hw = _spatial_out(name, in_shape, window, strides, padding)
        return (in_shape[0],) + out_hw + (in_shape[3],), ()

    # The init values are Python scalars on purpose: a concrete identity (-inf for max, 0 for
    # add) makes lax.reduce_window use its differentiable max/sum primitives.  An array init
    # (jnp.array(-inf)) is a tracer under jit, which selects the generic reduce_window that
    # reverse-mode autodiff cannot linearise ("Linearization failed").
    def apply(params, x, *, key=None, train=False):
        check_rank(name, x.shape, 4, "(N, H, W, C)")
        if not average:
            return lax.reduce_window(x, -jnp.inf, lax.max, dims, steps, pads)
        total = lax.reduce_window(x, 0.0, lax.add, dims, steps, pads)
        ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
        count = lax.reduce_window(ones, 0.0, lax.add, dims, steps, pads)
        return total / count  # padded cells are not counted

    return stateless(init, apply)


def MaxPool(window: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None,
            padding: str | Sequence[tuple[int, int]] = "VALID") -> Layer:
    """Max over each window, per channel; NHWC.  ``stride`` defaults to ``window``."""
    return _pool("MaxPool", window, stride, padding, average=False)


def AvgPool(window: int | Sequence[int] = 2, stride: int | Sequence[int] | None = None,
            padding: str | Sequence[tuple[int, int]] = "VALID") -> Layer:
    """Mean over each window, per channel; NHWC.  With 'SAME' padding the mean is over
    the cells inside the image only.  ``stride`` defaults to ``window``."""
    return _pool("AvgPool", window, stride, padding, average=True)


def _flatten_init(key, in_shape, *, dtype=jnp.float32):
    in_shape = tuple(in_shape)
    if len(in_shape) < 1:
        raise ValueError(f"Flatten: expected an in_shape (N, ...), got {in_shape}")
    return (in_shape[0], math.prod(in_shape[1:])), ()


def _flatten_apply(params, x, *, key=None, train=False):
    return x.reshape(x.shape[0], -1)


Flatten = stateless(_flatten_init, _flatten_apply)  # (N, d1, d2, ...) -> (N, d1 d2 ...); no params


def Activation(name_or_fn: str | Callable[..., Array], **kwargs: Any) -> Layer:
    """Elementwise layer y = f(x, **kwargs), f from ``lab.activations`` or any callable.

    An unknown name raises ValueError listing the valid ones.  No params."""
    fn = activations.get(name_or_fn)

    def init(key, in_shape, *, dtype=jnp.float32):
        return tuple(in_shape), ()

    def apply(params, x, *, key=None, train=False):
        return fn(x, **kwargs)

    return stateless(init, apply)


Identity = Activation("identity")
Step = Activation("step")
Sigmoid = Activation("sigmoid")
Tanh = Activation("tanh")
Relu = Activation("relu")
Gelu = Activation("gelu")
Swish = Activation("swish")
Silu = Swish
Softplus = Activation("softplus")
Softmax = Activation("softmax")
LogSoftmax = Activation("log_softmax")


def LeakyRelu(negative_slope: float = 0.01) -> Layer:
    """x for x >= 0, negative_slope * x otherwise (a fixed slope; see PReLU for a learnt one)."""
    return Activation("leaky_relu", negative_slope=negative_slope)


def Elu(alpha: float = 1.0) -> Layer:
    """x for x > 0, alpha (exp(x) - 1) otherwise."""
    return Activation("elu", alpha=alpha)


def PReLU(initial_slope: float = 0.25, per_feature: bool = True) -> Layer:
    """Parametric ReLU with a learnable negative slope a: y = x (x >= 0), a x (x < 0).

    Params ``{'slope': (F,)}`` (one slope per feature/channel, the last axis) or
    ``{'slope': ()}`` when ``per_feature=False``.  He et al. 2015 start at a = 0.25."""

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        if len(in_shape) < 1:
            raise ValueError(f"PReLU: expected an in_shape (..., features), got {in_shape}")
        shape = (in_shape[-1],) if per_feature else ()
        return in_shape, {"slope": jnp.full(shape, initial_slope, dtype)}

    def apply(params, x, *, key=None, train=False):
        slope = params["slope"]
        if per_feature:
            check_features("PReLU", x.shape, slope.shape[0])
            slope = slope.reshape((1,) * (x.ndim - 1) + slope.shape)
        return activations.prelu(x, slope)

    return stateless(init, apply)
