"""Newton-family optimizers: exactness, textbook behaviour, and optax/SciPy references.

Problems: a random SPD quadratic, the Rosenbrock function from N&W's starting points, a
4-feature logistic regression (60 samples, labels drawn from a logistic model, so the
minimiser is finite), an exponential least-squares fit, and small hand-built quadratics
with saddles or negative curvature.  All in float64 unless a test says otherwise; optax
runs under standard dtype promotion (it mixes int32 and int64 counters), lab under the
strict promotion of conftest.py.
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
from jax.flatten_util import ravel_pytree

import lab.optim as lo
from lab.curvature import HessianTooLarge, hutchinson_diagonal
from lab.optim.hessian_free import adahessian, gauss_newton, newton_cg, truncated_cg
from lab.optim.linesearch import backtracking_linesearch
from lab.optim.newton import damped_newton, newton, saddle_free_newton
from lab.optim.quasi_newton import bfgs, lbfgs
from tests.helpers import assert_tree_allclose

# ----------------------------------------------------------------------- problems


def rosenbrock(x):
    return 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2


def logistic(dtype=jnp.float64, l2=0.0):
    """``(model_fn, loss_fn, value_fn, params0)`` for a logistic regression on fixed data."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = rng.uniform(size=60) < 1 / (1 + np.exp(-x @ np.array([1.5, -2.0, 0.5, 1.0])))
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)

    def model_fn(p):
        return x @ p["w"] + p["b"]

    def loss_fn(z):
        return jnp.mean(jax.nn.softplus(z) - y * z)

    def value_fn(p):
        return loss_fn(model_fn(p)) + jnp.asarray(0.5 * l2, dtype) * jnp.sum(p["w"] ** 2)

    return model_fn, loss_fn, value_fn, {"w": jnp.zeros(4, dtype), "b": jnp.zeros([], dtype)}


def run(opt, value_fn, params, steps):
    """``steps`` jitted full-batch steps: (list of iterates after each step, final state)."""
    @jax.jit
    def step(p, s):
        v, g = jax.value_and_grad(value_fn)(p)
        u, s = opt.update(g, s, p, value=v, value_fn=value_fn)
        return lo.apply_updates(p, u), s

    state, iterates = opt.init(params), []
    for _ in range(steps):
        params, state = step(params, state)
        iterates.append(params)
    return iterates, state


def run_optax(opt, value_fn, params, steps):
    @jax.jit
    def step(p, s):
        v, g = jax.value_and_grad(value_fn)(p)
        u, s = opt.update(g, s, p, value=v, grad=g, value_fn=value_fn)
        return optax.apply_updates(p, u), s

    with jax.numpy_dtype_promotion("standard"):
        state, iterates = opt.init(params), []
        for _ in range(steps):
            params, state = step(params, state)
            iterates.append(params)
    return iterates


def update_once(opt, f, params, state=None, extra=None):
    """One jitted update at ``params`` with ``grads = grad f(params)``: (updates, state)."""
    extra = {"value_fn": f} if extra is None else extra
    state = opt.init(params) if state is None else state
    return jax.jit(lambda p, s: opt.update(jax.grad(f)(p), s, p, **extra))(params, state)


# ---------------------------------------------------------------- Newton: exactness


def test_newton_reaches_spd_quadratic_minimiser_in_one_step():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(6, 6))
    a, b = jnp.asarray(m @ m.T + 6 * np.eye(6)), jnp.asarray(rng.normal(size=6))
    params = {"u": jnp.asarray(rng.normal(size=2)), "v": jnp.asarray(rng.normal(size=(2, 2)))}

    def f(p):
        x = ravel_pytree(p)[0]
        return 0.5 * x @ a @ x - b @ x

    (after,), _ = run(newton(), f, params, 1)
    np.testing.assert_allclose(ravel_pytree(after)[0], np.linalg.solve(a, b), rtol=1e-10)
    # a schedule is read at count 0: half the Newton step
    (half,), _ = run(newton(lambda count: jnp.where(count == 0, 0.5, 1.0)), f, params, 1)
    x0 = ravel_pytree(params)[0]
    np.testing.assert_allclose(ravel_pytree(half)[0], (x0 + np.linalg.solve(a, b)) / 2,
                               rtol=1e-10)


