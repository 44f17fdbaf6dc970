"""The optimizer contract, written once.

An optimizer (or any gradient transformation) is a pair of pure functions::

    init(params) -> state
    update(grads, state, params=None, **extra) -> (updates, state)

held in the NamedTuple :class:`Optimizer`, and parameters move only through
:func:`apply_updates`.  ``state`` is a pytree of NamedTuples (one typed NamedTuple per
building block; a chain's state is the tuple of its blocks' states), so it can be
passed through ``jit``, ``vmap``, ``lax.scan`` and checkpoints unchanged.

Conventions every module in :mod:`lab.optim` follows:

* The signature is optax's, so a lab optimizer can sit inside ``optax.chain`` and an
  optax transform inside :func:`lab.optim.chain`.  Every lab ``update`` accepts
  ``**extra`` keyword arguments (such as ``value=`` for Polyak steps) and ignores
  those it does not use.  ``optax.chain`` forwards extra arguments only to objects of
  its own ``GradientTransformationExtraArgs`` type; wrap a lab optimizer that needs
  them as ``optax.GradientTransformationExtraArgs(*lab_opt)``.
* Hyperparameters (learning rates, betas, eps, weight decay) are data: Python
  numbers, arrays, or tracers inside ``jit``/``vmap``.  Scalar arithmetic on them is
  done in their own precision, then the result is cast to each leaf's dtype
  (:func:`cast_like`), so float32 parameters stay float32 and strict dtype promotion
  holds.  Only structural choices (``nesterov``, ``centered``, masks) are static.
* A hyperparameter given as a concrete Python number is range-checked when the
  optimizer is built (:func:`check_hyper`); arrays and tracers pass through untouched.
* A block that keeps parameter-shaped buffers checks that ``grads`` has the buffers'
  pytree structure and raises a ValueError naming both (:func:`check_structure`).
* Leaves of different dtypes meet only through the helpers below (:func:`same_dtype`,
  :func:`promoted`, the tree reductions): they combine them as JAX's *standard*
  promotion (and optax) would, written out, so the lab also runs under strict promotion.
  Scalar state shared by all leaves takes the lowest leaf dtype (:func:`lowest_dtype`).
  Sums over all leaves run leaf by leaf in tree order, each leaf reduced as optax
  reduces it (:func:`tree_sum`, :func:`tree_vdot`), so float64 results match optax's
  to rounding.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
from jax import lax

Params = Any  # a pytree of arrays
Updates = Any  # a pytree with the structure of Params
OptState = Any  # a pytree of NamedTuples
Schedule = Callable[[jax.Array], jax.Array]  # step count -> value
ScalarOrSchedule = Union[float, jax.Array, Schedule]


class Optimizer(NamedTuple):
    """A pair of pure functions; field-compatible with ``optax.GradientTransformation``."""

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]


class EmptyState(NamedTuple):
    """The state of a stateless transformation."""


def init_empty_state(params: Params) -> EmptyState:
    del params
    return EmptyState()


def identity() -> Optimizer:
    """The transformation that returns the updates unchanged: ``u = g``."""

    def update(updates, state, params=None, **extra):
        del params, extra
        return updates, state

    return Optimizer(init_empty_state, update)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Return ``params + updates`` leafwise, keeping each parameter's dtype.

    Raises ValueError naming both structures if ``updates`` is not shaped like ``params``."""
    check_structure("apply_updates", updates, params=params, what="updates")
    return jax.tree.map(lambda p, u: p + jnp.asarray(u, jnp.asarray(p).dtype), params, updates)


def accepts_extra_args(transform) -> bool:
    """Whether ``transform.update`` takes ``**kwargs`` (lab blocks and optax's ExtraArgs)."""
    try:
        parameters = inspect.signature(transform.update).parameters.values()
    except (TypeError, ValueError):  # builtins or C callables: assume the plain signature
        return False
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


# ------------------------------------------------------------------------ validation

