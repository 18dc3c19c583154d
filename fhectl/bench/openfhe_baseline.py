"""OpenFHE (Python wheel) as reference and baseline, on the parameters of a fhectl profile.

The context mirrors ours: ring degree, first-modulus bits, scaling-prime bits,
multiplicative depth and number of hybrid key-switching digits; the
FIXEDMANUAL scaling technique, so rescaling is explicit as in fhectl; a
uniform ternary secret. OpenFHE chooses its own primes of those sizes and its
own number of special primes, which the context records.

Facts of openfhe 1.6.1's Python API this module relies on (checked here):
* EvalMult(ct, ct) relinearizes when an EvalMult key exists; Rescale then
  drops a prime (FIXEDMANUAL).
* CKKS plaintexts are real unless the context is created with
  CKKSDataType COMPLEX; the comparisons use real data.
* No NTT is exposed, so the per-limb NTT has no OpenFHE counterpart here.
* Threads come from OpenMP (OMP_NUM_THREADS at process start); the count in
  use is recorded, not changed.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from fhectl.bench.timing import measure
from fhectl.errors import FhectlError

HOISTED_STEPS = tuple(range(1, 9))


def _openfhe():
    try:
        import openfhe
    except ImportError as exc:
        raise FhectlError(f"openfhe is not installed ({exc}): pip install openfhe==1.6.1.0.22.4 (CPython 3.10 only)") from None
    return openfhe


@dataclass(frozen=True)
class OpenFHEParams:
    log_n: int  # ring degree N = 2**log_n
    first_mod_bits: int  # bits of q0 (FirstModSize)
    scale_bits: int  # bits of each scaling prime (ScalingModSize)
    levels: int  # multiplicative depth
    dnum: int  # NumLargeDigits of HYBRID key switching
    secure: bool  # HEStd_128_classic if True, else HEStd_NotSet


class OpenFHEContext:
    """A CKKS crypto context with keys, and the few operations the comparisons need."""

    def __init__(self, params: OpenFHEParams, rotations=()):
        ofhe = _openfhe()
        self.ofhe = ofhe
        self.params = params
        p = ofhe.CCParamsCKKSRNS()
        p.SetRingDim(1 << params.log_n)
        p.SetBatchSize(1 << (params.log_n - 1))
        p.SetMultiplicativeDepth(params.levels)
        p.SetScalingModSize(params.scale_bits)
        p.SetFirstModSize(params.first_mod_bits)
        p.SetScalingTechnique(ofhe.FIXEDMANUAL)
        p.SetKeySwitchTechnique(ofhe.HYBRID)
        p.SetNumLargeDigits(params.dnum)
        p.SetSecretKeyDist(ofhe.UNIFORM_TERNARY)
        p.SetSecurityLevel(ofhe.HEStd_128_classic if params.secure else ofhe.HEStd_NotSet)
        self.cc = ofhe.GenCryptoContext(p)
        for feature in (ofhe.PKESchemeFeature.PKE, ofhe.PKESchemeFeature.KEYSWITCH, ofhe.PKESchemeFeature.LEVELEDSHE):
            self.cc.Enable(feature)
        self.keys = self.cc.KeyGen()
        self.cc.EvalMultKeyGen(self.keys.secretKey)
        if rotations:
            self.cc.EvalRotateKeyGen(self.keys.secretKey, list(rotations))
        self.slots = 1 << (params.log_n - 1)

    def describe(self) -> dict:
        # The wheel exposes Q only as a float (GetModulus) and neither the single primes nor P.
        try:
            log_q = round(math.log2(float(self.cc.GetModulus())), 2)
        except (TypeError, ValueError):
            log_q = None
        return {
            "ring_degree": self.cc.GetRingDimension(),
            "log_q": log_q,
            "scaling_technique": "FIXEDMANUAL",
            "key_switching": f"HYBRID, {self.params.dnum} digits",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", f"default (all {os.cpu_count()} cores)"),
            "version": _version(),
        }

    def encrypt(self, values: np.ndarray):
        pt = self.cc.MakeCKKSPackedPlaintext([float(v) for v in values])
        return self.cc.Encrypt(self.keys.publicKey, pt)

    def decrypt(self, ct, length: int) -> np.ndarray:
        pt = self.cc.Decrypt(ct, self.keys.secretKey)
        pt.SetLength(length)
        return np.array(pt.GetRealPackedValue())

    def mul_relin(self, a, b):
        return self.cc.EvalMult(a, b)

    def rescale(self, a):
        return self.cc.Rescale(a)

    def rotate(self, a, step: int):
        return self.cc.EvalRotate(a, step)

    def hoisted_rotations(self, a, steps):
        pre = self.cc.EvalFastRotationPrecompute(a)
        m = self.cc.GetCyclotomicOrder()
        return {s: self.cc.EvalFastRotation(a, s, m, pre) for s in steps}


def _version() -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version("openfhe")
    except Exception:  # noqa: BLE001
        return None


def _precision(got, want) -> float:
    err = float(np.max(np.abs(np.asarray(got) - np.asarray(want))))
    return math.inf if err == 0 else -math.log2(err)


def time_openfhe_ops(params: OpenFHEParams, repeat: int = 5, warmup: int = 1) -> dict:
    """The ``fhectl.bench.ops`` operations on OpenFHE, with the same names, timing and precision checks."""
    ctx = OpenFHEContext(params, rotations=HOISTED_STEPS)
    rng = np.random.default_rng()  # benchmark data, not key material
    n = ctx.slots
    results: dict[str, dict] = {}
    state: dict = {}

    def values():
        return rng.uniform(-1, 1, n)

    def record(name, timing, prec, note=None):
        results[name] = {"timing": timing.as_dict(), "precision_bits": prec, "note": note}

    def fresh():
        state["x"] = values()
        return state["x"]

    t, _ = measure(lambda x: ctx.cc.MakeCKKSPackedPlaintext(list(x)), values, repeat, warmup)
    record("encode", t, None)
    t, ct = measure(lambda x: ctx.encrypt(x), fresh, repeat, warmup)
    record("encrypt", t, _precision(ctx.decrypt(ct, n), state["x"]))

    def pair():
        x, y = values(), values()
        state["pair"] = (x, y)
        return ctx.encrypt(x), ctx.encrypt(y)

    t, prod = measure(lambda p: ctx.mul_relin(*p), pair, repeat, warmup)
    x, y = state["pair"]
    record("hmult_relin", t, _precision(ctx.decrypt(prod, n), x * y))

    t, res = measure(lambda c: ctx.rescale(c), lambda: ctx.mul_relin(*pair()), repeat, warmup)
    x, y = state["pair"]
    record("rescale", t, _precision(ctx.decrypt(res, n), x * y))

    t, rot = measure(lambda p: ctx.rotate(p[0], 1), pair, repeat, warmup)
    record("rotate", t, _precision(ctx.decrypt(rot, n), np.roll(state["pair"][0], -1)))

    t, rots = measure(lambda p: ctx.hoisted_rotations(p[0], HOISTED_STEPS), pair, repeat, warmup)
    x = state["pair"][0]
    record("hoisted_rotations_8", t, min(_precision(ctx.decrypt(rots[s], n), np.roll(x, -s)) for s in HOISTED_STEPS),
           "EvalFastRotationPrecompute + 8 EvalFastRotation")

    def ciphertext():
        state["x"] = values()
        return ctx.encrypt(state["x"])

    t, out = measure(lambda c: ctx.decrypt(c, n), ciphertext, repeat, warmup)
    record("decrypt", t, _precision(out, state["x"]))
    return {"results": results, "context": ctx.describe()}
