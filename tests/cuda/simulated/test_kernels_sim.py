"""Every CUDA kernel against its CPU twin on fresh random data (the NTT also against the big-int reference).

Small rings (N = 16..256), 50-60-bit NTT primes of random sizes, and tiny
launches (4 threads, grids capped at 2 x 2 blocks; NTT passes of 2-4 bits) so
that every grid-stride loop, every multi-block and multi-pass path runs.
Inputs include the edge residues 0 and q - 1, and strided limb slices.
"""

import numpy as np
import pytest
from numba import cuda

from fhe_kernels import automorphism as cpu_auto
from fhe_kernels import elementwise as cpu_ew
from fhe_kernels import keyswitch as cpu_ks
from fhe_kernels import reference as ref
from fhe_kernels import rns as cpu_rns
from fhe_kernels.cuda import automorphism as gpu_auto
from fhe_kernels.cuda import elementwise as gpu_ew
from fhe_kernels.cuda import keyswitch as gpu_ks
from fhe_kernels.cuda import ntt as gpu_ntt
from fhe_kernels.cuda import rns as gpu_rns
from fhe_kernels.cuda.launch import grid_rows
from fhe_kernels.cuda.modarith import mac128, mul_mod, mul_shoup, mulhi64, reduce_u64, reduce_u128
from fhe_kernels.modarith import barrett_constants, shoup_word
from fhe_kernels.ntt import NttTables, ntt_forward, ntt_inverse
from fhe_kernels.primes import ntt_primes

U64 = np.uint64


def primes(rng, count, n):
    """``count`` distinct NTT primes for ring degree n, each of a random size of 50 to 60 bits."""
    out = []
    while len(out) < count:
        out += ntt_primes(int(rng.integers(50, 61)), 1, n, exclude=set(out))
    return out


def residues(rng, shape, moduli):
    """(B, L, N) uint64 with limb i uniform in [0, moduli[i]), and 0 and q - 1 among them."""
    q = np.array(moduli, dtype=U64)[None, :, None]
    x = rng.integers(0, q, size=shape, dtype=U64)
    x[..., 0] = 0
    x[..., -1] = q[..., 0] - U64(1)
    return x


def limb_consts(moduli):
    """moduli, Barrett mu, Barrett k, 2**64 mod q and its Shoup word, as uint64 arrays."""
    c = [barrett_constants(q) for q in moduli]
    r64 = [(1 << 64) % q for q in moduli]
    return (np.array(moduli, dtype=U64), np.array([x[0] for x in c], dtype=U64), np.array([x[1] for x in c], dtype=U64),
            np.array(r64, dtype=U64), np.array([shoup_word(r, q) for r, q in zip(r64, moduli)], dtype=U64))


def dev(*arrays):
    return [cuda.to_device(np.ascontiguousarray(a)) for a in arrays]


def small_grid(rows, n):
    return grid_rows(rows, n, threads=4, max_x=2, max_y=2)


# -- modular arithmetic ------------------------------------------------------------------------------


@cuda.jit
def _modarith_kernel(a, b, q, mu, k, r64, r64s, w, ws, out):
    i = cuda.grid(1)
    if i < a.shape[0]:
        out[i, 0] = mulhi64(a[i], b[i])
        out[i, 1] = mul_shoup(a[i], w[i], ws[i], q[i])  # any uint64 a
        out[i, 2] = reduce_u64(a[i], q[i], mu[i], k[i])
        x = reduce_u64(a[i], q[i], mu[i], k[i])
        y = reduce_u64(b[i], q[i], mu[i], k[i])
        out[i, 3] = mul_mod(x, y, q[i], mu[i], k[i])
        hi, lo = mac128(a[i], b[i], a[i], b[i])  # a*2**64 + b + a*b, below 2**128 unless a is huge
        out[i, 4] = hi
        out[i, 5] = lo
        out[i, 6] = reduce_u128(a[i], b[i], q[i], r64[i], r64s[i], mu[i], k[i])


