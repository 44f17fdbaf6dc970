"""Learning-rate-free optimizers: Prodigy, D-Adaptation AdamW and Mechanic.

Contract: as for every optimizer in :mod:`lab.optim` -- an
:class:`~lab.optim.base.Optimizer` ``(init, update)`` with optax's name, signature,
defaults and state layout (``optax.contrib.prodigy``, ``dadapt_adamw``, ``mechanize``),
so the states correspond leaf by leaf.  Each keeps scalar state besides its
parameter-shaped buffers: an estimate ``d`` of the distance to the solution (Prodigy,
D-Adaptation) or a scale ``s`` per beta (Mechanic), built from sums over *all* leaves.
Those sums run leaf by leaf in tree order, each leaf reduced as optax reduces it
(:func:`~lab.optim.base.tree_vdot`, :func:`~lab.optim.base.tree_sum`), so float64 runs
match optax to rounding.  Scalar state has the lowest dtype among the parameters
(:func:`~lab.optim.base.lowest_dtype`), as in optax.
``learning_rate`` here is a multiplier (1.0 by default) or a schedule of it; every
method ends with ``p <- p + u``.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lab.optim.base import (Optimizer, OptState, Params, ScalarOrSchedule, Updates,
                            accepts_extra_args, as_float, cast_like, check_hyper, check_hypers,
                            check_structure, like, lowest_dtype, need_params, promoted,
                            safe_increment, tree_norm, tree_sum, tree_vdot, tree_zeros_like,
                            zero_count)

# ------------------------------------------------------------------------ helpers


def _bias_correction(beta1, beta2, count: jax.Array) -> jax.Array:
    """Adam's step-size correction ``sqrt(1 - b2^t) / (1 - b1^t)``, in the betas' precision."""
    # lax.pow(float, int32), the primitive optax's ``beta ** count`` lowers to under jit
    return (1 - lax.pow(as_float(beta2), count)) ** 0.5 / (1 - lax.pow(as_float(beta1), count))


def _check_betas(where: str, betas) -> tuple:
    beta1, beta2 = betas
    check_hyper(where, "betas[0]", beta1, "[0, 1)")
    check_hyper(where, "betas[1]", beta2, "[0, 1)")
    return beta1, beta2


def _need_params(where: str, updates, params) -> None:
    need_params(where, params)
    check_structure(where, updates, params=params)


def _distance_step(where: str, updates, state, params, learning_rate, beta1, beta2):
    """The start of a Prodigy or D-Adaptation update: check the inputs, then return the
    distance estimate ``d``, the step count ``t`` after this step and the step
    ``a_t = d lr_t sqrt(1 - b2^t) / (1 - b1^t)``, formed as optax forms it (the bias
    correction in the betas' precision, ``a_t`` in ``d``'s dtype)."""
    _need_params(where, updates, params)
    check_structure(where, updates, exp_avg=state.exp_avg)
    d, count = state.estim_lr, safe_increment(state.count)
    sched = learning_rate(state.count) if callable(learning_rate) else learning_rate
    dlr = promoted(jnp.multiply, promoted(jnp.multiply, d, sched),
                   _bias_correction(beta1, beta2, count))
    return d, count, cast_like(dlr, d)


# ------------------------------------------------------------------------ Prodigy


class ProdigyState(NamedTuple):
    exp_avg: Updates  # m: EMA of d g
    exp_avg_sq: Updates  # v: EMA of (d g)^2
    grad_sum: Updates  # s: beta3-discounted sum of d lr_t d g / d0
    params0: Params  # x0: the parameters at init
    estim_lr: jax.Array  # shape (): d, the distance estimate (never decreases)
    numerator_weighted: jax.Array  # shape (): r, beta3-discounted sum of d lr_t <g, x0 - x>
    count: jax.Array  # shape (), int32: steps taken so far


def prodigy(learning_rate: ScalarOrSchedule = 1.0, betas=(0.9, 0.999), beta3=None, eps=1e-8,
            estim_lr0=1e-6, estim_lr_coef=1.0, weight_decay=0.0,
            safeguard_warmup: bool = False) -> Optimizer:
    """Prodigy: AdamW on ``d g`` whose step ``d lr_t`` adapts the distance estimate ``d``::

        a_t = d lr_t sqrt(1 - b2^t) / (1 - b1^t)
        m_t = b1 m + (1 - b1) d g;  v_t = b2 v + (1 - b2) (d g)^2
        s_t = b3 s + a_t d g / d0;  r_t = b3 r + (d / d0) a_t <g, x0 - x>
        d <- max(d, coef r_t / ||s_t||_1);  u_t = -wd a_t x - a_t m_t / (sqrt(v_t) + d eps)

    (the new ``d`` in the last line; ``b3 = sqrt(b2)`` by default;
    ``safeguard_warmup=True`` uses ``d`` for ``a_t`` in ``s_t``).

    Reference: Mishchenko & Defazio, *Prodigy: an expeditiously adaptive parameter-free
    learner*, ICML 2024 (arXiv:2306.06101)."""
    beta1, beta2 = _check_betas("prodigy", betas)
    check_hypers("prodigy", learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    check_hyper("prodigy", "beta3", beta3, "[0, 1)")
    check_hyper("prodigy", "estim_lr0", estim_lr0, "(0, inf)")
    check_hyper("prodigy", "estim_lr_coef", estim_lr_coef, "[0, inf)")
    if beta3 is None:
        beta3 = beta2 ** 0.5

    def init(params):
        dtype = lowest_dtype(params)
        return ProdigyState(tree_zeros_like(params), tree_zeros_like(params),
                            tree_zeros_like(params), params, jnp.asarray(estim_lr0, dtype),
                            jnp.zeros([], dtype), zero_count())

    def update(updates, state, params=None, **extra):
        d, count, dlr = _distance_step("prodigy", updates, state, params, learning_rate,
                                       beta1, beta2)
        dg = jax.tree.map(lambda g: cast_like(d, g) * g, updates)
        param_diff = jax.tree.map(lambda p0, p: p0 - p, state.params0, params)
        numerator = cast_like(tree_vdot(updates, param_diff), d)  # <g, x0 - x>
        exp_avg = jax.tree.map(lambda m, x: like(beta1, m) * m + like(1 - beta1, x) * x,
                               state.exp_avg, dg)
        exp_avg_sq = jax.tree.map(lambda v, x: like(beta2, v) * v + like(1 - beta2, x) * x * x,
                                  state.exp_avg_sq, dg)
        step = d if safeguard_warmup else dlr
        grad_sum = jax.tree.map(
            lambda s, x: like(beta3, s) * s + cast_like(step, x) * x / like(estim_lr0, x),
            state.grad_sum, dg)
        weighted = like(beta3, d) * state.numerator_weighted
        weighted = weighted + (d / like(estim_lr0, d)) * dlr * numerator
        denominator = cast_like(tree_sum(jax.tree.map(jnp.abs, grad_sum)), d)
        d_new = jnp.maximum(d, like(estim_lr_coef, d) * weighted / denominator)

        def move(m, v, p):  # -wd a_t p - a_t m / (sqrt(v) + d eps), as optax groups it
            return (cast_like(like(-weight_decay, dlr) * dlr, p) * p
                    - cast_like(dlr, m) * m / (jnp.sqrt(v) + cast_like(d_new * like(eps, d), v)))

        new_updates = jax.tree.map(move, exp_avg, exp_avg_sq, params)
        return new_updates, ProdigyState(exp_avg, exp_avg_sq, grad_sum, state.params0, d_new,
                                         weighted, count)

    return Optimizer(init, update)


# ------------------------------------------------------------- D-Adaptation AdamW


class DAdaptAdamWState(NamedTuple):
    exp_avg: Updates  # m: EMA of d lr_t g
    exp_avg_sq: Updates  # v: EMA of g^2
    grad_sum: Updates  # s: sqrt(b2)-EMA of d lr_t g
    estim_lr: jax.Array  # shape (): d, the distance estimate (never decreases)
    numerator_weighted: jax.Array  # shape (): r, sqrt(b2)-EMA of d lr_t <g, s / (sqrt(v) + eps)>
    count: jax.Array  # shape (), int32: steps taken so far


def dadapt_adamw(learning_rate: ScalarOrSchedule = 1.0, betas=(0.9, 0.999), eps=1e-8,
                 estim_lr0=1e-6, weight_decay=0.0) -> Optimizer:
    """D-Adaptation AdamW: AdamW whose step ``a_t = d lr_t sqrt(1 - b2^t) / (1 - b1^t)``
    grows with a lower bound ``d`` on the distance to the solution (``c = sqrt(b2)``)::

        r_t = c r + (1 - c) a_t <g, s / (sqrt(v) + eps)>      (s, v before this step)
        m_t = b1 m + (1 - b1) a_t g;  v_t = b2 v + (1 - b2) g^2;  s_t = c s + (1 - c) a_t g
        d <- max(d, r_t / ((1 - c) ||s_t||_1));  u_t = -wd a_t x - m_t / (sqrt(v_t) + eps)

    Reference: Defazio & Mishchenko, *Learning-rate-free learning by D-adaptation*,
    ICML 2023 (arXiv:2301.07733)."""
    beta1, beta2 = _check_betas("dadapt_adamw", betas)
    check_hypers("dadapt_adamw", learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    check_hyper("dadapt_adamw", "estim_lr0", estim_lr0, "(0, inf)")
    sb2 = beta2 ** 0.5

    def init(params):
        dtype = lowest_dtype(params)
        return DAdaptAdamWState(tree_zeros_like(params), tree_zeros_like(params),
                                tree_zeros_like(params), jnp.asarray(estim_lr0, dtype),
                                jnp.zeros([], dtype), zero_count())

    def update(updates, state, params=None, **extra):
        d, count, dlr = _distance_step("dadapt_adamw", updates, state, params, learning_rate,
                                       beta1, beta2)
        s_weighted = jax.tree.map(lambda s, v: s / (jnp.sqrt(v) + like(eps, v)),
                                  state.grad_sum, state.exp_avg_sq)
        numerator = cast_like(tree_vdot(updates, s_weighted), d)

        def ema_of_step(decay):  # decay x + ((1 - decay) a_t) g
            return lambda x, g: like(decay, x) * x + cast_like(like(1 - decay, dlr) * dlr, g) * g

        exp_avg = jax.tree.map(ema_of_step(beta1), state.exp_avg, updates)
        exp_avg_sq = jax.tree.map(lambda v, g: like(beta2, v) * v + like(1 - beta2, g) * g * g,
                                  state.exp_avg_sq, updates)
        grad_sum = jax.tree.map(ema_of_step(sb2), state.grad_sum, updates)
        grad_sum_l1 = cast_like(tree_sum(jax.tree.map(jnp.abs, grad_sum)), d)
        weighted = like(sb2, d) * state.numerator_weighted + like(1 - sb2, d) * dlr * numerator
        d_new = jnp.maximum(d, weighted / (like(1 - sb2, d) * grad_sum_l1))

        def move(m, v, p):  # -wd a_t p - m / (sqrt(v) + eps)
            decay = cast_like(like(-weight_decay, dlr) * dlr, p)
            return decay * p - m / (jnp.sqrt(v) + like(eps, v))

        new_updates = jax.tree.map(move, exp_avg, exp_avg_sq, params)
        return new_updates, DAdaptAdamWState(exp_avg, exp_avg_sq, grad_sum, d_new, weighted,
                                             count)

    return Optimizer(init, update)


# ----------------------------------------------------------------------- Mechanic


class MechanicState(NamedTuple):
    base_optimizer_state: OptState
    count: jax.Array  # shape (), int32: steps taken so far
    r: jax.Array  # shape (num_betas,): discounted reward per beta
    m: jax.Array  # shape (num_betas,): discounted max of |h|
    v: jax.Array  # shape (num_betas,): discounted sum of h^2
    s: jax.Array  # shape (num_betas,): the scale per beta; the step is sum(s) Delta
    x0: Params  # the parameters at the first update


def mechanize(base_optimizer, weight_decay=1e-2, eps=1e-8, s_init=1e-6,
              num_betas: int = 6) -> Optimizer:
    """Mechanic: learn the scale ``S = sum_j s_j`` of a base optimizer's summed updates,
    ``x_{t+1} = x0 - S_{t+1} Delta_t`` with ``Delta_t = Delta_{t-1} - u_base`` (so with
    ``S = 1`` it is the base optimizer).  With ``g' = g + wd S ||g|| / (||x|| + eps) x``
    and ``h = <g', Delta_{t-1}>``, per ``beta_j = 1 - 0.1^j``::

        m_j = max(beta_j m_j, |h| + eps);  v_j = beta_j^2 v_j + h^2
        r_j = beta_j r_j + clip(h, -m_j, m_j) s_j          (m_j before this step)
        s_j = ((s_init / n) m_j + max(r_j, 0)) / (sqrt(v_j) + eps)

    ``Delta_{t-1} = (x0 - x_t) / (S_{t-1} + eps)`` is recomputed, not stored.  Wrap a base
    optimizer with learning rate 1 (or a schedule peaking at 1).

    Reference: Cutkosky, Defazio & Mehta, *Mechanic: a learning rate tuner*, NeurIPS 2023
    (arXiv:2306.00144)."""
    check_hypers("mechanize", weight_decay=weight_decay, eps=eps)
    check_hyper("mechanize", "s_init", s_init, "(0, inf)")
    if not isinstance(num_betas, int) or isinstance(num_betas, bool) or num_betas < 1:
        raise ValueError(f"mechanize: num_betas must be a Python int >= 1 (it fixes the state's "
                         f"shape), got {num_betas!r}")
    base_takes_extra = accepts_extra_args(base_optimizer)

    def init(params):
        dtype = lowest_dtype(params)
        zeros = jnp.zeros([num_betas], dtype)
        return MechanicState(base_optimizer_state=base_optimizer.init(params),
                             count=zero_count(), r=zeros, m=zeros, v=zeros,
                             s=jnp.ones([num_betas], dtype) * cast_like(s_init, zeros), x0=params)

    def update(updates, state, params=None, **extra):
        _need_params("mechanize", updates, params)
        check_structure("mechanize", updates, x0=state.x0)
        extra_args = extra if base_takes_extra else {}
        base_updates, base_state = base_optimizer.update(updates, state.base_optimizer_state,
                                                         params, **extra_args)
        # start from the parameters of the first update (they may differ from init's)
        x0 = lax.cond(state.count == 0, lambda: params, lambda: state.x0)
        s_sum = jnp.sum(state.s)
        grad_norm = cast_like(tree_norm(updates), s_sum)
        param_norm = cast_like(tree_norm(params), s_sum)

        def add_weight_decay(g, p):  # g + wd S ||g|| / (||x|| + eps) x
            return g + cast_like(like(weight_decay, s_sum) * s_sum * grad_norm
                                 / (param_norm + like(eps, s_sum)), p) * p

        updates = jax.tree.map(add_weight_decay, updates, params)
        delta_prev = jax.tree.map(  # Delta_{t-1} = (x0 - x_t) / (S + eps)
            lambda x, x_0: (x_0 - x) / cast_like(s_sum + like(eps, s_sum), x), params, x0)
        delta = jax.tree.map(lambda dp, u: dp - u.astype(dp.dtype), delta_prev, base_updates)
        h = cast_like(tree_vdot(updates, delta_prev), s_sum)
        clipped_h = lax.clamp(-state.m, jnp.ones_like(state.m) * h, state.m)
        betas = jnp.array([1.0 - 0.1 ** j for j in range(1, num_betas + 1)], dtype=state.s.dtype)
        m = jnp.maximum(betas * state.m, jnp.abs(h) + like(eps, h))
        v = betas ** 2 * state.v + h ** 2
        r = betas * state.r + clipped_h * state.s
        wealth = like(s_init / num_betas, m) * m + jnp.maximum(0.0, r)
        s = wealth / (jnp.sqrt(v) + like(eps, v))
        new_params = jax.tree.map(lambda x_0, dl: x_0 - cast_like(jnp.sum(s), dl) * dl, x0, delta)
        new_updates = jax.tree.map(lambda new, x: new - x, new_params, params)
        return new_updates, MechanicState(base_optimizer_state=base_state, count=safe_increment(
            state.count), r=r, m=m, v=v, s=s, x0=x0)

    return Optimizer(init, update)
