"""Networks: shapes, parameter counts, layer arithmetic, dropout expectations, batch-norm state,
recurrences against hand-unrolled loops, error messages, jit/vmap and dtypes."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import nets
from tests.helpers import assert_tree_allclose

KEY = jax.random.key(0)
F64 = jnp.float64


def _normal(shape, seed=1, dtype=F64):
    """Test data from NumPy: no random-number kernel to compile for every shape."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


# --- shapes and parameter counts -------------------------------------------------------

# (name, layer, in_shape with batch -1, out_shape)
SHAPE_TABLE = [
    ("Dense", nets.Dense(5), (-1, 7), (-1, 5)),
    ("Dense no bias on (N, T, F)", nets.Dense(5, use_bias=False), (-1, 4, 7), (-1, 4, 5)),
    ("Conv2D SAME", nets.Conv2D(4, 3), (-1, 8, 8, 2), (-1, 8, 8, 4)),
    ("Conv2D VALID stride 2", nets.Conv2D(4, (3, 2), 2, "VALID"), (-1, 9, 8, 2), (-1, 4, 4, 4)),
    ("Conv2D explicit pads", nets.Conv2D(3, 3, 1, ((1, 1), (0, 0))), (-1, 5, 5, 1), (-1, 5, 3, 3)),
    ("MaxPool", nets.MaxPool(2), (-1, 8, 8, 3), (-1, 4, 4, 3)),
    ("AvgPool SAME stride 2", nets.AvgPool(3, 2, "SAME"), (-1, 7, 7, 3), (-1, 4, 4, 3)),
    ("Flatten", nets.Flatten, (-1, 4, 4, 3), (-1, 48)),
    ("Dropout", nets.Dropout(0.5), (-1, 6), (-1, 6)),
    ("DropConnect", nets.DropConnect(3, 0.5), (-1, 6), (-1, 3)),
    ("BatchNorm", nets.BatchNorm(), (-1, 4, 4, 3), (-1, 4, 4, 3)),
    ("LayerNorm", nets.LayerNorm(), (-1, 6), (-1, 6)),
    ("Residual", nets.Residual(nets.Dense(6), nets.Tanh), (-1, 6), (-1, 6)),
    ("Relu", nets.Relu, (-1, 6), (-1, 6)),
    ("Activation(elu)", nets.Activation("elu", alpha=0.5), (-1, 6), (-1, 6)),
    ("PReLU", nets.PReLU(), (-1, 2, 6), (-1, 2, 6)),
    ("SimpleRNN last", nets.SimpleRNN(5), (-1, 4, 3), (-1, 5)),
    ("SimpleRNN sequence", nets.SimpleRNN(5, return_sequences=True), (-1, 4, 3), (-1, 4, 5)),
    ("LSTM last", nets.LSTM(5), (-1, 4, 3), (-1, 5)),
    ("LSTM sequence", nets.LSTM(5, return_sequences=True), (-1, 4, 3), (-1, 4, 5)),
    ("RBF", nets.RBF(7), (-1, 3), (-1, 7)),
    ("mlp", nets.mlp([16, 8, 3], dropout=0.1, batch_norm=True), (-1, 10), (-1, 3)),
    ("cnn", nets.cnn(), (-1, 8, 8, 1), (-1, 10)),
    ("rnn", nets.rnn(6, 2), (-1, 5, 3), (-1, 2)),
    ("lstm", nets.lstm(6, 2, return_sequences=True), (-1, 5, 3), (-1, 5, 2)),
    ("rbf_network", nets.rbf_network(5, 2), (-1, 3), (-1, 2)),
    ("perceptron", nets.perceptron(3), (-1, 3), (-1,)),
]


def _abstract_init(layer, in_shape, dtype=jnp.float32):
    """(out_shape, params, state) with params and state as shape structs: traced, never computed."""
    found = {}

    def run(key):
        found["shape"], params, state = layer.init_with_state(key, in_shape, dtype=dtype)
        return params, state

    params, state = jax.eval_shape(run, KEY)
    return found["shape"], params, state


