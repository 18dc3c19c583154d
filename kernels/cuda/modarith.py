"""Device functions for 64-bit modular arithmetic (numba.cuda), twins of ``fhe_kernels.modarith``.

Traps this file works around:
* ``numba.cuda.libdevice.umul64hi`` is declared on int64, so it is called on
  int64 views of the operands and its result is wrapped in ``uint64(...)``
  (the conversions are bit casts). In a uint64 expression, one signed operand
  silently turns the whole expression into float64 in numba-cuda: every
  literal here is a ``uint64``.
* Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) libdevice functions
  are stubs returning None, so there the high word comes from a 32-bit split
  (four 32x32-bit products), which is also correct on a GPU, only slower.
"""

from numba import cuda, int64, uint64
from numba.core import config

MASK32 = uint64(0xFFFFFFFF)
S32 = uint64(32)


@cuda.jit(device=True, inline=True)
def _mulhi_split(a, b):
    a_lo = a & MASK32
    a_hi = a >> S32
    b_lo = b & MASK32
    b_hi = b >> S32
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> S32) + (p1 & MASK32) + (p2 & MASK32)
    return p3 + (p1 >> S32) + (p2 >> S32) + (mid >> S32)


if config.ENABLE_CUDASIM:
    mulhi64 = _mulhi_split
else:  # pragma: no cover - needs a GPU

    @cuda.jit(device=True, inline=True)
    def mulhi64(a, b):
        return uint64(cuda.libdevice.umul64hi(int64(a), int64(b)))


@cuda.jit(device=True, inline=True)
def mul_shoup_lazy(x, w, w_shoup, q):
    """x*w mod q in [0, 2q) for a fixed w < q with its Shoup word."""
    return x * w - mulhi64(x, w_shoup) * q


@cuda.jit(device=True, inline=True)
def mul_shoup(x, w, w_shoup, q):
    r = mul_shoup_lazy(x, w, w_shoup, q)
    return r - q if r >= q else r


@cuda.jit(device=True, inline=True)
def barrett_reduce_wide(hi, lo, q, mu, k):
    """(hi*2**64 + lo) mod q for a double word below 2**(2k) (see fhe_kernels.modarith)."""
    s = k - uint64(1)
    x1 = (hi << (uint64(64) - s)) | (lo >> s)
    p_hi = mulhi64(x1, mu)
    p_lo = x1 * mu
    t = k + uint64(1)
    quot = (p_hi << (uint64(64) - t)) | (p_lo >> t)
    r = lo - quot * q
    if r >= q:
        r -= q
    if r >= q:
        r -= q
    return r


@cuda.jit(device=True, inline=True)
def mul_mod(a, b, q, mu, k):
    return barrett_reduce_wide(mulhi64(a, b), a * b, q, mu, k)


@cuda.jit(device=True, inline=True)
def reduce_u64(x, q, mu, k):
    return barrett_reduce_wide(uint64(0), x, q, mu, k)


@cuda.jit(device=True, inline=True)
def add_mod(a, b, q):
    r = a + b
    return r - q if r >= q else r


@cuda.jit(device=True, inline=True)
def sub_mod(a, b, q):
    return a - b if a >= b else a + q - b


@cuda.jit(device=True, inline=True)
def reduce_u128(hi, lo, q, r64, r64_shoup, mu, k):
    return add_mod(mul_shoup(hi, r64, r64_shoup, q), reduce_u64(lo, q, mu, k), q)
