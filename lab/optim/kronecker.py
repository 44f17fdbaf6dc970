"""Shampoo and SOAP: Kronecker-factored preconditioning of matrix leaves.

Contract: as in :mod:`lab.optim.adam_family` -- :func:`shampoo` (grafted onto Adam or SGD)
and :func:`soap` (Adam in the eigenbasis of Shampoo's factors) return an
:class:`~lab.optim.base.Optimizer` whose ``update(grads, state, params=None, **extra)``
gives the whole step ``u`` (learning rate and sign included, ``p <- p + u``) and whose
state is one NamedTuple (:class:`ShampooState`, :class:`SoapState`).  The learning rate,
betas, epsilons and weight decay are data (traceable, so a ``vmap`` over them compiles
once); the refresh period, the root method, its iteration count, the graft and the size
bound are static keyword arguments.

Leaves.  A leaf with two or more axes is a *matrix leaf*: it is viewed as the matrix
``G`` of shape ``(m, n) = (prod(shape[:-1]), shape[-1])`` and gets Kronecker factors
``L`` (m x m) and ``R`` (n x n), unless ``m`` or ``n`` exceeds ``max_precondition_dim``.
Every other leaf (vectors, scalars, oversized matrices) takes the graft optimizer's step
unchanged (Adam's, for SOAP).  The factors' state is a tuple with one entry per matrix
leaf, in ``jax.tree.leaves`` order.

Refresh.  The factors are updated every step; their inverse roots (Shampoo) or
eigenvectors (SOAP) are recomputed on steps ``1, f + 1, 2f + 1, ...``
(``f = precondition_frequency``) under ``lax.cond``, so the whole update jits.
"""
from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from lab.optim.base import (Optimizer, Params, ScalarOrSchedule, cast_like, check_hyper,
                            check_hypers, check_static_int, check_structure, is_python_number,
                            safe_increment, tree_zeros_like, zero_count)
from lab.optim.moments import bias_correct, update_moment
from lab.optim.newton import learning_rate_at

ROOT_METHODS = ("eigh", "newton")
GRAFTS = ("adam", "sgd")
DEFAULT_MAX_DIM = 4096  # a side longer than this is not preconditioned (eigh is O(n^3))

# ------------------------------------------------------------------ shared helpers


class MatrixLeaf(NamedTuple):
    index: int  # position in jax.tree.leaves(params)
    shape: tuple[int, int]  # (m, n): the leaf seen as a matrix


def matrix_leaves(leaves: Sequence[Any], max_dim: int) -> tuple[MatrixLeaf, ...]:
    """The leaves that get Kronecker factors: two or more axes, both sides <= ``max_dim``."""
    found = []
    for i, leaf in enumerate(leaves):
        shape = tuple(jnp.shape(leaf))
        if len(shape) >= 2:
            m, n = math.prod(shape[:-1]), shape[-1]
            if 0 < m <= max_dim and 0 < n <= max_dim:
                found.append(MatrixLeaf(i, (m, n)))
    return tuple(found)


def check_factor_decay(where: str, name: str, value) -> None:
    """A factor decay lies in ``[0, 1]``; 1 means a plain sum (no averaging)."""
    check_hyper(where, name, value, "[0, 1]")


def update_factor(factor: jax.Array, outer: jax.Array, decay) -> jax.Array:
    """``F <- decay F + w outer`` with ``w = 1 - decay``, or ``w = 1`` when ``decay = 1``
    (the running sum of Gupta et al.)."""
    decay = cast_like(decay, factor)
    weight = jnp.where(decay == 1, jnp.ones_like(decay), 1 - decay)
    return decay * factor + weight * outer.astype(factor.dtype)


def init_factors(leaves, matrices: Sequence[MatrixLeaf]) -> tuple[tuple, tuple]:
    """Zero factors ``(L, R)`` per matrix leaf, in the leaf's dtype."""
    dtypes = [jnp.asarray(leaves[leaf.index]).dtype for leaf in matrices]
    left = tuple(jnp.zeros((m, m), d) for (_, (m, _)), d in zip(matrices, dtypes))
    right = tuple(jnp.zeros((n, n), d) for (_, (_, n)), d in zip(matrices, dtypes))
    return left, right


