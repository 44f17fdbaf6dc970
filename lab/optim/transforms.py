"""Building blocks: small gradient transformations that named optimizers chain.

Contract: each function returns an :class:`~lab.optim.base.Optimizer`
``(init, update)`` whose state is one typed NamedTuple (``EmptyState`` when stateless).
Field names and order follow optax's, so a lab state and an optax state can be compared
leaf by leaf.  Per-leaf formulas below write ``g`` for the incoming update, ``t`` for
the step count after this update (1 on the first call), and operate elementwise.

* moments (defined in :mod:`lab.optim.moments`, importable from here): :func:`trace`
  (momentum), :func:`ema`, :func:`scale_by_rss` (AdaGrad), :func:`scale_by_rms`
  (RMSProp), :func:`scale_by_stddev` (centred RMSProp), and the helpers
  :func:`update_moment`, :func:`bias_correct`;
* scaling: :func:`scale`, :func:`scale_by_learning_rate`, :func:`scale_by_schedule`,
  :func:`scale_by_sign`, :func:`scale_by_trust_ratio`;
* additive: :func:`add_decayed_weights`, :func:`add_noise`;
* clipping: :func:`clip`, :func:`clip_by_global_norm`;
* combinators: :func:`chain`, :func:`masked`, :func:`partition` (a transform per
  labelled group of leaves, optax's ``partition``), :func:`apply_if_finite`.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from lab.optim.base import (EmptyState, Optimizer, ScalarOrSchedule, Schedule, accepts_extra_args,
                            as_float, cast_like, check_hypers, check_structure, identity,
                            init_empty_state, safe_increment, tree_sum_of_squares, zero_count)
from lab.optim.moments import (EmaState, ScaleByRmsState, ScaleByRmsWithCountState,  # noqa: F401
                               ScaleByRssState, ScaleByRStdDevState, ScaleByRStdDevWithCountState,
                               TraceState, bias_correct, ema, scale_by_rms, scale_by_rss,
                               scale_by_stddev, trace, update_moment)



# ------------------------------------------------------------------------ scaling


def scale(step_size) -> Optimizer:
    """``u = step_size * g``."""

    def update(updates, state, params=None, **extra):
        return jax.tree.map(lambda g: cast_like(step_size, g) * g, updates), state

    return Optimizer(init_empty_state, update)


class ScaleByScheduleState(NamedTuple):
    count: jax.Array  # shape (), int32: steps taken so far


def scale_by_schedule(step_size_fn: Schedule) -> Optimizer:
    """``u_t = step_size_fn(t - 1) * g_t`` (the schedule sees 0 on the first step)."""

    def init(params):
        return ScaleByScheduleState(count=zero_count())

    def update(updates, state, params=None, **extra):
        step_size = step_size_fn(state.count)
        updates = jax.tree.map(lambda g: cast_like(step_size, g) * g, updates)
        return updates, ScaleByScheduleState(count=safe_increment(state.count))

    return Optimizer(init, update)


def scale_by_learning_rate(learning_rate: Optional[ScalarOrSchedule], *,
                           flip_sign: bool = True) -> Optimizer:
    """``u = -lr * g`` (``+lr * g`` if not ``flip_sign``); ``lr`` may be a schedule,
    and ``None`` means no scaling at all."""
    if learning_rate is None:
        return identity()
    check_hypers("scale_by_learning_rate", learning_rate=learning_rate)
    sign = -1 if flip_sign else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: sign * learning_rate(count))
    return scale(sign * learning_rate)


def scale_by_sign() -> Optimizer:
    """``u = sign(g)``.  Reference: Bernstein et al., *signSGD*, ICML 2018."""

    def update(updates, state, params=None, **extra):
        return jax.tree.map(jnp.sign, updates), state

    return Optimizer(init_empty_state, update)


def _safe_norm(x: jax.Array, min_norm) -> jax.Array:
    """``max(||x||, min_norm)`` whose gradient is finite at ``x = 0``."""
    norm = jnp.sqrt(jnp.sum(jnp.square(x)))
    floor = cast_like(min_norm, norm)
    x = jnp.where(norm <= floor, jnp.ones_like(x), x)
    return jnp.where(norm <= floor, floor, jnp.sqrt(jnp.sum(jnp.square(x))))


def scale_by_trust_ratio(min_norm=0.0, trust_coefficient=1.0, eps=0.0) -> Optimizer:
    """Layer-wise trust ratio: ``u = g * c ||p|| / (||g|| + eps)`` per leaf, and ``u = g``
    where either norm is 0.  Norms are floored at ``min_norm``.

    Reference: You, Gitman & Ginsburg, *Large batch training of convolutional networks*
    (LARS), 2017."""
    check_hypers("scale_by_trust_ratio", min_norm=min_norm,
                 trust_coefficient=trust_coefficient, eps=eps)

    def scale_leaf(u, p):
        p_norm, u_norm = _safe_norm(p, min_norm), _safe_norm(u, min_norm)
        ratio = cast_like(trust_coefficient, p_norm) * p_norm / (u_norm + cast_like(eps, u_norm))
        zero = jnp.logical_or(p_norm == 0, u_norm == 0)
        return u * jnp.where(zero, jnp.ones_like(ratio), ratio)

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("scale_by_trust_ratio: update needs params, got params=None")
        check_structure("scale_by_trust_ratio", updates, params=params)
        return jax.tree.map(scale_leaf, updates, params), state

    return Optimizer(init_empty_state, update)


# ----------------------------------------------------------------------- additive


class WeightDecaySchedule(NamedTuple):
    count: jax.Array  # shape (), int32: steps taken so far


def add_decayed_weights(weight_decay: ScalarOrSchedule = 0.0, mask=None) -> Optimizer:
    """Decoupled weight decay term: ``u = g + wd * p`` (``wd`` may be a schedule);
    ``mask`` (a pytree of bools or a function of params) limits it to some leaves.

    Reference: Loshchilov & Hutter, *Decoupled weight decay regularization*, ICLR 2019."""
    check_hypers("add_decayed_weights", weight_decay=weight_decay)
    scheduled = callable(weight_decay)

    def init(params):
        return WeightDecaySchedule(count=zero_count()) if scheduled else EmptyState()

    def update(updates, state, params=None, **extra):
        if params is None:
            raise ValueError("add_decayed_weights: update needs params, got params=None")
        check_structure("add_decayed_weights", updates, params=params)
        new_state = WeightDecaySchedule(safe_increment(state.count)) if scheduled else state
        if isinstance(weight_decay, (int, float)) and weight_decay == 0.0:
            return updates, new_state
        wd = weight_decay(state.count) if scheduled else weight_decay
        return jax.tree.map(lambda g, p: g + cast_like(wd, g) * p, updates, params), new_state

    block = Optimizer(init, update)
    return block if mask is None else masked(block, mask)


class AddNoiseState(NamedTuple):
    count: jax.Array  # shape (), int32
    rng_key: jax.Array  # typed PRNG key


def _as_key(key) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, int):
        return jax.random.key(key)
    return jax.random.wrap_key_data(key)  # a raw uint32 key


def add_noise(eta, gamma, key) -> Optimizer:
    """Annealed Gaussian gradient noise: ``u_t = g_t + sqrt(eta / t^gamma) xi_t``,
    ``xi_t ~ N(0, I)``, drawn as optax draws it (split the key, one sub-key per leaf).

    Reference: Neelakantan et al., *Adding gradient noise improves learning for very
    deep networks*, 2015."""
    check_hypers("add_noise", eta=eta, gamma=gamma)
    if key is None:
        raise ValueError("add_noise: key must be a PRNG key or an int seed, got None")

    def init(params):
        return AddNoiseState(count=zero_count(), rng_key=_as_key(key))

    def update(updates, state, params=None, **extra):
        count = safe_increment(state.count)
        gamma_f = as_float(gamma)
        std = jnp.sqrt(eta / count.astype(gamma_f.dtype) ** gamma_f)
        rng_key, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))
        noisy = [g + cast_like(std, g) * jax.random.normal(k, g.shape, g.dtype)
                 for g, k in zip(leaves, keys)]
        return jax.tree.unflatten(treedef, noisy), AddNoiseState(count=count, rng_key=rng_key)

    return Optimizer(init, update)


# ----------------------------------------------------------------------- clipping


def clip(max_delta) -> Optimizer:
    """Elementwise clipping: ``u = min(max(g, -max_delta), max_delta)``."""
    check_hypers("clip", max_delta=max_delta)

    def update(updates, state, params=None, **extra):
        bound = lambda g: cast_like(max_delta, g)
        return jax.tree.map(lambda g: jnp.clip(g, -bound(g), bound(g)), updates), state

    return Optimizer(init_empty_state, update)


def clip_by_global_norm(max_norm) -> Optimizer:
    """``u = g`` if ``||g|| < max_norm`` else ``g max_norm / ||g||``, with ``||g||`` the
    norm of all leaves together.

    Reference: Pascanu, Mikolov & Bengio, *On the difficulty of training recurrent
    neural networks*, ICML 2013."""
    check_hypers("clip_by_global_norm", max_norm=max_norm)

    def update(updates, state, params=None, **extra):
        norm = jnp.sqrt(tree_sum_of_squares(updates))
        keep = norm < cast_like(max_norm, norm)
        shrink = lambda g: (g / cast_like(norm, g)) * cast_like(max_norm, g)
        return jax.tree.map(lambda g: lax.select(keep, g, shrink(g)), updates), state

    return Optimizer(init_empty_state, update)


# -------------------------------------------------------------------- combinators


def chain(*transforms) -> Optimizer:
    """Apply ``transforms`` in order: ``u = T_n(... T_1(g))``; the state is the tuple of
    their states.  Extra keyword arguments reach every transform whose ``update``
    accepts ``**kwargs`` (all lab blocks, optax's ``GradientTransformationExtraArgs``)."""
    takes_extra = tuple(accepts_extra_args(t) for t in transforms)

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            raise ValueError(f"chain: expected a tuple of {len(transforms)} states (from this "
                             f"chain's init), got {type(state).__name__} {state!r:.80}")
        new_state = []
        for t, s, with_extra in zip(transforms, state, takes_extra):
            updates, s = t.update(updates, s, params, **extra) if with_extra else t.update(
                updates, s, params)
            new_state.append(s)
        return updates, tuple(new_state)

    return Optimizer(init, update)


class MaskedNode(NamedTuple):
    """Stands in for a masked-out subtree: a pytree node with no leaves."""


class MaskedState(NamedTuple):
    inner_state: Any  # the inner transform's state on the unmasked leaves


def masked(inner, mask) -> Optimizer:
    """Apply ``inner`` only where ``mask`` is True; other leaves pass through unchanged.

    ``mask`` is a pytree of Python bools with the structure of (a prefix of) the params,
    or a function from params to such a pytree.  It is static."""
    inner_takes_extra = accepts_extra_args(inner)

    def mask_tree(tree):
        return mask(tree) if callable(mask) else mask

    def hide(m, tree):
        return jax.tree.map(lambda keep, x: x if keep else MaskedNode(), m, tree)

    def init(params):
        return MaskedState(inner_state=inner.init(hide(mask_tree(params), params)))

    def update(updates, state, params=None, **extra):
        m = mask_tree(updates)
        hidden_params = None if params is None else hide(m, params)
        args = (hide(m, updates), state.inner_state, hidden_params)
        new, inner_state = (inner.update(*args, **extra) if inner_takes_extra
                            else inner.update(*args))
        updates = jax.tree.map(lambda keep, n, old: n if keep else old, m, new, updates)
        return updates, MaskedState(inner_state=inner_state)

    return Optimizer(init, update)


class PartitionState(NamedTuple):
    inner_states: dict  # label -> MaskedState of that label's transform


def partition(transforms: dict, param_labels) -> Optimizer:
    """Route each leaf to ``transforms[label]``: ``param_labels`` is a pytree of labels
    (a prefix of the params') or a function of the params returning one.  Each transform
    sees only its own leaves (through :func:`masked`)."""

    def labels_of(tree):
        return param_labels(tree) if callable(param_labels) else param_labels

    def routed(labels):
        return {label: masked(tx, jax.tree.map(lambda lab, lbl=label: lab == lbl, labels))
                for label, tx in transforms.items()}

    def init(params):
        labels = labels_of(params)
        unknown = set(jax.tree.leaves(labels)) - set(transforms)
        if unknown:
            raise ValueError(f"partition: labels {sorted(unknown)} have no transform; "
                             f"transforms are given for {sorted(transforms)}")
        return PartitionState({k: tx.init(params) for k, tx in routed(labels).items()})

    takes_extra = {label: accepts_extra_args(tx) for label, tx in transforms.items()}

    def update(updates, state, params=None, **extra):
        inner_states = {}
        for label, tx in routed(labels_of(updates)).items():
            kwargs = extra if takes_extra[label] else {}
            updates, inner_states[label] = tx.update(updates, state.inner_states[label], params,
                                                     **kwargs)
        return updates, PartitionState(inner_states)

    return Optimizer(init, update)


class ApplyIfFiniteState(NamedTuple):
    notfinite_count: jax.Array  # consecutive non-finite steps (reset by a finite one)
    last_finite: jax.Array  # bool: was the last gradient finite
    total_notfinite: jax.Array  # non-finite steps since init, never reset
    inner_state: Any


def apply_if_finite(inner, max_consecutive_errors: int) -> Optimizer:
    """Skip steps whose gradient has a NaN or Inf: the update is zero and ``inner``'s
    state is kept, unless more than ``max_consecutive_errors`` such steps came in a row
    (then the step is taken anyway).  Skips are counted in the state."""
    check_hypers("apply_if_finite", max_consecutive_errors=max_consecutive_errors)
    inner_takes_extra = accepts_extra_args(inner)

    def init(params):
        return ApplyIfFiniteState(notfinite_count=zero_count(), last_finite=jnp.array(True),
                                  total_notfinite=zero_count(), inner_state=inner.init(params))

    def update(updates, state, params=None, **extra):
        finite = functools.reduce(jnp.logical_and,
                                  [jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(updates)],
                                  jnp.array(True))
        notfinite_count = jnp.where(finite, jnp.zeros_like(state.notfinite_count),
                                    safe_increment(state.notfinite_count))
        extra_args = extra if inner_takes_extra else {}

        def take(_):
            return inner.update(updates, state.inner_state, params, **extra_args)

        def skip(_):  # zeros shaped like what ``take`` would return
            shapes = jax.eval_shape(take, None)[0]
            return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes), state.inner_state

        accept = jnp.logical_or(finite, notfinite_count > max_consecutive_errors)
        updates, inner_state = lax.cond(accept, take, skip, None)
        total = jnp.where(finite, state.total_notfinite, safe_increment(state.total_notfinite))
        return updates, ApplyIfFiniteState(notfinite_count=notfinite_count, last_finite=finite,
                                           total_notfinite=total, inner_state=inner_state)

    return Optimizer(init, update)
