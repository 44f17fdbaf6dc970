"""K-FAC on lab.nets MLPs: its Kronecker factors against dense Gauss-Newton blocks computed
here from per-example Jacobians, its step against a dense factored solve, the
Levenberg-Marquardt damping rule on constructed cases, and a digits MLP against SGD.

The dense references never use lab.optim.natural_gradient: the forward pass is written out by hand,
``J_i = d out_i / d z_i`` comes from ``jax.jacobian`` per example, and the output Hessians
are the closed forms ``diag(p) - p p^T`` (softmax cross-entropy) and ``2 I`` (lab's mse).
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lab import data, losses, nets
from lab.optim import aliases
from lab.optim.base import apply_updates
from lab.optim.natural_gradient import KfacState, kfac
from tests.helpers import assert_tree_allclose
from tests.optim_checks import assert_kept, bad_input_test, check_sweep, float_dtypes
from tests.test_optim_equivalence import FAST_COMPILE

CE = losses.softmax_cross_entropy_with_integer_labels


def two_layer_mlp(first_bias=True, n=12, loss="ce", seed=0):
    """``(net, params, x, y)``: Dense(5) -> tanh -> Dense(3) on 4 features, float64, with
    nonzero biases."""
    net = nets.serial(nets.Dense(5, use_bias=first_bias), nets.Tanh, nets.Dense(3))
    _, params = net.init(jax.random.key(seed), (-1, 4), dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda p: p + 0.3 * jnp.asarray(rng.normal(size=p.shape)), params)
    x = jnp.asarray(rng.normal(size=(n, 4)))
    y = (jnp.asarray(rng.integers(0, 3, size=n)) if loss == "ce"
         else jnp.asarray(rng.normal(size=(n, 3))))
    return net, params, x, y


def dense_parts(params, x):
    """The hand-written forward pass: inputs with a 1 appended where there is a bias, the
    hidden pre-activations, and the outputs."""
    first, second = params[0], params[2]
    z1 = x @ first["w"] + (first["b"][None, :] if "b" in first else 0.0)
    a1 = jnp.tanh(z1)
    out = a1 @ second["w"] + second["b"][None, :]
    ones = jnp.ones((x.shape[0], 1))
    abar1 = jnp.concatenate([x, ones], axis=1) if "b" in first else x
    abar2 = jnp.concatenate([a1, ones], axis=1)
    return np.asarray(abar1), np.asarray(abar2), z1, np.asarray(out)


def output_hessians(out, loss):
    if loss == "ce":
        p = np.exp(out - out.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return np.stack([np.diag(q) - np.outer(q, q) for q in p])
    return np.stack([2 * np.eye(out.shape[1])] * out.shape[0])


def per_example_jacobians(params, z1):
    """``J_i = d out_i / d z1_i``, (N, 3, 5)."""
    second = params[2]

    def head(z):
        return jnp.tanh(z) @ second["w"] + second["b"]

    return np.asarray(jax.vmap(jax.jacobian(head))(z1))


def step_once(net, loss, params, x, y, **kwargs):
    """One jitted K-FAC step: (updates, state, grads)."""
    opt = kfac(net=net, loss=loss, **kwargs)
    value, grads = jax.value_and_grad(lambda p: loss(net.apply(p, x), y))(params)
    step = jax.jit(lambda g, s, p: opt.update(g, s, p, inputs=x, targets=y, value=value),
                   compiler_options=FAST_COMPILE)
    updates, state = step(grads, opt.init(params), params)
    return updates, state, grads


# ------------------------------------------------------------------ the factors

FACTOR_CASES = [("ce_biases", True, "ce"), ("mse_no_first_bias", False, "mse")]


@pytest.mark.parametrize("name,first_bias,loss", FACTOR_CASES, ids=[c[0] for c in FACTOR_CASES])
def test_exact_factors_equal_the_dense_gauss_newton_factors(name, first_bias, loss):
    net, params, x, y = two_layer_mlp(first_bias, loss=loss)
    _, state, _ = step_once(net, CE if loss == "ce" else losses.mse, params, x, y,
                            fisher="exact", adaptive=False)
    abar1, abar2, z1, out = dense_parts(params, x)
    h = output_hessians(out, loss)
    j = per_example_jacobians(params, z1)
    n = x.shape[0]
    expected_a = [abar1.T @ abar1 / n, abar2.T @ abar2 / n]
    expected_g = [np.einsum("nki,nkl,nlj->ij", j, h, j) / n, h.mean(axis=0)]
    for k in range(2):
        assert state.a_factors[k].shape == expected_a[k].shape
        np.testing.assert_allclose(state.a_factors[k], expected_a[k], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(state.g_factors[k], expected_g[k], rtol=1e-10, atol=1e-13)
    assert state.a_factors[0].shape == ((5, 5) if first_bias else (4, 4))


def test_for_one_example_the_kronecker_product_is_the_exact_gauss_newton_block():
    # with a single example E[a a^T ⊗ g g^T] = E[a a^T] ⊗ E[g g^T]: the K-FAC block is the
    # Gauss-Newton block J_theta^T H J_theta itself (params [W; b] flattened row-major)
    net, params, x, y = two_layer_mlp(n=1)
    _, state, _ = step_once(net, CE, params, x, y, fisher="exact", adaptive=False)
    h = output_hessians(dense_parts(params, x)[3], "ce")[0]
    for k, index in enumerate((0, 2)):
        shape = params[index]["w"].shape

        def out_of(theta, index=index, shape=shape):
            wbar = theta.reshape(shape[0] + 1, shape[1])
            layer = {"w": wbar[:-1], "b": wbar[-1]}
            p = tuple(layer if i == index else q for i, q in enumerate(params))
            return net.apply(p, x)[0]

        theta = jnp.concatenate([params[index]["w"].ravel(), params[index]["b"]])
        jac = np.asarray(jax.jacobian(out_of)(theta))  # (3, (in + 1) * out)
        block = jac.T @ h @ jac
        np.testing.assert_allclose(np.kron(state.a_factors[k], state.g_factors[k]), block,
                                   rtol=1e-10, atol=1e-13)


def test_empirical_factors_use_the_true_labels():
    net, params, x, y = two_layer_mlp()
    _, state, _ = step_once(net, CE, params, x, y, fisher="empirical", adaptive=False)
    _, _, z1, out = dense_parts(params, x)
    p = np.exp(out) / np.exp(out).sum(axis=1, keepdims=True)
    residual = p - np.eye(3)[np.asarray(y)]  # d ell_i / d out_i
    g1 = np.einsum("nki,nk->ni", per_example_jacobians(params, z1), residual)
    np.testing.assert_allclose(state.g_factors[0], g1.T @ g1 / len(g1), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(state.g_factors[1], residual.T @ residual / len(g1), rtol=1e-10,
                               atol=1e-13)


def test_nested_serial_and_residual_blocks_are_found_without_tagging():
    net = nets.serial(nets.serial(nets.Dense(5), nets.Tanh),
                      nets.Residual(nets.Dense(5), nets.Tanh), nets.Dense(3))
    _, params = net.init(jax.random.key(3), (-1, 4), dtype=jnp.float64)
    x = jnp.asarray(np.random.default_rng(5).normal(size=(10, 4)))
    y = jnp.asarray(np.arange(10) % 3)
    _, state, _ = step_once(net, CE, params, x, y, fisher="empirical", adaptive=False)
    h1 = jnp.tanh(x @ params[0][0]["w"] + params[0][0]["b"][None, :])
    h2 = h1 + jnp.tanh(h1 @ params[1][0]["w"] + params[1][0]["b"][None, :])  # y = x + f(x)
    for k, a in enumerate((x, h1, h2)):
        abar = np.concatenate([np.asarray(a), np.ones((10, 1))], axis=1)
        np.testing.assert_allclose(state.a_factors[k], abar.T @ abar / 10, rtol=1e-12)
    assert [f.shape for f in state.g_factors] == [(5, 5), (5, 5), (3, 3)]


def test_sampled_factors_average_to_the_exact_ones():
    net, params, x, y = two_layer_mlp(n=32)
    _, exact, _ = step_once(net, CE, params, x, y, fisher="exact", adaptive=False)

    def sampled(key):
        opt = kfac(net=net, loss=CE, key=key, adaptive=False)
        grads = jax.grad(lambda q: CE(net.apply(q, x), y))(params)
        return opt.update(grads, opt.init(params), params, inputs=x, targets=y)[1].g_factors

    keys = jax.random.split(jax.random.key(7), 400)
    draws = jax.jit(jax.vmap(sampled), compiler_options=FAST_COMPILE)(keys)
    mean = jax.tree.map(lambda g: g.mean(axis=0), draws)
    for k in range(2):
        error = np.linalg.norm(mean[k] - exact.g_factors[k]) / np.linalg.norm(exact.g_factors[k])
        assert error < 0.04, (k, error)  # measured: 0.009 and 0.016 with 250 draws
    one = draws[1][0]  # a single draw is a noisy estimate, not the expectation
    assert np.linalg.norm(one - exact.g_factors[1]) / np.linalg.norm(exact.g_factors[1]) > 0.1


# -------------------------------------------------------------------- the step


def test_first_step_is_the_dense_factored_tikhonov_solve():
    net, params, x, y = two_layer_mlp()
    lr, lam = 0.7, 0.05
    updates, state, grads = step_once(net, CE, params, x, y, learning_rate=lr, damping=lam,
                                      fisher="exact", adaptive=False)
    for k, index in enumerate((0, 2)):
        a, g = np.asarray(state.a_factors[k]), np.asarray(state.g_factors[k])
        pi = np.sqrt((np.trace(a) / len(a)) / (np.trace(g) / len(g)))
        damped_a = a + pi * np.sqrt(lam) * np.eye(len(a))
        damped_g = g + np.sqrt(lam) / pi * np.eye(len(g))
        gbar = np.concatenate([grads[index]["w"], grads[index]["b"][None, :]])
        delta = np.linalg.solve(damped_a, gbar) @ np.linalg.inv(damped_g)
        np.testing.assert_allclose(updates[index]["w"], -lr * delta[:-1], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(updates[index]["b"], -lr * delta[-1], rtol=1e-10, atol=1e-13)
    assert updates[1] == ()  # the tanh layer has no params
    assert float(state.damping) == lam  # not adaptive: unchanged


def test_factors_are_averaged_over_steps_and_refreshed_every_frequency_steps():
    # with lr = 0 the params stay put, and eps_k = min(1 - 1/k, decay) makes A_k the plain
    # mean of the batches' A; the eigendecomposition is refreshed on steps 1 and 3 only
    net, params, _, _ = two_layer_mlp()
    opt = kfac(0.0, net=net, loss=CE, fisher="exact", adaptive=False, precondition_frequency=2)
    rng = np.random.default_rng(3)
    batches = [(jnp.asarray(rng.normal(size=(8, 4))), jnp.asarray(rng.integers(0, 3, 8)))
               for _ in range(3)]
    step = jax.jit(lambda g, s, x, y: opt.update(g, s, params, inputs=x, targets=y))
    state, eigenvalues, batch_a = opt.init(params), [], []
    for x, y in batches:
        grads = jax.grad(lambda q: CE(net.apply(q, x), y))(params)
        _, state = step(grads, state, x, y)
        eigenvalues.append(np.asarray(state.a_eigen[1][0]))
        abar2 = dense_parts(params, x)[1]
        batch_a.append(abar2.T @ abar2 / len(abar2))
    np.testing.assert_allclose(state.a_factors[1], np.mean(batch_a, axis=0), rtol=1e-10)
    assert np.array_equal(eigenvalues[0], eigenvalues[1])  # step 2: not refreshed
    np.testing.assert_allclose(eigenvalues[2], np.linalg.eigvalsh(state.a_factors[1]),
                               rtol=1e-10, atol=1e-14)


# ------------------------------------------------------------------ the damping


def test_damping_goes_down_after_a_good_step():
    # a linear model under mse is exactly quadratic and its Gauss-Newton matrix is its
    # Hessian, so the quadratic model predicts the change exactly: rho = 1 > 3/4
    net = nets.serial(nets.Dense(2))
    _, params = net.init(jax.random.key(1), (-1, 3), dtype=jnp.float64)
    rng = np.random.default_rng(4)
    x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=(6, 2)))
    lam, omega = 0.01, 1.5
    _, state, _ = step_once(net, losses.mse, params, x, y, damping=lam, omega=omega,
                            fisher="exact")
    assert abs(float(state.rho) - 1.0) < 1e-10
    assert float(state.damping) == pytest.approx(lam / omega, rel=1e-14)


def test_damping_goes_up_after_a_bad_step():
    # out = sin(w x), x = 1, target 3, w = 0: the Gauss-Newton step u ~ 3 is predicted to
    # lower the loss by ~9, but sin(3) ~ 0.14 lowers it by only ~0.83: rho ~ 0.09 < 1/4
    net = nets.serial(nets.Dense(1, w_init="zeros", use_bias=False), nets.Activation(jnp.sin))
    _, params = net.init(jax.random.key(0), (-1, 1), dtype=jnp.float64)
    x, y = jnp.ones((1, 1)), jnp.full((1, 1), 3.0)
    lam, omega = 1e-6, 1.5
    updates, state, grads = step_once(net, losses.mse, params, x, y, damping=lam, omega=omega,
                                      fisher="exact")
    u = float(updates[0]["w"][0, 0])
    g = float(grads[0]["w"][0, 0])
    assert g == pytest.approx(-6.0, rel=1e-14) and u == pytest.approx(3.0, rel=1e-2)
    actual = (np.sin(u) - 3.0) ** 2 - 9.0
    predicted = g * u + 0.5 * 2.0 * u ** 2  # F = J^T H J = cos(0) 2 cos(0) = 2
    assert float(state.rho) == pytest.approx(actual / predicted, rel=1e-10)
    assert 0 < float(state.rho) < 0.25
    assert float(state.damping) == pytest.approx(lam * omega, rel=1e-14)


def test_damping_stays_between_its_bounds():
    net = nets.serial(nets.Dense(2))
    _, params = net.init(jax.random.key(1), (-1, 3), dtype=jnp.float64)
    x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
    _, state, _ = step_once(net, losses.mse, params, x, y, damping=0.01, omega=10.0,
                            min_damping=0.005, fisher="exact")
    assert float(state.damping) == 0.005  # 0.01 / 10 clipped to the lower bound


# ------------------------------------------------------------- against SGD


def test_kfac_lowers_a_digits_mlp_loss_faster_per_step_than_sgd():
    x, y = data.load_digits(dtype=jnp.float64)
    x, y = x[:512], y[:512]
    net = nets.mlp([32, 10], activation="tanh")
    _, params = net.init(jax.random.key(0), (-1, 64), dtype=jnp.float64)

    def value_fn(p):
        return CE(net.apply(p, x), y)

    def train(opt, steps=20):
        def body(carry, _):
            p, s = carry
            v, g = jax.value_and_grad(value_fn)(p)
            u, s = opt.update(g, s, p, inputs=x, targets=y, value=v)
            return (apply_updates(p, u), s), v

        (p, _), values = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
        return jnp.append(values, value_fn(p))  # the loss before each step, and the last

    run = jax.jit(train, static_argnums=0, compiler_options=FAST_COMPILE)
    sgd = {f"sgd {lr} {m}": run(aliases.sgd(lr, m)) for lr, m in [(0.3, None), (1.0, None),
                                                                   (0.3, 0.9)]}
    ours = run(kfac(net=net, loss=CE, key=jax.random.key(1)))
    best = min(float(v[-1]) for v in sgd.values())
    assert float(ours[0]) == pytest.approx(float(sgd["sgd 1.0 None"][0]), rel=1e-12)
    assert float(ours[-1]) < 0.1 * best, (float(ours[-1]), best)  # measured: 0.004 vs 0.128
    assert float(ours[6]) < best  # six K-FAC steps beat twenty of the best SGD (0.091)
    assert float(ours[1]) < 0.5 * float(min(v[1] for v in sgd.values()))  # and the first


# ------------------------------------------------------------------ properties


def test_a_vmap_over_learning_rates_compiles_once_and_equals_separate_runs():
    net, params, x, y = two_layer_mlp()

    def run(lr):
        opt = kfac(lr, net=net, loss=CE, key=jax.random.key(2), precondition_frequency=2)

        def body(carry, _):
            p, s = carry
            v, g = jax.value_and_grad(lambda q: CE(net.apply(q, x), y))(p)
            u, s = opt.update(g, s, p, inputs=x, targets=y, value=v)
            return (apply_updates(p, u), s), None

        (p, s), _ = jax.lax.scan(body, (params, opt.init(params)), None, length=5)
        return p, s.damping

    check_sweep(run, jnp.asarray([0.1, 0.3, 1.0]), rtol=1e-10)


def test_float32_params_keep_float32_updates_and_state():
    net = nets.serial(nets.Dense(5), nets.Relu, nets.Dense(3))
    _, params = net.init(jax.random.key(0), (-1, 4))  # float32 by default
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 0, 1, 2, 0, 1])
    for fisher in ("sampled", "exact"):
        updates, state, _ = step_once(net, CE, params, x, y, fisher=fisher,
                                      key=jax.random.key(0))
        assert_kept(params, updates, label=fisher)
        assert float_dtypes(state) == {jnp.dtype(jnp.float32)}
        assert isinstance(state, KfacState)


def test_inside_optax_chain_with_extra_args():
    net, params, x, y = two_layer_mlp()
    alone = kfac(net=net, loss=CE, fisher="exact")
    chained = optax.chain(optax.GradientTransformationExtraArgs(*alone),
                          optax.clip_by_global_norm(0.05))
    grads = jax.grad(lambda q: CE(net.apply(q, x), y))(params)
    u_chain, _ = jax.jit(lambda g, s: chained.update(g, s, params, inputs=x, targets=y),
                         compiler_options=FAST_COMPILE)(grads, chained.init(params))
    u_alone, _ = jax.jit(lambda g, s: alone.update(g, s, params, inputs=x, targets=y),
                         compiler_options=FAST_COMPILE)(grads, alone.init(params))
    clip = optax.clip_by_global_norm(0.05)
    expected, _ = clip.update(u_alone, clip.init(params))
    assert_tree_allclose(u_chain, expected, rtol=1e-12)
    assert float(optax.tree.norm(u_chain)) == pytest.approx(0.05, rel=1e-12)


BASE = dict(net=nets.serial(nets.Dense(2)), loss=CE, key=jax.random.key(0))
BAD_BUILDS = [(kfac, {**BASE, **kwargs}, message) for kwargs, message in [
    (dict(fisher="hessian"), "fisher must be one of"),
    (dict(key=None), "needs key"),
    (dict(loss=losses.huber), "sample_targets"),
    (dict(precondition_frequency=0), "precondition_frequency=0"),
    (dict(damping=0.0), "damping=0.0"),
    (dict(decay=1.0), "decay=1.0"),
    (dict(omega=0.5), "omega=0.5"),
    (dict(learning_rate=-1.0), "learning_rate=-1.0"),
    (dict(net=lambda x: x), "net must be a lab.nets Layer"),
]]

test_bad_hyperparameters_raise_when_built = bad_input_test(BAD_BUILDS)


BAD_NETS = [
    ("prelu", nets.serial(nets.Dense(3), nets.PReLU(), nets.Dense(2)), (-1, 4)),
    ("conv", nets.serial(nets.Conv2D(2, 3), nets.Flatten, nets.Dense(2)), (-1, 4, 4, 1)),
    ("layer_norm", nets.serial(nets.Dense(3), nets.LayerNorm(), nets.Dense(2)), (-1, 4)),
    ("no_dense", nets.serial(nets.Tanh), (-1, 4)),
]


@pytest.mark.parametrize("name,net,shape", BAD_NETS, ids=[b[0] for b in BAD_NETS])
def test_a_net_of_other_layers_raises(name, net, shape):
    _, params = net.init(jax.random.key(0), shape, dtype=jnp.float64)
    opt = kfac(net=net, loss=losses.mse, fisher="exact")
    with pytest.raises(ValueError, match="Dense" if name != "no_dense" else "no Dense layer"):
        opt.init(params)


def test_bad_update_inputs_raise():
    net, params, x, y = two_layer_mlp()
    opt = kfac(net=net, loss=CE, fisher="exact")
    state = opt.init(params)
    grads = jax.grad(lambda q: CE(net.apply(q, x), y))(params)
    with pytest.raises(TypeError, match="needs the batch"):
        opt.update(grads, state, params)
    with pytest.raises(ValueError, match="pytree structure"):
        opt.update(grads[:2], state, params, inputs=x, targets=y)
    sequences = nets.serial(nets.Dense(3))
    _, seq_params = sequences.init(jax.random.key(0), (-1, 5, 4), dtype=jnp.float64)
    seq_opt = kfac(net=sequences, loss=losses.mse, fisher="exact")
    with pytest.raises(ValueError, match=r"needs \(N, features\)"):
        seq_opt.update(seq_params, seq_opt.init(seq_params), seq_params,
                       inputs=jnp.ones((2, 5, 4)), targets=jnp.ones((2, 5, 3)))
