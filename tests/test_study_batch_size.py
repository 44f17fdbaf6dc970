"""The batch-size study on a tiny config: the mini-batch gradient noise against the exact
finite-population formula (within the standard error of the draws), steps to target falling
with batch size, the helpers against closed forms, load == run, figures, bad configs."""
import dataclasses
import math

import jax
import numpy as np
import pytest

from lab import losses
from lab.store import Store
from studies import batch_size

TINY = batch_size.Config(hidden=16, train_size=256, batch_sizes=(1, 4, 16), target_loss=0.1, lr_min=0.02,
                         lr_max=2.0, lr_points=5, seeds=2, budget_min_steps=100, budget_noise=20.0, evals=20,
                         noise_draws=2000, sharpness_batch_sizes=(16,), sharpness_iters=10)

# The mean of ``draws`` squared errors |g_B - G|^2 is off its expectation by a few standard
# errors at most (the sample's own standard deviation / sqrt(draws)); 5 of them is a test that
# fails by chance with probability ~1e-6 per point under a normal approximation.
Z_MAX = 5.0


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    db = Store(tmp_path_factory.mktemp("batch_size") / "lab.sqlite")
    out = batch_size.run(TINY, store=db, progress=False)
    yield out, db
    db.close()


def test_gradient_noise_matches_the_finite_population_formula(results):
    out, _ = results
    n = out["noise"]
    assert n["n"] == 256
    assert tuple(n["batch_sizes"]) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert n["measured"].shape == n["predicted"].shape == n["stderr"].shape == (3, 9)
    partial = n["batch_sizes"] < n["n"]
    # 2000 draws resolve every mean to 10% or better (heavy tails at small B near the target): the check has teeth
    assert np.all(n["stderr"][:, partial] < 0.15 * n["predicted"][:, partial])
    z = np.abs(n["measured"][:, partial] - n["predicted"][:, partial]) / n["stderr"][:, partial]
    assert np.all(z < Z_MAX), z
    # gradient descent (B = N) has no gradient noise; the formula is tr(Sigma) at B = 1
    assert np.all(np.abs(n["measured"][:, ~partial]) < 1e-12 * n["trace_sigma"][:, None])
    np.testing.assert_allclose(n["predicted"][:, 0], n["trace_sigma"], rtol=1e-12)
    np.testing.assert_allclose(n["b_simple"], n["trace_sigma"] / n["grad_sq"], rtol=1e-12)
    # the GD path reached its three loss levels, in order, and the noise scale grew as the loss fell
    assert np.all(n["reached"]) and n["step"][0] == 0 and n["step"][1] < n["step"][2]
    assert n["loss"][2] <= TINY.target_loss < n["loss"][1] < n["loss"][0]
    assert n["b_simple"][2] > n["b_simple"][0]


def test_per_example_gradients_average_to_the_batch_gradient():
    x, y, _, _ = batch_size._digits(TINY)
    net = batch_size._net(TINY)
    params = net.init(jax.random.key(3), (-1, 64))[1]
    per_example = batch_size.per_example_gradients(TINY)(params)
    assert per_example.shape == (256, 64 * 16 + 16 + 16 * 10 + 10)
    batch = np.arange(0, 256, 5)
    xent = losses.softmax_cross_entropy_with_integer_labels
    grads = jax.grad(lambda p: xent(net.apply(p, x[batch]), y[batch]))(params)
    flat = np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in jax.tree.leaves(grads)])
    np.testing.assert_allclose(per_example[batch].mean(axis=0), flat, rtol=1e-4, atol=1e-6)


def test_noise_statistics_on_known_vectors():
    g = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0], [2.0, -3.0]])   # mean (2, 0)
    stats = batch_size.noise_statistics(g)
    assert stats["grad_sq"] == pytest.approx(4.0)
    assert stats["trace_sigma"] == pytest.approx((1 + 1 + 9 + 9) / 4)
    assert stats["b_simple"] == pytest.approx(5.0 / 4.0)
    # every pair of 2 out of 4: the exact mean is the finite-population formula
    mean, err = batch_size.minibatch_noise(stats["gram"], [2, 4], 4000, seed=0)
    predicted = batch_size.finite_population_noise(5.0, [2, 4], 4)
    assert abs(mean[0] - predicted[0]) < Z_MAX * err[0]
    assert predicted[1] == 0.0 and abs(mean[1]) < 1e-12


