"""Curvature products: Hessian-vector, Gauss-Newton-vector, full-batch sums, the dense Hessian.

Every function here takes the loss as a plain function ``f(params, *args) -> scalar`` and
returns a pytree shaped like ``params`` (or, for the flat helpers, a 1-D array in
``ravel_pytree(params)`` order).  Nothing is jitted inside: call these under ``jax.jit``
(closing over ``f``) and every product compiles to a single XLA program.

* ``hessian_vector_product``: ``H v = d/dt grad f(params + t v) |_{t=0}``, forward-over-
  reverse (``jax.jvp`` of ``jax.grad``; Pearlmutter 1994).  Cost: about one gradient
  plus one forward-mode pass, i.e. a small constant times a gradient, and no P x P memory.
* ``gauss_newton_vector_product``: ``G v = J^T H_L J v`` for ``L(params) = loss_fn(model_fn(params))``,
  with ``J`` the Jacobian of the model outputs and ``H_L`` the Hessian of the loss in the
  outputs (Schraudolph 2002; Martens 2010).  ``G`` is PSD whenever ``loss_fn`` is convex.
* ``full_batch_loss`` / ``full_batch_hvp``: the mean over a stack of equal-size mini-batches,
  accumulated with ``lax.scan`` so memory is that of one batch.
* ``hessian_matvec``: the flat operator ``x -> H x`` that the matrix-free algorithms in
  :mod:`lab.curvature.lanczos` and :mod:`lab.curvature.stochastic` consume.
* ``hessian_matrix``: the dense ``(P, P)`` Hessian, built column by column from HVPs, refused
  (``HessianTooLarge``) before anything is allocated when ``P*P*itemsize > max_bytes``.

References: B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation
1994.  N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
descent", Neural Computation 2002.  J. Martens, "Deep learning via Hessian-free optimization",
ICML 2010.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.flatten_util import ravel_pytree

Array = jax.Array
Params = Any  # a pytree of arrays
Matvec = Callable[[Array], Array]  # flat (P,) vector -> flat (P,) vector

GIB = 1024 ** 3


class HessianTooLarge(ValueError):
    """The dense Hessian would need more bytes than the caller allowed (``max_bytes``)."""


class FlatHessian(NamedTuple):
    """The Hessian as a matrix-free operator on flat vectors."""

    matvec: Matvec      # (P,) -> (P,): x -> H x, in ravel_pytree(params) order
    flat_params: Array  # (P,) the parameters, raveled; its size and dtype define the space
    unravel: Callable[[Array], Params]  # (P,) -> pytree shaped like params


def like_params(who: str, v: Params, params: Params) -> Params:
    """Return ``v`` with each leaf cast to the matching parameter's dtype.

    Raises ValueError naming both sides if ``v`` does not have the structure or the leaf
    shapes of ``params`` (a tangent must live in the parameters' space)."""
    sv, sp = jax.tree.structure(v), jax.tree.structure(params)
    if sv != sp:
        raise ValueError(f"{who}: v has pytree structure {sv} but params have structure {sp}; "
                         "v must be shaped like params")
    leaves_v, leaves_p = jax.tree.leaves(v), jax.tree.leaves(params)
    for i, (a, b) in enumerate(zip(leaves_v, leaves_p)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(f"{who}: leaf {i} of v has shape {jnp.shape(a)} but the matching "
                             f"parameter has shape {jnp.shape(b)}")
    return jax.tree.map(lambda a, b: jnp.asarray(a).astype(jnp.asarray(b).dtype), v, params)


def hessian_vector_product(f: Callable[..., Array], params: Params, v: Params, *args) -> Params:
    """``H v`` where ``H`` is the Hessian of ``f(params, *args)`` in ``params``.

    Forward-over-reverse: ``jax.jvp(grad f, (params,), (v,))``, which differentiates the
    gradient along ``v`` (Pearlmutter 1994).  ``v`` must be shaped like ``params``; it is
    cast to the parameters' dtypes.  Returns a pytree shaped like ``params``."""
    v = like_params("hessian_vector_product", v, params)

    def gradient(p):
        return jax.grad(f)(p, *args)

    return jax.jvp(gradient, (params,), (v,))[1]


def gauss_newton_vector_product(model_fn: Callable[..., Any], loss_fn: Callable[[Any], Array],
                                params: Params, v: Params, *args) -> Params:
    """``G v = J^T H_L J v``, the generalised Gauss-Newton matrix times ``v``.

    **Arguments:**

    * ``model_fn(params, *args) -> outputs``: the network; ``outputs`` is any pytree of arrays
      (usually the logits or predictions of a batch); ``args`` are the inputs.
    * ``loss_fn(outputs) -> scalar``: the loss of the outputs **only**; close over the targets
      (``loss_fn = lambda out: lab.losses.mse(out, y)``).
    * ``params``, ``v``: pytrees of the same structure.

    With ``z = model_fn(params, *args)``, ``J = dz/dparams`` and ``H_L = d^2 loss_fn / dz^2``:
    one linearisation of the model gives ``J v`` (forward) and ``J^T u`` (its transpose), and a
    forward-over-reverse pass of ``loss_fn`` gives ``u = H_L (J v)``.  The model's second
    derivatives are dropped, which is what keeps ``G`` PSD for convex losses (Schraudolph 2002).
    """
    v = like_params("gauss_newton_vector_product", v, params)

    def model(p):
        return model_fn(p, *args)

    outputs, jvp_fn = jax.linearize(model, params)
    jv = jvp_fn(v)                                               # J v, shaped like outputs
    hjv = jax.jvp(jax.grad(loss_fn), (outputs,), (jv,))[1]       # H_L J v
    (g,) = jax.linear_transpose(jvp_fn, params)(hjv)             # J^T H_L J v
    return g


def num_batches(who: str, batches: Any) -> int:
    """The common leading size of every leaf of ``batches``; ValueError if they disagree."""
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError(f"{who}: batches has no arrays; pass a pytree whose leaves are stacked "
                         "mini-batches with a leading batch-index axis")
    sizes = [jnp.shape(leaf)[0] if jnp.ndim(leaf) > 0 else None for leaf in leaves]
    if None in sizes or len(set(sizes)) != 1:
        shapes = [jnp.shape(leaf) for leaf in leaves]
        raise ValueError(f"{who}: every leaf of batches needs the same leading (batch-index) axis; "
                         f"got leaf shapes {shapes}")
    if sizes[0] == 0:
        raise ValueError(f"{who}: batches holds zero mini-batches")
    return sizes[0]


def full_batch_loss(f: Callable[[Params, Any], Array], params: Params, batches: Any) -> Array:
    """``(1/B) sum_b f(params, batch_b)`` over the leading axis of ``batches``, by ``lax.map``.

    When ``f`` is a batch-mean loss and every mini-batch has the same size, this is the mean
    loss over the whole data set."""
    n = num_batches("full_batch_loss", batches)
    return jnp.sum(lax.map(lambda batch: f(params, batch), batches)) / n


def full_batch_hvp(f: Callable[[Params, Any], Array], params: Params, v: Params,
                   batches: Any) -> Params:
    """``(1/B) sum_b H_b v`` with ``H_b`` the Hessian of ``f(params, batch_b)``.

    ``batches`` is a pytree whose leaves stack ``B`` equal-size mini-batches on a leading axis
    (e.g. ``(x, y)`` with ``x: (B, batch, d)``).  The per-batch products are summed in a
    ``lax.scan`` carry, so peak memory is one batch's HVP rather than the whole data set's.
    Equals ``hessian_vector_product(full_batch_loss-of-f, ...)`` (the Hessian of the mean
    over batches) exactly, up to rounding."""
    v = like_params("full_batch_hvp", v, params)
    n = num_batches("full_batch_hvp", batches)

    def accumulate(total, batch):
        hv = hessian_vector_product(f, params, v, batch)
        return jax.tree.map(jnp.add, total, hv), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    total, _ = lax.scan(accumulate, zeros, batches)
    return jax.tree.map(lambda t: t / n, total)


def hessian_matvec(f: Callable[..., Array], params: Params, *args,
                   over_batches: bool = False) -> FlatHessian:
    """The Hessian of ``f`` at ``params`` as a flat operator ``x -> H x`` (see ``FlatHessian``).

    With ``over_batches=False`` the Hessian is that of ``f(params, *args)`` (one mini-batch,
    or the full data if ``args`` hold it).  With ``over_batches=True``, ``args`` must be one
    pytree of stacked mini-batches and the operator is ``full_batch_hvp`` (the Hessian of the
    mean loss over all batches, one batch in memory at a time)."""
    flat, unravel = ravel_pytree(params)
    if over_batches:
        if len(args) != 1:
            raise ValueError("hessian_matvec: over_batches=True takes exactly one extra argument, "
                             f"the pytree of stacked mini-batches; got {len(args)} arguments")
        batches = args[0]

        def product(v):
            return full_batch_hvp(f, params, v, batches)
    else:
        def product(v):
            return hessian_vector_product(f, params, v, *args)

    def matvec(x):
        x = jnp.asarray(x)
        if x.shape != flat.shape:
            raise ValueError(f"hessian matvec: x has shape {x.shape} but the raveled parameters "
                             f"have shape {flat.shape}")
        return ravel_pytree(product(unravel(x.astype(flat.dtype))))[0]

    return FlatHessian(matvec, flat, unravel)


def hessian_matrix(f: Callable[..., Array], params: Params, *args, max_bytes: int = 2 * GIB,
                   chunk_size: int | None = None) -> Array:
    """The dense Hessian of ``f(params, *args)``, a ``(P, P)`` array in ``ravel_pytree`` order.

    Column ``j`` is ``H e_j``, an HVP with the j-th unit vector; columns are computed
    ``chunk_size`` at a time (``vmap`` inside ``lax.map``).  The default, 32, was the fastest
    on a 2-core CPU for P ~ 1e3 .. 3e3 (16-64 within 2x; a single vmap over all P columns was
    5x slower and holds P HVPs' intermediates at once); accelerators may prefer more.  Before anything is traced or allocated, raises ``HessianTooLarge`` if
    ``P * P * itemsize`` exceeds ``max_bytes`` (default 2 GiB), naming P and the GiB needed."""
    flat, _ = ravel_pytree(params)
    p, itemsize = int(flat.size), jnp.dtype(flat.dtype).itemsize
    need = p * p * itemsize
    if need > max_bytes:
        raise HessianTooLarge(
            f"hessian_matrix: the dense Hessian of P = {p:,} parameters needs P*P*{itemsize} = "
            f"{need:,} bytes ({need / GIB:.3g} GiB), over max_bytes = {max_bytes:,} "
            f"({max_bytes / GIB:.3g} GiB); use the matrix-free tools (hessian_vector_product, "
            "top_eigenvalues, hutchinson_trace, spectral_density) or raise max_bytes")
    if chunk_size is None:
        chunk_size = 32
    if not (isinstance(chunk_size, int) and chunk_size >= 1):
        raise ValueError(f"hessian_matrix: chunk_size must be a positive int, got {chunk_size!r}")
    chunk_size = min(chunk_size, p)
    matvec = hessian_matvec(f, params, *args).matvec
    n_chunks = -(-p // chunk_size)

    def columns(start):
        index = start + jnp.arange(chunk_size)
        unit = (index[:, None] == jnp.arange(p)[None, :]).astype(flat.dtype)  # (chunk, P)
        return jax.vmap(matvec)(unit)                                          # rows = H e_j

    blocks = lax.map(columns, jnp.arange(n_chunks) * chunk_size)  # (n_chunks, chunk, P)
    # Row j of the stack is H e_j = column j of H; padding rows (j >= P) are dropped.
    return blocks.reshape(n_chunks * chunk_size, p)[:p].T