def textbook_newton_backtracking(x, tol=1e-8, max_iterations=100):
    """N&W Algorithm 3.1 (alpha0 = 1, rho = 1/2, c = 1e-4) on the Newton direction, in NumPy."""
    f = lambda z: 100 * (z[1] - z[0] ** 2) ** 2 + (1 - z[0]) ** 2
    grad = lambda z: np.array([-400 * z[0] * (z[1] - z[0] ** 2) - 2 * (1 - z[0]),
                               200 * (z[1] - z[0] ** 2)])
    hess = lambda z: np.array([[1200 * z[0] ** 2 - 400 * z[1] + 2, -400 * z[0]],
                               [-400 * z[0], 200.0]])
    path = []
    while np.linalg.norm(grad(x)) >= tol and len(path) < max_iterations:
        d, t = -np.linalg.solve(hess(x), grad(x)), 1.0
        while f(x + t * d) > f(x) + 1e-4 * t * grad(x) @ d:
            t /= 2
        x = x + t * d
        path.append(x)
    return np.array(path)


@pytest.mark.parametrize("start, band", [((-1.2, 1.0), (18, 24)), ((1.2, 1.2), (6, 10))])
def test_newton_with_backtracking_on_rosenbrock_matches_textbook_count(start, band):
    """Newton + backtracking (alpha0 = 1, halving, c = 1e-4) on Rosenbrock, stopped at
    ||grad f|| < 1e-8.

    Nocedal & Wright (2nd ed., 2006) pose exactly this as Exercise 3.1 without printing
    the count; the figure usually quoted for the start (-1.2, 1) is about 21 iterations.
    Measured: 21 from (-1.2, 1) and 8 from (1.2, 1.2), the same iterates as the NumPy
    textbook version above (to 1e-10).  Asserted bands: [18, 24] and [6, 10]."""
    reference = textbook_newton_backtracking(np.array(start))
    opt = newton(linesearch=backtracking_linesearch())
    iterates, _ = run(opt, rosenbrock, jnp.asarray(start), 40)
    grad_norms = [float(jnp.linalg.norm(jax.grad(rosenbrock)(x))) for x in iterates]
    measured = 1 + next(k for k, norm in enumerate(grad_norms) if norm < 1e-8)
    assert measured == len(reference) and band[0] <= measured <= band[1]
    np.testing.assert_allclose(np.array(iterates[:measured]), reference, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(iterates[measured - 1], [1.0, 1.0], atol=1e-9)


def test_newton_converges_quadratically_on_logistic_regression():
    """Errors from w = 0 are 3.2, 1.6, 0.62, 0.095, 2.2e-3, 1.2e-6, 3.7e-13: over the last
    three steps e_{k+1} / e_k^2 = 0.244, 0.247, 0.255, so we assert e_{k+1} <= 0.5 e_k^2."""
    _, _, f, params = logistic(l2=1e-2)
    iterates, _ = run(newton(), f, params, 12)
    optimum = ravel_pytree(iterates[-1])[0]
    errors = [float(jnp.linalg.norm(ravel_pytree(p)[0] - optimum)) for p in iterates[2:6]]
    assert 1e-2 < errors[0] < 0.2  # three steps starting from e = 0.095
    for before, after in zip(errors, errors[1:]):
        assert after <= 0.5 * before ** 2


# ------------------------------------------------------------------- L-BFGS, BFGS

ZOOM = "zoom"
BACKTRACKING = "backtracking"
LBFGS_ROWS = [  # (problem, line search, steps compared)
    ("rosenbrock", ZOOM, 40),
    ("logistic", BACKTRACKING, 15),
    ("rosenbrock", BACKTRACKING, 7),  # step 8: optax stores a pair with s^T y < 0, we skip it
]


def problem(name):
    if name == "rosenbrock":
        return rosenbrock, jnp.asarray([-1.2, 1.0])
    _, _, f, params = logistic()
    return f, params


@pytest.mark.parametrize("name, search, steps", LBFGS_ROWS)
def test_lbfgs_matches_optax_step_for_step(name, search, steps):
    """Memory 10, gamma scaling on (optax's defaults).  ZOOM: our lbfgs with optax's own
    zoom search (``max_linesearch_steps=20, initial_guess_strategy='one'``, what
    ``optax.lbfgs()`` uses) against ``optax.lbfgs()``.  BACKTRACKING: our lbfgs with our
    default search against ``optax.lbfgs`` with ``scale_by_backtracking_linesearch``
    configured as the same rule (t0 = 1 every step, halving, c = 1e-4, 30 halvings)."""
    f, params = problem(name)
    if search == ZOOM:
        ours = lbfgs(linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=20, initial_guess_strategy="one"))
        reference = optax.lbfgs()
    else:
        ours = lbfgs()
        reference = optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=30, slope_rtol=1e-4, decrease_factor=0.5,
            increase_factor=math.inf, max_learning_rate=1.0))
    iterates, _ = run(ours, f, params, steps)
    expected = run_optax(reference, f, params, steps)
    for k, (a, e) in enumerate(zip(iterates, expected)):
        assert_tree_allclose(a, e, rtol=1e-6, atol=1e-9, err_msg=f"step {k + 1}")


