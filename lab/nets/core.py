"""The layer type, composition (``serial``, ``Residual``) and small shared helpers.

See ``lab.nets`` for the contract.  A ``Layer`` holds two pairs of pure functions:

    init(key, in_shape, *, dtype=float32)              -> (out_shape, params)
    apply(params, x, *, key=None, train=False)          -> y
    init_with_state(key, in_shape, *, dtype=float32)   -> (out_shape, params, state)
    apply_with_state(params, state, x, *, key=None, train=False) -> (y, new_state)

``stateless(init, apply)`` builds a layer whose state is the empty tuple ``()``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
Shape = tuple[int, ...]
Params = Any  # a pytree of arrays: a dict for one layer, a tuple of those for serial
State = Any   # a pytree of arrays (running statistics); () when a layer keeps none


class Layer(NamedTuple):
    """A layer or a whole network: pure functions over plain pytrees (see ``lab.nets``)."""

    init: Callable[..., tuple[Shape, Params]]
    apply: Callable[..., Array]
    init_with_state: Callable[..., tuple[Shape, Params, State]]
    apply_with_state: Callable[..., tuple[Array, State]]


def stateless(init: Callable[..., tuple[Shape, Params]], apply: Callable[..., Array]) -> Layer:
    """A ``Layer`` from a plain ``(init, apply)`` pair; its state is ``()`` and never changes."""

    def init_with_state(key, in_shape, *, dtype=jnp.float32):
        out_shape, params = init(key, in_shape, dtype=dtype)
        return out_shape, params, ()

    def apply_with_state(params, state, x, *, key=None, train=False):
        return apply(params, x, key=key, train=train), state

    return Layer(init, apply, init_with_state, apply_with_state)


def _split(key: Array | None, n: int) -> list[Array | None]:
    """n independent subkeys of ``key`` (or n Nones when there is no key)."""
    if key is None:
        return [None] * n
    return list(jax.random.split(key, n))


def serial(*layers: Layer) -> Layer:
    """Compose layers left to right: y = f_n(... f_2(f_1(x))).

    Params and state are tuples with one entry per layer.  ``init`` and ``apply``
    split their key with ``jax.random.split(key, len(layers))`` and give layer i the
    i-th subkey, so two dropout layers draw independent masks.  ``init`` and
    ``init_with_state`` give the same params for the same key."""
    layers = tuple(layers)
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"serial: argument {i} is a {type(layer).__name__}, not a Layer "
                            "(did you pass a layer factory without calling it?)")

    def init_with_state(key, in_shape, *, dtype=jnp.float32):
        params, state, shape = [], [], tuple(in_shape)
        for layer, k in zip(layers, _split(key, len(layers))):
            shape, p, s = layer.init_with_state(k, shape, dtype=dtype)
            params.append(p)
            state.append(s)
        return shape, tuple(params), tuple(state)

    def init(key, in_shape, *, dtype=jnp.float32):
        params, shape = [], tuple(in_shape)
        for layer, k in zip(layers, _split(key, len(layers))):
            shape, p = layer.init(k, shape, dtype=dtype)
            params.append(p)
        return shape, tuple(params)

    def apply(params, x, *, key=None, train=False):
        _check_length("serial", params, layers, "params")
        for layer, p, k in zip(layers, params, _split(key, len(layers))):
            x = layer.apply(p, x, key=k, train=train)
        return x

    def apply_with_state(params, state, x, *, key=None, train=False):
        _check_length("serial", params, layers, "params")
        _check_length("serial", state, layers, "state")
        new_state = []
        for layer, p, s, k in zip(layers, params, state, _split(key, len(layers))):
            x, s = layer.apply_with_state(p, s, x, key=k, train=train)
            new_state.append(s)
        return x, tuple(new_state)

    return Layer(init, apply, init_with_state, apply_with_state)


def Residual(*layers: Layer) -> Layer:
    """Skip connection around ``serial(*layers)``: y = x + f(x) (He et al. 2016).

    f must map its input shape to itself; ``init`` raises a ValueError otherwise.
    Params and state are those of ``serial(*layers)``."""
    inner = serial(*layers)

    def check(in_shape, out_shape):
        if tuple(out_shape) != tuple(in_shape):
            raise ValueError(f"Residual: the inner block maps shape {tuple(in_shape)} to "
                             f"{tuple(out_shape)}; y = x + f(x) needs them equal")

    def init_with_state(key, in_shape, *, dtype=jnp.float32):
        out_shape, params, state = inner.init_with_state(key, in_shape, dtype=dtype)
        check(in_shape, out_shape)
        return tuple(in_shape), params, state

    def init(key, in_shape, *, dtype=jnp.float32):
        out_shape, params = inner.init(key, in_shape, dtype=dtype)
        check(in_shape, out_shape)
        return tuple(in_shape), params

    def apply(params, x, *, key=None, train=False):
        fx = inner.apply(params, x, key=key, train=train)
        check(x.shape, fx.shape)
        return x + fx

    def apply_with_state(params, state, x, *, key=None, train=False):
        fx, state = inner.apply_with_state(params, state, x, key=key, train=train)
        check(x.shape, fx.shape)
        return x + fx, state

    return Layer(init, apply, init_with_state, apply_with_state)


def param_count(params: Params) -> int:
    """Total number of scalars in a params pytree (arrays or ``jax.eval_shape`` structs)."""
    return sum(math.prod(getattr(leaf, "shape", jnp.shape(leaf)))
               for leaf in jax.tree_util.tree_leaves(params))


# --- shared checks ---------------------------------------------------------------------


def _check_length(name: str, tree: Sequence, layers: Sequence, what: str) -> None:
    if not isinstance(tree, (tuple, list)) or len(tree) != len(layers):
        got = len(tree) if isinstance(tree, (tuple, list)) else type(tree).__name__
        raise ValueError(f"{name}: expected {what} for {len(layers)} layers, got {got}")


def check_rank(name: str, shape: Sequence[int], rank: int, what: str) -> None:
    """Raise a ValueError unless ``shape`` has ``rank`` entries (``what`` names the layout)."""
    if len(shape) != rank:
        raise ValueError(f"{name}: expected an input of rank {rank} {what}, got shape {tuple(shape)}")


def check_features(name: str, shape: Sequence[int], expected: int | tuple[int, ...],
                   min_rank: int = 1) -> None:
    """Raise a ValueError unless the trailing axes of ``shape`` equal ``expected``.

    This is how ``apply`` detects an input the layer was not initialised for: the
    params fix the feature (or channel) sizes, and a mismatch is never broadcast."""
    expected = (expected,) if isinstance(expected, int) else tuple(expected)
    shape = tuple(shape)
    if len(shape) < max(min_rank, len(expected)) or shape[len(shape) - len(expected):] != expected:
        raise ValueError(f"{name}: initialised for inputs of shape (..., "
                         f"{', '.join(map(str, expected))}), got shape {shape}")


def need_key(name: str, key: Array | None) -> Array:
    """The key, or a ValueError saying that ``name`` draws random masks in train mode."""
    if key is None:
        raise ValueError(f"{name}: train=True draws a random mask and needs a PRNG key; "
                         "pass key=jax.random.key(...)")
    return key


def add_bias(y: Array, b: Array) -> Array:
    """y + b with b broadcast over the leading axes explicitly (rank promotion is strict)."""
    return y + b.reshape((1,) * (y.ndim - b.ndim) + b.shape)
