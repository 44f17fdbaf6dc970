"""Named optimizers, part 4: later relatives of Adam (ADOPT, AdEMAMix, MADGRAD).

Contract: as in :mod:`lab.optim.adam_family` -- optax.contrib's names, argument names,
defaults and chain layout; each scaling rule is a block with one typed NamedTuple
state whose fields follow optax's (ADOPT reuses ``ScaleByAdamState``).  Hyperparameters
are data (Python numbers, arrays or tracers); ``b3`` and ``alpha`` of AdEMAMix may also
be schedules of the step count.  ``m_t = b1 m_{t-1} + (1 - b1) g_t``,
``v_t = b2 v_{t-1} + (1 - b2) g_t^2``, ``x_hat = x_t / (1 - b^t)`` (``t`` counted from
1) and every method ends with ``p <- p + u``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from lab.optim.base import (Optimizer, Params, ScalarOrSchedule, as_float, canonical_dtype,
                            cast_like, check_hyper, check_hypers, check_structure,
                            is_python_number, need_params, promoted, safe_increment,
                            same_dtype, tree_cast, tree_zeros_like, zero_count)
from lab.optim.moments import bias_correct, update_moment
from lab.optim.scale_rules import ScaleByAdamState
from lab.optim.transforms import add_decayed_weights, chain, scale_by_learning_rate




# -------------------------------------------------------------------------- ADOPT


def fourth_root(count: jax.Array) -> jax.Array:
    """ADOPT's default clipping bound ``t^(1/4)`` of the step count (0 on the first call)."""
    return jnp.asarray(count, float) ** 0.25


def scale_by_adopt(b1=0.9, b2=0.9999, eps=1e-6, mu_dtype=None, *, nesterov: bool = False,
                   use_clipping: bool = True,
                   clip_value_fn: Callable[[jax.Array], jax.Array] = fourth_root) -> Optimizer:
    """ADOPT direction: normalise by the *previous* second moment, then average,
    ``m_t = b1 m_{t-1} + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps), c(t-1))``,
    ``v_t = b2 v_{t-1} + (1 - b2) g_t^2``, ``u_t = m_t`` (Nesterov:
    ``b1 m_t + (1 - b1) clip(...)``); ``c = clip_value_fn`` bounds ``|.|`` if
    ``use_clipping``.  The first call only sets ``v_1 = g_1^2`` (``u_1 = 0``).  ``m`` is
    kept in ``mu_dtype``; the direction is returned in the gradient's dtype.

    Reference: Taniguchi et al., *ADOPT: modified Adam can converge with any beta_2
    with the optimal rate*, NeurIPS 2024."""
    check_hypers("scale_by_adopt", b1=b1, b2=b2, eps=eps)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        return ScaleByAdamState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                                nu=tree_zeros_like(params))

    def normalised(g, v, bound):
        g, v = same_dtype(g, v)
        x = g / jnp.maximum(jnp.sqrt(v), cast_like(eps, v))
        if bound is None:
            return x
        return jnp.clip(x, -cast_like(bound, x), cast_like(bound, x))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_adopt", updates, mu=state.mu, nu=state.nu)
        started = state.count > 0
        b1_t = jnp.where(started, as_float(b1), 1.0)  # b1 = 1: m stays 0 on the first call
        b2_t = jnp.where(started, as_float(b2), 0.0)  # b2 = 0: v_1 = g_1^2
        nu = jax.tree.map(lambda g, v: update_moment(g, v, b2_t, 2), updates, state.nu)
        bound = clip_value_fn(state.count) if use_clipping else None
        steps = jax.tree.map(lambda g, v: normalised(g, v, bound), updates, state.nu)
        mu = jax.tree.map(lambda x, m: update_moment(x, m, b1_t, 1), steps, state.mu)
        new = (jax.tree.map(lambda x, m: update_moment(x, m, b1_t, 1), steps, mu)
               if nesterov else mu)
        updates = jax.tree.map(lambda u, g: u.astype(g.dtype), new, updates)
        return updates, ScaleByAdamState(count=safe_increment(state.count),
                                         mu=tree_cast(mu, mu_dtype), nu=nu)

    return Optimizer(init, update)


