"""lab.protocol.sequences against SciPy: exact unscrambled points, scrambled uniformity and balance.

Also the package's contract: NumPy only (no JAX import), a docstring per module, and
every module short enough to read in one sitting."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.stats import qmc

from lab.protocol import sequences

PACKAGE = Path(__file__).resolve().parent.parent / "lab" / "protocol"


# --------------------------------------------------------------------------- unscrambled = SciPy


@pytest.mark.parametrize("dim", [1, 2, 10, sequences.MAX_SOBOL_DIM])
def test_plain_sobol_equals_scipy_bit_for_bit(dim):
    ours = sequences.sobol(1024, dim, scramble=False)
    theirs = qmc.Sobol(dim, scramble=False).random_base2(10)
    assert ours.dtype == np.float64 and ours.shape == (1024, dim)
    np.testing.assert_array_equal(ours, theirs)


def test_plain_sobol_equals_scipy_at_52_bits():
    ours = sequences.sobol(256, 10, scramble=False, bits=52)
    theirs = qmc.Sobol(10, scramble=False, bits=52).random_base2(8)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dim", [1, 5, 40])
def test_plain_halton_equals_scipy_bit_for_bit(dim):
    ours = sequences.halton(1000, dim, scramble=False)
    theirs = qmc.Halton(dim, scramble=False).random(1000)
    np.testing.assert_array_equal(ours, theirs)


def test_direction_numbers_are_valid():
    # m_k = V_k / 2^(bits-k) is odd and below 2^k (Bratley & Fox), coordinate 1 is van der Corput
    bits = 30
    table = sequences.direction_numbers(sequences.MAX_SOBOL_DIM, bits).astype(object)
    for c in range(sequences.MAX_SOBOL_DIM):
        for k in range(1, bits + 1):
            m = table[c, k - 1] >> (bits - k)
            assert m << (bits - k) == table[c, k - 1] and m % 2 == 1 and m < 2**k, (c, k)
    assert list(table[0]) == [1 << (bits - k) for k in range(1, bits + 1)]
    np.testing.assert_array_equal(sequences.sobol(8, 1, scramble=False)[:, 0],
                                  [0, 0.5, 0.75, 0.25, 0.375, 0.875, 0.625, 0.125])


def test_first_primes():
    np.testing.assert_array_equal(sequences.first_primes(12), [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37])
    assert sequences.first_primes(1000)[-1] == 7919


# --------------------------------------------------------------------------- determinism, continuation


@pytest.mark.parametrize("draw", [sequences.sobol, sequences.halton])
def test_seeded_deterministic_and_continuable(draw):
    a, b = draw(64, 6, seed=7), draw(64, 6, seed=7)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, draw(64, 6, seed=8))
    for scramble in (True, False):
        whole = draw(48, 6, seed=3, scramble=scramble)
        np.testing.assert_array_equal(draw(16, 6, seed=3, scramble=scramble, start=32), whole[32:])
    assert a.min() >= 0.0 and a.max() < 1.0


# --------------------------------------------------------------------------- scrambled: uniformity


@pytest.mark.parametrize("kind", ["sobol", "halton"])
def test_scrambled_discrepancy_matches_scipy(kind):
    # centered L2 discrepancy, mean over 16 scramblings: ours within 15% of SciPy's scrambled
    # sequence, and both ~20x below i.i.d. uniform points of the same size
    n, dim = (256, 5) if kind == "sobol" else (250, 5)
    draw = sequences.sobol if kind == "sobol" else sequences.halton
    engine = qmc.Sobol if kind == "sobol" else qmc.Halton
    ours = np.mean([qmc.discrepancy(draw(n, dim, seed=s)) for s in range(16)])
    theirs = np.mean([qmc.discrepancy(engine(dim, rng=np.random.default_rng(100 + s)).random(n))
                      for s in range(16)])
    iid = np.mean([qmc.discrepancy(np.random.default_rng(s).random((n, dim))) for s in range(16)])
    assert abs(ours / theirs - 1) < 0.15, (ours, theirs)
    assert ours < iid / 10, (ours, iid)


@pytest.mark.parametrize("draw", [sequences.sobol, sequences.halton])
def test_each_scrambled_point_is_uniform(draw):
    # over 400 scramblings, one fixed point (index 5) is uniform in every coordinate (KS test)
    points = np.stack([draw(6, 3, seed=s)[5] for s in range(400)])
    for c in range(3):
        assert stats.kstest(points[:, c], "uniform").pvalue > 1e-3, c


# --------------------------------------------------------------------------- balance


@pytest.mark.parametrize("scramble,seed", [(False, 0), (True, 0), (True, 1), (True, 2)])
def test_sobol_first_2k_points_stratify_every_coordinate(scramble, seed):
    x = sequences.sobol(2**11, 12, scramble=scramble, seed=seed)
    for k in range(12):
        cells = np.floor(x[:2**k] * 2**k).astype(np.int64)  # dyadic interval of length 2^-k
        for c in range(12):
            np.testing.assert_array_equal(np.sort(cells[:, c]), np.arange(2**k), err_msg=f"k={k} c={c}")


@pytest.mark.parametrize("scramble", [False, True])
def test_halton_first_bk_points_stratify_each_coordinate(scramble):
    x = sequences.halton(2**11, 5, scramble=scramble, seed=4)
    for c, base in enumerate(sequences.first_primes(5)):
        k = 0
        while base**k <= 2**11:
            # plain points sit on interval ends, summed in floating point (7/9 = 1/3 + 2/9 lands
            # a rounding below 7/9): 1e-9 puts them back; scrambled points are nowhere near an end
            cells = np.floor(x[:base**k, c] * base**k + 1e-9).astype(np.int64)
            np.testing.assert_array_equal(np.sort(cells), np.arange(base**k), err_msg=f"b={base} k={k}")
            k += 1


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("call,error,match", [
    (lambda: sequences.sobol(8, sequences.MAX_SOBOL_DIM + 1), ValueError, "dim must be in"),
    (lambda: sequences.sobol(0, 2), ValueError, "n must be >= 1"),
    (lambda: sequences.halton(-1, 2), ValueError, "n must be >= 1"),
    (lambda: sequences.halton(4, 0), ValueError, "dim must be >= 1"),
    (lambda: sequences.sobol(8, 2, bits=3, start=1), ValueError, "2\\*\\*3 = 8 points"),
    (lambda: sequences.sobol(8, 2, bits=53), ValueError, "bits must be in"),
    (lambda: sequences.sobol(8, 2, seed=-1), ValueError, "seed must be >= 0"),
    (lambda: sequences.halton(8, 2, seed=1.5), TypeError, "seed must be an integer"),
    (lambda: sequences.sobol(8, 2, scramble="yes"), TypeError, "scramble must be True or False"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


# --------------------------------------------------------------------------- the package's contract


def test_protocol_modules_use_numpy_only_and_state_a_contract():
    allowed = {"numpy", "lab", "__future__", "dataclasses", "math", "types", "typing"}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.name} has no contract docstring"
        assert len(path.read_text().splitlines()) <= 500, path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
                if name.startswith("lab"):
                    assert name.startswith("lab.protocol"), f"{path.name} imports {name}"
        calls = {node.func.id for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
        assert not calls & {"print", "open", "input"}, f"{path.name} calls {calls & {'print', 'open', 'input'}}"
