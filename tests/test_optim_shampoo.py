"""Shampoo and SOAP against dense float64 references written here, plus their properties.

The references are plain per-leaf numpy loops that follow the papers' algorithms line by
line (Gupta et al. 2018 with Anil et al. 2020's grafting for Shampoo, Vyas et al. 2024
for SOAP); lab's optimizers must equal them step for step at 1e-10 relative.  The problem
is a sum of per-leaf losses (a matrix least-squares fit, a rank-3 leaf, a vector and a
scalar) whose gradient scales differ by 100x; the gradient is computed by the same numpy
function for both sides.  SOAP's reference problem uses square matrix leaves: a factor of
a non-square leaf is singular on the first steps and its eigenbasis is then not unique,
so two correct implementations may pick different bases there.
"""
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab.optim import adam_family
from lab.optim.base import apply_updates
from lab.optim.kronecker import ShampooState, SoapState, inverse_root, shampoo, soap
from tests.helpers import assert_tree_allclose
from tests.optim_checks import assert_kept, bad_input_test, check_sweep, float_dtypes

# ----------------------------------------------------------------------- problem


def problem(shapes, seed=0, noise=0.0):
    """``(params0, grad_fn)``: per leaf ``0.5 ||X_k P - Y_k||^2`` for matrix leaves (``P``
    seen as ``(prod(shape[:-1]), shape[-1])``) and ``0.5 sum c (p - t)^2`` for the others,
    with scales ``c`` spread over 100x.  ``grad_fn(p, t)`` adds ``noise`` times a fixed
    normal draw for step ``t`` (minibatch-like noise that keeps the factors well
    conditioned instead of letting the gradient vanish)."""
    rng = np.random.default_rng(seed)
    params, data = {}, {}
    for name, shape in shapes.items():
        params[name] = rng.normal(size=shape)
        if len(shape) >= 2:
            m, n = int(np.prod(shape[:-1])), shape[-1]
            data[name] = (rng.normal(size=(m + 3, m)) / np.sqrt(m), rng.normal(size=(m + 3, n)))
        else:
            data[name] = (np.logspace(-1, 1, int(np.prod(shape))).reshape(shape),
                          rng.normal(size=shape))

    def grad_fn(p, t=0):
        grads, rng_t = {}, np.random.default_rng(1000 + t)
        for name in sorted(p):  # a fixed order for the noise draws
            value = np.asarray(p[name])
            if value.ndim >= 2:
                x, y = data[name]
                w = value.reshape(x.shape[1], -1)
                grads[name] = (x.T @ (x @ w - y)).reshape(value.shape)
            else:
                c, target = data[name]
                grads[name] = c * (value - target)
            grads[name] = grads[name] + noise * rng_t.normal(size=value.shape)
        return grads

    return params, grad_fn


SHAMPOO_SHAPES = {"w": (6, 4), "k": (3, 2, 5), "b": (4,), "s": ()}
SOAP_SHAPES = {"w": (5, 5), "k": (2, 2, 4), "b": (5,), "s": ()}


def relative_errors(ours, reference):
    """Per step, the largest over leaves of ``||ours - ref||_F / ||ref||_F``."""
    return [max(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b)
                for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))
            for x, y in zip(ours, reference)]


def run_lab(opt, params, grad_fn, steps):
    """Jitted lab steps fed by ``grad_fn`` (numpy); the iterates after each step."""
    @jax.jit
    def step(p, s, g):
        u, s = opt.update(g, s, p)
        return apply_updates(p, u), s

    p = jax.tree.map(jnp.asarray, params)
    state, iterates = opt.init(p), []
    for t in range(steps):
        p, state = step(p, state, jax.tree.map(jnp.asarray, grad_fn(p, t)))
        iterates.append(p)
    return iterates


# -------------------------------------------------------------------- references


def np_root_eigh(matrix, p, eps):
    w, q = np.linalg.eigh(matrix)
    return (q * (np.maximum(w, 0) + eps) ** (-1.0 / p)) @ q.T


def np_root_newton(matrix, p, eps, iterations):
    eye = np.eye(len(matrix))
    shifted = matrix + eps * eye
    z = (1 + p) / (2 * np.linalg.norm(shifted))
    m, h = z * shifted, z ** (1.0 / p) * eye
    for _ in range(iterations):
        t = ((1 + p) * eye - m) / p
        m, h = np.linalg.matrix_power(t, p) @ m, h @ t
    return h


