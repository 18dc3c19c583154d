"""GPU timings of the CUDA backend. NEEDS A REAL CUDA GPU: it refuses the simulator and CPU-only machines.

What is timed, each on fresh random data per repeat, after ``warmup`` untimed
runs (the first launches compile the kernels for their signatures and
allocate device memory; neither belongs in a steady-state figure):

* ``ntt_per_limb``: one forward NTT of all L+1 limbs of a polynomial,
  divided by the limb count (N = 2^16 for the gpt2-n16 profile);
* ``hmult_relin_rescale``: ciphertext product, relinearization, rescale;
* ``rotate``: one slot rotation (automorphism and key switching).

Timing uses CUDA events around the call on the default stream, with the
device synchronised before the start event, so the figure is the GPU time
from the first launch to the last kernel's end (launch overhead included,
host-side setup excluded); the host wall time is reported beside it.
Keys are generated once on the CPU backend and copied to the device, so both
backends hold the same keys: the last repeat's result of each operation is
compared bit for bit with the CPU backend's on the same inputs, and decrypted
for its precision in bits.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np

from fhectl.bench.timing import summarize
from fhectl.ckks.backend_cuda import CudaBackend, LaunchConfig, cuda_available
from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import GaloisKeys, KeyGenerator, SwitchingKey
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import precision_bits
from fhectl.errors import FhectlError

GPU_OPS = ("ntt_per_limb", "hmult_relin_rescale", "rotate")


def _summary(samples: list[float], warmup: int) -> dict:
    return summarize(samples, warmup).as_dict()  # the one timing summary of every suite


def _cuda_time(cuda, fn, setup, repeat: int, warmup: int):
    """(event timing, host wall timing, last input, last result) of fn(setup()), medians over ``repeat``."""
    gpu_s, wall_s = [], []
    arg = result = None
    for i in range(warmup + repeat):
        arg = setup()
        cuda.synchronize()
        start, end = cuda.event(), cuda.event()
        t0 = time.perf_counter()
        start.record()
        result = fn(arg)
        end.record()
        end.synchronize()
        if i >= warmup:
            wall_s.append(time.perf_counter() - t0)
            gpu_s.append(start.elapsed_time(end) / 1e3)  # milliseconds
    return _summary(gpu_s, warmup), _summary(wall_s, warmup), arg, result


def _to_device_ct(be, ct: Ciphertext) -> Ciphertext:
    return Ciphertext(data=be.to_device(ct.data), level=ct.level, scale=ct.scale, params_id=ct.params_id,
                      key_id=ct.key_id, slots=ct.slots)


def _to_device_key(be, key: SwitchingKey) -> SwitchingKey:
    return SwitchingKey(data=be.to_device(key.data), params_id=key.params_id, key_id=key.key_id, source=key.source)


def time_gpu_ops(params: Parameters, repeat: int = 10, warmup: int = 2, launch: LaunchConfig | None = None) -> dict:
    """Median GPU timings of ``GPU_OPS`` under ``params``, each checked against the CPU backend.

    launch: block and grid sizes of the CUDA backend (default ``LaunchConfig()``).

    Returns {"device", "params", "ring_degree", "limbs", "results": {op: {"timing", "wall", "matches_cpu",
    "precision_bits", "note"}}, "device_memory"}; timings in seconds. Raises FhectlError without a GPU.
    """
    ok, why = cuda_available(allow_simulator=False)
    if not ok:
        raise FhectlError(f"GPU timings need a CUDA GPU: {why}")
    if repeat < 1 or warmup < 0:
        raise ValueError("repeat must be >= 1 and warmup >= 0")
    from numba import cuda

    cpu_ctx = CKKSContext(params, device="cpu")
    gpu_ctx = CKKSContext(params, backend_factory=lambda tables: CudaBackend(tables, launch))
    cpu, gpu = cpu_ctx.backend, gpu_ctx.backend
    kg = KeyGenerator(cpu_ctx)
    sk = kg.secret_key()
    rlk = kg.relin_key(sk)
    gk = kg.galois_keys(sk, [1])
    enc, dec = Encryptor(cpu_ctx, kg.public_key(sk)), Decryptor(cpu_ctx, sk)
    ev_cpu = Evaluator(cpu_ctx, rlk, gk)
    ev_gpu = Evaluator(gpu_ctx, _to_device_key(gpu, rlk),
                       GaloisKeys({g: _to_device_key(gpu, k) for g, k in gk.keys.items()}, gk.params_id, gk.key_id))
    rng = np.random.default_rng()  # benchmark data, not key material
    rows = cpu_ctx.q_rows(params.max_level)
    results: dict[str, dict] = {}

    # -- per-limb NTT -------------------------------------------------------------------------
    def ntt_input():
        host = np.stack([rng.integers(0, q, params.ring_degree, dtype=np.uint64) for q in params.moduli_q])[None]
        return host, gpu.to_device(host)

    t, wall, (host, transformed), _ = _cuda_time(cuda, lambda a: gpu.ntt(a[1], rows), ntt_input, repeat, warmup)
    want = host.copy()
    cpu.ntt(want, rows)
    matches = bool(np.array_equal(gpu.to_host(transformed), want))  # the last input, transformed in place
    limbs = len(rows)
    results["ntt_per_limb"] = {
        "timing": {k: (v / limbs if k.endswith("_s") and k != "samples_s" else v) for k, v in t.items()},
        "wall": wall, "matches_cpu": matches, "precision_bits": None,
        "note": f"one forward NTT of {limbs} limbs at N={params.ring_degree}, divided by {limbs}",
    }

    # -- HMult + relinearize + rescale, rotation ----------------------------------------------------
    def pair():
        x, y = rng.uniform(-1, 1, params.slots), rng.uniform(-1, 1, params.slots)
        ca, cb = enc.encrypt(x), enc.encrypt(y)
        return x, y, ca, cb, _to_device_ct(gpu, ca), _to_device_ct(gpu, cb)

    def check(name, result_gpu, result_cpu, want_values, t, wall, note):
        host = Ciphertext(data=gpu.to_host(result_gpu.data), level=result_gpu.level, scale=result_gpu.scale,
                          params_id=result_gpu.params_id, key_id=result_gpu.key_id, slots=result_gpu.slots)
        results[name] = {
            "timing": t, "wall": wall,
            "matches_cpu": bool(np.array_equal(host.data, result_cpu.data)),
            "precision_bits": precision_bits(dec.decrypt(host).real, want_values), "note": note,
        }

    t, wall, p, res = _cuda_time(cuda, lambda p: ev_gpu.rescale(ev_gpu.mul(p[4], p[5])), pair, repeat, warmup)
    check("hmult_relin_rescale", res, ev_cpu.rescale(ev_cpu.mul(p[2], p[3])), p[0] * p[1], t, wall,
          f"top level {params.max_level}, dnum {params.literal.dnum}")
    t, wall, p, res = _cuda_time(cuda, lambda p: ev_gpu.rotate(p[4], 1), pair, repeat, warmup)
    check("rotate", res, ev_cpu.rotate(p[2], 1), np.roll(p[0], -1), t, wall, "left by one slot, top level")

    name = getattr(cuda.get_current_device(), "name", "CUDA simulator")
    return {
        "device": name.decode() if isinstance(name, bytes) else str(name),
        "params": params.name,
        "ring_degree": params.ring_degree,
        "limbs": limbs,
        "launch": asdict(gpu.launch),
        "results": results,
        "device_memory": gpu.memory_report(),
    }
