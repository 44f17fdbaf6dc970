"""Low-discrepancy sequences in the unit cube: Sobol and Halton, plain or scrambled.

The contract: ``sobol(n, dim, seed=...)`` and ``halton(n, dim, seed=...)`` return an
``(n, dim)`` float64 array of points in ``[0, 1)``, points ``start .. start + n - 1`` of
the sequence.  The same arguments always give the same array (scrambling draws from
``numpy.random.default_rng(seed)`` only), and ``start`` continues a sample:
``sobol(8, d, start=8) == sobol(16, d)[8:]``.  NumPy only; nothing is printed or warned.

**Sobol** (Sobol' 1967; Bratley & Fox 1988, Algorithm 659), in Gray-code order as
Antonov & Saleev (1979) and SciPy produce it: point ``i`` is
``x_i = XOR_{j : bit j of g(i)} v_j`` with ``g(i) = i XOR (i >> 1)``.  The direction
numbers ``v_{k} = m_k / 2^k`` of each coordinate come from a primitive polynomial
``x^s + a_1 x^{s-1} + ... + a_{s-1} x + 1`` over GF(2) and the recurrence
``m_k = 2 a_1 m_{k-1} ^ 4 a_2 m_{k-2} ^ ... ^ 2^{s-1} a_{s-1} m_{k-s+1} ^ 2^s m_{k-s} ^ m_{k-s}``
from initial values ``m_1 .. m_s`` (odd, ``m_k < 2^k``): Joe & Kuo (2008), "Constructing
Sobol sequences with better two-dimensional projections", file new-joe-kuo-6.21201 (the
table SciPy ships), first :data:`MAX_SOBOL_DIM` coordinates.  Unscrambled points equal
``scipy.stats.qmc.Sobol(d, scramble=False)``'s bit for bit (at the same ``bits``).

Sobol scrambling is Matousek's (1998) linear matrix scrambling with a random digital
shift, as SciPy does it: each coordinate's generator matrix ``C`` (column ``j`` = the
binary digits of ``v_j``, most significant first) becomes ``L C`` for a random lower
triangular ``L`` with unit diagonal over GF(2), and every point is XORed with a random
``e`` per coordinate.  Digit ``i`` of a scrambled point depends only on digits ``1..i``
of the plain one, bijectively, so the stratification survives: for every ``k`` the
first ``2^k`` points hit each interval ``[m 2^-k, (m+1) 2^-k)`` of every coordinate
exactly once, and every point is uniform on ``[0, 1)^d`` (up to ``2^-bits``).

**Halton** (Halton 1960): coordinate ``c`` of point ``i`` is the radical inverse of ``i``
in the ``c``-th prime ``b``: ``sum_j d_j(i) b^{-j-1}`` for the base-``b`` digits
``d_j(i)`` of ``i``, computed in SciPy's order of operations, so unscrambled points equal
``scipy.stats.qmc.Halton(d, scramble=False)``'s.  Scrambled Halton applies, per
coordinate and digit position ``j``, an independent uniformly random permutation
``pi_j`` of the digits ``0..b-1`` to all digits, trailing zeros included, down to
``b^-J < 2^-52`` (random digit permutation scrambling, Owen 2017 "A randomized Halton
algorithm in R", in SciPy's simplified form).  The first ``b^k`` points still hit each
interval of length ``b^-k`` of coordinate ``c`` exactly once.

Balance holds for the first ``2^k`` (Sobol) or ``b^k`` (Halton) points counted from 0;
a sample of another size, or one that starts elsewhere, is still valid but less even.
"""
from __future__ import annotations

import math

import numpy as np