def accumulate_factors(leaves, matrices, left, right, decay) -> tuple[tuple, tuple]:
    """``L <- decay L + w G G^T`` and ``R <- decay R + w G^T G`` for each matrix leaf."""
    grads = [leaves[leaf.index].reshape(leaf.shape) for leaf in matrices]
    left = tuple(update_factor(f, g @ g.T, decay) for f, g in zip(left, grads))
    right = tuple(update_factor(f, g.T @ g, decay) for f, g in zip(right, grads))
    return left, right


def check_leaf_shapes(where: str, grads, state_tree) -> None:
    """Raise ValueError naming both shapes when a gradient leaf is not shaped like its buffer."""
    for i, (g, s) in enumerate(zip(jax.tree.leaves(grads), jax.tree.leaves(state_tree))):
        if jnp.shape(g) != jnp.shape(s):
            raise ValueError(f"{where}: grads leaf {i} has shape {jnp.shape(g)}, but the state "
                             f"was initialised for shape {jnp.shape(s)}")


def refresh_every(frequency: int, count: jax.Array, refresh, keep, operands):
    """``refresh(operands)`` on steps 1, f + 1, 2f + 1, ... (``count`` = steps before this
    one), else ``keep(operands)``; a ``lax.cond``, so it jits and vmaps."""
    if frequency == 1:
        return refresh(operands)
    return lax.cond(count % frequency == 0, refresh, keep, operands)


def check_weight_decay_params(where: str, weight_decay, params) -> None:
    if params is None and not (is_python_number(weight_decay) and weight_decay == 0):
        raise ValueError(f"{where}: weight_decay={weight_decay!r} needs params; "
                         "call update(grads, state, params)")


def decoupled_step(directions, params, learning_rate, weight_decay):
    """``u = -lr (d + wd p)`` leafwise (``u = -lr d`` without params), in each leaf's dtype."""
    if params is None:
        return jax.tree.map(lambda d: -cast_like(learning_rate, d) * d, directions)
    return jax.tree.map(
        lambda d, p: -cast_like(learning_rate, d) * (d + cast_like(weight_decay, p) * p),
        directions, params)


# ------------------------------------------------------------------ inverse roots


def inverse_root(matrix: jax.Array, p: int, eps, *, method: str = "eigh",
                 newton_iterations: int = 40) -> jax.Array:
    """``(S + eps I)^{-1/p}`` for a symmetric positive semi-definite ``S``.

    ``method="eigh"``: ``S = Q diag(w) Q^T``, then ``Q diag((max(w, 0) + eps)^{-1/p}) Q^T``
    (negative round-off eigenvalues clipped).  ``method="newton"``: the coupled Newton
    iteration on ``M = S + eps I`` with ``z = (1 + p) / (2 ||M||_F)``,
    ``M_0 = z M``, ``H_0 = z^{1/p} I`` and, ``newton_iterations`` times (static),
    ``T = ((1 + p) I - M_k) / p``, ``M_{k+1} = T^p M_k``, ``H_{k+1} = H_k T``; then
    ``H_k -> M^{-1/p}`` (the eigenvalues of ``M_0`` lie in ``(0, (1 + p) / 2]``, inside the
    region of convergence).  Each iteration costs about ``p`` matrix products and no
    decomposition; convergence is linear (factor ``(1 + 1/p)^{-p}``) while an eigenvalue of
    ``M_k`` is far below 1, so ill-conditioned ``M`` need more iterations.

    References: Gupta, Koren & Singer, 2018 (eigendecomposition); Guo & Higham, *SIAM J.
    Matrix Anal. Appl.* 28, 2006, and Anil et al., 2020, sec. 3.2 (coupled Newton)."""
    if method == "eigh":
        w, q = jnp.linalg.eigh(matrix)
        scale = (jnp.maximum(w, jnp.zeros_like(w)) + cast_like(eps, w)) ** cast_like(-1.0 / p, w)
        return (q * scale[None, :]) @ q.T
    if method != "newton":
        raise ValueError(f"inverse_root: method must be one of {ROOT_METHODS}, got {method!r}")
    eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype)
    shifted = matrix + cast_like(eps, matrix) * eye
    z = cast_like((1 + p) / 2, matrix) / jnp.sqrt(jnp.sum(jnp.square(shifted)))

    def step(_, carry):
        m, h = carry
        t = (cast_like(1 + p, m) * eye - m) / cast_like(p, m)
        return jnp.linalg.matrix_power(t, p) @ m, h @ t

    _, root = lax.fori_loop(0, newton_iterations, step,
                            (z * shifted, z ** cast_like(1.0 / p, z) * eye))
    return root


# ------------------------------------------------------------------------ Shampoo


