"""Attention layers and the transformer language model: each layer against a plain float64
NumPy reference (loops over heads and positions, an explicit mask) to 1e-10, exact causality,
shapes, parameter counts and input errors, gradients (finite under jit, equal to central
differences), dtypes, and a short Adam run that learns a repeating text."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lab import losses, nets, optim
from tests.helpers import assert_tree_allclose

KEY = jax.random.key(0)
F64 = jnp.float64
V, D, H, L, T = 7, 8, 2, 6, 5    # vocab, width, heads, max_len, sequence length of the reference tests


def _rng(seed):
    return np.random.default_rng(seed)


def _ids(shape, vocab=V, seed=0):
    return jnp.asarray(_rng(seed).integers(0, vocab, shape), jnp.int32)


def _init(layer, in_shape, dtype=F64, scale=0.3, seed=1):
    """Params shaped as ``layer.init`` makes them, drawn from NumPy: scale * N(0, 1) in every
    leaf, so LayerNorm's scale and bias and the biases are not their trivial 1 and 0 (and
    no random-number kernel is compiled per shape)."""
    rng = _rng(seed)
    structs = jax.eval_shape(lambda k: layer.init(k, in_shape, dtype=dtype)[1], KEY)
    return jax.tree_util.tree_map(lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), dtype), structs)


def _like_init(layer, in_shape, dtype=jnp.float32, seed=1):
    """Params like the library's init, drawn from NumPy (compiling the library's
    truncated-normal draws costs seconds per net on CPU): tables N(0, 0.02^2) as there,
    weights N(0, 1 / fan_in) (close to the Glorot draws there), biases 0, LayerNorm scales 1."""
    rng = _rng(seed)
    structs = jax.eval_shape(lambda k: layer.init(k, in_shape, dtype=dtype)[1], KEY)

    def draw(path, s):
        name = path[-1].key
        if name == "table":
            value = 0.02 * rng.standard_normal(s.shape)
        elif name.startswith("w"):
            value = rng.standard_normal(s.shape) / math.sqrt(s.shape[0])
        else:
            value = np.full(s.shape, 1.0 if name == "scale" else 0.0)
        return jnp.asarray(value, dtype)

    return jax.tree_util.tree_map_with_path(draw, structs)


def _np(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


# --- the float64 references, written out ------------------------------------------------------


def ref_embedding(ids, table):
    out = np.zeros(ids.shape + (table.shape[1],))
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            out[b, t] = table[ids[b, t]]
    return out


def ref_positions(x, table):
    out = np.array(x, dtype=np.float64)
    for t in range(x.shape[1]):
        out[:, t] += table[t]
    return out


def ref_attention(x, p, heads):
    """Loops over batch, head and query position; scores masked by an explicit lower triangle."""
    batch, steps, dim = x.shape
    d = dim // heads
    wq, wk, wv = np.split(p["w_qkv"], 3, axis=1)
    bq, bk, bv = np.split(p["b_qkv"], 3)
    mask = np.tril(np.ones((steps, steps), bool))     # mask[t, s]: query t may see key s
    out = np.zeros(x.shape)
    for b in range(batch):
        q, k, v = x[b] @ wq + bq, x[b] @ wk + bk, x[b] @ wv + bv
        concat = np.zeros((steps, dim))
        for h in range(heads):
            cols = slice(h * d, (h + 1) * d)
            for t in range(steps):
                scores = np.array([q[t, cols] @ k[s, cols] / math.sqrt(d) for s in range(steps)])
                scores = np.where(mask[t], scores, -np.inf)
                weights = np.exp(scores - scores.max())
                weights /= weights.sum()
                concat[t, cols] = sum(weights[s] * v[s, cols] for s in range(steps))
        out[b] = concat @ p["w_out"] + p["b_out"]
    return out


def ref_layer_norm(x, p, eps=1e-5):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def ref_gelu(x):
    return x * 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


def ref_block(x, p, heads):
    (ln1, attn), (ln2, fc1, _, fc2) = p
    x = x + ref_attention(ref_layer_norm(x, ln1), attn, heads)
    return x + ref_gelu(ref_layer_norm(x, ln2) @ fc1["w"] + fc1["b"]) @ fc2["w"] + fc2["b"]


def ref_lm(ids, p, heads):
    emb, pos, *blocks, ln, out = p
    x = ref_positions(ref_embedding(ids, emb["table"]), pos["table"])
    for block in blocks:
        x = ref_block(x, block, heads)
    return ref_layer_norm(x, ln) @ out["w"] + out["b"]


# --- each layer against its reference ---------------------------------------------------------


def _x(shape=(2, T, D), seed=2):
    return jnp.asarray(_rng(seed).standard_normal(shape), F64)


REFERENCE_TABLE = [  # (name, layer, in_shape, input, reference(input, numpy params))
    ("Embedding", nets.Embedding(V, D), (-1, T), _ids((3, T)), lambda x, p: ref_embedding(x, p["table"])),
    ("PositionalEmbedding", nets.PositionalEmbedding(L, D), (-1, T, D), _x(), lambda x, p: ref_positions(x, p["table"])),
    ("CausalSelfAttention 2 heads", nets.CausalSelfAttention(D, 2), (-1, T, D), _x(), lambda x, p: ref_attention(x, p, 2)),
    ("CausalSelfAttention 4 heads", nets.CausalSelfAttention(D, 4), (-1, T, D), _x(), lambda x, p: ref_attention(x, p, 4)),
    ("CausalSelfAttention 1 head", nets.CausalSelfAttention(D, 1), (-1, T, D), _x(), lambda x, p: ref_attention(x, p, 1)),
    ("TransformerBlock", nets.TransformerBlock(D, H, 12), (-1, T, D), _x(), lambda x, p: ref_block(x, p, H)),
    ("transformer_lm 2 layers", nets.transformer_lm(V, D, H, 2, L), (-1, T), _ids((3, T)), lambda x, p: ref_lm(x, p, H)),
]


@pytest.mark.parametrize("name,layer,in_shape,x,reference", REFERENCE_TABLE, ids=[r[0] for r in REFERENCE_TABLE])
def test_layers_match_the_float64_reference(name, layer, in_shape, x, reference):
    params = _init(layer, in_shape)
    actual = jax.jit(layer.apply)(params, x)
    expected = reference(np.asarray(x), _np(params))
    assert actual.dtype == F64 and actual.shape == expected.shape
    assert_tree_allclose(actual, expected, rtol=1e-10, atol=1e-12)
    assert np.max(np.abs(expected)) > 0.1   # a comparison of real numbers, not of zeros


def test_causal_softmax_rows_are_distributions_with_zeros_above_the_diagonal():
    scores = _x((2, 3, 6, 6), seed=3) * 30.0     # large scores: the shift keeps exp finite
    weights = np.asarray(nets.causal_softmax(scores))
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=1e-14)
    assert np.all(weights[..., np.triu_indices(6, 1)[0], np.triu_indices(6, 1)[1]] == 0.0)
    np.testing.assert_array_equal(weights[..., 0, 0], 1.0)   # position 0 sees only itself


def test_the_mask_gives_finite_gradients_even_for_huge_scores():
    layer = nets.CausalSelfAttention(D, H)
    params = _init(layer, (-1, T, D))
    grad = jax.jit(jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), argnums=(0, 1)))
    for scale in (1.0, 1e3, 1e6):
        grads = grad(params, _x() * scale)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(grads)), scale
    g = jax.grad(lambda s: jnp.sum(nets.causal_softmax(s) * s))(_x((1, 1, 4, 4), seed=4) * 1e8)
    assert bool(jnp.all(jnp.isfinite(g)))
    np.testing.assert_array_equal(np.asarray(g)[0, 0][np.triu_indices(4, 1)], 0.0)  # masked: exactly 0


# --- causality --------------------------------------------------------------------------------


def test_changing_later_tokens_leaves_earlier_logits_exactly_unchanged():
    steps = L
    net = nets.transformer_lm(V, D, H, 2, L)
    params = _init(net, (-1, steps))
    apply = jax.jit(net.apply)
    ids = np.asarray(_ids((3, steps), seed=5))
    base = np.asarray(apply(params, ids))
    rng = _rng(6)
    for t in range(steps - 1):
        changed = ids.copy()
        changed[:, t + 1:] = (ids[:, t + 1:] + rng.integers(1, V, ids[:, t + 1:].shape)) % V  # every later id differs
        out = np.asarray(apply(params, changed))
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])      # bit for bit
        assert np.min(np.max(np.abs(out[:, t + 1:] - base[:, t + 1:]), axis=-1)) > 1e-6  # later ones moved


def test_attention_output_at_t_ignores_later_inputs_exactly():
    layer = nets.CausalSelfAttention(D, H)
    params = _init(layer, (-1, T, D))
    x = np.asarray(_x())
    base = np.asarray(layer.apply(params, x))
    for t in range(T - 1):
        changed = x.copy()
        changed[:, t + 1:] += 100.0 * _rng(t).standard_normal(changed[:, t + 1:].shape)
        out = np.asarray(layer.apply(params, changed))
        np.testing.assert_array_equal(out[:, :t + 1], base[:, :t + 1])
        assert not np.allclose(out[:, t + 1:], base[:, t + 1:])


# --- shapes, counts, errors -------------------------------------------------------------------


def _abstract(layer, in_shape, dtype=jnp.float32):
    found = {}

    def run(key):
        found["shape"], params = layer.init(key, in_shape, dtype=dtype)
        return params

    params = jax.eval_shape(run, KEY)
    return found["shape"], params


SHAPE_TABLE = [  # (name, layer, in_shape, out_shape, number of params worked out by hand)
    ("Embedding", nets.Embedding(11, 6), (-1, 9), (-1, 9, 6), 11 * 6),
    ("PositionalEmbedding", nets.PositionalEmbedding(16, 6), (-1, 9, 6), (-1, 9, 6), 16 * 6),
    ("CausalSelfAttention", nets.CausalSelfAttention(6, 3), (-1, 9, 6), (-1, 9, 6), 4 * 36 + 4 * 6),
    ("TransformerBlock", nets.TransformerBlock(6, 3, 10), (-1, 9, 6), (-1, 9, 6),
     (4 * 36 + 4 * 6) + 2 * (2 * 6) + (6 * 10 + 10) + (10 * 6 + 6)),
    ("transformer_lm", nets.transformer_lm(11, 6, 3, 2, 16), (-1, 9), (-1, 9, 11),
     11 * 6 + 16 * 6 + 2 * ((4 * 36 + 4 * 6) + 2 * 12 + (6 * 24 + 24) + (24 * 6 + 6)) + 12 + (6 * 11 + 11)),
]


@pytest.mark.parametrize("name,layer,in_shape,out_shape,count", SHAPE_TABLE, ids=[r[0] for r in SHAPE_TABLE])
def test_shapes_and_param_counts(name, layer, in_shape, out_shape, count):
    shape, params = _abstract(layer, in_shape)
    assert shape == out_shape
    assert nets.param_count(params) == count
    dtype = jnp.int32 if len(in_shape) == 2 else jnp.float32
    y = jax.eval_shape(layer.apply, params, jax.ShapeDtypeStruct((4,) + in_shape[1:], dtype))
    assert y.shape == (4,) + out_shape[1:] and y.dtype == jnp.float32


ERROR_TABLE = [  # (name, layer, in_shape initialised for, bad input, message pattern)
    ("float token ids", nets.Embedding(V, D), (-1, T), jax.ShapeDtypeStruct((2, T), jnp.float32),
     r"Embedding: token ids must have an integer dtype, got float32"),
    ("ids of rank 3", nets.Embedding(V, D), (-1, T), jax.ShapeDtypeStruct((2, T, 1), jnp.int32),
     r"Embedding: expected an input of rank 2 \(B, T\) of token ids, got shape \(2, 5, 1\)"),
    ("id out of range", nets.Embedding(V, D), (-1, T), jnp.asarray([[0, 3, 7]]),
     r"Embedding: token ids must lie in \[0, 7\), found values in \[0, 7\]"),
    ("negative id", nets.Embedding(V, D), (-1, T), jnp.asarray([[-1, 3]]), r"found values in \[-1, 3\]"),
    ("sequence longer than max_len", nets.PositionalEmbedding(L, D), (-1, T, D), jax.ShapeDtypeStruct((2, L + 1, D), F64),
     r"PositionalEmbedding: a sequence of length 7 is longer than max_len=6"),
    ("positions wrong dim", nets.PositionalEmbedding(L, D), (-1, T, D), jax.ShapeDtypeStruct((2, T, D - 1), F64),
     r"PositionalEmbedding: initialised for inputs of shape \(\.\.\., 8\), got shape \(2, 5, 7\)"),
    ("attention wrong dim", nets.CausalSelfAttention(D, H), (-1, T, D), jax.ShapeDtypeStruct((2, T, D + 1), F64),
     r"CausalSelfAttention: initialised for inputs of shape \(\.\.\., 8\), got shape \(2, 5, 9\)"),
    ("attention rank 2", nets.CausalSelfAttention(D, H), (-1, T, D), jax.ShapeDtypeStruct((2, D), F64),
     r"CausalSelfAttention: expected an input of rank 3 \(B, T, D\), got shape \(2, 8\)"),
    ("block wrong dim", nets.TransformerBlock(D, H), (-1, T, D), jax.ShapeDtypeStruct((2, T, 4), F64),
     r"LayerNorm: initialised for inputs of shape \(\.\.\., 8\), got shape \(2, 5, 4\)"),
    ("lm longer than max_len", nets.transformer_lm(V, D, H, 1, L), (-1, T), jax.ShapeDtypeStruct((2, L + 2), jnp.int32),
     r"PositionalEmbedding: a sequence of length 8 is longer than max_len=6"),
    ("lm float ids", nets.transformer_lm(V, D, H, 1, L), (-1, T), jax.ShapeDtypeStruct((2, T), F64),
     r"Embedding: token ids must have an integer dtype, got float64"),
]


@pytest.mark.parametrize("name,layer,in_shape,bad,pattern", ERROR_TABLE, ids=[r[0] for r in ERROR_TABLE])
def test_bad_inputs_raise_naming_the_problem(name, layer, in_shape, bad, pattern):
    _, params = _abstract(layer, in_shape, dtype=F64)
    with pytest.raises(ValueError, match=pattern):
        if isinstance(bad, jax.ShapeDtypeStruct):
            jax.eval_shape(layer.apply, params, bad)
        else:
            layer.apply(jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), params), bad)


def test_construction_and_init_errors():
    for make in (lambda: nets.CausalSelfAttention(6, 4), lambda: nets.TransformerBlock(6, 4),
                 lambda: nets.transformer_lm(V, 6, 4, 1, L)):
        with pytest.raises(ValueError, match=r"CausalSelfAttention: heads=4 does not divide dim=6"):
            make()
    with pytest.raises(ValueError, match=r"Embedding: vocab must be a positive int, got 0"):
        nets.Embedding(0, 4)
    with pytest.raises(ValueError, match=r"transformer_lm: layers must be an int >= 0, got -1"):
        nets.transformer_lm(V, D, H, -1, L)
    with pytest.raises(ValueError, match=r"PositionalEmbedding: a sequence of length 9 is longer than max_len=6"):
        jax.eval_shape(lambda k: nets.transformer_lm(V, D, H, 1, L).init(k, (-1, 9)), KEY)
    with pytest.raises(ValueError, match=r"CausalSelfAttention: initialised for inputs of shape \(\.\.\., 8\), got shape \(-1, 5, 6\)"):
        jax.eval_shape(lambda k: nets.TransformerBlock(D, H).init(k, (-1, T, 6)), KEY)
    with pytest.raises(ValueError, match=r"Embedding: expected an input of rank 2"):
        jax.eval_shape(lambda k: nets.Embedding(V, D).init(k, (-1, T, D)), KEY)


def test_embedding_init_draws_the_documented_table():
    layer = nets.Embedding(500, 16)
    shape, params = layer.init(KEY, (-1, 3))
    table = np.asarray(params["table"])
    assert shape == (-1, 3, 16) and table.shape == (500, 16) and table.dtype == np.float32
    assert abs(table.std() - 0.02) < 0.001 and abs(table.mean()) < 0.001     # N(0, 0.02^2), 8000 draws
    np.testing.assert_array_equal(layer.init(KEY, (-1, 3))[1]["table"], table)  # the key decides


def test_out_of_range_ids_under_jit_embed_as_nan():
    layer = nets.Embedding(V, D)
    params = _init(layer, (-1, 3))
    out = np.asarray(jax.jit(layer.apply)(params, jnp.asarray([[0, V, 2]])))
    assert np.all(np.isnan(out[0, 1])) and np.all(np.isfinite(out[0, [0, 2]]))


# --- gradients and dtypes ---------------------------------------------------------------------


def lm_loss(net, params, ids):
    """Next-token cross-entropy per token (nats): logits at t predict the id at t + 1.

    The loss sums over every axis but the batch, so the (B, T - 1) positions are made the
    batch axis to average over tokens."""
    logits = net.apply(params, ids)
    return losses.softmax_cross_entropy_with_integer_labels(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                            ids[:, 1:].reshape(-1))


def test_jitted_gradient_through_the_lm_is_finite_shaped_like_params_and_not_zero():
    net = nets.transformer_lm(V, D, H, 2, L)
    params = _like_init(net, (-1, L))
    grads = jax.jit(jax.grad(functools.partial(lm_loss, net)))(params, _ids((4, L), seed=7))
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params)
    pairs = list(zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(params)))
    assert len(pairs) == 2 + 2 * 12 + 4
    assert all(g.shape == p.shape and g.dtype == p.dtype == jnp.float32 for g, p in pairs)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g, _ in pairs)
    assert min(float(jnp.max(jnp.abs(g))) for g, _ in pairs) > 1e-7   # every leaf, not just one, gets a gradient


def test_gradient_equals_central_differences_in_float64():
    net = nets.transformer_lm(5, 4, 2, 1, 4, hidden=6)
    params = _init(net, (-1, 4), scale=0.5, seed=8)
    ids = _ids((2, 4), vocab=5, seed=9)
    flat, unravel = ravel_pytree(params)
    eps = 1e-5

    @jax.jit
    def both(theta):
        f = lambda theta: lm_loss(net, unravel(theta), ids)  # noqa: E731
        central = jax.vmap(lambda e: (f(theta + e) - f(theta - e)) / (2 * eps))
        return jax.grad(f)(theta), central(eps * jnp.eye(theta.shape[0], dtype=F64))

    grad, fd = (np.asarray(a) for a in both(flat))
    assert flat.shape == (5 * 4 + 4 * 4 + (8 + (4 * 16 + 4 * 4) + 8 + (4 * 6 + 6) + (6 * 4 + 4)) + 8 + (4 * 5 + 5),)  # 223
    relative = np.max(np.abs(grad - fd)) / np.max(np.abs(grad))
    assert relative < 1e-6, relative
    assert np.count_nonzero(np.abs(grad) > 1e-6) > 0.9 * grad.size   # nearly every entry is exercised


@pytest.mark.parametrize("dtype", [jnp.float32, F64])
def test_dtype_is_kept(dtype):
    net = nets.transformer_lm(V, D, H, 1, L)
    _, params = _abstract(net, (-1, T), dtype=dtype)
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(params))
    ids = jax.ShapeDtypeStruct((2, T), jnp.int32)
    assert jax.eval_shape(net.apply, params, ids).dtype == dtype
    grads = jax.eval_shape(jax.grad(functools.partial(lm_loss, net)), params, ids)
    assert all(leaf.dtype == dtype for leaf in jax.tree_util.tree_leaves(grads))
    block = nets.TransformerBlock(D, H)
    _, block_params = _abstract(block, (-1, T, D), dtype=dtype)
    assert jax.eval_shape(block.apply, block_params, jax.ShapeDtypeStruct((2, T, D), dtype)).dtype == dtype


# --- training ---------------------------------------------------------------------------------

TEXT = "the quick brown fox jumps over the lazy dog. " * 4   # a period of 45 characters
STEPS = 150


def test_adam_learns_a_repeating_text():
    vocab = sorted(set(TEXT))
    ids = np.asarray([vocab.index(c) for c in TEXT], np.int32)
    context = 16
    windows = jnp.asarray(np.stack([ids[i:i + context + 1] for i in range(45)]))   # (45, 17): every phase
    net = nets.transformer_lm(len(vocab), 16, 2, 1, context + 1)
    params = _like_init(net, (-1, context + 1))
    opt = optim.adam(1e-2)
    loss = functools.partial(lm_loss, net)

    @jax.jit
    def train(params):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params, windows)
            updates, state = opt.update(grads, state, params)
            return (optim.apply_updates(params, updates), state), value
        (params, _), values = jax.lax.scan(step, (params, opt.init(params)), None, length=STEPS)
        return values, loss(params, windows)

    values, final = train(params)
    first, last = float(values[0]), float(final)
    chance = math.log(len(vocab))                       # log 28 = 3.33
    assert abs(first - chance) < 1.0, (first, chance)   # the untrained model is near chance
    assert last < 0.1, (first, last)                    # 3% of chance: it has learnt the text
