"""Muon: momentum orthogonalised by a Newton-Schulz iteration, with Adam for the rest.

Contract: as in :mod:`lab.optim.adam_family` -- optax's names, argument names, defaults
and chain layout (here those of ``optax.contrib.muon`` and ``optax.contrib.scale_by_muon``),
so a lab state and an optax state compare leaf by leaf.  Each block returns an
:class:`~lab.optim.base.Optimizer` with one typed NamedTuple state.  ``beta``, ``eps``,
learning rates, weight decays and ``consistent_rms`` are data (tracers under ``vmap``
compile once); the Newton-Schulz step count, the preconditioning, ``nesterov``,
``adaptive`` and the dimension numbers are static.

Which leaves are matrices is said by *dimension numbers*: a
:class:`MuonDimensionNumbers` ``(reduction_axis, output_axis)`` per leaf (optax's own
``MuonDimensionNumbers`` is accepted too).  A leaf of more than two axes is treated as a
batch of ``(prod reduction axes) x (prod output axes)`` matrices, one per index of its
remaining axes.  In :func:`muon` a leaf whose dimension number is ``None`` (by default:
every leaf that is not 2-D) is updated by AdamW instead.

Also here: :func:`orthogonalize_via_newton_schulz`.  :func:`muon` routes the leaves with
:func:`~lab.optim.transforms.partition`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lab.optim.adam_family import adamw
from lab.optim.base import (Optimizer, Params, ScalarOrSchedule, as_float, canonical_dtype,
                            cast_like, check_hyper, check_hypers, check_static_int,
                            check_structure, init_empty_state, safe_increment, tree_cast,
                            tree_zeros_like, zero_count)
from lab.optim.moments import update_moment
from lab.optim.scale_rules import _first_moment_hat
from lab.optim.transforms import add_decayed_weights, chain, partition, scale_by_learning_rate

# Jordan's quintic: the largest slope at 0 that still maps (0, 1] into about [0.7, 1.2]
STANDARD_COEFFS = (3.4445, -4.7750, 2.0315)
# one quintic per step, from Ahn et al. (Dion), 2025; as in optax
DION_COEFFS = ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
               (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012))
COEFF_PRESETS = {"standard": STANDARD_COEFFS, "dion": DION_COEFFS}
PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a leaf are the matrix's rows (``x W = y``: reduced) and columns
    (output); every other axis is a batch axis, orthogonalised independently."""

    reduction_axis: Union[Sequence[int], int] = 0
    output_axis: Union[Sequence[int], int] = 1


DimensionSpec = Union[MuonDimensionNumbers, Any, Callable[[Params], Any], None]


def is_dimension_numbers(x) -> bool:
    """True for lab's or optax's ``MuonDimensionNumbers`` (anything with both fields)."""
    return isinstance(x, tuple) and hasattr(x, "reduction_axis") and hasattr(x, "output_axis")


def _axes(x: jax.Array, dims) -> tuple[tuple[int, ...], tuple[int, ...]]:
    as_tuple = lambda a: (a,) if isinstance(a, int) else tuple(a)
    return (tuple(a % x.ndim for a in as_tuple(dims.reduction_axis)),
            tuple(a % x.ndim for a in as_tuple(dims.output_axis)))


def _fans(x: jax.Array, dims) -> tuple[int, int]:
    reduction, output = _axes(x, dims)
    return math.prod(x.shape[a] for a in reduction), math.prod(x.shape[a] for a in output)


def _as_matrices(x: jax.Array, dims):
    """``(to, back)``: ``to(x)`` has shape (batch, fan_in, fan_out); ``back`` undoes it."""
    if x.ndim < 2:
        raise ValueError(f"muon: an orthogonalised leaf needs at least 2 axes, got shape "
                         f"{x.shape}; give it dimension number None to update it with Adam")
    reduction, output = _axes(x, dims)
    if set(reduction) & set(output):
        raise ValueError(f"muon: reduction axes {reduction} and output axes {output} overlap "
                         f"(leaf shape {x.shape}, dimension numbers {dims})")
    batch = tuple(a for a in range(x.ndim) if a not in reduction + output)
    order = batch + reduction + output
    inverse = tuple(sorted(range(x.ndim), key=lambda i: order[i]))
    sizes = lambda axes: tuple(x.shape[a] for a in axes)
    flat = tuple(math.prod(sizes(axes)) for axes in (batch, reduction, output))
    return (lambda y: y.transpose(order).reshape(flat),
            lambda y: y.reshape(sizes(batch) + sizes(reduction) + sizes(output)).transpose(inverse))