class ShampooState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    mu: Params  # EMA of g (b1), shaped like params
    nu: Optional[Params]  # the Adam graft's EMA of g^2 (graft_b2); None for the SGD graft
    left: tuple  # per matrix leaf: L, (m, m)
    right: tuple  # per matrix leaf: R, (n, n)
    left_root: tuple  # per matrix leaf: (L + eps I)^{-1/4} at the last refresh
    right_root: tuple  # per matrix leaf: (R + eps I)^{-1/4} at the last refresh


def shampoo(learning_rate: ScalarOrSchedule = 1e-3, b1=0.9, b2=1.0, eps=1e-6,
            graft_b2=0.999, graft_eps=1e-8, weight_decay=0.0, *,
            precondition_frequency: int = 10, root_method: str = "eigh",
            newton_iterations: int = 40, graft: str = "adam",
            max_precondition_dim: int = DEFAULT_MAX_DIM) -> Optimizer:
    """Shampoo with layer-wise grafting.  Per matrix leaf ``G`` (and ``t`` from 1)::

        L_t = b2 L_{t-1} + (1 - b2) G G^T,  R_t = b2 R_{t-1} + (1 - b2) G^T G   (b2 = 1: sums)
        m_t = b1 m_{t-1} + (1 - b1) G,      m^ = m_t / (1 - b1^t)
        S_t = (L + eps I)^{-1/4} m^ (R + eps I)^{-1/4}   (roots from the last refresh)
        D_t = ||A_t||_F S_t / ||S_t||_F,     u_t = -lr (D_t + weight_decay p)

    where ``A_t`` is the graft's direction: Adam's ``m^ / (sqrt(v^) + graft_eps)`` with
    ``v_t = graft_b2 v_{t-1} + (1 - graft_b2) G^2``, ``v^ = v_t / (1 - graft_b2^t)``
    (``graft="adam"``), or ``m^`` (``graft="sgd"``).  Other leaves take ``D_t = A_t``, so
    with the Adam graft they follow AdamW exactly.  The default ``b2 = 1`` keeps Gupta et
    al.'s running sums; ``b2 < 1`` is the exponential averaging of Anil et al.  The roots
    are recomputed every ``precondition_frequency`` steps (static) by ``root_method``
    (``"eigh"`` or ``"newton"``, see :func:`inverse_root`).  Momentum is taken on the
    gradient before preconditioning (as SOAP does), the statistics on the raw gradient.

    References: Gupta, Koren & Singer, *Shampoo: preconditioned stochastic tensor
    optimization*, ICML 2018 (Algorithm 1, order 2); Anil, Gupta, Koren, Regan & Singer,
    *Scalable second order optimization for deep learning*, 2020 (grafting, averaging,
    coupled Newton roots)."""
    where = "shampoo"
    check_hypers(where, learning_rate=learning_rate, b1=b1, weight_decay=weight_decay)
    check_factor_decay(where, "b2", b2)
    check_hyper(where, "eps", eps, "(0, inf)")
    check_hyper(where, "graft_b2", graft_b2, "[0, 1)")
    check_hyper(where, "graft_eps", graft_eps, "[0, inf)")
    check_static_int(where, "precondition_frequency", precondition_frequency, 1)
    check_static_int(where, "newton_iterations", newton_iterations, 1)
    check_static_int(where, "max_precondition_dim", max_precondition_dim, 1)
    if root_method not in ROOT_METHODS:
        raise ValueError(f"{where}: root_method must be one of {ROOT_METHODS}, "
                         f"got {root_method!r}")
    if graft not in GRAFTS:
        raise ValueError(f"{where}: graft must be one of {GRAFTS}, got {graft!r}")

    def root(matrix):
        return inverse_root(matrix, 4, eps, method=root_method,
                            newton_iterations=newton_iterations)

    def init(params):
        leaves = jax.tree.leaves(params)
        matrices = matrix_leaves(leaves, max_precondition_dim)
        left, right = init_factors(leaves, matrices)
        return ShampooState(count=zero_count(), mu=tree_zeros_like(params),
                            nu=tree_zeros_like(params) if graft == "adam" else None,
                            left=left, right=right,
                            left_root=tuple(jnp.eye(f.shape[0], dtype=f.dtype) for f in left),
                            right_root=tuple(jnp.eye(f.shape[0], dtype=f.dtype) for f in right))

    def update(grads, state, params=None, **extra):
        check_structure(where, grads, mu=state.mu)
        check_leaf_shapes(where, grads, state.mu)
        check_weight_decay_params(where, weight_decay, params)
        leaves, treedef = jax.tree.flatten(grads)
        matrices = matrix_leaves(leaves, max_precondition_dim)
        count = safe_increment(state.count)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1).astype(m.dtype), grads,
                          state.mu)
        mu_hat = bias_correct(mu, b1, count)
        nu = None
        if graft == "adam":
            nu = jax.tree.map(lambda g, v: update_moment(g, v, graft_b2, 2).astype(v.dtype),
                              grads, state.nu)
            graft_dirs = jax.tree.map(
                lambda m, v: m / (jnp.sqrt(v) + cast_like(graft_eps, v)), mu_hat,
                bias_correct(nu, graft_b2, count))
        else:
            graft_dirs = mu_hat

        left, right = accumulate_factors(leaves, matrices, state.left, state.right, b2)
        roots = refresh_every(
            precondition_frequency, state.count,
            lambda ops: (tuple(map(root, ops[0])), tuple(map(root, ops[1]))),
            lambda ops: (ops[2], ops[3]), (left, right, state.left_root, state.right_root))
        left_root, right_root = roots

        directions = jax.tree.leaves(graft_dirs)
        moments = jax.tree.leaves(mu_hat)
        for leaf, pl, pr in zip(matrices, left_root, right_root):
            s = pl @ moments[leaf.index].reshape(leaf.shape) @ pr
            a = directions[leaf.index]
            directions[leaf.index] = graft_onto(s, a).reshape(a.shape)
        updates = decoupled_step(jax.tree.unflatten(treedef, directions), params,
                                 learning_rate_at(learning_rate, state.count), weight_decay)
        return updates, ShampooState(count=count, mu=mu, nu=nu, left=left, right=right,
                                     left_root=left_root, right_root=right_root)

    return Optimizer(init, update)


