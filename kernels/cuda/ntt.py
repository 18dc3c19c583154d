"""Negacyclic NTT on the GPU, one launch per butterfly stage (twin of ``fhe_kernels.ntt``).

Same transform, same bit-reversed twiddle tables and the same ``rows``
indirection as the CPU kernels, so outputs are bit-identical. Each launch runs
one stage of Cooley-Tukey (forward) or Gentleman-Sande (inverse) butterflies
for every limb of every polynomial: thread g handles butterfly g % (N/2) of
row g // (N/2). Butterflies reduce fully to [0, q) (no lazy ranges): this is
the correctness-first version; the shared-memory two-pass 2^8 x 2^8 transform
is the next step once it can be timed on a GPU.
"""


from numba import cuda, int64

from .modarith import add_mod, mul_shoup, sub_mod

THREADS = 256


def blocks_for(count: int, threads: int) -> int:
    return (count + threads - 1) // threads


@cuda.jit
def _forward_stage(a, rows, moduli, psi_rev, psi_rev_shoup, m, t):
    """One Cooley-Tukey stage: groups m, half-size t.

    a: (B, L, N) uint64 in [0, q), in place; rows: (L,) int64 table row of each limb;
    moduli (R,), psi_rev / psi_rev_shoup (R, N): the ring's tables.
    """
    g = cuda.grid(1)
    nb, nl, n = a.shape
    half = n // 2
    if g >= nb * nl * half:
        return
    row = g // half
    k = g % half
    b = row // nl
    limb = row % nl
    r = rows[limb]
    q = moduli[r]
    grp = k // t
    j = 2 * grp * t + k % t
    w = psi_rev[r, m + grp]
    ws = psi_rev_shoup[r, m + grp]
    x = a[b, limb, j]
    y = mul_shoup(a[b, limb, j + t], w, ws, q)
    a[b, limb, j] = add_mod(x, y, q)
    a[b, limb, j + t] = sub_mod(x, y, q)


@cuda.jit
def _inverse_stage(a, rows, moduli, ipsi_rev, ipsi_rev_shoup, h, t):
    """One Gentleman-Sande stage: h groups of half-size t."""
    g = cuda.grid(1)
    nb, nl, n = a.shape
    half = n // 2
    if g >= nb * nl * half:
        return
    row = g // half
    k = g % half
    b = row // nl
    limb = row % nl
    r = rows[limb]
    q = moduli[r]
    grp = k // t
    j = 2 * grp * t + k % t
    x = a[b, limb, j]
    y = a[b, limb, j + t]
    a[b, limb, j] = add_mod(x, y, q)
    a[b, limb, j + t] = mul_shoup(sub_mod(x, y, q), ipsi_rev[r, h + grp], ipsi_rev_shoup[r, h + grp], q)


@cuda.jit
def _scale_rows(a, rows, moduli, n_inv, n_inv_shoup):
    """a[b, l, :] *= N^{-1} mod q (the end of the inverse transform)."""
    g = cuda.grid(1)
    nb, nl, n = a.shape
    if g >= nb * nl * n:
        return
    b = g // (nl * n)
    limb = (g // n) % nl
    j = g % n
    r = rows[limb]
    a[b, limb, j] = mul_shoup(a[b, limb, j], n_inv[r], n_inv_shoup[r], moduli[r])


def ntt_forward(a, rows, moduli, psi_rev, psi_rev_shoup, threads: int = THREADS):
    """Forward NTT in place on the device array a (B, L, N); same contract as fhe_kernels.ntt.ntt_forward."""
    nb, nl, n = a.shape
    grid = blocks_for(nb * nl * (n // 2), threads)
    t, m = n, 1
    while m < n:
        t //= 2
        _forward_stage[grid, threads](a, rows, moduli, psi_rev, psi_rev_shoup, int64(m), int64(t))
        m *= 2


def ntt_inverse(a, rows, moduli, ipsi_rev, ipsi_rev_shoup, n_inv, n_inv_shoup, threads: int = THREADS):
    """Inverse NTT in place on the device array a (B, L, N)."""
    nb, nl, n = a.shape
    grid = blocks_for(nb * nl * (n // 2), threads)
    t, m = 1, n
    while m > 1:
        h = m // 2
        _inverse_stage[grid, threads](a, rows, moduli, ipsi_rev, ipsi_rev_shoup, int64(h), int64(t))
        t *= 2
        m = h
    _scale_rows[blocks_for(nb * nl * n, threads), threads](a, rows, moduli, n_inv, n_inv_shoup)