# ------------------------------------------------------------------- Newton-Schulz


def _quintic_from_gram(x: jax.Array, a: jax.Array, c: jax.Array) -> jax.Array:
    """``c0 X + (c1 A + c2 A^2) X`` given ``A = X X^T``."""
    return c[0] * x + (c[1] * a + c[2] * a @ a) @ x


def _quintic(x: jax.Array, c: jax.Array) -> jax.Array:
    """One step ``X <- c0 X + c1 (X X^T) X + c2 (X X^T)^2 X``."""
    return _quintic_from_gram(x, x @ x.T.conj(), c)


def _aol_quintic(x: jax.Array, c: jax.Array, eps) -> jax.Array:
    """The first step with AOL rescaling: rows scaled by ``(sum_j |A_ij|)^(-1/2)``
    (Boissin et al., *Turbo-Muon*, 2025), which bounds the spectral norm by 1."""
    a = x @ x.T.conj()
    s = lax.rsqrt(jnp.clip(jnp.abs(a).sum(axis=-1), min=cast_like(eps, a)))[:, None]
    return _quintic_from_gram(x * s, a * s * s.T, c)


def _schatten_quintic(x: jax.Array, c: jax.Array, eps) -> jax.Array:
    """The first step with ``X`` divided by its Schatten-4 norm ``||X X^T||_F^(1/2)``
    (Grishina et al., 2025)."""
    a = x @ x.T
    s = lax.rsqrt(jnp.clip(jnp.linalg.norm(a, ord="fro"), min=cast_like(eps, a)))
    return _quintic_from_gram(x * s, a * (s * s), c)


def _check_coeffs(ns_coeffs, ns_steps: int) -> None:
    shape = np.shape(ns_coeffs)
    if len(shape) not in (1, 2) or shape[-1] != 3:
        raise ValueError(f"muon: ns_coeffs must have shape (3,) or (n, 3), got {shape}")
    if len(shape) == 2 and shape[0] > ns_steps:
        raise ValueError(f"muon: {shape[0]} rows of ns_coeffs need ns_steps >= {shape[0]}, "
                         f"got ns_steps={ns_steps}")


def orthogonalize_via_newton_schulz(x: jax.Array, ns_coeffs, ns_steps: int = 5,
                                    preconditioning: str = "frobenius", eps=1e-8,
                                    dimension_numbers=None) -> jax.Array:
    """Approximately ``U V^T`` for ``x = U S V^T``: scale ``x`` so that ``||x||_2 <= 1``
    (``frobenius``: divide by ``||x||_F + eps``; ``spectral``: by ``||x||_2 + eps``;
    ``aol``/``schatten``: rescale inside the first step), then iterate the quintic
    ``X <- c0 X + c1 (X X^T) X + c2 (X X^T)^2 X`` (on the wide orientation of ``x``).

    ``ns_coeffs`` is one ``(c0, c1, c2)`` used ``ns_steps`` times, or an ``(n, 3)`` array
    of one row per step (then ``n`` steps are taken; ``ns_steps`` must be at least ``n``).
    With the standard coefficients the singular values land in roughly [0.7, 1.2], not
    at 1.  Reference: Jordan et al., *Muon*, 2024 (the quintic and its coefficients)."""
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"muon: preconditioning must be one of {PRECONDITIONINGS}, "
                         f"got {preconditioning!r}")
    if x.ndim != 2 and not is_dimension_numbers(dimension_numbers):
        raise ValueError(f"muon: a leaf of shape {x.shape} needs MuonDimensionNumbers")
    dims = MuonDimensionNumbers() if x.ndim == 2 else dimension_numbers
    ns_coeffs = jnp.asarray(ns_coeffs)
    _check_coeffs(ns_coeffs, ns_steps)
    first = {"aol": _aol_quintic, "schatten": _schatten_quintic}.get(preconditioning)

    def one_matrix(m):
        wide = m.shape[0] <= m.shape[1]
        m = m if wide else m.T
        if preconditioning == "frobenius":
            m = m / (jnp.linalg.norm(m, ord="fro") + cast_like(eps, m))
        elif preconditioning == "spectral":
            m = m / (jnp.linalg.norm(m, ord=2) + cast_like(eps, m))
        coeffs = ns_coeffs.astype(m.dtype)
        rows = [coeffs] * ns_steps if coeffs.ndim == 1 else list(coeffs)
        for i, c in enumerate(rows):
            m = first(m, c, eps) if (i == 0 and first is not None) else _quintic(m, c)
        return m if wide else m.T

    to, back = _as_matrices(x, dims)
    return back(jax.vmap(one_matrix)(to(x)))