def test_modular_arithmetic_device_functions(rng):
    n = 24
    moduli = primes(rng, 3, 16)
    q_list = [moduli[i % 3] for i in range(n)]
    a = rng.integers(0, 2**64, n, dtype=U64)
    b = rng.integers(0, 2**64, n, dtype=U64)
    a[:6] = [0, 1, 2**64 - 1, 2**63, q_list[4] - 1, 2**62]
    b[:6] = [2**64 - 1, 2**64 - 1, 2**64 - 1, 2**63, q_list[4] - 1, 3]
    q, mu, k, r64, r64s = limb_consts(q_list)
    w_int = [int(rng.integers(0, qq)) for qq in q_list]
    w = np.array(w_int, dtype=U64)
    ws = np.array([shoup_word(v, qq) for v, qq in zip(w_int, q_list)], dtype=U64)
    out = np.zeros((n, 7), dtype=U64)
    _modarith_kernel[3, 8](a, b, q, mu, k, r64, r64s, w, ws, out)
    for i in range(n):
        x, y, m = int(a[i]), int(b[i]), q_list[i]
        full = (x << 64) + y + x * y
        want = [(x * y) >> 64, x * w_int[i] % m, x % m, (x % m) * (y % m) % m,
                (full >> 64) % (1 << 64), full % (1 << 64), ((x << 64) + y) % m]
        assert [int(v) for v in out[i]] == want, (i, x, y, m)


# -- NTT -----------------------------------------------------------------------------------------------


def test_pass_plans():
    assert gpu_ntt.plan_passes(16, 8) == [(8, 8), (0, 8)]  # N = 2^16: two passes of 2^8 x 2^8
    assert gpu_ntt.plan_passes(13, 8) == [(6, 7), (0, 6)]
    assert gpu_ntt.plan_passes(4, 8) == [(0, 4)]
    assert gpu_ntt.plan_passes(7, 3) == [(4, 3), (2, 2), (0, 2)]
    with pytest.raises(ValueError):
        gpu_ntt.plan_passes(0, 8)


@pytest.mark.parametrize(
    "n, pass_bits, columns, threads",
    [
        (16, 8, 16, 8),  # one pass, one block per limb
        (16, 2, 2, 2),  # two passes of 2^2 x 2^2
        (64, 3, 4, 4),  # two passes of 2^3 x 2^3, several blocks per limb
        (128, 3, 2, 8),  # three passes
        (256, 4, 4, 16),  # 2^4 x 2^4: the shape of N = 2^16 as 2^8 x 2^8
        (256, 8, 16, 32),  # one 2^8 pass
    ],
)
def test_ntt_matches_cpu_and_reference(rng, n, pass_bits, columns, threads):
    moduli = primes(rng, 4, n)
    t = NttTables(moduli, n)
    rows = rng.permutation(4)[:3].astype(np.int64)  # limb i is over table row rows[i]
    a = residues(rng, (2, 3, n), [moduli[r] for r in rows])
    opts = dict(threads=threads, pass_bits=pass_bits, columns=columns)
    d_a, d_rows, d_q, d_psi, d_psis, d_ipsi, d_ipsis, d_ninv, d_ninvs = dev(
        a, rows, t.moduli, t.psi_rev, t.psi_rev_shoup, t.ipsi_rev, t.ipsi_rev_shoup, t.n_inv, t.n_inv_shoup)
    gpu_ntt.ntt_forward(d_a, d_rows, d_q, d_psi, d_psis, **opts)
    cpu = a.copy()
    ntt_forward(cpu, rows, t.moduli, t.psi_rev, t.psi_rev_shoup)
    got = d_a.copy_to_host()
    assert np.array_equal(got, cpu)
    if n <= 64:
        r = int(rows[1])
        assert [int(v) for v in got[1, 1]] == ref.ntt_forward([int(v) for v in a[1, 1]], moduli[r], t.psi[r])
    gpu_ntt.ntt_inverse(d_a, d_rows, d_q, d_ipsi, d_ipsis, d_ninv, d_ninvs, **opts)
    ntt_inverse(cpu, rows, t.moduli, t.ipsi_rev, t.ipsi_rev_shoup, t.n_inv, t.n_inv_shoup)
    assert np.array_equal(d_a.copy_to_host(), a) and np.array_equal(cpu, a)


