"""OpenFHE (Python wheel) as correctness reference and speed baseline, on the parameters of a fhectl profile.

The context mirrors ours: ring degree, first-modulus bits, scaling-prime bits,
multiplicative depth, number of hybrid key-switching digits, secret
distribution; the FIXEDMANUAL scaling technique, so rescaling is explicit as
in fhectl. OpenFHE chooses its own primes of those sizes and its own special
primes; the context reads them back (``moduli``, ``special_moduli``).
``openfhe`` is imported only when a context is built, so fhectl works without it.

Facts of openfhe 1.6.1 (wheel 1.6.1.0.22.4) that this module relies on, each
checked against the wheel (small contexts unless a size is named):

Levels and scales (FIXEDMANUAL)
  * ``ct.GetLevel()`` counts the rescales consumed (0 when fresh), not the limbs
    left; a ciphertext at level l has L + 1 - l limbs.
  * ``EvalMult(ct, ct)`` relinearizes (two elements out) when EvalMultKeyGen ran;
    it does not rescale: the product has ``GetNoiseScaleDeg() == 2``, the same
    level, and ``GetScalingFactor() == Delta**2``. ``Rescale`` (= ``ModReduce``)
    drops one prime and returns degree 1 at level + 1. ``EvalMultNoRelin`` gives
    three elements at degree 2.
  * Decryption works on degree-2 and on three-element ciphertexts: the decoder
    divides by ``Delta**deg``, so a product decrypts correctly before rescaling.
  * The scale is the fixed ``Delta = 2**scale_bits`` at every level
    (``cc.GetScalingFactorReal(l)`` is constant): FIXED* techniques treat every
    scaling prime as if it were exactly Delta, so each rescale adds a relative
    error of about |q_i / Delta - 1|.
  * Nothing guards degrees under FIXEDMANUAL: ``EvalMult`` of two degree-2
    ciphertexts gives degree 4, and ``EvalAdd`` of degree 2 and degree 1 returns
    garbage without an error (measured: 0 bits of precision). ``add`` below
    refuses that. Operands at different levels are aligned by OpenFHE itself.
  * ``LevelReduce(ct, None, k)`` drops k limbs without dividing (level + k).
  * Conjugation has no ``EvalConjugate`` in the wheel; the automorphism of index
    2N - 1 through ``EvalAutomorphismKeyGen`` / ``EvalAutomorphism`` is it.
  * Slots are real unless the context is made with ``CKKSDataType.COMPLEX``;
    in a real context the decoder zeroes the imaginary parts, and
    ``MakeCKKSPackedPlaintext`` discards imaginary inputs silently (``encrypt``
    below refuses them).

Moduli
  * ``cc.GetModulus()`` is Q as a float; ``cc.GetElementParams().GetModulus()``
    is Q as an int; ``Plaintext.GetElementModulus()`` of a plaintext encoded at
    level l is the exact product of the limbs left, so successive quotients give
    each prime q_i exactly.
  * P (the special primes of hybrid key switching) is not exposed, and the
    serialized context leaves it out (it is recomputed on load). It is read from
    ``KeySwitchExt`` of a one-limb ciphertext, which lives in the basis q_0 * P
    and whose JSON serialization names each limb's modulus. At N = 2^16 that is
    ~3 s and a ~55 MB string, so ``special_moduli`` is computed on first use.

NTT
  * No NTT function is exposed, but ``Plaintext.SetFormat(Format.EVALUATION)`` on
    a plaintext in COEFFICIENT format runs the forward NTT of all of its limbs
    (checked: its time grows linearly with the limb count, and a plaintext taken
    to COEFFICIENT and back encrypts and decrypts to the same values). That is
    what ``ntt_per_limb`` times, divided by the limb count.

Threads
  * OpenFHE parallelizes with OpenMP; the extension links the system
    ``libgomp.so.1``. ``OMP_NUM_THREADS`` is read once, when libgomp is loaded,
    so setting it after ``import openfhe`` does nothing; ``omp_set_num_threads``
    through ctypes on the loaded libgomp works at any time (checked: 1 and 2
    threads give different timings in one process). It applies to parallel
    regions started from the calling thread, and to every OpenMP user of that
    libgomp in the process. The wheel itself has no thread-count function.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fhectl.ckks.precision import precision_bits
from fhectl.errors import FhectlError, MissingKeyError, ParameterError, ScaleMismatchError

OPENFHE_WHEEL = "openfhe==1.6.1.0.22.4"
HOISTED_STEPS = tuple(range(1, 9))
SECRET_DISTRIBUTIONS = {"uniform-ternary": "UNIFORM_TERNARY", "sparse-ternary": "SPARSE_TERNARY"}
DATA_TYPES = {"real": "REAL", "complex": "COMPLEX"}


def _openfhe():
    try:
        import openfhe
    except ImportError:
        raise FhectlError(f"openfhe is not installed: pip install {OPENFHE_WHEEL} (CPython 3.10 only)") from None
    return openfhe


@dataclass(frozen=True)
class OpenFHEParams:
    log_n: int  # ring degree N = 2**log_n
    first_mod_bits: int  # bits of q0 (FirstModSize)
    scale_bits: int  # bits of each scaling prime (ScalingModSize); Delta = 2**scale_bits
    levels: int  # multiplicative depth: rescales available
    dnum: int  # NumLargeDigits of HYBRID key switching
    secure: bool  # True: HEStd_128_classic (OpenFHE rejects N below its table), False: HEStd_NotSet
    secret: str = "uniform-ternary"  # or "sparse-ternary" (OpenFHE SecretKeyDist)
    data_type: str = "real"  # or "complex" (OpenFHE CKKSDataType): what a slot holds

    def __post_init__(self):
        if not 1 <= self.log_n <= 17:
            raise ParameterError(f"OpenFHEParams: log_n = {self.log_n}; expected 1..17")
        if self.levels < 1 or self.dnum < 1:
            raise ParameterError(f"OpenFHEParams: levels = {self.levels}, dnum = {self.dnum}; both must be >= 1")
        if self.secret not in SECRET_DISTRIBUTIONS:
            raise ParameterError(f"OpenFHEParams: secret = {self.secret!r}; "
                                 f"supported: {', '.join(SECRET_DISTRIBUTIONS)}")
        if self.data_type not in DATA_TYPES:
            raise ParameterError(f"OpenFHEParams: data_type = {self.data_type!r}; supported: {', '.join(DATA_TYPES)}")

    @property
    def ring_degree(self) -> int:
        return 1 << self.log_n


class OpenFHEContext:
    """An OpenFHE CKKS context with its keys, and the operations the comparisons need.

    Handles are OpenFHE ``Ciphertext`` objects. Key generation happens here, so
    it stays outside anything timed on the operations.
    """

    def __init__(self, params: OpenFHEParams, rotations: Sequence[int] = (), batch_size: int | None = None,
                 threads: int | None = None, conjugation: bool = False):
        if threads is not None:
            if threads < 1:
                raise ParameterError(f"threads = {threads}; must be >= 1")
            if "openfhe" not in sys.modules:
                os.environ["OMP_NUM_THREADS"] = str(threads)  # read when openfhe loads libgomp
        ofhe = _openfhe()
        self.ofhe = ofhe
        self.params = params
        self.threads = _set_omp_threads(threads)  # None: no OpenMP runtime found in the process
        n = params.ring_degree
        self.slots = n // 2 if batch_size is None else batch_size
        if not (1 <= self.slots <= n // 2 and self.slots & (self.slots - 1) == 0):
            raise ParameterError(f"batch_size = {batch_size}; must be a power of two in 1..{n // 2} (N/2)")

        p = ofhe.CCParamsCKKSRNS()
        p.SetRingDim(n)
        p.SetBatchSize(self.slots)
        p.SetMultiplicativeDepth(params.levels)
        p.SetFirstModSize(params.first_mod_bits)
        p.SetScalingModSize(params.scale_bits)
        p.SetScalingTechnique(ofhe.FIXEDMANUAL)
        p.SetKeySwitchTechnique(ofhe.HYBRID)
        p.SetNumLargeDigits(params.dnum)
        p.SetSecretKeyDist(getattr(ofhe.SecretKeyDist, SECRET_DISTRIBUTIONS[params.secret]))
        p.SetCKKSDataType(getattr(ofhe.CKKSDataType, DATA_TYPES[params.data_type]))
        p.SetSecurityLevel(ofhe.HEStd_128_classic if params.secure else ofhe.HEStd_NotSet)
        try:
            self.cc = ofhe.GenCryptoContext(p)
        except RuntimeError as exc:  # e.g. a ring degree below the security table
            raise ParameterError(f"OpenFHE rejected {params}: {str(exc).split('():')[-1].strip()}") from None
        if self.cc.GetRingDimension() != n:
            raise ParameterError(f"OpenFHE chose N = {self.cc.GetRingDimension()} for {params}, not {n}")
        for feature in (ofhe.PKESchemeFeature.PKE, ofhe.PKESchemeFeature.KEYSWITCH, ofhe.PKESchemeFeature.LEVELEDSHE):
            self.cc.Enable(feature)

        self.keys = self.cc.KeyGen()
        self.cc.EvalMultKeyGen(self.keys.secretKey)
        self.rotations = tuple(sorted(set(int(r) for r in rotations)))
        if self.rotations:
            self.cc.EvalRotateKeyGen(self.keys.secretKey, list(self.rotations))
        self._conjugation_keys = None
        if conjugation:
            self._conjugation_keys = self.cc.EvalAutomorphismKeyGen(self.keys.secretKey, [self._conjugation_index])
        self.moduli = self._read_moduli()

    # -- moduli ------------------------------------------------------------------------------------------------
    def _read_moduli(self) -> tuple[int, ...]:
        """q_0, ..., q_L exactly: quotients of the modulus of plaintexts encoded at successive levels."""
        zero = np.zeros(1)
        products = [int(self.cc.MakeCKKSPackedPlaintext(zero, 1, lvl).GetElementModulus())
                    for lvl in range(self.params.levels + 1)]  # products[l] = q_0 * ... * q_{L-l}
        products.append(1)
        chain = [products[lvl] // products[lvl + 1] for lvl in range(self.params.levels + 1)]
        return tuple(reversed(chain))

    @property
    def moduli_bits(self) -> tuple[int, ...]:
        return tuple(q.bit_length() for q in self.moduli)

    @cached_property
    def special_moduli(self) -> tuple[int, ...]:
        """The primes of P, read from a one-limb ciphertext raised to the basis q_0 * P (slow at large N)."""
        ct = self.encrypt(np.zeros(1))
        ct = self.cc.LevelReduce(ct, None, self.params.levels)  # one limb left: q_0
        raised = self.cc.KeySwitchExt(ct, False)
        data = json.loads(self.ofhe.Serialize(raised, self.ofhe.JSON))["value0"]["ptr_wrapper"]["data"]
        limbs = [int(limb["v"]["ptr_wrapper"]["data"]["m"]["v"]) for limb in data["v"][0]["v"]]
        if limbs[0] != self.moduli[0] or set(limbs[1:]) & set(self.moduli):
            raise FhectlError(f"unexpected limb moduli after KeySwitchExt: {limbs}")
        return tuple(limbs[1:])

    @property
    def special_bits(self) -> tuple[int, ...]:
        return tuple(p.bit_length() for p in self.special_moduli)

    @property
    def _conjugation_index(self) -> int:
        return self.cc.GetCyclotomicOrder() - 1  # X -> X^(2N-1) conjugates every slot

    # -- state of a ciphertext --------------------------------------------------------------------------------
    def level(self, ct) -> int:
        """Rescales (and level reductions) consumed so far; the ciphertext has L + 1 - level limbs."""
        return ct.GetLevel()

    def noise_scale_degree(self, ct) -> int:
        """1 after encryption or rescale, 2 after a multiplication that was not rescaled."""
        return ct.GetNoiseScaleDeg()

    def scale(self, ct) -> float:
        """Delta ** noise_scale_degree, as OpenFHE tracks it."""
        return ct.GetScalingFactor()

    # -- operations --------------------------------------------------------------------------------------------
    def encode(self, values: np.ndarray, level: int = 0):
        values = np.asarray(values)
        if values.ndim != 1 or not 1 <= values.size <= self.slots:
            raise ParameterError(f"encode: {values.shape} values; expected a vector of 1..{self.slots}")
        if np.iscomplexobj(values):
            if self.params.data_type == "real":
                if np.any(values.imag != 0):
                    raise ParameterError("encode: complex values in a real OpenFHE context (data_type='complex' "
                                         "keeps imaginary parts)")
                values = values.real
            else:
                return self.cc.MakeCKKSPackedPlaintext(np.ascontiguousarray(values, np.complex128), 1, level)
        return self.cc.MakeCKKSPackedPlaintext(np.ascontiguousarray(values, np.float64), 1, level)

    def encrypt(self, values: np.ndarray, level: int = 0):
        return self.cc.Encrypt(self.keys.publicKey, self.encode(values, level))

    def decrypt(self, ct, length: int) -> np.ndarray:
        """The first ``length`` slots: complex128 in a complex context, float64 in a real one."""
        pt = self.cc.Decrypt(ct, self.keys.secretKey)
        pt.SetLength(length)
        if self.params.data_type == "complex":
            return np.array(pt.GetCKKSPackedValueArray())
        return np.array(pt.GetRealPackedValueArray())

    def add(self, a, b):
        if a.GetNoiseScaleDeg() != b.GetNoiseScaleDeg():
            raise ScaleMismatchError(f"add: noise-scale degrees {a.GetNoiseScaleDeg()} and {b.GetNoiseScaleDeg()}; "
                                     "OpenFHE FIXEDMANUAL would return garbage: rescale first")
        return self.cc.EvalAdd(a, b)

    def mul_relin(self, a, b):
        """Product, relinearized, not rescaled (noise-scale degree 2)."""
        return self.cc.EvalMult(a, b)

    def mul_plain(self, a, values: np.ndarray):
        """Product with plaintext values encoded at ``a``'s level, not rescaled."""
        return self.cc.EvalMult(a, self.encode(values, a.GetLevel()))

    def rescale(self, a):
        return self.cc.Rescale(a)

    def level_reduce(self, a, levels: int = 1):
        """Drop ``levels`` limbs without dividing."""
        return self.cc.LevelReduce(a, None, levels)

    def _need_rotation_keys(self, steps) -> None:
        missing = sorted(set(int(s) for s in steps) - set(self.rotations))
        if missing:
            raise MissingKeyError(f"no rotation key for step(s) {missing}; this context has {list(self.rotations)}")

    def rotate(self, a, step: int):
        """Slot i of the result holds slot i + step of ``a`` (np.roll(x, -step))."""
        self._need_rotation_keys([step])
        return self.cc.EvalRotate(a, step)

    def hoisted_rotations(self, a, steps: Sequence[int]) -> dict:
        """{step: rotate(a, step)} sharing one digit decomposition (keyed like fhectl's rotate_hoisted)."""
        self._need_rotation_keys(steps)
        digits = self.cc.EvalFastRotationPrecompute(a)
        m = self.cc.GetCyclotomicOrder()
        return {s: self.cc.EvalFastRotation(a, s, m, digits) for s in steps}

    def conjugate(self, a):
        if self._conjugation_keys is None:
            raise MissingKeyError("no conjugation key: build the context with conjugation=True")
        return self.cc.EvalAutomorphism(a, self._conjugation_index, self._conjugation_keys)

    def describe(self, special: bool = True) -> dict:
        """The context as OpenFHE built it; ``special=False`` skips reading P (seconds at N = 2^16)."""
        return {
            "ring_degree": self.cc.GetRingDimension(),
            "slots": self.slots,
            "log_q": round(sum(math.log2(q) for q in self.moduli), 2),
            "moduli_bits": list(self.moduli_bits),
            "special_bits": list(self.special_bits) if special else None,
            "scaling_technique": "FIXEDMANUAL",
            "key_switching": f"HYBRID, {self.params.dnum} digits",
            "secret": self.params.secret,
            "data_type": self.params.data_type,
            "security": "HEStd_128_classic" if self.params.secure else "HEStd_NotSet",
            "threads": self.threads,
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "version": _version(),
        }


