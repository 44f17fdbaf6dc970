"""The opt-in sharpness metric: exact on a quadratic, vmapped over runs, off by default."""
import dataclasses

import jax.numpy as jnp
import numpy as np

from lab import optim
from lab.sweep import Problem, Study, SweepSpec, plan_sweep, run_sweep

RNG = np.random.RandomState(3)
X = RNG.randn(48, 5) * np.array([3.0, 1.0, 0.5, 0.2, 0.1])   # float64, well separated spectrum
Y = X @ RNG.randn(5) + 0.1 * RNG.randn(48)


def loss(params, xb, yb, key):
    """Least squares: 0.5 * mean((x w + b - y)^2); its Hessian is [x 1]^T [x 1] / n everywhere."""
    return 0.5 * jnp.mean(jnp.square(xb @ params["w"] + params["b"] - yb))


STUDY = Study("least_squares", lambda static: Problem(lambda key: {"w": jnp.zeros(5), "b": jnp.zeros(())}, loss, X, Y),
              lambda c: optim.sgd(c["learning_rate"]), hyperparameters={"learning_rate": 0.01},
              static={"batch_size": 16}, description={"data": "48 x 5 least squares"})


def spec(**overrides):
    settings = dict(seeds=2, steps=20, eval_every=10, chunk_steps=20, runs_per_device=4)
    settings.update(overrides)
    return SweepSpec(STUDY, {"learning_rate": [0.001, 0.01, 0.03]}, **settings)


def test_sharpness_is_the_top_hessian_eigenvalue_of_the_fixed_batch():
    result = run_sweep(spec(sharpness_iters=20, sharpness_batch=32), store=":memory:", progress=False)
    a = np.concatenate([X[:32], np.ones((32, 1))], axis=1)       # the first 32 training examples
    exact = np.linalg.eigvalsh(a.T @ a / 32)[-1]
    sharp = result.curves["sharpness"]
    assert sharp.shape == (3, 2, 2) and sharp.dtype == np.float64
    np.testing.assert_allclose(sharp, exact, rtol=1e-6)         # every run, every evaluation
    whole = np.concatenate([X, np.ones((48, 1))], axis=1)       # a batch larger than the set: all of it
    bigger = run_sweep(spec(sharpness_iters=6, sharpness_batch=1000), store=":memory:", progress=False)
    np.testing.assert_allclose(bigger.curves["sharpness"], np.linalg.eigvalsh(whole.T @ whole / 48)[-1], rtol=1e-6)


def test_sharpness_is_off_by_default_and_keeps_old_fingerprints():
    plain = run_sweep(spec(), store=":memory:", progress=False)
    assert "sharpness" not in plain.curves
    base = plan_sweep(spec())
    assert "sharpness" not in base.config
    on = plan_sweep(spec(sharpness_iters=20))
    assert on.fingerprint != base.fingerprint and on.config["sharpness"] == {"iters": 20, "batch": 256}
    assert plan_sweep(dataclasses.replace(spec(), sharpness_batch=8)).fingerprint == base.fingerprint