def test_ntt_on_a_limb_slice_leaves_the_other_limbs(rng):
    n = 32
    moduli = primes(rng, 4, n)
    t = NttTables(moduli, n)
    a = residues(rng, (2, 4, n), moduli)
    d_a, d_rows, d_q, d_psi, d_psis = dev(a, np.array([1, 2]), t.moduli, t.psi_rev, t.psi_rev_shoup)
    gpu_ntt.ntt_forward(d_a[:, 1:3], d_rows, d_q, d_psi, d_psis, threads=4, pass_bits=3, columns=2)
    want = a.copy()
    part = np.ascontiguousarray(a[:, 1:3])
    ntt_forward(part, np.array([1, 2]), t.moduli, t.psi_rev, t.psi_rev_shoup)
    want[:, 1:3] = part
    assert np.array_equal(d_a.copy_to_host(), want)


def test_ntt_product_is_the_negacyclic_product(rng):
    n = 16
    moduli = primes(rng, 2, n)
    t = NttTables(moduli, n)
    a, b = residues(rng, (1, 2, n), moduli), residues(rng, (1, 2, n), moduli)
    q, mu, k, _, _ = limb_consts(moduli)
    d_a, d_b, d_rows, d_q, d_mu, d_k = dev(a, b, np.arange(2), q, mu, k)
    tab = dev(t.moduli, t.psi_rev, t.psi_rev_shoup, t.ipsi_rev, t.ipsi_rev_shoup, t.n_inv, t.n_inv_shoup)
    for x in (d_a, d_b):
        gpu_ntt.ntt_forward(x, d_rows, *tab[:3], threads=2, pass_bits=2, columns=2)
    gpu_ew.poly_mul[small_grid(2, n)](d_a, d_b, d_a, d_q, d_mu, d_k)
    gpu_ntt.ntt_inverse(d_a, d_rows, tab[0], *tab[3:], threads=2, pass_bits=2, columns=2)
    got = d_a.copy_to_host()
    for i, m in enumerate(moduli):
        assert [int(v) for v in got[0, i]] == ref.negacyclic_multiply([int(v) for v in a[0, i]], [int(v) for v in b[0, i]], m)


# -- element-wise ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["add", "sub", "neg", "mul", "mac", "mul_scalar", "add_scalar"])
@pytest.mark.parametrize("alias", [False, True])
def test_elementwise(rng, name, alias):
    n = 16
    moduli = primes(rng, 3, n)
    q, mu, k, _, _ = limb_consts(moduli)
    # a is a limb slice (strided) of a larger array; out aliases a when ``alias``
    big = residues(rng, (2, 4, n), moduli + moduli[:1])
    a = np.ascontiguousarray(big[:, :3])
    b = residues(rng, (2, 3, n), moduli)
    w_int = [int(rng.integers(0, m)) for m in moduli]
    w = np.array(w_int, dtype=U64)
    ws = np.array([shoup_word(v, m) for v, m in zip(w_int, moduli)], dtype=U64)
    d_big, d_b, d_q, d_mu, d_k, d_w, d_ws = dev(big, b, q, mu, k, w, ws)
    d_a = d_big[:, :3]
    d_out = d_a if alias else cuda.to_device(np.zeros_like(a))
    cpu = b.copy() if name == "mac" else np.zeros_like(a)
    g = small_grid(6, n)
    if name == "add":
        cpu_ew.poly_add(a, b, cpu, q)
        gpu_ew.poly_add[g](d_a, d_b, d_out, d_q)
    elif name == "sub":
        cpu_ew.poly_sub(a, b, cpu, q)
        gpu_ew.poly_sub[g](d_a, d_b, d_out, d_q)
    elif name == "neg":
        cpu_ew.poly_neg(a, cpu, q)
        gpu_ew.poly_neg[g](d_a, d_out, d_q)
    elif name == "mul":
        cpu_ew.poly_mul(a, b, cpu, q, mu, k)
        gpu_ew.poly_mul[g](d_a, d_b, d_out, d_q, d_mu, d_k)
    elif name == "mac":
        cpu_ew.multiply_accumulate(cpu, a, b, q, mu, k)
        d_out = d_b  # acc = b, updated in place (aliasing is the contract here)
        gpu_ew.multiply_accumulate[g](d_out, d_a, d_b, d_q, d_mu, d_k)
    elif name == "mul_scalar":
        cpu_ew.poly_mul_scalar(a, cpu, q, w, ws)
        gpu_ew.poly_mul_scalar[g](d_a, d_out, d_q, d_w, d_ws)
    else:
        cpu_ew.poly_add_scalar(a, cpu, q, w)
        gpu_ew.poly_add_scalar[g](d_a, d_out, d_q, d_w)
    got = d_big.copy_to_host()[:, :3] if alias and name != "mac" else d_out.copy_to_host()
    assert np.array_equal(got, cpu)
    if not alias:
        assert np.array_equal(d_big.copy_to_host(), big)  # inputs untouched