def graft_onto(direction: jax.Array, graft: jax.Array) -> jax.Array:
    """``||graft||_F direction / ||direction||_F`` (0 where ``direction`` is 0): the
    direction of one optimizer with the per-layer step length of another."""
    d_norm = jnp.sqrt(jnp.sum(jnp.square(direction)))
    g_norm = jnp.sqrt(jnp.sum(jnp.square(graft))).astype(d_norm.dtype)
    positive = d_norm > 0
    ratio = jnp.where(positive, g_norm / jnp.where(positive, d_norm, 1), 0)
    return direction * ratio


# --------------------------------------------------------------------------- SOAP


class SoapState(NamedTuple):
    count: jax.Array  # (), int32: steps taken
    mu: Params  # EMA of g in the original coordinates (b1), shaped like params
    nu: Params  # EMA of g'^2, g' = Q_L^T G Q_R for matrix leaves (g^2 otherwise), like params
    left: tuple  # per matrix leaf: L, (m, m)
    right: tuple  # per matrix leaf: R, (n, n)
    left_basis: tuple  # per matrix leaf: Q_L, eigenvectors of L at the last refresh, (m, m)
    right_basis: tuple  # per matrix leaf: Q_R, eigenvectors of R at the last refresh, (n, n)


def _eigenvectors(factor):
    return jnp.linalg.eigh(factor)[1]  # columns in ascending eigenvalue order


