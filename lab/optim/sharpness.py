"""Curvature-aware first-order methods: SAM (sharpness-aware minimisation) and Sophia.

Contract: as in :mod:`lab.optim.adam_family` -- optax's names, argument names, defaults
and state layout (here those of ``optax.contrib.sam``, ``optax.contrib.sophia`` and
their helpers), so a lab state and an optax state compare leaf by leaf.  Each function
returns an :class:`~lab.optim.base.Optimizer` with one typed NamedTuple state.
Learning rates, betas, ``rho``, ``gamma``, ``eps``, ``clip_threshold`` and Sophia's
``update_interval`` are data; SAM's ``sync_period`` and modes are static.

Both methods need more than the gradient, and take it through ``update``'s keyword
arguments:

* Sophia's Hessian estimate needs the objective, ``obj_fn=f`` (optax's name; the lab's
  ``value_fn=f`` is accepted too), with ``f(params) -> scalar`` closed over the batch.
* SAM in its default *transparent* mode needs nothing: each call is one step, and
  ``sync_period`` calls make one SAM step (``sync_period - 1`` ascent steps, then the
  outer step taken from the cached point), so an ordinary training loop runs it
  unchanged.  In *opaque* mode each call is a whole SAM step and needs
  ``grad_fn=lambda params, i: gradient``.  :func:`sharpness_aware` builds the
  paper's SAM around any outer optimizer.
"""
from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from lab.curvature import hessian_vector_product
from lab.optim.base import (Optimizer, Params, ScalarOrSchedule, accepts_extra_args, apply_updates,
                            canonical_dtype, cast_like, check_hyper, check_hypers, check_static_int,
                            check_structure, init_empty_state, need_params, safe_increment,
                            tree_cast, tree_norm, tree_where, tree_zeros_like, zero_count)
from lab.optim.aliases import sgd
from lab.optim.linesearch import need_objective
from lab.optim.moments import bias_correct, update_moment
from lab.optim.transforms import _as_key, add_decayed_weights, chain, scale_by_learning_rate

# ---------------------------------------------------------------------------- SAM


def normalize() -> Optimizer:
    """``u = g / ||g||``, the norm taken over all leaves together (no guard at 0)."""

    def update(updates, state, params=None, **extra):
        norm = tree_norm(updates)
        return jax.tree.map(lambda g: g / cast_like(norm, g), updates), state

    return Optimizer(init_empty_state, update)


class SAMState(NamedTuple):
    steps_since_sync: jax.Array  # shape (), int32: calls since the last outer step
    opt_state: Any  # the outer optimizer's state
    adv_state: Any  # the adversarial (ascent) optimizer's state
    cache: Optional[Params]  # the point the outer step starts from; None in opaque mode


def _call(transform, updates, state, params):
    """``transform.update`` without extra arguments (as optax's SAM calls its inner ones)."""
    return transform.update(updates, state, params)


def sam(optimizer, adv_optimizer, sync_period: int = 2, reset_state: bool = True,
        opaque_mode: bool = False, batch_axis_name: Optional[str] = None) -> Optimizer:
    """Sharpness-aware minimisation: ``k = sync_period - 1`` ascent steps
    ``e_{i+1} = e_i - A(g(p + e_i))`` (``A`` = ``adv_optimizer``'s update, negated so that
    e.g. ``chain(normalize(), sgd(rho))`` gives ``e = rho g / ||g||``), then the outer step
    ``p <- p + O(g(p + e_k))`` from the original ``p`` (``O`` = ``optimizer``).

    Transparent mode (default): each ``update`` call is one of those ``sync_period``
    steps; the params the caller holds visit ``p + e_i``, ``cache`` keeps ``p``, and the
    last call returns ``cache - params + O(g)``.  The outer state advances only then;
    the ascent state is re-initialised then if ``reset_state`` (else kept from before
    that call).  Opaque mode: one call runs the whole cycle with
    ``update(grads, state, params, grad_fn=lambda params, i: gradient)``, calling
    ``grad_fn`` ``k`` times (``lax.pmean`` over ``batch_axis_name`` if given).  Inner
    optimizers get no extra keyword arguments (as in optax).

    Reference: Foret et al., *Sharpness-aware minimization for efficiently improving
    generalization*, ICLR 2021."""
    check_static_int("sam", "sync_period", sync_period, 1)

    def init(params):
        return SAMState(steps_since_sync=zero_count(), opt_state=optimizer.init(params),
                        adv_state=adv_optimizer.init(params),
                        cache=None if opaque_mode else params)

    def transparent(updates, state, params=None, *, grad_fn=None, **extra):
        need_params("sam", params)
        check_structure("sam", updates, params=params, cache=state.cache)
        first = state.steps_since_sync == 0
        last = state.steps_since_sync == sync_period - 1
        ascent, adv_state = _call(adv_optimizer, updates, state.adv_state, params)
        ascent = jax.tree.map(jnp.negative, ascent)
        outer, opt_state = _call(optimizer, updates, state.opt_state, state.cache)
        outer = jax.tree.map(lambda c, p, u: c - p + u, state.cache, params, outer)
        kept_adv = adv_optimizer.init(params) if reset_state else state.adv_state
        return tree_where(last, outer, ascent), SAMState(
            steps_since_sync=(state.steps_since_sync + 1) % sync_period,
            opt_state=tree_where(last, opt_state, state.opt_state),
            adv_state=tree_where(last, kept_adv, adv_state),
            cache=tree_where(first, params, state.cache))

    def opaque(updates, state, params=None, *, grad_fn=None, **extra):
        if grad_fn is None:
            raise TypeError("sam(opaque_mode=True).update needs grad_fn=lambda params, i: grads")
        need_params("sam", params)
        check_structure("sam", updates, params=params)
        point, grads, adv_state = params, updates, state.adv_state
        for i in range(sync_period - 1):
            ascent, adv_state = _call(adv_optimizer, grads, adv_state, point)
            point = apply_updates(point, jax.tree.map(jnp.negative, ascent))
            grads = grad_fn(point, i)
            if batch_axis_name is not None:
                grads = lax.pmean(grads, axis_name=batch_axis_name)
        if reset_state:
            adv_state = adv_optimizer.init(params)
        updates, opt_state = _call(optimizer, grads, state.opt_state, params)
        return updates, SAMState(steps_since_sync=zero_count(), opt_state=opt_state,
                                 adv_state=adv_state, cache=None)

    return Optimizer(init, opaque if opaque_mode else transparent)


