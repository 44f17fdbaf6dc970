"""Token embeddings and causal self-attention: the blocks of a decoder-only transformer.

Sequences are batch first: token ids (B, T) of an integer dtype, activations (B, T, D).
Each constructor returns a ``Layer`` (see ``lab.nets``) with empty state.

    Embedding(V, D)              ids (B, T) -> E[ids]                      (B, T, D)
    PositionalEmbedding(L, D)    x_t -> x_t + P_t   (learned, T <= L)      (B, T, D)
    CausalSelfAttention(D, H)    [q, k, v] = x W_qkv + b_qkv, H heads of d = D / H:
                                 A_h = softmax(q_h k_h^T / sqrt(d) + M),  M_ts = 0 (s <= t), -inf (s > t)
                                 y = [A_1 v_1, ..., A_H v_H] W_o + b_o     (B, T, D)
    TransformerBlock(D, H, F)    pre-norm (GPT-2; Xiong et al. 2020):
                                 x <- x + Attn(LN(x)),  x <- x + gelu(LN(x) W_1 + b_1) W_2 + b_2

The softmax subtracts each row's largest unmasked score before ``exp`` (exact, since
softmax is shift-invariant) and masks the scores *before* ``exp``: a masked score is
-inf, its weight exp(-inf) = 0 and the gradient reaching it is 0, never 0 * inf = NaN.
Every row keeps its diagonal, so no row is fully masked.  Output t therefore depends on
the tokens 0..t only, exactly (the weights of later positions are exact zeros).

Token ids are checked when concrete: a non-integer dtype or an id outside [0, V) raises a
ValueError.  Under ``jit`` they cannot be inspected; there an out-of-range id embeds as a
row of NaN (``mode="fill"``), so the loss is NaN rather than silently another token's.
``lab.nets.transformer_lm`` stacks these into a character- or token-level language model.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lab import init as initializers
from lab.nets.core import Layer, Residual, add_bias, check_features, check_rank, serial, stateless
from lab.nets.layers import Dense, Gelu, InitSpec
from lab.nets.normalization import LayerNorm

Array = jax.Array
EMBEDDING_INIT = initializers.normal(0.02)   # GPT-2's token and position tables


def _positive(name: str, **values: int) -> None:
    for what, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: {what} must be a positive int, got {value!r}")


def _check_ids(name: str, ids, vocab: int) -> None:
    """Integer dtype and rank 2 always; the range [0, vocab) when the ids are concrete."""
    if not jnp.issubdtype(ids.dtype, jnp.integer):
        raise ValueError(f"{name}: token ids must have an integer dtype, got {ids.dtype}")
    check_rank(name, ids.shape, 2, "(B, T) of token ids")
    if not isinstance(ids, jax.core.Tracer) and ids.size:
        concrete = np.asarray(ids)   # a concrete array, even when closed over inside a jit
        lo, hi = int(concrete.min()), int(concrete.max())
        if lo < 0 or hi >= vocab:
            raise ValueError(f"{name}: token ids must lie in [0, {vocab}), found values in [{lo}, {hi}]")


def Embedding(vocab: int, dim: int, w_init: InitSpec = EMBEDDING_INIT) -> Layer:
    """Token embedding y[b, t] = E[ids[b, t]]: ids (B, T) -> (B, T, dim).

    Params ``{'table': (vocab, dim)}``, N(0, 0.02^2) by default."""
    _positive("Embedding", vocab=vocab, dim=dim)
    w_fn = initializers.resolve(w_init)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check_rank("Embedding", in_shape, 2, "(B, T) of token ids")
        return in_shape + (dim,), {"table": w_fn(key, (vocab, dim), dtype)}

    def apply(params, x, *, key=None, train=False):
        table = params["table"]
        _check_ids("Embedding", x, table.shape[0])
        return jnp.take(table, x, axis=0, mode="fill", fill_value=jnp.nan)

    return stateless(init, apply)


def PositionalEmbedding(max_len: int, dim: int, w_init: InitSpec = EMBEDDING_INIT) -> Layer:
    """Learned absolute positions y[b, t] = x[b, t] + P[t]: (B, T, dim) -> (B, T, dim), T <= max_len.

    Params ``{'table': (max_len, dim)}``, N(0, 0.02^2) by default; a longer sequence raises."""
    _positive("PositionalEmbedding", max_len=max_len, dim=dim)
    w_fn = initializers.resolve(w_init)

    def check(shape):
        check_rank("PositionalEmbedding", shape, 3, "(B, T, D)")
        check_features("PositionalEmbedding", shape, dim)
        if shape[1] > max_len:
            raise ValueError(f"PositionalEmbedding: a sequence of length {shape[1]} is longer than "
                             f"max_len={max_len} (shape {tuple(shape)})")

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check(in_shape)
        return in_shape, {"table": w_fn(key, (max_len, dim), dtype)}

    def apply(params, x, *, key=None, train=False):
        check(x.shape)
        return x + params["table"][None, : x.shape[1]]

    return stateless(init, apply)


def causal_softmax(scores: Array) -> Array:
    """softmax over the last axis of scores (..., T, T) with entries s > t masked out.

    Row t is exp(s_ts - m_t) / sum_{s' <= t} exp(s_ts' - m_t) for s <= t and 0 for s > t,
    m_t the row's largest unmasked score (held constant for the gradient: softmax does not
    depend on it).  Masked scores become -inf before ``exp``, so their weights and
    gradients are exact zeros, even for scores of any size."""
    t = scores.shape[-1]
    mask = jnp.tril(jnp.ones((t, t), bool)).reshape((1,) * (scores.ndim - 2) + (t, t))
    masked = jnp.where(mask, scores, -jnp.inf)
    shifted = masked - lax.stop_gradient(jnp.max(masked, axis=-1, keepdims=True))
    weights = jnp.exp(shifted)
    return weights / jnp.sum(weights, axis=-1, keepdims=True)


def CausalSelfAttention(dim: int, heads: int, w_init: InitSpec = "glorot_normal",
                        b_init: InitSpec = "zeros") -> Layer:
    """Multi-head causal self-attention (Vaswani et al. 2017) on (B, T, dim) -> (B, T, dim).

    One fused projection to [q, k, v], ``heads`` heads of size d = dim / heads, scaled dot
    products with the causal mask (see ``causal_softmax``), an output projection.  Params
    ``{'w_qkv': (dim, 3 dim), 'b_qkv': (3 dim,), 'w_out': (dim, dim), 'b_out': (dim,)}``:
    4 dim^2 + 4 dim scalars; each of W_q, W_k, W_v, W_o drawn as its own (dim, dim) matrix."""
    _positive("CausalSelfAttention", dim=dim, heads=heads)
    if dim % heads:
        raise ValueError(f"CausalSelfAttention: heads={heads} does not divide dim={dim}")
    head_dim = dim // heads
    w_fn, b_fn = initializers.resolve(w_init), initializers.resolve(b_init)

    def init(key, in_shape, *, dtype=jnp.float32):
        in_shape = tuple(in_shape)
        check_rank("CausalSelfAttention", in_shape, 3, "(B, T, D)")
        check_features("CausalSelfAttention", in_shape, dim)
        kq, kk, kv, ko, kb1, kb2 = jax.random.split(key, 6)
        params = {"w_qkv": jnp.concatenate([w_fn(k, (dim, dim), dtype) for k in (kq, kk, kv)], axis=1),
                  "b_qkv": b_fn(kb1, (3 * dim,), dtype),
                  "w_out": w_fn(ko, (dim, dim), dtype),
                  "b_out": b_fn(kb2, (dim,), dtype)}
        return in_shape, params

    def apply(params, x, *, key=None, train=False):
        check_rank("CausalSelfAttention", x.shape, 3, "(B, T, D)")
        check_features("CausalSelfAttention", x.shape, dim)
        b, t, _ = x.shape
        qkv = add_bias(x @ params["w_qkv"], params["b_qkv"])                      # (B, T, 3D)
        q, k, v = (a.reshape(b, t, heads, head_dim) for a in jnp.split(qkv, 3, axis=-1))
        scores = jnp.einsum("bthd,bshd->bhts", q, k) * (1.0 / math.sqrt(head_dim))  # (B, H, T, T)
        mixed = jnp.einsum("bhts,bshd->bthd", causal_softmax(scores), v)            # (B, T, H, d)
        return add_bias(mixed.reshape(b, t, dim) @ params["w_out"], params["b_out"])

    return stateless(init, apply)


def TransformerBlock(dim: int, heads: int, hidden: int | None = None, eps: float = 1e-5) -> Layer:
    """Pre-norm transformer block on (B, T, dim): x + Attn(LN(x)), then x + MLP(LN(x)).

    MLP(u) = gelu(u W_1 + b_1) W_2 + b_2 (exact, erf GELU) with ``hidden`` units (4 dim by
    default).  It is ``serial(Residual(LayerNorm, CausalSelfAttention),
    Residual(LayerNorm, Dense(hidden), Gelu, Dense(dim)))``, and its params are that nest:
    ``(({ln}, {attn}), ({ln}, {w, b}, (), {w, b}))``."""
    hidden = 4 * dim if hidden is None else hidden
    _positive("TransformerBlock", dim=dim, heads=heads, hidden=hidden)
    return serial(Residual(LayerNorm(eps), CausalSelfAttention(dim, heads)),
                  Residual(LayerNorm(eps), Dense(hidden), Gelu, Dense(dim)))