@pytest.mark.parametrize("name,layer,in_shape,out_shape", SHAPE_TABLE, ids=[r[0] for r in SHAPE_TABLE])
def test_output_shapes(name, layer, in_shape, out_shape):
    shape, params, state = _abstract_init(layer, in_shape)
    assert shape == out_shape
    x = jax.ShapeDtypeStruct((3,) + in_shape[1:], jnp.float32)
    for train in (True, False):
        y, _ = jax.eval_shape(lambda p, s, x: layer.apply_with_state(p, s, x, key=KEY, train=train), params, state, x)
        assert y.shape == (3,) + out_shape[1:]


def test_plain_init_gives_the_same_out_shape():
    for name, layer, in_shape, out_shape in [SHAPE_TABLE[i] for i in (0, 5, 7)]:  # Dense, MaxPool, Flatten
        assert layer.init(KEY, in_shape)[0] == out_shape, name


def test_dense_param_count_for_a_flattened_224x224_rgb_image():
    inputs = 224 * 224 * 3
    assert inputs == 150_528
    for use_bias, expected in [(True, 602_116), (False, 602_112)]:
        layer = nets.Dense(4, use_bias=use_bias)
        params = jax.eval_shape(lambda k: layer.init(k, (1, inputs))[1], KEY)
        assert params["w"].shape == (150_528, 4)
        assert nets.param_count(params["w"]) == 602_112
        assert nets.param_count(params) == expected


# (name, layer, in_shape, number of params worked out by hand)
COUNT_TABLE = [
    ("mlp 64-16-10", nets.mlp([16, 10]), (-1, 64), 64 * 16 + 16 + 16 * 10 + 10),
    ("mlp with batch norm", nets.mlp([16, 10], batch_norm=True), (-1, 64), 1210 + 2 * 16),
    ("cnn", nets.cnn(), (-1, 8, 8, 1), (9 * 1 * 8 + 8) + (9 * 8 * 16 + 16) + (64 * 10 + 10)),
    ("Conv2D 3x3 3->8 no bias", nets.Conv2D(8, 3, use_bias=False), (-1, 5, 5, 3), 9 * 3 * 8),
    ("rnn F=3 H=6 out=2", nets.rnn(6, 2), (-1, 5, 3), (3 * 6 + 6 * 6 + 6) + (6 * 2 + 2)),
    ("lstm F=3 H=6 out=2", nets.lstm(6, 2), (-1, 5, 3), 4 * 6 * (3 + 6 + 1) + (6 * 2 + 2)),
    ("rbf 5 centres in 3-D", nets.rbf_network(5, 2), (-1, 3), 5 * 3 + 5 * 2 + 2),
    ("perceptron", nets.perceptron(4), (-1, 4), 5),
    ("PReLU shared", nets.PReLU(per_feature=False), (-1, 4), 1),
    ("Flatten", nets.Flatten, (-1, 2, 2), 0),
]


@pytest.mark.parametrize("name,layer,in_shape,count", COUNT_TABLE, ids=[r[0] for r in COUNT_TABLE])
def test_param_counts(name, layer, in_shape, count):
    assert nets.param_count(_abstract_init(layer, in_shape)[1]) == count


def test_params_are_plain_pytrees_and_init_matches_init_with_state():
    net = nets.serial(nets.Dense(3), nets.Relu, nets.BatchNorm(), nets.Dense(2, use_bias=False))
    _, params = net.init(KEY, (-1, 4))
    _, params2, state = net.init_with_state(KEY, (-1, 4))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(
        ({"w": 0, "b": 0}, (), {"scale": 0, "bias": 0}, {"w": 0}))
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(((), (), {"mean": 0, "var": 0}, ()))
    assert_tree_allclose(params, params2, rtol=0, atol=0)


def test_init_dtype_sets_param_dtype():
    _, params = nets.mlp([4, 2]).init(KEY, (-1, 3), dtype=F64)
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(params)} == {jnp.dtype(F64)}


# --- layer arithmetic ----------------------------------------------------------------------


def test_dense_computes_x_w_plus_b():
    _, p = nets.Dense(3).init(KEY, (-1, 4), dtype=F64)
    x = _normal((5, 4))
    assert_tree_allclose(nets.Dense(3).apply(p, x), np.asarray(x) @ np.asarray(p["w"]) + np.asarray(p["b"]))


