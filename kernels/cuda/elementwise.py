"""Element-wise arithmetic on RNS polynomials on the GPU: twins of ``fhe_kernels.elementwise``.

Same contracts: (B, L, N) uint64 arrays in [0, q_i), limb i reduced modulo
``moduli[i]`` (per-limb constant arrays have length L, already restricted to
the limbs of the array), ``out`` may alias an input. Arrays may have any
strides (limb slices of larger device arrays).

Launch with ``launch.grid_rows(B * L, N, threads)``: blockIdx.y walks the
(polynomial, limb) rows, x the coefficients, both as grid-stride loops, so
any grid covers any size (tests launch two small blocks each way).

``copy3d`` and ``fill3d`` have no CPU twin (numpy assignment does that on
the host); the backend uses them to gather and clear device arrays.
"""

from numba import cuda, uint64

from .launch import U64_1D, U64_3D, kernel, void
from .modarith import add_mod, mul_mod, mul_shoup, sub_mod


@kernel(void(U64_3D, U64_3D, U64_3D, U64_1D))
def poly_add(a, b, out, moduli):
    """out = a + b (mod q_i).

    a, b: (B, L, N) uint64 in [0, q_i).
    out: (B, L, N) uint64, written in [0, q_i); may alias a or b.
    moduli: (L,) uint64, the prime of each limb.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        for j in range(j0, n, js):
            out[s, i, j] = add_mod(a[s, i, j], b[s, i, j], q)


@kernel(void(U64_3D, U64_3D, U64_3D, U64_1D))
def poly_sub(a, b, out, moduli):
    """out = a - b (mod q_i).

    a, b: (B, L, N) uint64 in [0, q_i).
    out: (B, L, N) uint64, written in [0, q_i); may alias a or b.
    moduli: (L,) uint64, the prime of each limb.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        for j in range(j0, n, js):
            out[s, i, j] = sub_mod(a[s, i, j], b[s, i, j], q)


@kernel(void(U64_3D, U64_3D, U64_1D))
def poly_neg(a, out, moduli):
    """out = -a (mod q_i).

    a: (B, L, N) uint64 in [0, q_i).
    out: (B, L, N) uint64, written in [0, q_i); may alias a.
    moduli: (L,) uint64, the prime of each limb.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        for j in range(j0, n, js):
            x = a[s, i, j]
            out[s, i, j] = uint64(0) if x == uint64(0) else q - x


@kernel(void(U64_3D, U64_3D, U64_3D, U64_1D, U64_1D, U64_1D))
def poly_mul(a, b, out, moduli, barrett_mu, barrett_k):
    """out = a * b (mod q_i), pointwise (in the NTT domain: the negacyclic product).

    a, b: (B, L, N) uint64 in [0, q_i).
    out: (B, L, N) uint64, written in [0, q_i); may alias a or b.
    moduli: (L,) uint64, the prime of each limb.
    barrett_mu, barrett_k: (L,) uint64, ``barrett_constants`` of each prime.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        mu = barrett_mu[i]
        k = barrett_k[i]
        for j in range(j0, n, js):
            out[s, i, j] = mul_mod(a[s, i, j], b[s, i, j], q, mu, k)


@kernel(void(U64_3D, U64_3D, U64_1D, U64_1D, U64_1D))
def poly_mul_scalar(a, out, moduli, scalars, scalars_shoup):
    """out = a * c_i (mod q_i), one constant per limb (Shoup).

    a: (B, L, N) uint64 (any value: Shoup reduces every uint64).
    out: (B, L, N) uint64, written in [0, q_i); may alias a.
    moduli: (L,) uint64, the prime of each limb.
    scalars, scalars_shoup: (L,) uint64, c_i < q_i and floor(c_i * 2**64 / q_i).
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
            out[s, i, j] = mul_shoup(a[s, i, j], w, ws, q)


@kernel(void(U64_3D, U64_3D, U64_1D, U64_1D))
def poly_add_scalar(a, out, moduli, scalars):
    """out = a + c_i (mod q_i) on every coefficient (a constant polynomial in the NTT domain).

    a: (B, L, N) uint64 in [0, q_i).
    out: (B, L, N) uint64, written in [0, q_i); may alias a.
    moduli: (L,) uint64, the prime of each limb.
    scalars: (L,) uint64, c_i < q_i.
    """
    nb, nl, n = out.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        c = scalars[i]
        for j in range(j0, n, js):
            out[s, i, j] = add_mod(a[s, i, j], c, q)


@kernel(void(U64_3D, U64_3D, U64_3D, U64_1D, U64_1D, U64_1D))
def tensor_product(a, b, out, moduli, barrett_mu, barrett_k):
    """(a0 b0, a0 b1 + a1 b0, a1 b1): the degree-2 product of two degree-1 ciphertexts (NTT domain).

    a, b: (2, L, N) uint64 in [0, q_i).
    out: (3, L, N) uint64, written in [0, q_i); must not alias a or b.
    moduli: (L,) uint64, the prime of each limb.
    barrett_mu, barrett_k: (L,) uint64, ``barrett_constants`` of each prime.
    Launch over L rows: one thread per (limb, coefficient) reads the four operands once.
    """
    nl = a.shape[1]
    n = a.shape[2]
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for i in range(cuda.blockIdx.y, nl, cuda.gridDim.y):
        q = moduli[i]
        mu = barrett_mu[i]
        k = barrett_k[i]
        for j in range(j0, n, js):
            a0 = a[0, i, j]
            a1 = a[1, i, j]
            b0 = b[0, i, j]
            b1 = b[1, i, j]
            out[0, i, j] = mul_mod(a0, b0, q, mu, k)
            out[2, i, j] = mul_mod(a1, b1, q, mu, k)
            out[1, i, j] = add_mod(mul_mod(a0, b1, q, mu, k), mul_mod(a1, b0, q, mu, k), q)


@kernel(void(U64_3D, U64_3D, U64_3D, U64_1D, U64_1D, U64_1D))
def multiply_accumulate(acc, a, b, moduli, barrett_mu, barrett_k):
    """acc += a * b (mod q_i).

    acc: (B, L, N) uint64 in [0, q_i), updated in place.
    a, b: (B, L, N) uint64 in [0, q_i).
    moduli: (L,) uint64, the prime of each limb.
    barrett_mu, barrett_k: (L,) uint64, ``barrett_constants`` of each prime.
    """
    nb, nl, n = acc.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        q = moduli[i]
        mu = barrett_mu[i]
        k = barrett_k[i]
        for j in range(j0, n, js):
            acc[s, i, j] = add_mod(acc[s, i, j], mul_mod(a[s, i, j], b[s, i, j], q, mu, k), q)


@kernel(void(U64_3D, U64_3D))
def copy3d(src, dst):
    """dst = src element by element.

    src: (B, L, N) uint64, any strides.
    dst: (B, L, N) uint64, any strides (a limb slice of a larger array, say); must not overlap src.
    """
    nb, nl, n = dst.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        for j in range(j0, n, js):
            dst[s, i, j] = src[s, i, j]


@kernel(void(U64_3D, uint64))
def fill3d(dst, value):
    """dst[...] = value.

    dst: (B, L, N) uint64, any strides.
    value: uint64.
    """
    nb, nl, n = dst.shape
    j0 = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    js = cuda.gridDim.x * cuda.blockDim.x
    for r in range(cuda.blockIdx.y, nb * nl, cuda.gridDim.y):
        s = r // nl
        i = r - s * nl
        for j in range(j0, n, js):
            dst[s, i, j] = value
