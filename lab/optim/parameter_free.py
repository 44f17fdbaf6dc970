"""Named optimizers, part 3: parameter-free step sizes (DoG, DoWG, COCOB).

Contract: as in :mod:`lab.optim.adam_family` -- optax.contrib's names, argument names,
defaults and chain layout, each scaling rule a block with one typed NamedTuple state
whose fields follow optax's (``DoGState``, ``DoWGState``, ``COCOBState``).  The methods
need no tuned step size: ``learning_rate`` (default 1) is only an optional multiplier
or schedule.  Every ``update`` needs ``params`` and raises ValueError without them.

Global quantities (``||x_t - x_0||``, ``||g_t||^2``) are sums over all leaves, taken leaf
by leaf in tree order (the order optax uses, so float64 results agree to the last
bits).  The scalar states are kept in the lowest dtype among the parameters, as in
optax, so float32 parameters give float32 updates.  ``t`` counts steps from 1, ``x_t``
are the parameters the update is computed at and ``g_t`` the incoming gradient.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lab.optim.base import (Optimizer, Params, ScalarOrSchedule, cast_like, check_hyper,
                            check_hypers, check_structure, identity, lowest_dtype, need_params,
                            tree_full_like, tree_norm, tree_scale, tree_sum_of_squares,
                            tree_zeros_like)
from lab.optim.transforms import add_decayed_weights, chain, scale_by_learning_rate

# ------------------------------------------------------------------------ helpers


def _distance(tree_a: Any, tree_b: Any, squared: bool = False) -> jax.Array:
    """``||a - b||`` over all leaves (squared if asked)."""
    sq = tree_sum_of_squares(jax.tree.map(lambda a, b: a - b, tree_a, tree_b))
    return sq if squared else jnp.sqrt(sq)


def _needs_params(where: str, updates, params, **start) -> None:
    """Raise ValueError without ``params``, or if grads or params are not shaped like the
    stored starting point ``start`` (one keyword: its state field name)."""
    need_params(where, params)
    check_structure(where, updates, **start)
    check_structure(where, params, what="params", **start)


def _decay_then(weight_decay, mask, *blocks) -> Optimizer:
    """``add_decayed_weights`` (or the identity when ``weight_decay is None``), then ``blocks``."""
    first = identity() if weight_decay is None else add_decayed_weights(weight_decay, mask)
    return chain(first, *blocks)


# ---------------------------------------------------------------------------- DoG

INIT_STEP_KINDS = ("distance", "learning_rate", "heuristic")


class DoGState(NamedTuple):
    is_init_step: jax.Array  # shape (), bool: no step taken yet
    init_params: Params  # x_0
    max_dist: jax.Array  # shape (): r_bar_{t-1} = max(r_eps, max_{k<t} ||x_k - x_0||)
    sum_sq_norm_grads: jax.Array  # shape (): G_{t-1} = sum_{k<t} ||g_k||^2


def _check_init_step(where: str, init_step) -> tuple[str, Any]:
    if not (isinstance(init_step, tuple) and len(init_step) == 2
            and init_step[0] in INIT_STEP_KINDS):
        raise ValueError(f"{where}: init_step must be a pair (kind, value) with kind one of "
                         f"{INIT_STEP_KINDS}, got init_step={init_step!r}")
    kind, value = init_step
    check_hyper(where, "init_step[1]", value, "(0, inf)")
    return kind, value


def scale_by_dog(init_step, eps=1e-8) -> Optimizer:
    """DoG step size: ``r_bar_t = max(r_bar_{t-1}, ||x_t - x_0||)``,
    ``G_t = G_{t-1} + ||g_t||^2``, ``u_t = r_bar_t / sqrt(G_t + eps) g_t``.

    ``init_step = (kind, value)`` starts it: ``("distance", r)`` sets ``r_bar_0 = r``;
    ``("heuristic", a)`` sets ``r_bar_0 = a (1 + ||x_0||)`` (so ``init`` must see the
    real parameters); ``("learning_rate", eta)`` takes ``eta`` as the first step size
    (and ``r_bar_0 = 0``).

    Reference: Ivgi, Hinder & Carmon, *DoG is SGD's best friend: a parameter-free
    dynamic step size schedule*, ICML 2023 (arXiv:2302.12022)."""
    kind, value = _check_init_step("scale_by_dog", init_step)
    check_hypers("scale_by_dog", eps=eps)

    def init(params):
        dtype = lowest_dtype(params)
        if kind == "distance":
            r_eps = jnp.asarray(value, dtype)
        elif kind == "heuristic":
            norm = tree_norm(params)
            r_eps = cast_like(value, norm) * (1 + norm)
        else:
            r_eps = jnp.zeros([], dtype)
        return DoGState(is_init_step=jnp.asarray(True), init_params=params,
                        max_dist=r_eps.astype(dtype), sum_sq_norm_grads=jnp.zeros([], dtype))

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_dog", updates, params, init_params=state.init_params)
        dist = _distance(state.init_params, params).astype(state.max_dist.dtype)
        max_dist = jnp.maximum(state.max_dist, dist)
        sq = tree_sum_of_squares(updates).astype(state.sum_sq_norm_grads.dtype)
        sum_sq = state.sum_sq_norm_grads + sq
        step = max_dist / jnp.sqrt(sum_sq + cast_like(eps, sum_sq))
        if kind == "learning_rate":
            step = jnp.where(state.is_init_step, cast_like(value, step), step)
        return tree_scale(step, updates), DoGState(
            is_init_step=jnp.asarray(False), init_params=state.init_params,
            max_dist=max_dist, sum_sq_norm_grads=sum_sq)

    return Optimizer(init, update)


def dog(learning_rate: ScalarOrSchedule = 1.0, init_step=("heuristic", 1e-6), eps=1e-8,
        weight_decay=None, mask=None) -> Optimizer:
    """DoG: ``eta_t = max_{k<=t} ||x_k - x_0|| / sqrt(sum_{k<=t} ||g_k||^2 + eps)`` (the max
    also covering ``r_eps`` from ``init_step``), ``u_t = -lr eta_t (g_t + wd x_t)``; weight
    decay (on the ``mask`` leaves) only when ``weight_decay`` is not None.  The authors
    recommend averaging the iterates.

    Reference: Ivgi, Hinder & Carmon, *DoG is SGD's best friend*, ICML 2023."""
    _check_init_step("dog", init_step)
    check_hypers("dog", learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    return _decay_then(weight_decay, mask, scale_by_dog(init_step, eps),
                       scale_by_learning_rate(learning_rate))


# --------------------------------------------------------------------------- DoWG


class DoWGState(NamedTuple):
    init_params: Params  # x_0
    weighted_sq_norm_grads: jax.Array  # shape (): v_{t-1} = sum_{k<t} r_bar_k^2 ||g_k||^2
    estim_sq_dist: jax.Array  # shape (): r_bar_{t-1}^2, the largest squared distance seen


def scale_by_dowg(init_estim_sq_dist=None, eps=1e-4) -> Optimizer:
    """DoWG step size: ``r_bar_t^2 = max(r_bar_{t-1}^2, ||x_t - x_0||^2)``,
    ``v_t = v_{t-1} + r_bar_t^2 ||g_t||^2``, ``u_t = r_bar_t^2 / (sqrt(v_t) + eps) g_t``;
    ``r_bar_0^2`` is ``init_estim_sq_dist``, or ``eps`` when that is None.

    Reference: Khaled, Mishchenko & Jin, *DoWG unleashed: an efficient universal
    parameter-free gradient descent method*, 2023 (arXiv:2305.16284)."""
    check_hyper("scale_by_dowg", "init_estim_sq_dist", init_estim_sq_dist, "(0, inf)")
    check_hypers("scale_by_dowg", eps=eps)
    start = eps if init_estim_sq_dist is None else init_estim_sq_dist

    def init(params):
        dtype = lowest_dtype(params)
        return DoWGState(init_params=params, weighted_sq_norm_grads=jnp.zeros([], dtype),
                         estim_sq_dist=jnp.asarray(start, dtype))

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_dowg", updates, params, init_params=state.init_params)
        dtype = state.estim_sq_dist.dtype
        sq_dist = _distance(state.init_params, params, squared=True).astype(dtype)
        estim = jnp.maximum(state.estim_sq_dist, sq_dist)
        sq_norm = tree_sum_of_squares(updates).astype(dtype)
        weighted = estim * sq_norm + state.weighted_sq_norm_grads
        step = estim / (jnp.sqrt(weighted) + cast_like(eps, weighted))
        return tree_scale(step, updates), DoWGState(
            init_params=state.init_params, weighted_sq_norm_grads=weighted,
            estim_sq_dist=estim)

    return Optimizer(init, update)


def dowg(learning_rate: ScalarOrSchedule = 1.0, init_estim_sq_dist=None, eps=1e-4,
         weight_decay=None, mask=None) -> Optimizer:
    """DoWG: ``eta_t = r_bar_t^2 / (sqrt(sum_{k<=t} r_bar_k^2 ||g_k||^2) + eps)`` with
    ``r_bar_t`` the largest distance from ``x_0`` so far; ``u_t = -lr eta_t (g_t + wd x_t)``
    (weight decay only when ``weight_decay`` is not None).

    Reference: Khaled, Mishchenko & Jin, *DoWG unleashed*, 2023 (arXiv:2305.16284)."""
    check_hyper("dowg", "init_estim_sq_dist", init_estim_sq_dist, "(0, inf)")
    check_hypers("dowg", learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    return _decay_then(weight_decay, mask, scale_by_dowg(init_estim_sq_dist, eps),
                       scale_by_learning_rate(learning_rate))


# -------------------------------------------------------------------------- COCOB


class COCOBState(NamedTuple):
    init_particles: Params  # x_0
    cumulative_gradients: Params  # theta_t = -sum_{k<=t} g_k
    scale: Params  # L_t = max(eps, max_{k<=t} |g_k|)
    subgradients: Params  # G_t = sum_{k<=t} |g_k|
    reward: Params  # R_t = max(R_{t-1} - g_t (x_t - x_0), 0)


def scale_by_cocob(alpha=100.0, eps=1e-8) -> Optimizer:
    """COCOB-Backprop, per coordinate: with ``L_t, G_t, R_t, theta_t`` as in
    :class:`COCOBState`, the next point is
    ``x_{t+1} = x_0 + theta_t (L_t + R_t) / (L_t max(G_t + L_t, alpha L_t))`` and
    ``u_t = x_{t+1} - x_t`` (the sign is built in: chain it with an unflipped scale).

    Reference: Orabona & Tommasi, *Training deep networks without learning rates
    through coin betting*, NeurIPS 2017 (arXiv:1705.07795), Algorithm 2."""
    check_hyper("scale_by_cocob", "alpha", alpha, "[0, inf)")
    check_hypers("scale_by_cocob", eps=eps)

    def init(params):
        zeros = tree_zeros_like(params)
        return COCOBState(init_particles=params, cumulative_gradients=zeros,
                          scale=tree_full_like(params, eps), subgradients=zeros, reward=zeros)

    def leaf(g, x, x0, theta, big_l, big_g, reward):
        big_l = jnp.maximum(big_l, jnp.abs(g))
        big_g = big_g + jnp.abs(g)
        reward = jnp.maximum(reward - g * (x - x0), jnp.zeros_like(reward))
        theta = theta - g
        bet = theta / (big_l * jnp.maximum(big_g + big_l, cast_like(alpha, big_l) * big_l))
        return -x + (x0 + bet * (big_l + reward)), theta, big_l, big_g, reward

    def update(updates, state, params=None, **extra):
        _needs_params("scale_by_cocob", updates, params,
                      init_particles=state.init_particles)
        out = jax.tree.map(leaf, updates, params, *state)
        part = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)
        return part(0), COCOBState(init_particles=state.init_particles,
                                   cumulative_gradients=part(1), scale=part(2),
                                   subgradients=part(3), reward=part(4))

    return Optimizer(init, update)


def cocob(learning_rate: ScalarOrSchedule = 1.0, alpha=100.0, eps=1e-8, weight_decay=0.0,
          mask=None) -> Optimizer:
    """COCOB: coin betting on each coordinate with the gradient ``lr (g_t + wd x_t)``,
    ``x_{t+1} = x_0 + theta_t (L_t + R_t) / (L_t max(G_t + L_t, alpha L_t))``
    (see :func:`scale_by_cocob`); ``learning_rate`` only rescales the gradients.

    Reference: Orabona & Tommasi, *Training deep networks without learning rates
    through coin betting*, NeurIPS 2017."""
    check_hyper("cocob", "alpha", alpha, "[0, inf)")
    check_hypers("cocob", learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    return chain(add_decayed_weights(weight_decay, mask),
                 scale_by_learning_rate(learning_rate, flip_sign=False),
                 scale_by_cocob(alpha, eps))
