"""RNS kernels (basis conversion, rescaling, float conversions), automorphisms and the
canonical embedding, against the big-int / O(N^2) reference."""

import math

import numpy as np
import pytest

from fhe_kernels import reference as ref
from fhe_kernels.automorphism import (
    automorphism_coeff,
    automorphism_ntt,
    galois_element_for_conjugation,
    galois_element_for_rotation,
    ntt_automorphism_permutation,
)
from fhe_kernels.encoding import EmbeddingTable, decode_coefficients, encode_slots
from fhe_kernels.modarith import barrett_constants
from fhe_kernels.ntt import NttTables, ntt_forward
from fhe_kernels.primes import ntt_primes
from fhe_kernels.rns import (
    BasisConversionTable,
    GarnerTable,
    fast_basis_convert,
    float_to_rns,
    pow2_mod_table,
    rescale_round_prepare,
    rns_to_float_centered,
    signed_to_rns,
    sub_and_scale,
)
from fhe_kernels.modarith import shoup_word

N = 16


def _consts(moduli):
    c = [barrett_constants(q) for q in moduli]
    return (
        np.array(moduli, dtype=np.uint64),
        np.array([x[0] for x in c], dtype=np.uint64),
        np.array([x[1] for x in c], dtype=np.uint64),
    )


def test_fast_basis_conversion_is_exact_up_to_a_small_multiple_of_c():
    rng = np.random.default_rng(11)
    source = ntt_primes(50, 3, N)
    target = ntt_primes(60, 2, N)
    table = BasisConversionTable(source, target)
    x = np.stack([rng.integers(0, q, N, dtype=np.uint64) for q in source])[None].copy()
    out = np.empty((1, len(target), N), dtype=np.uint64)
    fast_basis_convert(x, out, *table.args())
    big_c = math.prod(source)
    for j in range(N):
        residues = [int(x[0, i, j]) for i in range(len(source))]
        want = ref.basis_convert_fast(residues, source, target)
        assert [int(out[0, t, j]) for t in range(len(target))] == want
        exact = ref.crt_compose(residues, source)
        # Conv(x) = x + u C with 0 <= u < len(source)
        for t, p in enumerate(target):
            assert any((exact + u * big_c - int(out[0, t, j])) % p == 0 for u in range(len(source)))


def test_rescale_rounds_to_nearest():
    rng = np.random.default_rng(12)
    moduli = ntt_primes(50, 4, N)
    qs, mu, k = _consts(moduli[:-1])
    x = np.stack([rng.integers(0, q, N, dtype=np.uint64) for q in moduli])
    corr = np.empty((1, 3, N), dtype=np.uint64)
    rescale_round_prepare(x[-1][None].copy(), corr, np.uint64(moduli[-1]), qs, mu, k)
    inv = [pow(moduli[-1], -1, q) for q in moduli[:-1]]
    out = np.empty((1, 3, N), dtype=np.uint64)
    sub_and_scale(
        x[None, :-1].copy(), corr, out, qs, np.array(inv, dtype=np.uint64),
        np.array([shoup_word(v, q) for v, q in zip(inv, moduli)], dtype=np.uint64),
    )
    for j in range(N):
        want = ref.rescale_round([int(v) for v in x[:, j]], moduli)
        assert [int(out[0, i, j]) for i in range(3)] == want


@pytest.mark.parametrize("value", [0.0, 0.49, -0.5, 1.5, -2.5e6, 2.0**62 + 2048, -(2.0**70) * 3, 1.2345e200])
def test_float_to_rns_exact(value):
    moduli = ntt_primes(50, 2, N) + ntt_primes(60, 1, N)
    qs, mu, k = _consts(moduli)
    vals = np.full(N, value)
    out = np.empty((3, N), dtype=np.uint64)
    float_to_rns(vals, out, qs, mu, k, pow2_mod_table(moduli))
    exact = int(round(value)) if abs(value) < 2**62 else int(value)
    # round() in Python is half-to-even; the kernel rounds half away from zero on |v|
    if abs(value) < 2**62 and abs(value - math.trunc(value)) == 0.5:
        exact = int(math.copysign(math.floor(abs(value) + 0.5), value))
    assert [int(out[i, 0]) for i in range(3)] == [exact % q for q in moduli]