# Joe & Kuo (2008), new-joe-kuo-6.21201: (degree s, coefficients a as an integer whose
# most significant of s-1 bits is a_1, initial m_1..m_s) for coordinates 2..40.
# Coordinate 1 is van der Corput's sequence in base 2 (every m_k = 1).
JOE_KUO = (
    (1, 0, (1,)), (2, 1, (1, 3)), (3, 1, (1, 3, 1)), (3, 2, (1, 1, 1)),
    (4, 1, (1, 1, 3, 3)), (4, 4, (1, 3, 5, 13)), (5, 2, (1, 1, 5, 5, 17)),
    (5, 4, (1, 1, 5, 5, 5)), (5, 7, (1, 1, 7, 11, 19)), (5, 11, (1, 1, 5, 1, 1)),
    (5, 13, (1, 1, 1, 3, 11)), (5, 14, (1, 3, 5, 5, 31)), (6, 1, (1, 3, 3, 9, 7, 49)),
    (6, 13, (1, 1, 1, 15, 21, 21)), (6, 16, (1, 3, 1, 13, 27, 49)),
    (6, 19, (1, 1, 1, 15, 7, 5)), (6, 22, (1, 3, 1, 15, 13, 25)),
    (6, 25, (1, 1, 5, 5, 19, 61)), (7, 1, (1, 3, 7, 11, 23, 15, 103)),
    (7, 4, (1, 3, 7, 13, 13, 15, 69)), (7, 7, (1, 1, 3, 13, 7, 35, 63)),
    (7, 8, (1, 3, 5, 9, 1, 25, 53)), (7, 14, (1, 3, 1, 13, 9, 35, 107)),
    (7, 19, (1, 3, 1, 5, 27, 61, 31)), (7, 21, (1, 1, 5, 11, 19, 41, 61)),
    (7, 28, (1, 3, 5, 3, 3, 13, 69)), (7, 31, (1, 1, 7, 13, 1, 19, 1)),
    (7, 32, (1, 3, 7, 5, 13, 19, 59)), (7, 37, (1, 1, 3, 9, 25, 29, 41)),
    (7, 41, (1, 3, 5, 13, 23, 1, 55)), (7, 42, (1, 3, 7, 3, 13, 59, 17)),
    (7, 50, (1, 3, 1, 3, 5, 53, 69)), (7, 55, (1, 1, 5, 5, 23, 33, 13)),
    (7, 56, (1, 1, 7, 7, 1, 61, 123)), (7, 59, (1, 1, 7, 9, 13, 61, 49)),
    (7, 62, (1, 3, 3, 5, 3, 55, 33)), (8, 14, (1, 3, 1, 15, 31, 13, 49, 245)),
    (8, 21, (1, 3, 5, 15, 31, 59, 63, 97)), (8, 22, (1, 3, 1, 11, 11, 11, 77, 249)),
)
MAX_SOBOL_DIM = 1 + len(JOE_KUO)
MAX_BITS = 52  # points are integers / 2**bits, exact in float64 up to here
DEFAULT_BITS = 30  # SciPy's default


# --------------------------------------------------------------------------- checks


