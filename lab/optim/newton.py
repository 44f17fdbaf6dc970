"""Newton-family optimizers with a dense Hessian: Newton, damped Newton (Levenberg-Marquardt),
saddle-free Newton.

Contract (shared by :mod:`lab.optim.hessian_free` and :mod:`lab.optim.quasi_newton`):
each function returns an :class:`~lab.optim.base.Optimizer` whose ``update`` takes the
objective as a keyword argument, as optax's L-BFGS does::

    update(grads, state, params, *, value_fn, value=None) -> (updates, state)

``value_fn(params) -> scalar`` is the loss closed over the current batch and ``grads``
its gradient at ``params``; ``value`` (optional) is ``value_fn(params)``, saving one
evaluation when a line search or the adaptive damping rule needs it.  Every method
writes its step as ``u = -lr d`` with ``d`` a curvature-preconditioned gradient
(``d = H^{-1} g`` for Newton); an optional ``linesearch=`` (static: any transform with
the :mod:`lab.optim.linesearch` contract, e.g. ``backtracking_linesearch()``) then
scales ``u`` by the step size ``t`` it finds.  Learning rates may be schedules
``count -> lr``.

The methods here form ``H`` with :func:`lab.curvature.hessian_matrix`, so its
memory guard (``HessianTooLarge``, bound ``max_hessian_bytes``, static) applies; they
work on the raveled parameters, in ``ravel_pytree`` order, so all leaves should share
one dtype.  Learning rates and damping are data (traceable); ``adaptive`` is static.
Each optimizer's state is one NamedTuple.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lab.curvature import hessian_matrix
from lab.optim.base import (EmptyState, Optimizer, ScalarOrSchedule, as_float, cast_like,
                            check_hyper, check_hypers, check_structure, safe_increment,
                            tree_zeros_like, zero_count)
from lab.optim.linesearch import need_objective, tree_add_scaled, tree_scale, tree_where

DEFAULT_MAX_HESSIAN_BYTES = 2 * 1024 ** 3  # the dense-Hessian memory bound (2 GiB)

# ------------------------------------------------------------------ shared steps


def learning_rate_at(learning_rate: ScalarOrSchedule, count: jax.Array):
    """The learning rate for this step: ``learning_rate(count)`` for a schedule, else itself."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def init_linesearch(linesearch: Optional[Optimizer], params) -> Any:
    return EmptyState() if linesearch is None else linesearch.init(params)


def finish_step(direction, grads, params, linesearch_state, *, learning_rate, linesearch,
                value_fn, value):
    """``u = -lr d``; then, with a line search, ``u <- t u`` for the ``t`` it chooses."""
    updates = tree_scale(-as_float(learning_rate), direction)
    if linesearch is None:
        return updates, linesearch_state
    value = value_fn(params) if value is None else value
    return linesearch.update(updates, linesearch_state, params, value_fn=value_fn, grad=grads,
                             value=value)


def check_inputs(where: str, grads, params, value_fn) -> None:
    need_objective(where, value_fn)
    if params is None:
        raise TypeError(f"{where}.update needs params (the point where the curvature is taken)")
    check_structure(where, grads, params=params)


def check_damping(where: str, damping) -> None:
    check_hyper(where, "damping", damping, "[0, inf)")


# --------------------------------------------------------------- dense directions


def newton_direction(value_fn: Callable, grads, params, damping=0.0, *,
                     max_hessian_bytes: int = DEFAULT_MAX_HESSIAN_BYTES):
    """``d = (H + damping I)^{-1} g`` with ``H`` the dense Hessian of ``value_fn`` at ``params``.

    ``H`` comes from ``hessian_matrix`` (raises ``HessianTooLarge`` over the bound)."""
    hessian = hessian_matrix(value_fn, params, max_bytes=max_hessian_bytes)  # (P, P)
    g, unravel = ravel_pytree(grads)
    shifted = hessian + cast_like(damping, hessian) * jnp.eye(g.size, dtype=hessian.dtype)
    return unravel(jnp.linalg.solve(shifted, g.astype(hessian.dtype)))