def np_steps(params, grad_fn, steps, *, lr, b1, weight_decay, direction):
    """The loop both references share, in float64: per leaf ``m <- b1 m + (1 - b1) g``,
    then ``p <- p - lr (d + wd p)`` with ``d = direction(s, g, t)`` (``s`` the leaf's state:
    ``m``, ``v`` and what ``direction`` keeps).  The iterates after each step."""
    p = {k: np.array(v, dtype=np.float64) for k, v in params.items()}
    st = {k: {"m": np.zeros_like(v), "v": np.zeros_like(v)} for k, v in p.items()}
    iterates = []
    for t in range(1, steps + 1):
        for k, g in grad_fn(p, t - 1).items():
            st[k]["m"] = b1 * st[k]["m"] + (1 - b1) * g
            p[k] = p[k] - lr * (direction(st[k], g, t) + weight_decay * p[k])
        iterates.append(dict(p))
    return iterates


def np_factors(s, g2, decay):
    """``L <- b L + w G G^T``, ``R <- b R + w G^T G`` (``w = 1`` for a sum, ``b = 1``)."""
    w = 1.0 if decay == 1 else 1 - decay
    s["L"] = decay * s.get("L", 0) + w * g2 @ g2.T
    s["R"] = decay * s.get("R", 0) + w * g2.T @ g2


def shampoo_reference(params, grad_fn, steps, *, lr, b1, b2, eps, graft_b2=0.999,
                      graft_eps=1e-8, weight_decay=0.0, frequency, graft="adam", root="eigh",
                      newton_iterations=40):
    root_fn = ((lambda a: np_root_eigh(a, 4, eps)) if root == "eigh"
               else (lambda a: np_root_newton(a, 4, eps, newton_iterations)))

    def direction(s, g, t):
        s["v"] = graft_b2 * s["v"] + (1 - graft_b2) * g ** 2
        m_hat = s["m"] / (1 - b1 ** t)
        v_hat = s["v"] / (1 - graft_b2 ** t)
        a = m_hat / (np.sqrt(v_hat) + graft_eps) if graft == "adam" else m_hat
        if g.ndim < 2:
            return a
        g2 = g.reshape(-1, g.shape[-1])
        np_factors(s, g2, b2)
        if (t - 1) % frequency == 0:
            s["PL"], s["PR"] = root_fn(s["L"]), root_fn(s["R"])
        d = s["PL"] @ m_hat.reshape(g2.shape) @ s["PR"]
        return (np.linalg.norm(a) / np.linalg.norm(d) * d).reshape(g.shape)

    return np_steps(params, grad_fn, steps, lr=lr, b1=b1, weight_decay=weight_decay,
                    direction=direction)


def soap_reference(params, grad_fn, steps, *, lr, b1, b2, eps, shampoo_b2, weight_decay=0.0,
                   frequency):
    def direction(s, g, t):
        if g.ndim < 2:
            s["v"] = b2 * s["v"] + (1 - b2) * g ** 2
            return (s["m"] / (1 - b1 ** t)) / (np.sqrt(s["v"] / (1 - b2 ** t)) + eps)
        g2 = g.reshape(-1, g.shape[-1])
        np_factors(s, g2, shampoo_b2)
        if (t - 1) % frequency == 0:
            s["QL"], s["QR"] = np.linalg.eigh(s["L"])[1], np.linalg.eigh(s["R"])[1]
        ql, qr = s["QL"], s["QR"]
        s["v"] = b2 * s["v"] + (1 - b2) * (ql.T @ g2 @ qr).reshape(g.shape) ** 2
        m_hat = (ql.T @ (s["m"] / (1 - b1 ** t)).reshape(g2.shape) @ qr)
        v_hat = (s["v"] / (1 - b2 ** t)).reshape(g2.shape)
        return (ql @ (m_hat / (np.sqrt(v_hat) + eps)) @ qr.T).reshape(g.shape)

    return np_steps(params, grad_fn, steps, lr=lr, b1=b1, weight_decay=weight_decay,
                    direction=direction)


# ---------------------------------------------------------------- reference table

SHAMPOO_CASES = [  # (name, hyperparameters, steps)
    ("sum_eigh_adam", dict(lr=0.05, b1=0.9, b2=1.0, eps=1e-4, frequency=5), 120),
    ("ema_eigh_sgd_decay", dict(lr=0.02, b1=0.5, b2=0.9, eps=1e-3, weight_decay=0.01,
                                frequency=3, graft="sgd"), 100),
    ("ema_newton_adam", dict(lr=0.05, b1=0.9, b2=0.95, eps=1e-3, frequency=4, root="newton",
                             newton_iterations=30), 80),
    ("every_step_no_momentum", dict(lr=0.03, b1=0.0, b2=0.99, eps=1e-4, graft_b2=0.9,
                                    graft_eps=1e-6, frequency=1), 50),
]


