"""Extreme eigenvalues of a symmetric operator: Lanczos, power iteration, condition number.

Each algorithm comes twice:

* a **matrix-free** form, ``name_matvec(matvec, dim_or_example, *, ...)``, on any symmetric
  linear map ``matvec: (n,) -> (n,)`` (a dense matrix, an HVP, a Gauss-Newton product), where
  ``dim_or_example`` is the dimension ``n`` (an int, with ``dtype=``) or an example 1-D vector
  whose size and dtype define the space;
* a **Hessian** form, ``name(f, params, *args, ...)``, a thin wrapper that builds the flat
  operator with :func:`lab.curvature.products.hessian_matvec` (``over_batches=True``
  accumulates the HVP over stacked mini-batches) and unravels vectors back into pytrees.

Structural arguments (``num_iters``, ``k``, ``which``) are static Python values; the random
key is explicit and may be traced, so ``jax.jit`` compiles once for all keys.

**Lanczos** (Lanczos 1950; Golub & Van Loan, *Matrix Computations*, sec. 10.1) builds an
orthonormal basis ``V = [v_0 .. v_{m-1}]`` of the Krylov space ``span{v_0, A v_0, ..,
A^{m-1} v_0}`` and the tridiagonal ``T = V^T A V``:

    w = A v_i - alpha_i v_i - beta_{i-1} v_{i-1},   alpha_i = v_i . A v_i,
    beta_i = ||w||,   v_{i+1} = w / beta_i.

In floating point the ``v_i`` lose orthogonality once Ritz values converge (Paige 1971), which
creates spurious copies of eigenvalues; here every new ``w`` is **fully reorthogonalised**
against all previous vectors, twice ("twice is enough": Giraud, Langou & Rozloznik 2005),
which costs ``O(m n)`` per step and keeps ``V`` orthonormal to machine precision.  If
``beta_i`` vanishes (the Krylov space is invariant, e.g. ``m`` exceeds the number of distinct
eigenvalues), the recurrence restarts from a fresh random direction (a shifted copy of a second
Gaussian vector drawn with the start), orthogonalised against ``V``, and records
``beta_i = 0``.  ``T`` is then block diagonal: the finished block's eigenvalues are exact
eigenvalues of ``A``, ``T = V^T A V`` still holds, and later blocks keep refining Ritz values
(so repeated eigenvalues can be found, one copy per restart).
The eigenvalues of ``T`` (Ritz values) approximate the extreme eigenvalues of ``A`` first; a Ritz
pair ``(theta_j, y_j = V^T s_j)`` has residual ``||A y_j - theta_j y_j|| = beta_m |s_{m-1, j}|``.

**Power iteration** repeats ``v <- A v / ||A v||`` and reports the Rayleigh quotient; it converges
to the eigenvalue of largest magnitude at rate ``|lambda_2 / lambda_1|`` per step (and does not
settle when ``lambda`` and ``-lambda`` are both extreme).
"""
from __future__ import annotations

import numbers
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lab.curvature.products import Matvec, Params, hessian_matvec

Array = jax.Array
WHICH = ("top", "bottom", "both")


class LanczosResult(NamedTuple):
    """The output of ``m`` Lanczos steps; ``T = diag(alphas) + offdiag(betas)``."""

    alphas: Array     # (m,) diagonal of T
    betas: Array      # (m-1,) off-diagonal of T (0 where the recurrence restarted)
    basis: Array      # (m, n) orthonormal Lanczos vectors, one per row
    next_beta: Array  # () beta_m, the norm of A v_{m-1} outside span(basis): the residual scale


class Eigenpairs(NamedTuple):
    """Ritz approximations to eigenpairs; ``eigenvectors[j]`` belongs to ``eigenvalues[j]``."""

    eigenvalues: Array  # (k,) or (2k,) for which="both"; order documented by the caller
    eigenvectors: Any   # (k, n) flat, or a pytree with a leading k axis on every leaf
    residuals: Array    # (k,) ||A y_j - theta_j y_j||, the convergence check of each pair


class PowerIterationResult(NamedTuple):
    eigenvalue: Array   # () Rayleigh quotient v . A v: the eigenvalue of largest |lambda|, signed
    eigenvector: Any    # (n,) unit vector, or a pytree shaped like params
    residual: Array     # () ||A v - eigenvalue v||


