"""Recurrent layers over sequences (N, T, F), scanned over time with ``lax.scan``.

SimpleRNN (Elman):   h_t = tanh(x_t W_x + h_{t-1} W_h + b)

LSTM (Hochreiter & Schmidhuber 1997, with a forget gate):

    [i, f, g, o] = x_t W_x + h_{t-1} W_h + b          (four blocks of H columns)
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

Both start from h_0 = 0 (and c_0 = 0).  With ``return_sequences=False`` the output is
the last hidden state h_T of shape (N, H); with ``True`` it is every h_t, (N, T, H).
Input weights W_x default to Glorot normal, recurrent weights W_h to orthogonal.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

from lab import activations
from lab import init as initializers
from lab.nets.core import Layer, add_bias, check_features, check_rank, stateless
from lab.nets.layers import InitSpec


def _recurrent(name: str, hidden: int, gates: int, step: Callable, return_sequences: bool,
               w_init: InitSpec, u_init: InitSpec, b_init: InitSpec, forget_bias: float = 0.0) -> Layer:
    """Shared init/apply: params {'w_x': (F, gates H), 'w_h': (H, gates H), 'b': (gates H,)}.

    ``step(params, carry, xw_t) -> (carry, h_t)`` where xw_t = x_t W_x + b is precomputed
    for all t outside the scan (one matmul instead of T)."""
    w_fn, u_fn, b_fn = (initializers.resolve(s) for s in (w_init, u_init, b_init))

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check_rank(name, in_shape, 3, "(N, T, F)")
        kw, ku, kb = jax.random.split(key, 3)
        b = b_fn(kb, (gates * hidden,), dtype)
        if forget_bias:
            b = b.at[hidden:2 * hidden].add(forget_bias)  # the f block of [i, f, g, o]
        params = {"w_x": w_fn(kw, (in_shape[2], gates * hidden), dtype),
                  "w_h": u_fn(ku, (hidden, gates * hidden), dtype),
                  "b": b}
        out_shape = in_shape[:2] + (hidden,) if return_sequences else (in_shape[0], hidden)
        return out_shape, params

    def apply(params, x, *, key=None, train=False):
        check_rank(name, x.shape, 3, "(N, T, F)")
        check_features(name, x.shape, params["w_x"].shape[0])
        xw = add_bias(x @ params["w_x"], params["b"])        # (N, T, gates H)
        h0 = jnp.zeros((x.shape[0], hidden), x.dtype)
        carry = h0 if gates == 1 else (h0, h0)
        carry, hs = lax.scan(lambda c, xw_t: step(params, c, xw_t), carry, jnp.swapaxes(xw, 0, 1))
        return jnp.swapaxes(hs, 0, 1) if return_sequences else hs[-1]

    return stateless(init, apply)


def SimpleRNN(hidden: int, return_sequences: bool = False, activation: str | Callable = "tanh",
              w_init: InitSpec = "glorot_normal", u_init: InitSpec = "orthogonal",
              b_init: InitSpec = "zeros") -> Layer:
    """Vanilla RNN h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh by default.

    (N, T, F) -> (N, H), or (N, T, H) with ``return_sequences=True``."""
    act = activations.get(activation)

    def step(params, h, xw_t):
        h = act(xw_t + h @ params["w_h"])
        return h, h

    return _recurrent("SimpleRNN", hidden, 1, step, return_sequences, w_init, u_init, b_init)


def LSTM(hidden: int, return_sequences: bool = False, forget_bias: float = 1.0,
         w_init: InitSpec = "glorot_normal", u_init: InitSpec = "orthogonal",
         b_init: InitSpec = "zeros") -> Layer:
    """Long short-term memory layer with gates ordered [i, f, g, o] (see module docstring).

    ``forget_bias`` is added to the forget gate's bias at init (1.0 by default, so the
    cell starts by remembering; Jozefowicz et al. 2015).
    (N, T, F) -> (N, H), or (N, T, H) with ``return_sequences=True``."""

    def step(params, carry, xw_t):
        h, c = carry
        i, f, g, o = jnp.split(xw_t + h @ params["w_h"], 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    return _recurrent("LSTM", hidden, 4, step, return_sequences, w_init, u_init, b_init, forget_bias)
