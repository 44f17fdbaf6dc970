"""The breast-cancer data and the convex target built on it.

The target is L2-regularised logistic regression on the standardised features
(:mod:`lab.convex`): SciPy's Newton-CG gives the optimum, checked here by JAX's own
gradient, and lab's Newton methods must reach the same point from zero.
"""
import hashlib
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import convex, data, optim

SHA256 = "e534f129789c8c5a6ef9facd53cd98b5fcf46481de1da69b152f89c86fbfc048"
L2 = 1e-2


def test_file_is_the_recorded_one():
    raw = resources.files("lab").joinpath("datasets/breast_cancer.npz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == SHA256 == data.BREAST_CANCER_SHA256


def test_shapes_label_counts_and_raw_units():
    x, y = data.load_breast_cancer()
    assert x.shape == (569, 30) and x.dtype == jnp.float32 and y.shape == (569,) and y.dtype == jnp.int32
    assert np.bincount(np.asarray(y)).tolist() == [212, 357]  # 0 = malignant, 1 = benign
    x64, _ = data.load_breast_cancer(dtype=jnp.float64)
    np.testing.assert_array_equal(np.asarray(x64[0, :4]), [17.99, 10.38, 122.8, 1001.0])  # the CSV's first row
    names = data.breast_cancer_feature_names()
    assert len(names) == 30 and names[0] == "mean radius" and names[-1] == "worst fractal dimension"
    # not standardised: the ranges of scikit-learn's description (breast_cancer.rst)
    column = {name: np.asarray(x64[:, i]) for i, name in enumerate(names)}
    for name, low, high in [("mean radius", 6.981, 28.11), ("mean area", 143.5, 2501.0),
                            ("worst area", 185.2, 4254.0), ("mean concavity", 0.0, 0.427)]:
        assert column[name].min() == low and column[name].max() == pytest.approx(high, abs=5e-4), name
    data.check_dataset(x, y, num_classes=2)


def test_a_changed_file_is_refused(monkeypatch):
    monkeypatch.setattr(data, "BREAST_CANCER_SHA256", "0" * 64)
    with pytest.raises(ValueError, match="breast_cancer.npz has changed: sha256 e534f129"):
        data.load_breast_cancer()


def test_problem_is_standardised():
    x, y = convex.breast_cancer_problem()
    assert x.dtype == jnp.float64 and y.dtype == jnp.float64 and x.shape == (569, 30)
    np.testing.assert_allclose(np.asarray(x.mean(axis=0)), 0.0, atol=1e-13)
    np.testing.assert_allclose(np.asarray(x.std(axis=0)), 1.0, rtol=1e-13)
    assert sorted(np.unique(np.asarray(y)).tolist()) == [0.0, 1.0]


def test_scipy_optimum_is_stationary_and_cached():
    opt = convex.breast_cancer_logistic_optimum(L2)
    x, y = convex.breast_cancer_problem()
    params = jnp.asarray(opt.params)
    grad = jax.jit(jax.grad(convex.logistic_loss))(params, x, y, L2)  # JAX's gradient, not SciPy's
    assert opt.params.shape == (31,) and float(jnp.linalg.norm(grad)) < 1e-10
    assert opt.grad_norm < convex.GRAD_TOL == 1e-10
    assert float(convex.logistic_loss(params, x, y, L2)) == pytest.approx(opt.loss, rel=0, abs=1e-15)
    assert opt.loss == pytest.approx(0.0995913754847055, rel=0, abs=1e-12)  # found when this was written
    assert convex.breast_cancer_logistic_optimum(L2) is opt  # cached per l2
    assert not opt.params.flags.writeable
    # a weaker penalty fits the training data better
    assert convex.breast_cancer_logistic_optimum(1e-3).loss < opt.loss


@pytest.mark.parametrize("l2", [0.0, -1.0, float("nan")])
def test_optimum_needs_a_positive_penalty(l2):
    with pytest.raises(ValueError, match="l2 must be > 0"):
        convex.breast_cancer_logistic_optimum(l2)


NEWTON_METHODS = [  # (name, optimizer)
    ("newton", optim.newton()),
    ("damped_newton lambda=1e-8", optim.damped_newton(damping=1e-8)),
]


@pytest.mark.parametrize("name, opt", NEWTON_METHODS, ids=[row[0] for row in NEWTON_METHODS])
def test_lab_newton_reaches_the_scipy_optimum(name, opt):
    target = convex.breast_cancer_logistic_optimum(L2)
    x, y = convex.breast_cancer_problem()

    def loss(params):
        return convex.logistic_loss(params, x, y, L2)

    @jax.jit
    def step(params, state):
        updates, state = opt.update(jax.grad(loss)(params), state, params, value_fn=loss)
        return optim.apply_updates(params, updates), state

    params = jnp.zeros(31, jnp.float64)
    state = opt.init(params)
    grad_norm = jax.jit(lambda p: jnp.linalg.norm(jax.grad(loss)(p)))
    errors, grad_norms = [], [float(grad_norm(params))]
    for _ in range(15):
        params, state = step(params, state)
        errors.append(float(jnp.max(jnp.abs(params - target.params))))
        grad_norms.append(float(grad_norm(params)))
        if errors[-1] <= 1e-8:
            break
    assert errors[-1] <= 1e-8, f"{name}: max |theta - theta*| after 15 steps: {errors}"
    assert len(errors) <= 15
    assert float(loss(params)) == pytest.approx(target.loss, rel=0, abs=1e-13)
    # quadratic convergence near the optimum: ||g_{k+1}|| <= C ||g_k||^2 (C is about 12 here)
    close = [(g, g_next) for g, g_next in zip(grad_norms, grad_norms[1:]) if 1e-12 < g < 1e-3]
    assert close and all(g_next <= 100 * g ** 2 for g, g_next in close), grad_norms