def test_lbfgs_skips_the_pair_without_positive_curvature_and_still_converges():
    """Where the BACKTRACKING row stops: the 8th call on Rosenbrock brings s^T y < 0."""
    iterates, state = run(lbfgs(), rosenbrock, jnp.asarray([-1.2, 1.0]), 8)
    assert int(state.count) == 8 and int(state.num_pairs) == 6  # 7 candidate pairs, 1 skipped
    grads = [jax.grad(rosenbrock)(x) for x in iterates]
    s, y = iterates[6] - iterates[5], grads[6] - grads[5]
    assert float(jnp.vdot(s, y)) < 0  # the pair formed at call 8
    iterates, _ = run(lbfgs(), rosenbrock, jnp.asarray([-1.2, 1.0]), 60)
    np.testing.assert_allclose(iterates[-1], [1.0, 1.0], atol=1e-8)


@pytest.mark.parametrize("name, ours, method", [
    ("rosenbrock", lbfgs(), "L-BFGS-B"), ("logistic", lbfgs(), "L-BFGS-B"),
    ("rosenbrock", bfgs(), "BFGS"), ("logistic", bfgs(), "BFGS")])
def test_quasi_newton_reaches_scipy_minimum(name, ours, method):
    f, params = problem(name)
    flat, unravel = ravel_pytree(params)
    fun = jax.jit(jax.value_and_grad(lambda x: f(unravel(x))))
    result = scipy.optimize.minimize(lambda x: tuple(np.asarray(a) for a in fun(jnp.asarray(x))),
                                     np.asarray(flat), jac=True, method=method, tol=1e-14)
    iterates, _ = run(ours, f, params, 80)
    np.testing.assert_allclose(ravel_pytree(iterates[-1])[0], result.x, rtol=1e-6, atol=1e-6)


def test_bfgs_estimate_satisfies_the_secant_equation():
    iterates, state = run(bfgs(), rosenbrock, jnp.asarray([-1.2, 1.0]), 4)
    s = iterates[2] - iterates[1]  # the pair formed at the 4th call
    y = jax.grad(rosenbrock)(iterates[2]) - jax.grad(rosenbrock)(iterates[1])
    assert int(state.num_pairs) == 3
    np.testing.assert_allclose(state.inverse_hessian @ y, s, rtol=1e-10)
    np.testing.assert_allclose(state.inverse_hessian, state.inverse_hessian.T, rtol=1e-12)


