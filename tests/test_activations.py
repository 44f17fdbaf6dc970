"""lab.activations: derivatives against finite differences and closed forms, the
sigmoid/tanh derivative bounds, stable softmax at |x| ~ 1e4, and the lookup."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import ndtr

from lab import activations as A
from tests.helpers import assert_tree_allclose

# 41 points on [-5, 5] shifted so that none is within 1e-2 of the kinks at 0
X = np.linspace(-5.0, 5.0, 41) + 0.013


def _s(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu_tanh_prime(x):
    c = math.sqrt(2 / math.pi)
    t = np.tanh(c * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t**2) * c * (1 + 3 * 0.044715 * x**2)


# (name, f, closed-form derivative); every f here is differentiable away from 0
DERIVATIVES = [
    ("identity", A.identity, lambda x: np.ones_like(x)),
    ("sigmoid", A.sigmoid, lambda x: _s(x) * (1 - _s(x))),
    ("tanh", A.tanh, lambda x: 1 - np.tanh(x) ** 2),
    ("relu", A.relu, lambda x: (x > 0).astype(x.dtype)),
    ("leaky_relu", A.leaky_relu, lambda x: np.where(x >= 0, 1.0, 0.01)),
    ("leaky_relu_0.2", functools.partial(A.leaky_relu, negative_slope=0.2), lambda x: np.where(x >= 0, 1.0, 0.2)),
    ("prelu_0.25", functools.partial(A.prelu, slope=0.25), lambda x: np.where(x >= 0, 1.0, 0.25)),
    ("elu", A.elu, lambda x: np.where(x > 0, 1.0, np.exp(x))),
    ("elu_0.5", functools.partial(A.elu, alpha=0.5), lambda x: np.where(x > 0, 1.0, 0.5 * np.exp(x))),
    ("softplus", A.softplus, _s),
    ("swish", A.swish, lambda x: _s(x) + x * _s(x) * (1 - _s(x))),
    ("gelu", A.gelu, lambda x: ndtr(x) + x * np.exp(-(x**2) / 2) / math.sqrt(2 * math.pi)),
    ("gelu_tanh", functools.partial(A.gelu, approximate=True), _gelu_tanh_prime),
]


@pytest.mark.parametrize("name,f,closed_form", DERIVATIVES, ids=[row[0] for row in DERIVATIVES])
def test_derivative_matches_finite_differences_and_closed_form(name, f, closed_form):
    h = 1e-6

    @jax.jit  # one compilation per activation instead of one per primitive
    def grad_and_neighbours(x):
        return jax.vmap(jax.grad(f))(x), f(x + h), f(x - h)

    grad, up, down = grad_and_neighbours(jnp.asarray(X))
    central = (np.asarray(up) - np.asarray(down)) / (2 * h)
    assert_tree_allclose(grad, central, rtol=1e-7, atol=1e-8, err_msg=name)
    assert_tree_allclose(grad, closed_form(X), err_msg=name)


def test_relu_derivative_at_zero_is_zero():
    # the documented convention (and jax.nn.relu's); jnp.maximum(x, 0) would give 1/2
    assert jax.grad(A.relu)(0.0) == 0.0


def test_sigmoid_and_tanh_derivative_bounds():
    x = jnp.asarray(np.arange(-50_000, 50_001) / 1000.0)  # [-50, 50] in steps of 1e-3, includes 0
    for f, bound in [(A.sigmoid, 0.25), (A.tanh, 1.0)]:
        d = np.asarray(jax.jit(jax.vmap(jax.grad(f)))(x))
        assert d.max() <= bound
        assert d[50_000] == bound and x[int(np.argmax(d))] == 0.0
        assert np.all(d >= 0)


def test_step_has_zero_gradient_everywhere():
    x = jnp.asarray(np.concatenate([X, [0.0, -0.0]]))
    assert_tree_allclose(jax.vmap(jax.grad(A.step))(x), jnp.zeros_like(x))
    assert_tree_allclose(A.step(jnp.array([-1.0, 0.0, 2.0])), jnp.array([0.0, 1.0, 1.0]))


def test_softmax_and_log_softmax_stable_at_1e4():
    rng = np.random.default_rng(0)
    z = np.concatenate([1e4 * rng.normal(size=(3, 5)), [[1e4, -1e4, 0.0, 1e4, 5e3]]])
    shifted = z - z.max(axis=1, keepdims=True)
    ref_p = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    ref_log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p, log_p = np.asarray(A.softmax(jnp.asarray(z))), np.asarray(A.log_softmax(jnp.asarray(z)))
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(log_p))
    assert_tree_allclose(p, ref_p)
    assert_tree_allclose(log_p, ref_log_p)
    assert_tree_allclose(p.sum(axis=1), np.ones(4))
    assert_tree_allclose(p[3, [0, 3]], np.array([0.5, 0.5]))  # the tie splits evenly
    positive = p > 0
    assert_tree_allclose(log_p[positive], np.log(p[positive]))


def test_softmax_axis_and_log_softmax_jacobian():
    x = jnp.array([[0.5, -1.0, 2.0], [3.0, 0.0, -2.0]])
    assert_tree_allclose(jnp.sum(A.softmax(x, axis=0), axis=0), jnp.ones(3))
    # d log_softmax(v)_i / d v_j = delta_ij - softmax(v)_j: the stop_gradient on the max is harmless
    v = x[0]
    p = np.asarray(A.softmax(v))
    assert_tree_allclose(jax.jit(jax.jacobian(A.log_softmax))(v), np.eye(3) - p[None, :])


def test_prelu_slope_gradient_is_sum_of_negative_inputs():
    x = jnp.asarray(np.array([[-2.0, 1.0, -0.5], [3.0, -1.5, -4.0]]))
    g = jax.grad(lambda s: jnp.sum(A.prelu(x, s)))(0.3)
    assert_tree_allclose(g, jnp.asarray(-2.0 - 0.5 - 1.5 - 4.0))
    # one slope per channel (last axis): each gets the sum of its own negative inputs
    g_channel = jax.grad(lambda s: jnp.sum(A.prelu(x, s)))(jnp.full((1, 3), 0.3))
    assert_tree_allclose(g_channel, jnp.array([[-2.0, -1.5, -4.5]]))


def test_get_looks_up_by_name_and_names_valid_choices():
    assert A.get("tanh") is A.tanh
    assert A.get(A.relu) is A.relu
    with pytest.raises(ValueError, match=r"unknown activation 'nope'; valid names: .*relu.*sigmoid.*tanh"):
        A.get("nope")
    with pytest.raises(ValueError, match="valid names"):
        A.get(None)


@pytest.mark.parametrize("name", sorted(A.ACTIVATIONS))
def test_float32_in_float32_out(name):
    f = functools.partial(A.prelu, slope=0.25) if name == "prelu" else A.get(name)
    x = jax.ShapeDtypeStruct((41, 2), jnp.float32)
    # eval_shape traces without compiling: the output and gradient types are what is checked
    out = jax.eval_shape(f, x)
    grad = jax.eval_shape(jax.grad(lambda v: jnp.sum(f(v))), x)
    assert (out.shape, out.dtype) == ((41, 2), jnp.float32)
    assert (grad.shape, grad.dtype) == ((41, 2), jnp.float32)


def test_prelu_per_feature_slope_aligns_with_last_axis():
    x = jnp.array([[-1.0, 2.0], [3.0, -4.0]])
    y = A.prelu(x, jnp.array([0.1, 0.5]))
    np.testing.assert_allclose(np.asarray(y), [[-0.1, 2.0], [3.0, -2.0]], rtol=1e-12)
