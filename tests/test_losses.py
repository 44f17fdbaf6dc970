"""lab.losses: equal to optax (or a numpy reference) in float64, stable at extreme
logits, the gradients the docstrings promise, and errors that name the problem."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab import losses
from tests.helpers import assert_tree_allclose

B, D, K = 6, 3, 5
RTOL = 1e-12

# optax references, jitted so that each compiles once instead of op by op
squared_error, l2_loss, huber_loss = jax.jit(optax.squared_error), jax.jit(optax.l2_loss), jax.jit(optax.huber_loss)
sigmoid_bce, hinge_loss = jax.jit(optax.sigmoid_binary_cross_entropy), jax.jit(optax.hinge_loss)
softmax_ce = jax.jit(optax.softmax_cross_entropy)
softmax_ce_int = jax.jit(optax.softmax_cross_entropy_with_integer_labels)


def _batch_mean(elementwise):
    """The module contract written independently: sum per example, mean over batch."""
    e = np.asarray(elementwise)
    return e.reshape(e.shape[0], -1).sum(axis=1).mean()


def _data(scale, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "pred": scale * rng.normal(size=(B, D)),
        "target": scale * rng.normal(size=(B, D)),
        "logits": scale * rng.normal(size=(B, K)),
        "probs": rng.uniform(size=(B, D)),
        "bits": rng.integers(0, 2, size=(B, D)).astype(np.float64),
        "classes": rng.integers(0, K, size=(B,)),
        "signs": rng.choice([-1.0, 1.0], size=(B, D)),
    }


# (name, ours(data), reference(data)); references come from optax where optax has the loss.
TABLE = [
    ("mse", lambda d: losses.mse(d["pred"], d["target"]),
     lambda d: _batch_mean(squared_error(d["pred"], d["target"]))),
    ("mse=2*l2_loss", lambda d: losses.mse(d["pred"], d["target"]),
     lambda d: 2 * _batch_mean(l2_loss(d["pred"], d["target"]))),
    ("mae", lambda d: losses.mae(d["pred"], d["target"]),
     lambda d: np.abs(d["pred"] - d["target"]).sum(axis=1).mean()),
    ("huber", lambda d: losses.huber(d["pred"], d["target"]),
     lambda d: _batch_mean(huber_loss(d["pred"], d["target"], delta=1.0))),
    ("huber_delta_0.3", lambda d: losses.huber(d["pred"], d["target"], delta=0.3),
     lambda d: _batch_mean(huber_loss(d["pred"], d["target"], delta=0.3))),
    ("bce_soft", lambda d: losses.binary_cross_entropy_with_logits(d["pred"], d["probs"]),
     lambda d: _batch_mean(sigmoid_bce(d["pred"], d["probs"]))),
    ("bce_hard", lambda d: losses.binary_cross_entropy_with_logits(d["pred"], d["bits"]),
     lambda d: _batch_mean(sigmoid_bce(d["pred"], d["bits"]))),
    ("softmax_ce", lambda d: losses.softmax_cross_entropy(d["logits"], np.eye(K)[d["classes"]]),
     lambda d: np.mean(softmax_ce(d["logits"], np.eye(K)[d["classes"]]))),
    ("softmax_ce_int", lambda d: losses.softmax_cross_entropy_with_integer_labels(d["logits"], d["classes"]),
     lambda d: np.mean(softmax_ce_int(d["logits"], d["classes"]))),
    ("hinge", lambda d: losses.hinge(d["pred"], d["signs"]),
     lambda d: _batch_mean(hinge_loss(d["pred"], d["signs"]))),
]


@pytest.mark.parametrize("scale", [1.0, 1e3])
@pytest.mark.parametrize("name,ours,reference", TABLE, ids=[row[0] for row in TABLE])
def test_matches_reference(name, ours, reference, scale):
    data = _data(scale)
    value = ours(data)
    assert value.shape == () and value.dtype == jnp.float64
    assert np.isfinite(value)
    assert_tree_allclose(value, np.float64(reference(data)), rtol=RTOL, atol=1e-12, err_msg=name)


def test_extra_axes_are_summed_per_example():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(4, 2, K)), rng.integers(0, K, size=(4, 2))
    expected = softmax_ce_int(logits, labels).sum(axis=1).mean()
    got = losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    assert_tree_allclose(got, np.float64(expected), rtol=RTOL)


@pytest.mark.parametrize("scale", [1.0, 1e3])
def test_softmax_cross_entropy_gradient_is_softmax_minus_onehot_over_batch(scale):
    d = _data(scale, seed=2)
    one_hot = np.eye(K)[d["classes"]]
    z = d["logits"]
    expected = (np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
                - one_hot) / B
    g_dense = jax.grad(losses.softmax_cross_entropy)(z, one_hot)
    g_int = jax.grad(losses.softmax_cross_entropy_with_integer_labels)(z, d["classes"])
    assert_tree_allclose(g_dense, expected, rtol=1e-10, atol=1e-15)
    assert_tree_allclose(g_int, expected, rtol=1e-10, atol=1e-15)


def test_bce_stable_at_huge_logits():
    z = jnp.array([1e4, -1e4, 1e4, -1e4])
    y = jnp.array([1.0, 0.0, 0.0, 1.0])
    # right with confidence costs 0; wrong with confidence costs |z|
    assert losses.binary_cross_entropy_with_logits(z, y) == (0 + 0 + 1e4 + 1e4) / 4
    grad = jax.grad(losses.binary_cross_entropy_with_logits)(z, y)
    assert_tree_allclose(grad, jnp.array([0.0, 0.0, 1.0, -1.0]) / 4)  # (sigmoid(z) - y) / B
    s = jax.nn.sigmoid(z)  # the textbook form overflows to log(0) = -inf
    naive = -y * jnp.log(s) - (1 - y) * jnp.log(1 - s)
    assert not np.all(np.isfinite(naive))


def test_bce_gradient_at_zero_logit():
    # max(z, 0) and |z| both have kinks at 0; their derivatives must still add up to s(0) - y
    y = jnp.array([0.0, 0.25, 1.0])
    grad = jax.grad(losses.binary_cross_entropy_with_logits)(jnp.zeros(3), y)
    assert_tree_allclose(grad, (0.5 - y) / 3)


def test_huber_is_quadratic_near_zero_and_linear_far_away():
    rng = np.random.default_rng(3)
    t = rng.normal(size=(B, D))
    delta = 0.5
    small = t + rng.uniform(-delta, delta, size=(B, D))
    assert_tree_allclose(losses.huber(small, t, delta=delta), 0.5 * losses.mse(small, t))
    large = t + rng.choice([-1, 1], size=(B, D)) * rng.uniform(2, 50, size=(B, D))
    expected = delta * losses.mae(large, t) - D * delta**2 / 2
    assert_tree_allclose(losses.huber(large, t, delta=delta), expected)
    # far away the gradient saturates at delta * sign(e) / B
    grad = jax.grad(losses.huber)(large, t, delta)
    assert_tree_allclose(grad, delta * np.sign(large - t) / B)


def test_huber_continuous_at_delta():
    t = jnp.zeros((1,))
    delta = 2.0
    below, above = losses.huber(jnp.array([delta - 1e-9]), t, delta), losses.huber(jnp.array([delta + 1e-9]), t, delta)
    assert_tree_allclose(below, above, rtol=1e-8)
    assert_tree_allclose(losses.huber(jnp.array([delta]), t, delta), jnp.asarray(delta**2 / 2))


def test_mse_and_mae_gradients():
    d = _data(1.0, seed=4)
    assert_tree_allclose(jax.grad(losses.mse)(d["pred"], d["target"]), 2 * (d["pred"] - d["target"]) / B)
    assert_tree_allclose(jax.grad(losses.mae)(d["pred"], d["target"]), np.sign(d["pred"] - d["target"]) / B)


def test_l2_penalty_value_and_gradient():
    params = {"w": jnp.array([[1.0, -2.0], [3.0, 0.5]]), "layers": [jnp.array([4.0]), jnp.array(-1.0)]}
    weight = 0.1
    assert_tree_allclose(losses.l2_penalty(params, weight), jnp.asarray(0.05 * (1 + 4 + 9 + 0.25 + 16 + 1)))
    grad = jax.grad(losses.l2_penalty)(params, weight)
    assert_tree_allclose(grad, jax.tree_util.tree_map(lambda p: weight * p, params))
    assert losses.l2_penalty({}, weight) == 0.0


def test_l2_penalty_weight_may_be_traced():
    params = [jnp.arange(3.0)]
    sweep = jax.vmap(losses.l2_penalty, in_axes=(None, 0))(params, jnp.array([0.0, 1.0, 2.0]))
    assert_tree_allclose(sweep, jnp.array([0.0, 2.5, 5.0]))


@pytest.mark.parametrize("fn,pred,target", [
    (losses.mse, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)),
    (losses.mae, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)),
    (losses.huber, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)),
    (losses.binary_cross_entropy_with_logits, np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32)),
    (losses.softmax_cross_entropy, np.ones((2, 3), np.float32), np.eye(3)[:2]),
    (losses.softmax_cross_entropy_with_integer_labels, np.ones((2, 3), np.float32), np.array([0, 2])),
    (losses.hinge, np.ones((2, 3), np.float32), -np.ones((2, 3))),
])
def test_float32_in_float32_out(fn, pred, target):
    assert fn(pred, target).dtype == jnp.float32


@pytest.mark.parametrize("fn", [losses.mse, losses.mae, losses.huber, losses.binary_cross_entropy_with_logits,
                                losses.softmax_cross_entropy, losses.hinge])
def test_shape_mismatch_names_both_shapes(fn):
    with pytest.raises(ValueError, match=r"\(4, 3\).*\(4, 1\)"):
        fn(jnp.ones((4, 3)), jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="batch axis"):
        fn(jnp.ones(()), jnp.ones(()))


def test_integer_labels_errors():
    logits = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"\[0, 4\).*4 classes.*\[0, 4\]"):
        losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"\[-1, 2\]"):
        losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([-1, 2, 1]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*\(3, 1\)"):
        losses.softmax_cross_entropy_with_integer_labels(logits, jnp.zeros((3, 1), jnp.int32))
    with pytest.raises(TypeError, match="integer"):
        losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0.0, 1.0, 2.0]))


def test_integer_labels_under_jit_out_of_range_gives_nan():
    logits = jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    jitted = jax.jit(losses.softmax_cross_entropy_with_integer_labels)
    good = jnp.array([2, 0])
    assert_tree_allclose(jitted(logits, good), losses.softmax_cross_entropy_with_integer_labels(logits, good))
    assert np.isnan(jitted(logits, jnp.array([3, 0])))
    assert np.isnan(jitted(logits, jnp.array([-1, 0])))  # no Python-style wrap-around to the last class


def test_hinge_label_and_huber_delta_errors():
    with pytest.raises(ValueError, match=r"-1 or \+1.*\[0\.0\]"):
        losses.hinge(jnp.ones((2,)), jnp.array([0.0, 1.0]))
    # under jit the labels cannot be inspected and enter the formula as given
    assert jax.jit(losses.hinge)(jnp.array([0.5, 0.5]), jnp.array([0.0, 1.0])) == (1.0 + 0.5) / 2
    with pytest.raises(ValueError, match="delta must be > 0"):
        losses.huber(jnp.ones((2,)), jnp.zeros((2,)), delta=0.0)
    traced = jax.jit(losses.huber)(jnp.array([3.0]), jnp.array([0.0]), 2.0)
    assert traced == 2.0 * (3.0 - 1.0)


def test_eager_vmap_over_many_runs_equals_a_loop():
    """Regression: with a jitted kernel inside the loss, an eager vmap over 30 runs (unbatched
    labels) returned runs 0-11's losses for runs 18-29 on jax 0.10.2 CPU."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(size=(1797, 64)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=1797), jnp.int32)
    w = jnp.asarray(rng.normal(size=(30, 64, 10)) * np.linspace(0.1, 3.0, 30)[:, None, None], jnp.float32)
    f = lambda wi: losses.softmax_cross_entropy_with_integer_labels(x @ wi, y)  # noqa: E731
    loop = np.array([float(f(w[i])) for i in range(30)])
    np.testing.assert_allclose(np.asarray(jax.vmap(f)(w)), loop, rtol=1e-5)


def test_jit_vmap_over_32_runs_with_shared_labels_equals_a_loop():
    """Regression for the sweep engine's evaluation: jit(vmap) of an MLP's integer-label
    cross-entropy over 32 runs with shared labels.  A ``where(valid, loss, nan)`` mask in the
    loss made XLA CPU (jax 0.10.2) return runs 0-13's values for runs 18-31."""
    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.rand(1797, 64).astype(np.float32))
    y = jnp.asarray(rng.randint(0, 10, 1797).astype(np.int32))
    w1 = jnp.asarray(rng.randn(32, 64, 32).astype(np.float32) * np.linspace(0.1, 1, 32, dtype=np.float32)[:, None, None])
    w2 = jnp.asarray(rng.randn(32, 32, 10).astype(np.float32))

    def ev(a, b, x, y):
        return losses.softmax_cross_entropy_with_integer_labels(jnp.tanh(x @ a) @ b, y)

    batched = np.asarray(jax.jit(jax.vmap(ev, in_axes=(0, 0, None, None)))(w1, w2, x, y))
    one_by_one = np.array([float(jax.jit(ev)(w1[i], w2[i], x, y)) for i in range(32)])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)
