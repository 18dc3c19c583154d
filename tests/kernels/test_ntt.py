"""The NTT against its definition and against the O(N^2) negacyclic product."""

import numpy as np
import pytest

from fhe_kernels import reference as ref
from fhe_kernels.ntt import NttTables, ntt_forward, ntt_inverse
from fhe_kernels.primes import ntt_primes


def _forward(tables, a):
    x = np.array(a, dtype=np.uint64)[None].copy()
    ntt_forward(x, np.arange(x.shape[1]), tables.moduli, tables.psi_rev, tables.psi_rev_shoup)
    return x[0]


def _inverse(tables, a):
    x = np.array(a, dtype=np.uint64)[None].copy()
    t = tables
    ntt_inverse(x, np.arange(x.shape[1]), t.moduli, t.ipsi_rev, t.ipsi_rev_shoup, t.n_inv, t.n_inv_shoup)
    return x[0]


def test_known_answer_n4_q17():
    # psi = 9 is a primitive 8th root of unity mod 17 (9^4 = 16 = -1). Slot j holds
    # a(psi^(2 brv(j) + 1)): the points psi^1, psi^5, psi^3, psi^7 = 9, 8, 15, 2.
    # a(X) = 1 + 2X + 3X^2 + 4X^3:
    #   a(9)  = 1 + 18 + 3*13 + 4*15 = 118 = 16 (mod 17)
    #   a(8)  = 1 + 16 + 3*13 + 4*2  =  64 = 13
    #   a(15) = 1 + 30 + 3*4  + 4*9  =  79 = 11
    #   a(2)  = 1 + 4  + 3*4  + 4*8  =  49 = 15
    tables = NttTables([17], 4)
    assert tables.psi == [9]
    assert [int(v) for v in _forward(tables, [[1, 2, 3, 4]])[0]] == [16, 13, 11, 15]
    assert [int(v) for v in _inverse(tables, [[16, 13, 11, 15]])[0]] == [1, 2, 3, 4]


@pytest.mark.parametrize("n", [4, 8, 32, 64])
def test_forward_matches_definition(n):
    rng = np.random.default_rng(n)
    moduli = ntt_primes(30, 1, n) + ntt_primes(50, 1, n) + ntt_primes(60, 1, n)
    tables = NttTables(moduli, n)
    a = [[int(v) for v in rng.integers(0, q, n, dtype=np.uint64)] for q in moduli]
    got = _forward(tables, a)
    for i, q in enumerate(moduli):
        assert [int(v) for v in got[i]] == ref.ntt_forward(a[i], q, tables.psi[i])
        assert ref.ntt_inverse(ref.ntt_forward(a[i], q, tables.psi[i]), q, tables.psi[i]) == a[i]


@pytest.mark.parametrize("n", [8, 64, 256])
def test_pointwise_product_is_negacyclic_product(n):
    rng = np.random.default_rng(1000 + n)
    moduli = ntt_primes(50, 2, n) + ntt_primes(60, 1, n)
    tables = NttTables(moduli, n)
    a = [[int(v) for v in rng.integers(0, q, n, dtype=np.uint64)] for q in moduli]
    b = [[int(v) for v in rng.integers(0, q, n, dtype=np.uint64)] for q in moduli]
    fa, fb = _forward(tables, a), _forward(tables, b)
    prod = [[int(x) * int(y) % q for x, y in zip(fa[i], fb[i])] for i, q in enumerate(moduli)]
    got = _inverse(tables, prod)
    for i, q in enumerate(moduli):
        assert [int(v) for v in got[i]] == ref.negacyclic_multiply(a[i], b[i], q)


def test_round_trip_large_ring_and_extreme_values():
    n = 1 << 12
    moduli = ntt_primes(60, 3, n)
    tables = NttTables(moduli, n)
    rng = np.random.default_rng(7)
    a = np.stack([rng.integers(0, q, n, dtype=np.uint64) for q in moduli])
    a[:, 0] = [q - 1 for q in moduli]  # the largest residue survives the lazy ranges
    back = _inverse(tables, _forward(tables, a))
    assert np.array_equal(back, a)


def test_rows_indirection_selects_tables():
    n = 16
    moduli = ntt_primes(40, 3, n)
    tables = NttTables(moduli, n)
    rng = np.random.default_rng(3)
    x = np.stack([rng.integers(0, moduli[2], n, dtype=np.uint64)])[None].copy()
    full = _forward(tables, [[0] * n, [0] * n, list(x[0, 0])])
    ntt_forward(x, np.array([2]), tables.moduli, tables.psi_rev, tables.psi_rev_shoup)
    assert np.array_equal(x[0, 0], full[2])


def test_tables_refuse_moduli_above_2_62():
    with pytest.raises(ValueError, match="2\\*\\*62"):
        NttTables([(1 << 62) + 1], 4)
