"""CudaBackend against CpuBackend, method by method, then whole CKKS operations on contexts of both.

Tiny launches everywhere (LaunchConfig below), so the backend's grids are
multi-block and its NTTs multi-pass even at N = 32.
"""

import zlib

import numpy as np
import pytest

from fhectl.ckks.backend import CpuBackend, RingTables
from fhectl.ckks.backend_cuda import CudaBackend, LaunchConfig, cuda_available
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import Parameters, ParametersLiteral
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhe_kernels.automorphism import galois_element_for_rotation
from fhe_kernels.primes import ntt_primes

TINY = LaunchConfig(threads=8, max_blocks_x=2, max_blocks_y=3, ntt_threads=4, ntt_pass_bits=3, ntt_columns=2)
N = 32
U64 = np.uint64


@pytest.fixture(scope="module")
def backends():
    moduli = ntt_primes(50, 2, N) + ntt_primes(55, 2, N) + ntt_primes(60, 2, N)  # rows 0-3: "Q", 4-5: "P"
    tables = RingTables(tuple(moduli), N, n_q=4)
    return CpuBackend(tables), CudaBackend(tables, TINY)


def rand(rng, be, shape, rows):
    q = be.t.moduli[np.array(rows)][None, :, None]
    return rng.integers(0, q, size=tuple(shape), dtype=U64)


def test_cuda_available_reports_the_simulator():
    ok, why = cuda_available()
    assert ok and "simulator" in why
    ok, why = cuda_available(allow_simulator=False)
    assert not ok and "simulator" in why


def test_memory_methods(backends, rng):
    cpu, gpu = backends
    x = rand(rng, cpu, (2, 4, N), range(4))
    d = gpu.to_device(x)
    assert np.array_equal(gpu.to_host(d), x)
    assert np.array_equal(gpu.to_host(gpu.limbs(d, 1, 3)), cpu.limbs(x, 1, 3))  # strided view -> host
    assert np.array_equal(gpu.to_host(gpu.polys(d, 1, 2)), cpu.polys(x, 1, 2))
    assert np.array_equal(gpu.to_host(gpu.copy(gpu.limbs(d, 2, 4))), x[:, 2:4])
    assert not gpu.to_host(gpu.zeros((3, 2, N))).any()
    assert tuple(gpu.empty((1, 3, N)).shape) == (1, 3, N)
    parts = [gpu.limbs(d, 0, 0), gpu.limbs(d, 3, 4), gpu.limbs(d, 0, 2)]  # an empty part, as keys.py makes
    assert np.array_equal(gpu.to_host(gpu.concat_limbs(parts)), cpu.concat_limbs([x[:, 0:0], x[:, 3:4], x[:, 0:2]]))
    assert np.array_equal(gpu.to_host(gpu.stack_polys([d, gpu.polys(d, 0, 1)])), np.concatenate([x, x[:1]]))
    stacked = gpu.stack_new_axis([d, d])
    assert tuple(stacked.shape) == (2, 2, 4, N) and np.array_equal(gpu.to_host(stacked), np.stack([x, x]))
    dst = gpu.zeros((2, 6, N))
    gpu.assign(gpu.limbs(dst, 1, 5), d)
    assert np.array_equal(gpu.to_host(dst)[:, 1:5], x) and not gpu.to_host(dst)[:, [0, 5]].any()
    assert gpu.nbytes(d) == cpu.nbytes(x) and gpu.nbytes(gpu.limbs(d, 0, 1)) == x[:, :1].nbytes


def test_host_arrays_are_refused(backends, rng):
    _, gpu = backends
    x = rand(rng, gpu, (1, 2, N), range(2))
    with pytest.raises(TypeError, match="CudaBackend.add"):
        gpu.add(gpu.to_device(x), x, gpu.empty(x.shape), (0, 1))
    with pytest.raises(TypeError, match="CudaBackend.ntt"):
        gpu.ntt(x, (0, 1))
    with pytest.raises(TypeError, match="already on the device"):
        gpu.to_device(gpu.to_device(x))


def test_memory_report_counts_live_arrays(backends):
    _, gpu = backends
    before = gpu.memory_report()
    a = gpu.empty((2, 4, N))
    b = gpu.zeros((3, 4, N))
    mid = gpu.memory_report()
    assert mid["live_bytes"] - before["live_bytes"] == 5 * 4 * N * 8
    assert mid["peak_bytes"] >= mid["live_bytes"] and mid["table_bytes"] > 0
    del a, b
    assert gpu.memory_report()["live_bytes"] == before["live_bytes"]
    assert set(before) >= {"live_bytes", "peak_bytes", "table_bytes", "device_used_bytes", "device_total_bytes"}


@pytest.mark.parametrize("rows", [(0, 1, 2, 3), (2, 4, 5), (3,)])
def test_ntt_intt(backends, rng, rows):
    cpu, gpu = backends
    x = rand(rng, cpu, (2, len(rows), N), rows)
    d = gpu.to_device(x)
    want = x.copy()
    cpu.ntt(want, rows)
    gpu.ntt(d, rows)
    assert np.array_equal(gpu.to_host(d), want)
    cpu.intt(want, rows)
    gpu.intt(d, rows)
    assert np.array_equal(gpu.to_host(d), x) and np.array_equal(want, x)


