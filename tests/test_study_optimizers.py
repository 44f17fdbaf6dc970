"""The optimizer-comparison study on a tiny config: shapes, the GD rate on the quadratic
against its closed form and the (kappa - 1)/(kappa + 1) bound, the second-order evaluation
counters, load == run, figures, report, and bad configs; plus one step of every optimizer
inside the engine's ``make_step`` with the full configuration's settings."""
import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab import optim, train
from lab.store import Store
from studies import optimizers as study

# Two toy problems (about 1 s of compile per program), three optimizers, two learning
# rates (GD: 0.316 and 3.16, the second above 2 / L = 2 so it must diverge), two seeds.
TINY = study.Config(optimizers=("sgd", "heavy_ball", "newton_cg"), net_optimizers=("sgd",),
                    problems=("quadratic", "rosenbrock"), lr_points=2, lr_decades=1.0, seeds=2,
                    quad_dimension=8, quad_steps=1000, quad_eval_every=10, rosen_steps=200, rosen_eval_every=20)

# The measured rate is a least-squares slope over the later half of 1000 steps; the slowest
# mode (rate 1 - 0.316/100) then outweighs the next (1 - 0.316 x 0.019) by a factor ~20.
RATE_ATOL = 5e-4


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    db = Store(tmp_path_factory.mktemp("optimizers") / "lab.sqlite")
    out = study.run(TINY, store=db, progress=False)
    yield out, db
    db.close()


def test_shapes(results):
    out, _ = results
    assert set(out["problems"]) == {"quadratic", "rosenbrock"}
    q = out["problems"]["quadratic"]
    assert q["optimizers"] == ["sgd", "heavy_ball", "newton_cg"]
    assert q["final"].shape == q["steps_to_target"].shape == (3, 2, 2)
    assert q["best_curves"].shape == (3, 2, 100)
    assert q["best_lr"].shape == q["best_median"].shape == (3,)
    assert sorted(q["rank"]) == [0, 1, 2]
    np.testing.assert_allclose(q["learning_rates"][0], [10 ** -0.5, 10 ** 0.5], rtol=1e-12)


def test_gd_on_the_quadratic_obeys_its_rate(results):
    out, _ = results
    q = out["problems"]["quadratic"]
    sgd = q["optimizers"].index("sgd")
    # lr = 3.16 > 2 / lambda_max = 2: every seed diverges; the best lr is 0.316
    assert q["diverged"][sgd, 1].all() and not q["diverged"][sgd, 0].any()
    assert q["best_lr"][sgd] == pytest.approx(10 ** -0.5)
    th = q["theory"]
    kappa = TINY.quad_kappa
    assert th["gd_bound"] == pytest.approx((kappa - 1) / (kappa + 1))
    row = th["rows"]["sgd"]
    assert row["exact"] == pytest.approx(1 - 10 ** -0.5 / kappa, rel=1e-12)
    # measured = exact rate at this lr, and never faster than the best any GD step size can do
    np.testing.assert_allclose(row["measured_seeds"], row["exact"], atol=RATE_ATOL)
    assert np.all(row["measured_seeds"] >= th["gd_bound"] - RATE_ATOL)
    # heavy ball with beta = 0.9: not faster than its best rate at that beta, nor the Polyak bound
    hb = th["rows"]["heavy_ball"]
    assert th["heavy_ball_beta_bound"] == pytest.approx(math.sqrt(0.9), rel=1e-3)
    assert hb["measured"] >= th["heavy_ball_beta_bound"] - RATE_ATOL >= th["momentum_bound"]


def test_newton_cg_counts_and_speed(results):
    out, _ = results
    q = out["problems"]["quadratic"]
    i, sgd = q["optimizers"].index("newton_cg"), q["optimizers"].index("sgd")
    # each step does between 0 and max_cg_iterations Hessian-vector products, first-order ones none
    assert 0 < q["extra_per_step"][i] <= study.SETTINGS["newton_cg"]["max_cg_iterations"]
    assert q["extra_per_step"][sgd] == 0
    # on a quadratic Newton-CG reaches the target in far fewer steps than GD
    assert q["best_steps"][i] < q["best_steps"][sgd]


