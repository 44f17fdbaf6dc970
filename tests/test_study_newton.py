"""The Newton study on a tiny config: Newton's one step on a quadratic, quadratic convergence on
logistic regression against the Lipschitz bound, the spectrum's extremes against the dense
Hessian, the dense-Newton memory slope, load == run, figures, report and config errors."""
import dataclasses

import jax
import numpy as np
import pytest

from lab.store import Store
from studies import newton
from tests.helpers import by_precision

TINY = newton.Config(quad_dimension=8, quad_kappa=10.0, quad_steps=30, quad_adam_lrs=(0.1,), quad_seeds=2,
                     logistic_examples=60, logistic_features=3, logistic_steps=30, logistic_seeds=2,
                     rosenbrock_budget=300, mlp_examples=32, mlp_pool=4, mlp_hidden=3, mlp_steps=4,
                     mlp_eval_every=2, mlp_dampings=(1e-2, 1.0), mlp_cg_iterations=(2,), mlp_learning_rates=(0.3,),
                     seeds=1, cost_dense_widths=(4, 6, 8), cost_matrix_free_widths=(2,), cost_examples=16,
                     cost_repeats=1, spectrum_train_steps=20, spectrum_probes=2, spectrum_iters=20)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    db = Store(tmp_path_factory.mktemp("newton") / "lab.sqlite")
    out = newton.run(TINY, store=db, progress=False)
    yield out, db
    db.close()


def test_helpers_on_exact_sequences():
    k = np.arange(30.0)
    np.testing.assert_allclose(newton.geometric_rate(2.0 * 0.9 ** k, 1e-300), 0.9, rtol=1e-12)
    np.testing.assert_allclose(newton.loglog_slope([10.0, 100.0, 1000.0], [3.0, 300.0, 30000.0]), 2.0, rtol=1e-12)
    e = [0.1]
    for _ in range(4):
        e.append(3.0 * e[-1] ** 2)       # e_{k+1} = 3 e_k^2 exactly
    ratios = newton.quadratic_convergence_ratios(np.array(e), floor=1e-30)
    np.testing.assert_allclose(ratios, 3.0, rtol=1e-12)
    assert np.isnan(newton.quadratic_convergence_ratios(np.array([1.0, 1e-40]), floor=1e-30)).all()


def test_quadratic_newton_one_step_and_gd_rate(results):
    out, _ = results
    q = out["quadratic"]
    assert q["distance"].shape == (3, 2, 30)
    # Newton with lr 1 reaches the minimiser in one step: only rounding error is left
    assert np.all(q["newton_one_step_loss_ratio"] < by_precision(1e-10, 1e-5))
    assert np.all(q["newton_one_step_distance"] < by_precision(1e-10, 1e-5))
    # gradient descent at 2 / (L + mu) contracts by (kappa - 1) / (kappa + 1) per step
    np.testing.assert_allclose(q["measured_rate"]["gd"], (10.0 - 1) / (10.0 + 1), rtol=0.01)


def test_logistic_converges_quadratically(results):
    out, _ = results
    lg = out["logistic"]
    assert lg["errors"].shape == (2, 2, 31)          # methods, starts, iterations 0..30
    assert lg["grad_norm_at_star"] < 1e-12
    ratios = lg["newton_ratios"][np.isfinite(lg["newton_ratios"])]
    assert ratios.size >= 4                           # several steps above the rounding floor
    # every ratio e_{k+1} / e_k^2 obeys the bound L_H / (2 l2) (lambda_min(H) >= l2 everywhere)
    assert np.all(ratios <= lg["bound_global"])
    assert lg["target"] == 1e-10 or not jax.config.jax_enable_x64   # float32 stops near 1e-6
    assert np.all((lg["iterations_to_target"] >= 1) & (lg["iterations_to_target"] <= 8))
    # GD's asymptotic rate is (kappa* - 1) / (kappa* + 1) of H(w*)
    np.testing.assert_allclose(lg["gd_measured_rate"], lg["gd_rate"], rtol=0.02)


def test_rosenbrock(results):
    out, _ = results
    r = out["rosenbrock"]
    assert r["paths"]["gd"].shape == (301, 2)
    np.testing.assert_allclose(r["paths"]["newton"][0], [-1.2, 1.0])
    # Newton with backtracking reaches (1, 1) in tens of steps; GD does not in 300
    assert 5 <= r["iterations"]["newton"] <= 60
    assert r["iterations"]["gd"] == -1 and r["final_distance"]["gd"] > 1e-3