def test_elementwise_methods_on_limb_views(backends, rng):
    cpu, gpu = backends
    rows = (0, 1, 2)
    full_a, b = rand(rng, cpu, (2, 4, N), range(4)), rand(rng, cpu, (2, 3, N), rows)
    a = full_a[:, :3]
    da, db = gpu.limbs(gpu.to_device(full_a), 0, 3), gpu.to_device(b)
    values = [int(v) for v in rng.integers(0, 2**62, 3)] + [2**100 + 7]  # any integers, reduced per limb
    for name, args in [("add", (a, b)), ("sub", (a, b)), ("mul", (a, b)), ("neg", (a,))]:
        want, got = np.empty_like(b), gpu.empty(b.shape)
        getattr(cpu, name)(*args, want, rows)
        getattr(gpu, name)(*[da, db][: len(args)], got, rows)
        assert np.array_equal(gpu.to_host(got), want), name
    for name in ("mul_scalar", "add_scalar"):
        want, got = np.empty_like(b), gpu.empty(b.shape)
        getattr(cpu, name)(a, want, rows, values[1:])
        getattr(gpu, name)(da, got, rows, values[1:])
        assert np.array_equal(gpu.to_host(got), want), name
    acc = rand(rng, cpu, (2, 3, N), rows)
    d_acc = gpu.to_device(acc)
    cpu.mul_accumulate(acc, a, b, rows)
    gpu.mul_accumulate(d_acc, da, db, rows)
    assert np.array_equal(gpu.to_host(d_acc), acc)
    want, got = np.empty((3, 3, N), U64), gpu.empty((3, 3, N))
    cpu.tensor(np.ascontiguousarray(a), b, want, rows)
    gpu.tensor(da, db, got, rows)
    assert np.array_equal(gpu.to_host(got), want)
    want, got = np.empty_like(b), gpu.empty(b.shape)
    cpu.sub_and_scale(a, b, want, rows, values[:3])
    gpu.sub_and_scale(da, db, got, rows, values[:3])
    assert np.array_equal(gpu.to_host(got), want)


def test_automorphism_and_keyswitch_inner_product(backends, rng):
    cpu, gpu = backends
    g = galois_element_for_rotation(3, N)
    x = rand(rng, cpu, (2, 4, N), range(4))
    want, got = np.empty_like(x), gpu.empty(x.shape)
    cpu.automorphism(x, want, g)
    gpu.automorphism(gpu.to_device(x), got, g)
    assert np.array_equal(gpu.to_host(got), want)
    rows = (0, 1, 4, 5)  # Q_1 and P, as at level 1
    ext = rand(rng, cpu, (2, 4, N), rows)
    key = np.stack([rand(rng, cpu, (2, 6, N), range(6)) for _ in range(3)])  # (dnum, 2, all rows, N)
    d_ext, d_key = gpu.to_device(ext), gpu.to_device(key)
    # a key truncated to level 1 (``SwitchingKey.max_level``, as bootstrapping's rotation keys are): its own rows
    # are q0, q1, p0, p1, read at key_rows; the same values as the full key's, so the same result
    short = np.ascontiguousarray(key[:, :, list(rows)])
    d_short = gpu.to_device(short)
    for galois in (1, g):
        want, got = np.empty((2, 4, N), U64), gpu.empty((2, 4, N))
        cpu.keyswitch_inner_product(ext, key, want, rows, galois)
        gpu.keyswitch_inner_product(d_ext, d_key, got, rows, galois)
        assert np.array_equal(gpu.to_host(got), want)
        got_short = gpu.empty((2, 4, N))
        gpu.keyswitch_inner_product(d_ext, d_short, got_short, rows, galois, key_rows=(0, 1, 2, 3))
        assert np.array_equal(gpu.to_host(got_short), want)


def test_basis_convert_and_rescale_prepare(backends, rng):
    cpu, gpu = backends
    x = rand(rng, cpu, (2, 2, N), (4, 5))
    want = np.zeros((2, 6, N), U64)
    got = gpu.zeros((2, 6, N))
    cpu.basis_convert(x, want[:, 1:4], (4, 5), (0, 1, 2))
    gpu.basis_convert(gpu.to_device(x), gpu.limbs(got, 1, 4), (4, 5), (0, 1, 2))
    assert np.array_equal(gpu.to_host(got), want)
    full = rand(rng, cpu, (2, 4, N), range(4))
    want, got = np.empty((2, 3, N), U64), gpu.empty((2, 3, N))
    cpu.rescale_prepare(full[:, 3:4], want, 3, (0, 1, 2))
    gpu.rescale_prepare(gpu.limbs(gpu.to_device(full), 3, 4), got, 3, (0, 1, 2))
    assert np.array_equal(gpu.to_host(got), want)