def _libgomp():
    """The OpenMP runtime already loaded into this process (by openfhe), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libgomp" in line}
    except OSError:
        return None
    return ctypes.CDLL(sorted(paths)[0]) if paths else None


def _set_omp_threads(threads: int | None) -> int | None:
    """Set OpenMP's thread count for this thread's parallel regions (if given); return the count in force."""
    gomp = _libgomp()
    if gomp is None:
        return None
    if threads is not None:
        gomp.omp_set_num_threads(int(threads))
    return int(gomp.omp_get_max_threads())


def _version() -> str | None:
    try:
        import importlib.metadata

        return importlib.metadata.version("openfhe")
    except Exception:  # noqa: BLE001
        return None


def openfhe_ops(params: OpenFHEParams, rotations_for_hoisting: int = 8, threads: int | None = None,
                seed: int | None = None):
    """The ``fhectl.bench.ops`` operations on OpenFHE, under the same names, as an ``OpSet``.

    Keys are generated here, outside anything timed. Every repeat gets fresh
    random real inputs in [-1, 1), made in the untimed setup; each check
    decrypts the last result and compares it with float64 numpy.
    """
    from fhectl.bench.ops import Op, OpSet
    from fhectl.bench.timing import Bench

    if rotations_for_hoisting < 1:
        raise ParameterError(f"rotations_for_hoisting = {rotations_for_hoisting}; must be >= 1")
    steps = tuple(range(1, rotations_for_hoisting + 1))
    ctx = OpenFHEContext(params, rotations=steps, threads=threads)
    ofhe = ctx.ofhe
    rng = np.random.default_rng(seed)  # benchmark data, not key material
    n = ctx.slots
    limbs = params.levels + 1

    def values():
        return rng.uniform(-1, 1, n)

    def pair():
        x, y = values(), values()
        return x, y, ctx.encrypt(x), ctx.encrypt(y)

    def encrypted():
        x = values()
        return x, ctx.encrypt(x)

    def product():
        x, y, cx, cy = pair()
        return x, y, ctx.mul_relin(cx, cy)

    # per-limb NTT: Plaintext.SetFormat(EVALUATION) runs the forward NTT of every limb of an encoded plaintext
    def coefficient_plaintext():
        pt = ctx.encode(values())
        pt.SetFormat(ofhe.Format.COEFFICIENT)
        return pt

    def prec(ct, want):
        return precision_bits(ctx.decrypt(ct, n), want)

    k = len(steps)
    ops = {
        "ntt_per_limb": Op(Bench(lambda pt: pt.SetFormat(ofhe.Format.EVALUATION), coefficient_plaintext),
                           note=f"Plaintext.SetFormat(EVALUATION): forward NTT of {limbs} limbs at "
                                f"N={params.ring_degree}, divided by {limbs}", divisor=limbs),
        "encode": Op(Bench(ctx.encode, values), note="MakeCKKSPackedPlaintext from a float64 array"),
        "encrypt": Op(Bench(ctx.encrypt, values), lambda x, ct: prec(ct, x), "values to ciphertext, encoding included"),
        "hmult_relin": Op(Bench(lambda p: ctx.mul_relin(p[2], p[3]), pair), lambda p, r: prec(r, p[0] * p[1]),
                          "EvalMult (relinearized), not rescaled"),
        "rescale": Op(Bench(lambda p: ctx.rescale(p[2]), product), lambda p, r: prec(r, p[0] * p[1]),
                      "Rescale of a degree-2 product"),
        "rotate": Op(Bench(lambda p: ctx.rotate(p[2], 1), pair), lambda p, r: prec(r, np.roll(p[0], -1)),
                     "EvalRotate by 1"),
        f"hoisted_rotations_{k}": Op(
            Bench(lambda p: ctx.hoisted_rotations(p[2], steps), pair),
            lambda p, r: min(prec(r[s], np.roll(p[0], -s)) for s in steps),
            f"EvalFastRotationPrecompute + {k} EvalFastRotation, steps 1..{k}"),
        "decrypt": Op(Bench(lambda p: ctx.decrypt(p[1], n), encrypted), lambda p, out: precision_bits(out, p[0]),
                      "ciphertext to values, decoding included"),
    }
    return OpSet("openfhe", "cpu", ops, describe=ctx.describe)


def time_openfhe_ops(params: OpenFHEParams, repeat: int = 5, warmup: int = 1, rotations_for_hoisting: int = 8,
                     threads: int | None = None, seed: int | None = None) -> dict:
    """OpenFHE's operations timed on their own (no fhectl run beside them).

    Returns ``{"results": {name: entry}, "context": describe()}``. An entry holds
    ``median_s, min_s, max_s, iqr_s, repeats, precision_bits, note`` and the full
    ``timing`` (``Timing.as_dict()``, the shape the report uses).
    """
    from fhectl.bench.ops import time_ops

    opset = openfhe_ops(params, rotations_for_hoisting, threads, seed)
    results = time_ops(opset, repeat, warmup)
    for entry in results.values():
        entry.update({k: entry["timing"][k] for k in ("median_s", "min_s", "max_s", "iqr_s", "repeats")})
    return {"results": results, "context": opset.describe()}