def test_steps_to_target_fall_with_batch_size(results):
    out, _ = results
    t = out["tuning"]
    assert t["steps_per_run"].shape == (3, 5, 2) and t["median_steps"].shape == (3, 5)
    assert t["tuned_lr"].shape == t["steps"].shape == t["examples"].shape == (3,)
    assert np.all(np.isfinite(t["steps"]))
    # perfect-scaling side: steps strictly fall from B = 1 to 4 to 16
    assert np.all(np.diff(t["steps"]) < 0), t["steps"]
    # the tuned rate does not fall as the batch grows (linear scaling at small B, in its weak form)
    assert np.all(np.diff(t["tuned_lr"]) >= 0), t["tuned_lr"]
    # every measured steps-to-target lies inside its sweep's budget
    assert np.all(t["steps"] <= t["budget"])
    assert t["gap"].shape == (3, 2) and np.all(np.isfinite(t["gap"]))
    g = out["target"]
    assert g["sharpness"].shape == (1, 2) and np.all(g["sharpness"] > 0)


def test_sharpness_sweep_replays_the_tuning_run(results):
    # Same rate, seeds and (seed, step) randomness: the sharpness sweep's final training loss is the
    # tuning sweep's at the same step (up to float32 rounding of differently-sized vmapped batches).
    out, _ = results
    t, g = out["tuning"], out["target"]
    i = TINY.batch_sizes.index(16)
    tuning = out["sweeps"]["tuning"][i]
    step = int(g["steps"][0])
    column = int(np.flatnonzero(tuning.eval_steps == step)[0])
    expected = tuning.curves["eval_train_loss"][0, t["best_index"][i], :, column]
    np.testing.assert_allclose(g["train_loss"][0], expected, rtol=1e-3)


def test_crossing_and_fit_helpers():
    steps = np.arange(10, 210, 10)
    curve = 2.0 * np.exp(-steps / 40.0)                    # reaches 0.1 at 40 ln 20 = 119.8
    np.testing.assert_allclose(batch_size.crossing_steps(curve, steps, 0.1), 40.0 * math.log(20.0), rtol=1e-12)
    assert batch_size.crossing_steps(np.full(20, 0.5), steps, 0.1) == np.inf
    assert batch_size.crossing_steps(np.full(20, np.nan), steps, 0.1) == np.inf
    assert batch_size.crossing_steps(np.full(20, 0.05), steps, 0.1) == 10.0
    sizes = np.array([1, 2, 4, 8, 16, 64, 256])
    s_min, b_noise = batch_size.fit_steps(sizes, batch_size.predicted_steps(sizes, 57.0, 33.0))
    assert s_min == pytest.approx(57.0, rel=1e-10) and b_noise == pytest.approx(33.0, rel=1e-10)
    assert all(math.isnan(v) for v in batch_size.fit_steps([1, 2], [np.inf, 3.0]))


def test_load_plot_report(results, tmp_path):
    out, db = results
    again = batch_size.load(TINY, store=db)
    for part in ("tuning", "target"):
        for name, value in out[part].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(again[part][name], value, err_msg=f"{part}/{name}")
    assert [r.sweep_id for r in again["sweeps"]["tuning"]] == [r.sweep_id for r in out["sweeps"]["tuning"]]
    np.testing.assert_array_equal(again["noise"]["measured"], out["noise"]["measured"])
    paths = batch_size.plot(out, tmp_path)
    names = {p.name for p in paths}
    for stem in batch_size.FIGURES:
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert len(paths) == 8 and all(p.stat().st_size > 0 for p in paths)
    text = batch_size.report(out)
    assert text.startswith("| batch | tuned lr |") and text.count("\n| ") == 3   # one row per batch size
    assert "B_noise" in text and "max |z|" in text


def test_bad_configs_raise():
    bad = {"batch_sizes": (), "sharpness_batch_sizes": (8,), "target_loss": 0.0, "evals": 1, "seeds": 0,
           "lr_min": -1.0, "train_size": 1797, "noise_draws": 1}
    for field, value in bad.items():
        with pytest.raises(ValueError, match=field):
            batch_size.check(dataclasses.replace(TINY, **{field: value}))
    with pytest.raises(ValueError, match="strictly increasing"):
        batch_size.check(dataclasses.replace(TINY, batch_sizes=(4, 1, 16), sharpness_batch_sizes=()))
    with pytest.raises(ValueError, match="batch_sizes"):
        batch_size.check(dataclasses.replace(TINY, batch_sizes=(1, 512), sharpness_batch_sizes=()))
    with pytest.raises(ValueError, match="batch_sizes"):
        batch_size.tuning_specs(dataclasses.replace(TINY, batch_sizes=(), sharpness_batch_sizes=()))


def test_config_fields_are_plain():
    for config in (batch_size.FULL, batch_size.QUICK):
        batch_size.check(config)
    for field in dataclasses.fields(batch_size.Config):
        assert isinstance(getattr(batch_size.FULL, field.name), (int, float, str, tuple)), field.name