class ConditionEstimate(NamedTuple):
    condition_number: Array  # () max(|lmin|, |lmax|) / min(|lmin|, |lmax|)
    lambda_min: Array        # () smallest (most negative) eigenvalue estimate
    lambda_max: Array        # () largest eigenvalue estimate


def vector_space(who: str, dim_or_example: int | Array, dtype=None) -> tuple[int, Any]:
    """``(n, dtype)`` from a dimension or a 1-D example vector (whose dtype is the default)."""
    if isinstance(dim_or_example, numbers.Integral):
        if dim_or_example < 1:
            raise ValueError(f"{who}: the dimension must be a positive int, got {dim_or_example}")
        n = int(dim_or_example)
        dtype = jnp.zeros((), float).dtype if dtype is None else dtype  # default float
    else:
        shape = jnp.shape(dim_or_example)
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(f"{who}: the example vector must be a non-empty 1-D array, got shape "
                             f"{shape}; ravel a pytree with jax.flatten_util.ravel_pytree")
        n = shape[0]
        dtype = jnp.asarray(dim_or_example).dtype if dtype is None else dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"{who}: dtype must be a real floating dtype, got {dtype}")
    return n, jnp.dtype(dtype)


def _check_iters(who: str, num_iters: int, n: int) -> None:
    if not (isinstance(num_iters, int) and 1 <= num_iters <= n):
        raise ValueError(f"{who}: num_iters must be an int in [1, n] = [1, {n}] (a Krylov space "
                         f"has at most n dimensions), got {num_iters!r}")


def _orthogonalise(w: Array, basis: Array) -> Array:
    """Remove from ``w`` its components along the rows of ``basis``, twice (classical G-S)."""
    w = w - basis.T @ (basis @ w)
    return w - basis.T @ (basis @ w)


def lanczos_from(matvec: Matvec, start: Array, num_iters: int, key: Array) -> LanczosResult:
    """``num_iters`` Lanczos steps from the (not necessarily unit) 1-D vector ``start``.

    ``key`` draws the Gaussian vector that restarts the recurrence after a breakdown."""
    n, dtype = vector_space("lanczos_from", start)
    return _lanczos(matvec, start, jax.random.normal(key, (n,), dtype), num_iters)


def lanczos(matvec: Matvec, dim_or_example: int | Array, num_iters: int, key: Array, *,
            dtype=None) -> LanczosResult:
    """``num_iters`` steps of Lanczos with full reorthogonalisation from a random start.

    The start vector is standard normal drawn from ``key`` (so ``basis[0]`` is uniform on the
    unit sphere); ``dtype`` defaults to the example vector's dtype (or the default float when a
    dimension is given).  Requires ``1 <= num_iters <= n``.
    Returns ``LanczosResult(alphas, betas, basis, next_beta)``."""
    n, dtype = vector_space("lanczos", dim_or_example, dtype)
    draws = jax.random.normal(key, (2, n), dtype)  # the start and the restart vector, one draw
    return _lanczos(matvec, draws[0], draws[1], num_iters)


