"""Quasi-Newton optimizers: BFGS and L-BFGS, with a line search by default.

Contract: as in :mod:`lab.optim.newton`::

    update(grads, state, params, *, value_fn=None, value=None) -> (updates, state)

These methods never differentiate twice: they estimate the inverse Hessian from the
secant pairs ``s_k = x_k - x_{k-1}``, ``y_k = g_k - g_{k-1}`` seen at successive calls,
so ``value_fn`` is needed only by the line search (``linesearch=None`` drops it).  The
step is ``u = -lr d`` with ``d = H_k g_k`` (``H_k`` the inverse-Hessian estimate), then
scaled by the line search's ``t``.  A pair is stored only if ``s^T y > 0`` (the
curvature condition; a backtracking search does not enforce it, a Wolfe search does),
which keeps ``H_k`` positive definite and ``d`` a descent direction.  Work is done on
the raveled parameters (``ravel_pytree`` order).  ``learning_rate`` is data;
``memory_size`` and ``scale_init_precond`` are static.  Each state is one NamedTuple.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

from lab.curvature import HessianTooLarge
from lab.optim.base import (Optimizer, ScalarOrSchedule, cast_like, check_hypers,
                            check_structure, safe_increment, zero_count)
from lab.optim.linesearch import backtracking_linesearch, check_static_int, need_objective
from lab.optim.newton import (DEFAULT_MAX_HESSIAN_BYTES, finish_step, init_linesearch,
                              learning_rate_at)


def initial_scale(g: jax.Array) -> jax.Array:
    """``min(1, 1/||g||)``: the first step's inverse-Hessian scale, so ``||d_0|| <= 1``
    (optax's choice; the references leave ``H_0`` open)."""
    return jnp.minimum(jnp.ones([], g.dtype), 1 / jnp.linalg.norm(g))


def secant_pair(where: str, state, grads, params, value_fn, linesearch):
    """Raveled ``x, g`` and the pair ``s = x - x_prev``, ``y = g - g_prev``, with
    ``accept``: a pair exists (not the first call), ``s^T y > eps ||s|| ||y||`` (curvature
    that is positive beyond rounding) and both ``s^T y`` and ``y^T y`` are normal floats: a
    pair at the rounding floor, as near convergence in float32, would make ``1 / s^T y`` or
    the scale ``s^T y / y^T y`` infinite and the direction NaN."""
    if linesearch is not None:
        need_objective(where, value_fn)
    if params is None:
        raise TypeError(f"{where}.update needs params (the secant pairs are built from them)")
    check_structure(where, grads, params=params)
    x, unravel = ravel_pytree(params)
    g = ravel_pytree(grads)[0].astype(x.dtype)
    s, y = x - state.params, g - state.grads
    sy = jnp.vdot(s, y)
    info = jnp.finfo(x.dtype)
    floor = jnp.maximum(info.eps * jnp.linalg.norm(s) * jnp.linalg.norm(y), info.tiny)
    accept = (state.count > 0) & (sy > floor) & jnp.isfinite(sy) & (jnp.vdot(y, y) >= info.tiny)
    return x, g, unravel, s, y, sy, accept


# ------------------------------------------------------------------------- BFGS


class BFGSState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    num_pairs: jax.Array  # (), int32: secant pairs accepted so far
    params: jax.Array  # (P,) raveled params at the last call
    grads: jax.Array  # (P,) raveled gradient at the last call
    inverse_hessian: jax.Array  # (P, P) H_k, the inverse-Hessian estimate
    linesearch: Any  # the line search's state (EmptyState without one)


def bfgs(learning_rate: ScalarOrSchedule = 1.0, *,
         linesearch: Optional[Optimizer] = backtracking_linesearch(),
         max_hessian_bytes: int = DEFAULT_MAX_HESSIAN_BYTES) -> Optimizer:
    """BFGS: ``x <- x - t lr H_k g_k`` with the inverse-Hessian update (N&W eq. 6.17)

        H_{k+1} = (I - rho s y^T) H_k (I - rho y s^T) + rho s s^T,   rho = 1 / (y^T s),

    ``H_0 = min(1, 1/||g_0||) I`` for the first step and, before the first update,
    ``H = (s^T y / y^T y) I`` (N&W eq. 6.20).  ``H_k`` is a dense ``P x P`` matrix in the
    state; :class:`~lab.curvature.HessianTooLarge` is raised by ``init`` when it
    would exceed ``max_hessian_bytes``.

    Reference: Nocedal & Wright, *Numerical Optimization*, 2nd ed., 2006, Algorithm 6.1."""
    where = "bfgs"
    check_hypers(where, learning_rate=learning_rate)

    def init(params):
        x = ravel_pytree(params)[0]
        need = x.size * x.size * x.dtype.itemsize
        if need > max_hessian_bytes:
            raise HessianTooLarge(
                f"{where}: the inverse-Hessian estimate for P = {x.size:,} parameters needs "
                f"{need:,} bytes, over max_hessian_bytes = {max_hessian_bytes:,}; use lbfgs")
        return BFGSState(count=zero_count(), num_pairs=zero_count(), params=jnp.zeros_like(x),
                         grads=jnp.zeros_like(x), inverse_hessian=jnp.eye(x.size, dtype=x.dtype),
                         linesearch=init_linesearch(linesearch, params))

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        x, g, unravel, s, y, sy, accept = secant_pair(where, state, grads, params, value_fn,
                                                      linesearch)
        eye = jnp.eye(x.size, dtype=x.dtype)
        h = jnp.where(state.count == 0, initial_scale(g) * eye, state.inverse_hessian)
        rescale = accept & (state.num_pairs == 0)
        h = jnp.where(rescale, (sy / jnp.where(accept, jnp.vdot(y, y), 1)) * eye, h)
        rho = 1 / jnp.where(accept, sy, 1)
        hy = h @ y
        updated = (h - rho * (jnp.outer(s, hy) + jnp.outer(hy, s))
                   + (rho * rho * jnp.vdot(y, hy) + rho) * jnp.outer(s, s))
        h = jnp.where(accept, updated, h)
        updates, ls_state = finish_step(
            unravel(h @ g), grads, params, state.linesearch, linesearch=linesearch,
            value_fn=value_fn, value=value,
            learning_rate=learning_rate_at(learning_rate, state.count))
        return updates, BFGSState(count=safe_increment(state.count),
                                  num_pairs=state.num_pairs + accept.astype(jnp.int32),
                                  params=x, grads=g, inverse_hessian=h, linesearch=ls_state)

    return Optimizer(init, update)


# ----------------------------------------------------------------------- L-BFGS


class LBFGSState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    num_pairs: jax.Array  # (), int32: secant pairs accepted so far
    params: jax.Array  # (P,) raveled params at the last call
    grads: jax.Array  # (P,) raveled gradient at the last call
    diff_params: jax.Array  # (m, P) ring buffer of s_i
    diff_grads: jax.Array  # (m, P) ring buffer of y_i
    rhos: jax.Array  # (m,) 1 / (s_i^T y_i); 0 marks an empty slot
    identity_scale: jax.Array  # () gamma, H_k^0 = gamma I
    linesearch: Any  # the line search's state (EmptyState without one)


def lbfgs_direction(g, diff_params, diff_grads, rhos, identity_scale, newest):
    """``H_k g`` by the two-loop recursion (N&W Algorithm 7.4) over the ring buffer, from
    slot ``newest`` backwards; empty slots (``rho = 0``) do nothing."""
    memory_size = rhos.shape[0]
    order = (newest - jnp.arange(memory_size, dtype=newest.dtype)) % memory_size  # newest -> oldest

    def backward(q, i):
        alpha = rhos[i] * jnp.vdot(diff_params[i], q)
        return q - alpha * diff_grads[i], alpha

    q, alphas = lax.scan(backward, g, order)
    r = identity_scale * q

    def forward(r, i_alpha):
        i, alpha = i_alpha
        beta = rhos[i] * jnp.vdot(diff_grads[i], r)
        return r + (alpha - beta) * diff_params[i], None

    r, _ = lax.scan(forward, r, (order, alphas), reverse=True)  # oldest -> newest
    return r


def lbfgs(learning_rate: ScalarOrSchedule = 1.0, *, memory_size: int = 10,
          scale_init_precond: bool = True,
          linesearch: Optional[Optimizer] = backtracking_linesearch()) -> Optimizer:
    """L-BFGS: ``x <- x - t lr H_k g_k`` with ``H_k g_k`` from the last ``memory_size``
    secant pairs by the two-loop recursion, starting from ``H_k^0 = gamma_k I`` with
    ``gamma_k = s^T y / y^T y`` of the newest pair (N&W eq. 7.20) and
    ``gamma_0 = min(1, 1/||g_0||)``; ``gamma = 1`` if not ``scale_init_precond``.

    Step for step this is ``optax.lbfgs`` given the same line search (the direction
    ``optax.scale_by_lbfgs``, then ``scale(-lr)``, then the search), as long as every pair
    has ``s^T y > 0``; optax also stores pairs that violate it, which can make its
    direction point uphill.  The default line search is :func:`backtracking_linesearch`;
    pass ``optax.scale_by_zoom_linesearch(...)`` for optax's default.

    References: Liu & Nocedal, *Math. Programming* 45, 1989; Nocedal & Wright, 2006,
    Algorithms 7.4 and 7.5."""
    where = "lbfgs"
    check_hypers(where, learning_rate=learning_rate)
    check_static_int(where, "memory_size", memory_size, 1)

    def init(params):
        x = ravel_pytree(params)[0]
        buffer = jnp.zeros((memory_size, x.size), x.dtype)
        return LBFGSState(count=zero_count(), num_pairs=zero_count(), params=jnp.zeros_like(x),
                          grads=jnp.zeros_like(x), diff_params=buffer, diff_grads=buffer,
                          rhos=jnp.zeros(memory_size, x.dtype),
                          identity_scale=jnp.ones([], x.dtype),
                          linesearch=init_linesearch(linesearch, params))

    def update(grads, state, params=None, *, value_fn=None, value=None, **extra):
        x, g, unravel, s, y, sy, accept = secant_pair(where, state, grads, params, value_fn,
                                                      linesearch)
        slot = state.num_pairs % memory_size
        diff_params = jnp.where(accept, state.diff_params.at[slot].set(s), state.diff_params)
        diff_grads = jnp.where(accept, state.diff_grads.at[slot].set(y), state.diff_grads)
        rhos = jnp.where(accept, state.rhos.at[slot].set(1 / jnp.where(accept, sy, 1)),
                         state.rhos)
        num_pairs = state.num_pairs + accept.astype(jnp.int32)
        if scale_init_precond:
            gamma = jnp.where(accept, sy / jnp.where(accept, jnp.vdot(y, y), 1),
                              state.identity_scale)
            gamma = jnp.where(state.count == 0, initial_scale(g), gamma)
        else:
            gamma = state.identity_scale
        direction = lbfgs_direction(g, diff_params, diff_grads, rhos, gamma, num_pairs - 1)
        updates, ls_state = finish_step(
            unravel(direction), grads, params, state.linesearch, linesearch=linesearch,
            value_fn=value_fn, value=value,
            learning_rate=learning_rate_at(learning_rate, state.count))
        return updates, LBFGSState(
            count=safe_increment(state.count), num_pairs=num_pairs, params=x, grads=g,
            diff_params=diff_params, diff_grads=diff_grads, rhos=rhos,
            identity_scale=cast_like(gamma, state.identity_scale), linesearch=ls_state)

    return Optimizer(init, update)