def make_shampoo(h):
    return shampoo(h["lr"], h["b1"], h["b2"], h["eps"], h.get("graft_b2", 0.999),
                   h.get("graft_eps", 1e-8), h.get("weight_decay", 0.0),
                   precondition_frequency=h["frequency"], graft=h.get("graft", "adam"),
                   root_method=h.get("root", "eigh"),
                   newton_iterations=h.get("newton_iterations", 40))


SOAP_CASES = [
    ("averaged", dict(lr=0.02, b1=0.9, b2=0.95, eps=1e-5, shampoo_b2=0.95, frequency=10), 150),
    ("summed_decay", dict(lr=0.01, b1=0.95, b2=0.99, eps=1e-5, shampoo_b2=1.0,
                          weight_decay=0.05, frequency=3), 100),
    ("every_step", dict(lr=0.01, b1=0.0, b2=0.9, eps=1e-5, shampoo_b2=0.9, frequency=1), 50),
]


def make_soap(h):
    return soap(h["lr"], h["b1"], h["b2"], h["eps"], h["shampoo_b2"], h.get("weight_decay", 0.0),
                precondition_frequency=h["frequency"])


REFERENCE_CASES = (  # (id, lab optimizer from hyper, reference, shapes, hyper, steps)
    [(f"shampoo_{name}", make_shampoo, shampoo_reference, SHAMPOO_SHAPES, hyper, steps)
     for name, hyper, steps in SHAMPOO_CASES]
    + [(f"soap_{name}", make_soap, soap_reference, SOAP_SHAPES, hyper, steps)
       for name, hyper, steps in SOAP_CASES])


@pytest.mark.parametrize("name,make,reference,shapes,hyper,steps", REFERENCE_CASES,
                         ids=[c[0] for c in REFERENCE_CASES])
def test_equals_the_dense_reference_step_for_step(name, make, reference, shapes, hyper, steps):
    params, grad_fn = problem(shapes, noise=0.3)
    ours = run_lab(make(hyper), params, grad_fn, steps)
    errors = relative_errors(ours, reference(params, grad_fn, steps, **hyper))
    assert len(errors) == steps and max(errors) < 1e-10, f"worst step {int(np.argmax(errors))}"
    # the run moved: the last iterate is far from the first
    assert np.abs(np.asarray(ours[-1]["w"]) - params["w"]).max() > 0.1


# ---------------------------------------------------------------------- properties


@pytest.mark.parametrize("p", [2, 4])
def test_inverse_roots_by_eigh_and_by_newton_agree(p):
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(7, 7)))
    matrix = (q * np.logspace(-2, 1, 7)) @ q.T  # condition number 1e3
    root = jax.jit(inverse_root, static_argnums=1,
                   static_argnames=("method", "newton_iterations"))
    eigh = np.asarray(root(jnp.asarray(matrix), p, 1e-3))
    newton = np.asarray(root(jnp.asarray(matrix), p, 1e-3, method="newton",
                             newton_iterations=40))
    np.testing.assert_allclose(newton, eigh, rtol=1e-10, atol=1e-12)
    # and it is the root: root^p (S + eps I) = I
    power = np.linalg.matrix_power(eigh, p) @ (matrix + 1e-3 * np.eye(7))
    np.testing.assert_allclose(power, np.eye(7), atol=1e-10)


def test_first_shampoo_step_is_the_polar_factor_with_the_graft_length():
    # b1 = 0, tiny eps: L^{-1/4} G R^{-1/4} = U V^T for G = U S V^T; the SGD graft gives
    # it the length ||G||_F
    g = jnp.asarray(np.random.default_rng(2).normal(size=(5, 3)))
    opt = shampoo(0.1, b1=0.0, eps=1e-14, graft="sgd")
    u, _ = jax.jit(opt.update)({"w": g}, opt.init({"w": jnp.zeros((5, 3))}))
    left, _, right = np.linalg.svd(np.asarray(g), full_matrices=False)
    polar = left @ right
    expected = -0.1 * np.linalg.norm(g) * polar / np.linalg.norm(polar)
    np.testing.assert_allclose(u["w"], expected, rtol=1e-8, atol=1e-10)