def is_python_number(value) -> bool:
    """True for concrete Python ints and floats (bools excluded); arrays and tracers are not."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_hyper(where: str, name: str, value, interval: str) -> None:
    """Raise ValueError if the Python number ``value`` lies outside ``interval``.

    ``interval`` is written as in mathematics, e.g. ``"[0, 1)"`` or ``"(0, inf)"``.
    Arrays, tracers, schedules and ``None`` are not checked."""
    if not is_python_number(value):
        return
    left, right = interval[0], interval[-1]
    low, high = (float(s) for s in interval[1:-1].split(","))
    above = value > low if left == "(" else value >= low
    below = value < high if right == ")" else value <= high
    if not (above and below) or math.isnan(value):
        raise ValueError(f"{where}: {name}={value!r} is outside its valid range {interval}")


# The valid range of every range-checked hyperparameter, by argument name.
HYPER_RANGES = {
    "learning_rate": "[0, inf)", "max_learning_rate": "[0, inf)", "scaling": "[0, inf)",
    "b1": "[0, 1)", "b2": "[0, 1)", "b3": "[0, 1)", "beta": "[0, 1)", "rho": "[0, 1)",
    "decay": "[0, 1)", "momentum": "[0, 1)",
    "eps": "[0, inf)", "eps_root": "[0, inf)", "weight_decay": "[0, inf)",
    "initial_accumulator_value": "[0, inf)", "initial_scale": "[0, inf)",
    "eta_minus": "(0, 1]", "eta_plus": "[1, inf)", "min_step_size": "[0, inf)",
    "max_step_size": "(0, inf)", "eta": "[0, inf)", "gamma": "[0, inf)",
    "trust_coefficient": "[0, inf)", "min_norm": "[0, inf)", "max_delta": "[0, inf)",
    "max_norm": "[0, inf)", "max_consecutive_errors": "[0, inf)",
    "threshold": "[4, inf)",  # RAdam: the rectifier is NaN for SMA lengths in (2, 4)
}


def check_hypers(where: str, **values) -> None:
    """:func:`check_hyper` for each keyword, with the interval from ``HYPER_RANGES``."""
    for name, value in values.items():
        check_hyper(where, name, value, HYPER_RANGES[name])


def check_static_int(where: str, name: str, value, minimum: int) -> int:
    """A structural integer (an iteration cap, a memory size) must be a Python int >= minimum."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{where}: {name} must be a Python int (it fixes the compiled loop), "
                         f"got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{where}: {name}={value} must be >= {minimum}")
    return value


def need_params(where: str, params) -> None:
    """Raise ValueError for an ``update`` that needs the parameters and got none."""
    if params is None:
        raise ValueError(f"{where}: update needs params, got params=None")


def check_structure(where: str, grads: Updates, what: str = "grads", **buffers: Any) -> None:
    """Raise ValueError if ``grads`` and any named buffer have different pytree structures."""
    grads_def = jax.tree.structure(grads)
    for name, buffer in buffers.items():
        buffer_def = jax.tree.structure(buffer)
        if grads_def != buffer_def:
            raise ValueError(
                f"{where}: {what} have pytree structure {grads_def}, but {name} has structure "
                f"{buffer_def}; was init called with parameters of a different structure?")


# ------------------------------------------------------------------- numeric helpers

def as_float(value) -> jax.Array:
    """A hyperparameter as a floating array in its own precision (a Python float becomes
    float64 under x64)."""
    value = jnp.asarray(value)
    return value if jnp.issubdtype(value.dtype, jnp.floating) else value.astype(float)


def cast_like(value, leaf: jax.Array) -> jax.Array:
    """``value`` (a scalar hyperparameter or derived coefficient) in the dtype of ``leaf``."""
    return jnp.asarray(value, dtype=leaf.dtype)


def canonical_dtype(dtype) -> Any:
    return None if dtype is None else jnp.dtype(dtype)


def tree_cast(tree: Any, dtype) -> Any:
    """Cast every leaf to ``dtype``; ``dtype=None`` leaves the tree as it is."""
    return tree if dtype is None else jax.tree.map(lambda x: x.astype(dtype), tree)


def tree_zeros_like(tree: Any, dtype=None) -> Any:
    return jax.tree.map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def tree_full_like(tree: Any, value) -> Any:
    return jax.tree.map(lambda x: jnp.full_like(x, cast_like(value, x)), tree)


def safe_increment(count: jax.Array) -> jax.Array:
    """``count + 1`` that saturates at the dtype's maximum instead of overflowing."""
    top = jnp.asarray(jnp.iinfo(count.dtype).max, count.dtype)
    return jnp.where(count < top, count + jnp.ones_like(count), top)