def soap(learning_rate: ScalarOrSchedule = 3e-3, b1=0.95, b2=0.95, eps=1e-8,
         shampoo_b2=0.95, weight_decay=0.0, *, precondition_frequency: int = 10,
         max_precondition_dim: int = DEFAULT_MAX_DIM) -> Optimizer:
    """SOAP.  Per matrix leaf ``G`` (``t`` from 1)::

        L_t = s L_{t-1} + (1 - s) G G^T,   R_t = s R_{t-1} + (1 - s) G^T G    (s = shampoo_b2)
        Q_L, Q_R = eigenvectors of L_t, R_t        (on steps 1, f + 1, 2f + 1, ...)
        m_t = b1 m_{t-1} + (1 - b1) G,            v_t = b2 v_{t-1} + (1 - b2) (Q_L^T G Q_R)^2
        N_t = Q_L [(Q_L^T m^ Q_R) / (sqrt(v^) + eps)] Q_R^T,   u_t = -lr (N_t + weight_decay p)

    with ``m^ = m_t / (1 - b1^t)``, ``v^ = v_t / (1 - b2^t)``: Adam in the rotated
    coordinates, the first moment kept in the original ones and rotated when used.  Other
    leaves take AdamW's step with the same ``b1, b2, eps``.  ``v`` is not rotated when the
    basis changes (the eigenvalue order of ``eigh`` keeps its columns matched), as in the
    authors' code.  ``shampoo_b2 = 1`` sums the factors instead of averaging them.

    Two choices differ from the authors' code: the factors (and at a refresh the basis)
    are updated before the step, so the first step is already rotated by the eigenbasis of
    ``G_1 G_1^T`` (their code spends the first step building the basis and moves nothing),
    and the bias correction is Adam's ``m^ / (sqrt(v^) + eps)``, as in
    :func:`~lab.optim.scale_rules.scale_by_adam`, rather than ``eps`` added to ``sqrt(v)``
    before correcting.  The basis is a full ``eigh`` at every refresh (the eigendecomposition
    of the paper's algorithm, not the cheaper power-iteration/QR step of its code).  A factor with
    repeated (e.g. zero) eigenvalues has no unique basis: any orthonormal one is used.

    Reference: Vyas, Morwani, Zhao et al., *SOAP: improving and stabilizing Shampoo using
    Adam*, 2024."""
    where = "soap"
    check_hypers(where, learning_rate=learning_rate, b1=b1, b2=b2, eps=eps,
                 weight_decay=weight_decay)
    check_factor_decay(where, "shampoo_b2", shampoo_b2)
    check_static_int(where, "precondition_frequency", precondition_frequency, 1)
    check_static_int(where, "max_precondition_dim", max_precondition_dim, 1)

    def init(params):
        leaves = jax.tree.leaves(params)
        matrices = matrix_leaves(leaves, max_precondition_dim)
        left, right = init_factors(leaves, matrices)
        eye = lambda f: jnp.eye(f.shape[0], dtype=f.dtype)  # noqa: E731
        return SoapState(count=zero_count(), mu=tree_zeros_like(params),
                         nu=tree_zeros_like(params), left=left, right=right,
                         left_basis=tuple(map(eye, left)), right_basis=tuple(map(eye, right)))

    def update(grads, state, params=None, **extra):
        check_structure(where, grads, mu=state.mu, nu=state.nu)
        check_leaf_shapes(where, grads, state.mu)
        check_weight_decay_params(where, weight_decay, params)
        leaves, treedef = jax.tree.flatten(grads)
        matrices = matrix_leaves(leaves, max_precondition_dim)
        count = safe_increment(state.count)

        left, right = accumulate_factors(leaves, matrices, state.left, state.right, shampoo_b2)
        left_basis, right_basis = refresh_every(
            precondition_frequency, state.count,
            lambda ops: (tuple(map(_eigenvectors, ops[0])), tuple(map(_eigenvectors, ops[1]))),
            lambda ops: (ops[2], ops[3]), (left, right, state.left_basis, state.right_basis))

        rotated = list(leaves)  # g' for matrix leaves, g for the others
        for leaf, ql, qr in zip(matrices, left_basis, right_basis):
            g = leaves[leaf.index]
            rotated[leaf.index] = (ql.T @ g.reshape(leaf.shape) @ qr).reshape(g.shape)
        mu = jax.tree.map(lambda g, m: update_moment(g, m, b1, 1).astype(m.dtype), grads,
                          state.mu)
        nu = jax.tree.map(lambda g, v: update_moment(g, v, b2, 2).astype(v.dtype),
                          jax.tree.unflatten(treedef, rotated), state.nu)
        mu_hat = jax.tree.leaves(bias_correct(mu, b1, count))
        nu_hat = jax.tree.leaves(bias_correct(nu, b2, count))

        def adam(m, v):
            return m / (jnp.sqrt(v) + cast_like(eps, v))

        directions = [adam(m, v) for m, v in zip(mu_hat, nu_hat)]
        for leaf, ql, qr in zip(matrices, left_basis, right_basis):
            m = ql.T @ mu_hat[leaf.index].reshape(leaf.shape) @ qr
            n = adam(m, nu_hat[leaf.index].reshape(leaf.shape))
            directions[leaf.index] = (ql @ n @ qr.T).reshape(leaves[leaf.index].shape)
        updates = decoupled_step(jax.tree.unflatten(treedef, directions), params,
                                 learning_rate_at(learning_rate, state.count), weight_decay)
        return updates, SoapState(count=count, mu=mu, nu=nu, left=left, right=right,
                                  left_basis=left_basis, right_basis=right_basis)

    return Optimizer(init, update)
