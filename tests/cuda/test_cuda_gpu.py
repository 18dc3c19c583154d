"""Checks that need a real GPU (marked gpu, skipped cleanly without one).

On a GPU: the kernels with their default launch shapes at N = 2^16 (the
two-pass shared-memory NTT, explicit signatures dispatching on contiguous
arrays and on limb slices), then whole CKKS operations at a 2^14 preset, all
bit for bit against the CPU backend. What needs only the compiler (every
kernel compiled for sm_90: no floating-point instruction, no spills,
occupancy) runs everywhere, without a GPU, in ``test_cuda_sm90.py``.
"""

import numpy as np
import pytest

from fhectl.ckks.backend import CpuBackend, RingTables
from fhectl.ckks.backend_cuda import cuda_available
from fhe_kernels.automorphism import galois_element_for_rotation
from fhe_kernels.primes import ntt_primes

pytestmark = pytest.mark.gpu
HAVE_GPU, WHY = cuda_available(allow_simulator=False)
needs_gpu = pytest.mark.skipif(not HAVE_GPU, reason=f"no GPU: {WHY}")
N16 = 1 << 16


@pytest.fixture(scope="module")
def backends():
    from fhectl.ckks.backend_cuda import CudaBackend

    moduli = ntt_primes(50, 3, N16) + ntt_primes(60, 2, N16)
    tables = RingTables(tuple(moduli), N16, n_q=3)
    return CpuBackend(tables), CudaBackend(tables)


@needs_gpu
def test_ntt_at_2_16_in_two_shared_memory_passes(backends):
    cpu, gpu = backends
    rng = np.random.default_rng()
    rows = (0, 1, 2, 3, 4)
    x = rng.integers(0, cpu.t.moduli[np.array(rows)][None, :, None], size=(2, 5, N16), dtype=np.uint64)
    d = gpu.to_device(x)
    want = x.copy()
    cpu.ntt(want, rows)
    gpu.ntt(d, rows)
    assert np.array_equal(gpu.to_host(d), want)
    part = gpu.limbs(d, 1, 3)  # a strided limb slice, transformed in place
    gpu.intt(part, (1, 2))
    cpu.intt(want[:, 1:3], (1, 2))
    assert np.array_equal(gpu.to_host(d), want)


@needs_gpu
def test_backend_methods_at_2_16(backends):
    cpu, gpu = backends
    rng = np.random.default_rng()
    rows = (0, 1, 3, 4)

    def rand(shape, r):
        return rng.integers(0, cpu.t.moduli[np.array(r)][None, :, None], size=shape, dtype=np.uint64)

    a, b = rand((2, 4, N16), rows), rand((2, 4, N16), rows)
    da, db = gpu.to_device(a), gpu.to_device(b)
    for name in ("add", "sub", "mul"):
        want, got = np.empty_like(a), gpu.empty(a.shape)
        getattr(cpu, name)(a, b, want, rows)
        getattr(gpu, name)(da, db, got, rows)
        assert np.array_equal(gpu.to_host(got), want), name
    want, got = np.empty((3, 4, N16), np.uint64), gpu.empty((3, 4, N16))
    cpu.tensor(a, b, want, rows)
    gpu.tensor(da, db, got, rows)
    assert np.array_equal(gpu.to_host(got), want)
    g = galois_element_for_rotation(5, N16)
    key = np.stack([rand((2, 5, N16), range(5)) for _ in range(2)])
    want, got = np.empty((2, 4, N16), np.uint64), gpu.empty((2, 4, N16))
    cpu.keyswitch_inner_product(a, key, want, rows, g)
    gpu.keyswitch_inner_product(da, gpu.to_device(key), got, rows, g)
    assert np.array_equal(gpu.to_host(got), want)
    want, got = np.zeros((2, 4, N16), np.uint64), gpu.zeros((2, 4, N16))
    cpu.basis_convert(a[:, 2:4], want[:, 0:2], (3, 4), (0, 1))
    gpu.basis_convert(gpu.limbs(da, 2, 4), gpu.limbs(got, 0, 2), (3, 4), (0, 1))
    assert np.array_equal(gpu.to_host(got), want)
    report = gpu.memory_report()
    assert report["device_used_bytes"] and report["live_bytes"] > 0


@needs_gpu
def test_cuda_backend_matches_cpu_at_n_2_14():
    from fhectl.ckks.context import CKKSContext
    from fhectl.ckks.encryptor import Encryptor
    from fhectl.ckks.evaluator import Evaluator
    from fhectl.ckks.keys import KeyGenerator
    from fhectl.ckks.params import load_parameters
    from fhectl.ckks.sampling import SeededRandom

    p = load_parameters("n14-128")
    out = {}
    for dev in ("cpu", "cuda"):
        ctx = CKKSContext(p, device=dev)
        assert ctx.device == dev
        kg = KeyGenerator(ctx, SeededRandom("gpu/keys"))
        sk = kg.secret_key()
        enc = Encryptor(ctx, kg.public_key(sk), SeededRandom("gpu/enc"))
        ev = Evaluator(ctx, kg.relin_key(sk), kg.galois_keys(sk, [1, 2]))
        c = enc.encrypt(np.linspace(-1, 1, p.slots))
        results = (ev.rescale(ev.mul(c, c)), ev.rotate(c, 1), ev.rotate_hoisted(c, [2])[2])
        out[dev] = [ctx.backend.to_host(r.data) for r in results]
    for a, b in zip(out["cpu"], out["cuda"]):
        assert np.array_equal(a, b)