def _check_int(name: str, value, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(_check_int("seed", seed, 0))


# --------------------------------------------------------------------------- Sobol


def direction_numbers(dim: int, bits: int = DEFAULT_BITS) -> np.ndarray:
    """``(dim, bits)`` uint64: ``V[c, k-1] = m_k 2^(bits-k)``, coordinate ``c``'s ``v_k`` scaled by ``2^bits``."""
    dim = _check_int("dim", dim, 1, MAX_SOBOL_DIM)
    bits = _check_int("bits", bits, 1, MAX_BITS)
    table = np.zeros((dim, bits), dtype=np.uint64)
    for c in range(dim):
        if c == 0:
            m = [1] * bits
        else:
            s, a, initial = JOE_KUO[c - 1]
            m = list(initial[:bits])
            for k in range(s, bits):  # m[k] is m_{k+1}
                new = m[k - s] ^ (m[k - s] << s)
                for j in range(1, s):  # a_j is bit s-1-j of a
                    if (a >> (s - 1 - j)) & 1:
                        new ^= m[k - j] << j
                m.append(new)
        table[c] = [mk << (bits - k - 1) for k, mk in enumerate(m)]
    return table


def _binary_digits(values: np.ndarray, bits: int) -> np.ndarray:
    """``(..., bits)`` 0/1 digits of unsigned integers below ``2^bits``, most significant first."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    return ((values[..., None] >> shifts) & np.uint64(1)).astype(np.int64)


def _from_binary_digits(digits: np.ndarray) -> np.ndarray:
    bits = digits.shape[-1]
    weights = np.uint64(1) << np.arange(bits - 1, -1, -1, dtype=np.uint64)
    return (digits.astype(np.uint64) * weights).sum(axis=-1, dtype=np.uint64)


def linear_matrix_scramble(table: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Matousek's scrambling of ``(dim, bits)`` direction numbers: ``(L C, e)``.

    ``L`` is random lower triangular with unit diagonal, one per coordinate, acting on the
    binary digits (most significant first) of every direction number; ``e`` (``(dim,)``
    uint64) is the random digital shift."""
    dim, bits = table.shape
    lower = np.tril(rng.integers(0, 2, size=(dim, bits, bits)), k=-1) + np.eye(bits, dtype=np.int64)
    digits = _binary_digits(table, bits)  # (dim, column j, digit i)
    scrambled = np.einsum("cij,ckj->cki", lower, digits) % 2  # digit i of L v_k
    shift = rng.integers(0, 2**bits, size=dim, dtype=np.uint64)
    return _from_binary_digits(scrambled), shift


def sobol_integers(n: int, table: np.ndarray, shift: np.ndarray | None = None, start: int = 0) -> np.ndarray:
    """``(n, dim)`` uint64: Sobol points ``start..start+n-1`` as integers ``x_i 2^bits`` (Gray-code order)."""
    dim, bits = table.shape
    index = np.arange(start, start + n, dtype=np.uint64)
    gray = index ^ (index >> np.uint64(1))
    points = np.zeros((n, dim), dtype=np.uint64)
    for j in range(bits):
        hit = ((gray >> np.uint64(j)) & np.uint64(1)).astype(bool)
        points[hit] ^= table[:, j]
    if shift is not None:
        points ^= shift
    return points


def sobol(n: int, dim: int, *, scramble: bool = True, seed: int = 0, bits: int = DEFAULT_BITS,
          start: int = 0) -> np.ndarray:
    """``(n, dim)`` Sobol points ``start..start+n-1`` in ``[0, 1)``; scrambled (LMS + shift) from ``seed``.

    ``dim <= MAX_SOBOL_DIM`` (40); ``start + n <= 2^bits``; ``bits <= 52``."""
    n = _check_int("n", n, 1)
    bits = _check_int("bits", bits, 1, MAX_BITS)
    start = _check_int("start", start, 0)
    if start + n > 2**bits:
        raise ValueError(f"a Sobol sequence with bits={bits} has 2**{bits} = {2**bits} points; "
                         f"start + n = {start + n} asks for more (raise bits)")
    if not isinstance(scramble, bool):
        raise TypeError(f"scramble must be True or False, got {scramble!r}")
    table = direction_numbers(dim, bits)
    shift = None
    if scramble:
        table, shift = linear_matrix_scramble(table, _rng(seed))
    return sobol_integers(n, table, shift, start).astype(np.float64) * 2.0**-bits


# --------------------------------------------------------------------------- Halton


def first_primes(count: int) -> np.ndarray:
    """The first ``count`` primes, ``(count,)`` int64 (the Halton bases)."""
    count = _check_int("count", count, 1)
    limit = max(16, int(count * (math.log(count + 1) + math.log(math.log(count + 2)) + 2)))
    sieve = np.ones(limit + 1, dtype=bool)
    sieve[:2] = False
    for p in range(2, int(limit**0.5) + 1):
        if sieve[p]:
            sieve[p * p::p] = False
    return np.flatnonzero(sieve)[:count].astype(np.int64)


def digit_count(base: int) -> int:
    """Digits kept by scrambled Halton in ``base``: the least ``J`` with ``base^-J < 2^-52``."""
    return math.floor(52 / math.log2(base)) + 1


def radical_inverse(index: np.ndarray, base: int) -> np.ndarray:
    """``sum_j d_j b^{-j-1}`` for the base-``b`` digits of each nonnegative integer in ``index``."""
    quotient = np.asarray(index, dtype=np.int64).copy()
    result = np.zeros(quotient.shape, dtype=np.float64)
    scale = 1.0 / base
    while np.any(quotient > 0):  # least significant digit first, as SciPy sums them
        quotient, remainder = np.divmod(quotient, base)
        result += remainder * scale
        scale /= base
    return result


def scrambled_radical_inverse(index: np.ndarray, base: int, permutations: np.ndarray) -> np.ndarray:
    """``sum_j pi_j(d_j) b^{-j-1}`` over ``J = len(permutations)`` digit positions, below 1."""
    quotient = np.asarray(index, dtype=np.int64).copy()
    result = np.zeros(quotient.shape, dtype=np.float64)
    scale = 1.0 / base
    for perm in permutations:
        quotient, remainder = np.divmod(quotient, base)
        result += perm[remainder] * scale
        scale /= base
    return np.minimum(result, np.nextafter(1.0, 0.0))  # the all-(b-1) digits sum may round to 1


def halton(n: int, dim: int, *, scramble: bool = True, seed: int = 0, start: int = 0) -> np.ndarray:
    """``(n, dim)`` Halton points ``start..start+n-1`` in ``[0, 1)``, coordinate ``c`` in the ``c``-th prime.

    Scrambled: an independent random permutation of the digits per coordinate and digit
    position, drawn from ``seed``."""
    n = _check_int("n", n, 1)
    dim = _check_int("dim", dim, 1)
    start = _check_int("start", start, 0)
    if not isinstance(scramble, bool):
        raise TypeError(f"scramble must be True or False, got {scramble!r}")
    index = np.arange(start, start + n, dtype=np.int64)
    bases = first_primes(dim)
    rng = _rng(seed) if scramble else None
    columns = []
    for base in bases:
        base = int(base)
        if rng is None:
            columns.append(radical_inverse(index, base))
        else:
            permutations = np.stack([rng.permutation(base) for _ in range(digit_count(base))])
            columns.append(scrambled_radical_inverse(index, base, permutations))
    return np.stack(columns, axis=1)
