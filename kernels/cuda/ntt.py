"""Negacyclic NTT on the GPU, batched over (B, L, N): twin of ``fhe_kernels.ntt``.

Same transform, same bit-reversed twiddle tables (``NttTables``), the same
``rows`` indirection and the same Harvey lazy butterflies as the CPU kernels
(forward values in [0, 4q), inverse in [0, 2q), one final reduction), so
results are bit-identical: both end in [0, q) and compute the same map.

Passes over shared memory. Stage by stage, butterflies at bit position b
pair index j with j + 2**b, and the twiddle they use is row (N + j) >> (b+1)
of the table (psi_rev[m + i] with m = N >> (b+1) groups, group i = j >> (b+1);
the inverse uses ipsi_rev the same way). A run of ``bits`` consecutive bit
positions lo .. lo+bits-1 only mixes indices that agree outside those bits,
so it splits into independent sub-transforms of 2**bits elements at stride
2**lo. One launch does such a run: each block loads ``columns`` neighbouring
sub-transforms into shared memory, runs all their stages with a
__syncthreads() between stages, and writes them back. The forward transform
goes from the high bits down (first pass strided "columns", last pass
contiguous "rows"); the inverse from the low bits up. N = 2**16 with
``pass_bits=8`` is two passes of 2**8 x 2**8, 16 columns a block:
16 * 256 * 8 B = 32 KiB of shared memory, under the 48 KiB a block may use
without opting in. Tests use pass_bits=2 or 3 to run three or more passes at
N = 16..256.

Coalescing: in a strided pass, neighbouring threads take neighbouring
columns (consecutive addresses); in the contiguous pass, neighbouring
elements of one sub-transform.
"""

import math

from numba import cuda, uint64

from .launch import I64_1D, U64_1D, U64_2D, U64_3D, int64, kernel, void
from .modarith import mul_shoup, mul_shoup_lazy

SHARED_BYTES = 48 * 1024  # per block, the default limit without cudaFuncSetAttribute
PASS_BITS = 8
COLUMNS = 16
THREADS = 256


@cuda.jit(device=True, inline=True)
def _element_index(sp, k, lo, bits):
    """Index in the row of element k of sub-transform sp (bits lo..lo+bits-1 hold k)."""
    return ((sp >> lo) << (lo + bits)) | (k << lo) | (sp & ((1 << lo) - 1))


@cuda.jit(device=True, inline=True)
def _load_slot(e, lo, bits, log_columns):
    """(p, k) of the e-th load of a block: p the sub-transform within the block, k the element.

    Strided passes (lo > 0) walk p fastest, contiguous ones (lo == 0) walk k
    fastest, so neighbouring threads read neighbouring addresses either way.
    """
    if lo == 0:
        return e >> bits, e & ((1 << bits) - 1)
    return e & ((1 << log_columns) - 1), e >> log_columns


@kernel(void(U64_3D, I64_1D, U64_1D, U64_2D, U64_2D, int64, int64, int64, int64))
def ntt_forward_pass(a, rows, moduli, psi_rev, psi_rev_shoup, lo, bits, log_columns, last):
    """Forward butterflies at bit positions lo+bits-1 down to lo, in place.

    a: (B, L, N) uint64 device array; in [0, q) on the first pass, [0, 4q)
        after; [0, 4q) out, or [0, q) when ``last``.
    rows: (L,) int64, the table row of each limb.
    moduli: (R,) uint64, the primes of every table row (R >= max(rows) + 1).
    psi_rev, psi_rev_shoup: (R, N) uint64, ``NttTables.psi_rev`` and its Shoup words.
    lo: lowest bit position of this pass.
    bits: number of bit positions (sub-transforms of 2**bits elements).
    log_columns: log2 of the sub-transforms per block.
    last: 1 on the final pass (reduce to [0, q)), else 0.

    Launch: (B * L * N >> (bits + log_columns)) blocks, any number of threads,
    (8 << (bits + log_columns)) bytes of dynamic shared memory.
    """
    sh = cuda.shared.array(0, uint64)
    nl = a.shape[1]
    n = a.shape[2]
    columns = 1 << log_columns
    size = 1 << bits
    per_row = n >> (bits + log_columns)
    blk = cuda.blockIdx.x
    row = blk // per_row
    b = row // nl
    limb = row % nl
    sp0 = (blk % per_row) << log_columns
    t = rows[limb]
    q = moduli[t]
    two_q = q + q
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    for e in range(tid, columns * size, step):
        p, k = _load_slot(e, lo, bits, log_columns)
        sh[(k << log_columns) | p] = a[b, limb, _element_index(sp0 + p, k, lo, bits)]
    cuda.syncthreads()
    for st in range(bits):
        lb = bits - 1 - st
        shift = lo + lb + 1
        for u in range(tid, columns * (size >> 1), step):
            p = u & (columns - 1)
            v = u >> log_columns
            k = ((v >> lb) << (lb + 1)) | (v & ((1 << lb) - 1))
            w = (n + _element_index(sp0 + p, k, lo, bits)) >> shift
            i0 = (k << log_columns) | p
            i1 = i0 + (columns << lb)
            x = sh[i0]
            if x >= two_q:  # [0, 4q) -> [0, 2q)
                x -= two_q
            y = mul_shoup_lazy(sh[i1], psi_rev[t, w], psi_rev_shoup[t, w], q)
            sh[i0] = x + y
            sh[i1] = x - y + two_q
        cuda.syncthreads()
    for e in range(tid, columns * size, step):
        p, k = _load_slot(e, lo, bits, log_columns)
        x = sh[(k << log_columns) | p]
        if last:
            if x >= two_q:
                x -= two_q
            if x >= q:
                x -= q
        a[b, limb, _element_index(sp0 + p, k, lo, bits)] = x


