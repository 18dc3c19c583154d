"""Every CUDA kernel against its CPU twin (and the NTT against the big-int reference), on fresh
random data at small sizes; then whole CKKS operations on both backends."""

import warnings

import numpy as np
import pytest
from numba import cuda

from fhe_kernels import automorphism as cpu_auto
from fhe_kernels import elementwise as cpu_ew
from fhe_kernels import keyswitch as cpu_ks
from fhe_kernels import reference as ref
from fhe_kernels import rns as cpu_rns
from fhe_kernels.cuda import elementwise as gpu_ew
from fhe_kernels.cuda import ntt as gpu_ntt
from fhe_kernels.cuda import rns as gpu_rns
from fhe_kernels.cuda.modarith import _mulhi_split
from fhe_kernels.modarith import barrett_constants, shoup_word
from fhe_kernels.ntt import NttTables, ntt_forward, ntt_inverse
from fhe_kernels.primes import ntt_primes

warnings.simplefilter("ignore")  # the simulator's numpy scalars warn on (intended) uint64 wraparound
N = 16
BLOCK = 16
MODULI = ntt_primes(50, 2, N) + ntt_primes(60, 1, N)
RNG = np.random.default_rng(2024)


def grid(count):
    return ((count + BLOCK - 1) // BLOCK, BLOCK)


def rand(shape, moduli=MODULI):
    b, limbs, n = shape
    return np.stack([np.stack([RNG.integers(0, moduli[i], n, dtype=np.uint64) for i in range(limbs)]) for _ in range(b)])


def consts(moduli=MODULI):
    c = [barrett_constants(q) for q in moduli]
    return (np.array(moduli, dtype=np.uint64), np.array([x[0] for x in c], dtype=np.uint64),
            np.array([x[1] for x in c], dtype=np.uint64))


def test_mulhi_split_matches_python():
    @cuda.jit
    def kernel(a, b, out):
        i = cuda.grid(1)
        if i < a.shape[0]:
            out[i] = _mulhi_split(a[i], b[i])

    a = np.array([0, 1, 2**64 - 1, 2**63 + 5, 123456789123456789], dtype=np.uint64)
    b = np.array([7, 2**64 - 1, 2**64 - 1, 2**63 + 7, 987654321987654321], dtype=np.uint64)
    out = np.zeros_like(a)
    kernel[1, 8](a, b, out)
    assert [int(v) for v in out] == [(int(x) * int(y)) >> 64 for x, y in zip(a, b)]


def test_ntt_matches_cpu_and_reference():
    t = NttTables(MODULI, N)
    a = rand((2, 3, N))
    rows = np.arange(3)
    d = cuda.to_device(a)
    gpu_ntt.ntt_forward(d, rows, t.moduli, t.psi_rev, t.psi_rev_shoup, threads=BLOCK)
    cpu = a.copy()
    ntt_forward(cpu, rows, t.moduli, t.psi_rev, t.psi_rev_shoup)
    got = d.copy_to_host()
    assert np.array_equal(got, cpu)
    assert [int(v) for v in got[1, 2]] == ref.ntt_forward([int(v) for v in a[1, 2]], MODULI[2], t.psi[2])
    gpu_ntt.ntt_inverse(d, rows, t.moduli, t.ipsi_rev, t.ipsi_rev_shoup, t.n_inv, t.n_inv_shoup, threads=BLOCK)
    ntt_inverse(cpu, rows, t.moduli, t.ipsi_rev, t.ipsi_rev_shoup, t.n_inv, t.n_inv_shoup)
    assert np.array_equal(d.copy_to_host(), a) and np.array_equal(cpu, a)


def test_ntt_rows_indirection():
    t = NttTables(MODULI, N)
    a = rand((1, 1, N), [MODULI[2]])
    rows = np.array([2])
    d = cuda.to_device(a)
    gpu_ntt.ntt_forward(d, rows, t.moduli, t.psi_rev, t.psi_rev_shoup, threads=BLOCK)
    cpu = a.copy()
    ntt_forward(cpu, rows, t.moduli, t.psi_rev, t.psi_rev_shoup)
    assert np.array_equal(d.copy_to_host(), cpu)


@pytest.mark.parametrize("name", ["add", "sub", "neg", "mul", "mac", "mul_scalar", "add_scalar"])
def test_elementwise(name):
    q, mu, k = consts()
    a, b = rand((2, 3, N)), rand((2, 3, N))
    out_cpu = np.empty_like(a)
    out_gpu = np.empty_like(a)
    w = np.array([RNG.integers(0, m) for m in MODULI], dtype=np.uint64)
    ws = np.array([shoup_word(int(v), m) for v, m in zip(w, MODULI)], dtype=np.uint64)
    g = grid(a.size)
    if name == "add":
        cpu_ew.poly_add(a, b, out_cpu, q); gpu_ew.poly_add[g](a, b, out_gpu, q)
    elif name == "sub":
        cpu_ew.poly_sub(a, b, out_cpu, q); gpu_ew.poly_sub[g](a, b, out_gpu, q)
    elif name == "neg":
        cpu_ew.poly_neg(a, out_cpu, q); gpu_ew.poly_neg[g](a, out_gpu, q)
    elif name == "mul":
        cpu_ew.poly_mul(a, b, out_cpu, q, mu, k); gpu_ew.poly_mul[g](a, b, out_gpu, q, mu, k)
    elif name == "mac":
        out_cpu[...] = b; out_gpu[...] = b
        cpu_ew.multiply_accumulate(out_cpu, a, b, q, mu, k); gpu_ew.multiply_accumulate[g](out_gpu, a, b, q, mu, k)
    elif name == "mul_scalar":
        cpu_ew.poly_mul_scalar(a, out_cpu, q, w, ws); gpu_ew.poly_mul_scalar[g](a, out_gpu, q, w, ws)
    else:
        cpu_ew.poly_add_scalar(a, out_cpu, q, w); gpu_ew.poly_add_scalar[g](a, out_gpu, q, w)
    assert np.array_equal(out_gpu, out_cpu)


def test_tensor_product():
    q, mu, k = consts()
    a, b = rand((2, 3, N)), rand((2, 3, N))
    out_cpu, out_gpu = np.empty((3, 3, N), np.uint64), np.empty((3, 3, N), np.uint64)
    cpu_ew.tensor_product(a, b, out_cpu, q, mu, k)
    gpu_ew.tensor_product[grid(3 * N)](a, b, out_gpu, q, mu, k)
    assert np.array_equal(out_gpu, out_cpu)


def test_automorphism_and_keyswitch_inner_product():
    q, mu, k = consts()
    perm = cpu_auto.ntt_automorphism_permutation(5, N)
    a = rand((2, 3, N))
    out_cpu, out_gpu = np.empty_like(a), np.empty_like(a)
    cpu_auto.automorphism_ntt(a, out_cpu, perm)
    gpu_ew.automorphism_ntt[grid(a.size)](a, out_gpu, perm)
    assert np.array_equal(out_gpu, out_cpu)
    ext = rand((3, 3, N))
    key = np.stack([rand((2, 3, N)) for _ in range(3)])  # (D, 2, R, N)
    rows = np.arange(3)
    r64 = np.array([(1 << 64) % m for m in MODULI], dtype=np.uint64)
    r64s = np.array([shoup_word(int(v), m) for v, m in zip(r64, MODULI)], dtype=np.uint64)
    o_cpu, o_gpu = np.empty((2, 3, N), np.uint64), np.empty((2, 3, N), np.uint64)
    cpu_ks.keyswitch_inner_product(ext, perm, key, rows, o_cpu, q, mu, k, r64, r64s)
    gpu_ew.keyswitch_inner_product[grid(2 * 3 * N)](ext, perm, key, rows, o_gpu, q, mu, k, r64, r64s)
    assert np.array_equal(o_gpu, o_cpu)


def test_basis_conversion_and_rescaling():
    src, dst = MODULI[:2], [MODULI[2]] + ntt_primes(59, 1, N)
    table = cpu_rns.BasisConversionTable(src, dst)
    x = rand((2, 2, N), src)
    o_cpu, o_gpu = np.empty((2, 2, N), np.uint64), np.empty((2, 2, N), np.uint64)
    cpu_rns.fast_basis_convert(x, o_cpu, *table.args())
    gpu_rns.fast_basis_convert[grid(2 * N)](x, o_gpu, *table.args())
    assert np.array_equal(o_gpu, o_cpu)
    q, mu, k = consts(MODULI[:2])
    last = rand((2, 1, N), [MODULI[2]])
    c_cpu, c_gpu = np.empty((2, 2, N), np.uint64), np.empty((2, 2, N), np.uint64)
    cpu_rns.rescale_round_prepare(last[:, 0], c_cpu, np.uint64(MODULI[2]), q, mu, k)
    gpu_rns.rescale_round_prepare[grid(2 * 2 * N)](last, c_gpu, np.uint64(MODULI[2]), q, mu, k)
    assert np.array_equal(c_gpu, c_cpu)
    a = rand((2, 2, N), MODULI[:2])
    inv = [pow(MODULI[2], -1, m) for m in MODULI[:2]]
    w = np.array(inv, dtype=np.uint64)
    ws = np.array([shoup_word(v, m) for v, m in zip(inv, MODULI[:2])], dtype=np.uint64)
    s_cpu, s_gpu = np.empty_like(a), np.empty_like(a)
    cpu_rns.sub_and_scale(a, c_cpu, s_cpu, q, w, ws)
    gpu_rns.sub_and_scale[grid(a.size)](a, c_cpu, s_gpu, q, w, ws)
    assert np.array_equal(s_gpu, s_cpu)


def test_whole_operations_match_the_cpu_backend():
    from fhectl.ckks.context import CKKSContext
    from fhectl.ckks.encryptor import Decryptor, Encryptor
    from fhectl.ckks.evaluator import Evaluator
    from fhectl.ckks.keys import KeyGenerator
    from fhectl.ckks.params import Parameters, ParametersLiteral
    from fhectl.ckks.sampling import SeededRandom

    lit = ParametersLiteral(log_n=4, scale_bits=30, first_mod_bits=40, levels=2, dnum=2, special_mod_bits=40,
                            security="none")
    p = Parameters.from_literal(lit, allow_insecure=True)
    out = {}
    for dev in ("cpu", "cuda"):
        ctx = CKKSContext(p, device=dev)
        assert ctx.device == dev
        kg = KeyGenerator(ctx, SeededRandom("sim/keys"))  # same seed: identical keys on both backends
        sk = kg.secret_key()
        enc = Encryptor(ctx, kg.public_key(sk), SeededRandom("sim/enc"))
        ev = Evaluator(ctx, kg.relin_key(sk), kg.galois_keys(sk, [1, 2], conjugation=True))
        dec = Decryptor(ctx, sk)
        x = np.linspace(-1, 1, p.slots)
        c = enc.encrypt(x)
        results = [ev.rescale(ev.mul(c, c)), ev.rotate(c, 1), ev.rotate_hoisted(c, [2])[2], ev.conjugate(c),
                   ev.add(c, 0.5)]
        out[dev] = ([ctx.backend.to_host(r.data) for r in results], [dec.decrypt(r).real for r in results], x)
    for a, b in zip(out["cpu"][0], out["cuda"][0]):
        assert np.array_equal(a, b)  # bit-identical ciphertexts
    x = out["cuda"][2]
    got = out["cuda"][1]
    for value, want in zip(got, [x * x, np.roll(x, -1), np.roll(x, -2), x, x + 0.5]):
        assert np.max(np.abs(value - want)) < 1e-5