def adopt(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.9999, eps=1e-6, mu_dtype=None, *,
          nesterov: bool = False, use_clipping: bool = True,
          clip_value_fn: Callable[[jax.Array], jax.Array] = fourth_root) -> Optimizer:
    """ADOPT: ``m_t = b1 m_{t-1} + (1 - b1) clip(g_t / max(sqrt(v_{t-1}), eps), (t-1)^(1/4))``,
    ``u_t = -lr m_t``, then ``v_t = b2 v_{t-1} + (1 - b2) g_t^2`` (see :func:`scale_by_adopt`).

    Reference: Taniguchi et al., *ADOPT: modified Adam can converge with any beta_2 with
    the optimal rate*, NeurIPS 2024."""
    check_hypers("adopt", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    return chain(scale_by_adopt(b1=b1, b2=b2, eps=eps, mu_dtype=mu_dtype, nesterov=nesterov,
                                use_clipping=use_clipping, clip_value_fn=clip_value_fn),
                 scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------- AdEMAMix


class ScaleByAdemamixState(NamedTuple):
    count: jax.Array  # shape (), int32: steps taken (bias correction of m1 and nu)
    count_m2: jax.Array  # shape (), int32: steps taken (argument of the b3/alpha schedules)
    m1: Params  # fast EMA of g (rate b1)
    m2: Params  # slow EMA of g (rate b3), never bias-corrected
    nu: Params  # EMA of g^2 (rate b2)


def _at(value, count):
    return value(count) if callable(value) else value


def scale_by_ademamix(b1=0.9, b2=0.999, b3=0.9999, alpha=6.0, eps=1e-8, eps_root=0.0,
                      mu_dtype=None) -> Optimizer:
    """AdEMAMix direction: a fast and a slow EMA of the gradient mixed,
    ``u_t = (m1_hat + alpha m2_t) / (sqrt(nu_hat + eps_root) + eps)`` with
    ``m2_t = b3 m2_{t-1} + (1 - b3) g_t`` (``b3`` and ``alpha`` may be schedules).
    All three buffers are kept in ``mu_dtype`` (default: the parameters' dtype); the
    direction is returned in the gradient's dtype.

    Reference: Pagliardini, Ablin & Grangier, *The AdEMAMix optimizer: better, faster,
    older*, 2024 (arXiv:2409.03137)."""
    check_hypers("scale_by_ademamix", b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root)
    check_hyper("scale_by_ademamix", "alpha", alpha, "[0, inf)")
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        zeros = lambda: tree_zeros_like(params, mu_dtype)
        return ScaleByAdemamixState(count=zero_count(), count_m2=zero_count(), m1=zeros(),
                                    m2=zeros(), nu=zeros())

    def direction(m1, m2, v, mix):
        m1, m2 = same_dtype(m1, m2)
        m, v = same_dtype(m1 + cast_like(mix, m2) * m2, v)
        return m / (jnp.sqrt(v + cast_like(eps_root, v)) + cast_like(eps, v))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_ademamix", updates, m1=state.m1, m2=state.m2, nu=state.nu)
        b3_t, alpha_t = _at(b3, state.count_m2), _at(alpha, state.count_m2)
        m1 = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), updates, state.m1)
        m2 = jax.tree.map(lambda g, m: update_moment(g, m, b3_t, 1), updates, state.m2)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, b2, 2), updates, state.nu)
        count = safe_increment(state.count)
        m1_hat, nu_hat = bias_correct(m1, b1, count), bias_correct(nu, b2, count)
        updates = jax.tree.map(lambda a, b, v, g: direction(a, b, v, alpha_t).astype(g.dtype),
                               m1_hat, m2, nu_hat, updates)
        keep = lambda tree, old: jax.tree.map(lambda x, o: x.astype(o.dtype), tree, old)
        return updates, ScaleByAdemamixState(
            count=count, count_m2=safe_increment(state.count_m2), m1=keep(m1, state.m1),
            m2=keep(m2, state.m2), nu=keep(nu, state.nu))

    return Optimizer(init, update)