def test_conv2d_matches_a_direct_cross_correlation():
    layer = nets.Conv2D(2, 3, 1, "VALID")
    _, p = layer.init(KEY, (-1, 5, 4, 3), dtype=F64)
    x, w, b = np.asarray(_normal((2, 5, 4, 3))), np.asarray(p["w"]), np.asarray(p["b"])
    expected = np.zeros((2, 3, 2, 2))
    for i in range(3):
        for j in range(2):
            expected[:, i, j, :] = np.einsum("nhwc,hwco->no", x[:, i:i + 3, j:j + 3, :], w) + b
    assert_tree_allclose(layer.apply(p, jnp.asarray(x)), expected)


def test_pools_on_a_known_image():
    x = jnp.arange(9.0, dtype=F64).reshape(1, 3, 3, 1)  # [[0,1,2],[3,4,5],[6,7,8]]
    assert_tree_allclose(nets.MaxPool(2, 1).apply((), x)[0, :, :, 0], np.array([[4.0, 5.0], [7.0, 8.0]]))
    # SAME with stride 2 pads the bottom/right; padded cells are not counted in the mean
    avg = nets.AvgPool(2, 2, "SAME").apply((), x)[0, :, :, 0]
    assert_tree_allclose(avg, np.array([[(0 + 1 + 3 + 4) / 4, (2 + 5) / 2], [(6 + 7) / 2, 8.0]]))


def test_activation_layers_and_prelu_slope_gradient():
    x = jnp.array([[-2.0, -0.5, 0.0, 3.0]], F64)
    assert_tree_allclose(nets.LeakyRelu(0.1).apply((), x), np.array([[-0.2, -0.05, 0.0, 3.0]]))
    assert_tree_allclose(nets.Activation(jnp.square).apply((), x), np.asarray(x) ** 2)
    prelu = nets.PReLU(per_feature=False)
    _, p = prelu.init(KEY, (-1, 4), dtype=F64)
    assert_tree_allclose(prelu.apply(p, x), np.array([[-0.5, -0.125, 0.0, 3.0]]))
    grad = jax.grad(lambda p: jnp.sum(prelu.apply(p, x)))(p)
    assert_tree_allclose(grad["slope"], np.array(-2.5))  # d/da sum(a x, x < 0) = sum of negative x


def test_residual_equals_x_plus_f_x():
    block = nets.serial(nets.Dense(6), nets.Tanh)
    res = nets.Residual(nets.Dense(6), nets.Tanh)
    _, p = res.init(KEY, (-1, 6), dtype=F64)
    x = _normal((4, 6))
    assert_tree_allclose(res.apply(p, x), x + block.apply(p, x))


def test_residual_threads_batch_norm_state():
    res = nets.Residual(nets.Dense(3), nets.BatchNorm())
    _, p, s = res.init_with_state(KEY, (-1, 3), dtype=F64)
    y, s2 = res.apply_with_state(p, s, _normal((8, 3)), train=True)
    assert y.shape == (8, 3)
    assert not np.allclose(s2[1]["mean"], s[1]["mean"])


def test_layer_norm_normalises_each_example():
    ln = nets.LayerNorm(eps=0.0)
    _, p = ln.init(KEY, (-1, 5), dtype=F64)
    x = 3.0 + 2.0 * _normal((4, 5))
    y = np.asarray(ln.apply(p, x))
    assert_tree_allclose(y.mean(axis=-1), np.zeros(4), atol=1e-12)
    assert_tree_allclose(y.var(axis=-1), np.ones(4))
    p = {"scale": jnp.full((5,), 2.0, F64), "bias": jnp.full((5,), -1.0, F64)}
    assert_tree_allclose(ln.apply(p, x), 2.0 * y - 1.0)


def test_rbf_features_and_network_numbers():
    centers = jnp.array([[0.0, 0.0], [1.0, 0.0]], F64)
    x = jnp.array([[0.0, 0.0], [1.0, 1.0]], F64)
    rbf = nets.RBF(centers, gamma=0.5)
    _, p = rbf.init(KEY, (-1, 2), dtype=F64)
    phi = np.array([[1.0, math.exp(-0.5)], [math.exp(-1.0), math.exp(-0.5)]])  # exp(-0.5 ||x - c||^2)
    assert_tree_allclose(rbf.apply(p, x), phi)
    net = nets.rbf_network(centers, 3, gamma=0.5)
    _, (pc, pd) = net.init(KEY, (-1, 2), dtype=F64)
    assert_tree_allclose(pc["centers"], centers)
    assert_tree_allclose(net.apply((pc, pd), x), phi @ np.asarray(pd["w"]) + np.asarray(pd["b"]))