def test_spectrum_matches_dense_hessian(results):
    out, _ = results
    s = out["spectrum"]
    assert s["P"] == newton.param_count(TINY) == 4 * 3 + 3 + 3 * 10 + 10
    for name in ("init", "trained"):
        part = s[name]
        assert part["exact"].shape == (s["P"],)
        np.testing.assert_allclose(part["weights"].sum(), 1.0, rtol=by_precision(1e-10, 1e-6))
        # Lanczos extreme Ritz values match the dense Hessian's extreme eigenvalues
        np.testing.assert_allclose(part["lanczos_top"], part["dense_top"], rtol=1e-6)
        np.testing.assert_allclose(part["lanczos_bottom"], part["dense_bottom"], rtol=1e-6, atol=1e-8)
        # SLQ nodes are Ritz values: inside the spectrum, the top one converged
        assert part["slq_top"] <= part["dense_top"] * (1 + by_precision(1e-10, 1e-5))
        np.testing.assert_allclose(part["slq_top"], part["dense_top"], rtol=1e-6)
    assert s["trained"]["loss"] < s["init"]["loss"]


def test_cost_shapes_and_dense_memory_slope(results):
    out, _ = results
    cost = out["cost"]
    assert set(cost) == {"newton", "solve", "newton_cg", "gd"}
    assert cost["newton"]["P"].tolist() == [75.0 * w + 10 for w in (4, 6, 8)]
    assert np.all(cost["newton"]["seconds"] > 0)
    # dense Newton holds P x P matrices: memory grows as P^2 (XLA's CPU buffer sizes are deterministic)
    assert abs(cost["newton"]["memory_slope"] - 2.0) < 0.3
    assert cost["gd"]["bytes"][0] < cost["newton"]["bytes"][0]


def test_mlp_shapes(results):
    out, _ = results
    m = out["mlp"]
    assert m["damping_final"].shape == (2, 2, 1)
    assert m["cg_final"].shape == (1, 1)
    assert m["first_order_final"].shape == (2, 1, 1)
    assert set(m["curves"]) == {"damped_newton", "saddle_free_newton", "newton_cg", "gd", "adam"}
    assert m["steps"].tolist() == [2, 4]
    # with damping 1 both damped methods are stable and lower the loss below log(10)
    assert np.all(m["damping_final"][:, 1] < np.log(10.0))


def test_load_plot_report(results, tmp_path):
    out, db = results
    again = newton.load(TINY, store=db)
    np.testing.assert_array_equal(again["quadratic"]["distance"], out["quadratic"]["distance"])
    np.testing.assert_array_equal(again["mlp"]["damping_final"], out["mlp"]["damping_final"])
    assert again["sweeps"]["logistic"].sweep_id == out["sweeps"]["logistic"].sweep_id
    paths = newton.plot(out, tmp_path)
    names = {p.name for p in paths}
    for stem in newton.FIGURES:
        assert {f"{stem}.png", f"{stem}.svg"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    text = newton.report(out)
    assert text.startswith("| part | quantity | measured | theory |")
    assert text.count("| Rosenbrock |") == len(newton.ROSENBROCK_METHODS)


@pytest.mark.parametrize("change, words", [
    ({"mlp_dampings": ()}, "mlp_dampings is empty"),
    ({"mlp_steps": 0}, r"mlp_steps( must be a positive integer|=0: must be in \[1, inf\))"),
    ({"mlp_steps": 5, "mlp_eval_every": 2}, "multiple of"),
    ({"mlp_pool": 3}, "mlp_pool must divide 8"),
    ({"quad_kappa": -1.0}, "quad_kappa"),
    ({"cost_dense_widths": (2.5,)}, "integers|whole numbers"),
])
def test_bad_config(change, words):
    with pytest.raises(ValueError, match=words):
        newton.check_config(dataclasses.replace(TINY, **change))
    with pytest.raises(ValueError, match=words):
        newton.run(dataclasses.replace(TINY, **change), store=":memory:", progress=False)


def test_config_fields_are_plain():
    for field in dataclasses.fields(newton.Config):
        assert isinstance(getattr(newton.FULL, field.name), (int, float, str, tuple)), field.name
