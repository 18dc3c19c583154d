"""Element-wise, automorphism and key-switching kernels on the GPU (twins of
``fhe_kernels.elementwise``, ``automorphism`` and ``keyswitch``).

Every kernel takes (B, L, N) uint64 device arrays and per-limb constant
arrays already restricted to the limbs of the array (length L); thread g
handles element g of the flattened array.
"""

from numba import cuda, uint64

from .modarith import add_mod, mul_mod, mul_shoup, mulhi64, reduce_u128, sub_mod

THREADS = 256


def blocks_for(count: int, threads: int) -> int:
    return (count + threads - 1) // threads


@cuda.jit(device=True, inline=True)
def _index(g, nl, n):
    return g // (nl * n), (g // n) % nl, g % n


@cuda.jit
def poly_add(a, b, out, moduli):
    """out = a + b mod q_l."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        out[s, i, j] = add_mod(a[s, i, j], b[s, i, j], moduli[i])


@cuda.jit
def poly_sub(a, b, out, moduli):
    """out = a - b mod q_l."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        out[s, i, j] = sub_mod(a[s, i, j], b[s, i, j], moduli[i])


@cuda.jit
def poly_neg(a, out, moduli):
    """out = -a mod q_l."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        x = a[s, i, j]
        out[s, i, j] = uint64(0) if x == uint64(0) else moduli[i] - x


@cuda.jit
def poly_mul(a, b, out, moduli, mu, k):
    """out = a * b mod q_l (Barrett; pointwise in the NTT domain)."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        out[s, i, j] = mul_mod(a[s, i, j], b[s, i, j], moduli[i], mu[i], k[i])


@cuda.jit
def multiply_accumulate(acc, a, b, moduli, mu, k):
    """acc += a * b mod q_l."""
    g = cuda.grid(1)
    nb, nl, n = acc.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        q = moduli[i]
        acc[s, i, j] = add_mod(acc[s, i, j], mul_mod(a[s, i, j], b[s, i, j], q, mu[i], k[i]), q)


@cuda.jit
def poly_mul_scalar(a, out, moduli, scalars, scalars_shoup):
    """out = a * c_l mod q_l (Shoup, one constant per limb)."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        out[s, i, j] = mul_shoup(a[s, i, j], scalars[i], scalars_shoup[i], moduli[i])


@cuda.jit
def poly_add_scalar(a, out, moduli, scalars):
    """out = a + c_l mod q_l on every element."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        out[s, i, j] = add_mod(a[s, i, j], scalars[i], moduli[i])


@cuda.jit
def tensor_product(a, b, out, moduli, mu, k):
    """(a0 b0, a0 b1 + a1 b0, a1 b1) for degree-1 ciphertexts a, b: (2, L, N) -> out (3, L, N)."""
    g = cuda.grid(1)
    nl, n = a.shape[1], a.shape[2]
    if g < nl * n:
        i = g // n
        j = g % n
        q, m_, kk = moduli[i], mu[i], k[i]
        a0, a1, b0, b1 = a[0, i, j], a[1, i, j], b[0, i, j], b[1, i, j]
        out[0, i, j] = mul_mod(a0, b0, q, m_, kk)
        out[1, i, j] = add_mod(mul_mod(a0, b1, q, m_, kk), mul_mod(a1, b0, q, m_, kk), q)
        out[2, i, j] = mul_mod(a1, b1, q, m_, kk)


@cuda.jit
def automorphism_ntt(a, out, perm):
    """out[s, l, j] = a[s, l, perm[j]] (an automorphism in the NTT domain)."""
    g = cuda.grid(1)
    nb, nl, n = out.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        out[s, i, j] = a[s, i, perm[j]]


@cuda.jit
def keyswitch_inner_product(ext, perm, key, key_rows, out, moduli, mu, k, r64, r64_shoup):
    """out[c, l, j] = sum_d ext[d, l, perm[j]] * key[d, c, key_rows[l], j] mod q_l.

    All digits accumulate in 128 bits and reduce once (products < 2**122).
    """
    g = cuda.grid(1)
    nd, nr, n = ext.shape
    if g >= 2 * nr * n:
        return
    c = g // (nr * n)
    i = (g // n) % nr
    j = g % n
    kr = key_rows[i]
    pj = perm[j]
    hi = uint64(0)
    lo = uint64(0)
    for d in range(nd):
        x = ext[d, i, pj]
        y = key[d, c, kr, j]
        p_lo = x * y
        p_hi = mulhi64(x, y)
        lo += p_lo
        if lo < p_lo:
            p_hi += uint64(1)
        hi += p_hi
    out[c, i, j] = reduce_u128(hi, lo, moduli[i], r64[i], r64_shoup[i], mu[i], k[i])


@cuda.jit
def copy3d(src, dst):
    """dst[...] = src for (B, L, N) arrays of any strides."""
    g = cuda.grid(1)
    nb, nl, n = dst.shape
    if g < nb * nl * n:
        s, i, j = _index(g, nl, n)
        dst[s, i, j] = src[s, i, j]