# --- the perceptron and its learning rule --------------------------------------------------


def test_perceptron_output_and_one_hand_computed_update():
    p = {"w": jnp.array([1.0, -1.0], F64), "b": jnp.array(-0.5, F64)}
    x = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], F64)
    assert_tree_allclose(nets.perceptron(2).apply(p, x), np.array([1.0, 0.0, 0.0]))
    zero = {"w": jnp.zeros(2, F64), "b": jnp.zeros((), F64)}
    # step(0) = 1 but the target is 0: error -1, so w = -lr x and b = -lr
    new = nets.perceptron_update(zero, jnp.array([1.0, 2.0], F64), jnp.array(0.0, F64), lr=0.5)
    assert_tree_allclose(new, {"w": np.array([-0.5, -1.0]), "b": np.array(-0.5)})
    # a correct prediction leaves the weights alone
    assert_tree_allclose(nets.perceptron_update(new, jnp.array([1.0, 2.0], F64), jnp.array(0.0, F64)), new)


def _mistakes_after(epochs, y):
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], F64)
    net = nets.perceptron(2)
    _, p = net.init(KEY, (-1, 2), dtype=F64)
    update = jax.jit(nets.perceptron_update)
    for _ in range(epochs):
        p = update(p, x, y)
    return int(jnp.sum(net.apply(p, x) != y)), p, net, x


def test_perceptron_rule_learns_and_but_not_xor_while_its_gradient_is_zero():
    mistakes, p, net, x = _mistakes_after(10, jnp.array([0.0, 0.0, 0.0, 1.0], F64))
    assert mistakes == 0
    assert _mistakes_after(50, jnp.array([0.0, 1.0, 1.0, 0.0], F64))[0] >= 1
    # gradient descent gets no signal through the step activation
    grad = jax.grad(lambda p: jnp.sum((net.apply(p, x) - 0.5) ** 2))(p)
    assert_tree_allclose(grad, jax.tree_util.tree_map(jnp.zeros_like, p), rtol=0, atol=0)


# --- dropout and DropConnect ---------------------------------------------------------------

NUM_KEYS = 4000  # mean over 4000 masks: standard error sqrt(r / (1 - r) / 4000) |x| ~ 1.6% |x| at r = 0.5


@pytest.mark.parametrize("mode", ["inverted", "standard"])
def test_dropout_keeps_the_expectation(mode):
    rate, keep = 0.5, 0.5
    layer = nets.Dropout(rate, mode)
    x = jnp.linspace(0.5, 2.0, 50, dtype=F64).reshape(1, 50)
    keys = jax.random.split(KEY, NUM_KEYS)
    ys = jax.vmap(lambda k: layer.apply((), x, key=k, train=True))(keys)
    expected = layer.apply((), x, train=False)
    assert_tree_allclose(expected, x if mode == "inverted" else keep * x)
    train_scale = 1.0 / keep if mode == "inverted" else 1.0
    se = train_scale * np.abs(np.asarray(x)) * math.sqrt(keep * (1 - keep) / NUM_KEYS)
    assert np.all(np.abs(np.asarray(ys.mean(axis=0)) - np.asarray(expected)) < 5 * se)  # 5 standard errors
    assert abs(float(jnp.mean(ys == 0)) - rate) < 0.01


def test_test_time_dropout_is_deterministic_and_train_needs_a_key():
    layer = nets.Dropout(0.3)
    x = _normal((4, 5))
    a = layer.apply((), x, key=jax.random.key(1), train=False)
    b = layer.apply((), x, key=jax.random.key(2), train=False)
    assert_tree_allclose(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="Dropout: train=True .* needs a PRNG key"):
        layer.apply((), x, train=True)
    with pytest.raises(ValueError, match="DropConnect: train=True .* needs a PRNG key"):
        dc = nets.DropConnect(2, 0.3)
        dc.apply(dc.init(KEY, (-1, 5))[1], x.astype(jnp.float32), train=True)


