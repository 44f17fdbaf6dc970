"""The momentum study on a tiny config: rates measured by the sweep engine against the
closed-form spectral radius, the theory helpers against known closed forms, load == run,
and the figures written."""
import dataclasses

import numpy as np
import pytest

from lab.store import Store
from studies import momentum
from tests.helpers import by_precision

TINY = momentum.Config(dimension=8, heatmap_lrs=5, heatmap_betas=4, heatmap_steps=200, kappas=(10.0, 100.0),
                       kappa_steps=400, quadratic_steps=20, rosenbrock_steps=50, mlp_betas=(0.0, 0.9),
                       mlp_effective_lrs=(0.3,), mlp_steps=20, mlp_eval_every=10, seeds=2)

# Tolerance on log(measured) / log(predicted).  At the tuned heavy-ball and Nesterov settings the
# iteration matrix is defective at the extreme eigenvalues, so the error decays as t * rate^t and a
# finite window measures a slightly slower rate (about 2-3% in the log at these step counts).
LOG_RATE_RTOL = 0.05


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    db = Store(tmp_path_factory.mktemp("momentum") / "lab.sqlite")
    out = momentum.run(TINY, store=db, progress=False)
    yield out, db
    db.close()


def test_closed_forms():
    for kappa in (10.0, 100.0, 1000.0):
        ev = momentum.eigenvalues(kappa, 16)
        root = np.sqrt(kappa)
        hb = momentum.theoretical_rate(*momentum.tuned_settings("heavy_ball", kappa), ev)
        gd = momentum.theoretical_rate(*momentum.tuned_settings("gd", kappa), ev)
        # the defective double eigenvalue makes eigvals accurate to about sqrt(machine epsilon)
        np.testing.assert_allclose(hb, (root - 1) / (root + 1), rtol=1e-6)
        np.testing.assert_allclose(gd, (kappa - 1) / (kappa + 1), rtol=1e-12)
    # heavy ball with beta = 0 is gradient descent; one eigenvalue, real spectrum
    np.testing.assert_allclose(momentum.theoretical_rate(0.5, 0.0, np.array([1.0, 3.0])), 0.5, rtol=1e-12)


def test_measured_rate_of_a_geometric_sequence():
    steps = np.arange(0, 100, 5)
    np.testing.assert_allclose(momentum.measured_rate(3.0 * 0.9 ** steps, steps), 0.9, rtol=1e-12)
    assert np.isnan(momentum.measured_rate(np.full(20, np.nan), steps))


def test_tuned_rates_match_theory(results):
    out, _ = results
    k = out["kappa"]
    assert k["measured"].shape == k["theory"].shape == (2, 3)
    ratio = np.log(k["measured"]) / np.log(k["theory"])
    np.testing.assert_allclose(ratio, 1.0, atol=LOG_RATE_RTOL)
    # gradient descent has no defective mode: its rate is read off almost exactly
    np.testing.assert_allclose(k["measured"][:, 0], k["theory"][:, 0], rtol=by_precision(1e-4, 1e-3))
    # Polyak's closed form
    np.testing.assert_allclose(k["theory"][:, 1], [(np.sqrt(x) - 1) / (np.sqrt(x) + 1) for x in (10, 100)], rtol=1e-6)


def test_heatmap_matches_theory_where_it_converges(results):
    out, _ = results
    h = out["heatmap"]
    assert h["measured"].shape == h["theory"].shape == (2, 5, 4)
    fast = h["theory"] < 0.99                  # rates near 1 need more steps than 200 to show
    assert fast.sum() >= 3
    np.testing.assert_allclose(h["measured"][fast], h["theory"][fast], atol=0.01)
    # every grid point the theory calls unstable was caught diverging
    assert np.all(np.isinf(h["measured"][h["theory"] > 1.01]))


def test_mlp_and_trajectories(results):
    out, _ = results
    m = out["mlp"]
    assert m["final_loss"].shape == (1, 2, 2)
    assert np.all(np.isfinite(m["final_loss"])) and np.all(m["final_loss"] < np.log(10.0))
    t = out["trajectories"]
    assert t["quadratic"]["heavy_ball"].shape == (21, 2)
    assert t["rosenbrock"]["nesterov"].shape == (51, 2)
    # on the 2-D quadratic, Polyak's heavy ball ends closer to the minimum than zig-zagging GD
    assert np.linalg.norm(t["quadratic"]["heavy_ball"][-1]) < np.linalg.norm(t["quadratic"]["gd"][-1])


def test_load_plot_report(results, tmp_path):
    out, db = results
    again = momentum.load(TINY, store=db)
    for part in ("heatmap", "kappa", "mlp"):
        for name, value in out[part].items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(again[part][name], value, err_msg=f"{part}/{name}")
    assert again["sweeps"]["kappa"].sweep_id == out["sweeps"]["kappa"].sweep_id
    paths = momentum.plot(out, tmp_path)
    names = {p.name for p in paths}
    for short in ("rate_heatmap", "kappa", "trajectories", "mlp"):
        assert {f"momentum_{short}.png", f"momentum_{short}.svg"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    text = momentum.report(out)
    assert text.startswith("| kappa |") and text.count("\n| 100 |") == 3


def test_config_fields_are_plain():
    for field in dataclasses.fields(momentum.Config):
        assert isinstance(getattr(momentum.FULL, field.name), (int, float, str, tuple)), field.name