@kernel(void(U64_3D, I64_1D, U64_1D, U64_2D, U64_2D, U64_1D, U64_1D, int64, int64, int64, int64))
def ntt_inverse_pass(a, rows, moduli, ipsi_rev, ipsi_rev_shoup, n_inv, n_inv_shoup, lo, bits, log_columns, last):
    """Inverse (Gentleman-Sande) butterflies at bit positions lo up to lo+bits-1, in place.

    a: (B, L, N) uint64 device array; in [0, q) on the first pass, [0, 2q)
        after; [0, 2q) out, or [0, q) and multiplied by N^{-1} when ``last``.
    rows: (L,) int64, the table row of each limb.
    moduli: (R,) uint64, the primes of every table row.
    ipsi_rev, ipsi_rev_shoup: (R, N) uint64, ``NttTables.ipsi_rev`` and its Shoup words.
    n_inv, n_inv_shoup: (R,) uint64, N^{-1} mod q and its Shoup word.
    lo, bits, log_columns, last: as in ``ntt_forward_pass``.
    """
    sh = cuda.shared.array(0, uint64)
    nl = a.shape[1]
    n = a.shape[2]
    columns = 1 << log_columns
    size = 1 << bits
    per_row = n >> (bits + log_columns)
    blk = cuda.blockIdx.x
    row = blk // per_row
    b = row // nl
    limb = row % nl
    sp0 = (blk % per_row) << log_columns
    t = rows[limb]
    q = moduli[t]
    two_q = q + q
    tid = cuda.threadIdx.x
    step = cuda.blockDim.x
    for e in range(tid, columns * size, step):
        p, k = _load_slot(e, lo, bits, log_columns)
        sh[(k << log_columns) | p] = a[b, limb, _element_index(sp0 + p, k, lo, bits)]
    cuda.syncthreads()
    for lb in range(bits):
        shift = lo + lb + 1
        for u in range(tid, columns * (size >> 1), step):
            p = u & (columns - 1)
            v = u >> log_columns
            k = ((v >> lb) << (lb + 1)) | (v & ((1 << lb) - 1))
            w = (n + _element_index(sp0 + p, k, lo, bits)) >> shift
            i0 = (k << log_columns) | p
            i1 = i0 + (columns << lb)
            x = sh[i0]
            y = sh[i1]
            s = x + y
            if s >= two_q:  # [0, 4q) -> [0, 2q)
                s -= two_q
            sh[i0] = s
            sh[i1] = mul_shoup_lazy(x - y + two_q, ipsi_rev[t, w], ipsi_rev_shoup[t, w], q)
        cuda.syncthreads()
    for e in range(tid, columns * size, step):
        p, k = _load_slot(e, lo, bits, log_columns)
        x = sh[(k << log_columns) | p]
        if last:
            x = mul_shoup(x, n_inv[t], n_inv_shoup[t], q)
        a[b, limb, _element_index(sp0 + p, k, lo, bits)] = x