def test_dropout_argument_errors():
    with pytest.raises(ValueError, match="drop probability and must lie in \\[0, 1\\), got 1.0"):
        nets.Dropout(1.0)
    with pytest.raises(ValueError, match="'inverted' or 'standard', got 'scaled'"):
        nets.Dropout(0.5, "scaled")


def test_dropconnect_keeps_the_expectation_and_uses_expected_weights_at_test_time():
    rate, keep = 0.4, 0.6
    layer = nets.DropConnect(3, rate)
    _, p = layer.init(KEY, (-1, 6), dtype=F64)
    x = _normal((2, 6))
    expected = layer.apply(p, x, train=False)
    assert_tree_allclose(expected, np.asarray(x) @ (keep * np.asarray(p["w"])) + np.asarray(p["b"]))
    ys = jax.vmap(lambda k: layer.apply(p, x, key=k, train=True))(jax.random.split(KEY, NUM_KEYS))
    # Var y_j = p (1 - p) sum_i x_i^2 W_ij^2 for one mask; the mean over masks has that / NUM_KEYS
    se = np.sqrt(keep * (1 - keep) * (np.asarray(x) ** 2) @ (np.asarray(p["w"]) ** 2) / NUM_KEYS)
    assert np.all(np.abs(np.asarray(ys.mean(axis=0)) - np.asarray(expected)) < 5 * se)


def test_serial_gives_each_dropout_layer_its_own_key():
    d1, d2 = nets.Dropout(0.5, "standard"), nets.Dropout(0.5, "standard")
    net = nets.serial(d1, d2)
    x = jnp.ones((1, 20_000), F64)
    y = net.apply(((), ()), x, key=KEY, train=True)
    k1, k2 = jax.random.split(KEY, 2)
    assert_tree_allclose(y, d2.apply((), d1.apply((), x, key=k1, train=True), key=k2, train=True))
    # independent masks keep 1/4 of the units; one shared mask would keep 1/2 (sd of the fraction: 0.003)
    assert abs(float(jnp.mean(y)) - 0.25) < 0.015


# --- batch norm --------------------------------------------------------------------------------


def _bn(shape=(-1, 3), momentum=0.9):
    layer = nets.BatchNorm(momentum=momentum)
    _, params, state = layer.init_with_state(KEY, shape, dtype=F64)
    return layer, params, state


@pytest.mark.parametrize("shape", [(16, 3), (4, 3, 3, 3)])
def test_batch_norm_train_output_is_standardised_per_feature(shape):
    layer, params, state = _bn((-1,) + shape[1:])
    x = 5.0 + 3.0 * _normal(shape)
    y, _ = layer.apply_with_state(params, state, x, train=True)
    axes = tuple(range(len(shape) - 1))
    assert_tree_allclose(np.asarray(y).mean(axis=axes), np.zeros(3), atol=1e-12)
    assert_tree_allclose(np.asarray(y).var(axis=axes), np.ones(3), rtol=1e-5)  # var / (var + eps)


def test_batch_norm_running_statistics_follow_the_documented_formula():
    layer, params, state = _bn(momentum=0.8)
    x1, x2 = _normal((10, 3), seed=2), 2.0 + _normal((10, 3), seed=3)
    _, s1 = layer.apply_with_state(params, state, x1, train=True)
    _, s2 = layer.apply_with_state(params, s1, x2, train=True)
    m1, v1 = np.asarray(x1).mean(0), np.asarray(x1).var(0)  # biased batch variance
    m2, v2 = np.asarray(x2).mean(0), np.asarray(x2).var(0)
    mean = 0.8 * (0.8 * 0.0 + 0.2 * m1) + 0.2 * m2
    var = 0.8 * (0.8 * 1.0 + 0.2 * v1) + 0.2 * v2
    assert_tree_allclose(s2, {"mean": mean, "var": var})