def _dims_tree(spec: DimensionSpec, updates) -> Any:
    """One dimension number per leaf of ``updates`` (``None`` becomes the 2-D default);
    ``spec`` is None, one dimension number, a prefix tree of them, or a function of the
    updates returning such a tree.  Masked-out subtrees stay masked out."""
    if callable(spec) and not is_dimension_numbers(spec):
        spec = spec(updates)
    spread = lambda d, sub: jax.tree.map(
        lambda _: MuonDimensionNumbers() if d is None else d, sub)
    if spec is None or is_dimension_numbers(spec):
        return spread(spec, updates)
    return jax.tree.map(spread, spec, updates,
                        is_leaf=lambda d: d is None or is_dimension_numbers(d))


# ------------------------------------------------------------------------ blocks


class MuonState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Params  # EMA of g (momentum), shaped like params
    ns_coeffs: jax.Array  # shape (3,) or (n, 3): the Newton-Schulz coefficients


def _resolve_coeffs(ns_coeffs, ns_steps):
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in COEFF_PRESETS:
            raise ValueError(f"muon: ns_coeffs preset must be one of {sorted(COEFF_PRESETS)}, "
                             f"got {ns_coeffs!r}")
        ns_coeffs = COEFF_PRESETS[ns_coeffs]
    check_static_int("muon", "ns_steps", ns_steps, 1)
    _check_coeffs(ns_coeffs, ns_steps)
    return ns_coeffs


def scale_by_muon(ns_coeffs=STANDARD_COEFFS, ns_steps: int = 5, beta=0.95, eps=1e-8,
                  mu_dtype=None, *, nesterov: bool = True, adaptive: bool = False,
                  preconditioning: str = "frobenius",
                  weight_dimension_numbers: DimensionSpec = None) -> Optimizer:
    """Muon direction: ``m_t = beta m_{t-1} + (1 - beta) g_t``;
    ``u_t = NS(m_hat)`` (``NS`` = :func:`orthogonalize_via_newton_schulz`), with
    ``m_hat = m_t / (1 - beta^t)`` or Nesterov's
    ``beta m_t / (1 - beta^(t+1)) + (1 - beta) g_t / (1 - beta^t)``; ``adaptive`` scales
    ``u_t`` by ``<m_hat, u_t>``, the dual norm (Bernstein & Newhouse, 2024).  Every leaf
    is orthogonalised; see :func:`muon` for the Adam fallback.  ``ns_coeffs`` may be a
    preset name (``"standard"``, ``"dion"``).

    Reference: Jordan et al., *Muon: an optimizer for hidden layers*, 2024."""
    check_hypers("scale_by_muon", beta=beta, eps=eps)
    ns_coeffs = _resolve_coeffs(ns_coeffs, ns_steps)
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(f"scale_by_muon: preconditioning must be one of {PRECONDITIONINGS}, "
                         f"got {preconditioning!r}")
    mu_dtype = canonical_dtype(mu_dtype)

    def init(params):
        return MuonState(count=zero_count(), mu=tree_zeros_like(params, mu_dtype),
                         ns_coeffs=as_float(jnp.asarray(ns_coeffs)))

    def update(updates, state, params=None, **extra):
        check_structure("scale_by_muon", updates, mu=state.mu)
        dims = _dims_tree(weight_dimension_numbers, updates)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, beta, 1), updates, state.mu)
        count = safe_increment(state.count)
        mu_hat = _first_moment_hat(mu, updates, beta, count, nesterov)
        ortho = jax.tree.map(lambda m, d: orthogonalize_via_newton_schulz(
            m, state.ns_coeffs, ns_steps, preconditioning, eps, d), mu_hat, dims)
        if adaptive:
            ortho = jax.tree.map(lambda m, o: jnp.sum(m.conj() * o) * o, mu_hat, ortho)
        return ortho, MuonState(count=count, mu=tree_cast(mu, mu_dtype), ns_coeffs=state.ns_coeffs)

    return Optimizer(init, update)


