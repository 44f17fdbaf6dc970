"""lab.curvature against explicit references.

References: dense symmetric matrices with chosen spectra, ``A = Q diag(lambda) Q^T``, and their
known eigenvalues; the explicit Hessian of a tiny tanh MLP (P = 137, float64) from jax.hessian
on the raveled parameters, with numpy.linalg.eigvalsh; ``J^T H_L J`` assembled from jax.jacfwd
and jax.hessian.

Tolerances: products 1e-10 (float64 rounding); Lanczos eigenvalues 1e-6 relative (the brief's
bar; these spectra converge well beyond it); Hutchinson within 3 standard errors; SLQ moments
within 2% (the probe noise is about 0.4% at n = 2000 with 40 probes).
Compilation dominates the run time, so each compiled program is shared where shapes allow.
"""
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.fft
from jax.flatten_util import ravel_pytree

from lab import curvature, losses
from tests.helpers import assert_tree_allclose

KEY = jax.random.key(0)


# ----------------------------------------------------------------------------- references

def symmetric_with_spectrum(eigenvalues, seed):
    """``Q diag(eigenvalues) Q^T`` (numpy float64) for a dense random rotation
    ``Q = C S_2 P_2 C S_1 P_1``: two orthonormal DCTs ``C`` with random signs ``S`` and
    permutations ``P`` (every entry of Q is O(1/sqrt(n)); O(n^2 log n) to build, no QR)."""
    lam = np.asarray(eigenvalues, np.float64)
    n = lam.size
    rng = np.random.default_rng(seed)
    stages = [(rng.permutation(n), rng.choice([-1.0, 1.0], n)) for _ in range(2)]

    def rotate_columns(m):  # Q @ m
        for perm, signs in stages:
            m = scipy.fft.dct(signs[:, None] * m[perm], axis=0, norm="ortho")
        return m

    a = rotate_columns(rotate_columns(np.diag(lam)).T)  # Q (Q diag(lam))^T
    return 0.5 * (a + a.T)


def indefinite_spectrum(n, seed):
    """A bulk in [-3, 5] plus five separated positive and five separated negative outliers."""
    bulk = np.random.default_rng(seed).uniform(-3.0, 5.0, n - 10)
    return np.concatenate([bulk, [20.0, 17.0, 14.0, 12.0, 10.5], [-15.0, -12.0, -10.0, -9.0, -8.0]])


@lru_cache(maxsize=None)
def indefinite_matrix(n):
    """(A as a jax array, its sorted spectrum) for ``indefinite_spectrum(n, seed=n)``."""
    eig = indefinite_spectrum(n, seed=n)
    return jnp.asarray(symmetric_with_spectrum(eig, seed=n + 1)), np.sort(eig)


@partial(jax.jit, static_argnames=("k", "num_iters", "which"))
def dense_eigenpairs(a, key, *, k, num_iters, which):
    return curvature.top_eigenvalues_matvec(lambda v: a @ v, a.shape[0], k=k,
                                            num_iters=num_iters, key=key, which=which)


def normal(seed, *shape):
    """Test data from numpy (an eager jax.random call compiles a program per shape)."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape))


def mlp_init(seed, sizes):
    """A tanh MLP's params: a tuple of {'w': (fan_in, fan_out), 'b': (fan_out,)}, float64."""
    return tuple({"w": normal(seed + i, a, b) / np.sqrt(a), "b": 0.1 * normal(seed + 100 + i, b)}
                 for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])))


