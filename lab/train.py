"""One training loop: mini-batch training of a pure loss with any optimizer.

Contract: ``loss_fn(params, x_batch, y_batch, key) -> scalar`` is a pure function;
``optimizer`` is anything with optax's ``init(params)`` / ``update(grads, state, params)``
(a ``lab.optim`` optimizer or an optax transform).  :func:`train` runs one compiled
``lax.scan`` per epoch over a shuffled index schedule (``lab.data.epoch_batches``),
so the host sees each epoch's end; it returns the final parameters and a history of
per-step training losses.  It never prints: pass ``callback(epoch, params, losses)``
to report progress or evaluate.  The sweep engine (:mod:`lab.sweep`) vmaps this same
step function, built with ``with_stats=True`` so that it also returns the gradient and
update norms.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lab import data
from lab.optim.base import accepts_extra_args, apply_updates


class TrainResult(NamedTuple):
    params: object
    opt_state: object
    step_losses: np.ndarray  # (epochs * iterations_per_epoch,), training loss before each update


class StepStats(NamedTuple):
    loss: jax.Array         # training loss on the batch, before the update
    grad_norm: jax.Array    # global L2 norm of the gradient
    update_norm: jax.Array  # global L2 norm of the update the optimizer returned


def global_norm(tree) -> jax.Array:
    """sqrt(sum of squares over every leaf), in the widest floating dtype among the leaves."""
    leaves = jax.tree_util.tree_leaves(tree)
    if not leaves:
        return jnp.zeros((), jnp.float32)
    dtype = np.result_type(*(leaf.dtype for leaf in leaves))
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)).astype(dtype) for leaf in leaves))


def make_step(loss_fn: Callable, optimizer, *, with_stats: bool = False) -> Callable:
    """The pure update step ``(params, opt_state, x, y, key) -> (params, opt_state, loss)``.

    Optimizers whose ``update`` takes ``**kwargs`` (every :mod:`lab.optim` optimizer and
    optax's ``GradientTransformationExtraArgs``; :func:`lab.optim.base.accepts_extra_args`) also get
    ``value`` (the batch loss), ``grad`` and ``value_fn`` (the batch loss as a function of
    the parameters, same batch and key), so Newton-type methods and line searches work
    here; the others get ``update(grads, state, params)``.  With ``with_stats=True`` the
    third output is a :class:`StepStats` (loss, gradient norm, update norm) instead of the
    bare loss; the update itself is the same."""
    extra_args = accepts_extra_args(optimizer)

    def step(params, opt_state, x, y, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y, key)
        if extra_args:
            updates, opt_state = optimizer.update(grads, opt_state, params, value=loss, grad=grads,
                                                  value_fn=lambda p: loss_fn(p, x, y, key))
        else:
            updates, opt_state = optimizer.update(grads, opt_state, params)
        params = apply_updates(params, updates)
        if with_stats:
            return params, opt_state, StepStats(loss, global_norm(grads), global_norm(updates))
        return params, opt_state, loss

    return step


def fit(loss: Callable, params, optimizer, steps: int):
    """Full-batch training of ``loss(params) -> scalar`` (the data closed over) for ``steps``
    updates, compiled as one ``lax.scan``; returns ``(params, values)``, ``values[t]`` the
    loss before update ``t``.  Optimizers that take extra arguments get ``value``, ``grad``
    and ``value_fn=loss`` as in :func:`make_step`."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    step = make_step(lambda p, x, y, key: loss(p), optimizer)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s, value = step(*carry, None, None, None)
            return (p, s), value
        (params, _), values = jax.lax.scan(body, (params, optimizer.init(params)), None, length=steps)
        return params, values

    return run(params)


def train(loss_fn: Callable, params, optimizer, x, y, *, key, batch_size: int, epochs: int,
          callback: Callable | None = None) -> TrainResult:
    """Train ``params`` for ``epochs`` passes of shuffled mini-batches (without replacement).

    Each epoch uses ``jax.random.fold_in(key, epoch)`` for its shuffle and per-step keys,
    so a run is reproducible from ``key`` alone.  ``x``/``y`` are checked with
    :func:`lab.data.check_dataset` first (NaN inputs and mismatched lengths are refused)."""
    data.check_dataset(x, y, name="training data")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    n = x.shape[0]
    step = make_step(loss_fn, optimizer)

    @jax.jit
    def run_epoch(params, opt_state, epoch_key):
        k_perm, k_steps = jax.random.split(epoch_key)
        batches = data.epoch_batches(k_perm, n, batch_size)
        keys = jax.random.split(k_steps, batches.shape[0])

        def body(carry, inputs):
            idx, k = inputs
            p, s, loss = step(*carry, x[idx], y[idx], k)
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), (batches, keys))
        return params, opt_state, losses

    opt_state = optimizer.init(params)
    history = []
    for epoch in range(epochs):
        params, opt_state, losses = run_epoch(params, opt_state, jax.random.fold_in(key, epoch))
        history.append(np.asarray(losses))
        if callback is not None:
            callback(epoch, params, history[-1])
    return TrainResult(params, opt_state, np.concatenate(history))


def accuracy(logits, labels) -> jax.Array:
    """Fraction of rows whose arg-max equals the integer label."""
    pred = jnp.argmax(logits, axis=-1)
    return jnp.mean((pred == jnp.asarray(labels).astype(pred.dtype)).astype(jnp.float32))