# -------------------------------------------------------- Newton variants vs Newton


def test_newton_cg_equals_newton_when_cg_runs_to_p_iterations():
    _, _, f, params = logistic(l2=1e-2)  # P = 5, H positive definite
    ours = newton_cg(cg_tolerance=0.0, max_cg_iterations=5)
    params = {"w": jnp.asarray([0.3, -0.2, 0.1, 0.4]), "b": jnp.asarray(0.2)}
    u_cg, state = update_once(ours, f, params)
    u_newton, _ = update_once(newton(), f, params)
    assert_tree_allclose(u_cg, u_newton, rtol=1e-9)
    assert int(state.cg_iterations) <= 5 and not bool(state.negative_curvature)


def test_truncated_cg_exits_at_negative_curvature():
    # p0 = b has p0^T A p0 = -1: return b itself after one product
    first = truncated_cg(lambda v: jnp.asarray([2.0, -1.0]) * v, jnp.asarray([0.0, 1.0]),
                         max_iterations=5)
    np.testing.assert_allclose(first.solution, [0.0, 1.0])
    assert int(first.iterations) == 1 and bool(first.negative_curvature)
    # A = diag(4, -1), b = (1, 1): x1 = (2/3, 2/3), then p1 = (10/9, 40/9) has p1^T A p1 < 0
    second = truncated_cg(lambda v: jnp.asarray([4.0, -1.0]) * v, jnp.asarray([1.0, 1.0]),
                          max_iterations=5)
    np.testing.assert_allclose(second.solution, [2 / 3, 2 / 3], rtol=1e-12)
    assert int(second.iterations) == 2 and bool(second.negative_curvature)
    # in the optimizer: the gradient step, flagged in the state
    f = lambda x: x[0] ** 2 - 0.5 * x[1] ** 2
    x = jnp.asarray([0.0, 1.0])
    opt = newton_cg(learning_rate=0.1)
    u, state = update_once(opt, f, x)
    np.testing.assert_allclose(u, -0.1 * jax.grad(f)(x), rtol=1e-12)
    assert bool(state.negative_curvature)


def test_saddle_free_newton_leaves_a_saddle_that_newton_walks_into():
    f = lambda x: 0.5 * (x[0] ** 2 - x[1] ** 2)  # saddle at the origin
    x = jnp.asarray([1.0, 0.5])
    (to_newton,), _ = run(newton(), f, x, 1)
    (to_free,), _ = run(saddle_free_newton(), f, x, 1)
    np.testing.assert_allclose(to_newton, [0.0, 0.0], atol=1e-12)  # onto the saddle
    np.testing.assert_allclose(to_free, [0.0, 1.0], atol=1e-12)  # away along -curvature
    assert abs(float(to_free[1])) > abs(float(x[1])) > abs(float(to_newton[1]))
    assert float(f(to_free)) < float(f(to_newton))
    # where H is positive definite the two coincide
    _, _, loss, params = logistic(l2=1e-2)
    (a,), _ = run(saddle_free_newton(), loss, params, 1)
    (b,), _ = run(newton(), loss, params, 1)
    assert_tree_allclose(a, b, rtol=1e-9)


def test_damped_newton_interpolates_newton_and_gradient_step():
    _, _, f, params = logistic(l2=1e-2)
    params = {"w": jnp.asarray([0.3, -0.2, 0.1, 0.4]), "b": jnp.asarray(0.2)}
    g = jax.grad(f)(params)
    lam, lr = 1e8, 0.7

    @jax.jit  # damping is data: one compilation serves both values
    def damped_update(damping):
        opt = damped_newton(lr, damping=damping)
        return opt.update(g, opt.init(params), params, value_fn=f)[0]

    u = damped_update(jnp.asarray(lam))
    assert_tree_allclose(jax.tree.map(lambda a: a * lam, u), jax.tree.map(lambda a: -lr * a, g),
                         rtol=1e-6)
    u0 = damped_update(jnp.asarray(0.0))
    un, _ = update_once(newton(lr), f, params)
    assert_tree_allclose(u0, un, rtol=1e-12)


