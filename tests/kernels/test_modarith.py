"""Modular arithmetic kernels against Python integers, including edge values."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from fhe_kernels.modarith import (
    barrett_constants,
    mul_mod,
    mul_shoup,
    mul_shoup_lazy,
    mulhi64,
    reduce_u64,
    reduce_u128,
    shoup_word,
    shoup_words,
)
from fhe_kernels.primes import is_prime, ntt_primes

U64_MAX = 2**64 - 1
PRIMES = [ntt_primes(30, 1, 16)[0], ntt_primes(50, 1, 1 << 16)[0], ntt_primes(60, 2, 1 << 16)[1], (1 << 61) - 1]


@njit
def _mulhi(a, b):
    return mulhi64(a, b)


@njit
def _mul_mod(a, b, q, mu, k):
    return mul_mod(a, b, q, mu, k)


@njit
def _shoup(x, w, ws, q):
    return mul_shoup(x, w, ws, q), mul_shoup_lazy(x, w, ws, q)


@njit
def _reduce128(hi, lo, q, r64, r64s, mu, k):
    return reduce_u128(hi, lo, q, r64, r64s, mu, k)


@njit
def _reduce64(x, q, mu, k):
    return reduce_u64(x, q, mu, k)


def test_primes_are_ntt_friendly():
    for bits, n in [(30, 16), (50, 1 << 16), (60, 1 << 16)]:
        ps = ntt_primes(bits, 4, n)
        assert len(set(ps)) == 4
        for p in ps:
            assert is_prime(p) and p % (2 * n) == 1 and abs(p.bit_length() - bits) <= 1
    assert not is_prime(561) and not is_prime(2**64 + 1) and is_prime(2**61 - 1)


@pytest.mark.parametrize("a,b", [(0, 0), (1, 1), (U64_MAX, U64_MAX), (U64_MAX, 2), (2**63, 2**63), (2**32, 2**32 - 1)])
def test_mulhi_edges(a, b):
    assert int(_mulhi(np.uint64(a), np.uint64(b))) == (a * b) >> 64


@settings(max_examples=300, deadline=None)
@given(st.integers(0, U64_MAX), st.integers(0, U64_MAX))
def test_mulhi_random(a, b):
    assert int(_mulhi(np.uint64(a), np.uint64(b))) == (a * b) >> 64


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PRIMES), st.data())
def test_barrett_and_shoup(q, data):
    a = data.draw(st.integers(0, q - 1))
    b = data.draw(st.integers(0, q - 1))
    x = data.draw(st.integers(0, U64_MAX))
    mu, k = barrett_constants(q)
    Q, MU, K = np.uint64(q), np.uint64(mu), np.uint64(k)
    assert int(_mul_mod(np.uint64(a), np.uint64(b), Q, MU, K)) == a * b % q
    full, lazy = _shoup(np.uint64(x), np.uint64(b), np.uint64(shoup_word(b, q)), Q)
    assert int(full) == x * b % q
    assert int(lazy) % q == x * b % q and int(lazy) < 2 * q
    if k >= 32:
        assert int(_reduce64(np.uint64(x), Q, MU, K)) == x % q
        hi = data.draw(st.integers(0, U64_MAX))
        r64 = (1 << 64) % q
        got = _reduce128(np.uint64(hi), np.uint64(x), Q, np.uint64(r64), np.uint64(shoup_word(r64, q)), MU, K)
        assert int(got) == ((hi << 64) + x) % q


def test_barrett_worst_case_operands():
    for q in PRIMES:
        mu, k = barrett_constants(q)
        for a, b in [(q - 1, q - 1), (q - 1, 1), (q // 2, q - 2), (0, q - 1)]:
            got = _mul_mod(np.uint64(a), np.uint64(b), np.uint64(q), np.uint64(mu), np.uint64(k))
            assert int(got) == a * b % q


def test_shoup_words_vectorised():
    q = PRIMES[2]
    w = np.array([0, 1, q - 1, q // 3, 12345678901234], dtype=np.uint64)
    assert [int(v) for v in shoup_words(w, np.uint64(q))] == [shoup_word(int(v), q) for v in w]


def test_barrett_refuses_wide_moduli():
    with pytest.raises(ValueError, match="62 bits"):
        barrett_constants((1 << 61) + 1)
