import hashlib
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import data

KEY = jax.random.key(0)


def test_digits_file_is_the_recorded_one():
    raw = resources.files("lab").joinpath("datasets/digits.npz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == "b2dab7b501728c22e9119ad76740b2e17c77a231e42d1e592380d90886f1a05e"


def test_digits_shapes_classes_and_scaling():
    x, y = data.load_digits()
    assert x.shape == (1797, 64) and x.dtype == jnp.float32 and y.dtype == jnp.int32
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    counts = np.bincount(np.asarray(y), minlength=10)
    assert counts.tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    raw, _ = data.load_digits(flatten=False, scale=False, dtype=jnp.float64)
    assert raw.shape == (1797, 8, 8, 1) and raw.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(raw).reshape(1797, 64) / 16.0, np.asarray(x, np.float64))
    # pixels are integer counts of "on" pixels in 4x4 blocks: 0..16
    assert set(np.unique(np.asarray(raw))).issubset(set(range(17)))


def test_xor_truth_table():
    x, y = data.xor()
    assert np.asarray(y).tolist() == [int(a) ^ int(b) for a, b in np.asarray(x)]


@pytest.mark.parametrize("gen", [data.two_spirals, data.moons, data.circles])
def test_two_class_generators(gen):
    x, y = gen(KEY, 50)
    assert x.shape == (100, 2) and y.shape == (100,)
    assert np.bincount(np.asarray(y)).tolist() == [50, 50]
    x2, _ = gen(KEY, 50)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))  # pure function of the key


def test_circles_radii():
    x, y = data.circles(KEY, 200, factor=0.3, noise=0.0)
    r = np.linalg.norm(np.asarray(x, np.float64), axis=1)
    np.testing.assert_allclose(r[np.asarray(y) == 0], 1.0, rtol=1e-5)
    np.testing.assert_allclose(r[np.asarray(y) == 1], 0.3, rtol=1e-5)


def test_spirals_radius_bounded():
    x, _ = data.two_spirals(KEY, 100, noise=0.0)
    assert float(jnp.max(jnp.linalg.norm(x, axis=1))) <= 1.0 + 1e-6


def test_blobs_class_means_near_centres():
    x, y = data.blobs(KEY, 3000, centers=3, std=0.5)
    for c in range(3):
        pts = np.asarray(x)[np.asarray(y) == c]
        assert pts.shape[0] == 1000
        assert np.all(pts.std(axis=0) < 0.6)


def test_linear_regression_outlier_fraction():
    x, y, w, b, out = data.linear_regression(KEY, 200, features=3, noise=0.0, outlier_fraction=0.1)
    assert int(out.sum()) == 20
    clean = ~np.asarray(out)
    np.testing.assert_allclose(np.asarray(y)[clean], np.asarray(x @ w + b[None, :])[clean], rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(y - (x @ w + b[None, :]))[~clean] >= 10.0)


def test_function_1d_grid_is_sin():
    x, y = data.function_1d(KEY, 21, grid=True, dtype=jnp.float64)
    np.testing.assert_allclose(np.asarray(y), np.sin(np.asarray(x)), rtol=0, atol=1e-15)
    assert float(x[0, 0]) == pytest.approx(-np.pi) and float(x[-1, 0]) == pytest.approx(np.pi)


def test_quadratic_has_the_requested_spectrum():
    ev = jnp.array([1e-2, 1.0, 3.0, 100.0])
    q = data.quadratic(KEY, ev, dtype=jnp.float64)
    np.testing.assert_allclose(np.linalg.eigvalsh(np.asarray(q.A)), np.asarray(ev), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(jax.grad(q.loss)(q.minimizer)), 0.0, atol=1e-10)
    assert np.allclose(np.asarray(q.A), np.asarray(q.A).T)


def test_teacher_student_shapes_and_determinism():
    x, y, t = data.teacher_student(KEY, 32, d_in=5, d_hidden=7, d_out=2)
    assert x.shape == (32, 5) and y.shape == (32, 2) and t["W1"].shape == (5, 7)
    np.testing.assert_allclose(np.asarray(y), np.asarray(jnp.tanh(x @ t["W1"] / 5 ** 0.5) @ t["W2"] / 7 ** 0.5),
                               rtol=1e-5, atol=1e-6)


def test_split_and_standardize():
    x, y = data.load_digits()
    xtr, ytr, xte, yte = data.train_test_split(KEY, x, y, test_fraction=0.25)
    assert xtr.shape[0] + xte.shape[0] == 1797 and xte.shape[0] == 449
    stats = data.fit_standardizer(xtr)
    z = np.asarray(data.standardize(xtr, stats), np.float64)
    varying = np.asarray(stats.std)[0] != 1.0
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0)[varying], 1.0, rtol=1e-4)


def test_one_hot_and_its_errors():
    oh = data.one_hot(jnp.array([0, 2, 1]), 3)
    np.testing.assert_array_equal(np.asarray(oh), np.eye(3)[[0, 2, 1]])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), found values in \[0, 3\]"):
        data.one_hot(jnp.array([0, 3]), 3)
    with pytest.raises(ValueError, match="integer labels"):
        data.one_hot(jnp.array([0.0, 1.0]), 3)


def test_batch_arithmetic():
    assert data.iterations_per_epoch(200, 5) == 40
    assert data.iterations_per_epoch(201, 5) == 41
    assert data.iterations_per_epoch(201, 5, drop_last=True) == 40
    assert data.iterations_per_epoch(200, 200) == 1


def test_epoch_batches_cover_without_replacement():
    idx = np.asarray(data.epoch_batches(KEY, 200, 5))
    assert idx.shape == (40, 5)
    assert sorted(idx.ravel().tolist()) == list(range(200))
    idx2 = np.asarray(data.epochs_batches(KEY, 23, 5, epochs=3))
    assert idx2.shape == (12, 5)
    for e in range(3):
        assert len(set(idx2[4 * e:4 * e + 4].ravel().tolist())) == 20  # no repeats within an epoch


def test_sample_batches_with_replacement_and_full_batch():
    idx = np.asarray(data.sample_batches(KEY, 10, 8, 100))
    assert idx.shape == (100, 8) and idx.min() >= 0 and idx.max() <= 9
    assert any(len(set(row)) < 8 for row in idx)  # with replacement: repeats happen
    np.testing.assert_array_equal(np.asarray(data.full_batch(7)), np.arange(7)[None])


@pytest.mark.parametrize("bad", [0, 11, -1])
def test_batch_size_errors(bad):
    with pytest.raises(ValueError, match=r"batch_size must lie in \[1, 10\]"):
        data.epoch_batches(KEY, 10, bad)


def test_check_dataset_rejects_bad_training_data():
    x, y = data.load_digits()
    data.check_dataset(x, y, num_classes=10)  # the real data passes
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        data.check_dataset(x.at[3, 5].set(jnp.nan), y, num_classes=10)
    with pytest.raises(ValueError, match="1797 examples but y has shape"):
        data.check_dataset(x, y[:-1])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\), found values in \[0, 9\]"):
        data.check_dataset(x, y, num_classes=9)
    with pytest.raises(ValueError, match="at least one example"):
        data.check_dataset(x[:0])


def test_generator_argument_errors():
    with pytest.raises(ValueError, match="factor"):
        data.circles(KEY, 10, factor=1.5)
    with pytest.raises(ValueError, match="outlier_fraction"):
        data.linear_regression(KEY, 10, outlier_fraction=2.0)
    with pytest.raises(ValueError, match="test_fraction"):
        data.train_test_split(KEY, jnp.zeros((4, 1)), jnp.zeros(4), test_fraction=0.0)
