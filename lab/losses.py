"""Loss functions: pure maps ``(predictions, targets) -> scalar``.

Contract: every loss takes ``predictions`` with a leading batch axis, ``targets``
of the shape named in its docstring, and returns the **mean over the batch axis
of the per-example loss**, where the per-example loss is the elementwise loss
**summed** over all remaining axes:

    L = (1 / B) sum_i sum_j ell(p_ij, t_ij),     i over the batch, j over the rest.

For 1-D inputs (one output per example) this is the plain mean.  For ``(B, d)``
inputs it is ``d`` times the mean over all elements; e.g. ``mse`` here is
``mean_i ||p_i - t_i||^2``, not ``mean_ij (p_ij - t_ij)^2``.

Shapes are checked, never broadcast: a prediction/target shape mismatch raises a
ValueError naming both shapes.  Targets are cast to the predictions' dtype (they
are data, not parameters).  Checks on target *values* (integer labels in range,
hinge labels in {-1, +1}) run only when the values are concrete; under ``jit``
they are tracers and each function's docstring says what happens instead.

Implementation: each public function validates in Python (shapes and dtypes are
static; label values only when concrete) and then computes with plain jax.numpy.
Nothing is jitted inside: wrap the loss (or the step that calls it) in ``jax.jit``.
(See ``_integer_softmax_cross_entropy`` for an XLA CPU miscompile this module avoids;
``tests/test_losses.py`` guards against it.)

``l2_penalty(params, weight)`` is the odd one out: a regulariser over a parameter
pytree, ``weight / 2 * sum ||leaf||^2``, whose gradient is ``weight * params``.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lab.activations import log_softmax, softplus

Array = jax.Array


def _prepare(predictions, targets, pred_name="predictions", target_name="targets"):
    """Validate a (predictions, targets) pair of equal shapes; returns both as arrays."""
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if not jnp.issubdtype(predictions.dtype, jnp.floating):
        raise TypeError(f"{pred_name} must be floating point; got dtype {predictions.dtype}")
    if predictions.ndim == 0:
        raise ValueError(f"{pred_name} must have a leading batch axis; got a scalar (shape ())")
    if predictions.shape != targets.shape:
        raise ValueError(
            f"{pred_name} have shape {predictions.shape} but {target_name} have shape "
            f"{targets.shape}; they must match exactly (no broadcasting)"
        )
    return predictions, targets


def _batch_mean(elementwise: Array) -> Array:
    """Sum over every axis but the first, then mean over the first (the batch)."""
    per_example = jnp.sum(elementwise.reshape(elementwise.shape[0], -1), axis=1)
    return jnp.mean(per_example)


def _is_concrete(x: Any) -> bool:
    return not isinstance(x, jax.core.Tracer)


# --- kernels: pure math on validated inputs; targets are cast to the predictions' dtype ---


def _squared_error(p, t):
    return _batch_mean(jnp.square(p - t.astype(p.dtype)))


def _absolute_error(p, t):
    return _batch_mean(jnp.abs(p - t.astype(p.dtype)))


def _huber(p, t, delta):
    delta = jnp.asarray(delta, p.dtype)
    abs_e = jnp.abs(p - t.astype(p.dtype))
    quadratic = 0.5 * jnp.square(abs_e)
    linear = delta * (abs_e - 0.5 * delta)
    return _batch_mean(jnp.where(abs_e <= delta, quadratic, linear))


def _sigmoid_cross_entropy(z, y):
    return _batch_mean(softplus(z) - z * y.astype(z.dtype))


def _softmax_cross_entropy(z, y):
    return _batch_mean(-y.astype(z.dtype) * log_softmax(z, axis=-1))


def _integer_softmax_cross_entropy(z, labels):
    # -log p_y picked with a gather whose out-of-range labels read NaN.  Not a
    # ``where(valid, ..., nan)`` mask: on jax 0.10.2 CPU, that select under ``jit(vmap)``
    # over 32 runs with shared labels returned runs 0-13's losses for runs 18-31.
    # A negative label would wrap around (Python indexing): send it past the end instead.
    index = jnp.where(labels < 0, z.shape[-1], labels)
    picked = jnp.take_along_axis(log_softmax(z, axis=-1), index[..., None], axis=-1,
                                 mode="fill", fill_value=jnp.nan)
    return _batch_mean(-picked[..., 0])


def _hinge(z, y):
    return _batch_mean(jnp.maximum(1 - y.astype(z.dtype) * z, jnp.zeros_like(z)))


# --- regression --------------------------------------------------------------


def mse(predictions: Array, targets: Array) -> Array:
    """Squared error, L2:  L = (1/B) sum_i ||p_i - t_i||^2  (no 1/2, summed over outputs).

    Relation to optax: ``optax.squared_error(p, t) = (p - t)^2`` elementwise, so
    ``mse = batch mean of squared_error summed per example``; ``optax.l2_loss(p, t)
    = 0.5 (p - t)^2`` elementwise, so ``mse`` is twice the same reduction of it.
    Gradient w.r.t. ``p_i``: ``2 (p_i - t_i) / B``."""
    return _squared_error(*_prepare(predictions, targets))


def mae(predictions: Array, targets: Array) -> Array:
    """Absolute error, L1:  L = (1/B) sum_i ||p_i - t_i||_1.

    Every error is penalised linearly, so a few outliers move it far less than
    ``mse``; its gradient ``sign(p - t) / B`` has the same size however close a
    prediction already is."""
    return _absolute_error(*_prepare(predictions, targets))


def huber(predictions: Array, targets: Array, delta: float | Array = 1.0) -> Array:
    """Huber loss: quadratic for small errors, linear for large ones.

        ell(e) = e^2 / 2                     if |e| <= delta
               = delta (|e| - delta / 2)     otherwise,          e = p - t,

    batch-averaged as in the module contract.  Elementwise it equals
    ``optax.huber_loss(p, t, delta)``.  Near 0 it is half the squared error; far
    away it is ``delta`` times the absolute error minus ``delta^2 / 2``; value and
    slope are continuous at ``|e| = delta``.  ``delta`` may be traced; a concrete
    ``delta <= 0`` raises ValueError."""
    if _is_concrete(delta) and not np.all(np.asarray(delta) > 0):
        raise ValueError(f"huber delta must be > 0; got {delta!r}")
    return _huber(*_prepare(predictions, targets), delta)


# --- classification ----------------------------------------------------------


def binary_cross_entropy_with_logits(logits: Array, labels: Array) -> Array:
    """Sigmoid cross-entropy from logits ``z`` and labels ``y`` in [0, 1] (same shape).

        ell(z, y) = -y log s(z) - (1 - y) log(1 - s(z)),    s = sigmoid,
                  = max(z, 0) - z y + log1p(exp(-|z|)).

    The second form never exponentiates a positive number, so it is finite and
    exact for |z| ~ 1e4 where the first gives ``log 0``.  Its first and last terms
    are softplus(z) = log(1 + e^z), and we compute them as ``softplus`` (a
    ``logaddexp``, which evaluates that same max/log1p form) because written out
    term by term JAX differentiates the kinks of max and |.| at z = 0 inconsistently
    (1/2 and 1) and would report the gradient -y instead of 1/2 - y there.  The
    gradient is ``(s(z) - y) / B``.  Elementwise the loss equals
    ``optax.sigmoid_binary_cross_entropy``."""
    return _sigmoid_cross_entropy(*_prepare(logits, labels, "logits", "labels"))


def softmax_cross_entropy(logits: Array, one_hot_labels: Array) -> Array:
    """Cross-entropy between softmax(logits) and target distributions along the last axis.

        ell_i = -sum_k y_ik log softmax(z_i)_k = logsumexp(z_i) - sum_k y_ik z_ik   (rows of y sum to 1)

    ``logits`` and ``one_hot_labels`` have the same shape ``(B, ..., K)``; rows of
    the labels may be one-hot or soft.  The log-softmax subtracts the row maximum
    first, so logits of size 1e4 are fine.  Gradient w.r.t. ``z_i``:
    ``(softmax(z_i) - y_i) / B``.  Per example it equals ``optax.softmax_cross_entropy``."""
    return _softmax_cross_entropy(*_prepare(logits, one_hot_labels, "logits", "one_hot_labels"))


def softmax_cross_entropy_with_integer_labels(logits: Array, labels: Array) -> Array:
    """``softmax_cross_entropy`` with labels given as class indices.

    ``logits`` has shape ``(B, ..., K)``; ``labels`` is an integer array of shape
    ``(B, ...)`` with values in ``[0, K)``.  ell_i = logsumexp(z_i) - z_{i, y_i}.

    Concrete labels outside ``[0, K)`` raise ValueError.  Under ``jit`` the labels
    are tracers and cannot be inspected; there an out-of-range label makes its
    example's loss, and therefore the returned mean, NaN (never a silent wrap-around
    or clamp to a real class).  Per example it equals
    ``optax.softmax_cross_entropy_with_integer_labels``."""
    z, labels = jnp.asarray(logits), jnp.asarray(labels)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise TypeError(f"logits must be floating point; got dtype {z.dtype}")
    if z.ndim < 2:
        raise ValueError(f"logits must have shape (batch, ..., num_classes); got shape {z.shape}")
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise TypeError(f"labels must be integer class indices; got dtype {labels.dtype}")
    if labels.shape != z.shape[:-1]:
        raise ValueError(
            f"logits have shape {z.shape}, so labels must have shape {z.shape[:-1]}; "
            f"got labels of shape {labels.shape}"
        )
    num_classes = z.shape[-1]
    if _is_concrete(labels) and labels.size:
        values = np.asarray(labels)
        lo, hi = int(values.min()), int(values.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"labels must lie in [0, {num_classes}) for {num_classes} classes; "
                f"got values in [{lo}, {hi}]"
            )
    return _integer_softmax_cross_entropy(z, labels)


def hinge(predictions: Array, labels: Array) -> Array:
    """Hinge loss for labels in {-1, +1}:  ell(z, y) = max(0, 1 - y z).

    Zero once an example is on the right side with margin >= 1, linear otherwise
    (the SVM loss).  Elementwise it equals ``optax.hinge_loss``.  Concrete labels
    other than -1 and +1 raise ValueError; under ``jit`` they cannot be checked and
    are used in the formula as given."""
    z, y = _prepare(predictions, labels, "predictions", "labels")
    if _is_concrete(y):
        bad = np.setdiff1d(np.unique(np.asarray(y)), [-1, 1])
        if bad.size:
            raise ValueError(f"hinge labels must be -1 or +1; got other values {bad.tolist()}")
    return _hinge(z, y)


# --- regularisation ----------------------------------------------------------


def l2_penalty(params: Any, weight: float | Array) -> Array:
    """Weight decay term  (weight / 2) * sum over leaves of ||leaf||^2.

    The 1/2 makes the gradient exactly ``weight * params`` (leafwise), so adding it
    to a loss and taking an SGD step with learning rate ``lr`` shrinks every
    parameter by the factor ``1 - lr * weight``.  ``weight`` may be traced.  An
    empty pytree gives 0."""
    squares = [jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(params)]
    total = sum(squares) if squares else jnp.zeros(())
    return 0.5 * jnp.asarray(weight, dtype=total.dtype) * total