def test_host_conversions(backends, rng):
    cpu, gpu = backends
    values = rng.normal(0, 2.0**40, N)
    values[0] = 2.0**90  # above int64: the exact path through pow2 tables
    host = gpu.float_to_rns(values, (0, 1, 2))
    assert isinstance(host, np.ndarray) and np.array_equal(host, cpu.float_to_rns(values, (0, 1, 2)))
    assert np.array_equal(gpu.rns_to_float(host[0], (0, 1, 2)), cpu.rns_to_float(host[0], (0, 1, 2)))


# -- whole CKKS operations ------------------------------------------------------------------------------


def tiny_params(**kw):
    lit = dict(log_n=5, scale_bits=30, first_mod_bits=40, levels=2, dnum=2, special_mod_bits=40, security="none")
    lit.update(kw)
    return Parameters.from_literal(ParametersLiteral(**lit), allow_insecure=True)


def test_device_selection_under_the_simulator():
    p = tiny_params()
    assert CKKSContext(p, device="cuda").device == "cuda"  # --device cuda accepts the simulator
    assert CKKSContext(p, device="auto").device == "cpu"  # --device auto wants a real GPU


def run_operations(params, device, seed):
    """The same keys, randomness and operations on one backend: ciphertexts (host) and decryptions."""
    if device == "cuda":  # tiny blocks: multi-block, multi-pass
        ctx = CKKSContext(params, backend_factory=lambda tables: CudaBackend(tables, TINY))
    else:
        ctx = CKKSContext(params, device=device)
    kg = KeyGenerator(ctx, SeededRandom(f"{seed}/keys"))
    sk = kg.secret_key()
    enc = Encryptor(ctx, kg.public_key(sk), SeededRandom(f"{seed}/enc"))
    sk_enc = Encryptor(ctx, sk, SeededRandom(f"{seed}/sk-enc"))
    ev = Evaluator(ctx, kg.relin_key(sk), kg.galois_keys(sk, [1, 2, 3], conjugation=True))
    dec = Decryptor(ctx, sk)
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    x = rng.uniform(-1, 1, params.slots) + 1j * rng.uniform(-1, 1, params.slots)
    y = rng.uniform(-1, 1, params.slots)
    cx, cy = enc.encrypt(x), sk_enc.encrypt(y)
    hoisted = ev.rotate_hoisted(cx, [1, 3])
    results = {
        "encrypt": (cx, x),
        "mul_relin_rescale": (ev.rescale(ev.mul(cx, cy)), x * y),
        "square_twice": (ev.rescale(ev.square(ev.rescale(ev.square(cy)))), y**4),
        "rotate": (ev.rotate(cx, 2), np.roll(x, -2)),
        "hoisted_1": (hoisted[1], np.roll(x, -1)),
        "hoisted_3": (hoisted[3], np.roll(x, -3)),
        "conjugate": (ev.conjugate(cx), np.conj(x)),
        "add_sub_const": (ev.sub(ev.add(cx, 0.25), cy), x + 0.25 - y),
        "mul_plain_rescale": (ev.rescale(ev.mul_values(cx, y)), x * y),
        "mul_int_neg": (ev.neg(ev.mul_int(cy, 3)), -3 * y),
    }
    out = {}
    for name, (ct, want) in results.items():
        got = dec.decrypt(ct)
        out[name] = (ctx.backend.to_host(ct.data), got, precision_bits(got, want))
    return out, ctx.backend


def test_whole_operations_match_the_cpu_backend():
    params = tiny_params()
    seed = "tests/cuda/ops"
    cpu, _ = run_operations(params, "cpu", seed)
    gpu, backend = run_operations(params, "cuda", seed)
    for name in cpu:
        assert np.array_equal(gpu[name][0], cpu[name][0]), f"{name}: ciphertexts differ"
        assert np.array_equal(gpu[name][1], cpu[name][1]), f"{name}: decryptions differ"
        assert gpu[name][2] > 12, f"{name}: {gpu[name][2]:.1f} bits of precision"
    assert backend.memory_report()["peak_bytes"] > 0


def test_gpu_benchmark_bookkeeping_runs_on_the_simulator(monkeypatch):
    """fhectl.bench.gpu_ops needs a GPU for its timings; here the simulator stands in to run its checks once."""
    from fhectl.bench import gpu_ops

    monkeypatch.setattr(gpu_ops, "cuda_available", lambda allow_simulator=False: (True, "simulator standing in"))
    report = gpu_ops.time_gpu_ops(tiny_params(), repeat=1, warmup=0, launch=TINY)
    assert set(report["results"]) == set(gpu_ops.GPU_OPS)
    for name, r in report["results"].items():
        assert r["matches_cpu"], name
        assert r["timing"]["repeats"] == 1 and len(r["wall"]["samples_s"]) == 1
    assert report["results"]["rotate"]["precision_bits"] > 12
    assert report["ring_degree"] == 32 and report["device_memory"]["peak_bytes"] > 0
