"""Randomised spectral estimates: Hutchinson trace and diagonal, stochastic Lanczos quadrature.

Same two forms as :mod:`lab.curvature.lanczos`: ``name_matvec(matvec, dim_or_example, *, ...)``
on a flat symmetric operator, and ``name(f, params, *args, ...)`` on the Hessian of ``f``.
Probes are drawn from an explicit ``key``; sample counts are static.  Probes are processed
one (or ``batch_size``) at a time with ``lax.map``, so memory does not grow with the count.

**Hutchinson** (Hutchinson 1990): for a probe ``z`` with ``E[z z^T] = I``,
``E[z^T A z] = tr(A)``.  With Rademacher entries (``+-1``) the variance of one sample is
``2 (||A||_F^2 - sum_i A_ii^2)``, the smallest among probes with i.i.d. zero-mean, unit-variance
entries; the estimate is the sample mean of ``N`` probes and its standard error is
``std(samples, ddof=1) / sqrt(N)``.
The same probes give the diagonal, ``E[z * (A z)] = diag(A)`` (Bekas, Kokiopoulou & Saad 2007),
exact for a diagonal ``A`` with Rademacher probes.

**Stochastic Lanczos quadrature** (Golub & Meurant 1994; Ubaru, Chen & Saad 2017; applied to
neural-network Hessians by Ghorbani, Krishnan & Xiao 2019): the spectral density
``phi(t) = (1/n) sum_i delta(t - lambda_i)`` satisfies ``int g dphi = tr g(A) / n = E[u^T g(A) u]``
for ``u`` uniform on the unit sphere (a normalised Gaussian vector).  ``m`` Lanczos steps
from ``u`` give ``T = S diag(theta) S^T`` and the Gauss quadrature
``u^T g(A) u ~ sum_j tau_j g(theta_j)``, ``tau_j = S_{0j}^2``, exact for polynomials ``g`` of
degree ``< 2m``.  Averaging over probes gives nodes ``theta`` and weights ``tau / num_probes``
(summing to 1) and the smoothed density ``sum_j w_j N(t; theta_j, sigma^2)``.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from lab.curvature.lanczos import lanczos, tridiagonal, vector_space
from lab.curvature.products import Matvec, Params, hessian_matvec

Array = jax.Array
DISTRIBUTIONS = ("rademacher", "normal")


class TraceEstimate(NamedTuple):
    estimate: Array        # () mean of z^T A z over the probes
    standard_error: Array  # () std(samples, ddof=1) / sqrt(num_samples)


class SpectralDensity(NamedTuple):
    """SLQ output.  ``sum(weights * nodes**p)`` estimates the p-th spectral moment tr(A^p)/n."""

    nodes: Array    # (num_probes, num_iters) Ritz values of each probe's Lanczos run
    weights: Array  # (num_probes, num_iters) quadrature weights tau / num_probes; sum to 1
    grid: Array     # (num_points,) where the smoothed density is evaluated
    density: Array  # (num_points,) sum_j weights_j N(grid; nodes_j, sigma^2)
    sigma: Array    # () the Gaussian width used


def _probe(key: Array, n: int, dtype, distribution: str) -> Array:
    if distribution == "rademacher":
        return jax.random.rademacher(key, (n,), dtype)
    return jax.random.normal(key, (n,), dtype)


def _check(who: str, count_name: str, count: int, minimum: int,
           distribution: str = "rademacher") -> None:
    if not (isinstance(count, int) and count >= minimum):
        raise ValueError(f"{who}: {count_name} must be an int >= {minimum}, got {count!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"{who}: distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")


def hutchinson_trace_matvec(matvec: Matvec, dim_or_example: int | Array, *, num_samples: int,
                            key: Array, distribution: str = "rademacher",
                            batch_size: int | None = None, dtype=None) -> TraceEstimate:
    """Hutchinson's estimate of ``tr(A)`` and its standard error from ``num_samples >= 2``
    probes (``batch_size`` probes are vmapped together; default one at a time)."""
    n, dtype = vector_space("hutchinson_trace", dim_or_example, dtype)
    _check("hutchinson_trace", "num_samples", num_samples, 2, distribution)

    def sample(k):
        z = _probe(k, n, dtype, distribution)
        return jnp.vdot(z, matvec(z))

    samples = lax.map(sample, jax.random.split(key, num_samples), batch_size=batch_size)
    return TraceEstimate(jnp.mean(samples), jnp.std(samples, ddof=1) / jnp.sqrt(num_samples))


def hutchinson_diagonal_matvec(matvec: Matvec, dim_or_example: int | Array, *, num_samples: int,
                               key: Array, distribution: str = "rademacher",
                               batch_size: int | None = None, dtype=None) -> Array:
    """The estimate ``mean_s z_s * (A z_s)`` of ``diag(A)``, a flat ``(n,)`` array.

    Entry ``i`` has variance ``sum_{j != i} A_ij^2 / num_samples`` with Rademacher probes."""
    n, dtype = vector_space("hutchinson_diagonal", dim_or_example, dtype)
    _check("hutchinson_diagonal", "num_samples", num_samples, 1, distribution)

    def sample(k):
        z = _probe(k, n, dtype, distribution)
        return z * matvec(z)

    samples = lax.map(sample, jax.random.split(key, num_samples), batch_size=batch_size)
    return jnp.mean(samples, axis=0)


def hutchinson_trace(f: Callable[..., Array], params: Params, *args, num_samples: int,
                     key: Array, distribution: str = "rademacher", batch_size: int | None = None,
                     over_batches: bool = False) -> TraceEstimate:
    """Hutchinson's estimate of the trace of the Hessian of ``f(params, *args)``."""
    op = hessian_matvec(f, params, *args, over_batches=over_batches)
    return hutchinson_trace_matvec(op.matvec, op.flat_params, num_samples=num_samples, key=key,
                                   distribution=distribution, batch_size=batch_size)