def test_batch_norm_eval_uses_running_statistics_and_keeps_state():
    layer, params, _ = _bn()
    state = {"mean": jnp.array([1.0, -1.0, 0.5], F64), "var": jnp.array([4.0, 1.0, 0.25], F64)}
    params = {"scale": jnp.array([1.0, 2.0, 3.0], F64), "bias": jnp.array([0.0, 0.1, 0.2], F64)}
    x = _normal((5, 3))
    y, s = layer.apply_with_state(params, state, x, train=False)
    m, v = np.asarray(state["mean"]), np.asarray(state["var"])
    expected = np.asarray(params["scale"]) * (np.asarray(x) - m) / np.sqrt(v + 1e-5) + np.asarray(params["bias"])
    assert_tree_allclose(y, expected)
    assert_tree_allclose(s, state, rtol=0, atol=0)


def test_batch_norm_gradient_through_train_mode_with_has_aux():
    layer, params, state = _bn()
    x, c = _normal((8, 3), seed=4), _normal((8, 3), seed=5)

    def loss(params, state):
        y, new_state = layer.apply_with_state(params, state, x, train=True)
        return jnp.sum(y * c), new_state

    (_, new_state), grads = jax.value_and_grad(loss, has_aux=True)(params, state)
    x_hat = (np.asarray(x) - np.asarray(x).mean(0)) / np.sqrt(np.asarray(x).var(0) + 1e-5)
    assert_tree_allclose(grads, {"scale": (x_hat * np.asarray(c)).sum(0), "bias": np.asarray(c).sum(0)})
    assert_tree_allclose(new_state["mean"], 0.1 * np.asarray(x).mean(0))


def test_batch_norm_plain_apply_raises():
    layer, params, _ = _bn()
    with pytest.raises(ValueError, match="BatchNorm keeps running statistics.*apply_with_state"):
        layer.apply(params, _normal((4, 3)), train=True)


def test_training_a_batch_norm_net_then_evaluating_it():
    net = nets.mlp([8, 1], activation="tanh", batch_norm=True)
    _, params, state = net.init_with_state(KEY, (-1, 2), dtype=F64)
    x = _normal((32, 2), seed=6)
    y = jnp.sin(2.0 * x[:, :1]) + x[:, 1:]

    def loss(params, state):
        out, state = net.apply_with_state(params, state, x, train=True)
        return jnp.mean((out - y) ** 2), state

    @jax.jit
    def step(params, state):
        (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, state)
        return jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads), state, value

    first = None
    for _ in range(30):
        params, state, value = step(params, state)
        first = value if first is None else first
    assert float(value) < 0.5 * float(first)
    # Dense, BatchNorm, tanh, Dense: only the BatchNorm entry holds arrays, and they have moved
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(((), {"mean": 0, "var": 0}, (), ()))
    assert float(jnp.max(jnp.abs(state[1]["mean"]))) > 0.01
    out, same_state = jax.jit(lambda p, s, x: net.apply_with_state(p, s, x, train=False))(params, state, x)
    assert_tree_allclose(same_state, state, rtol=0, atol=0)
    assert float(jnp.mean((out - y) ** 2)) < float(first)  # running statistics are good enough to evaluate