def zero_count() -> jax.Array:
    return jnp.zeros([], jnp.int32)


# --------------------------------------------------------------------- mixed dtypes


def promote_types(*dtypes):
    """The dtype JAX's standard promotion gives ``dtypes`` (strict promotion, which the
    test suite runs under, refuses to look up float32 with float64)."""
    with jax.numpy_dtype_promotion("standard"):
        return functools.reduce(jnp.promote_types, dtypes)


def same_dtype(*arrays: jax.Array) -> tuple:
    """``arrays`` cast to their promoted dtype (say a float32 accumulator meeting float64
    gradients); arrays already of that dtype are returned as they are."""
    dtype = promote_types(*(x.dtype for x in arrays))
    return tuple(x.astype(dtype) for x in arrays)


def promoted(fn, a, b):
    """``fn(a, b)`` in the dtype standard promotion gives the pair, written out: a Python
    number stays weakly typed and takes the other's dtype; two arrays are cast to their
    promoted dtype first."""
    if is_python_number(a) or is_python_number(b):
        return fn(a, b)
    return fn(*same_dtype(a, b))


def like(value, leaf: jax.Array):
    """A hyperparameter (or a number formed from them) for arithmetic with ``leaf``: a
    Python number as it is, weakly typed, so it takes the leaf's dtype as in optax; an
    array (or tracer) cast to the leaf's dtype."""
    return value if is_python_number(value) else cast_like(value, leaf)


def _lower(a, b):
    """The lower of two dtypes (the one that promotes to the other), as optax orders them."""
    if promote_types(a, b) == b:
        return a
    if promote_types(a, b) == a:
        return b
    raise ValueError(f"dtypes {a} and {b} cannot be ordered: neither promotes to the other")


def lowest_dtype(tree: Any):
    """The lowest dtype among the leaves of ``tree`` (float32 in a float32/float64 tree;
    the default float for a tree without leaves): the dtype of scalar state in optax."""
    dtypes = [jnp.asarray(x).dtype for x in jax.tree.leaves(tree)]
    return functools.reduce(_lower, dtypes) if dtypes else jnp.asarray([]).dtype


# --------------------------------------------------------------------- tree arithmetic


def _tree_total(values: list) -> jax.Array:
    """``((0 + v_1) + v_2) + ...`` with each sum in the promoted dtype, optax's
    ``jax.tree.reduce(add, values, initializer=0)``."""
    if not values:
        return jnp.zeros([])
    return functools.reduce(lambda total, v: promoted(jnp.add, total, v), values, 0)


def tree_sum(tree: Any) -> jax.Array:
    """``sum_i sum(x_i)``: each leaf summed, then the leaves added in tree order."""
    return _tree_total([jnp.sum(x) for x in jax.tree.leaves(tree)])


def tree_sum_of_squares(tree: Any) -> jax.Array:
    """``sum_i ||x_i||^2``, accumulated leaf by leaf in tree order."""
    return _tree_total([jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)])


def tree_norm(tree: Any) -> jax.Array:
    """``sqrt(sum_i ||x_i||^2)`` with the leaves added in tree order."""
    return jnp.sqrt(tree_sum_of_squares(tree))


def tree_vdot(a: Any, b: Any) -> jax.Array:
    """``<a, b> = sum_i <a_i, b_i>``, each leaf a full contraction at the highest
    precision (in the leaves' promoted dtype), the leaves added in tree order."""
    def leaf(x, y):
        x, y = same_dtype(x, y)
        return jnp.tensordot(x, y, x.ndim, precision=lax.Precision.HIGHEST)

    return _tree_total(jax.tree.leaves(jax.tree.map(leaf, a, b)))


def tree_add_scaled(x: Any, alpha, y: Any) -> Any:
    """``x + alpha y`` leafwise; the scalar ``alpha`` is cast to each leaf's dtype."""
    return jax.tree.map(lambda a, b: a + cast_like(alpha, a) * b, x, y)


def tree_scale(alpha, x: Any) -> Any:
    """``alpha x`` leafwise, keeping each leaf's dtype."""
    return jax.tree.map(lambda a: cast_like(alpha, a) * a, x)


def tree_where(condition, x: Any, y: Any) -> Any:
    """``x`` where the scalar ``condition`` holds, else ``y`` (leafwise select)."""
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), x, y)