def test_leaves_without_factors_follow_adamw_exactly():
    # vectors, scalars and a matrix over max_precondition_dim take the graft's (Adam's) step
    shapes = {"b": (4,), "s": (), "big": (3, 12)}
    params, grad_fn = problem(shapes, seed=3)
    adamw = adam_family.adamw(0.05, 0.9, 0.99, 1e-6, weight_decay=0.1)
    expected = run_lab(adamw, params, grad_fn, 30)
    ours = {"shampoo": shampoo(0.05, 0.9, graft_b2=0.99, graft_eps=1e-6, weight_decay=0.1,
                               max_precondition_dim=8),
            "soap": soap(0.05, 0.9, 0.99, 1e-6, weight_decay=0.1, max_precondition_dim=8)}
    for name, opt in ours.items():
        assert_tree_allclose(run_lab(opt, params, grad_fn, 30)[-1], expected[-1], rtol=1e-12,
                             err_msg=name)
        state = opt.init(jax.tree.map(jnp.asarray, params))
        assert state.left == () and state.right == ()  # no factors were kept


@pytest.mark.parametrize("make,field", [(lambda: shampoo(0.01, precondition_frequency=4),
                                         "left_root"),
                                        (lambda: soap(0.01, precondition_frequency=4),
                                         "left_basis")])
def test_preconditioner_is_refreshed_every_frequency_steps(make, field):
    params, grad_fn = problem({"w": (4, 4)}, seed=4)
    opt = make()
    step = jax.jit(opt.update)
    p = jax.tree.map(jnp.asarray, params)
    state, seen = opt.init(p), []
    for _ in range(10):
        u, state = step(jax.tree.map(jnp.asarray, grad_fn(p)), state, p)
        p = apply_updates(p, u)
        seen.append(np.asarray(getattr(state, field)[0]))
    changed = [t + 1 for t in range(1, 10) if not np.array_equal(seen[t], seen[t - 1])]
    assert changed == [5, 9]  # refreshed on steps 1, 5, 9 only


@pytest.mark.parametrize("make", [
    lambda lr: shampoo(lr, precondition_frequency=3),
    lambda lr: shampoo(lr, graft="sgd", root_method="newton", newton_iterations=20),
    lambda lr: soap(lr, eps=1e-4, precondition_frequency=3)],
    ids=["shampoo", "shampoo_newton", "soap"])
def test_a_vmap_over_learning_rates_compiles_once_and_equals_separate_runs(make):
    x = jnp.asarray(np.random.default_rng(5).normal(size=(8, 4)))
    params = {"w": jnp.asarray(np.random.default_rng(8).normal(size=(4, 3))), "b": jnp.zeros(3)}

    def grad_fn(p):
        return jax.grad(lambda q: jnp.sum(jnp.tanh(x @ q["w"] + q["b"][None, :] - 0.5) ** 2))(p)

    def run(lr):
        opt = make(lr)

        def body(carry, _):
            p, s = carry
            u, s = opt.update(grad_fn(p), s, p)
            return (apply_updates(p, u), s), None

        return jax.lax.scan(body, (params, opt.init(params)), None, length=12)[0][0]

    check_sweep(run, jnp.asarray([0.003, 0.01, 0.03]), rtol=1e-10)


@pytest.mark.parametrize("make", [lambda: shampoo(0.01, precondition_frequency=2),
                                  lambda: shampoo(0.01, root_method="newton", graft="sgd"),
                                  lambda: soap(0.01, precondition_frequency=2)])