def test_tensor_product(rng):
    n = 16
    moduli = primes(rng, 3, n)
    q, mu, k, _, _ = limb_consts(moduli)
    a, b = residues(rng, (2, 3, n), moduli), residues(rng, (2, 3, n), moduli)
    cpu = np.empty((3, 3, n), dtype=U64)
    cpu_ew.tensor_product(a, b, cpu, q, mu, k)
    d_a, d_b, d_q, d_mu, d_k = dev(a, b, q, mu, k)
    d_out = cuda.device_array((3, 3, n), dtype=U64)
    gpu_ew.tensor_product[small_grid(3, n)](d_a, d_b, d_out, d_q, d_mu, d_k)
    assert np.array_equal(d_out.copy_to_host(), cpu)


def test_copy_and_fill(rng):
    n = 16
    src = residues(rng, (2, 3, n), primes(rng, 3, n))
    d_src = cuda.to_device(src)
    d_dst = cuda.to_device(np.zeros((2, 5, n), dtype=U64))
    gpu_ew.copy3d[small_grid(6, n)](d_src, d_dst[:, 1:4])
    want = np.zeros((2, 5, n), dtype=U64)
    want[:, 1:4] = src
    assert np.array_equal(d_dst.copy_to_host(), want)
    gpu_ew.fill3d[small_grid(10, n)](d_dst, U64(7))
    assert np.all(d_dst.copy_to_host() == 7)


# -- automorphisms and key switching -------------------------------------------------------------------


def test_automorphisms(rng):
    n = 32
    moduli = primes(rng, 2, n)
    q = np.array(moduli, dtype=U64)
    g = int(rng.integers(0, n)) * 2 + 1
    perm = cpu_auto.ntt_automorphism_permutation(g, n)
    a = residues(rng, (2, 2, n), moduli)
    d_a, d_perm, d_q = dev(a, perm, q)
    cpu, d_out = np.empty_like(a), cuda.device_array(a.shape, dtype=U64)
    cpu_auto.automorphism_ntt(a, cpu, perm)
    gpu_auto.automorphism_ntt[small_grid(4, n)](d_a, d_out, d_perm)
    assert np.array_equal(d_out.copy_to_host(), cpu)
    cpu_auto.automorphism_coeff(a, cpu, g, q)
    gpu_auto.automorphism_coeff[small_grid(4, n)](d_a, d_out, g, d_q)
    got = d_out.copy_to_host()
    assert np.array_equal(got, cpu)
    assert [int(v) for v in got[1, 0]] == ref.automorphism([int(v) for v in a[1, 0]], g, moduli[0])