# --- recurrences against hand-unrolled loops -----------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.mark.parametrize("return_sequences", [False, True])
def test_rnn_equals_a_hand_unrolled_loop(return_sequences):
    net = nets.rnn(4, 2, return_sequences=return_sequences)
    _, (pr, pd) = net.init(KEY, (-1, 5, 3), dtype=F64)
    x = np.asarray(_normal((2, 5, 3)))
    wx, wh, b = (np.asarray(pr[k]) for k in ("w_x", "w_h", "b"))
    h, hs = np.zeros((2, 4)), []
    for t in range(5):
        h = np.tanh(x[:, t] @ wx + h @ wh + b)
        hs.append(h)
    hidden = np.stack(hs, axis=1) if return_sequences else h
    expected = hidden @ np.asarray(pd["w"]) + np.asarray(pd["b"])
    assert_tree_allclose(jax.jit(net.apply)((pr, pd), jnp.asarray(x)), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm_equals_a_hand_unrolled_loop(return_sequences):
    net = nets.lstm(4, 2, return_sequences=return_sequences, forget_bias=1.0)
    _, (pl, pd) = net.init(KEY, (-1, 5, 3), dtype=F64)
    wx, wh, b = (np.asarray(pl[k]) for k in ("w_x", "w_h", "b"))
    assert_tree_allclose(b, np.r_[np.zeros(4), np.ones(4), np.zeros(8)])  # forget gate starts at 1
    x = np.asarray(_normal((2, 5, 3)))
    h, c, hs = np.zeros((2, 4)), np.zeros((2, 4)), []
    for t in range(5):
        z = x[:, t] @ wx + h @ wh + b
        i, f, g, o = z[:, 0:4], z[:, 4:8], z[:, 8:12], z[:, 12:16]
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        hs.append(h)
    hidden = np.stack(hs, axis=1) if return_sequences else h
    expected = hidden @ np.asarray(pd["w"]) + np.asarray(pd["b"])
    assert_tree_allclose(jax.jit(net.apply)((pl, pd), jnp.asarray(x)), expected, rtol=1e-12, atol=1e-12)


# --- errors ------------------------------------------------------------------------------------

# (name, layer, in_shape it was initialised for, bad input shape, message pattern)
MISMATCH_TABLE = [
    ("Dense 64 vs 63", nets.Dense(4), (-1, 64), (2, 63), r"Dense: initialised for inputs of shape \(\.\.\., 64\), got shape \(2, 63\)"),
    ("Conv2D rank", nets.Conv2D(4), (-1, 8, 8, 1), (2, 8, 8), r"Conv2D: expected an input of rank 4 \(N, H, W, C\), got shape \(2, 8, 8\)"),
    ("Conv2D channels", nets.Conv2D(4), (-1, 8, 8, 1), (2, 8, 8, 3), r"Conv2D: initialised for .*\(\.\.\., 1\), got shape \(2, 8, 8, 3\)"),
    ("MaxPool rank", nets.MaxPool(2), (-1, 8, 8, 1), (2, 64), r"MaxPool: expected an input of rank 4"),
    ("DropConnect", nets.DropConnect(2, 0.5), (-1, 5), (2, 6), r"DropConnect: .*\(\.\.\., 5\), got shape \(2, 6\)"),
    ("LayerNorm", nets.LayerNorm(), (-1, 5), (2, 4), r"LayerNorm: .*\(\.\.\., 5\), got shape \(2, 4\)"),
    ("PReLU", nets.PReLU(), (-1, 5), (2, 4), r"PReLU: .*\(\.\.\., 5\), got shape \(2, 4\)"),
    ("SimpleRNN features", nets.SimpleRNN(3), (-1, 4, 2), (2, 4, 3), r"SimpleRNN: .*\(\.\.\., 2\), got shape \(2, 4, 3\)"),
    ("LSTM rank", nets.LSTM(3), (-1, 4, 2), (2, 2), r"LSTM: expected an input of rank 3 \(N, T, F\), got shape \(2, 2\)"),
    ("RBF", nets.RBF(3), (-1, 2), (2, 3), r"RBF: .*\(\.\.\., 2\), got shape \(2, 3\)"),
    ("perceptron", nets.perceptron(2), (-1, 2), (2, 3), r"perceptron: .*\(\.\.\., 2\), got shape \(2, 3\)"),
    ("mlp", nets.mlp([4, 2]), (-1, 64), (2, 8, 8), r"Dense: .*\(\.\.\., 64\), got shape \(2, 8, 8\)"),
]


@pytest.mark.parametrize("name,layer,in_shape,bad_shape,pattern", MISMATCH_TABLE, ids=[r[0] for r in MISMATCH_TABLE])
def test_shape_mismatch_raises_naming_both_shapes(name, layer, in_shape, bad_shape, pattern):
    _, params, _ = _abstract_init(layer, in_shape)  # the check fires before any arithmetic
    with pytest.raises(ValueError, match=pattern):
        jax.eval_shape(layer.apply, params, jax.ShapeDtypeStruct(bad_shape, jnp.float32))


def test_batch_norm_channel_mismatch_raises():
    layer, params, state = _bn((-1, 4, 4, 3))
    with pytest.raises(ValueError, match=r"BatchNorm: .*\(\.\.\., 3\), got shape \(2, 4, 4, 2\)"):
        layer.apply_with_state(params, state, jnp.zeros((2, 4, 4, 2), F64), train=True)


def test_init_time_errors():
    with pytest.raises(ValueError, match=r"Residual: the inner block maps shape \(-1, 6\) to \(-1, 4\)"):
        nets.Residual(nets.Dense(4)).init(KEY, (-1, 6))
    with pytest.raises(ValueError, match=r"Conv2D: expected an input of rank 4 .*got shape \(-1, 64\)"):
        nets.Conv2D(4).init(KEY, (-1, 64))
    with pytest.raises(ValueError, match=r"perceptron: .*\(\.\.\., 3\), got shape \(-1, 4\)"):
        nets.perceptron(3).init(KEY, (-1, 4))
    with pytest.raises(ValueError, match=r"MaxPool: window \(4, 4\) does not fit input"):
        nets.MaxPool(4).init(KEY, (-1, 2, 2, 1))
    with pytest.raises(ValueError, match=r"sizes must be a non-empty list"):
        nets.mlp([])
    with pytest.raises(TypeError, match="argument 1 is a function, not a Layer"):
        nets.serial(nets.Dense(2), nets.LeakyRelu)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'rleu'; valid names: .*relu.*tanh"):
        nets.mlp([4, 2], activation="rleu")
    with pytest.raises(ValueError, match="unknown initializer 'he'; valid names: .*he_normal"):
        nets.Dense(4, w_init="he")


def test_serial_rejects_params_of_the_wrong_length():
    net = nets.mlp([4, 2])
    _, params, _ = _abstract_init(net, (-1, 3))
    with pytest.raises(ValueError, match="serial: expected params for 3 layers, got 2"):
        net.apply(params[:2], jnp.zeros((1, 3), jnp.float32))


# --- jit, vmap and dtypes ----------------------------------------------------------------------


def test_jit_matches_eager_in_train_mode():
    net = nets.serial(nets.Dense(3), nets.Dropout(0.5), nets.Tanh)
    _, params = net.init(KEY, (-1, 4), dtype=F64)
    x = _normal((5, 4))
    eager = net.apply(params, x, key=KEY, train=True)
    jitted = jax.jit(net.apply, static_argnames="train")(params, x, key=KEY, train=True)
    assert_tree_allclose(jitted, eager)


def test_vmap_over_an_ensemble_of_params_matches_a_loop():
    net = nets.serial(nets.Conv2D(2, 3), nets.Relu, nets.MaxPool(2), nets.Flatten, nets.Dense(3))
    ensemble = jax.jit(jax.vmap(lambda k: net.init(k, (-1, 4, 4, 1), dtype=F64)[1]))(jax.random.split(KEY, 3))
    x = _normal((2, 4, 4, 1))
    outputs = jax.jit(jax.vmap(lambda p: net.apply(p, x)))(ensemble)
    apply = jax.jit(net.apply)
    for i in range(3):
        member = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[i], ensemble)
        assert_tree_allclose(outputs[i], apply(member, x))


