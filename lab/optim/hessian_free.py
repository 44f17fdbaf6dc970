"""Matrix-free second-order optimizers: Newton-CG, Gauss-Newton, AdaHessian.

Contract: as in :mod:`lab.optim.newton` (``update(grads, state, params, *, value_fn,
value=None)``, step ``u = -lr d``, optional ``linesearch=``), except that
:func:`gauss_newton` takes ``model_fn`` and ``loss_fn`` instead of ``value_fn``.  These
methods touch the curvature only through products with vectors
(:func:`lab.curvature.hessian_vector_product`,
:func:`~lab.curvature.gauss_newton_vector_product`,
:func:`~lab.curvature.hutchinson_diagonal`), so no ``P x P`` matrix is ever formed.  Iteration caps and probe counts are static; learning rates, damping,
tolerances and betas are data.  Each optimizer's state is one NamedTuple.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from lab.curvature import (gauss_newton_vector_product, hessian_vector_product,
                           hutchinson_diagonal)
from lab.optim.base import (Optimizer, ScalarOrSchedule, cast_like, check_hyper, check_hypers,
                            safe_increment, tree_zeros_like, zero_count)
from lab.optim.linesearch import check_static_int, tree_add_scaled, tree_vdot, tree_where
from lab.optim.newton import (check_damping, check_inputs, finish_step, init_linesearch,
                              learning_rate_at)
from lab.optim.moments import bias_correct, update_moment

# ---------------------------------------------------------------- conjugate gradient


class CGResult(NamedTuple):
    solution: Any  # x, a pytree shaped like b
    iterations: jax.Array  # (), int32: matrix-vector products taken
    negative_curvature: jax.Array  # (), bool: stopped at a direction with p.Ap <= 0
    residual_norm: jax.Array  # (), ||b - A x|| at the last positive-curvature iterate


def truncated_cg(matvec: Callable, b, *, max_iterations: int, tolerance=0.0) -> CGResult:
    """Truncated conjugate gradient for ``A x = b`` from ``x_0 = 0``, on pytrees.

    Stops when ``||r|| <= tolerance ||b||``, after ``max_iterations`` products (static),
    or at the first search direction with ``p^T A p <= 0``; it then returns the current
    iterate, or ``b`` itself if that happens on the first iteration (so a Newton-CG step
    falls back to the gradient step).  ``A`` is never formed.

    Reference: Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, Algorithm 5.2
    with the exits of Algorithm 7.1."""
    check_static_int("truncated_cg", "max_iterations", max_iterations, 1)
    rr0 = tree_vdot(b, b)
    threshold = cast_like(tolerance, rr0) ** 2 * rr0  # stop when r.r <= (tol ||b||)^2

    def keep_going(carry):
        j, _, _, _, _, stop, _ = carry
        return (~stop) & (j < max_iterations)

    def step(carry):
        j, x, r, p, rr, _, _ = carry
        ap = matvec(p)
        curvature = tree_vdot(p, ap)  # p^T A p
        negative = curvature <= 0
        alpha = jnp.where(negative, jnp.zeros_like(rr), rr / jnp.where(negative, 1, curvature))
        x_next = tree_add_scaled(x, alpha, p)
        r_next = tree_add_scaled(r, -alpha, ap)  # r = b - A x
        rr_next = tree_vdot(r_next, r_next)
        p_next = tree_add_scaled(r_next, rr_next / jnp.where(rr > 0, rr, 1), p)
        x_next = tree_where(negative, tree_where(j == 0, b, x), x_next)
        rr_next = jnp.where(negative, rr, rr_next)
        stop = negative | (rr_next <= threshold) | (rr_next == 0)
        return j + 1, x_next, r_next, p_next, rr_next, stop, negative

    start = (jnp.zeros([], jnp.int32), tree_zeros_like(b), b, b, rr0, rr0 == 0,
             jnp.zeros([], bool))
    j, x, _, _, rr, _, negative = lax.while_loop(keep_going, step, start)
    return CGResult(solution=x, iterations=j, negative_curvature=negative,
                    residual_norm=jnp.sqrt(rr))


class NewtonCGState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    cg_iterations: jax.Array  # (), int32: products used by the last CG solve
    negative_curvature: jax.Array  # (), bool: the last solve stopped at negative curvature
    linesearch: Any  # the line search's state (EmptyState without one)


def scale_by_cg_solve(where: str, learning_rate, damping, cg_tolerance, max_cg_iterations: int,
                      linesearch: Optional[Optimizer]) -> Optimizer:
    """The shared step of Newton-CG and Gauss-Newton, with the curvature passed in::

        update(grads, state, params, *, curvature, value_fn, value=None)

    ``curvature(v) -> C v``; ``d`` solves ``(C + damping I) d = g`` by :func:`truncated_cg`
    with the forcing term ``eta = min(cg_tolerance, sqrt(||g||))``; then ``u = -lr d``."""
    check_hypers(where, learning_rate=learning_rate)
    check_damping(where, damping)
    check_hyper(where, "cg_tolerance", cg_tolerance, "[0, inf)")
    check_static_int(where, "max_cg_iterations", max_cg_iterations, 1)

    def init(params):
        return NewtonCGState(count=zero_count(), cg_iterations=jnp.zeros([], jnp.int32),
                             negative_curvature=jnp.zeros([], bool),
                             linesearch=init_linesearch(linesearch, params))

    def update(grads, state, params, *, curvature, value_fn, value=None):
        grad_norm = jnp.sqrt(tree_vdot(grads, grads))
        eta = jnp.minimum(cast_like(cg_tolerance, grad_norm), jnp.sqrt(grad_norm))
        result = truncated_cg(lambda v: tree_add_scaled(curvature(v), damping, v), grads,
                              max_iterations=max_cg_iterations, tolerance=eta)
        updates, ls_state = finish_step(
            result.solution, grads, params, state.linesearch, linesearch=linesearch,
            value_fn=value_fn, value=value,
            learning_rate=learning_rate_at(learning_rate, state.count))
        return updates, NewtonCGState(count=safe_increment(state.count),
                                      cg_iterations=result.iterations,
                                      negative_curvature=result.negative_curvature,
                                      linesearch=ls_state)

    return Optimizer(init, update)


def newton_cg(learning_rate: ScalarOrSchedule = 1.0, damping=0.0, cg_tolerance=0.5, *,
              max_cg_iterations: int = 10, linesearch: Optional[Optimizer] = None) -> Optimizer:
    """Newton-CG (Hessian-free Newton): ``x <- x - lr d``, ``d`` from at most
    ``max_cg_iterations`` CG steps on ``(H + damping I) d = g`` using Hessian-vector
    products only, stopped at ``||r|| <= min(cg_tolerance, sqrt(||g||)) ||g||`` (the
    forcing sequence behind superlinear convergence) or at negative curvature (where the
    step so far, or the gradient step on the first CG iteration, is returned).

    With ``cg_tolerance=0`` and ``max_cg_iterations >= P`` on a positive definite problem
    ``d`` is the exact Newton step.  ``cg_tolerance``, ``damping`` are data;
    ``max_cg_iterations`` is static.

    References: Nocedal & Wright, 2006, Algorithm 7.1 (line search Newton-CG);
    Martens, *Deep learning via Hessian-free optimization*, ICML 2010."""
    where = "newton_cg"
    inner = scale_by_cg_solve(where, learning_rate, damping, cg_tolerance, max_cg_iterations,
                              linesearch)

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        check_inputs(where, grads, params, value_fn)
        return inner.update(grads, state, params, value_fn=value_fn, value=value,
                            curvature=lambda v: hessian_vector_product(value_fn, params, v))

    return Optimizer(inner.init, update)


def gauss_newton(learning_rate: ScalarOrSchedule = 1.0, damping=1e-3, cg_tolerance=0.5, *,
                 max_cg_iterations: int = 20,
                 linesearch: Optional[Optimizer] = None) -> Optimizer:
    """Damped generalised Gauss-Newton: ``x <- x - lr (G + damping I)^{-1} g`` with
    ``G = J^T H_L J``, solved by truncated CG on Gauss-Newton-vector products.

    The objective is split at ``update`` time, because both halves close over the batch::

        update(grads, state, params, *, model_fn, loss_fn, value=None)

    with ``model_fn(params) -> outputs`` (closed over the inputs) and ``loss_fn(outputs)
    -> scalar`` (closed over the targets); the loss is ``loss_fn(model_fn(params))``,
    ``J`` the Jacobian of the outputs and ``H_L`` the Hessian of ``loss_fn`` in them.
    ``G`` is positive semi-definite for a convex ``loss_fn``, so with ``damping > 0`` CG
    meets no negative curvature; for squared error ``G = J^T J`` (Levenberg-Marquardt's
    matrix) and for a linear model ``G = H``.  Stopping rules, static/traced split and
    state (:class:`NewtonCGState`) are those of :func:`newton_cg`.

    References: Schraudolph, *Neural Computation* 14, 2002; Martens, ICML 2010;
    Nocedal & Wright, 2006, sec. 10.3."""
    where = "gauss_newton"
    inner = scale_by_cg_solve(where, learning_rate, damping, cg_tolerance, max_cg_iterations,
                              linesearch)

    def update(grads, state, params=None, *, model_fn=None, loss_fn=None, value=None, **extra):
        if model_fn is None or loss_fn is None:
            raise TypeError(f"{where}.update needs model_fn=(params -> outputs) and "
                            "loss_fn=(outputs -> scalar), both closed over the batch")

        def value_fn(p):
            return loss_fn(model_fn(p))

        def curvature(v):
            return gauss_newton_vector_product(model_fn, loss_fn, params, v)

        check_inputs(where, grads, params, value_fn)
        return inner.update(grads, state, params, value_fn=value_fn, value=value,
                            curvature=curvature)

    return Optimizer(inner.init, update)


# ----------------------------------------------------------------------- AdaHessian


class AdaHessianState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    key: jax.Array  # PRNG key for the next Rademacher probes
    mu: Any  # EMA of g, shaped like params
    nu: Any  # EMA of D^2 (D the Hutchinson diagonal), shaped like params
    linesearch: Any  # the line search's state (EmptyState without one)


def adahessian(learning_rate: ScalarOrSchedule = 0.15, b1=0.9, b2=0.999, eps=1e-4,
               weight_decay=0.0, hessian_power=1.0, *, key: jax.Array, num_samples: int = 1,
               linesearch: Optional[Optimizer] = None) -> Optimizer:
    """AdaHessian: Adam with the squared gradient replaced by a Hutchinson Hessian diagonal.

    ``D_t = z * (H z)`` (``z`` Rademacher), ``m_t = b1 m + (1 - b1) g``,
    ``v_t = b2 v + (1 - b2) D_t^2``, and with bias corrections ``m^ = m_t / (1 - b1^t)``,
    ``v^ = v_t / (1 - b2^t)``:  ``u = -lr (m^ / (v^^(k/2) + eps) + weight_decay x)``,
    ``k = hessian_power``.  ``D_t`` is :func:`lab.curvature.hutchinson_diagonal` with
    ``num_samples`` (static) probes.  The key is kept in the state; each step splits it
    into the next state's key and this step's probe key.  The paper's spatial averaging
    over convolution kernels is not done here.

    Reference: Yao et al., *AdaHessian: an adaptive second order optimizer for machine
    learning*, AAAI 2021, Algorithm 1 (defaults from the authors' code)."""
    where = "adahessian"
    check_hypers(where, learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                 weight_decay=weight_decay)
    check_hyper(where, "hessian_power", hessian_power, "[0, 1]")
    check_static_int(where, "num_samples", num_samples, 1)

    def init(params):
        return AdaHessianState(count=zero_count(), key=key, mu=tree_zeros_like(params),
                               nu=tree_zeros_like(params),
                               linesearch=init_linesearch(linesearch, params))

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        check_inputs(where, grads, params, value_fn)
        next_key, probe_key = jax.random.split(state.key)
        diagonal = hutchinson_diagonal(value_fn, params, num_samples=num_samples, key=probe_key)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), grads, state.mu)
        nu = jax.tree.map(lambda d, v: update_moment(d, v, b2, 2), diagonal, state.nu)
        count = safe_increment(state.count)
        mu_hat, nu_hat = bias_correct(mu, b1, count), bias_correct(nu, b2, count)

        def direction(m, v, p):
            power = cast_like(hessian_power, v) / 2
            return m / (v ** power + cast_like(eps, v)) + cast_like(weight_decay, p) * p

        updates, ls_state = finish_step(
            jax.tree.map(direction, mu_hat, nu_hat, params), grads, params, state.linesearch,
            linesearch=linesearch, value_fn=value_fn, value=value,
            learning_rate=learning_rate_at(learning_rate, state.count))
        return updates, AdaHessianState(count=count, key=next_key, mu=mu, nu=nu,
                                        linesearch=ls_state)

    return Optimizer(init, update)