@pytest.mark.parametrize("galois_element", [1, 5, 63])
def test_keyswitch_inner_product(rng, galois_element):
    n = 32
    moduli = primes(rng, 5, n)  # the key covers 5 table rows; ext uses 4 of them
    key_rows = np.array([0, 1, 3, 4], dtype=np.int64)
    sub = [moduli[r] for r in key_rows]
    q, mu, k, r64, r64s = limb_consts(sub)
    digits, key_digits = 3, 4  # a key may have more digits than a low-level ciphertext uses
    ext = residues(rng, (digits, 4, n), sub)
    key = np.stack([residues(rng, (2, 5, n), moduli) for _ in range(key_digits)])  # (D_key, 2, R_full, N)
    perm = cpu_auto.ntt_automorphism_permutation(galois_element, n)
    cpu = np.empty((2, 4, n), dtype=U64)
    cpu_ks.keyswitch_inner_product(ext, perm, key, key_rows, cpu, q, mu, k, r64, r64s)
    args = dev(ext, perm, key, key_rows)
    d_out = cuda.device_array((2, 4, n), dtype=U64)
    gpu_ks.keyswitch_inner_product[small_grid(4, n)](*args, d_out, *dev(q, mu, k, r64, r64s))
    assert np.array_equal(d_out.copy_to_host(), cpu)


# -- RNS -------------------------------------------------------------------------------------------------


def test_fast_basis_conversion(rng):
    n = 16
    moduli = primes(rng, 6, n)
    src, dst = moduli[:3], moduli[3:]
    table = cpu_rns.BasisConversionTable(src, dst)
    x = residues(rng, (2, 3, n), src)
    cpu = np.empty((2, 3, n), dtype=U64)
    cpu_rns.fast_basis_convert(x, cpu, *table.args())
    d_x = cuda.to_device(x)
    d_out = cuda.to_device(np.zeros((2, 5, n), dtype=U64))  # written into a limb slice, as in ModUp
    gpu_rns.fast_basis_convert[small_grid(6, n)](d_x, d_out[:, 1:4], *dev(*table.args()))
    got = d_out.copy_to_host()
    assert np.array_equal(got[:, 1:4], cpu)
    assert not got[:, 0].any() and not got[:, 4].any()
    j = int(rng.integers(0, n))
    assert [int(v) for v in got[1, 1:4, j]] == ref.basis_convert_fast([int(v) for v in x[1, :, j]], src, dst)


def test_rescaling_kernels_round_like_the_reference(rng):
    n = 16
    moduli = primes(rng, 3, n)
    q_last = moduli[-1]
    q, mu, k, _, _ = limb_consts(moduli[:2])
    x = residues(rng, (2, 3, n), moduli)
    last = np.ascontiguousarray(x[:, 2:3])
    cpu_t = np.empty((2, 2, n), dtype=U64)
    cpu_rns.rescale_round_prepare(np.ascontiguousarray(last[:, 0]), cpu_t, U64(q_last), q, mu, k)
    d_x, d_q, d_mu, d_k = dev(x, q, mu, k)
    d_t = cuda.device_array((2, 2, n), dtype=U64)
    gpu_rns.rescale_round_prepare[small_grid(4, n)](d_x[:, 2:3], d_t, U64(q_last), d_q, d_mu, d_k)
    assert np.array_equal(d_t.copy_to_host(), cpu_t)
    inv = [pow(q_last, -1, m) for m in moduli[:2]]
    w = np.array(inv, dtype=U64)
    ws = np.array([shoup_word(v, m) for v, m in zip(inv, moduli[:2])], dtype=U64)
    cpu_out = np.empty((2, 2, n), dtype=U64)
    cpu_rns.sub_and_scale(np.ascontiguousarray(x[:, :2]), cpu_t, cpu_out, q, w, ws)
    d_out = cuda.device_array((2, 2, n), dtype=U64)
    gpu_rns.sub_and_scale[small_grid(4, n)](d_x[:, :2], d_t, d_out, d_q, *dev(w, ws))
    got = d_out.copy_to_host()
    assert np.array_equal(got, cpu_out)
    for j in (0, n - 1, int(rng.integers(0, n))):
        assert [int(v) for v in got[0, :, j]] == ref.rescale_round([int(v) for v in x[0, :, j]], moduli)
