"""RNS kernels on the GPU: fast basis conversion, rescaling (twins of ``fhe_kernels.rns``).

Thread g handles one coefficient of one polynomial and loops over the
target limbs; the source residues are read once per target (they stay in
cache), and every product accumulates in 128 bits before one reduction.
"""

from numba import cuda, uint64

from .modarith import mul_shoup, mulhi64, reduce_u64, reduce_u128, sub_mod

THREADS = 256


@cuda.jit
def fast_basis_convert(x, out, source, qhat_inv, qhat_inv_shoup, target, qhat_mod_target, r64, r64_shoup, mu, k):
    """out[s, t, j] = sum_i [x_i qhat_i^{-1}]_{c_i} (C/c_i mod p_t) mod p_t; x (B, m, N), out (B, T, N)."""
    g = cuda.grid(1)
    nb, m, n = x.shape
    nt = out.shape[1]
    if g >= nb * n:
        return
    s = g // n
    j = g % n
    for t in range(nt):
        hi = uint64(0)
        lo = uint64(0)
        for i in range(m):
            y = mul_shoup(x[s, i, j], qhat_inv[i], qhat_inv_shoup[i], source[i])
            w = qhat_mod_target[i, t]
            p_lo = y * w
            p_hi = mulhi64(y, w)
            lo += p_lo
            if lo < p_lo:
                p_hi += uint64(1)
            hi += p_hi
        out[s, t, j] = reduce_u128(hi, lo, target[t], r64[t], r64_shoup[t], mu[t], k[t])


@cuda.jit
def sub_and_scale(a, b, out, moduli, scalars, scalars_shoup):
    """out = (a - b) * c_l mod q_l (ModDown with c = P^{-1}, rescaling with c = q_top^{-1})."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s = g // (nl * n)
        i = (g // n) % nl
        j = g % n
        q = moduli[i]
        out[s, i, j] = mul_shoup(sub_mod(a[s, i, j], b[s, i, j], q), scalars[i], scalars_shoup[i], q)


@cuda.jit
def rescale_round_prepare(last, out, last_modulus, moduli, mu, k):
    """out[s, l, j] = [x_top + floor(q_top/2)]_{q_top} - floor(q_top/2) mod q_l; last (B, 1, N)."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s = g // (nl * n)
        i = (g // n) % nl
        j = g % n
        q = moduli[i]
        half = last_modulus >> uint64(1)
        v = last[s, 0, j] + half
        if v >= last_modulus:
            v -= last_modulus
        out[s, i, j] = sub_mod(reduce_u64(v, q, mu[i], k[i]), reduce_u64(half, q, mu[i], k[i]), q)
