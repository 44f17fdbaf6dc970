"""MNIST-1D: lab's generator against arrays made by the reference package, and its loader.

``tests/data/mnist1d_reference.npz`` was written once by ``mnist1d.data.make_dataset`` of
the reference package (mnist1d 0.0.2.post1, numpy 2.4.6, scipy 1.17.1; see its
``produced_by`` entry), with the arguments stored in ``args`` (the defaults) and
``variant_args`` (500 examples, ``shuffle_seq=True``, seed 0).  When it was made the two
agreed bit for bit; the tolerance below leaves room for another numpy's rounding.
"""
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from lab import data, mnist1d

FIXTURE = Path(__file__).parent / "data" / "mnist1d_reference.npz"
ATOL = 1e-12  # per entry; the arrays are standardised (entries of order 1)


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


@pytest.fixture(scope="module")
def paper_set():
    return mnist1d.generate()


def generator_args(encoded) -> dict:
    args = json.loads(str(encoded))
    args["padding"] = tuple(args["padding"])
    return args


def test_fixture_holds_the_paper_defaults(reference):
    args = generator_args(reference["args"])
    assert args == {"num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": (36, 60),
                    "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25,
                    "iid_noise_scale": 0.02, "shear_scale": 0.75, "shuffle_seq": False,
                    "final_seq_length": 40, "seed": 42}
    assert mnist1d.Mnist1dArgs(**args) == mnist1d.Mnist1dArgs()


def test_generator_matches_the_reference(reference, paper_set):
    rows = [  # (name, ours, reference, absolute tolerance)
        ("x[:64]", paper_set.x[:64], reference["x"], ATOL),
        ("x_test[:16]", paper_set.x_test[:16], reference["x_test"], ATOL),
        ("t", paper_set.t, reference["t"], ATOL),
        ("row sums of all 4000 x", paper_set.x.sum(axis=1), reference["x_row_sums"], 40 * ATOL),
        ("row sums of all 1000 x_test", paper_set.x_test.sum(axis=1), reference["x_test_row_sums"],
         40 * ATOL),
    ]
    for name, ours, ref, atol in rows:
        assert ours.shape == ref.shape, name
        np.testing.assert_allclose(ours, ref, rtol=0, atol=atol, err_msg=name)
    np.testing.assert_array_equal(paper_set.y[:64], reference["y"])
    np.testing.assert_array_equal(paper_set.y_test[:16], reference["y_test"])
    np.testing.assert_array_equal(np.bincount(paper_set.y, minlength=10), reference["y_counts"])
    np.testing.assert_array_equal(np.bincount(paper_set.y_test, minlength=10), reference["y_test_counts"])


def test_generator_matches_the_reference_off_the_defaults(reference):
    args = generator_args(reference["variant_args"])
    assert args["shuffle_seq"] and args["seed"] == 0 and args["num_samples"] == 500
    ours = mnist1d.generate(**args)
    assert ours.x.shape == (400, 40) and ours.x_test.shape == (100, 40)
    np.testing.assert_allclose(ours.x[:16], reference["variant_x"], rtol=0, atol=ATOL)
    np.testing.assert_array_equal(ours.y[:16], reference["variant_y"])


def test_loader_shapes_dtypes_and_balance(paper_set):
    x, y, x_test, y_test = data.load_mnist1d()
    assert x.shape == (4000, 40) and x_test.shape == (1000, 40)
    assert x.dtype == jnp.float32 and y.dtype == jnp.int32 and y_test.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(x), paper_set.x.astype(np.float32))
    train, test = np.bincount(np.asarray(y), minlength=10), np.bincount(np.asarray(y_test), minlength=10)
    assert train.tolist() == [398, 396, 411, 394, 394, 402, 401, 404, 402, 398]
    assert (train + test).tolist() == [500] * 10  # 500 of each digit, shuffled before the split
    assert train.min() >= 0.9 * 400 and train.max() <= 1.1 * 400
    everything = np.concatenate([paper_set.x, paper_set.x_test])
    assert abs(everything.mean()) < 1e-12 and abs(everything.std() - 1.0) < 1e-12  # standardised
    data.check_dataset(x, y, num_classes=10)


def test_loader_caches_and_keeps_the_float64_values(monkeypatch, paper_set):
    data.load_mnist1d()  # generated here or by an earlier test, cached either way

    def no_generation(*args, **kwargs):
        raise AssertionError("load_mnist1d generated the data again instead of using its cache")

    monkeypatch.setattr(mnist1d, "generate", no_generation)
    x, y, x_test, y_test = data.load_mnist1d(dtype=jnp.float64)
    np.testing.assert_array_equal(np.asarray(x), paper_set.x)
    np.testing.assert_array_equal(np.asarray(y_test), paper_set.y_test)


def test_generator_is_a_pure_function_of_its_arguments():
    a = mnist1d.generate(num_samples=100, seed=5)
    b = mnist1d.generate(num_samples=100, seed=5)
    for field, left, right in zip(a._fields, a, b):
        np.testing.assert_array_equal(left, right, err_msg=field)
    c = mnist1d.generate(num_samples=100, seed=6)
    assert np.abs(a.x - c.x).max() > 0.1
    assert a.x.shape == (80, 40) and a.x_test.shape == (20, 40)


@pytest.mark.parametrize("overrides, message", [
    ({"num_samples": 15}, "num_samples must be a positive multiple of 10"),
    ({"num_samples": 0}, "num_samples must be a positive multiple of 10"),
    ({"train_split": 1.0}, "train_split=1.0 must leave both splits"),
    ({"padding": (10, 5)}, r"padding must satisfy 0 <= low <= high"),
    ({"max_translation": 0}, r"max_translation must lie in \[1, 72\]"),
    ({"max_translation": 73}, r"max_translation must lie in \[1, 72\]"),
    ({"final_seq_length": 1}, "final_seq_length must be >= 2"),
    ({"iid_noise_scale": -0.1}, "iid_noise_scale must be finite and >= 0"),
    ({"seed": -1}, r"seed must lie in \[0, 2\*\*32\)"),
    ({"num_samples": 50.0}, "num_samples must be an integer"),
    ({"noise": 0.1}, r"unknown argument\(s\) \['noise'\]"),
])
def test_bad_arguments_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        mnist1d.generate(**overrides)
    with pytest.raises(ValueError, match=message):
        data.load_mnist1d(**overrides)


def test_templates_start_and_end_at_zero():
    x, t = mnist1d.templates()
    assert x.shape == (10, 12) and t.shape == (12,)
    np.testing.assert_array_equal(x[:, 0], 0.0)
    np.testing.assert_array_equal(x[:, -1], 0.0)  # every drawing starts and ends at height 5
    np.testing.assert_allclose(x.std(axis=1), 1.0 / 6.0, rtol=1e-14)
    assert t[0] == -5 / 6 and t[-1] == 5 / 6


def test_smoothing_and_resampling_against_scipy():
    rng = np.random.RandomState(0)
    for n in (9, 40, 72):
        signal = rng.standard_normal(n)
        np.testing.assert_array_equal(mnist1d.gaussian_smooth(signal),
                                      scipy.ndimage.gaussian_filter(signal, 2.0))
    with pytest.raises(ValueError, match="more than 8 points"):
        mnist1d.gaussian_smooth(np.zeros(8))
    line = np.linspace(-1.0, 3.0, 17)
    np.testing.assert_allclose(mnist1d.resample(line, 5), np.linspace(-1.0, 3.0, 5), rtol=0, atol=1e-15)
