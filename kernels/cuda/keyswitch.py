"""The fused inner product of hybrid key switching on the GPU: twin of ``fhe_kernels.keyswitch``.

Launch over R rows (``launch.grid_rows``). One thread per (limb,
coefficient) computes both output components: it
gathers ext[d, i, perm[j]] once per digit (the automorphism of a hoisted
rotation is read, never materialised) and accumulates both products in two
128-bit accumulators, reduced once each at the end.
"""

from numba import cuda, uint64

from .launch import I64_1D, U64_1D, U64_3D, U64_4D, kernel, void
from .modarith import mac128, reduce_u128


@kernel(void(U64_3D, U64_1D, U64_4D, I64_1D, U64_3D, U64_1D, U64_1D, U64_1D, U64_1D, U64_1D))
def keyswitch_inner_product(ext, perm, key, key_rows, out, moduli, mu, k, r64, r64_shoup):
    """out[c, i, j] = sum_d ext[d, i, perm[j]] * key[d, c, key_rows[i], j]  (mod q_i), in [0, q_i).

    ext: (D, R, N) uint64 in [0, q_i), the ModUp digits over Q_l and P.
    perm: (N,) uint64, an NTT-domain automorphism (the identity for relinearization).
    key: (D_key >= D, 2, R_full, N) uint64, the switching key over every row of the ring.
    key_rows: (R,) int64, the key row of each limb of ext.
    out: (2, R, N) uint64, written in [0, q_i); must not alias ext.
    moduli, mu, k: (R,) uint64, each limb's prime and ``barrett_constants``.
    r64, r64_shoup: (R,) uint64, 2**64 mod q_i and its Shoup word.
    Products are < 2**122, so up to 64 digits fit the accumulators.
    """
    nd = ext.shape[0]
    nr = ext.shape[1]
    n = ext.shape[2]
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for i in range(cuda.blockIdx.y, nr, cuda.gridDim.y):
        kr = key_rows[i]
        q = moduli[i]
        for j in range(j0, n, js):
            pj = perm[j]
            hi0 = uint64(0)
            lo0 = uint64(0)
            hi1 = uint64(0)
            lo1 = uint64(0)
            for d in range(nd):
                x = ext[d, i, pj]
                hi0, lo0 = mac128(hi0, lo0, x, key[d, 0, kr, j])
                hi1, lo1 = mac128(hi1, lo1, x, key[d, 1, kr, j])
            out[0, i, j] = reduce_u128(hi0, lo0, q, r64[i], r64_shoup[i], mu[i], k[i])
            out[1, i, j] = reduce_u128(hi1, lo1, q, r64[i], r64_shoup[i], mu[i], k[i])
