"""lab.curvature: Hessian-vector products and matrix-free spectral tools.

The contract, written once:

* A **loss** is a pure function ``f(params, *args) -> scalar``; ``params`` is any pytree of
  floating arrays and ``args`` are data (a mini-batch, or the whole data set).  The Hessian
  ``H`` is taken in ``params`` only.
* A **product** (``hessian_vector_product``, ``gauss_newton_vector_product``, ``full_batch_hvp``)
  takes a tangent pytree ``v`` shaped like ``params`` and returns one; a mismatched ``v``
  raises a ValueError naming both structures.
* A **flat operator** ``matvec: (P,) -> (P,)`` is a symmetric linear map on vectors in
  ``jax.flatten_util.ravel_pytree(params)`` order (``hessian_matvec`` builds one from ``f``).
  Every spectral algorithm has a matrix-free form ``name_matvec(matvec, dim_or_example, *, ...)``
  usable on any symmetric operator (a dense test matrix, a Gauss-Newton product), and a
  Hessian form ``name(f, params, *args, ...)`` that wraps it and returns pytrees.
* **Mini-batch or full batch.**  ``f(params, batch)`` on one batch gives the mini-batch
  Hessian.  For the full data set, stack equal-size batches on a leading axis and pass
  ``over_batches=True`` (Hessian forms) or call ``full_batch_hvp``: the HVP of the mean loss is
  accumulated with ``lax.scan``, one batch in memory at a time.
* **Static versus traced.**  Iteration and sample counts, ``k``, ``which`` and
  ``over_batches`` are Python values fixed at trace time; keys, ``sigma`` and the data are
  arrays.  Nothing is jitted inside: wrap calls in ``jax.jit`` (closing over ``f``); a new key
  does not recompile.
* The dense ``hessian_matrix`` is for small models and tests; it refuses with
  ``HessianTooLarge`` (a ValueError) before allocating when ``P*P*itemsize > max_bytes``.

Modules: :mod:`~lab.curvature.products` (HVP, GNVP, full-batch sums, the flat operator, the dense
Hessian), :mod:`~lab.curvature.lanczos` (Lanczos, extreme eigenpairs, power iteration,
condition number), :mod:`~lab.curvature.stochastic` (Hutchinson trace and diagonal, stochastic
Lanczos quadrature spectral density).

    hv = hessian_vector_product(loss, params, v, x, y)
    top = jax.jit(lambda p, k: top_eigenvalues(loss, p, x, y, k=5, num_iters=40, key=k))(params, key)
    slq = spectral_density(loss, params, batches, num_probes=8, num_iters=60, key=key,
                           over_batches=True)
"""
from lab.curvature.lanczos import (ConditionEstimate, Eigenpairs, LanczosResult,
                                   PowerIterationResult, condition_number,
                                   condition_number_matvec, lanczos, lanczos_from,
                                   power_iteration, power_iteration_matvec, ritz_pairs,
                                   top_eigenvalues, top_eigenvalues_matvec, tridiagonal)
from lab.curvature.products import (FlatHessian, HessianTooLarge, full_batch_hvp,
                                    full_batch_loss, gauss_newton_vector_product,
                                    hessian_matrix, hessian_matvec, hessian_vector_product)
from lab.curvature.stochastic import (SpectralDensity, TraceEstimate, gaussian_smoothing,
                                      hutchinson_diagonal, hutchinson_diagonal_matvec,
                                      hutchinson_trace, hutchinson_trace_matvec, spectral_density,
                                      spectral_density_matvec, spectral_moment)

__all__ = [
    # products
    "hessian_vector_product", "gauss_newton_vector_product", "full_batch_loss", "full_batch_hvp",
    "hessian_matvec", "hessian_matrix", "FlatHessian", "HessianTooLarge",
    # Lanczos and friends
    "lanczos", "lanczos_from", "tridiagonal", "ritz_pairs", "top_eigenvalues",
    "top_eigenvalues_matvec", "power_iteration", "power_iteration_matvec", "condition_number",
    "condition_number_matvec", "LanczosResult", "Eigenpairs", "PowerIterationResult",
    "ConditionEstimate",
    # stochastic estimates
    "hutchinson_trace", "hutchinson_trace_matvec", "hutchinson_diagonal",
    "hutchinson_diagonal_matvec", "spectral_density", "spectral_density_matvec",
    "spectral_moment", "gaussian_smoothing", "TraceEstimate", "SpectralDensity",
]