def test_levenberg_marquardt_rule_rejects_and_accepts():
    """From (-1.2, 1) the full Newton step lowers Rosenbrock; from the point it reaches,
    the full step raises it (the textbook search cuts it to t = 1/8)."""
    opt = damped_newton(damping=1e-6, adaptive=True)
    x0 = jnp.asarray([-1.2, 1.0])
    u, state = update_once(opt, rosenbrock, x0)
    assert bool(state.accepted) and float(state.damping) == pytest.approx(1e-7, rel=1e-12)
    x1 = x0 + u
    u, state = update_once(opt, rosenbrock, x1, state)
    assert not bool(state.accepted) and float(state.damping) == pytest.approx(1e-6, rel=1e-12)
    np.testing.assert_array_equal(u, [0.0, 0.0])
    iterates, state = run(damped_newton(damping=1.0, adaptive=True), rosenbrock, x0, 60)
    values = [float(rosenbrock(x)) for x in iterates]
    assert all(b <= a for a, b in zip(values, values[1:]))  # never goes uphill
    np.testing.assert_allclose(iterates[-1], [1.0, 1.0], atol=1e-8)


def exponential_fit():
    t = jnp.linspace(0.0, 1.0, 12)
    y = 2.0 * jnp.exp(-1.3 * t) + 0.05 * jnp.asarray(np.random.default_rng(3).normal(size=12))
    model_fn = lambda p: p["a"] * jnp.exp(p["b"] * t)
    loss_fn = lambda z: 0.5 * jnp.mean((z - y) ** 2)
    return model_fn, y, loss_fn, {"a": jnp.asarray(1.0), "b": jnp.asarray(0.0)}


def test_gauss_newton_is_the_damped_normal_equations_step():
    model_fn, y, loss_fn, params = exponential_fit()
    lam, lr = 1e-2, 0.8
    opt = gauss_newton(lr, damping=lam, cg_tolerance=0.0, max_cg_iterations=2)
    u, state = update_once(opt, lambda p: loss_fn(model_fn(p)), params,
                           extra={"model_fn": model_fn, "loss_fn": loss_fn})
    flat, unravel = ravel_pytree(params)
    jac = jax.jacfwd(lambda x: model_fn(unravel(x)))(flat)  # (12, 2)
    residual = model_fn(params) - y  # the loss is 0.5 mean(residual^2), so g = J^T r / 12
    step = -lr * np.linalg.solve(jac.T @ jac / 12 + lam * np.eye(2), jac.T @ residual / 12)
    np.testing.assert_allclose(ravel_pytree(u)[0], step, rtol=1e-9)
    assert int(state.cg_iterations) == 2
    # a linear model under squared error has G = H: Gauss-Newton is Newton
    x = jnp.asarray(np.random.default_rng(4).normal(size=(20, 3)))
    y = jnp.asarray(np.random.default_rng(5).normal(size=20))
    lin, mse = (lambda p: x @ p), (lambda z: 0.5 * jnp.mean((z - y) ** 2))
    w = jnp.zeros(3)
    exact = gauss_newton(damping=0.0, cg_tolerance=0.0, max_cg_iterations=3)
    u, _ = update_once(exact, lambda p: mse(lin(p)), w, extra={"model_fn": lin, "loss_fn": mse})
    np.testing.assert_allclose(w + u, np.linalg.lstsq(x, y, rcond=None)[0], rtol=1e-9)


# ----------------------------------------------------------------------- AdaHessian


