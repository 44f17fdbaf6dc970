"""Initializers: variance formulas, truncation, orthogonality, dtype, determinism, lookup errors."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import init
from tests.helpers import assert_tree_allclose

KEY = jax.random.key(0)
N = 512  # a 512 x 512 draw: 262,144 samples, so the sample variance is within ~0.3% (1 sd)

# (name, initializer, variance it must have on an (N, N) shape)
VARIANCE_TABLE = [
    ("glorot_normal", init.glorot_normal(), 2.0 / (N + N)),
    ("glorot_uniform", init.glorot_uniform(), 2.0 / (N + N)),
    ("xavier_normal", init.xavier_normal(), 2.0 / (N + N)),
    ("xavier_uniform", init.xavier_uniform(), 2.0 / (N + N)),
    ("he_normal", init.he_normal(), 2.0 / N),
    ("he_uniform", init.he_uniform(), 2.0 / N),
    ("kaiming_normal", init.kaiming_normal(), 2.0 / N),
    ("kaiming_uniform", init.kaiming_uniform(), 2.0 / N),
    ("lecun_normal", init.lecun_normal(), 1.0 / N),
    ("lecun_uniform", init.lecun_uniform(), 1.0 / N),
    ("normal(0.1)", init.normal(0.1), 0.1 ** 2),
    ("uniform(0.3)", init.uniform(0.3), 0.3 ** 2 / 3),
    ("orthogonal(2.0)", init.orthogonal(2.0), 2.0 ** 2 / N),
]


@pytest.mark.parametrize("name,initializer,variance", VARIANCE_TABLE, ids=[r[0] for r in VARIANCE_TABLE])
def test_empirical_variance_within_5_percent_and_mean_near_zero(name, initializer, variance):
    w = np.asarray(initializer(KEY, (N, N), jnp.float32), dtype=np.float64)
    assert abs(w.var() / variance - 1.0) < 0.05, f"{name}: var {w.var():.3e}, formula {variance:.3e}"
    # the sample mean of 262,144 draws has sd = std / 512; allow 10 of those
    assert abs(w.mean()) < 10 * math.sqrt(variance) / N


def test_variance_on_a_conv_kernel_uses_hwio_fans():
    shape = (3, 3, 32, 64)  # fan_in = 288, fan_out = 576
    assert init.fans(shape) == (288, 576)
    w = np.asarray(init.he_normal()(KEY, shape, jnp.float64))
    assert abs(w.var() / (2.0 / 288) - 1.0) < 0.05
    w = np.asarray(init.glorot_uniform()(KEY, shape, jnp.float64))
    assert abs(w.var() / (2.0 / (288 + 576)) - 1.0) < 0.05


def test_fans_of_vectors_scalars_and_dense_shapes():
    assert init.fans((7, 3)) == (7, 3)
    assert init.fans((5,)) == (5, 5)
    assert init.fans(()) == (1, 1)


def test_normal_initializers_are_truncated_at_two_corrected_stds():
    w = np.asarray(init.he_normal()(KEY, (N, N), jnp.float64))
    std = math.sqrt(2.0 / N)
    assert np.abs(w).max() <= 2.0 * std / 0.8796256610342398 + 1e-12
    # the plain normal(std) is not truncated: 262,144 draws reach beyond 3 std
    v = np.asarray(init.normal(0.1)(KEY, (N, N), jnp.float64))
    assert np.abs(v).max() > 0.3


def test_uniform_initializers_stay_in_their_interval():
    w = np.asarray(init.he_uniform()(KEY, (N, N), jnp.float64))
    assert np.abs(w).max() <= math.sqrt(6.0 / N)
    assert np.abs(w).max() > 0.99 * math.sqrt(6.0 / N)


def test_zeros_and_constant_are_exact():
    assert_tree_allclose(init.zeros()(KEY, (2, 3)), np.zeros((2, 3), np.float32))
    assert_tree_allclose(init.constant(1.5)(KEY, (4,), jnp.float64), np.full((4,), 1.5))


@pytest.mark.parametrize("shape", [(64, 64), (64, 32), (32, 64), (3, 3, 4, 16)])
def test_orthogonal_has_orthonormal_columns_or_rows(shape):
    q = init.orthogonal()(KEY, shape, jnp.float32)
    assert q.shape == shape and q.dtype == jnp.float32
    m = np.asarray(q).reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-5)


def test_orthogonal_scale_and_rank_error():
    q = np.asarray(init.orthogonal(3.0)(KEY, (8, 8), jnp.float64))
    np.testing.assert_allclose(q.T @ q, 9.0 * np.eye(8), atol=1e-12)
    with pytest.raises(ValueError, match="rank >= 2, got \\(5,\\)"):
        init.orthogonal()(KEY, (5,))


NAMES = sorted(set(init.INITIALIZERS) - {"constant"})


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_every_initializer_returns_the_requested_dtype(dtype):
    for name in NAMES:  # traced only (eval_shape): the dtype is decided at trace time
        out = jax.eval_shape(lambda k: init.get(name)()(k, (6, 4), dtype), KEY)
        assert (out.shape, out.dtype) == ((6, 4), jnp.dtype(dtype)), name


@pytest.mark.parametrize("name", NAMES)
def test_same_key_same_array_other_key_other_array(name):
    initializer = init.get(name)()
    a = initializer(KEY, (N, N), jnp.float32)  # the shape of the variance table: compiled already
    assert_tree_allclose(a, initializer(KEY, (N, N), jnp.float32), rtol=0, atol=0)
    if name != "zeros":
        assert not np.allclose(a, initializer(jax.random.key(1), (N, N), jnp.float32))


def test_default_dtype_is_float32_even_with_x64_enabled():
    assert init.he_normal()(KEY, (3, 3)).dtype == jnp.float32
    assert init.zeros()(KEY, (3,)).dtype == jnp.float32


def test_initializers_work_under_jit():
    f = jax.jit(lambda k: init.glorot_uniform()(k, (5, 7), jnp.float64))
    assert_tree_allclose(f(KEY), init.glorot_uniform()(KEY, (5, 7), jnp.float64))


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown initializer 'he_gaussian'; valid names: .*glorot_uniform.*he_normal"):
        init.get("he_gaussian")
    with pytest.raises(ValueError, match="valid names"):
        init.resolve("bogus")


def test_resolve_accepts_names_and_initializers_and_explains_misuse():
    assert_tree_allclose(init.resolve("he_normal")(KEY, (4, 4)), init.he_normal()(KEY, (4, 4)))
    custom = init.constant(2.0)
    assert init.resolve(custom) is custom
    with pytest.raises(ValueError, match="needs a value"):
        init.resolve("constant")
    with pytest.raises(ValueError, match="pass the initializer he_normal\\(\\)"):
        init.resolve(init.he_normal)