def ademamix(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, b3=0.9999, alpha=5.0,
             eps=1e-8, eps_root=0.0, mu_dtype=None, weight_decay=0.0, mask=None) -> Optimizer:
    """AdEMAMix: ``u_t = -lr ((m1_hat + alpha m2_t) / (sqrt(nu_hat + eps_root) + eps) + wd p_t)``,
    ``m2`` a slow (``b3``) EMA of the gradient; ``b3`` and ``alpha`` may be schedules
    (the paper warms both up).

    Reference: Pagliardini, Ablin & Grangier, *The AdEMAMix optimizer: better, faster,
    older*, 2024 (arXiv:2409.03137)."""
    check_hypers("ademamix", learning_rate=learning_rate, b1=b1, b2=b2, b3=b3, eps=eps,
                 eps_root=eps_root, weight_decay=weight_decay)
    check_hyper("ademamix", "alpha", alpha, "[0, inf)")
    return chain(scale_by_ademamix(b1=b1, b2=b2, b3=b3, alpha=alpha, eps=eps, eps_root=eps_root,
                                   mu_dtype=mu_dtype),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    t: jax.Array  # shape (), int32: steps taken
    m: Params  # m_t = g_t + b1 m_{t-1} (an undamped sum, no 1 - b1)
    n: Params  # EMA of g^2 (rate b2)


def scale_by_simplified_ademamix(b1=0.99, b2=0.95, alpha=0.0, eps=1e-8,
                                 eps_root=0.0) -> Optimizer:
    """Simplified AdEMAMix direction: ``m_t = g_t + b1 m_{t-1}``,
    ``n_t = g_t^2 + b2 (n_{t-1} - g_t^2)``,
    ``u_t = (m_t + alpha g_t) / (sqrt(n_t / (1 - b2^t) + eps_root) + eps)`` (``alpha`` may
    be a schedule).

    Reference: Morwani et al., *Connections between schedule-free optimizers, AdEMAMix,
    and accelerated SGD variants*, 2025 (arXiv:2502.02431)."""
    check_hypers("scale_by_simplified_ademamix", b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    check_hyper("scale_by_simplified_ademamix", "alpha", alpha, "[0, inf)")

    def init(params):
        return ScaleBySimplifiedAdEMAMixState(t=zero_count(), m=tree_zeros_like(params),
                                              n=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_simplified_ademamix", updates, m=state.m, n=state.n)
        alpha_t = _at(alpha, state.t)
        m = jax.tree.map(lambda g, m: g + cast_like(b1, m) * m, updates, state.m)
        square = jax.tree.map(lambda g: g * g, updates)
        n = jax.tree.map(lambda s, n: s + cast_like(b2, n) * (n - s), square, state.n)
        t = safe_increment(state.t)
        root = lambda v: jnp.sqrt(v + cast_like(eps_root, v)) + cast_like(eps, v)
        updates = jax.tree.map(lambda m, g, v: (m + cast_like(alpha_t, g) * g) / root(v),
                               m, updates, bias_correct(n, b2, t))
        return updates, ScaleBySimplifiedAdEMAMixState(t=t, m=m, n=n)

    return Optimizer(init, update)


def simplified_ademamix(learning_rate: ScalarOrSchedule, b1=0.99, b2=0.95, alpha=0.0,
                        eps=1e-8, eps_root=0.0, weight_decay=0.0, mask=None) -> Optimizer:
    """Simplified AdEMAMix: ``u_t = -lr ((m_t + alpha g_t) / (sqrt(n_hat + eps_root) + eps)
    + wd p_t)`` with ``m_t = g_t + b1 m_{t-1}`` (see :func:`scale_by_simplified_ademamix`).

    Reference: Morwani et al., *Connections between schedule-free optimizers, AdEMAMix,
    and accelerated SGD variants*, 2025 (arXiv:2502.02431)."""
    check_hypers("simplified_ademamix", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                 eps_root=eps_root, weight_decay=weight_decay)
    check_hyper("simplified_ademamix", "alpha", alpha, "[0, inf)")
    return chain(scale_by_simplified_ademamix(b1=b1, b2=b2, alpha=alpha, eps=eps,
                                              eps_root=eps_root),
                 add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


# ------------------------------------------------------------------------ MADGRAD


class MadgradState(NamedTuple):
    count: jax.Array  # shape (), int32: steps taken
    grad_sum_sq: Params  # v_t = sum_{k<=t} lambda_k g_k^2
    s: Params  # s_t = sum_{k<=t} lambda_k g_k
    x0: Params  # the initial parameters


def _step_weight(learning_rate, eps, count):
    """``lambda_t = (lr + eps) sqrt(t)``.  ``sqrt(t)`` is float32 (what ``jnp.sqrt`` gives
    an int32 count, as in optax); a Python ``lr`` is multiplied in that precision, an
    array ``lr`` in the wider of the two -- JAX's standard promotion, so that float64
    runs agree with optax's to the last bits."""
    lr = learning_rate(count) if callable(learning_rate) else learning_rate
    root = jnp.sqrt((count + 1).astype(jnp.float32))
    if is_python_number(lr) and is_python_number(eps):
        return cast_like(lr + eps, root) * root
    lr = as_float(lr)
    return promoted(jnp.multiply, lr + cast_like(eps, lr), root)


def scale_by_madgrad(learning_rate: ScalarOrSchedule, momentum=0.9, eps=1e-6) -> Optimizer:
    """MADGRAD (dual averaging with a cube-root denominator and momentum by averaging):
    with ``lambda_t = (lr + eps) sqrt(t)``, ``s_t = s_{t-1} + lambda_t g_t``,
    ``v_t = v_{t-1} + lambda_t g_t^2``, ``z_t = x_0 - s_t / (v_t^(1/3) + eps)``,
    ``u_t = (1 - momentum) z_t + momentum x_t - x_t``.  It needs ``params``.

    ``sqrt(t)`` is formed in float32, as optax forms it (see :func:`_step_weight`).

    Reference: Defazio & Jelassi, *Adaptivity without compromise: a momentumized,
    adaptive, dual averaged gradient method for stochastic optimization*, 2021
    (arXiv:2101.11075)."""
    check_hypers("scale_by_madgrad", learning_rate=learning_rate, momentum=momentum, eps=eps)

    def init(params):
        return MadgradState(count=zero_count(), grad_sum_sq=tree_zeros_like(params),
                            s=tree_zeros_like(params), x0=params)

    def weighted(lam, g, power):  # lambda g^power in the promoted dtype, then g's dtype
        return promoted(jnp.multiply, lam, g**power).astype(g.dtype)

    def leaf(g, x, v, s, x0, lam):
        v = v + weighted(lam, g, 2)
        s = s + weighted(lam, g, 1)
        z = x0 - s / (jnp.cbrt(v) + cast_like(eps, v))
        x_new = cast_like(1 - momentum, z) * z + cast_like(momentum, x) * x
        return x_new - x, v, s

    def update(updates, state, params=None, **extra):
        need_params("scale_by_madgrad", params)
        check_structure("scale_by_madgrad", updates, grad_sum_sq=state.grad_sum_sq, s=state.s)
        check_structure("scale_by_madgrad", params, what="params", x0=state.x0)
        lam = _step_weight(learning_rate, eps, state.count)
        out = jax.tree.map(lambda g, x, v, s, x0: leaf(g, x, v, s, x0, lam),
                           updates, params, state.grad_sum_sq, state.s, state.x0)
        part = lambda i: jax.tree.map(lambda _, o: o[i], updates, out)
        return part(0), MadgradState(count=safe_increment(state.count), grad_sum_sq=part(1),
                                     s=part(2), x0=state.x0)

    return Optimizer(init, update)


def madgrad(learning_rate: ScalarOrSchedule, momentum=0.9, weight_decay=0.0,
            eps=1e-6) -> Optimizer:
    """MADGRAD: ``z_t = x_0 - sum_k lambda_k g_k / ((sum_k lambda_k g_k^2)^(1/3) + eps)``
    with ``lambda_k = (lr + eps) sqrt(k)`` and ``g_k`` including ``wd x_k``;
    ``x_{t+1} = (1 - momentum) z_t + momentum x_t`` (the learning rate sits in the weights
    ``lambda``, so no final scaling).

    Reference: Defazio & Jelassi, *Adaptivity without compromise*, 2021 (arXiv:2101.11075)."""
    check_hypers("madgrad", learning_rate=learning_rate, momentum=momentum,
                 weight_decay=weight_decay, eps=eps)
    return chain(add_decayed_weights(weight_decay),
                 scale_by_madgrad(learning_rate=learning_rate, momentum=momentum, eps=eps))