# (name, net, in_shape) for float32-in, float32-out
FLOAT32_TABLE = [
    ("mlp+bn+dropout", nets.mlp([6, 2], batch_norm=True, dropout=0.2, output_activation="log_softmax"), (-1, 3)),
    ("cnn", nets.cnn(channels=(2,)), (-1, 8, 8, 1)),
    ("lstm", nets.lstm(3, 2), (-1, 4, 2)),
    ("rnn", nets.rnn(3, 2), (-1, 4, 2)),
    ("rbf", nets.rbf_network(3, 2), (-1, 2)),
    ("dropconnect+prelu+layernorm", nets.serial(nets.DropConnect(4, 0.3), nets.PReLU(), nets.LayerNorm()), (-1, 2)),
    ("avgpool", nets.serial(nets.AvgPool(2), nets.Flatten), (-1, 4, 4, 2)),
]


@pytest.mark.parametrize("name,net,in_shape", FLOAT32_TABLE, ids=[r[0] for r in FLOAT32_TABLE])
def test_float32_stays_float32(name, net, in_shape):
    _, params, state = _abstract_init(net, in_shape)
    x = jax.ShapeDtypeStruct((2,) + in_shape[1:], jnp.float32)
    y, new_state = jax.eval_shape(lambda p, s, x: net.apply_with_state(p, s, x, key=KEY, train=True), params, state, x)
    assert y.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves((params, new_state)))