def test_float32_params_keep_float32_updates_and_state(make):
    params = {"w": jnp.ones((4, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    grads = {"w": jnp.asarray(np.linspace(-1, 1, 12).reshape(4, 3), jnp.float32),
             "b": jnp.asarray([0.5, -1.0, 2.0], jnp.float32)}
    opt = make()
    state = opt.init(params)
    step = jax.jit(opt.update)
    for _ in range(3):
        updates, state = step(grads, state, params)
    assert_kept(params, updates)
    assert float_dtypes(state) == {jnp.dtype(jnp.float32)}
    assert len([x for x in jax.tree.leaves(state) if x.dtype == jnp.float32]) >= 6


# SOAP's first rotated gradient Q_L^T G_1 Q_R is diagonal up to round-off, and Adam divides
# that round-off by (|round-off| + eps): with eps = 1e-8 the step carries ~1e-8 relative
# noise (any implementation does), so the comparisons below use eps = 1e-4.
@pytest.mark.parametrize("make", [lambda: shampoo(0.05, precondition_frequency=2),
                                  lambda: soap(0.05, eps=1e-4, precondition_frequency=2)])
def test_jit_and_eager_agree(make):
    params, grad_fn = problem({"w": (4, 4), "b": (4,)}, seed=6)
    opt = make()
    p = jax.tree.map(jnp.asarray, params)
    eager, jitted = (opt.init(p), opt.init(p))
    for _ in range(3):
        g = jax.tree.map(jnp.asarray, grad_fn(p))
        u_eager, eager = opt.update(g, eager, p)
        u_jit, jitted = jax.jit(opt.update)(g, jitted, p)
        assert_tree_allclose(u_eager, u_jit, rtol=1e-12)
        p = apply_updates(p, u_eager)
    assert isinstance(eager, (ShampooState, SoapState))


@pytest.mark.parametrize("make", [lambda: shampoo(0.05), lambda: soap(0.05, eps=1e-4)])
def test_inside_optax_chain_after_clipping(make):
    params, grad_fn = problem({"w": (4, 4), "b": (4,)}, seed=7)
    p = jax.tree.map(jnp.asarray, params)
    chained, alone = optax.chain(optax.clip_by_global_norm(0.5), make()), make()
    clip = optax.clip_by_global_norm(0.5)
    s_chain, s_alone = chained.init(p), alone.init(p)
    for _ in range(4):
        g = jax.tree.map(jnp.asarray, grad_fn(p))
        u_chain, s_chain = jax.jit(chained.update)(g, s_chain, p)
        clipped, _ = clip.update(g, clip.init(p))
        u_alone, s_alone = jax.jit(alone.update)(clipped, s_alone, p)
        assert_tree_allclose(u_chain, u_alone, rtol=1e-12)
        p = apply_updates(p, u_chain)


BAD = [(factory, kwargs, re.escape(message)) for factory, kwargs, message in [
    (shampoo, dict(learning_rate=0.1, precondition_frequency=0), "precondition_frequency=0"),
    (shampoo, dict(learning_rate=0.1, precondition_frequency=2.5),
     "precondition_frequency must be"),
    (shampoo, dict(learning_rate=0.1, root_method="cholesky"), "root_method must be one of"),
    (shampoo, dict(learning_rate=0.1, graft="lion"), "graft must be one of"),
    (shampoo, dict(learning_rate=0.1, newton_iterations=0), "newton_iterations=0"),
    (shampoo, dict(learning_rate=-0.1), "learning_rate=-0.1"),
    (shampoo, dict(learning_rate=0.1, b1=1.0), "b1=1.0"),
    (shampoo, dict(learning_rate=0.1, b2=1.5), "b2=1.5"),
    (shampoo, dict(learning_rate=0.1, eps=0.0), "eps=0.0"),
    (shampoo, dict(learning_rate=0.1, graft_b2=1.0), "graft_b2=1.0"),
    (soap, dict(learning_rate=0.1, precondition_frequency=-1), "precondition_frequency=-1"),
    (soap, dict(learning_rate=0.1, b2=1.0), "b2=1.0"),
    (soap, dict(learning_rate=0.1, shampoo_b2=-0.5), "shampoo_b2=-0.5"),
    (soap, dict(learning_rate=0.1, weight_decay=-1.0), "weight_decay=-1.0"),
    (inverse_root, dict(matrix=jnp.eye(2), p=4, eps=1e-6, method="qr"), "method must be one of"),
]]

test_bad_hyperparameters_raise = bad_input_test(BAD)


@pytest.mark.parametrize("make", [lambda: shampoo(0.1), lambda: soap(0.1)])
def test_grads_of_another_structure_or_shape_raise(make):
    opt = make()
    state = opt.init({"w": jnp.ones((3, 2)), "b": jnp.zeros(2)})
    with pytest.raises(ValueError, match="pytree structure"):
        opt.update({"w": jnp.ones((3, 2))}, state)
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        opt.update({"w": jnp.ones((2, 3)), "b": jnp.zeros(2)}, state)
    decaying = (shampoo(0.1, weight_decay=0.1) if isinstance(state, ShampooState)
                else soap(0.1, weight_decay=0.1))
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    with pytest.raises(ValueError, match="weight_decay=0.1 needs params"):
        decaying.update(params, decaying.init(params))