def _lanczos(matvec: Matvec, start: Array, restart: Array, num_iters: int) -> LanczosResult:
    """The recurrence.  On a breakdown at step i the next vector is ``roll(restart, i + 1)``
    orthogonalised against the basis: a fresh direction outside span(V) with probability one."""
    n, dtype = start.shape[0], start.dtype
    _check_iters("lanczos", num_iters, n)
    tol = 100 * jnp.finfo(dtype).eps
    v0 = start / jnp.linalg.norm(start)
    basis = jnp.zeros((num_iters, n), dtype).at[0].set(v0)
    alphas = jnp.zeros(num_iters, dtype)
    betas = jnp.zeros(num_iters, dtype)  # betas[i] couples v_i and v_{i+1}

    def step(i, carry):
        basis, alphas, betas = carry
        v = basis[i]
        av = matvec(v)
        alpha = jnp.vdot(v, av)
        beta_prev = jnp.where(i > 0, betas[jnp.maximum(i - 1, 0)], jnp.zeros((), dtype))
        w = _orthogonalise(av - alpha * v - beta_prev * basis[jnp.maximum(i - 1, 0)], basis)
        beta = jnp.linalg.norm(w)

        def restart_direction(_):
            r = _orthogonalise(jnp.roll(restart, i + 1), basis)
            norm = jnp.linalg.norm(r)  # 0 only at the last step of a run with num_iters == n
            return r / jnp.where(norm > 0, norm, jnp.ones((), dtype)), jnp.zeros((), dtype)

        def proceed(_):
            return w / beta, beta

        nxt, beta = lax.cond(beta <= tol * jnp.linalg.norm(av), restart_direction, proceed, None)
        # At the last step i + 1 == num_iters: the write is out of bounds and dropped, and beta
        # is beta_m, the residual scale (0 if A v_{m-1} lies in span(V)).
        return basis.at[i + 1].set(nxt, mode="drop"), alphas.at[i].set(alpha), betas.at[i].set(beta)

    basis, alphas, betas = lax.fori_loop(0, num_iters, step, (basis, alphas, betas))
    return LanczosResult(alphas, betas[:-1], basis, betas[-1])


def tridiagonal(result: LanczosResult) -> Array:
    """The dense ``(m, m)`` tridiagonal matrix ``T`` of a Lanczos run."""
    off = jnp.diag(result.betas, 1)
    return jnp.diag(result.alphas) + off + off.T


def ritz_pairs(result: LanczosResult) -> tuple[Array, Array, Array]:
    """Ritz values (ascending, ``(m,)``), Ritz vectors (``(m, n)``, one per row) and their
    residual norms ``beta_m |s_{m-1, j}|`` (``(m,)``)."""
    theta, s = jnp.linalg.eigh(tridiagonal(result))
    return theta, s.T @ result.basis, result.next_beta * jnp.abs(s[-1])


def _select(who: str, which: str, k: int, m: int) -> Array:
    """Indices into ascending Ritz values for ``which`` (see ``top_eigenvalues_matvec``)."""
    if which not in WHICH:
        raise ValueError(f"{who}: which must be one of {WHICH}, got {which!r}")
    needed = 2 * k if which == "both" else k
    if not (isinstance(k, int) and k >= 1 and needed <= m):
        raise ValueError(f"{who}: k = {k!r} with which={which!r} needs {needed} Ritz values but "
                         f"only {m} Lanczos steps run (num_iters clipped to n); raise num_iters "
                         "or lower k")
    if which == "top":
        return jnp.arange(m - 1, m - 1 - k, -1)
    if which == "bottom":
        return jnp.arange(k)
    return jnp.concatenate([jnp.arange(k), jnp.arange(m - k, m)])


def top_eigenvalues_matvec(matvec: Matvec, dim_or_example: int | Array, *, k: int = 5,
                           num_iters: int = 50, key: Array, which: str = "top",
                           dtype=None) -> Eigenpairs:
    """Extreme eigenpairs of a symmetric operator by Lanczos (``min(num_iters, n)`` steps).

    ``which="top"``: the k largest, in descending order.  ``"bottom"``: the k smallest
    (most negative), ascending.  ``"both"``: the k smallest then the k largest, all ascending
    (``2k`` values).  Eigenvectors are ``(k, n)``, one per row.  Extreme eigenvalues converge
    first and fastest when well separated; check ``residuals`` (small relative to the
    eigenvalue's scale means converged) or run more iterations."""
    n, dtype = vector_space("top_eigenvalues", dim_or_example, dtype)
    m = min(num_iters, n)
    index = _select("top_eigenvalues", which, k, m)
    result = lanczos(matvec, n, m, key, dtype=dtype)
    theta, s = jnp.linalg.eigh(tridiagonal(result))
    s = s[:, index]  # only the wanted Ritz vectors are formed: (k, m) @ (m, n)
    return Eigenpairs(theta[index], s.T @ result.basis, result.next_beta * jnp.abs(s[-1]))