def sharpness_aware(optimizer, rho=0.05, *, opaque_mode: bool = False) -> Optimizer:
    """The paper's SAM around ``optimizer``: ``e = rho g(p) / ||g(p)||``, then
    ``p <- p + O(g(p + e))``; that is ``sam(optimizer, chain(normalize(), sgd(rho)))``.

    In a training loop (transparent mode) nothing changes, but two calls make one step::

        opt = sharpness_aware(lab.optim.sgd(0.1), rho=0.05)
        state = opt.init(params)
        for batch in batches:              # the same batch for both calls of a pair
            grads = jax.grad(loss)(params, batch)
            updates, state = opt.update(grads, state, params)
            params = lab.optim.apply_updates(params, updates)

    after an even number of calls ``params`` are the outer iterates (after an odd number,
    the perturbed point).  With ``opaque_mode=True`` each call is a full step:
    ``opt.update(grads, state, params, grad_fn=lambda p, i: jax.grad(loss)(p, batch))``.

    Reference: Foret et al., ICLR 2021, Algorithm 1."""
    check_hyper("sharpness_aware", "rho", rho, "[0, inf)")
    return sam(optimizer, chain(normalize(), sgd(rho)), sync_period=2, opaque_mode=opaque_mode)


# ------------------------------------------------------------------------- Sophia


class HutchinsonState(NamedTuple):
    key: jax.Array  # typed PRNG key, split once per estimate


def _objective(where: str, obj_fn, value_fn):
    if obj_fn is not None and value_fn is not None:
        raise ValueError(f"{where}: give the objective once, as obj_fn= or value_fn=, not both")
    need_objective(where, obj_fn if value_fn is None else value_fn)
    return obj_fn if value_fn is None else value_fn


def hutchinson_estimator_diag_hessian(random_seed=None) -> Optimizer:
    """Hutchinson's estimate of the Hessian diagonal of the objective at ``params``:
    ``u = z * (H z)`` with ``z`` a Rademacher vector (``E[z z^T] = I``), drawn as optax
    draws it (split the key; one sub-key per leaf; float32 signs cast to the params'
    dtype).  ``random_seed`` is a PRNG key or an int (default: key 0).  ``update``
    ignores the incoming updates and needs ``obj_fn=f`` (or ``value_fn=f``).

    Reference: Hutchinson, *A stochastic estimator of the trace of the influence
    matrix*, 1990; Bekas, Kokiopoulou & Saad, 2007 (the diagonal)."""
    key0 = 0 if random_seed is None else random_seed

    def init(params):
        return HutchinsonState(key=_as_key(key0))

    def update(updates, state, params=None, *, obj_fn=None, value_fn=None, **extra):
        where = "hutchinson_estimator_diag_hessian"
        objective = _objective(where, obj_fn, value_fn)
        need_params(where, params)
        key, sample_key = jax.random.split(state.key)
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(sample_key, len(leaves))
        signs = [jax.random.rademacher(k, jnp.shape(p), jnp.float32).astype(jnp.result_type(p))
                 for k, p in zip(keys, leaves)]
        signs = jax.tree.unflatten(treedef, signs)
        curvature = hessian_vector_product(objective, params, signs)
        return jax.tree.map(lambda h, z: h * z, curvature, signs), HutchinsonState(key=key)

    return Optimizer(init, update)


