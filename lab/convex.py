"""Convex problems on real data whose optimum is known to solver precision.

The target: L2-regularised logistic regression on the breast-cancer data
(:func:`lab.data.load_breast_cancer`), every feature standardised over all 569 examples.
With parameters ``theta = (w, b)``, ``w`` (30,) and the bias ``b`` last (theta has 31
entries), logits ``z = X w + b`` and labels ``y`` in {0, 1}:

    f(theta) = (1/n) sum_i [log(1 + exp(z_i)) - y_i z_i] + (l2 / 2) ||w||^2

(the bias is not penalised).  For ``l2 > 0`` ``f`` is strictly convex with a unique
minimiser.  :func:`breast_cancer_logistic_optimum` finds it with SciPy's Newton-CG (float64
NumPy, exact gradient and Hessian) to a gradient norm below 1e-10, so an optimizer's
result can be scored by its distance to the optimum; :func:`breast_cancer_logistic_newton`
finds the same point with NumPy alone (for the benchmark workload, which needs neither SciPy
nor x64).  :func:`breast_cancer_problem` gives the data as float64 JAX arrays and needs
``jax_enable_x64``; :func:`breast_cancer_arrays` gives them as NumPy float64 without it.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lab import data

GRAD_TOL = 1e-10  # the optimum's gradient norm is below this


class LogisticOptimum(NamedTuple):
    params: np.ndarray  # (31,) float64, read-only: w (30,) then the bias
    loss: float         # f(params)
    grad_norm: float    # ||grad f(params)||_2 < GRAD_TOL
    iterations: int     # SciPy's Newton-CG iterations


@functools.cache
def breast_cancer_arrays() -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` as read-only NumPy float64 arrays, whatever ``jax_enable_x64`` says: the
    features (569, 30) standardised over all examples (each column mean 0, std 1) and the
    0/1 labels (569,) (1 = benign)."""
    arrays = data._read_breast_cancer()
    x = np.asarray(arrays["features"], np.float64)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    y = np.asarray(arrays["labels"], np.float64)
    for a in (x, y):
        a.setflags(write=False)
    return x, y


def breast_cancer_problem() -> tuple[jax.Array, jax.Array]:
    """:func:`breast_cancer_arrays` as float64 JAX arrays (needs ``jax_enable_x64``)."""
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("lab.convex works in float64: call jax.config.update('jax_enable_x64', True) first")
    x, y = breast_cancer_arrays()
    return jnp.asarray(x), jnp.asarray(y)


def logistic_loss(params: jax.Array, x: jax.Array, y: jax.Array, l2) -> jax.Array:
    """f(theta) of the module docstring: ``params`` (d + 1,) is ``w`` then the bias."""
    z = x @ params[:-1] + params[-1]
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * l2 * jnp.sum(params[:-1] ** 2)


def breast_cancer_logistic_optimum(l2: float = 1e-2) -> LogisticOptimum:
    """The minimiser of :func:`logistic_loss` on :func:`breast_cancer_problem` for ``l2 > 0``.

    Computed at call time with ``scipy.optimize.minimize(method='Newton-CG')`` from zero, on
    NumPy float64 copies of the data, applied to ``n f`` with its exact gradient
    ``X^T (s - y) + n l2 w`` and Hessian ``X^T diag(s (1 - s)) X + n l2 I`` (no bias
    penalty in either), ``s = sigmoid(z)``; about 15 iterations, a few milliseconds.  Cached
    per ``l2`` for the process.  Raises RuntimeError if SciPy stops with ``||grad f||``
    above ``GRAD_TOL``."""
    l2 = float(l2)
    if not l2 > 0.0:
        raise ValueError(f"l2 must be > 0 (the problem is then strictly convex), got {l2}")
    return _solve(l2)


@functools.lru_cache(maxsize=16)
def _solve(l2: float) -> LogisticOptimum:
    return _newton_cg(l2, *breast_cancer_arrays())


def _sum_objective(l2: float, x: np.ndarray, y: np.ndarray):
    """``n f`` (the sum of the losses), its gradient and its Hessian as NumPy functions of theta."""
    n, d = x.shape
    design = np.hstack([x, np.ones((n, 1))])        # (n, d + 1): the bias is a column of ones
    penalty = n * np.r_[np.full(d, l2), 0.0]        # (d + 1,): n l2, no penalty on the bias

    def total(theta):
        z = design @ theta
        return np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(penalty * theta ** 2)

    def sigmoid(theta):   # 1 / (1 + exp(-z)) without overflow
        return 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))

    def grad(theta):
        return design.T @ (sigmoid(theta) - y) + penalty * theta

    def hess(theta):
        s = sigmoid(theta)
        return (design.T * (s * (1.0 - s))) @ design + np.diag(penalty)

    return total, grad, hess


def _newton_cg(l2: float, x: np.ndarray, y: np.ndarray) -> LogisticOptimum:
    """Minimise ``n f`` (the sum of the losses, not their mean): SciPy's inner CG loop stops
    when the curvature ``p^T H p`` falls below an absolute 3 eps, which the mean's tiny
    gradients reach near the optimum (it stalled at a gradient norm of 8e-8 on ``f``)."""
    from scipy.optimize import minimize

    n, d = x.shape
    total, grad, hess = _sum_objective(l2, x, y)
    result = minimize(total, np.zeros(d + 1), jac=grad, hess=hess, method="Newton-CG",
                      options={"xtol": 1e-14, "maxiter": 200})
    theta = result.x
    grad_norm = float(np.linalg.norm(grad(theta))) / n
    if not grad_norm < GRAD_TOL:
        raise RuntimeError(f"Newton-CG stopped at gradient norm {grad_norm:.3e} > {GRAD_TOL} "
                           f"(l2={l2}): {result.message}")
    theta.setflags(write=False)
    return LogisticOptimum(theta, float(total(theta)) / n, grad_norm, int(result.nit))


@functools.lru_cache(maxsize=16)
def breast_cancer_logistic_newton(l2: float = 1e-2) -> LogisticOptimum:
    """The same minimiser by Newton's method in NumPy alone (no SciPy, no x64): full steps
    shortened by backtracking (Armijo, factor 1/4), from zero until ``||grad f|| < GRAD_TOL``;
    what :mod:`lab.workloads` scores against.  RuntimeError after 100 iterations."""
    n, d = breast_cancer_arrays()[0].shape
    total, grad, hess = _sum_objective(float(l2), *breast_cancer_arrays())
    theta = np.zeros(d + 1)
    for iteration in range(100):
        g = grad(theta)
        if np.linalg.norm(g) / n < GRAD_TOL:
            theta.setflags(write=False)
            return LogisticOptimum(theta, float(total(theta)) / n, float(np.linalg.norm(g)) / n, iteration)
        step, t = np.linalg.solve(hess(theta), g), 1.0
        while total(theta - t * step) > total(theta) - 0.25 * t * g @ step and t > 1e-8:
            t /= 2
        theta = theta - t * step
    raise RuntimeError(f"Newton did not reach a gradient norm of {GRAD_TOL} on the breast-cancer logistic (l2={l2})")
