"""Element-wise arithmetic on RNS polynomials, batched (B, L, N) uint64 in [0, q).

Row i of the limb axis is reduced modulo ``moduli[i]``. Products use Barrett
reduction with per-limb ``(mu, k)`` from ``modarith.barrett_constants``;
multiplication by a per-limb constant uses a Shoup word. Outputs are written
to ``out`` (which may alias an input), so a caller can work in place.
"""

import numpy as np
from numba import njit, prange

from .modarith import add_mod, mul_mod, mul_shoup, sub_mod


@njit(parallel=True, cache=True)
def poly_add(a, b, out, moduli):
    """out = a + b (mod q_i); shapes (B, L, N), in/out [0, q)."""
    nb, nl, n = out.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        for j in range(np.uint64(n)):
            out[s, i, j] = add_mod(a[s, i, j], b[s, i, j], q)


@njit(parallel=True, cache=True)
def poly_sub(a, b, out, moduli):
    """out = a - b (mod q_i)."""
    nb, nl, n = out.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        for j in range(np.uint64(n)):
            out[s, i, j] = sub_mod(a[s, i, j], b[s, i, j], q)


@njit(parallel=True, cache=True)
def poly_neg(a, out, moduli):
    """out = -a (mod q_i)."""
    nb, nl, n = out.shape
    zero = np.uint64(0)
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        for j in range(np.uint64(n)):
            x = a[s, i, j]
            out[s, i, j] = zero if x == zero else q - x


@njit(parallel=True, cache=True)
def poly_mul(a, b, out, moduli, barrett_mu, barrett_k):
    """out = a * b (mod q_i), pointwise (NTT domain: the negacyclic product)."""
    nb, nl, n = out.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        mu = barrett_mu[i]
        k = barrett_k[i]
        for j in range(np.uint64(n)):
            out[s, i, j] = mul_mod(a[s, i, j], b[s, i, j], q, mu, k)


@njit(parallel=True, cache=True)
def poly_mul_scalar(a, out, moduli, scalars, scalars_shoup):
    """out = a * c_i (mod q_i) with one constant per limb (Shoup)."""
    nb, nl, n = out.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        w = scalars[i]
        ws = scalars_shoup[i]
        for j in range(np.uint64(n)):
            out[s, i, j] = mul_shoup(a[s, i, j], w, ws, q)


@njit(parallel=True, cache=True)
def poly_add_scalar(a, out, moduli, scalars):
    """out = a + c_i (mod q_i) on every coefficient (use on the constant term only in the coefficient domain)."""
    nb, nl, n = out.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        c = scalars[i]
        for j in range(np.uint64(n)):
            out[s, i, j] = add_mod(a[s, i, j], c, q)


@njit(parallel=True, cache=True)
def tensor_product(a, b, out, moduli, barrett_mu, barrett_k):
    """Degree-2 product of two degree-1 ciphertexts in the NTT domain.

    a, b: (2, L, N); out: (3, L, N) with out = (a0 b0, a0 b1 + a1 b0, a1 b1).
    One pass over the operands instead of four separate products.
    """
    nl = a.shape[1]
    n = a.shape[2]
    for i in prange(nl):
        q = moduli[i]
        mu = barrett_mu[i]
        k = barrett_k[i]
        for j in range(np.uint64(n)):
            a0 = a[0, i, j]
            a1 = a[1, i, j]
            b0 = b[0, i, j]
            b1 = b[1, i, j]
            out[0, i, j] = mul_mod(a0, b0, q, mu, k)
            out[2, i, j] = mul_mod(a1, b1, q, mu, k)
            m1 = mul_mod(a0, b1, q, mu, k)
            m2 = mul_mod(a1, b0, q, mu, k)
            out[1, i, j] = add_mod(m1, m2, q)


@njit(parallel=True, cache=True)
def multiply_accumulate(acc, a, b, moduli, barrett_mu, barrett_k):
    """acc += a * b (mod q_i); all (B, L, N)."""
    nb, nl, n = acc.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        mu = barrett_mu[i]
        k = barrett_k[i]
        for j in range(np.uint64(n)):
            acc[s, i, j] = add_mod(acc[s, i, j], mul_mod(a[s, i, j], b[s, i, j], q, mu, k), q)