def test_steps_to_target_and_medians():
    curves = np.array([[1.0, 0.5, 0.01, 0.001], [1.0, 1.0, 1.0, 1.0], [1.0, np.nan, np.nan, np.nan]])
    steps = np.array([10, 20, 30, 40])
    np.testing.assert_array_equal(study.steps_to_target(curves, steps, 0.05), [30, np.inf, np.inf])
    assert study.median_or_inf(np.array([1.0, np.inf, np.inf])) == np.inf
    assert study.median_or_inf(np.array([1.0, 2.0, np.inf])) == 2.0
    np.testing.assert_allclose(study.measured_rate(3.0 * 0.9 ** steps, steps), 0.9, rtol=1e-12)
    assert study.gd_rate(1.0, [0.01, 1.0]) == pytest.approx(0.99)


def test_load_plot_report(results, tmp_path):
    out, db = results
    again = study.load(TINY, store=db)
    for p in out["problems"]:
        for name in ("final", "best_curves", "best_index", "best_median"):
            np.testing.assert_array_equal(again["problems"][p][name], out["problems"][p][name], err_msg=f"{p}/{name}")
        assert again["sweeps"][p].sweep_id == out["sweeps"][p].sweep_id
    paths = study.plot(out, tmp_path)
    names = {p.name for p in paths}
    for p in ("quadratic", "rosenbrock"):
        assert {f"optimizers_{p}.png", f"optimizers_{p}.svg"} <= names
    assert all(p.stat().st_size > 0 for p in paths)
    text = study.report(out)
    assert text.count("| rank | optimizer |") == 2
    assert text.count("| sgd |") == 3          # two ranking tables and the theory table
    assert "(k-1)/(k+1)" in text


def test_every_optimizer_steps_in_make_step():
    """Every name builds with the full configuration's settings and takes one finite step."""
    assert set(optim.OPTIMIZERS) | {"newton_cg", "lbfgs"} == set(study.FULL.optimizers) == set(study.ALL_OPTIMIZERS)
    assert set(study.FULL.net_optimizers) == set(study.ALL_OPTIMIZERS)
    spec = study.sweep_spec("quadratic", study.FULL)
    for name in study.FULL.optimizers:
        static = {**spec.study.static, "optimizer": name}
        problem = study._make_problem(static)
        opt = study._make_optimizer({**static, "lr_factor": 1.0})
        params = problem.init_params(jax.random.key(0))
        step = train.make_step(problem.loss, opt)
        new, _, loss = step(params, opt.init(params), problem.x, problem.y, jax.random.key(1))
        moved = sum(float(jnp.sum(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(params)))
        assert np.isfinite(float(loss)) and moved > 0, name
        assert jax.tree.structure(new) == jax.tree.structure(params), name


def test_bad_configs():
    with pytest.raises(ValueError, match="unknown optimizer.*'adamm'"):
        study.check_config(dataclasses.replace(TINY, optimizers=("sgd", "adamm")))
    with pytest.raises(ValueError, match="net_optimizers is empty"):
        study.check_config(dataclasses.replace(TINY, net_optimizers=()))
    with pytest.raises(ValueError, match="lr_points.*empty"):
        study.check_config(dataclasses.replace(TINY, lr_points=0))
    with pytest.raises(ValueError, match="unknown problem.*'mnist'"):
        study.check_config(dataclasses.replace(TINY, problems=("mnist",)))
    with pytest.raises(ValueError, match="quadratic.*multiple of eval_every"):
        study.check_config(dataclasses.replace(TINY, quad_steps=15))
    with pytest.raises(ValueError, match="unknown optimizer"):
        study.build_optimizer("adamm", 0.1)
    with pytest.raises(ValueError, match="unknown optimizer"):
        study.run(dataclasses.replace(TINY, optimizers=("adamm",)), store=":memory:", progress=False)


def test_config_fields_are_plain():
    for field in dataclasses.fields(study.Config):
        assert isinstance(getattr(study.FULL, field.name), (int, float, str, tuple)), field.name
    assert study.QUICK.seeds >= 5 and study.FULL.seeds >= 5