def saddle_free_direction(value_fn: Callable, grads, params, damping=0.0, *,
                          max_hessian_bytes: int = DEFAULT_MAX_HESSIAN_BYTES):
    """``d = (|H| + damping I)^{-1} g`` with ``|H| = Q |Lambda| Q^T`` from ``H = Q Lambda Q^T``."""
    hessian = hessian_matrix(value_fn, params, max_bytes=max_hessian_bytes)  # (P, P)
    g, unravel = ravel_pytree(grads)
    eigenvalues, eigenvectors = jnp.linalg.eigh(hessian)  # Lambda: (P,), Q: (P, P)
    scale = jnp.abs(eigenvalues) + cast_like(damping, eigenvalues)
    coefficients = (eigenvectors.T @ g.astype(hessian.dtype)) / scale  # |Lambda|^{-1} Q^T g
    return unravel(eigenvectors @ coefficients)


# ------------------------------------------------------------------ dense methods


class NewtonState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    linesearch: Any  # the line search's state (EmptyState without one)


def newton(learning_rate: ScalarOrSchedule = 1.0, *, linesearch: Optional[Optimizer] = None,
           max_hessian_bytes: int = DEFAULT_MAX_HESSIAN_BYTES) -> Optimizer:
    """Newton's method: ``x <- x - lr H(x)^{-1} grad f(x)``.

    ``H`` is the dense Hessian, solved by LU; on an indefinite ``H`` the step may point
    uphill (see :func:`damped_newton`, :func:`saddle_free_newton`).  With ``lr = 1`` one
    step reaches the minimiser of a strictly convex quadratic, and near a nondegenerate
    minimiser the error squares each step.

    Reference: Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, sec. 3.3
    (eq. 3.30) and Theorem 3.5."""
    check_hypers("newton", learning_rate=learning_rate)

    def direction(value_fn, grads, params):
        return newton_direction(value_fn, grads, params, max_hessian_bytes=max_hessian_bytes)

    return _dense_method("newton", learning_rate, linesearch, direction)


def _dense_method(where: str, learning_rate, linesearch, direction_fn) -> Optimizer:
    """The shared update of the dense methods whose state is a :class:`NewtonState`:
    ``direction_fn(value_fn, grads, params)`` gives the step, then the learning rate or the
    line search scales it."""

    def init(params):
        return NewtonState(count=zero_count(), linesearch=init_linesearch(linesearch, params))

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        check_inputs(where, grads, params, value_fn)
        direction = direction_fn(value_fn, grads, params)
        updates, ls_state = finish_step(
            direction, grads, params, state.linesearch, linesearch=linesearch, value_fn=value_fn,
            value=value, learning_rate=learning_rate_at(learning_rate, state.count))
        return updates, NewtonState(count=safe_increment(state.count), linesearch=ls_state)

    return Optimizer(init, update)


class DampedNewtonState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    damping: jax.Array  # (), lambda for the next step (constant unless adaptive)
    accepted: jax.Array  # (), bool: whether the last step was taken (always True if fixed)
    linesearch: Any  # the line search's state (EmptyState without one)