def test_adahessian_first_step_is_newton_on_a_diagonal_quadratic():
    h, b = jnp.asarray([0.5, 2.0, 10.0]), jnp.asarray([1.0, -1.0, 3.0])
    f = lambda x: 0.5 * jnp.sum(h * x ** 2) - b @ x
    (after,), _ = run(adahessian(1.0, eps=0.0, key=jax.random.key(0)), f, jnp.ones(3), 1)
    np.testing.assert_allclose(after, b / h, rtol=1e-12)


def test_adahessian_matches_a_textbook_version_and_moves_its_key():
    m = np.random.default_rng(6).normal(size=(3, 3))
    a = jnp.asarray(m @ m.T + np.eye(3))
    f = lambda x: 0.5 * x @ a @ x
    x0, key, (b1, b2, eps, lr) = jnp.asarray([1.0, -2.0, 0.5]), jax.random.key(7), (0.9, 0.99,
                                                                                     1e-4, 0.1)
    iterates, state = run(adahessian(lr, b1, b2, eps, key=key), f, x0, 3)
    x, k, mu, nu, expected = x0, key, 0.0, 0.0, []
    diagonal = jax.jit(lambda x, k: hutchinson_diagonal(f, x, num_samples=1, key=k))
    for t in range(1, 4):
        k, probe = jax.random.split(k)
        d = diagonal(x, probe)
        mu, nu = b1 * mu + (1 - b1) * jax.grad(f)(x), b2 * nu + (1 - b2) * d ** 2
        x = x - lr * (mu / (1 - b1 ** t)) / (jnp.sqrt(nu / (1 - b2 ** t)) + eps)
        expected.append(x)
    np.testing.assert_allclose(np.array(iterates), np.array(expected), rtol=1e-12)
    np.testing.assert_array_equal(jax.random.key_data(state.key), jax.random.key_data(k))


# --------------------------------------------------------------------- line search


@pytest.mark.parametrize("direction", ["gradient", "newton"])
def test_backtracking_is_armijo_maximal_and_matches_optax(direction):
    x = jnp.asarray([-1.2, 1.0])
    value, g = jax.value_and_grad(rosenbrock)(x)
    d = -g if direction == "gradient" else -jnp.linalg.solve(jax.hessian(rosenbrock)(x), g)
    search = backtracking_linesearch()
    u, state = jax.jit(lambda d: search.update(d, search.init(x), x, value_fn=rosenbrock,
                                               grad=g))(d)
    t = float(state.step_size)
    assert bool(state.sufficient_decrease)
    assert float(rosenbrock(x + u)) <= float(value) + 1e-4 * t * float(g @ d)
    if t < 1:  # the previous trial 2t failed the Armijo condition
        assert float(rosenbrock(x + 2 * t * d)) > float(value) + 2e-4 * t * float(g @ d)
    reference = optax.scale_by_backtracking_linesearch(
        max_backtracking_steps=30, slope_rtol=1e-4, decrease_factor=0.5,
        increase_factor=math.inf, max_learning_rate=1.0)
    with jax.numpy_dtype_promotion("standard"):
        expected, _ = reference.update(d, reference.init(x), x, value=value, grad=g,
                                       value_fn=rosenbrock)
    np.testing.assert_allclose(u, expected, rtol=1e-14)


def test_backtracking_takes_no_step_when_it_fails():
    x = jnp.asarray([-1.2, 1.0])
    value, g = jax.value_and_grad(rosenbrock)(x)
    search = backtracking_linesearch()
    u, state = jax.jit(lambda d: search.update(d, search.init(x), x, value_fn=rosenbrock,
                                               grad=g))(g)  # uphill
    np.testing.assert_array_equal(u, [0.0, 0.0])
    assert not bool(state.sufficient_decrease) and float(state.value) == float(value)
    assert int(state.num_evaluations) == 31  # t0 and 30 halvings
    capped = backtracking_linesearch(max_backtracking_steps=2)
    u, state = jax.jit(lambda d: capped.update(d, capped.init(x), x, value_fn=rosenbrock,
                                               grad=g))(-1e3 * g)
    assert float(state.step_size) == 0.0 and int(state.num_evaluations) == 3