def plan_passes(log_n: int, pass_bits: int = PASS_BITS) -> list[tuple[int, int]]:
    """(lo, bits) of each forward pass, high bits first; the inverse runs them in reverse order.

    log_n: log2 of the ring degree.
    pass_bits: most bit positions one pass may take; the stages are shared
        as evenly as possible (16 -> 8 + 8, 13 -> 7 + 6 with pass_bits=8).
    """
    if log_n < 1 or pass_bits < 1:
        raise ValueError(f"need log_n >= 1 and pass_bits >= 1, got {log_n} and {pass_bits}")
    count = -(-log_n // pass_bits)
    base, extra = divmod(log_n, count)
    sizes = [base + 1] * extra + [base] * (count - extra)
    out, hi = [], log_n
    for bits in sizes:
        out.append((hi - bits, bits))
        hi -= bits
    return out


def _launch_shape(shape, lo: int, bits: int, columns: int, threads: int, shared_bytes: int):
    """(blocks, threads, log_columns, bytes of shared memory) for one pass."""
    nb, nl, n = shape
    log_n = n.bit_length() - 1
    available = (1 << lo) if lo > 0 else (1 << (log_n - bits))  # sub-transforms a block may group
    cols = min(columns, available)
    while cols > 1 and cols << bits > shared_bytes // 8:
        cols >>= 1
    if (cols << bits) * 8 > shared_bytes:
        raise ValueError(f"a pass of 2**{bits} words does not fit {shared_bytes} bytes of shared memory")
    log_cols = int(math.log2(cols))
    blocks = nb * nl * (n >> (bits + log_cols))
    return blocks, max(1, min(threads, (cols << bits) >> 1)), log_cols, (cols << bits) * 8


def _check(shape):
    nb, nl, n = shape
    if n < 2 or n & (n - 1):
        raise ValueError(f"ring degree {n} is not a power of two >= 2")
    return nb * nl > 0


def ntt_forward(a, rows, moduli, psi_rev, psi_rev_shoup, threads: int = THREADS, pass_bits: int = PASS_BITS,
                columns: int = COLUMNS, shared_bytes: int = SHARED_BYTES, stream=0) -> None:
    """Forward negacyclic NTT in place; the contract of ``fhe_kernels.ntt.ntt_forward`` on device arrays.

    a: (B, L, N) uint64 device array (any strides) in [0, q) -> [0, q).
    rows: (L,) int64 device array, limb i uses table row rows[i].
    moduli, psi_rev, psi_rev_shoup: the ``NttTables`` arrays, on the device.
    threads: threads per block (a block's butterflies are spread over them).
    pass_bits: most stages per pass (8: N = 2**16 in two passes).
    columns: sub-transforms per block in a pass (a power of two).
    shared_bytes: shared memory a block may use.
    stream: the CUDA stream (0: the default stream).
    """
    if not _check(a.shape):
        return
    passes = plan_passes(a.shape[2].bit_length() - 1, pass_bits)
    for idx, (lo, bits) in enumerate(passes):
        blocks, tpb, log_cols, shmem = _launch_shape(a.shape, lo, bits, columns, threads, shared_bytes)
        ntt_forward_pass[blocks, tpb, stream, shmem](
            a, rows, moduli, psi_rev, psi_rev_shoup, lo, bits, log_cols, int(idx == len(passes) - 1))


def ntt_inverse(a, rows, moduli, ipsi_rev, ipsi_rev_shoup, n_inv, n_inv_shoup, threads: int = THREADS,
                pass_bits: int = PASS_BITS, columns: int = COLUMNS, shared_bytes: int = SHARED_BYTES,
                stream=0) -> None:
    """Inverse negacyclic NTT in place; the contract of ``fhe_kernels.ntt.ntt_inverse`` on device arrays.

    a: (B, L, N) uint64 device array (any strides) in [0, q) -> [0, q).
    rows: (L,) int64 device array of table rows.
    moduli, ipsi_rev, ipsi_rev_shoup, n_inv, n_inv_shoup: the ``NttTables`` arrays, on the device.
    threads, pass_bits, columns, shared_bytes, stream: as in ``ntt_forward``.
    """
    if not _check(a.shape):
        return
    passes = plan_passes(a.shape[2].bit_length() - 1, pass_bits)[::-1]
    for idx, (lo, bits) in enumerate(passes):
        blocks, tpb, log_cols, shmem = _launch_shape(a.shape, lo, bits, columns, threads, shared_bytes)
        ntt_inverse_pass[blocks, tpb, stream, shmem](
            a, rows, moduli, ipsi_rev, ipsi_rev_shoup, n_inv, n_inv_shoup, lo, bits, log_cols,
            int(idx == len(passes) - 1))
