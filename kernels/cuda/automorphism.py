"""Galois automorphisms X -> X^g on the GPU: twins of ``fhe_kernels.automorphism``.

The permutation tables come from ``fhe_kernels.automorphism.ntt_automorphism_permutation``
(built once per Galois element on the host, then kept on the device). Launch
over B * L rows with ``launch.grid_rows``.
"""

from numba import cuda, uint64

from .launch import U64_1D, U64_3D, int64, kernel, void


@kernel(void(U64_3D, U64_3D, U64_1D))
def automorphism_ntt(a, out, perm):
    """out[s, i, j] = a[s, i, perm[j]]: an automorphism in the NTT domain, as a gather.

    a: (B, L, N) uint64 (any values), NTT domain.
    out: (B, L, N) uint64; must not alias a.
    perm: (N,) uint64, ``ntt_automorphism_permutation(g, N)``.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        for j in range(j0, n, js):
            out[s, i, j] = a[s, i, perm[j]]


@kernel(void(U64_3D, U64_3D, int64, U64_1D))
def automorphism_coeff(a, out, galois_element, moduli):
    """Coefficient-domain a(X^g): coefficient k moves to k*g mod 2N, negated when that is N or more.

    a: (B, L, N) uint64 in [0, q_i), coefficient domain.
    out: (B, L, N) uint64, written in [0, q_i); must not alias a.
    galois_element: g, odd, in [1, 2N).
    moduli: (L,) uint64, the prime of each limb.
    One thread per source coefficient; g odd makes k -> k*g mod 2N a bijection
    onto the output positions, so no two threads write the same element.
    """
    nb, nl, n = a.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    two_n_mask = 2 * n - 1  # N is a power of two
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        for kk in range(j0, n, js):
            e = (kk * galois_element) & two_n_mask
            x = a[s, i, kk]
            if e < n:
                out[s, i, e] = x
            else:
                out[s, i, e - n] = uint64(0) if x == uint64(0) else q - x
