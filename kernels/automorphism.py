"""Galois automorphisms X -> X^g of Z_q[X]/(X^N + 1), g odd.

In the NTT domain of ``fhe_kernels.ntt`` slot j holds a(psi^(2 brv(j) + 1));
a(X^g) at that point is a(psi^((2 brv(j) + 1) g)), another odd power, so the
automorphism is a permutation of NTT slots, the same for every limb. The table
is built once per Galois element and applied as a gather.
"""

import numpy as np
from numba import njit, prange

from .ntt import bit_reverse_permutation


def galois_element_for_rotation(step: int, ring_degree: int) -> int:
    """5^step mod 2N: the automorphism rotating CKKS slots left by ``step`` (right if negative)."""
    return pow(5, step % (ring_degree // 2), 2 * ring_degree)


def galois_element_for_conjugation(ring_degree: int) -> int:
    """2N - 1: X -> X^{-1}, complex conjugation of every slot."""
    return 2 * ring_degree - 1


def ntt_automorphism_permutation(galois_element: int, ring_degree: int) -> np.ndarray:
    """perm with (a o X^g)_ntt[j] = a_ntt[perm[j]], uint64 (N,) (unsigned: no wraparound checks)."""
    n = ring_degree
    if galois_element % 2 == 0:
        raise ValueError(f"Galois element {galois_element} is even")
    rev = bit_reverse_permutation(n)  # brv is an involution: it maps index <-> exponent slot
    j = np.arange(n, dtype=np.int64)
    exponent = (2 * rev[j] + 1) * galois_element % (2 * n)
    return rev[(exponent - 1) // 2].astype(np.uint64)


@njit(parallel=True, cache=True)
def automorphism_ntt(a, out, perm):
    """out[s, i, j] = a[s, i, perm[j]]; a, out: (B, L, N), must not alias."""
    nb, nl, n = a.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        for j in range(np.uint64(n)):
            out[s, i, j] = a[s, i, perm[j]]


@njit(parallel=True, cache=True)
def automorphism_coeff(a, out, galois_element, moduli):
    """Coefficient-domain a(X^g): coefficient k moves to k*g mod 2N, negated past N."""
    nb, nl, n = a.shape
    two_n = 2 * n
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        for kk in range(n):
            e = (kk * galois_element) % two_n
            x = a[s, i, kk]
            if e < n:
                out[s, i, e] = x
            else:
                out[s, i, e - n] = np.uint64(0) if x == np.uint64(0) else q - x
