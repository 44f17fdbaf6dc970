"""lab.backprop: the hand-written backward pass agrees with jax.grad, with central
finite differences and with a one-neuron example worked out by hand."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab import backprop
from tests.helpers import assert_tree_allclose

ACTIVATION_NAMES = ["sigmoid", "tanh", "relu", "leaky_relu", "identity"]
LOSS_NAMES = ["mse", "softmax_cross_entropy"]
BATCH = 5

# An independent reference network written with jax.nn, differentiated by jax.grad.
REFERENCE_F = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "leaky_relu": lambda z: jax.nn.leaky_relu(z, 0.01),
    "identity": lambda z: z,
}


def reference_loss(params, x, y, activation, loss, offsets=None):
    """Batch-mean loss; ``offsets[l]`` is added to z_l so jax.grad can read off dL/dz_l."""
    a = x
    for l, layer in enumerate(params):
        z = a @ layer["W"].T + layer["b"][None, :]
        if offsets is not None:
            z = z + offsets[l]
        a = z if l == len(params) - 1 else REFERENCE_F[activation](z)
    if loss == "mse":
        return 0.5 * jnp.mean(jnp.sum(jnp.square(a - y), axis=1))
    return jnp.mean(optax.softmax_cross_entropy(a, y))


reference_grad = jax.grad(reference_loss)


def make_problem(sizes, loss, seed=0):
    """Random params (nonzero biases), inputs and targets of the right kind for ``loss``.

    Drawn with numpy: eager jax.random would compile a sampler for every new shape."""
    rng = np.random.default_rng(seed)
    params = [
        {"W": jnp.asarray(1.5 * rng.normal(size=(n_out, n_in)) / np.sqrt(n_in)),
         "b": jnp.asarray(0.5 * rng.normal(size=(n_out,)))}
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]
    x = jnp.asarray(rng.normal(size=(BATCH, sizes[0])))
    if loss == "mse":
        y = jnp.asarray(rng.normal(size=(BATCH, sizes[-1])))
    else:
        y = jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=BATCH)])
    return params, x, y


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_matches_jax_grad(activation, loss):
    for depth, sizes in enumerate([[3, 4, 2], [3, 4, 4, 2], [3, 4, 4, 4, 2]]):
        params, x, y = make_problem(sizes, loss, seed=depth)
        value, grads, _, _ = backprop.gradients(params, x, y, activation, loss)
        assert_tree_allclose(value, reference_loss(params, x, y, activation, loss))
        expected = reference_grad(params, x, y, activation, loss)
        assert_tree_allclose(grads, expected, rtol=1e-10, atol=1e-14, err_msg=f"sizes {sizes}")


NUMPY_F = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0.0),
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.01 * z),
    "identity": lambda z: z,
}


def numpy_loss(params, x, y, activation, loss):
    """The same batch-mean loss in plain numpy, cheap enough to call once per parameter."""
    a = x
    for l, layer in enumerate(params):
        z = a @ layer["W"].T + layer["b"]
        a = z if l == len(params) - 1 else NUMPY_F[activation](z)
    if loss == "mse":
        return 0.5 * np.mean(np.sum((a - y) ** 2, axis=1))
    shifted = a - a.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(np.sum(y * log_p, axis=1))


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("activation", ACTIVATION_NAMES)
def test_matches_central_finite_differences(activation, loss):
    params, x, y = make_problem([3, 4, 4, 2], loss, seed=7)
    value, grads, _, _ = backprop.gradients(params, x, y, activation, loss)
    np_params = jax.tree_util.tree_map(np.array, params)
    x, y = np.asarray(x), np.asarray(y)
    assert_tree_allclose(value, numpy_loss(np_params, x, y, activation, loss), rtol=1e-12)
    h = 1e-6
    fd = jax.tree_util.tree_map(np.zeros_like, np_params)
    for layer, fd_layer in zip(np_params, fd):
        for name, array in layer.items():
            for idx in np.ndindex(array.shape):
                original = array[idx]
                array[idx] = original + h
                up = numpy_loss(np_params, x, y, activation, loss)
                array[idx] = original - h
                down = numpy_loss(np_params, x, y, activation, loss)
                array[idx] = original
                fd_layer[name][idx] = (up - down) / (2 * h)
    assert_tree_allclose(grads, fd, rtol=1e-6, atol=1e-9)


def test_jit_agrees_with_eager():
    params, x, y = make_problem([3, 4, 2], "softmax_cross_entropy", seed=5)
    jitted = jax.jit(backprop.gradients, static_argnames=("activation", "loss"))
    eager = backprop.gradients(params, x, y, "tanh", "softmax_cross_entropy")
    assert_tree_allclose(jitted(params, x, y, activation="tanh", loss="softmax_cross_entropy"), eager)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_deltas_are_per_example_dloss_dz(loss):
    sizes = [3, 4, 4, 2]
    params, x, y = make_problem(sizes, loss, seed=3)
    _, _, trace, deltas = backprop.gradients(params, x, y, "tanh", loss)
    assert [d.shape for d in deltas] == [(BATCH, n) for n in sizes[1:]]
    assert [z.shape for z in trace.z] == [(BATCH, n) for n in sizes[1:]]
    assert [a.shape for a in trace.a] == [(BATCH, n) for n in sizes]
    assert_tree_allclose(trace.a[0], x)
    # the output delta is the famous one-liner for both losses
    output = trace.a[-1]
    expected_output_delta = output - y if loss == "mse" else jax.nn.softmax(output) - y
    assert_tree_allclose(deltas[-1], expected_output_delta)
    # every delta is B times the derivative of the batch-mean loss w.r.t. that layer's z
    zeros = [jnp.zeros_like(z) for z in trace.z]
    dl_dz = jax.grad(reference_loss, argnums=5)(params, x, y, "tanh", loss, zeros)
    assert_tree_allclose([d / BATCH for d in deltas], dl_dz, rtol=1e-10, atol=1e-15)


def test_one_neuron_worked_example():
    # 1-1-1 net, sigmoid hidden unit, linear output, loss 1/2 (y_hat - y)^2
    params = [{"W": jnp.array([[0.5]]), "b": jnp.array([-1.0])}, {"W": jnp.array([[2.0]]), "b": jnp.array([0.5])}]
    x, y = jnp.array([[2.0]]), jnp.array([[1.0]])
    value, grads, trace, deltas = backprop.gradients(params, x, y, "sigmoid", "mse")
    # forward:  z1 = 0.5*2 - 1 = 0,  a1 = sigmoid(0) = 0.5,  z2 = y_hat = 2*0.5 + 0.5 = 1.5
    assert_tree_allclose(trace.z, [jnp.array([[0.0]]), jnp.array([[1.5]])])
    assert_tree_allclose(trace.a[1], jnp.array([[0.5]]))
    assert value == 0.5 * 0.5**2  # 0.125
    # backward: delta2 = y_hat - y = 0.5;  delta1 = W2 * delta2 * s'(0) = 2 * 0.5 * 0.25 = 0.25
    assert_tree_allclose(deltas, [jnp.array([[0.25]]), jnp.array([[0.5]])])
    # dW2 = delta2 a1 = 0.25, db2 = 0.5;  dW1 = delta1 x = 0.5, db1 = 0.25
    expected = [{"W": jnp.array([[0.5]]), "b": jnp.array([0.25])}, {"W": jnp.array([[0.25]]), "b": jnp.array([0.5])}]
    assert_tree_allclose(grads, expected)


@pytest.mark.parametrize("name", ACTIVATION_NAMES)
def test_hand_written_derivatives(name):
    z = jnp.asarray(np.linspace(-3.0, 3.0, BATCH * 4).reshape(BATCH, 4) + 0.1)  # avoids the kink at 0
    act = backprop.ACTIVATIONS[name]
    # f is elementwise, so the gradient of sum(f(z)) is f'(z) entry by entry
    assert_tree_allclose(act.df(z), jax.grad(lambda v: jnp.sum(act.f(v)))(z))
    assert_tree_allclose(act.f(z), REFERENCE_F[name](z))


def test_init_mlp_params_shapes_and_scale():
    params = backprop.init_mlp_params(jax.random.PRNGKey(1), [64, 64, 64], scale=2.0, dtype=jnp.float32)
    assert [(p["W"].shape, p["b"].shape) for p in params] == [((64, 64), (64,))] * 2
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))
    assert np.all(np.asarray(params[0]["b"]) == 0)
    assert not np.allclose(np.asarray(params[0]["W"]), np.asarray(params[1]["W"]))  # independent keys
    # std of W_l is scale / sqrt(fan_in) = 0.25, estimated from 4096 draws (standard error ~0.003)
    assert abs(np.std(np.asarray(params[0]["W"])) - 0.25) < 0.015


def test_errors_name_the_problem():
    params, x, y = make_problem([3, 4, 2], "mse")
    with pytest.raises(ValueError, match="unknown activation 'gelu'.*identity, leaky_relu, relu, sigmoid, tanh"):
        backprop.forward(params, x, "gelu")
    with pytest.raises(ValueError, match="unknown loss 'hinge'.*mse, softmax_cross_entropy"):
        backprop.gradients(params, x, y, "tanh", "hinge")
    with pytest.raises(ValueError, match=r"layer 1: W has shape \(4, 3\).*input has 2 features"):
        backprop.forward(params, x[:, :2], "tanh")
    with pytest.raises(ValueError, match=r"x must have shape \(batch, n_in\); got shape \(3,\)"):
        backprop.forward(params, x[0], "tanh")
    with pytest.raises(ValueError, match=r"output has shape \(5, 2\) but y has shape \(5, 3\)"):
        backprop.gradients(params, x, jnp.zeros((BATCH, 3)), "tanh", "mse")
    with pytest.raises(ValueError, match=r"sizes must list at least two positive widths.*\[3\]"):
        backprop.init_mlp_params(jax.random.PRNGKey(0), [3])
