"""Moment transforms: the building blocks that keep running moments of the gradient.

Contract: as for every block in :mod:`lab.optim.transforms` (import them from there),
each function returns an :class:`~lab.optim.base.Optimizer` ``(init, update)`` whose
state is one typed NamedTuple holding parameter-shaped buffers (and a step count where
a bias correction needs one), with optax's field names and order.  ``update`` checks
that the incoming updates have the buffers' pytree structure.  Formulas write ``g`` for
the incoming update and ``t`` for the step count after this update (1 on the first
call), and act elementwise.

* :func:`trace` (momentum), :func:`ema`, :func:`scale_by_rss` (AdaGrad),
  :func:`scale_by_rms` (RMSProp), :func:`scale_by_stddev` (centred RMSProp);
* the leaf helpers :func:`update_moment` and :func:`bias_correct`, which
  :mod:`lab.optim.scale_rules` and :mod:`lab.optim.hessian_free` reuse.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lab.optim.base import (Optimizer, Params, as_float, canonical_dtype, cast_like, check_hypers,
                            check_structure, safe_increment, same_dtype, tree_cast,
                            tree_full_like, tree_zeros_like, zero_count)

# ------------------------------------------------------------------- leaf helpers

# a buffer in its own dtype (``accumulator_dtype``, ``mu_dtype``) meets the gradient in
# the promoted dtype; the name :mod:`lab.optim.scale_rules` imports
_common_dtype = same_dtype


def update_moment(g: jax.Array, m: jax.Array, decay, order: int) -> jax.Array:
    """EMA of the ``order``-th power: ``(1 - decay) g^order + decay m``."""
    g, m = same_dtype(g, m)
    return cast_like(1 - decay, g) * g**order + cast_like(decay, m) * m


def bias_correct(moment: Any, decay, count: jax.Array) -> Any:
    """Adam's bias correction of a whole tree: ``m / (1 - decay^t)``.

    ``1 - decay^t`` is formed in the hyperparameter's precision, then cast per leaf."""
    decay = as_float(decay)
    correction = 1 - decay ** count.astype(decay.dtype)
    return jax.tree.map(lambda m: m / cast_like(correction, m), moment)


# ------------------------------------------------------------------------ moments


class TraceState(NamedTuple):
    trace: Params  # v, shaped like params