class SophiaState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Params  # EMA of g
    nu: Params  # EMA of the Hessian-diagonal estimates
    hessian_fn_state: Any  # the estimator's state (HutchinsonState by default)


def _check_interval(where: str, update_interval) -> None:
    if isinstance(update_interval, float):
        raise ValueError(f"{where}: update_interval={update_interval!r} must be an int")
    check_hyper(where, "update_interval", update_interval, "[1, inf)")


def scale_by_sophia(b1=0.965, b2=0.99, eps=1e-8, gamma=0.01, clip_threshold=1.0,
                    update_interval=10, hessian_diagonal_fn=None,
                    mu_dtype=None) -> Optimizer:
    """Sophia direction: ``m_t = b1 m_{t-1} + (1 - b1) g_t``;
    ``u_t = clip(m_hat / max(gamma h_{t-1}, eps), clip_threshold)`` (no clip if None),
    where ``h`` is an EMA (rate ``b2``) of Hessian-diagonal estimates, refreshed after
    the step on calls ``t - 1 = 0, k, 2k, ...`` (``k = update_interval``).  The estimate
    comes from ``hessian_diagonal_fn`` (default :func:`hutchinson_estimator_diag_hessian`,
    i.e. Sophia-H), called as ``update(grads, state, params=params, **extra)``.  (optax's
    ``verbose`` win-rate printing is not offered: the lab does not print.)

    Reference: Liu et al., *Sophia: a scalable stochastic second-order optimizer for
    language model pre-training*, ICLR 2024."""
    where = "scale_by_sophia"
    check_hypers(where, b1=b1, b2=b2, eps=eps, gamma=gamma)
    check_hyper(where, "clip_threshold", clip_threshold, "(0, inf)")
    _check_interval(where, update_interval)
    estimator = (hutchinson_estimator_diag_hessian() if hessian_diagonal_fn is None
                 else hessian_diagonal_fn)
    estimator_takes_extra = accepts_extra_args(estimator)
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        return SophiaState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                           nu=tree_zeros_like(params), hessian_fn_state=estimator.init(params))

    def direction(m, h):
        u = m / jnp.maximum(cast_like(gamma, h) * h, cast_like(eps, h))
        if clip_threshold is None:
            return u
        bound = cast_like(clip_threshold, u)
        return jnp.clip(u, -bound, bound)

    def update(updates, state, params=None, **extra):
        need_params(where, params)
        check_structure(where, updates, mu=state.mu, nu=state.nu)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1), updates, state.mu)
        directions = jax.tree.map(direction, bias_correct(mu, b1, count), state.nu)

        def refresh(operands):
            estimator_state, nu = operands
            kwargs = extra if estimator_takes_extra else {}
            diagonal, estimator_state = estimator.update(updates, estimator_state,
                                                         params=params, **kwargs)
            return estimator_state, jax.tree.map(lambda d, h: update_moment(d, h, b2, 1),
                                                 diagonal, nu)

        interval = jnp.asarray(update_interval, state.count.dtype)
        estimator_state, nu = lax.cond(state.count % interval == 0, refresh, lambda ops: ops,
                                       (state.hessian_fn_state, state.nu))
        return directions, SophiaState(count=count, mu=tree_cast(mu, mu_dtype), nu=nu,
                                       hessian_fn_state=estimator_state)

    return Optimizer(init, update)


def sophia(learning_rate: ScalarOrSchedule, b1=0.965, b2=0.99, eps=1e-8, weight_decay=1e-4,
           weight_decay_mask=None, gamma=0.01, clip_threshold=1.0, update_interval=10,
           hessian_diagonal_fn=None, mu_dtype=None) -> Optimizer:
    """Sophia: ``u_t = -lr (clip(m_hat / max(gamma h, eps), clip_threshold) + wd p_t)``
    (see :func:`scale_by_sophia`); ``update`` needs ``obj_fn=f`` for the default
    Hutchinson estimator.  ``weight_decay_mask`` selects the leaves that decay.

    Reference: Liu et al., *Sophia: a scalable stochastic second-order optimizer for
    language model pre-training*, ICLR 2024."""
    check_hypers("sophia", learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                 weight_decay=weight_decay, gamma=gamma)
    check_hyper("sophia", "clip_threshold", clip_threshold, "(0, inf)")
    _check_interval("sophia", update_interval)
    return chain(scale_by_sophia(b1=b1, b2=b2, eps=eps, gamma=gamma,
                                 clip_threshold=clip_threshold, update_interval=update_interval,
                                 hessian_diagonal_fn=hessian_diagonal_fn, mu_dtype=mu_dtype),
                 add_decayed_weights(weight_decay, weight_decay_mask),
                 scale_by_learning_rate(learning_rate))