def hutchinson_diagonal(f: Callable[..., Array], params: Params, *args, num_samples: int,
                        key: Array, distribution: str = "rademacher",
                        batch_size: int | None = None, over_batches: bool = False) -> Params:
    """Estimated diagonal of the Hessian of ``f(params, *args)``, a pytree shaped like params."""
    op = hessian_matvec(f, params, *args, over_batches=over_batches)
    flat = hutchinson_diagonal_matvec(op.matvec, op.flat_params, num_samples=num_samples,
                                      key=key, distribution=distribution, batch_size=batch_size)
    return op.unravel(flat)


def gaussian_smoothing(nodes: Array, weights: Array, grid: Array, sigma: Array) -> Array:
    """``sum_j weights_j N(grid; nodes_j, sigma^2)`` on a 1-D grid (any node/weight shape)."""
    nodes, weights = nodes.reshape(-1), weights.reshape(-1)
    z = (grid[:, None] - nodes[None, :]) / sigma
    kernel = jnp.exp(-0.5 * z * z) / (sigma * jnp.sqrt(2 * jnp.pi).astype(grid.dtype))
    return kernel @ weights


def spectral_density_matvec(matvec: Matvec, dim_or_example: int | Array, *, num_probes: int,
                            num_iters: int, key: Array, num_points: int = 1024,
                            sigma: float | Array | None = None, grid: Array | None = None,
                            batch_size: int | None = None, dtype=None) -> SpectralDensity:
    """Stochastic Lanczos quadrature: nodes, weights and a Gaussian-smoothed density.

    Each of ``num_probes`` probes, uniform on the unit sphere, starts ``num_iters`` Lanczos steps
    (full reorthogonalisation; ``batch_size`` probes run side by side under ``vmap``, which
    turns a dense operator's matvecs into matrix products); see the module docstring for the
    quadrature.  ``sigma``
    defaults to 1% of the spread of the nodes (``max - min``; or of ``max |node|`` if all
    nodes coincide).  ``grid`` defaults to ``num_points`` points spanning the nodes plus
    ``5 sigma`` on each side, on which the density integrates to 1 up to the trapezoid
    rule's error; a caller's grid that misses part of the spectrum loses that mass."""
    n, dtype = vector_space("spectral_density", dim_or_example, dtype)
    _check("spectral_density", "num_probes", num_probes, 1)
    if not (isinstance(num_points, int) and num_points >= 2):
        raise ValueError(f"spectral_density: num_points must be an int >= 2, got {num_points!r}")

    def one_probe(k):
        theta, s = jnp.linalg.eigh(tridiagonal(lanczos(matvec, n, num_iters, k, dtype=dtype)))
        return theta, s[0] ** 2

    nodes, tau = lax.map(one_probe, jax.random.split(key, num_probes), batch_size=batch_size)
    weights = tau / num_probes
    lo, hi = jnp.min(nodes), jnp.max(nodes)
    if sigma is None:
        spread = jnp.where(hi > lo, hi - lo, jnp.maximum(jnp.abs(hi), jnp.abs(lo)))
        sigma = 0.01 * jnp.where(spread > 0, spread, jnp.ones((), dtype))
    sigma = jnp.asarray(sigma).astype(dtype)
    if grid is None:
        grid = jnp.linspace(lo - 5 * sigma, hi + 5 * sigma, num_points, dtype=dtype)
    grid = jnp.asarray(grid).astype(dtype)
    return SpectralDensity(nodes, weights, grid, gaussian_smoothing(nodes, weights, grid, sigma),
                           sigma)


def spectral_density(f: Callable[..., Array], params: Params, *args, num_probes: int,
                     num_iters: int, key: Array, num_points: int = 1024,
                     sigma: float | Array | None = None, grid: Array | None = None,
                     batch_size: int | None = None, over_batches: bool = False) -> SpectralDensity:
    """SLQ spectral density of the Hessian of ``f(params, *args)``; see
    ``spectral_density_matvec``."""
    op = hessian_matvec(f, params, *args, over_batches=over_batches)
    return spectral_density_matvec(op.matvec, op.flat_params, num_probes=num_probes,
                                   num_iters=num_iters, key=key, num_points=num_points,
                                   sigma=sigma, grid=grid, batch_size=batch_size)


def spectral_moment(density: SpectralDensity, power: int) -> Array:
    """``sum_j w_j theta_j^power``, the SLQ estimate of ``tr(A^power) / n``.

    Exact in expectation over probes for ``power < 2 num_iters`` (Gauss quadrature)."""
    return jnp.sum(density.weights * density.nodes ** power)
