"""Device functions for 64-bit modular arithmetic, twins of ``fhe_kernels.modarith``.

Same reductions, same ranges, same constants (``barrett_constants``,
``shoup_word`` from the CPU module build them): Shoup multiplication by a
fixed operand, Barrett reduction of a 128-bit product, and the 2**64-fold
reduction of a 128-bit accumulator.

Numba-cuda traps, each marked where it bites:

* uint64 mixed with any signed integer (a literal ``1``, a loop index, an
  int64 argument) is promoted to float64 in numba-cuda, silently: the result
  is wrong above 2**53 and the kernel gets slow double-precision code. Every
  literal here is ``uint64(...)``; indices never meet residues.
* ``numba.cuda.libdevice.umul64hi`` (``__nv_umul64hi``, one ``mul.hi.u64``)
  is declared on int64. Its operands are cast to int64 and its result back
  to uint64; both casts are bit-preserving.
* Under the CUDA simulator libdevice functions are empty stubs, so there
  ``_umul64hi`` is a Python model of ``__nv_umul64hi`` with the same int64
  interface: the casts above still run and are tested.
"""

from numba import cuda, int64, uint64
from numba.cuda import libdevice

from .launch import simulating

_MASK64 = (1 << 64) - 1


def _umul64hi_model(x, y):
    """__nv_umul64hi for the simulator: the high word of the unsigned product of int64 bit patterns."""
    return int64(uint64(((int(x) & _MASK64) * (int(y) & _MASK64)) >> 64))


_umul64hi = _umul64hi_model if simulating() else libdevice.umul64hi


@cuda.jit(device=True, inline=True)
def mulhi64(a, b):
    """High 64 bits of the 128-bit product a*b (a, b uint64)."""
    # umul64hi is declared int64 -> int64: cast in and out (bit casts), or the
    # uint64 operands would be converted through float64.
    return uint64(_umul64hi(int64(a), int64(b)))


@cuda.jit(device=True, inline=True)
def mul_shoup_lazy(x, w, w_shoup, q):
    """x*w mod q in [0, 2q), for any uint64 x and fixed w < q with w_shoup = floor(w * 2**64 / q)."""
    return x * w - mulhi64(x, w_shoup) * q


@cuda.jit(device=True, inline=True)
def mul_shoup(x, w, w_shoup, q):
    """x*w mod q in [0, q), for any uint64 x."""
    r = mul_shoup_lazy(x, w, w_shoup, q)
    if r >= q:
        r -= q
    return r


@cuda.jit(device=True, inline=True)
def barrett_reduce_wide(hi, lo, q, mu, k):
    """(hi*2**64 + lo) mod q in [0, q) for a double word below 2**(2k); k = bitlen(q), mu = floor(2**(2k)/q).

    k arrives as uint64 (the tables store it so): with an int64 k the shift
    counts below would turn the whole expression into float64.
    """
    s = k - uint64(1)
    x1 = (hi << (uint64(64) - s)) | (lo >> s)
    p_hi = mulhi64(x1, mu)
    p_lo = x1 * mu
    t = k + uint64(1)
    quot = (p_hi << (uint64(64) - t)) | (p_lo >> t)
    r = lo - quot * q  # exact modulo 2**64: the true remainder is < 3q
    if r >= q:
        r -= q
    if r >= q:
        r -= q
    return r


@cuda.jit(device=True, inline=True)
def mul_mod(a, b, q, mu, k):
    """a*b mod q in [0, q) for a, b in [0, q) (Barrett)."""
    return barrett_reduce_wide(mulhi64(a, b), a * b, q, mu, k)


@cuda.jit(device=True, inline=True)
def reduce_u64(x, q, mu, k):
    """x mod q in [0, q) for any uint64 x (needs q >= 2**31)."""
    return barrett_reduce_wide(uint64(0), x, q, mu, k)


@cuda.jit(device=True, inline=True)
def add_mod(a, b, q):
    """a+b mod q for a, b in [0, q)."""
    r = a + b
    if r >= q:
        r -= q
    return r


@cuda.jit(device=True, inline=True)
def sub_mod(a, b, q):
    """a-b mod q for a, b in [0, q)."""
    if a >= b:
        return a - b
    return a + q - b


@cuda.jit(device=True, inline=True)
def reduce_u128(hi, lo, q, r64, r64_shoup, mu, k):
    """(hi*2**64 + lo) mod q in [0, q) for any hi, lo; r64 = 2**64 mod q with its Shoup word."""
    return add_mod(mul_shoup(hi, r64, r64_shoup, q), reduce_u64(lo, q, mu, k), q)


@cuda.jit(device=True, inline=True)
def mac128(hi, lo, x, y):
    """(hi, lo) + x*y as a 128-bit sum (returns the new hi, lo); no overflow check."""
    p_lo = x * y
    p_hi = mulhi64(x, y)
    lo2 = lo + p_lo
    if lo2 < p_lo:  # carry out of the low word
        p_hi += uint64(1)
    return hi + p_hi, lo2
