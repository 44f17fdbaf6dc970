"""Line searches as gradient transformations.

Contract: a line search is an :class:`~lab.optim.base.Optimizer` placed *last* in an
optimizer.  It receives the proposed update ``d`` (already signed and scaled, so that
``params + d`` is the full step) and returns ``t d`` for a step size ``t`` it chooses::

    update(d, state, params, *, value_fn, grad, value=None, **extra) -> (t d, state)

``value_fn(params) -> scalar`` is the objective (closed over the batch), ``grad`` its
gradient at ``params`` and ``value`` its value there (evaluated when ``None``).  The
Newton-family optimizers of :mod:`lab.optim.newton` and :mod:`lab.optim.quasi_newton`
accept any transform with this signature as ``linesearch=`` and pass it these keywords,
so optax's ``scale_by_backtracking_linesearch`` and ``scale_by_zoom_linesearch`` plug in
unchanged.

The vector-space operations on pytrees that the second-order methods use
(:func:`~lab.optim.base.tree_vdot`, ``tree_add_scaled``, ``tree_scale``, ``tree_where``)
are defined in :mod:`lab.optim.base` and importable from here.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lab.optim.base import (Optimizer, cast_like, check_hyper, check_static_int,
                            check_structure, tree_add_scaled, tree_scale, tree_vdot, tree_where)

# ------------------------------------------------------------------------ helpers


def need_objective(where: str, value_fn) -> None:
    """Raise a TypeError that says how to call ``update`` when the objective is missing."""
    if value_fn is None:
        raise TypeError(f"{where}.update needs the objective: call "
                        f"update(grads, state, params, value_fn=f) with f(params) -> scalar "
                        f"(the loss closed over the batch)")


# ------------------------------------------------------------------ backtracking


class BacktrackingLinesearchState(NamedTuple):
    step_size: jax.Array  # (), the accepted t; 0 when no trial met the Armijo condition
    value: jax.Array  # (), f(params + t d) at the accepted t (f(params) when t = 0)
    num_evaluations: jax.Array  # (), int32: trial points evaluated by the last search
    sufficient_decrease: jax.Array  # (), bool: whether the Armijo condition held


def backtracking_linesearch(initial_step_size=1.0, c=1e-4, decrease_factor=0.5, *,
                            max_backtracking_steps: int = 30) -> Optimizer:
    """Backtracking (Armijo) line search: the first ``t`` in
    ``t0, rho t0, rho^2 t0, ...`` (at most ``max_backtracking_steps`` reductions) with

        f(x + t d) <= f(x) + c t <grad f(x), d>,

    returning the update ``t d``.  If no trial meets the condition (``d`` is not a
    descent direction, or the cap is too small), ``t = 0``: a search never increases
    the objective, and ``state.sufficient_decrease`` records the failure.

    ``initial_step_size`` (``t0``), ``c`` and ``decrease_factor`` (``rho``) are data and
    may be traced; ``max_backtracking_steps`` is static.  Each search starts afresh at
    ``t0`` (the textbook rule); it runs in a ``lax.while_loop`` that stops at the first
    accepted trial.  Whenever the search succeeds this is
    ``optax.scale_by_backtracking_linesearch(max_backtracking_steps, slope_rtol=c,
    decrease_factor=rho, increase_factor=inf, max_learning_rate=t0)``; when it fails,
    optax keeps the last (failed) trial step instead of 0.

    Reference: Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, Algorithm 3.1
    and eq. (3.4)."""
    where = "backtracking_linesearch"
    check_hyper(where, "initial_step_size", initial_step_size, "(0, inf)")
    check_hyper(where, "c", c, "(0, 1)")
    check_hyper(where, "decrease_factor", decrease_factor, "(0, 1)")
    check_static_int(where, "max_backtracking_steps", max_backtracking_steps, 0)

    def init(params):
        leaves = jax.tree.leaves(params)
        dtype = jnp.result_type(leaves[0]) if leaves else jnp.float32
        return BacktrackingLinesearchState(
            step_size=jnp.zeros([], dtype), value=jnp.full([], jnp.inf, dtype),
            num_evaluations=jnp.zeros([], jnp.int32), sufficient_decrease=jnp.ones([], bool))

    def update(updates, state, params=None, *, value_fn=None, grad=None, value=None, **extra):
        need_objective(where, value_fn)
        if grad is None or params is None:
            raise TypeError(f"{where}.update needs params and grad= (the gradient of value_fn "
                            f"at params) to form the slope <grad, d>")
        check_structure(where, updates, params=params, grad=grad)
        value = jnp.asarray(value_fn(params) if value is None else value)
        slope = tree_vdot(grad, updates).astype(value.dtype)  # <g, d>, negative for descent
        c_ = cast_like(c, value)

        def keep_going(carry):
            evaluations, _, _, accepted = carry
            return (~accepted) & (evaluations <= max_backtracking_steps)

        def trial(carry):
            evaluations, t, _, _ = carry
            t = jnp.where(evaluations > 0, t * cast_like(decrease_factor, t), t)
            new_value = jnp.asarray(value_fn(tree_add_scaled(params, t, updates)), value.dtype)
            accepted = new_value <= value + c_ * t * slope  # false for nan
            return evaluations + 1, t, new_value, accepted

        start = (jnp.zeros([], jnp.int32), cast_like(initial_step_size, value), value,
                 jnp.zeros([], bool))
        evaluations, t, new_value, accepted = lax.while_loop(keep_going, trial, start)
        t = jnp.where(accepted, t, jnp.zeros_like(t))
        new_state = BacktrackingLinesearchState(
            step_size=t, value=jnp.where(accepted, new_value, value),
            num_evaluations=evaluations, sufficient_decrease=accepted)
        # a rejected step is exactly zero, even for a non-finite direction (0 * nan = nan)
        moved = jax.tree.map(lambda d: jnp.where(accepted, d, jnp.zeros_like(d)), tree_scale(t, updates))
        return moved, jax.tree.map(lambda new, old: new.astype(old.dtype), new_state, state)

    return Optimizer(init, update)


__all__ = ["BacktrackingLinesearchState", "backtracking_linesearch", "tree_vdot",
           "tree_add_scaled", "tree_scale", "tree_where"]

