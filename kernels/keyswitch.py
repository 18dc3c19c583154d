"""The inner product of hybrid key switching, fused over all digits.

After ModUp, a ciphertext component is ``dnum`` extended polynomials ext_j
over Q_l and P; key switching needs sum_j ext_j * (b_j, a_j). Summing all
digits' products in a 128-bit accumulator and reducing once per output
coefficient reads each input once and does one reduction instead of
``dnum``. Products are < 2**122, so up to 64 digits fit before the
accumulator could overflow.
"""

import numpy as np
from numba import njit, prange

from .modarith import mulhi64, reduce_u128


@njit(parallel=True, cache=True)
def keyswitch_inner_product(ext, perm, key, key_rows, out, moduli, mu, k, r64, r64_shoup):
    """out[c, i, j] = sum_d ext[d, i, perm[j]] * key[d, c, key_rows[i], j]  (mod q_i), in [0, q_i).

    ext: (D, R, N) in [0, q); perm: (N,) uint64, an NTT-domain automorphism
    gathered while reading (the identity for relinearization), so hoisted
    rotations never materialise the rotated decomposition; key: (D_key >= D,
    2, R_full, N) over every row of the ring, read at ``key_rows``; out:
    (2, R, N). moduli, mu, k, r64 and r64_shoup (2**64 mod q and its Shoup
    word) are per limb of ``ext`` (length R).
    """
    nd, nr, n = ext.shape
    for work in prange(2 * nr):
        c = work // nr
        i = work % nr
        kr = key_rows[i]
        q = moduli[i]
        for jj in range(np.uint64(n)):
            hi = np.uint64(0)
            lo = np.uint64(0)
            for d in range(nd):
                x = ext[d, i, perm[jj]]
                y = key[d, c, kr, jj]
                p_lo = x * y
                p_hi = mulhi64(x, y)
                lo += p_lo
                if lo < p_lo:
                    p_hi += np.uint64(1)
                hi += p_hi
            out[c, i, jj] = reduce_u128(hi, lo, q, r64[i], r64_shoup[i], mu[i], k[i])
