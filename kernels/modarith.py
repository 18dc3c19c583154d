"""Modular arithmetic on 64-bit words for primes below 2**61.

Every value and constant here is uint64. Numba promotes uint64 mixed with a
signed integer to int64 (or float64), silently, so literals are wrapped in
``np.uint64`` and loop indices never meet residues in one expression.

Reductions used by the kernels:

* ``mulhi64``: the high word of a 64x64-bit product, emitted as an LLVM i128
  multiply, which compiles to one ``mul``/``mulx`` on x86-64.
* Shoup multiplication by a fixed operand w with precomputed
  ``w_shoup = floor(w * 2**64 / q)`` [Shoup, NTL; Harvey 2014, "Faster
  arithmetic for number-theoretic transforms", Alg. 2]: two multiplies and a
  subtraction; the lazy form returns [0, 2q) for any 64-bit input.
* Barrett reduction [Barrett 1986] of a double-word product of two reduced
  operands, with ``k = bitlen(q)`` and ``mu = floor(2**(2k) / q)``: the
  quotient estimate is at most 2 short, so the remainder is < 3q before the
  final corrections.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

U64 = np.uint64
ONE = np.uint64(1)


@intrinsic
def _mulhi64_intrinsic(typingctx, a, b):
    if a != types.uint64 or b != types.uint64:
        return None
    sig = types.uint64(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        wide = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        return builder.trunc(builder.lshr(wide, ir.Constant(i128, 64)), ir.IntType(64))

    return sig, codegen


@njit(inline="always", cache=True)
def mulhi64(a, b):
    """High 64 bits of the 128-bit product a*b (a, b uint64)."""
    return _mulhi64_intrinsic(a, b)


@njit(inline="always", cache=True)
def mul_shoup_lazy(x, w, w_shoup, q):
    """x*w mod q in [0, 2q), for any uint64 x and fixed w < q with its Shoup word."""
    quot = mulhi64(x, w_shoup)
    return x * w - quot * q


@njit(inline="always", cache=True)
def mul_shoup(x, w, w_shoup, q):
    """x*w mod q in [0, q)."""
    r = mul_shoup_lazy(x, w, w_shoup, q)
    if r >= q:
        r -= q
    return r


@njit(inline="always", cache=True)
def barrett_reduce_wide(hi, lo, q, mu, k):
    """(hi*2**64 + lo) mod q in [0, q), for a double word below q**2 < 2**(2k).

    ``k = bitlen(q) <= 61`` and ``mu = floor(2**(2k) / q) < 2**(k+1)``.
    """
    # x1 = floor(x / 2**(k-1)) < 2**(k+1): the top bits of the double word.
    s = np.uint64(k - 1)
    x1 = (hi << (np.uint64(64) - s)) | (lo >> s)
    # quotient estimate floor(x1 * mu / 2**(k+1)), from a 128-bit product.
    p_hi = mulhi64(x1, mu)
    p_lo = x1 * mu
    t = np.uint64(k + 1)
    quot = (p_hi << (np.uint64(64) - t)) | (p_lo >> t)
    r = lo - quot * q  # exact modulo 2**64 since the true remainder is < 3q < 2**64
    if r >= q:
        r -= q
    if r >= q:
        r -= q
    return r


@njit(inline="always", cache=True)
def mul_mod(a, b, q, mu, k):
    """a*b mod q in [0, q) for a, b in [0, q) (Barrett)."""
    return barrett_reduce_wide(mulhi64(a, b), a * b, q, mu, k)


@njit(inline="always", cache=True)
def reduce_u64(x, q, mu, k):
    """x mod q in [0, q) for any uint64 x (Barrett; needs 2k >= 64, i.e. q >= 2**31)."""
    return barrett_reduce_wide(np.uint64(0), x, q, mu, k)


@njit(inline="always", cache=True)
def add_mod(a, b, q):
    """a+b mod q for a, b in [0, q)."""
    r = a + b
    if r >= q:
        r -= q
    return r


@njit(inline="always", cache=True)
def sub_mod(a, b, q):
    """a-b mod q for a, b in [0, q)."""
    if a >= b:
        return a - b
    return a + q - b


def barrett_constants(q: int) -> tuple[int, int]:
    """(mu, k) for ``barrett_reduce_wide``: k = bitlen(q), mu = floor(2**(2k) / q)."""
    k = int(q).bit_length()
    if k > 61:
        raise ValueError(f"modulus {q} has {k} bits; the kernels support at most 61")
    return (1 << (2 * k)) // q, k


def shoup_word(w: int, q: int) -> int:
    """floor(w * 2**64 / q), the precomputed word of Shoup multiplication by w."""
    return (int(w) << 64) // int(q)


@njit(inline="always", cache=True)
def reduce_u128(hi, lo, q, r64, r64_shoup, mu, k):
    """(hi*2**64 + lo) mod q in [0, q) for any hi, lo (needs q >= 2**32).

    ``r64 = 2**64 mod q`` with its Shoup word: hi*2**64 = hi*r64 (mod q).
    """
    return add_mod(mul_shoup(hi, r64, r64_shoup, q), reduce_u64(lo, q, mu, k), q)


@njit(cache=True)
def shoup_words(w, q):
    """floor(w[j] * 2**64 / q) for every w[j] < q: vectorised ``shoup_word``.

    Restoring long division of the 128-bit w[j] * 2**64 by q, one quotient bit
    per step; only used to build tables.
    """
    out = np.empty_like(w)
    for j in range(w.shape[0]):
        rem = w[j]  # the high word of the dividend; < q, so the quotient fits 64 bits
        quot = np.uint64(0)
        for _ in range(64):
            carry = rem >> np.uint64(63)
            rem = rem << ONE
            quot = quot << ONE
            if carry or rem >= q:
                rem -= q
                quot |= ONE
        out[j] = quot
    return out


@njit(cache=True)
def powers_mod(base, n, q, mu, k):
    """[base**0, base**1, ..., base**(n-1)] mod q as uint64."""
    out = np.empty(n, dtype=np.uint64)
    x = np.uint64(1)
    for j in range(n):
        out[j] = x
        x = mul_mod(x, base, q, mu, k)
    return out