# ---------------------------------------------------------------- errors and guards


@pytest.mark.parametrize("build, name", [
    (lambda: damped_newton(damping=-1.0), "damping"),
    (lambda: saddle_free_newton(damping=-1.0), "damping"),
    (lambda: newton_cg(damping=-1.0), "damping"),
    (lambda: gauss_newton(damping=-0.5), "damping"),
    (lambda: newton_cg(max_cg_iterations=0), "max_cg_iterations"),
    (lambda: gauss_newton(max_cg_iterations=0), "max_cg_iterations"),
    (lambda: newton_cg(max_cg_iterations=2.0), "max_cg_iterations"),
    (lambda: newton_cg(cg_tolerance=-1.0), "cg_tolerance"),
    (lambda: truncated_cg(lambda v: v, jnp.ones(2), max_iterations=0), "max_iterations"),
    (lambda: newton(learning_rate=-1.0), "learning_rate"),
    (lambda: lbfgs(memory_size=0), "memory_size"),
    (lambda: backtracking_linesearch(max_backtracking_steps=-1), "max_backtracking_steps"),
    (lambda: backtracking_linesearch(c=1.5), "c="),
    (lambda: backtracking_linesearch(decrease_factor=1.0), "decrease_factor"),
    (lambda: adahessian(hessian_power=2.0, key=jax.random.key(0)), "hessian_power"),
    (lambda: adahessian(num_samples=0, key=jax.random.key(0)), "num_samples"),
    (lambda: damped_newton(adaptive=True, linesearch=backtracking_linesearch()), "linesearch"),
])
def test_bad_hyperparameters_raise_naming_the_argument(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_bad_update_calls_raise_and_say_what_is_missing():
    x = jnp.asarray([-1.2, 1.0])
    g = jax.grad(rosenbrock)(x)
    with pytest.raises(TypeError, match="value_fn"):
        newton().update(g, newton().init(x), x)
    with pytest.raises(TypeError, match="model_fn"):
        gauss_newton().update(g, gauss_newton().init(x), x, value_fn=rosenbrock)
    with pytest.raises(ValueError, match="pytree structure"):
        newton_cg().update({"x": g}, newton_cg().init(x), x, value_fn=rosenbrock)


@pytest.mark.parametrize("build", [
    lambda: newton(max_hessian_bytes=8), lambda: damped_newton(max_hessian_bytes=8),
    lambda: saddle_free_newton(max_hessian_bytes=8), lambda: bfgs(max_hessian_bytes=8)])
def test_dense_methods_are_behind_the_hessian_memory_guard(build):
    x = jnp.asarray([-1.2, 1.0])  # P = 2 needs 32 bytes
    opt = build()
    with pytest.raises(HessianTooLarge, match="P = 2"):
        opt.update(jax.grad(rosenbrock)(x), opt.init(x), x, value_fn=rosenbrock)


# ------------------------------------------------- every optimizer: jit, vmap, dtype

ALL = {  # name -> lr -> optimizer
    "newton": lambda lr: newton(lr),
    "newton+backtracking": lambda lr: newton(lr, linesearch=backtracking_linesearch()),
    "damped_newton": lambda lr: damped_newton(lr, damping=0.1),
    "levenberg_marquardt": lambda lr: damped_newton(lr, damping=0.1, adaptive=True),
    "saddle_free_newton": lambda lr: saddle_free_newton(lr, damping=1e-3),
    "newton_cg": lambda lr: newton_cg(lr, max_cg_iterations=3),
    "gauss_newton": lambda lr: gauss_newton(lr, max_cg_iterations=3),
    "adahessian": lambda lr: adahessian(lr, key=jax.random.key(0)),
    "bfgs": lambda lr: bfgs(lr),
    "lbfgs": lambda lr: lbfgs(lr, memory_size=3),
}


def objective_kwargs(name, dtype=jnp.float64):
    model_fn, loss_fn, value_fn, params = logistic(dtype)
    if name == "gauss_newton":
        return {"model_fn": model_fn, "loss_fn": loss_fn}, value_fn, params
    return {"value_fn": value_fn}, value_fn, params


def final_params(opt, f, params, steps, extra):
    """``steps`` steps in a ``lax.scan`` (one step traced); returns the last iterate."""
    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(f)(p), s, p, **extra)
        return (lo.apply_updates(p, u), s), None

    return jax.lax.scan(step, (params, opt.init(params)), length=steps)[0][0]


