"""Schedule-free learning: a wrapper that replaces a base optimizer's momentum and its
learning-rate decay by interpolation and averaging.

Three sequences: the base optimizer steps ``z``; ``x`` is a weighted average of the
``z``'s (the point to evaluate); gradients are taken at ``y``, between them::

    y_t = (1 - b1) z_t + b1 x_t
    z_{t+1} = z_t + u_base(grad f(y_t))
    x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1},  c_{t+1} = w_{t+1} / sum_{i <= t+1} w_i

with ``w_t = max_{i <= t} lr_i ^ weight_lr_power``.  The *parameters* are ``y``:
``update`` returns the updates that move ``y_t`` to ``y_{t+1}``, and the state keeps
``z`` (with ``b1``, the weight sum, the step count and the largest learning rate seen,
optax's ``ScheduleFreeState`` field for field); ``x`` is not stored but recomputed as
``x_t = (y_t - (1 - b1) z_t) / b1``, which :func:`schedule_free_eval_params` returns.

Contract: as for every optimizer in :mod:`lab.optim`, with optax.contrib's names,
signatures and defaults (``schedule_free``, ``schedule_free_sgd``,
``schedule_free_adamw``, ``schedule_free_eval_params``).  Reference: Defazio et al.,
*The road less scheduled*, NeurIPS 2024 (arXiv:2405.15682).
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from lab.optim.aliases import sgd
from lab.optim.base import (Optimizer, OptState, Params, ScalarOrSchedule, accepts_extra_args,
                            canonical_dtype, check_hyper, check_hypers, check_structure, like,
                            lowest_dtype, need_params, promoted, safe_increment, tree_cast)
from lab.optim.composite_schedules import warmup_constant_schedule
from lab.optim.transforms import (add_decayed_weights, chain, scale_by_learning_rate,
                                  scale_by_rms)


class ScheduleFreeState(NamedTuple):
    b1: jax.Array  # shape (): the interpolation weight (read by schedule_free_eval_params)
    weight_sum: jax.Array  # shape (): sum_i w_i of the averaging weights so far
    step_count: jax.Array  # shape (), int32: 1 before the first update
    max_lr: jax.Array  # shape (): the largest learning rate seen
    base_optimizer_state: OptState
    z: Params  # the base optimizer's iterate


def schedule_free_eval_params(state: OptState, params: Params) -> Params:
    """The average ``x = (y - (1 - b1) z) / b1`` to evaluate, from a schedule-free state
    and the current parameters ``y``.  Raises ValueError for any other state."""
    b1, z = getattr(state, "b1", None), getattr(state, "z", None)
    if b1 is None or z is None:
        raise ValueError("schedule_free_eval_params: needs the ScheduleFreeState of a "
                         f"schedule-free optimizer, got {type(state).__name__}")
    check_structure("schedule_free_eval_params", params, what="params", z=z)

    def average(y, zi):  # (y - (1 - b1) z) / b1, each operation in its operands' dtype
        x = promoted(jnp.subtract, y, promoted(jnp.multiply, 1.0 - b1, zi))
        return promoted(jnp.divide, x, b1).astype(y.dtype)

    return jax.tree.map(average, params, z)


def schedule_free(base_optimizer, learning_rate: ScalarOrSchedule, b1=0.9,
                  weight_lr_power=2.0, state_dtype=None) -> Optimizer:
    """Make ``base_optimizer`` schedule-free (see the module docstring for the update).

    ``learning_rate`` is the base optimizer's (a constant or a warmup schedule, without
    decay); it only sets the averaging weights ``w_t``.  Switch off the base optimizer's
    momentum (e.g. ``adam(lr, b1=0)``): the interpolation with ``b1`` replaces it.
    ``state_dtype`` is the dtype of ``z`` (default: the parameters').  A schedule is read
    at ``t = 1, 2, ...`` for the weights, while a base optimizer built with the same
    schedule reads it at its own count ``0, 1, ...`` (optax's convention, kept)."""
    check_hypers("schedule_free", learning_rate=learning_rate)
    check_hyper("schedule_free", "b1", b1, "(0, 1]")
    check_hyper("schedule_free", "weight_lr_power", weight_lr_power, "[0, inf)")
    state_dtype = canonical_dtype(state_dtype)
    base_takes_extra = accepts_extra_args(base_optimizer)

    def init(params):
        dtype = lowest_dtype(params)
        # a copy, so that z and the params are distinct buffers (both may be donated)
        z = jax.tree.map(lambda x: x.copy(), tree_cast(params, state_dtype))
        return ScheduleFreeState(b1=jnp.asarray(b1, dtype), weight_sum=jnp.zeros([], dtype),
                                 step_count=jnp.ones([], jnp.int32),
                                 max_lr=jnp.zeros([], dtype),
                                 base_optimizer_state=base_optimizer.init(params), z=z)

    def update(updates, state, params=None, **extra):
        need_params("schedule_free", params)
        check_structure("schedule_free", updates, params=params, z=state.z)
        lr = learning_rate(state.step_count) if callable(learning_rate) else learning_rate
        max_lr = jnp.maximum(state.max_lr, like(lr, state.max_lr))
        next_step_count = safe_increment(state.step_count)
        weight = max_lr ** like(weight_lr_power, max_lr)  # w_{t+1}
        total = state.weight_sum + weight
        ck = jnp.where(  # c_{t+1}; 0 while every learning rate so far is 0
            jnp.logical_or(jnp.isnan(weight), jnp.isnan(total)), jnp.full_like(weight, jnp.nan),
            jnp.nan_to_num(weight / total, nan=0.0, posinf=jnp.inf))
        extra_args = extra if base_takes_extra else {}
        base_updates, base_state = base_optimizer.update(updates, state.base_optimizer_state,
                                                         params, **extra_args)
        z = jax.tree.map(lambda zi, u: promoted(jnp.add, zi, u).astype(zi.dtype), state.z,
                         base_updates)
        # x_t from (y_t, z_t), x_{t+1}, y_{t+1} and the update, in optax's order; each
        # operation in its operands' dtype (y and z differ under state_dtype)
        def average(y, zi):  # x_t = (y_t - (1 - b1) z_t) / b1
            numerator = promoted(jnp.subtract, y, like(1.0 - b1, zi) * zi)
            return numerator / like(b1, numerator)

        prev_x = jax.tree.map(average, params, state.z)
        x = jax.tree.map(lambda xi, zi: promoted(jnp.add, promoted(jnp.multiply, 1.0 - ck, xi),
                                                 promoted(jnp.multiply, ck, zi)),
                         prev_x, z)
        new_params = jax.tree.map(
            lambda xi, zi: promoted(jnp.add, like(b1, xi) * xi, like(1.0 - b1, zi) * zi), x, z)
        new_updates = jax.tree.map(lambda new, y: promoted(jnp.subtract, new, y).astype(y.dtype),
                                   new_params, params)
        return new_updates, ScheduleFreeState(
            b1=state.b1, weight_sum=total, step_count=next_step_count, max_lr=max_lr,
            base_optimizer_state=base_state, z=z)

    return Optimizer(init, update)


def _warmed_up(where: str, learning_rate, warmup_steps: Optional[int]):
    """``learning_rate``, or a linear warmup from 0 to it over ``warmup_steps`` steps."""
    if warmup_steps is None:
        return learning_rate
    if not isinstance(warmup_steps, int) or isinstance(warmup_steps, bool) or warmup_steps < 1:
        raise ValueError(f"{where}: warmup_steps must be None or a positive int, got "
                         f"{warmup_steps!r}")
    return warmup_constant_schedule(init_value=0, peak_value=learning_rate,
                                    warmup_steps=warmup_steps)


def schedule_free_sgd(learning_rate=1.0, warmup_steps: Optional[int] = None, b1=0.9,
                      weight_decay=None, weight_lr_power=2.0, state_dtype=None) -> Optimizer:
    """Schedule-free SGD: ``z_{t+1} = z_t - lr_t (g_t + wd y_t)`` inside
    :func:`schedule_free`, ``lr_t`` warmed up linearly over ``warmup_steps`` if given
    (``weight_decay`` is scaled by the learning rate, as in PyTorch)."""
    check_hypers("schedule_free_sgd", learning_rate=learning_rate, weight_decay=weight_decay)
    learning_rate = _warmed_up("schedule_free_sgd", learning_rate, warmup_steps)
    optimizer = sgd(learning_rate)
    if weight_decay is not None:
        optimizer = chain(add_decayed_weights(weight_decay), optimizer)
    return schedule_free(optimizer, learning_rate=learning_rate, b1=b1,
                         weight_lr_power=weight_lr_power, state_dtype=state_dtype)


def schedule_free_adamw(learning_rate=0.0025, warmup_steps: Optional[int] = None, b1=0.9,
                        b2=0.999, eps=1e-8, weight_decay=0.0, weight_lr_power=2.0,
                        state_dtype=None) -> Optimizer:
    """Schedule-free AdamW: the base step is AdamW without momentum,
    ``z_{t+1} = z_t - lr_t (g_t / (sqrt(v_hat_t) + eps) + wd y_t)`` with
    ``v_t = b2 v_{t-1} + (1 - b2) g_t^2`` (optax's chain: :func:`scale_by_rms` with
    ``eps`` outside the root and bias correction)."""
    check_hypers("schedule_free_adamw", learning_rate=learning_rate, b2=b2, eps=eps,
                 weight_decay=weight_decay)
    learning_rate = _warmed_up("schedule_free_adamw", learning_rate, warmup_steps)
    optimizer = chain(scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
                      add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate))
    return schedule_free(optimizer, learning_rate=learning_rate, b1=b1,
                         weight_lr_power=weight_lr_power, state_dtype=state_dtype)
