"""RNS kernels on the GPU: fast basis conversion and rescaling, twins of ``fhe_kernels.rns``.

Coefficient domain, (B, L, N) uint64, launched over (polynomial, limb) rows
with ``launch.grid_rows``, the same tables (``BasisConversionTable.args()``)
and the same results as the CPU kernels. ``float_to_rns`` and
``rns_to_float_centered`` have no GPU twin: encoding and decoding run on the
host, as in the GPU CKKS libraries, and their limbs cross the bus.
"""

from numba import cuda, uint64

from .launch import U64_1D, U64_2D, U64_3D, kernel, void
from .modarith import mac128, mul_shoup, reduce_u64, reduce_u128, sub_mod


@kernel(void(U64_3D, U64_3D, U64_1D, U64_1D, U64_1D, U64_1D, U64_2D, U64_1D, U64_1D, U64_1D, U64_1D))
def fast_basis_convert(x, out, source, qhat_inv, qhat_inv_shoup, target, qhat_mod_target, r64, r64_shoup, mu, k):
    """out[s, t, j] = sum_i [x[s, i, j] * qhat_i^{-1}]_{c_i} * (C/c_i mod p_t)  (mod p_t), in [0, p_t).

    x: (B, m, N) uint64 in [0, c_i), residues over the source basis c_0..c_{m-1}.
    out: (B, T, N) uint64, residues over the target basis p_0..p_{T-1}; must not alias x.
    source: (m,) uint64, the c_i.
    qhat_inv, qhat_inv_shoup: (m,) uint64, (C/c_i)^{-1} mod c_i and its Shoup word.
    target: (T,) uint64, the p_t.
    qhat_mod_target: (m, T) uint64, C/c_i mod p_t.
    r64, r64_shoup: (T,) uint64, 2**64 mod p_t and its Shoup word.
    mu, k: (T,) uint64, ``barrett_constants`` of each p_t.
    Launch over B * T rows (``launch.grid_rows``). One thread per output
    coefficient: its m products accumulate in 128 bits
    and reduce once. The Shoup step is recomputed per target (m multiplies)
    instead of staged through memory: T times the parallelism of a thread per
    input coefficient, and no scratch array.
    """
    nb = x.shape[0]
    m = x.shape[1]
    n = x.shape[2]
    nt = out.shape[1]
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nt, cuda.gridDim.y):
        s = r // nt
        t = r - s * nt
        p = target[t]
        for j in range(j0, n, js):
            hi = uint64(0)
            lo = uint64(0)
            for i in range(m):
                y = mul_shoup(x[s, i, j], qhat_inv[i], qhat_inv_shoup[i], source[i])
                hi, lo = mac128(hi, lo, y, qhat_mod_target[i, t])
            out[s, t, j] = reduce_u128(hi, lo, p, r64[t], r64_shoup[t], mu[t], k[t])


@kernel(void(U64_3D, U64_3D, U64_3D, U64_1D, U64_1D, U64_1D))
def sub_and_scale(a, b, out, moduli, scalars, scalars_shoup):
    """out = (a - b) * c_i (mod q_i): the end of ModDown (c_i = P^{-1}) and of rescaling (c_i = q_l^{-1}).

    a, b: (B, L, N) uint64 in [0, q_i).
    out: (B, L, N) uint64, written in [0, q_i); may alias a or b.
    moduli: (L,) uint64, the prime of each limb.
    scalars, scalars_shoup: (L,) uint64, c_i < q_i and its Shoup word.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        w = scalars[i]
        ws = scalars_shoup[i]
        for j in range(j0, n, js):
            out[s, i, j] = mul_shoup(sub_mod(a[s, i, j], b[s, i, j], q), w, ws, q)


@kernel(void(U64_3D, U64_3D, uint64, U64_1D, U64_1D, U64_1D))
def rescale_round_prepare(last, out, last_modulus, moduli, mu, k):
    """out[s, i, j] = [x + floor(q_l/2)]_{q_l} - floor(q_l/2)  (mod q_i), x = last[s, 0, j].

    last: (B, 1, N) uint64 in [0, q_l), the top limb in the coefficient domain
        (the CPU kernel takes it as (B, N); here it stays a limb slice).
    out: (B, L, N) uint64, written in [0, q_i).
    last_modulus: uint64, q_l.
    moduli: (L,) uint64, the primes q_i of the remaining limbs.
    mu, k: (L,) uint64, ``barrett_constants`` of each q_i.
    """
    nb, nl, n = out.shape
    half = last_modulus >> uint64(1)
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        half_mod_q = reduce_u64(half, q, mu[i], k[i])
        for j in range(j0, n, js):
            v = last[s, 0, j] + half
            if v >= last_modulus:
                v -= last_modulus
            out[s, i, j] = sub_mod(reduce_u64(v, q, mu[i], k[i]), half_mod_q, q)
