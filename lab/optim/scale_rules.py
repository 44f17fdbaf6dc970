"""The per-coordinate scaling rules of the named adaptive optimizers.

Contract: as in :mod:`lab.optim.transforms` -- each function returns an
:class:`~lab.optim.base.Optimizer` with one typed NamedTuple state whose fields follow
optax's (``ScaleByAdamState(count, mu, nu)`` and so on).  Each rule maps a gradient to
a *direction* (no learning rate, no sign flip); :mod:`lab.optim.aliases` chains it with
:func:`~lab.optim.transforms.scale_by_learning_rate`.  ``t`` is the step count after
the update (1 on the first call); ``m_hat = m_t / (1 - b1^t)`` and
``v_hat = v_t / (1 - b2^t)`` are Adam's bias-corrected moments.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from lab.optim.base import (Optimizer, Params, as_float, canonical_dtype, cast_like,
                            check_hypers, check_structure, init_empty_state, safe_increment,
                            tree_cast, tree_full_like, tree_sum_of_squares, tree_zeros_like,
                            zero_count)
from lab.optim.moments import _common_dtype, bias_correct, update_moment


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Params  # EMA of g
    nu: Params  # EMA of g^2 (adamax: decayed max of |g|)


def _moments(updates, state, b1, b2, order2: int = 2):
    mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), updates, state.mu)
    nu = jax.tree.map(lambda g, v: update_moment(g, v, b2, order2), updates, state.nu)
    return mu, nu


def _first_moment_hat(mu, updates, b1, count, nesterov: bool):
    """``m_hat``, or with Nesterov ``b1 m_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)``."""
    if not nesterov:
        return bias_correct(mu, b1, count)
    ahead = bias_correct(mu, b1, safe_increment(count))
    now = bias_correct(updates, b1, count)
    return jax.tree.map(lambda m, g: cast_like(b1, m) * m + cast_like(1 - b1, g) * g, ahead, now)


def _ratio(m, v, eps, eps_root):
    """``m / (sqrt(v + eps_root) + eps)``."""
    m, v = _common_dtype(m, v)
    return m / (jnp.sqrt(v + cast_like(eps_root, v)) + cast_like(eps, v))


def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None, *,
                  nesterov: bool = False) -> Optimizer:
    """Adam direction ``u_t = m_hat / (sqrt(v_hat + eps_root) + eps)``; with ``nesterov``
    the NAdam first moment (see :func:`_first_moment_hat`).

    References: Kingma & Ba, *Adam*, ICLR 2015; Dozat, *Incorporating Nesterov momentum
    into Adam*, ICLR workshop 2016."""
    check_hypers("scale_by_adam", b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        return ScaleByAdamState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                                nu=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_adam", updates, mu=state.mu, nu=state.nu)
        mu, nu = _moments(updates, state, b1, b2)
        count = safe_increment(state.count)
        mu_hat = _first_moment_hat(mu, updates, b1, count, nesterov)
        nu_hat = bias_correct(nu, b2, count)
        updates = jax.tree.map(lambda m, v: _ratio(m, v, eps, eps_root), mu_hat, nu_hat)
        nu = jax.tree.map(lambda new, old: new.astype(old.dtype), nu, state.nu)
        return updates, ScaleByAdamState(count=count, mu=tree_cast(mu, mu_dtype), nu=nu)

    return Optimizer(init, update)


class ScaleByAmsgradState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Params  # EMA of g
    nu: Params  # EMA of g^2
    nu_max: Params  # running max of (bias-corrected) nu


def scale_by_amsgrad(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, mu_dtype=None,
                     bias_correction_mu: bool = True,
                     bias_correction_nu: bool = True) -> Optimizer:
    """AMSGrad direction: ``vmax_t = max(vmax_{t-1}, v_hat)``;
    ``u_t = m_hat / (sqrt(vmax_t + eps_root) + eps)`` (either correction can be off).

    Reference: Reddi, Kale & Kumar, *On the convergence of Adam and beyond*, ICLR 2018."""
    check_hypers("scale_by_amsgrad", b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        return ScaleByAmsgradState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                                   nu=tree_zeros_like(params), nu_max=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_amsgrad", updates, mu=state.mu, nu=state.nu)
        mu, nu = _moments(updates, state, b1, b2)
        count = safe_increment(state.count)
        mu_hat = bias_correct(mu, b1, count) if bias_correction_mu else mu
        nu_eff = bias_correct(nu, b2, count) if bias_correction_nu else nu
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu_eff)
        updates = jax.tree.map(lambda m, v: _ratio(m, v, eps, eps_root), mu_hat, nu_max)
        return updates, ScaleByAmsgradState(count=count, mu=tree_cast(mu, mu_dtype), nu=nu,
                                            nu_max=nu_max)

    return Optimizer(init, update)


def scale_by_adamax(b1=0.9, b2=0.999, eps=1e-8) -> Optimizer:
    """AdaMax direction: ``v_t = max(|g_t| + eps, b2 v_{t-1})``; ``u_t = m_hat / v_t``.

    Reference: Kingma & Ba, *Adam*, ICLR 2015, section 7.1."""
    check_hypers("scale_by_adamax", b1=b1, b2=b2, eps=eps)

    def init(params):
        return ScaleByAdamState(count=zero_count(), mu=tree_zeros_like(params),
                                nu=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_adamax", updates, mu=state.mu, nu=state.nu)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), updates, state.mu)
        nu = jax.tree.map(lambda g, v: jnp.maximum(jnp.abs(g) + cast_like(eps, g),
                                                   cast_like(b2, v) * v), updates, state.nu)
        updates = jax.tree.map(lambda m, v: m / v, bias_correct(mu, b1, count), nu)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return Optimizer(init, update)


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Params  # EMA of g^2
    e_x: Params  # EMA of u^2 (squared directions)


def scale_by_adadelta(rho=0.9, eps=1e-6) -> Optimizer:
    """AdaDelta direction: ``E[g^2]_t = rho E[g^2]_{t-1} + (1 - rho) g_t^2``;
    ``u_t = sqrt(E[u^2]_{t-1} + eps) / sqrt(E[g^2]_t + eps) g_t``;
    ``E[u^2]_t = rho E[u^2]_{t-1} + (1 - rho) u_t^2``.

    Reference: Zeiler, *ADADELTA: an adaptive learning rate method*, 2012, Algorithm 1."""
    check_hypers("scale_by_adadelta", rho=rho, eps=eps)

    def init(params):
        return ScaleByAdaDeltaState(e_g=tree_zeros_like(params), e_x=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_adadelta", updates, e_g=state.e_g, e_x=state.e_x)
        e_g = jax.tree.map(lambda g, e: update_moment(g, e, rho, 2), updates, state.e_g)
        root = lambda e: jnp.sqrt(e + cast_like(eps, e))
        updates = jax.tree.map(lambda g, eg, ex: (root(ex) / root(eg)) * g, updates, e_g, state.e_x)
        e_x = jax.tree.map(lambda u, e: update_moment(u, e, rho, 2), updates, state.e_x)
        return updates, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return Optimizer(init, update)


def scale_by_belief(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *,
                    nesterov: bool = False) -> Optimizer:
    """AdaBelief direction: ``s_t = b2 s_{t-1} + (1 - b2)(g_t - m_t)^2 + eps_root``;
    ``u_t = m_hat / (sqrt(s_t / (1 - b2^t)) + eps)``.  (``eps_root`` is added to the
    stored ``s_t`` every step, as in the paper's Algorithm 2 and in optax.)

    Reference: Zhuang et al., *AdaBelief optimizer*, NeurIPS 2020."""
    check_hypers("scale_by_belief", b1=b1, b2=b2, eps=eps, eps_root=eps_root)

    def init(params):
        return ScaleByAdamState(count=zero_count(), mu=tree_zeros_like(params),
                                nu=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_belief", updates, mu=state.mu, nu=state.nu)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), updates, state.mu)
        surprise = jax.tree.map(lambda g, m: g - m, updates, mu)
        nu = jax.tree.map(lambda d, s: update_moment(d, s, b2, 2), surprise, state.nu)
        nu = jax.tree.map(lambda s: s + cast_like(eps_root, s), nu)
        count = safe_increment(state.count)
        mu_hat = _first_moment_hat(mu, updates, b1, count, nesterov)
        nu_hat = bias_correct(nu, b2, count)
        updates = jax.tree.map(lambda m, s: _ratio(m, s, eps, 0.0), mu_hat, nu_hat)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return Optimizer(init, update)


def scale_by_yogi(b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0,
                  initial_accumulator_value=1e-6) -> Optimizer:
    """Yogi direction: ``v_t = v_{t-1} - (1 - b2) sign(v_{t-1} - g_t^2) g_t^2``;
    ``u_t = m_hat / (sqrt(v_hat + eps_root) + eps)``; both moments start at
    ``initial_accumulator_value``.

    Reference: Zaheer et al., *Adaptive methods for nonconvex optimization*, NeurIPS 2018."""
    check_hypers("scale_by_yogi", b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                 initial_accumulator_value=initial_accumulator_value)

    def init(params):
        start = tree_full_like(params, initial_accumulator_value)
        return ScaleByAdamState(count=zero_count(), mu=start, nu=start)

    def yogi_moment(g, v):
        g2 = g * g
        return v - cast_like(1 - b2, v) * jnp.sign(v - g2) * g2

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_yogi", updates, mu=state.mu, nu=state.nu)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), updates, state.mu)
        nu = jax.tree.map(yogi_moment, updates, state.nu)
        count = safe_increment(state.count)
        mu_hat, nu_hat = bias_correct(mu, b1, count), bias_correct(nu, b2, count)
        updates = jax.tree.map(lambda m, v: _ratio(m, v, eps, eps_root), mu_hat, nu_hat)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return Optimizer(init, update)


def scale_by_radam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, *,
                   nesterov: bool = False) -> Optimizer:
    """Rectified Adam: with ``rho_inf = 2/(1 - b2) - 1`` and
    ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` (the length of the approximated SMA),
    ``u_t = r_t m_hat / (sqrt(v_hat + eps_root) + eps)`` if ``rho_t >= threshold``, else
    ``u_t = m_hat`` (momentum SGD), where the variance rectification is
    ``r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))``.
    ``threshold`` must be at least 4 (``r_t`` is NaN for ``2 < rho_t < 4``).

    Reference: Liu et al., *On the variance of the adaptive learning rate and beyond*,
    ICLR 2020."""
    check_hypers("scale_by_radam", b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold)

    def init(params):
        return ScaleByAdamState(count=zero_count(), mu=tree_zeros_like(params),
                                nu=tree_zeros_like(params))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_radam", updates, mu=state.mu, nu=state.nu)
        mu, nu = _moments(updates, state, b1, b2)
        count = safe_increment(state.count)
        b2_f = as_float(b2)
        t = count.astype(b2_f.dtype)
        rho_inf = 2.0 / (1.0 - b2_f) - 1.0
        b2t = b2_f**t
        rho = rho_inf - 2 * t * b2t / (1 - b2t)
        r = jnp.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf
                     / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
        mu_hat = _first_moment_hat(mu, updates, b1, count, nesterov)
        nu_hat = bias_correct(nu, b2, count)
        rectified = jax.tree.map(lambda m, v: cast_like(r, m) * m / (
            jnp.sqrt(v + cast_like(eps_root, v)) + cast_like(eps, v)), mu_hat, nu_hat)
        use_rectified = rho >= as_float(threshold).astype(rho.dtype)
        updates = jax.tree.map(lambda a, m: jnp.where(use_rectified, a, m), rectified, mu_hat)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return Optimizer(init, update)


class ScaleByLionState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Params  # EMA of g with rate b2


def scale_by_lion(b1=0.9, b2=0.99, mu_dtype=None) -> Optimizer:
    """Lion direction: ``u_t = sign((1 - b1) g_t + b1 m_{t-1})``;
    ``m_t = (1 - b2) g_t + b2 m_{t-1}``.

    Reference: Chen et al., *Symbolic discovery of optimization algorithms*, 2023."""
    check_hypers("scale_by_lion", b1=b1, b2=b2)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        return ScaleByLionState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype))

    def direction(g, m):
        g, m = _common_dtype(g, m)
        return jnp.sign(cast_like(1 - b1, g) * g + cast_like(b1, m) * m)

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_lion", updates, mu=state.mu)
        new_updates = jax.tree.map(direction, updates, state.mu)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b2, 1), updates, state.mu)
        count = safe_increment(state.count)
        return new_updates, ScaleByLionState(count=count, mu=tree_cast(mu, mu_dtype))

    return Optimizer(init, update)


class ScaleByRpropState(NamedTuple):
    step_sizes: Params  # per-coordinate step sizes
    prev_updates: Params  # last step_size * sign(g), or 0 after a sign change


def scale_by_rprop(learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6,
                   max_step_size=50.0) -> Optimizer:
    """Rprop (the iRprop- variant) direction, per coordinate with ``s = sign(g_t d_{t-1})``:
    ``step_t = clip(step_{t-1} * (eta_plus if s > 0 else eta_minus), min, max)`` if
    ``s != 0`` else ``step_{t-1}``; ``d_t = 0`` if ``s < 0`` else ``step_t sign(g_t)``;
    ``u_t = d_t``.  Step sizes start at ``learning_rate``.

    Reference: Riedmiller & Braun, *A direct adaptive method for faster backpropagation
    learning: the RPROP algorithm*, 1993; Igel & Huesken, *Improving the Rprop learning
    algorithm*, 2000."""
    check_hypers("scale_by_rprop", learning_rate=learning_rate, eta_minus=eta_minus,
                 eta_plus=eta_plus, min_step_size=min_step_size, max_step_size=max_step_size)

    def init(params):
        return ScaleByRpropState(step_sizes=tree_full_like(params, learning_rate),
                                 prev_updates=tree_zeros_like(params))

    def new_step(s, step):
        factor = jnp.where(s > 0, cast_like(eta_plus, step), cast_like(eta_minus, step))
        bounded = jnp.clip(step * factor, cast_like(min_step_size, step),
                           cast_like(max_step_size, step))
        return jnp.where(s == 0, step, bounded)

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_rprop", updates, step_sizes=state.step_sizes,
                        prev_updates=state.prev_updates)
        # sign(g_t) sign(d_{t-1}) rather than the product g_t d_{t-1}, which can underflow
        agree = jax.tree.map(lambda g, d: jnp.sign(g) * jnp.sign(d), updates, state.prev_updates)
        steps = jax.tree.map(new_step, agree, state.step_sizes)
        moves = jax.tree.map(lambda s, g, step: jnp.where(s < 0, jnp.zeros_like(g),
                                                          step * jnp.sign(g)),
                             agree, updates, steps)
        return moves, ScaleByRpropState(step_sizes=steps, prev_updates=moves)

    return Optimizer(init, update)


def scale_by_polyak(f_min=0.0, max_learning_rate=1.0, eps=0.0, variant: str = "sps") -> Optimizer:
    """Polyak step: ``u = min((f - f_min) / (||g||^2 + eps), max_learning_rate) g``, with
    ``f - f_min`` clamped at 0 for ``variant="sps+"`` and ``u = 0`` when
    ``||g||^2 + eps`` is at most float64's machine epsilon.  ``update`` needs the
    keyword argument ``value=f``.

    Reference: Loizou et al., *Stochastic Polyak step-size for SGD*, AISTATS 2021."""
    check_hypers("scale_by_polyak", max_learning_rate=max_learning_rate, eps=eps)
    if variant not in ("sps", "sps+"):
        raise ValueError(f"scale_by_polyak: variant must be 'sps' or 'sps+', got {variant!r}")

    def update(updates, state, params=None, *, value=None, **extra):
        if value is None:
            raise TypeError("scale_by_polyak: update needs the loss as keyword argument value=")
        sq_norm = tree_sum_of_squares(updates)
        gap = jnp.asarray(value, sq_norm.dtype) - cast_like(f_min, sq_norm)
        if variant == "sps+":
            gap = jnp.maximum(gap, jnp.zeros_like(gap))
        denom = sq_norm + cast_like(eps, sq_norm)
        tiny = cast_like(jnp.finfo(jnp.float64).eps, sq_norm)
        step = jnp.where(denom <= tiny, jnp.zeros_like(denom),
                         jnp.minimum(gap / denom, cast_like(max_learning_rate, denom)))
        return jax.tree.map(lambda g: cast_like(step, g) * g, updates), state

    return Optimizer(init_empty_state, update)