def scale_by_shape(weight_dimension_numbers: DimensionSpec = None,
                   consistent_rms=None) -> Optimizer:
    """Shape-dependent scale per leaf, with ``(fan_in, fan_out)`` the matrix's size:
    ``u = sqrt(max(1, fan_out / fan_in)) g`` (Jordan's width transfer), or with
    ``consistent_rms = r``: ``u = r sqrt(max(fan_in, fan_out)) g``, which gives an
    orthogonal update the RMS ``r`` (Liu et al., *Muon is scalable for LLM training*, 2025)."""
    check_hyper("scale_by_shape", "consistent_rms", consistent_rms, "[0, inf)")

    def factor(fan_in, fan_out):
        if consistent_rms is None:
            return math.sqrt(max(1, fan_out / fan_in))
        return jnp.sqrt(as_float(float(max(fan_in, fan_out)))) * as_float(consistent_rms)

    def update(updates, state, params=None, **extra):
        dims = _dims_tree(weight_dimension_numbers, updates)
        scaled = jax.tree.map(lambda g, d: cast_like(factor(*_fans(g, d)), g) * g, updates, dims)
        return scaled, state

    return Optimizer(init_empty_state, update)


# ------------------------------------------------------------------------ muon


def muon(learning_rate: ScalarOrSchedule, ns_coeffs=STANDARD_COEFFS, ns_steps: int = 5,
         beta=0.95, eps=1e-8, weight_decay=0.0, weight_decay_mask=None, mu_dtype=None, *,
         nesterov: bool = True, adaptive: bool = False, preconditioning: str = "frobenius",
         adam_b1=0.9, adam_b2=0.999, adam_eps_root=0.0, adam_weight_decay=0.0,
         adam_learning_rate: Optional[ScalarOrSchedule] = None,
         muon_weight_dimension_numbers: DimensionSpec = None, consistent_rms=None) -> Optimizer:
    """Muon on the matrices, AdamW on the other leaves.  For a matrix leaf,
    ``u_t = -lr (s NS(m_hat) + wd p)`` with ``s`` from :func:`scale_by_shape` and
    ``NS(m_hat)`` from :func:`scale_by_muon`; every other leaf gets
    ``adamw(adam_learning_rate or lr, adam_b1, adam_b2, eps, adam_eps_root,
    adam_weight_decay, nesterov=nesterov)`` (NAdamW by default, as in optax).
    ``muon_weight_dimension_numbers`` (a tree of :class:`MuonDimensionNumbers` or None,
    or a function of the params returning one) picks the matrices; by default every 2-D
    leaf.  The state is :func:`~lab.optim.transforms.partition`'s
    ``PartitionState({"adam": ..., "muon": ...})``.

    References: Jordan et al., *Muon: an optimizer for hidden layers in neural
    networks*, 2024; Liu et al., *Muon is scalable for LLM training*, 2025."""
    check_hypers("muon", learning_rate=learning_rate, beta=beta, eps=eps,
                 weight_decay=weight_decay)
    for name, value in (("adam_b1", adam_b1), ("adam_b2", adam_b2)):
        check_hyper("muon", name, value, "[0, 1)")
    for name, value in (("adam_eps_root", adam_eps_root), ("adam_weight_decay", adam_weight_decay),
                        ("adam_learning_rate", adam_learning_rate),
                        ("consistent_rms", consistent_rms)):
        check_hyper("muon", name, value, "[0, inf)")
    ns_coeffs = _resolve_coeffs(ns_coeffs, ns_steps)
    spec = muon_weight_dimension_numbers
    is_spec_leaf = lambda d: d is None or is_dimension_numbers(d)

    def labels(tree):
        if spec is None:
            return jax.tree.map(lambda x: "muon" if x.ndim == 2 else "adam", tree)
        resolved = spec(tree) if callable(spec) and not is_dimension_numbers(spec) else spec
        return jax.tree.map(lambda d, sub: jax.tree.map(
            lambda _: "adam" if d is None else "muon", sub), resolved, tree, is_leaf=is_spec_leaf)

    muon_part = chain(
        scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov=nesterov,
                      adaptive=adaptive, preconditioning=preconditioning,
                      weight_dimension_numbers=spec),
        scale_by_shape(spec, consistent_rms),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate))
    adam_part = adamw(learning_rate if adam_learning_rate is None else adam_learning_rate,
                      b1=adam_b1, b2=adam_b2, eps=eps, eps_root=adam_eps_root,
                      mu_dtype=mu_dtype, weight_decay=adam_weight_decay, nesterov=nesterov)
    return partition({"muon": muon_part, "adam": adam_part}, labels)