def mlp_apply(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"][None, :])
    return x @ params[-1]["w"] + params[-1]["b"][None, :]


def mlp_loss(params, x, y):
    return losses.mse(mlp_apply(params, x), y)


hvp_jit = jax.jit(partial(curvature.hessian_vector_product, mlp_loss))


@pytest.fixture(scope="module")
def mlp():
    """A 4-10-6-3 tanh MLP (P = 137) with an MSE loss on 32 points, and its exact Hessian."""
    params = mlp_init(1, [4, 10, 6, 3])
    x, y = normal(2, 32, 4), normal(3, 32, 3)
    flat, unravel = ravel_pytree(params)
    hessian = np.asarray(jax.jit(jax.hessian(lambda w: mlp_loss(unravel(w), x, y)))(flat))
    return dict(params=params, x=x, y=y, flat=flat, unravel=unravel, hessian=hessian,
                eigenvalues=np.linalg.eigvalsh(hessian),
                batches=(x.reshape(4, 8, 4), y.reshape(4, 8, 3)))


def batch_loss(params, batch):
    return mlp_loss(params, *batch)


# ----------------------------------------------------------------------------- products

def test_mlp_has_the_intended_size_and_an_indefinite_hessian(mlp):
    assert mlp["flat"].shape == (137,)
    eig = mlp["eigenvalues"]
    assert eig[0] < -1e-4 * eig[-1] < 0 < eig[-1]  # negative curvature for "bottom" to find


def test_hvp_equals_explicit_hessian_times_v(mlp):
    for v in normal(4, 3, 137):
        got = hvp_jit(mlp["params"], mlp["unravel"](v), mlp["x"], mlp["y"])
        assert jax.tree.structure(got) == jax.tree.structure(mlp["params"])
        np.testing.assert_allclose(ravel_pytree(got)[0], mlp["hessian"] @ np.asarray(v),
                                   rtol=1e-10, atol=1e-12)


def test_hvp_keeps_float32_jit_agrees_with_eager_and_mismatched_tangents_raise():
    params = {"a": jnp.ones(3, jnp.float32), "b": jnp.ones((2, 2), jnp.float32)}
    f = lambda p: jnp.sum(p["a"] ** 3) + jnp.sum(p["b"] ** 2)
    ones = jax.tree.map(jnp.ones_like, params)
    hv = curvature.hessian_vector_product(f, params, ones)
    assert_tree_allclose(hv, {"a": jnp.full(3, 6.0, jnp.float32), "b": jnp.full((2, 2), 2.0, jnp.float32)})
    assert_tree_allclose(jax.jit(partial(curvature.hessian_vector_product, f))(params, ones), hv)
    with pytest.raises(ValueError, match=r"v has pytree structure .* but params have structure"):
        curvature.hessian_vector_product(f, params, {"a": jnp.ones(3)})
    with pytest.raises(ValueError, match=r"leaf 1 of v has shape \(4,\) but the matching parameter has shape \(2, 2\)"):
        curvature.hessian_vector_product(f, params, {"a": jnp.ones(3), "b": jnp.ones(4)})


def test_hessian_matrix_matches_jax_hessian_with_padded_chunks(mlp):
    # 137 columns in chunks of 40: four chunks, the last one padded with 23 zero columns.
    h = jax.jit(lambda p: curvature.hessian_matrix(mlp_loss, p, mlp["x"], mlp["y"], chunk_size=40))(mlp["params"])
    assert h.shape == (137, 137)
    np.testing.assert_allclose(h, mlp["hessian"], rtol=1e-10, atol=1e-12)


def test_hessian_matrix_refuses_before_evaluating_anything(mlp):
    def loss_that_must_not_run(p, x, y):
        raise AssertionError("hessian_matrix evaluated the loss before checking the size")

    with pytest.raises(curvature.HessianTooLarge) as info:
        curvature.hessian_matrix(loss_that_must_not_run, mlp["params"], mlp["x"], mlp["y"], max_bytes=1000)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "P = 137" in message and "150,152 bytes" in message  # 137 * 137 * 8
    assert "(0.00014 GiB)" in message and "max_bytes = 1,000" in message


def test_gauss_newton_product_equals_explicit_jt_hl_j(mlp):
    labels = jax.nn.one_hot(jnp.arange(32) % 3, 3, dtype=jnp.float64)
    loss_of_outputs = lambda z: losses.softmax_cross_entropy(z, labels)

    @jax.jit
    def reference_and_products(flat, vs):
        jac = jax.jacfwd(lambda w: mlp_apply(mlp["unravel"](w), mlp["x"]).reshape(-1))(flat)  # (96, 137)
        h_l = jax.hessian(loss_of_outputs)(mlp_apply(mlp["unravel"](flat), mlp["x"])).reshape(96, 96)
        gnvp = lambda v: ravel_pytree(curvature.gauss_newton_vector_product(
            mlp_apply, loss_of_outputs, mlp["unravel"](flat), mlp["unravel"](v), mlp["x"]))[0]
        return jac.T @ h_l @ jac, jax.vmap(gnvp)(vs)

    vs = normal(5, 2, 137)
    gauss_newton, products = reference_and_products(mlp["flat"], vs)
    np.testing.assert_allclose(products, vs @ gauss_newton.T, rtol=1e-10, atol=1e-12)
    # A convex loss makes G PSD, although this model's full Hessian is indefinite.
    g_eig = np.linalg.eigvalsh(np.asarray(gauss_newton))
    assert g_eig[0] > -1e-12 * g_eig[-1] and g_eig[-1] > 0


def test_gauss_newton_equals_hessian_for_linear_least_squares():
    params = {"w": normal(6, 5, 2), "b": jnp.zeros(2, jnp.float64)}
    x, y = normal(7, 20, 5), normal(8, 20, 2)
    v = {"w": normal(9, 5, 2), "b": jnp.ones(2, jnp.float64)}
    model = lambda p, x: x @ p["w"] + p["b"][None, :]

    @jax.jit
    def both(params, v):
        g = curvature.gauss_newton_vector_product(model, lambda z: losses.mse(z, y), params, v, x)
        h = curvature.hessian_vector_product(lambda p, x: losses.mse(model(p, x), y), params, v, x)
        return g, h

    g, h = both(params, v)
    assert_tree_allclose(g, h)
    # Linear least squares: H v = (2 / B) [X^T X v_w + X^T 1 v_b ...]; check the weight block.
    np.testing.assert_allclose(h["w"], 2 / 20 * x.T @ (x @ v["w"] + v["b"][None, :]), rtol=1e-10)


def test_full_batch_hvp_equals_hvp_of_the_mean_loss(mlp):
    v = mlp["unravel"](normal(10, 137))
    batches = mlp["batches"]

    @jax.jit
    def products(params, v):
        full = curvature.full_batch_hvp(batch_loss, params, v, batches)
        one = curvature.hessian_vector_product(batch_loss, params, v, jax.tree.map(lambda b: b[0], batches))
        return full, one, curvature.full_batch_loss(batch_loss, params, batches)

    full, one, loss = products(mlp["params"], v)
    np.testing.assert_allclose(ravel_pytree(full)[0], mlp["hessian"] @ ravel_pytree(v)[0],
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(loss, mlp_loss(mlp["params"], mlp["x"], mlp["y"]), rtol=1e-12)
    # A single mini-batch's Hessian differs: the accumulation is doing real work.
    assert np.max(np.abs(ravel_pytree(one)[0] - ravel_pytree(full)[0])) > 1e-3


def test_full_batch_inputs_are_checked(mlp):
    bad = (mlp["x"].reshape(4, 8, 4), mlp["y"].reshape(2, 16, 3))
    with pytest.raises(ValueError, match=r"same leading .* got leaf shapes \[\(4, 8, 4\), \(2, 16, 3\)\]"):
        curvature.full_batch_hvp(batch_loss, mlp["params"], mlp["params"], bad)
    with pytest.raises(ValueError, match="over_batches=True takes exactly one extra argument.*got 2"):
        curvature.hessian_matvec(mlp_loss, mlp["params"], mlp["x"], mlp["y"], over_batches=True)
    with pytest.raises(ValueError, match=r"x has shape \(136,\) but the raveled parameters have shape \(137,\)"):
        curvature.hessian_matvec(mlp_loss, mlp["params"], mlp["x"], mlp["y"]).matvec(jnp.ones(136))


# ----------------------------------------------------------------------------- Lanczos

@pytest.mark.parametrize("n, num_iters, which", [(50, 50, "bottom"), (500, 60, "top"), (2000, 60, "both")])
def test_lanczos_extreme_eigenvalues_of_indefinite_matrices(n, num_iters, which):
    a, exact = indefinite_matrix(n)
    pairs = dense_eigenpairs(a, KEY, k=5, num_iters=num_iters, which=which)
    want = {"top": exact[::-1][:5], "bottom": exact[:5],
            "both": np.concatenate([exact[:5], exact[-5:]])}[which]
    np.testing.assert_allclose(pairs.eigenvalues, want, rtol=1e-6)
    assert pairs.eigenvectors.shape == (len(want), n)
    # Each Ritz vector is a unit eigenvector, and the reported residual is honest.
    y, theta = np.asarray(pairs.eigenvectors), np.asarray(pairs.eigenvalues)
    resid = np.linalg.norm(y @ np.asarray(a) - theta[:, None] * y, axis=1)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-10)
    assert np.all(resid < 1e-6) and np.all(np.asarray(pairs.residuals) < 1e-6)


@partial(jax.jit, static_argnames="num_iters")
def dense_lanczos(a, key, num_iters):
    return curvature.lanczos(lambda v: a @ v, a.shape[0], num_iters, key)


def test_lanczos_basis_tridiagonalises_and_gives_gauss_quadrature():
    a, _ = indefinite_matrix(50)
    res = dense_lanczos(a, KEY, 8)
    v, t = np.asarray(res.basis), np.asarray(curvature.tridiagonal(res))
    assert res.alphas.shape == (8,) and res.betas.shape == (7,) and v.shape == (8, 50)
    np.testing.assert_allclose(v @ v.T, np.eye(8), atol=1e-13)
    np.testing.assert_allclose(v @ np.asarray(a) @ v.T, t, atol=1e-12)
    # e_1^T T^p e_1 = u^T A^p u for p < 2m (the identity behind stochastic Lanczos quadrature).
    u = v[0]
    for p in range(16):
        want = u @ np.linalg.matrix_power(np.asarray(a), p) @ u
        np.testing.assert_allclose(np.linalg.matrix_power(t, p)[0, 0], want, rtol=1e-9)


def test_lanczos_restarts_cleanly_when_the_krylov_space_is_invariant():
    # Three distinct eigenvalues: the Krylov space of any start is exhausted after 3 steps.
    a = jnp.asarray(symmetric_with_spectrum(np.repeat([-2.0, 1.0, 5.0], [20, 20, 10]), seed=9))
    res = dense_lanczos(a, KEY, 8)  # same shapes as above: no recompilation
    v, t = np.asarray(res.basis), np.asarray(curvature.tridiagonal(res))
    assert float(res.betas[2]) == 0.0  # the recorded breakdown, then a restart
    np.testing.assert_allclose(v @ v.T, np.eye(8), atol=1e-12)
    np.testing.assert_allclose(v @ np.asarray(a) @ v.T, t, atol=1e-12)  # still V A V^T = T
    np.testing.assert_allclose(np.linalg.eigvalsh(t[:3, :3]), [-2.0, 1.0, 5.0], rtol=1e-12)
    theta = np.linalg.eigvalsh(t)
    assert -2.0 - 1e-12 <= theta[0] and theta[-1] <= 5.0 + 1e-12


def test_lanczos_and_selection_reject_bad_arguments():
    matvec = lambda v: v
    with pytest.raises(ValueError, match=r"num_iters must be an int in \[1, n\] = \[1, 10\].*got 11"):
        curvature.lanczos(matvec, 10, 11, KEY)
    with pytest.raises(ValueError, match=r"non-empty 1-D array, got shape \(2, 5\)"):
        curvature.lanczos(matvec, jnp.ones((2, 5)), 3, KEY)
    with pytest.raises(ValueError, match="which must be one of"):
        curvature.top_eigenvalues_matvec(matvec, 10, k=2, key=KEY, which="largest")
    with pytest.raises(ValueError, match=r"needs 8 Ritz values but only 6 Lanczos steps"):
        curvature.top_eigenvalues_matvec(matvec, 10, k=4, num_iters=6, key=KEY, which="both")


def test_mlp_top_and_bottom_eigenpairs_match_eigvalsh_and_compile_once(mlp):
    exact, traces = mlp["eigenvalues"], []

    def counted_loss(p, x, y):
        traces.append(1)
        return mlp_loss(p, x, y)

    extremes = jax.jit(lambda p, k: curvature.top_eigenvalues(counted_loss, p, mlp["x"], mlp["y"], k=5,
                                                             num_iters=80, key=k, which="both"))
    pairs = extremes(mlp["params"], KEY)
    count = len(traces)
    again = extremes(mlp["params"], jax.random.key(7))
    assert len(traces) == count  # a new key reuses the compiled program
    for result in (pairs, again):
        np.testing.assert_allclose(result.eigenvalues[:5], exact[:5], rtol=1e-6)   # bottom 5, ascending
        np.testing.assert_allclose(result.eigenvalues[5:], exact[-5:], rtol=1e-6)  # top 5, ascending
    # Eigenvectors come back as pytrees with a leading 2k axis on each leaf.
    shapes = jax.tree.map(lambda a: a.shape, pairs.eigenvectors)
    assert shapes == jax.tree.map(lambda a: (10,) + a.shape, mlp["params"])
    y = np.asarray(ravel_pytree(jax.tree.map(lambda a: a[-1], pairs.eigenvectors))[0])
    np.testing.assert_allclose(mlp["hessian"] @ y, exact[-1] * y, atol=1e-8)


def test_power_iteration_finds_the_largest_magnitude_eigenvalue(mlp):
    # The top |lambda| is negative here: power iteration must report it with its sign.
    eig = np.concatenate([np.linspace(-4.0, 6.0, 98), [10.0, -20.0]])
    a = jnp.asarray(symmetric_with_spectrum(eig, seed=11))
    res = jax.jit(lambda a, k: curvature.power_iteration_matvec(lambda v: a @ v, 100, num_iters=80, key=k))(a, KEY)
    np.testing.assert_allclose(res.eigenvalue, -20.0, rtol=1e-10)
    assert float(res.residual) < 1e-8
    res = jax.jit(lambda p, k: curvature.power_iteration(mlp_loss, p, mlp["x"], mlp["y"], num_iters=300, key=k))(
        mlp["params"], KEY)
    exact = mlp["eigenvalues"]
    np.testing.assert_allclose(res.eigenvalue, exact[np.argmax(np.abs(exact))], rtol=1e-6)
    assert jax.tree.structure(res.eigenvector) == jax.tree.structure(mlp["params"])


def test_condition_number_definite_and_indefinite():
    est = jax.jit(lambda a, k: curvature.condition_number_matvec(lambda v: a @ v, 60, num_iters=60, key=k))
    spd = est(jnp.asarray(symmetric_with_spectrum(np.geomspace(1e-2, 1e2, 60), seed=12)), KEY)
    np.testing.assert_allclose(spd.condition_number, 1e4, rtol=1e-6)
    eig = np.concatenate([np.linspace(0.5, 4.0, 57), [-3.0, 0.01, 8.0]])
    ind = est(jnp.asarray(symmetric_with_spectrum(eig, seed=13)), KEY)
    np.testing.assert_allclose([ind.lambda_min, ind.lambda_max, ind.condition_number], [-3.0, 8.0, 8.0 / 3.0],
                               rtol=1e-6)
    assert float(ind.condition_number) < 8.0 / 0.01  # only a lower bound on max|lambda| / min|lambda|


# ----------------------------------------------------------------------------- stochastic

def test_hutchinson_trace_within_three_standard_errors():
    a, eig = indefinite_matrix(500)
    est = jax.jit(lambda a, k: curvature.hutchinson_trace_matvec(lambda v: a @ v, 500, num_samples=200,
                                                                 key=k, batch_size=50))(a, KEY)
    assert abs(float(est.estimate) - eig.sum()) < 3 * float(est.standard_error)
    # Rademacher variance per probe: 2 (||A||_F^2 - sum_i A_ii^2).
    a = np.asarray(a)
    predicted = np.sqrt(2 * (np.sum(a ** 2) - np.sum(np.diag(a) ** 2)) / 200)
    np.testing.assert_allclose(est.standard_error, predicted, rtol=0.2)


def test_hutchinson_trace_and_diagonal_of_the_mlp_hessian(mlp):
    @jax.jit
    def estimates(p, key):
        k1, k2 = jax.random.split(key)
        trace = curvature.hutchinson_trace(mlp_loss, p, mlp["x"], mlp["y"], num_samples=100, key=k1,
                                           batch_size=100)
        diag = curvature.hutchinson_diagonal(mlp_loss, p, mlp["x"], mlp["y"], num_samples=400, key=k2,
                                             batch_size=100)
        return trace, diag

    trace, diag = estimates(mlp["params"], KEY)
    h = mlp["hessian"]
    assert abs(float(trace.estimate) - np.trace(h)) < 3 * float(trace.standard_error)
    assert jax.tree.structure(diag) == jax.tree.structure(mlp["params"])
    sd = np.sqrt((np.sum(h ** 2, axis=1) - np.diag(h) ** 2) / 400) + 1e-12
    z = (np.asarray(ravel_pytree(diag)[0]) - np.diag(h)) / sd
    assert np.max(np.abs(z)) < 5.0  # 137 entries, each about N(0, 1)


def test_hutchinson_diagonal_is_exact_for_a_diagonal_operator():
    d = jnp.linspace(-3.0, 7.0, 30)
    got = curvature.hutchinson_diagonal_matvec(lambda v: d * v, 30, num_samples=3, key=KEY)
    assert_tree_allclose(got, d)
    with pytest.raises(ValueError, match="num_samples must be an int >= 2, got 1"):
        curvature.hutchinson_trace_matvec(lambda v: d * v, 30, num_samples=1, key=KEY)
    with pytest.raises(ValueError, match="distribution must be one of"):
        curvature.hutchinson_trace_matvec(lambda v: d * v, 30, num_samples=4, key=KEY, distribution="uniform")


def test_slq_moments_and_density_match_the_exact_spectrum():
    n = 2000
    a, eig = indefinite_matrix(n)  # the Lanczos test's matrix, built once
    sd = jax.jit(lambda a, k: curvature.spectral_density_matvec(lambda v: a @ v, n, num_probes=40,
                                                                num_iters=20, key=k, batch_size=40))(a, KEY)
    assert sd.nodes.shape == sd.weights.shape == (40, 20) and sd.density.shape == (1024,)
    np.testing.assert_allclose(np.sum(sd.weights, axis=1), 1 / 40, rtol=1e-12)
    m1, m2 = np.mean(eig), np.mean(eig ** 2)
    assert abs(float(curvature.spectral_moment(sd, 1)) - m1) < 2e-2 * np.sqrt(m2)  # m1 ~ 1: scale by rms
    np.testing.assert_allclose(curvature.spectral_moment(sd, 2), m2, rtol=2e-2)
    # Extreme nodes are the extreme eigenvalues; the smoothed density is a probability density.
    np.testing.assert_allclose([np.min(sd.nodes), np.max(sd.nodes)], [eig[0], eig[-1]], rtol=1e-8)
    assert float(jnp.min(sd.density)) >= 0.0
    np.testing.assert_allclose(jnp.trapezoid(sd.density, sd.grid), 1.0, rtol=1e-6)
    np.testing.assert_allclose([sd.grid[0], sd.grid[-1]],
                               [eig[0] - 5 * float(sd.sigma), eig[-1] + 5 * float(sd.sigma)], rtol=1e-6)
    np.testing.assert_allclose(sd.sigma, 0.01 * (eig[-1] - eig[0]), rtol=1e-6)


def test_slq_of_the_full_batch_mlp_hessian(mlp):
    sd = jax.jit(lambda p, k: curvature.spectral_density(batch_loss, p, mlp["batches"], num_probes=30,
                                                         num_iters=20, key=k, over_batches=True))(mlp["params"], KEY)
    h, eig = mlp["hessian"], mlp["eigenvalues"]
    # Each probe's quadrature estimates tr(H^p)/P; their spread gives the standard error.
    for p, exact in ((1, np.trace(h) / 137), (2, np.trace(h @ h) / 137)):
        per_probe = 30 * np.sum(np.asarray(sd.weights) * np.asarray(sd.nodes) ** p, axis=1)
        assert abs(per_probe.mean() - exact) < 3 * per_probe.std(ddof=1) / np.sqrt(30)
        np.testing.assert_allclose(curvature.spectral_moment(sd, p), per_probe.mean(), rtol=1e-12)
    np.testing.assert_allclose(curvature.spectral_moment(sd, 0), 1.0, rtol=1e-12)
    assert eig[0] - 1e-8 <= float(np.min(sd.nodes)) and float(np.max(sd.nodes)) <= eig[-1] + 1e-8


# ----------------------------------------------------------------------------- dtypes

def test_float32_operators_stay_float32():
    a = jnp.asarray(symmetric_with_spectrum(np.linspace(1.0, 10.0, 40), seed=20), jnp.float32)
    example = jnp.zeros(40, jnp.float32)

    pairs = jax.jit(lambda a, k: curvature.top_eigenvalues_matvec(lambda v: a @ v, example, k=1, num_iters=40,
                                                                  key=k))(a, KEY)
    assert pairs.eigenvalues.dtype == pairs.eigenvectors.dtype == pairs.residuals.dtype == jnp.float32
    np.testing.assert_allclose(pairs.eigenvalues, [10.0], rtol=1e-5)