def test_garner_reconstructs_centered_values():
    moduli = ntt_primes(50, 3, N)
    big = math.prod(moduli)
    values = [0, 1, -1, 2**100 + 12345, -(2**120) - 7, big // 2 - 1, -(big // 2) + 1, 3 * 2**60]
    x = np.array([[v % q for v in values] for q in moduli], dtype=np.uint64)
    table = GarnerTable(moduli)
    out = np.empty(len(values))
    rns_to_float_centered(x, out, *table.args())
    for got, v in zip(out, values):
        assert got == pytest.approx(float(v), rel=1e-15, abs=0)
        assert ref.centered(ref.crt_compose([v % q for q in moduli], moduli), big) == v


def test_signed_to_rns():
    moduli = ntt_primes(40, 2, N)
    got = signed_to_rns(np.array([-1, 0, 1, -5]), moduli)
    assert [[int(v) for v in row] for row in got] == [[q - 1, 0, 1, q - 5] for q in moduli]


@pytest.mark.parametrize("g_kind", ["rot1", "rot3", "rot-1", "conj"])
def test_automorphism_ntt_matches_coefficient_definition(g_kind):
    n = 32
    moduli = ntt_primes(50, 2, n)
    tables = NttTables(moduli, n)
    g = {
        "rot1": galois_element_for_rotation(1, n),
        "rot3": galois_element_for_rotation(3, n),
        "rot-1": galois_element_for_rotation(-1, n),
        "conj": galois_element_for_conjugation(n),
    }[g_kind]
    rng = np.random.default_rng(g)
    a = np.stack([rng.integers(0, q, n, dtype=np.uint64) for q in moduli])[None].copy()
    coeff_out = np.empty_like(a)
    automorphism_coeff(a, coeff_out, g, np.array(moduli, dtype=np.uint64))
    for i, q in enumerate(moduli):
        assert [int(v) for v in coeff_out[0, i]] == ref.automorphism([int(v) for v in a[0, i]], g, q)
    rows = np.arange(len(moduli))
    fa = a.copy()
    ntt_forward(fa, rows, tables.moduli, tables.psi_rev, tables.psi_rev_shoup)
    ntt_forward(coeff_out, rows, tables.moduli, tables.psi_rev, tables.psi_rev_shoup)
    got = np.empty_like(fa)
    automorphism_ntt(fa, got, ntt_automorphism_permutation(g, n))
    assert np.array_equal(got, coeff_out)


@pytest.mark.parametrize("n", [8, 32, 128])
def test_embedding_matches_definition(n):
    rng = np.random.default_rng(n)
    table = EmbeddingTable(n)
    z = rng.normal(size=n // 2) + 1j * rng.normal(size=n // 2)
    m = encode_slots(z, table)
    assert np.allclose(ref.canonical_embedding(list(m), n), z, atol=1e-9)
    assert np.allclose(ref.canonical_embedding_inverse(list(z), n), m, atol=1e-9)
    assert np.allclose(decode_coefficients(m, table), z, atol=1e-9)


def test_rotation_galois_element_rotates_slots_left():
    n = 64
    table = EmbeddingTable(n)
    z = np.arange(n // 2) + 0.5j
    m = encode_slots(z, table)
    q = (1 << 61) - 1
    scaled = [int(round(c * 2**30)) % q for c in m]
    for step in (1, 5, -2):
        rotated = ref.automorphism(scaled, galois_element_for_rotation(step, n), q)
        back = decode_coefficients(np.array([ref.centered(c, q) / 2**30 for c in rotated]), table)
        assert np.allclose(back, np.roll(z, -step), atol=1e-6)