def top_eigenvalues(f: Callable[..., Array], params: Params, *args, k: int = 5,
                    num_iters: int = 50, key: Array, which: str = "top",
                    over_batches: bool = False) -> Eigenpairs:
    """Extreme Hessian eigenpairs of ``f(params, *args)``; see ``top_eigenvalues_matvec``.

    Eigenvectors come back as a pytree shaped like ``params`` with a leading axis of k
    (or 2k) on every leaf."""
    op = hessian_matvec(f, params, *args, over_batches=over_batches)
    pairs = top_eigenvalues_matvec(op.matvec, op.flat_params, k=k, num_iters=num_iters,
                                   key=key, which=which)
    return pairs._replace(eigenvectors=jax.vmap(op.unravel)(pairs.eigenvectors))


def power_iteration_matvec(matvec: Matvec, dim_or_example: int | Array, *, num_iters: int = 100,
                           key: Array, dtype=None) -> PowerIterationResult:
    """The eigenvalue of largest magnitude (signed) and its unit eigenvector by power iteration.

    ``v_{t+1} = A v_t / ||A v_t||`` from a normal start, ``num_iters`` times; the eigenvalue is
    the Rayleigh quotient ``v . A v`` of the final vector.  Convergence is geometric with ratio
    ``|lambda_2| / |lambda_1|``; ``residual`` reports ``||A v - lambda v||``."""
    n, dtype = vector_space("power_iteration", dim_or_example, dtype)
    if not (isinstance(num_iters, int) and num_iters >= 0):
        raise ValueError(f"power_iteration: num_iters must be a non-negative int, got {num_iters!r}")

    def normalise(w):
        norm = jnp.linalg.norm(w)
        return w / jnp.where(norm > 0, norm, jnp.ones((), dtype))

    v = normalise(jax.random.normal(key, (n,), dtype))
    v = lax.fori_loop(0, num_iters, lambda _, v: normalise(matvec(v)), v)
    av = matvec(v)
    eigenvalue = jnp.vdot(v, av)
    return PowerIterationResult(eigenvalue, v, jnp.linalg.norm(av - eigenvalue * v))


def power_iteration(f: Callable[..., Array], params: Params, *args, num_iters: int = 100,
                    key: Array, over_batches: bool = False) -> PowerIterationResult:
    """Power iteration on the Hessian of ``f(params, *args)``; the eigenvector is a pytree."""
    op = hessian_matvec(f, params, *args, over_batches=over_batches)
    result = power_iteration_matvec(op.matvec, op.flat_params, num_iters=num_iters, key=key)
    return result._replace(eigenvector=op.unravel(result.eigenvector))


def condition_number_matvec(matvec: Matvec, dim_or_example: int | Array, *,
                            num_iters: int = 50, key: Array, dtype=None) -> ConditionEstimate:
    """The ratio of the extreme eigenvalues' magnitudes, from one Lanczos run.

    With ``lmin <= lmax`` the smallest and largest eigenvalues, returns
    ``max(|lmin|, |lmax|) / min(|lmin|, |lmax|)``.  For a definite operator (all eigenvalues of
    one sign) this is the 2-norm condition number ``max|lambda| / min|lambda|``.  For an
    **indefinite** one the smallest ``|lambda|`` is an interior eigenvalue that Lanczos does not
    target, so the value is only a **lower bound** on ``max|lambda| / min|lambda|``; it then
    measures how lopsided the positive and negative curvature are (check the signs of
    ``lambda_min`` and ``lambda_max``).  A singular PSD operator gives ``inf`` or a huge value."""
    pairs = top_eigenvalues_matvec(matvec, dim_or_example, k=1, num_iters=num_iters, key=key,
                                   which="both", dtype=dtype)
    lmin, lmax = pairs.eigenvalues[0], pairs.eigenvalues[1]
    big, small = jnp.maximum(jnp.abs(lmin), jnp.abs(lmax)), jnp.minimum(jnp.abs(lmin), jnp.abs(lmax))
    return ConditionEstimate(big / small, lmin, lmax)


def condition_number(f: Callable[..., Array], params: Params, *args, num_iters: int = 50,
                     key: Array, over_batches: bool = False) -> ConditionEstimate:
    """``condition_number_matvec`` on the Hessian of ``f(params, *args)``."""
    op = hessian_matvec(f, params, *args, over_batches=over_batches)
    return condition_number_matvec(op.matvec, op.flat_params, num_iters=num_iters, key=key)
