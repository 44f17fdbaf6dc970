"""Weight initializers: factories that return ``init(key, shape, dtype=float32) -> array``.

Contract (the same as ``jax.nn.initializers``): a factory such as ``he_normal()``
takes the hyperparameters and returns a pure function of a PRNG key, a shape and a
dtype.  The same key always gives the same array, and the array has exactly the
requested dtype.  ``get(name)`` returns a factory by name; ``resolve(spec)`` turns a
name or an initializer into an initializer (what the layers in ``lab.nets`` call).

Fans.  For a dense weight of shape ``(in, out)``: ``fan_in = in``, ``fan_out = out``.
For a convolution kernel in HWIO layout ``(H, W, I, O)`` (and in general any rank
>= 3, the leading axes being the receptive field): ``fan_in = H W I`` and
``fan_out = H W O``.  A vector ``(n,)`` has ``fan_in = fan_out = n``; a scalar 1.

Variance targets (Var w for every entry w):

    glorot / xavier   2 / (fan_in + fan_out)       Glorot & Bengio 2010
    he / kaiming      2 / fan_in                   He et al. 2015
    lecun             1 / fan_in                   LeCun et al. 1998
    uniform(a)        a^2 / 3
    normal(s)         s^2

A ``*_uniform`` initializer draws from U[-a, a] with a = sqrt(3 Var).  A ``*_normal``
initializer draws from a normal truncated at two standard deviations and rescales
it by 1 / 0.8796..., the standard deviation of N(0, 1) truncated to [-2, 2], so the
variance is exactly the target while no entry lies beyond 2 / 0.88 ~ 2.27 target
standard deviations.  ``normal(std)`` on its own is the plain, untruncated N(0, std^2).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
Shape = Sequence[int]
Initializer = Callable[..., Array]  # (key, shape, dtype=jnp.float32) -> Array

# Std of N(0, 1) truncated to [-2, 2]:  sqrt(1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2))).
_TRUNCATED_STD = math.sqrt(
    1.0 - 4.0 * math.exp(-2.0) / math.sqrt(2.0 * math.pi) / math.erf(2.0 / math.sqrt(2.0))
)


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape: dense (in, out) or an HWIO conv kernel."""
    shape = tuple(int(d) for d in shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return receptive_field * shape[-2], receptive_field * shape[-1]


def zeros() -> Initializer:
    """All entries 0 (the usual bias initializer).  Variance 0."""

    def init(key: Array, shape: Shape, dtype: Any = jnp.float32) -> Array:
        del key
        return jnp.zeros(tuple(shape), dtype)

    return init


def constant(value: float) -> Initializer:
    """All entries equal to ``value`` (e.g. an LSTM forget-gate bias of 1).  Variance 0."""

    def init(key: Array, shape: Shape, dtype: Any = jnp.float32) -> Array:
        del key
        return jnp.full(tuple(shape), value, dtype)

    return init


def normal(std: float = 0.01) -> Initializer:
    """Plain (untruncated) N(0, std^2).  Variance std^2."""

    def init(key: Array, shape: Shape, dtype: Any = jnp.float32) -> Array:
        return std * jax.random.normal(key, tuple(shape), dtype)

    return init


def uniform(scale: float = 0.05) -> Initializer:
    """U[-scale, scale].  Variance scale^2 / 3."""

    def init(key: Array, shape: Shape, dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, tuple(shape), dtype, minval=-scale, maxval=scale)

    return init


def _scaled(variance_of: Callable[[int, int], float], distribution: str) -> Initializer:
    """Initializer with Var w = variance_of(fan_in, fan_out) for the given shape."""

    def init(key: Array, shape: Shape, dtype: Any = jnp.float32) -> Array:
        shape = tuple(shape)
        std = math.sqrt(variance_of(*fans(shape)))
        if distribution == "uniform":
            limit = math.sqrt(3.0) * std  # U[-a, a] has variance a^2 / 3
            return jax.random.uniform(key, shape, dtype, minval=-limit, maxval=limit)
        draw = jax.random.truncated_normal(key, -2.0, 2.0, shape, dtype)
        return (std / _TRUNCATED_STD) * draw

    return init


def glorot_normal() -> Initializer:
    """Glorot/Xavier, truncated normal: Var w = 2 / (fan_in + fan_out)."""
    return _scaled(lambda fi, fo: 2.0 / (fi + fo), "normal")


def glorot_uniform() -> Initializer:
    """Glorot/Xavier, U[-a, a] with a = sqrt(6 / (fan_in + fan_out)): Var w = 2 / (fan_in + fan_out)."""
    return _scaled(lambda fi, fo: 2.0 / (fi + fo), "uniform")


def he_normal() -> Initializer:
    """He/Kaiming, truncated normal: Var w = 2 / fan_in (keeps ReLU activations' scale)."""
    return _scaled(lambda fi, fo: 2.0 / fi, "normal")


def he_uniform() -> Initializer:
    """He/Kaiming, U[-a, a] with a = sqrt(6 / fan_in): Var w = 2 / fan_in."""
    return _scaled(lambda fi, fo: 2.0 / fi, "uniform")


def lecun_normal() -> Initializer:
    """LeCun, truncated normal: Var w = 1 / fan_in (for tanh/SELU-like units)."""
    return _scaled(lambda fi, fo: 1.0 / fi, "normal")


def lecun_uniform() -> Initializer:
    """LeCun, U[-a, a] with a = sqrt(3 / fan_in): Var w = 1 / fan_in."""
    return _scaled(lambda fi, fo: 1.0 / fi, "uniform")


xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
kaiming_normal = he_normal
kaiming_uniform = he_uniform


def orthogonal(scale: float = 1.0) -> Initializer:
    """``scale`` times a random (Haar-distributed) orthogonal matrix (Saxe et al. 2014).

    The shape is viewed as a matrix of ``rows = prod(shape[:-1])`` by ``cols = shape[-1]``.
    If rows >= cols the columns are orthonormal (Q^T Q = I), otherwise the rows are
    (Q Q^T = I).  Every entry then has mean square scale^2 / max(rows, cols) exactly.
    Built from the QR decomposition of a Gaussian matrix, with the signs of R's
    diagonal folded into Q so the distribution is uniform over orthogonal matrices."""

    def init(key: Array, shape: Shape, dtype: Any = jnp.float32) -> Array:
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(f"orthogonal initializer needs a shape of rank >= 2, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = jax.random.normal(key, (max(rows, cols), min(rows, cols)), dtype)
        q, r = jnp.linalg.qr(a)  # q: (max, min) with orthonormal columns
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if rows < cols:
            q = q.T
        return (scale * q).reshape(shape)

    return init


INITIALIZERS: dict[str, Callable[..., Initializer]] = {
    "zeros": zeros,
    "constant": constant,
    "normal": normal,
    "uniform": uniform,
    "glorot_normal": glorot_normal,
    "glorot_uniform": glorot_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "orthogonal": orthogonal,
}


def get(name: str) -> Callable[..., Initializer]:
    """The initializer *factory* called ``name`` (call it to get an initializer)."""
    try:
        return INITIALIZERS[name]
    except (KeyError, TypeError):
        valid = ", ".join(sorted(INITIALIZERS))
        raise ValueError(f"unknown initializer {name!r}; valid names: {valid}") from None


def resolve(spec: str | Initializer) -> Initializer:
    """An initializer from a name (factory called with its defaults) or an initializer.

    ``'constant'`` has no default value, so it must be passed as ``constant(value)``."""
    if any(spec is factory for factory in INITIALIZERS.values()):
        raise ValueError(f"got the factory {spec.__name__}; pass the initializer {spec.__name__}()")
    if callable(spec):
        return spec
    if spec == "constant":
        raise ValueError("initializer 'constant' needs a value: pass lab.init.constant(value)")
    return get(spec)()