def damped_newton(learning_rate: ScalarOrSchedule = 1.0, damping=1e-3, *, adaptive: bool = False,
                  increase_factor=10.0, decrease_factor=0.1, min_damping=1e-12,
                  max_damping=1e12, linesearch: Optional[Optimizer] = None,
                  max_hessian_bytes: int = DEFAULT_MAX_HESSIAN_BYTES) -> Optimizer:
    """Damped Newton / Levenberg-Marquardt: ``x <- x - lr (H + lambda I)^{-1} grad f(x)``.

    As ``lambda -> 0`` this is Newton; as ``lambda -> inf`` the step tends to the gradient
    step ``-(lr / lambda) g``.  With ``adaptive=True`` (static), ``lambda`` lives in the
    state and follows Marquardt's rule: the step is taken only if it lowers the loss,
    ``f(x + u) < f(x)``; then ``lambda <- decrease_factor lambda``, otherwise ``u = 0``
    and ``lambda <- increase_factor lambda``, kept within ``[min_damping, max_damping]``.
    That accept/reject rule is itself the globalisation, so it does not combine with a
    ``linesearch``.  ``damping`` (the initial ``lambda``) and the factors are data.

    References: Levenberg, *Q. Appl. Math.* 2, 1944; Marquardt, *J. SIAM* 11, 1963;
    Nocedal & Wright, 2006, sec. 10.3."""
    where = "damped_newton"
    check_hypers(where, learning_rate=learning_rate)
    check_damping(where, damping)
    check_hyper(where, "increase_factor", increase_factor, "[1, inf)")
    check_hyper(where, "decrease_factor", decrease_factor, "(0, 1]")
    check_hyper(where, "min_damping", min_damping, "[0, inf)")
    check_hyper(where, "max_damping", max_damping, "(0, inf]")
    if adaptive and linesearch is not None:
        raise ValueError(f"{where}: adaptive=True accepts or rejects each step itself; pass "
                         "linesearch=None (or adaptive=False to use the line search)")

    def init(params):
        dtype = jnp.result_type(jax.tree.leaves(params)[0])
        return DampedNewtonState(count=zero_count(), damping=jnp.asarray(damping, dtype),
                                 accepted=jnp.ones([], bool),
                                 linesearch=init_linesearch(linesearch, params))

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        check_inputs(where, grads, params, value_fn)
        lam = state.damping
        direction = newton_direction(value_fn, grads, params, lam,
                                     max_hessian_bytes=max_hessian_bytes)
        lr = learning_rate_at(learning_rate, state.count)
        updates, ls_state = finish_step(direction, grads, params, state.linesearch,
                                        learning_rate=lr, linesearch=linesearch,
                                        value_fn=value_fn, value=value)
        accepted = jnp.ones([], bool)
        if adaptive:
            value = jnp.asarray(value_fn(params) if value is None else value)
            new_value = value_fn(tree_add_scaled(params, 1.0, updates))
            accepted = new_value < value  # false for nan
            updates = tree_where(accepted, updates, tree_zeros_like(updates))
            factor = jnp.where(accepted, cast_like(decrease_factor, lam),
                               cast_like(increase_factor, lam))
            lam = jnp.clip(lam * factor, cast_like(min_damping, lam), cast_like(max_damping, lam))
        return updates, DampedNewtonState(count=safe_increment(state.count), damping=lam,
                                          accepted=accepted, linesearch=ls_state)

    return Optimizer(init, update)


def saddle_free_newton(learning_rate: ScalarOrSchedule = 1.0, damping=0.0, *,
                       linesearch: Optional[Optimizer] = None,
                       max_hessian_bytes: int = DEFAULT_MAX_HESSIAN_BYTES) -> Optimizer:
    """Saddle-free Newton: ``x <- x - lr (|H| + damping I)^{-1} grad f(x)``, where
    ``|H| = Q |Lambda| Q^T`` replaces each eigenvalue of ``H = Q Lambda Q^T`` by its
    absolute value.

    Along a negative-curvature eigenvector Newton's step moves *towards* the saddle; the
    saddle-free step has the opposite sign there and moves away, while it equals Newton's
    step where ``H`` is positive definite.  Use ``damping > 0`` when ``H`` may be singular.
    The state is a :class:`NewtonState`.

    Reference: Dauphin et al., *Identifying and attacking the saddle point problem in
    high-dimensional non-convex optimization*, NeurIPS 2014 (the saddle-free Newton method)."""
    where = "saddle_free_newton"
    check_hypers(where, learning_rate=learning_rate)
    check_damping(where, damping)

    def direction(value_fn, grads, params):
        return saddle_free_direction(value_fn, grads, params, damping,
                                     max_hessian_bytes=max_hessian_bytes)

    return _dense_method(where, learning_rate, linesearch, direction)