def trace(decay, nesterov: bool = False, accumulator_dtype=None) -> Optimizer:
    """Momentum: ``v_t = g_t + decay v_{t-1}``; ``u_t = v_t`` (heavy ball) or
    ``u_t = g_t + decay v_t`` (Nesterov).

    References: Polyak, *Some methods of speeding up the convergence of iteration
    methods*, 1964; Sutskever et al., *On the importance of initialization and momentum
    in deep learning*, ICML 2013."""
    check_hypers("trace", decay=decay)
    dtype = canonical_dtype(accumulator_dtype)

    def step(g, v):
        g, v = same_dtype(g, v)
        return g + cast_like(decay, v) * v

    def init(params):
        return TraceState(trace=tree_zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        check_structure("trace", updates, trace=state.trace)
        new_trace = jax.tree.map(step, updates, state.trace)
        updates = jax.tree.map(step, updates, new_trace) if nesterov else new_trace
        return updates, TraceState(trace=tree_cast(new_trace, dtype))

    return Optimizer(init, update)


class EmaState(NamedTuple):
    count: jax.Array  # shape (), int32
    ema: Params  # m, shaped like params


def ema(decay, debias: bool = True, accumulator_dtype=None) -> Optimizer:
    """Exponential moving average: ``m_t = (1 - decay) g_t + decay m_{t-1}``;
    ``u_t = m_t / (1 - decay^t)`` if ``debias`` else ``m_t``.

    Reference: Kingma & Ba, *Adam*, ICLR 2015 (the debiasing)."""
    check_hypers("ema", decay=decay)
    dtype = canonical_dtype(accumulator_dtype)

    def init(params):
        return EmaState(count=zero_count(), ema=tree_zeros_like(params, dtype))

    def update(updates, state, params=None, **extra):
        check_structure("ema", updates, ema=state.ema)
        new_ema = jax.tree.map(lambda g, m: update_moment(g, m, decay, 1), updates, state.ema)
        count = safe_increment(state.count)
        updates = bias_correct(new_ema, decay, count) if debias else new_ema
        return updates, EmaState(count=count, ema=tree_cast(new_ema, dtype))

    return Optimizer(init, update)


class ScaleByRssState(NamedTuple):
    sum_of_squares: Params  # s, shaped like params


def scale_by_rss(initial_accumulator_value=0.1, eps=1e-7) -> Optimizer:
    """AdaGrad scaling: ``s_t = s_{t-1} + g_t^2``; ``u_t = g_t / sqrt(s_t + eps)``
    (0 where ``s_t = 0``).

    Reference: Duchi, Hazan & Singer, *Adaptive subgradient methods*, JMLR 2011."""
    check_hypers("scale_by_rss", initial_accumulator_value=initial_accumulator_value, eps=eps)

    def init(params):
        return ScaleByRssState(sum_of_squares=tree_full_like(params, initial_accumulator_value))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_rss", updates, sum_of_squares=state.sum_of_squares)
        sum_sq = jax.tree.map(lambda g, s: g * g + s, updates, state.sum_of_squares)
        inv = lambda s: jnp.where(s > 0, lax.rsqrt(s + cast_like(eps, s)), jnp.zeros_like(s))
        updates = jax.tree.map(lambda g, s: inv(s) * g, updates, sum_sq)
        return updates, ScaleByRssState(sum_of_squares=sum_sq)

    return Optimizer(init, update)


class ScaleByRmsState(NamedTuple):
    nu: Params  # EMA of g^2


class ScaleByRmsWithCountState(NamedTuple):
    count: jax.Array  # shape (), int32
    nu: Params  # EMA of g^2


def _inverse_root(v, eps, eps_in_sqrt: bool):
    if eps_in_sqrt:
        return lax.rsqrt(v + cast_like(eps, v))
    return 1 / (jnp.sqrt(v) + cast_like(eps, v))


def scale_by_rms(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True,
                 bias_correction: bool = False) -> Optimizer:
    """RMSProp scaling: ``v_t = decay v_{t-1} + (1 - decay) g_t^2``;
    ``u_t = g_t / sqrt(v_t + eps)`` (or ``/(sqrt(v_t) + eps)``), with ``v_t`` divided by
    ``1 - decay^t`` first if ``bias_correction``.

    Reference: Hinton, *Neural Networks for Machine Learning*, lecture 6e, 2012."""
    check_hypers("scale_by_rms", decay=decay, eps=eps, initial_scale=initial_scale)

    def init(params):
        nu = tree_full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=zero_count(), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_rms", updates, nu=state.nu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, decay, 2), updates, state.nu)
        if bias_correction:
            count = safe_increment(state.count)
            nu_hat = bias_correct(nu, decay, count)
        else:
            nu_hat = nu
        updates = jax.tree.map(lambda g, v: _inverse_root(v, eps, eps_in_sqrt) * g, updates, nu_hat)
        if bias_correction:
            return updates, ScaleByRmsWithCountState(count=count, nu=nu)
        return updates, ScaleByRmsState(nu=nu)

    return Optimizer(init, update)


class ScaleByRStdDevState(NamedTuple):
    mu: Params  # EMA of g
    nu: Params  # EMA of g^2


class ScaleByRStdDevWithCountState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Params  # EMA of g
    nu: Params  # EMA of g^2


def scale_by_stddev(decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True,
                    bias_correction: bool = False) -> Optimizer:
    """Centred RMSProp scaling: ``m_t, v_t`` = EMAs of ``g, g^2`` with rate ``decay``;
    ``u_t = g_t / sqrt(v_t - m_t^2 + eps)`` (bias-corrected moments if asked).

    Reference: Graves, *Generating sequences with recurrent neural networks*, 2013, eq. 38."""
    check_hypers("scale_by_stddev", decay=decay, eps=eps, initial_scale=initial_scale)

    def init(params):
        mu, nu = tree_zeros_like(params), tree_full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=zero_count(), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_stddev", updates, mu=state.mu, nu=state.nu)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, decay, 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, decay, 2), updates, state.nu)
        if bias_correction:
            count = safe_increment(state.count)
            mu_hat, nu_hat = bias_correct(mu, decay, count), bias_correct(nu, decay, count)
        else:
            mu_hat, nu_hat = mu, nu
        updates = jax.tree.map(lambda g, m, v: _inverse_root(v - m * m, eps, eps_in_sqrt) * g,
                               updates, mu_hat, nu_hat)
        if bias_correction:
            return updates, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return updates, ScaleByRStdDevState(mu=mu, nu=nu)

    return Optimizer(init, update)
