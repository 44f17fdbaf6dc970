"""Ready-made networks built from the layers: mlp, cnn, rnn, lstm, transformer_lm, rbf_network,
perceptron.

Every builder returns a ``Layer`` (see ``lab.nets``); the input size always comes from
``in_shape`` at init, never from the builder's arguments (except ``perceptron``, whose
classic learning rule is written for a fixed number of inputs, and ``transformer_lm``,
whose input is token ids rather than features).

The perceptron (Rosenblatt 1958) is the one model here that is *not* trained by
gradient descent: its step activation has zero derivative almost everywhere, so
``perceptron_update`` applies the classic error-correction rule instead,

    y_hat = step(x . w + b),    w <- w + lr (y - y_hat) x,    b <- b + lr (y - y_hat),

which changes the weights only on mistakes and converges in finitely many updates
when the two classes are linearly separable (and never settles on XOR).
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from lab import activations
from lab import init as initializers
from lab.nets.attention import Embedding, PositionalEmbedding, TransformerBlock
from lab.nets.core import Layer, check_features, serial, stateless
from lab.nets.layers import Activation, Conv2D, Dense, Flatten, InitSpec, MaxPool
from lab.nets.normalization import BatchNorm, LayerNorm
from lab.nets.recurrent import LSTM, SimpleRNN
from lab.nets.stochastic import Dropout

Array = jax.Array


def mlp(sizes: Sequence[int], activation: str | Callable = "relu", w_init: InitSpec = "glorot_normal",
        b_init: InitSpec = "zeros", output_activation: str | Callable | None = None,
        dropout: float | None = None, dropout_mode: str = "inverted", batch_norm: bool = False,
        bn_momentum: float = 0.9) -> Layer:
    """Multilayer perceptron.  ``sizes = [hidden_1, ..., hidden_k, out]`` are the widths of
    the Dense layers; the input width comes from ``in_shape`` at init.

    Each hidden block is Dense -> [BatchNorm] -> activation -> [Dropout(dropout)]; the
    last block is Dense -> [output_activation].  With ``batch_norm=True`` use
    ``init_with_state`` / ``apply_with_state``."""
    sizes = list(sizes)
    if not sizes or not all(isinstance(n, int) and n > 0 for n in sizes):
        raise ValueError(f"mlp: sizes must be a non-empty list of positive widths [hidden..., out], got {sizes}")
    layers: list[Layer] = []
    for width in sizes[:-1]:
        layers.append(Dense(width, w_init, b_init))
        if batch_norm:
            layers.append(BatchNorm(bn_momentum))
        layers.append(Activation(activation))
        if dropout:
            layers.append(Dropout(dropout, dropout_mode))
    layers.append(Dense(sizes[-1], w_init, b_init))
    if output_activation is not None:
        layers.append(Activation(output_activation))
    return serial(*layers)


def cnn(num_classes: int = 10, channels: Sequence[int] = (8, 16), kernel: int = 3,
        activation: str | Callable = "relu", hidden: int | None = None, dropout: float | None = None,
        w_init: InitSpec = "glorot_normal") -> Layer:
    """Small CNN for (N, 8, 8, 1) digit images (and any NHWC input whose sides halve cleanly).

    For each c in ``channels``: Conv2D(c, kernel, 'SAME') -> activation -> MaxPool(2).
    Then Flatten -> [Dense(hidden) -> activation] -> [Dropout] -> Dense(num_classes).
    With the defaults: 8x8x1 -> 4x4x8 -> 2x2x16 -> 64 -> 10 (1,898 params)."""
    layers: list[Layer] = []
    for c in channels:
        layers += [Conv2D(c, kernel, 1, "SAME", w_init), Activation(activation), MaxPool(2)]
    layers.append(Flatten)
    if hidden:
        layers += [Dense(hidden, w_init), Activation(activation)]
    if dropout:
        layers.append(Dropout(dropout))
    layers.append(Dense(num_classes, w_init))
    return serial(*layers)


def rnn(hidden: int, out: int, return_sequences: bool = False, activation: str | Callable = "tanh") -> Layer:
    """Vanilla tanh RNN over (N, T, F) followed by a Dense readout: (N, out) from h_T,
    or (N, T, out) from every h_t with ``return_sequences=True``."""
    return serial(SimpleRNN(hidden, return_sequences, activation), Dense(out))


def lstm(hidden: int, out: int, return_sequences: bool = False, forget_bias: float = 1.0) -> Layer:
    """LSTM over (N, T, F) followed by a Dense readout; shapes as for ``rnn``."""
    return serial(LSTM(hidden, return_sequences, forget_bias), Dense(out))


def transformer_lm(vocab: int, dim: int, heads: int, layers: int, max_len: int,
                   hidden: int | None = None) -> Layer:
    """Decoder-only transformer language model (GPT-2's layout): ids (B, T) -> logits (B, T, vocab).

    Embedding(vocab, dim) -> PositionalEmbedding(max_len, dim) -> ``layers`` pre-norm
    TransformerBlock(dim, heads, hidden) -> LayerNorm -> Dense(vocab) (an untied
    unembedding).  ``hidden`` defaults to 4 dim; T <= max_len.  The logits at t depend on
    the ids 0..t only; the next-token loss per token is
    ``softmax_cross_entropy_with_integer_labels(logits[:, :-1].reshape(-1, vocab),
    ids[:, 1:].reshape(-1))``.  Params: a tuple of ``layers + 4`` entries, one per stage."""
    if not isinstance(layers, int) or isinstance(layers, bool) or layers < 0:
        raise ValueError(f"transformer_lm: layers must be an int >= 0, got {layers!r}")
    blocks = [TransformerBlock(dim, heads, hidden) for _ in range(layers)]
    return serial(Embedding(vocab, dim), PositionalEmbedding(max_len, dim), *blocks, LayerNorm(), Dense(vocab))


def RBF(centers: int | Array, gamma: float = 1.0,
        center_init: InitSpec = initializers.normal(1.0)) -> Layer:
    """Gaussian radial-basis features phi_k(x) = exp(-gamma ||x - c_k||^2).

    ``centers`` is either an array (K, F) of initial centres (typically data points or
    k-means centroids) or a number K of centres drawn with ``center_init``.
    (N, F) -> (N, K).  Params ``{'centers': (K, F)}``."""
    if gamma <= 0:
        raise ValueError(f"RBF: gamma must be positive, got {gamma}")
    given = None if isinstance(centers, int) else jnp.asarray(centers)
    if given is not None and given.ndim != 2:
        raise ValueError(f"RBF: centers must be an int or an array (K, F), got shape {given.shape}")
    c_fn = initializers.resolve(center_init)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        if given is None:
            c = c_fn(key, (centers, in_shape[-1]), dtype)
        else:
            check_features("RBF", in_shape, given.shape[1])
            c = given.astype(dtype)
        return in_shape[:-1] + (c.shape[0],), {"centers": c}

    def apply(params, x, *, key=None, train=False):
        c = params["centers"]
        check_features("RBF", x.shape, c.shape[1])
        diff = x[..., None, :] - c.reshape((1,) * (x.ndim - 1) + c.shape)  # (..., K, F)
        return jnp.exp(-gamma * jnp.sum(diff * diff, axis=-1))

    return stateless(init, apply)


def rbf_network(centers: int | Array, out: int, gamma: float = 1.0,
                w_init: InitSpec = "glorot_normal", b_init: InitSpec = "zeros") -> Layer:
    """RBF network (Broomhead & Lowe 1988): Gaussian features, then a linear readout,
    y = sum_k w_k exp(-gamma ||x - c_k||^2) + b.  Params ``({'centers'}, {'w', 'b'})``."""
    return serial(RBF(centers, gamma), Dense(out, w_init, b_init))


def perceptron(in_features: int, w_init: InitSpec = "zeros", b_init: InitSpec = "zeros") -> Layer:
    """Rosenblatt perceptron y = step(x . w + b) in {0, 1}: (N, in_features) -> (N,).

    Params ``{'w': (in_features,), 'b': ()}``, zeros by default.  Train it with
    ``perceptron_update``."""
    w_fn, b_fn = initializers.resolve(w_init), initializers.resolve(b_init)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check_features("perceptron", in_shape, in_features)
        kw, kb = jax.random.split(key)
        return in_shape[:-1], {"w": w_fn(kw, (in_features,), dtype), "b": b_fn(kb, (), dtype)}

    def apply(params, x, *, key=None, train=False):
        check_features("perceptron", x.shape, params["w"].shape[0])
        return activations.step(x @ params["w"] + params["b"])

    return stateless(init, apply)


def perceptron_update(params: dict, x: Array, y: Array, lr: float | Array = 1.0) -> dict:
    """One pass of the perceptron learning rule over the examples in order (online).

    ``x`` is one example (F,) or a batch (N, F) visited row by row; ``y`` holds the
    targets in {0, 1}.  For each example, with y_hat = step(x . w + b):
    w <- w + lr (y - y_hat) x and b <- b + lr (y - y_hat).  Returns the new params."""
    w = params["w"]
    check_features("perceptron_update", x.shape, w.shape[0])
    xs = x.reshape(-1, w.shape[0])
    ys = jnp.asarray(y).astype(w.dtype).reshape(-1)
    if ys.shape[0] != xs.shape[0]:
        raise ValueError(f"perceptron_update: {xs.shape[0]} examples but {ys.shape[0]} targets")
    lr = jnp.asarray(lr, w.dtype)

    def visit(p, example):
        xi, yi = example
        error = yi - activations.step(xi @ p["w"] + p["b"])  # 0 when correct, +-1 on a mistake
        return {"w": p["w"] + lr * error * xi, "b": p["b"] + lr * error}, None

    new, _ = lax.scan(visit, {"w": w, "b": params["b"]}, (xs, ys))
    return new