@pytest.mark.parametrize("name", sorted(ALL))
def test_learning_rate_sweep_by_vmap_equals_a_loop_and_compiles_once(name):
    extra, f, params = objective_kwargs(name)
    traces = []

    def sweep_(lrs):
        traces.append(1)
        return jax.vmap(lambda lr: final_params(ALL[name](lr), f, params, 3, extra))(lrs)

    def loop(lrs):  # a sequential loop over the same learning rates, in the same program
        return jax.lax.map(lambda lr: final_params(ALL[name](lr), f, params, 3, extra), lrs)

    sweep = jax.jit(lambda lrs: (sweep_(lrs), loop(lrs)))
    swept, looped = sweep(jnp.asarray([0.3, 0.9]))
    again, _ = sweep(jnp.asarray([0.5, 0.7]))
    assert len(traces) == 1
    assert_tree_allclose(swept, looped, rtol=1e-9, atol=1e-12)
    assert not np.allclose(again["w"], swept["w"])


@pytest.mark.parametrize("name", ["newton+backtracking", "levenberg_marquardt", "newton_cg",
                                  "lbfgs"])
def test_float32_params_keep_dtype_and_structure(name):
    extra, f, params = objective_kwargs(name, jnp.float32)
    opt = ALL[name](0.5)
    step = jax.jit(lambda p, s: opt.update(jax.grad(f)(p), s, p, **extra))
    updates, state = step(params, opt.init(params))
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}
    floats = [leaf for leaf in jax.tree.leaves(state)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)]
    assert all(leaf.dtype == jnp.float32 for leaf in floats)
    assert float(f(lo.apply_updates(params, updates))) < float(f(params))


def test_lbfgs_refuses_a_secant_pair_at_the_float32_rounding_floor():
    # a very flat float32 problem: s^T y is a normal float but y^T y underflows, so the initial
    # scale s^T y / y^T y would be inf and the direction NaN
    c = jnp.float32(1e-20)
    f = lambda w: 0.5 * c * jnp.sum(w ** 2)  # noqa: E731
    opt = lo.lbfgs(1.0, linesearch=None)
    w, w2 = jnp.zeros(4, jnp.float32), jnp.ones(4, jnp.float32)
    _, state = opt.update(jax.grad(f)(w), opt.init(w), w, value_fn=f)   # count 1: the next call forms a pair
    y = jax.grad(f)(w2) - jax.grad(f)(w)
    assert float(jnp.vdot(w2 - w, y)) > np.finfo(np.float32).tiny > float(jnp.vdot(y, y))
    u, state = opt.update(jax.grad(f)(w2), state, w2, value_fn=f)
    assert np.all(np.isfinite(np.asarray(u))) and int(state.num_pairs) == 0


def test_a_rejected_line_search_step_is_zero_even_for_a_nan_direction():
    f = lambda w: jnp.sum(w ** 2)  # noqa: E731
    w = jnp.ones(3)
    ls = lo.backtracking_linesearch()
    d = jnp.array([jnp.nan, 1.0, 1.0])
    u, s = ls.update(d, ls.init(w), w, value_fn=f, grad=jax.grad(f)(w))
    np.testing.assert_array_equal(np.asarray(u), np.zeros(3))
    assert not bool(s.sufficient_decrease)
