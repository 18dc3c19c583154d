"""The `bootstrap` suite: one CKKS bootstrapping, fhectl's against OpenFHE's EvalBootstrap, in one run.

What is measured, per implementation:

* set-up (context, keys, transforms), timed once and kept out of the comparison;
* ``repeat`` rounds, interleaved: each round runs both implementations back to back on the same fresh random
  real inputs in [-1, 1], alternating which goes first (AB, BA, ...; ``fhectl.bench.timing.interleave`` does the
  same for the ops suite), after ``warmup`` discarded rounds (the first fhectl bootstrapping encodes the
  transforms' diagonals and the first calls of a Numba kernel load it). Only the bootstrapping is timed:
  fhectl ``Bootstrapper.bootstrap`` of a ciphertext already dropped to level 0, OpenFHE ``EvalBootstrap`` of a
  ciphertext encrypted at level depth - 1 (what its examples do: an exhausted ciphertext);
* per round: seconds; precision as mean bits, -log2(mean |error|), and worst bits, -log2(max |error|)
  (``fhectl.ckks.precision.precision_bits``), over the real parts of the slots (OpenFHE's real-valued context
  returns real parts only; fhectl's imaginary parts are recorded beside them), three ways: the output against
  the plaintext; against the decryption of the input ciphertext (bootstrapping's own error: at Delta = 2^40 a
  fresh encryption is itself only ~20 bits from the plaintext, which caps the first figure whatever the
  bootstrapping does); and that decryption against the plaintext (the fresh encryption's error, for reference).
  The precision goal is judged on the second; levels left;
* fhectl runs its real circuit (``BootstrapConfig.real``: the real parts of the slots, one EvalMod), the one
  inference refreshes with; the inputs are real and OpenFHE's context returns real parts too;
* where the configuration refines (``refine_bits`` > 0: ``Bootstrapper.bootstrap`` makes two passes), the first
  pass alone (``bootstrap_once``) as its own row, "fhectl (one pass)", timed in the same rounds on the same keys,
  so the report shows what the refinement costs and gains;
* bootstrapping-key bytes as stored: fhectl's relinearization key and Galois keys for
  ``required_steps`` and conjugation, as the keyring writes them (b and the 32-byte seed of a per key, each
  rotation key truncated to the highest level it rotates at, ``rotation_levels``:
  ``fhectl.io.objects.evaluation_key_bytes``, equal to the written files); OpenFHE's EvalMultKey and
  EvalAutomorphismKeys serialized (BINARY) to a file, both halves of every key;
* peak memory: each implementation's set-up and one bootstrapping in a spawned child process of its own, whose
  peak RSS (VmHWM, see ``_own_peak_rss_bytes``) is read in the child, so neither side's memory counts against
  the other. The RSS the child had after its imports, before any work, is recorded beside it. (Spawned: a script
  that runs the suite needs the usual ``if __name__ == "__main__":`` guard.)

Isolated mode (process blocks), for rings where both sides' keys do not fit in memory together: automatic when
the estimated peak of both sides in one process (``fhectl.bench.estimate.bootstrap_both_sides_bytes``) exceeds
80 % of the physical memory, or asked for (``SuiteOptions.isolated``, ``--isolated``). Each side then runs in
spawned child processes, alternating A B A B ... (fhectl, OpenFHE), one child per block: set-up and keys (timed,
reported per block), one untimed warm-up bootstrapping, then ``rounds_per_block`` timed rounds on inputs drawn
from a journalled seed and the round's index, so A_i and B_i bootstrap the same inputs. The child's own peak RSS
(VmHWM) is the memory figure: there is no separate probe. Time ratios pair adjacent blocks (the median of A_i's
rounds against B_i's); per-round precision differences pair the same inputs. A child that dies (the
out-of-memory killer: SIGKILL), fails or overruns ``block_timeout_s`` is recorded as that side's result, and that
side is not run again in this run; the report says what it covers.

The OpenFHE context mirrors the profile as closely as its API allows (``openfhe_bootstrap_params``): ring degree,
FirstModSize from q0, ScalingModSize from the scale, NumLargeDigits = dnum, UNIFORM_TERNARY (fhectl's secret is a
dense uniform ternary one; SPARSE_ENCAPSULATED where fhectl bootstraps with sparse-secret encapsulation), the level
budget of the ``BootstrapConfig``, FLEXIBLEAUTO (OpenFHE's recommended
technique for bootstrapping; fhectl tracks exact scales), HEStd_128_classic when the profile is 128-bit, and the
multiplicative depth ``GetBootstrapDepth(budget, UNIFORM_TERNARY)`` + fhectl's levels left, so OpenFHE leaves at
least as many levels as fhectl. Its chain is therefore not fhectl's chain: both are recorded in the report.

Levels left after OpenFHE's bootstrapping: depth - ``GetLevel()`` - (``GetNoiseScaleDeg()`` - 1). Under
FLEXIBLEAUTO the output is not yet rescaled (noise-scale degree 2), and its first multiplication spends one more
level (checked: at depth 23, N = 2^10, budget [2, 2], the output has GetLevel 17 and degree 2, and exactly 5
squarings decrypt; depth - GetLevel alone would say 6).

Threads: both sides run on the same number of threads (``threads``, 1 by default): Numba's
``set_num_threads`` for fhectl; for OpenFHE, OMP_NUM_THREADS and ``omp_set_num_threads`` *before* openfhe is
imported (``preset_openfhe_threads``: OpenFHE fixes its count when it loads, so a later
``omp_set_num_threads`` does not limit EvalBootstrap). Where openfhe was already loaded in the process, the report
says so. Each round also records the process's CPU time over the bootstrapping, so CPU / wall in the report
shows the threads each side actually kept busy.

Resuming: each finished round (and the key sizes and memory probes; in the isolated mode each finished block,
its rounds inside) is appended to a journal in the output folder as it completes. A run that stops (Ctrl-C, an
error in a round) still writes a report of the rounds it has, marked partial, and keeps the journal; the same
command then resumes from it (same profile, commit, thread count, bootstrapping configuration and rounds per
block) with new keys, running only the rounds (blocks) that are missing. A complete run deletes the journal.
"""

from __future__ import annotations

import ctypes
import json
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from fhectl.bench.estimate import bootstrap_side_peak_bytes, physical_memory_bytes
from fhectl.bench.timing import peak_rss_bytes, ratio_stats, summarize
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import precision_bits
from fhectl.errors import FhectlError, ParameterError

if TYPE_CHECKING:  # imported where used: the OpenFHE probe's child process should not load fhectl's engine
    from fhectl.ckks.bootstrap import BootstrapConfig

SUITE = "bootstrap"
DEFAULT_THREADS = 1
# The goals of the issue, set for the 128-bit N = 2^16 profile; each is judged from the measurements.
GOAL_PRECISION_MARGIN_BITS = 5.0  # fhectl at least this many bits above OpenFHE
GOAL_TIME_RATIO = 0.5  # fhectl / OpenFHE at most this
GOAL_KEY_BYTES = 4 * 2**30  # fhectl's stored bootstrapping keys at most this
GOAL_LOG_N = 16
JOURNAL_VERSION = 1


class SuiteInterrupted(FhectlError):
    """The suite stopped before its last round; what it measured is in the report (partial)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------------------
# Parameters


def bootstrap_config(params: Parameters, slots: int | None = None, rotation_keys: str | None = None) -> BootstrapConfig:
    """The configuration fhectl bootstraps ``params`` with (the sparse-slot circuit for ``slots`` = n' < N/2; the
    transforms' baby-step split ``rotation_keys``, ``fhectl.ckks.bootstrap.ROTATION_KEY_CHOICES``), refused with
    one message when the chain is too short or the slot count or split is not one it takes."""
    from fhectl.ckks.bootstrap import BootstrapConfig, sparse_slots

    config = replace(BootstrapConfig.for_params(params), real=True)  # the circuit inference refreshes with
    if rotation_keys is not None:
        config = replace(config, rotation_keys=rotation_keys)  # ParameterError for an unknown split
    if slots is not None:
        config = replace(config, slots=slots)
        sparse_slots(params, config)  # ParameterError for a count it cannot take
    need = (f"one bootstrapping needs {config.depth()} levels (CoeffsToSlots {config.cts_depth()}, EvalMod "
            f"{config.eval_mod_depth()}, SlotsToCoeffs {config.stc_levels})")
    if config.depth() > params.max_level:
        raise ParameterError(f"profile {params.name!r} cannot bootstrap: {need}, its chain has {params.max_level}; "
                             "use a bootstrappable profile such as tiny-bootstrap-insecure or boot-n16-128")
    if params.bootstrap_levels and params.bootstrap_levels != config.depth():
        raise ParameterError(f"profile {params.name!r} sets aside {params.bootstrap_levels} primes for "
                             f"bootstrapping, but {need}")
    return config


@dataclass(frozen=True)
class OpenFHEBootstrapParams:
    """What OpenFHE is asked for (see the module docstring for how each field follows the fhectl profile)."""

    log_n: int
    first_mod_bits: int  # FirstModSize: bits of q0
    scale_bits: int  # ScalingModSize: one size for every scaling prime (OpenFHE has no per-level sizes)
    dnum: int  # NumLargeDigits
    level_budget: tuple[int, int]  # (CoeffsToSlots, SlotsToCoeffs)
    levels_after: int  # levels wanted after bootstrapping: fhectl's output level
    secure: bool  # HEStd_128_classic, else HEStd_NotSet
    secret: str = "UNIFORM_TERNARY"  # SecretKeyDist: SPARSE_ENCAPSULATED where fhectl encapsulates
    recipe: str = "mirror"  # "mirror": the sizes above follow the profile; "native": OpenFHE's 60 / 59 bits
    sparse_slots: int | None = None  # n' < N/2: OpenFHE's sparse packing (numSlots), as fhectl's sparse circuit
    iterations: int = 1  # EvalBootstrap's numIterations; 2 is OpenFHE's Meta-BTS, as fhectl's refinement (one level)

    @property
    def ring_degree(self) -> int:
        return 1 << self.log_n

    @property
    def slots(self) -> int:
        return self.ring_degree // 2 if self.sparse_slots is None else self.sparse_slots


OPENFHE_RECIPES = ("mirror", "native")
OPENFHE_ITERATIONS = (1, 2)
# OpenFHE's own bootstrapping recipe for its 64-bit build: FirstModSize 60, ScalingModSize 59. Measured at
# N = 2^10 (SPARSE_ENCAPSULATED, budget [3, 3]): ScalingModSize 40 with FirstModSize 42 to 50 bootstraps to 4-5
# bits worst case, and at N = 2^16 FirstModSize 50 / ScalingModSize 40 is refused by EvalBootstrap ("Degree [15]
# must be less than or equal to the correction factor [8]"): the mirrored sizes are no baseline at a 40-bit scale.
NATIVE_FIRST_MOD_BITS, NATIVE_SCALE_BITS = 60, 59


def openfhe_bootstrap_params(params: Parameters, config: BootstrapConfig,
                             recipe: str = "mirror", iterations: int = 1) -> OpenFHEBootstrapParams:
    """OpenFHE's parameters for a fhectl profile, read from the profile's chain (not assumed uniform).

    q0's size is its bit length, rounded (a prime near 2^60 may have 61 bits); the scaling size is the scale
    Delta's (the profile's scale_bits), the size fhectl's scaling primes are chosen near. OpenFHE has one
    scaling size for the whole chain: where the profile gives bootstrapping larger primes
    (``bootstrap_mod_bits``), OpenFHE's EvalMod runs at Delta-sized primes and fhectl's does not; the report
    says so beside the precision goal. fhectl's sparse-secret encapsulation (``BootstrapConfig.sparse_weight``)
    maps to OpenFHE's SPARSE_ENCAPSULATED (the same technique: the key stays uniform ternary), else
    UNIFORM_TERNARY. ``iterations`` = 2: OpenFHE's own refinement (EvalBootstrap's numIterations, Meta-BTS, one
    level more in its chain), the like of fhectl's two passes.
    """
    if recipe not in OPENFHE_RECIPES:
        raise ParameterError(f"OpenFHE parameters {recipe!r}: choose from {', '.join(OPENFHE_RECIPES)}")
    if iterations not in OPENFHE_ITERATIONS:
        raise ParameterError(f"OpenFHE iterations {iterations}: choose from "
                             f"{', '.join(map(str, OPENFHE_ITERATIONS))}")
    mirrored = OpenFHEBootstrapParams(
        log_n=params.literal.log_n,
        first_mod_bits=round(math.log2(params.moduli_q[0])),
        scale_bits=params.literal.scale_bits,
        dnum=params.literal.dnum,
        level_budget=(config.cts_levels, config.stc_levels),
        levels_after=params.max_level - config.depth(),
        secure=params.security_bits >= 128,
        secret="UNIFORM_TERNARY" if config.sparse_weight is None else "SPARSE_ENCAPSULATED",
        sparse_slots=config.slots if config.slots not in (None, params.slots) else None,
        iterations=iterations,
    )
    if recipe == "native":
        return replace(mirrored, first_mod_bits=NATIVE_FIRST_MOD_BITS, scale_bits=NATIVE_SCALE_BITS, recipe="native")
    return mirrored


def _bits_summary(moduli) -> list[int]:
    return [round(math.log2(q)) for q in moduli]


# ---------------------------------------------------------------------------------------------------------
# The two implementations


class BootstrapSide(Protocol):
    """What the suite needs of an implementation; ciphertexts are opaque handles."""

    impl: str
    device: str
    setup_s: float  # context, keys and precomputation: timed once, not compared
    keygen_s: float  # the keys alone

    def encrypt_exhausted(self, x: np.ndarray): ...  # untimed: encryption at the level bootstrapping starts from

    def bootstrap(self, ct): ...  # timed

    def sync(self) -> None: ...

    def decrypt(self, ct) -> np.ndarray: ...  # complex or real slots

    def decrypt_input(self, ct) -> np.ndarray: ...  # the input's decryption as the circuit keeps it (see one_round)

    def levels_left(self, ct) -> int: ...

    def key_bytes(self, work_dir: Path) -> dict: ...  # {"relin-key", "galois-keys", "total", ...}

    def describe(self) -> dict: ...


class FhectlBootstrapSide:
    """fhectl's engine: keys for ``required_steps`` and conjugation, then ``Bootstrapper.bootstrap``."""

    impl = "fhectl"

    def __init__(self, params: Parameters, config: BootstrapConfig, device: str = "cpu"):
        from fhectl.ckks import encapsulation
        from fhectl.ckks.bootstrap import Bootstrapper, required_steps, rotation_levels
        from fhectl.ckks.context import CKKSContext
        from fhectl.ckks.encryptor import Decryptor, Encryptor
        from fhectl.ckks.evaluator import Evaluator
        from fhectl.ckks.keys import KeyGenerator

        t0 = time.perf_counter()
        self.params, self.config = params, config
        self.ctx = CKKSContext(params, device=device)
        self.device = self.ctx.device
        self.steps = required_steps(params, config)
        self.key_levels = rotation_levels(params, config)  # each key truncated to the highest level it is used at
        t1 = time.perf_counter()
        kg = KeyGenerator(self.ctx)
        sk = kg.secret_key()
        pk = kg.public_key(sk)
        self.rlk = kg.relin_key(sk)
        self.gk = kg.galois_keys(sk, self.steps, conjugation=True, max_levels=self.key_levels)
        self.encapsulation = (None if config.sparse_weight is None
                              else encapsulation.generate(kg, sk, config.sparse_weight))
        self.keygen_s = time.perf_counter() - t1
        self.ev = Evaluator(self.ctx, self.rlk, self.gk)
        self.enc, self.dec = Encryptor(self.ctx, pk), Decryptor(self.ctx, sk)
        self.boot = Bootstrapper(self.ctx, self.ev, config, encapsulation=self.encapsulation)
        self.setup_s = time.perf_counter() - t0

    def encrypt_exhausted(self, x: np.ndarray):
        """x: the ``slots`` values; the sparse-slot circuit's are repeated over the N/2 slots."""
        return self.ev.drop_level(self.enc.encrypt(np.tile(x, self.params.slots // len(x))), 0)

    def bootstrap(self, ct):
        return self.boot.bootstrap(ct)

    def sync(self) -> None:
        self.ctx.backend.synchronize()

    def decrypt(self, ct) -> np.ndarray:
        return self.dec.decrypt(ct)[:self.slots]

    def decrypt_input(self, ct) -> np.ndarray:
        """The mean of the input's N / 2n' copies: the sparse circuit's trace keeps just that (it removes the
        input's noise off the subring), so bootstrapping's own error is measured against it. Full slots: decrypt."""
        return self.dec.decrypt(ct).reshape(-1, self.slots).mean(axis=0)

    @property
    def slots(self) -> int:
        """The values a round bootstraps: N/2, or n' for the sparse-slot circuit."""
        return self.boot.n

    def levels_left(self, ct) -> int:
        return ct.level

    def key_bytes(self, work_dir: Path) -> dict:
        """As the keyring stores them: seeded keys keep b and the seed of a (``evaluation_key_bytes``)."""
        from fhectl.io.objects import evaluation_key_bytes

        keys = [self.rlk, *self.gk.keys.values()]
        seeded = all(k.seed is not None for k in keys)
        out = evaluation_key_bytes(self.params, self.steps, conjugation=True, seeded=seeded,
                                   max_levels=self.key_levels)
        out["galois_keys_count"] = len(self.gk.keys)
        out["galois_keys_truncated"] = self.truncated_keys
        out["seeded"] = seeded
        out["both_halves_total"] = evaluation_key_bytes(self.params, self.steps, conjugation=True, seeded=False,
                                                        max_levels=self.key_levels)["total"]
        out["untruncated_total"] = evaluation_key_bytes(self.params, self.steps, conjugation=True,
                                                        seeded=seeded)["total"]
        if self.encapsulation is not None:
            # No file format holds them yet: to_dense counted as the relinearization key (the same shape and
            # storage: b and the seed of a), to_sparse as its array ((b, a) over q0 and one special prime).
            to_sparse = int(np.asarray(self.ctx.backend.to_host(self.encapsulation.to_sparse)).nbytes)
            out["encapsulation"] = out["relin-key"] + to_sparse
            out["total"] += out["encapsulation"]
            out["both_halves_total"] += 2 * out["relin-key"] + to_sparse
            out["untruncated_total"] += out["encapsulation"]
        return out

    @property
    def truncated_keys(self) -> int:
        """Galois keys made for a level below the top (``rotation_levels``)."""
        return sum(1 for k in self.gk.keys.values() if k.max_level is not None)

    def describe(self) -> dict:
        p, c = self.params, self.config
        return {
            "ring_degree": p.ring_degree, "slots": self.slots, "levels": p.max_level,
            "moduli_bits": _bits_summary(p.moduli_q), "special_bits": _bits_summary(p.moduli_p),
            "log_q": round(sum(math.log2(q) for q in p.moduli_q), 2), "log_qp": round(p.log_qp, 2),
            "scale_bits": p.literal.scale_bits, "dnum": len(p.digits(p.max_level)),
            "secret": "uniform ternary (dense)" if c.sparse_weight is None
            else f"uniform ternary, sparse-secret encapsulation (h = {c.sparse_weight})",
            "scaling": "exact scales (fhectl)",
            "security": f"{p.security_bits}-bit" if p.security_bits else "none (insecure profile)",
            "level_budget": [c.cts_levels, c.stc_levels], "bootstrap_depth": c.depth(),
            "eval_mod": {"k": c.k, "degree": c.degree, "double_angle": c.double_angle},
            "levels_left": self.boot.output_level, "rotation_steps": len(self.steps),
            "transforms": (f"double-hoisted baby-step giant-step, split {c.rotation_keys!r} "
                           f"({len(self.steps)} rotation keys, {self.truncated_keys} of them truncated to the "
                           "highest level they rotate at: rotation_levels)"),
            "passes": (f"two (Meta-BTS refinement, refine_bits = {c.refine_bits}: Bootstrapper.bootstrap)"
                       if c.refine_bits else "one (Bootstrapper.bootstrap)")
            + (", real circuit (the real parts of the slots, one EvalMod: BootstrapConfig.real)" if self.boot.real
               else ""),
            "threads": _numba_threads(), "device": self.device,
        }


ONE_PASS = "fhectl (one pass)"


class FhectlOnePassSide:
    """fhectl's ``Bootstrapper.bootstrap_once`` on the keys of a ``FhectlBootstrapSide``: the first pass alone,
    timed as its own row where the configuration refines (``refine_bits`` > 0), so the report shows what the
    second pass costs and gains. Nothing is set up twice: set-up and key figures are the full side's."""

    impl = ONE_PASS

    def __init__(self, full: FhectlBootstrapSide):
        self.full = full
        self.device, self.setup_s, self.keygen_s = full.device, full.setup_s, full.keygen_s

    def encrypt_exhausted(self, x: np.ndarray):
        return self.full.encrypt_exhausted(x)

    def bootstrap(self, ct):
        return self.full.boot.bootstrap_once(ct)

    def sync(self) -> None:
        self.full.sync()

    def decrypt(self, ct) -> np.ndarray:
        return self.full.decrypt(ct)

    def decrypt_input(self, ct) -> np.ndarray:
        return self.full.decrypt_input(ct)

    def levels_left(self, ct) -> int:
        return ct.level

    def key_bytes(self, work_dir: Path) -> dict:
        return self.full.key_bytes(work_dir)

    def describe(self) -> dict:
        p, c = self.full.params, self.full.config
        return self.full.describe() | {"levels_left": p.max_level - c.single_depth(),
                                       "passes": "one (Bootstrapper.bootstrap_once)"}


def fhectl_sides(full: FhectlBootstrapSide) -> list:
    """The fhectl rows: the bootstrapping as configured, and its first pass alone when it refines."""
    return [full] + ([FhectlOnePassSide(full)] if full.config.refine_bits else [])


def fhectl_impls(config: BootstrapConfig) -> list[str]:
    return ["fhectl"] + ([ONE_PASS] if config.refine_bits else [])


class OpenFHEBootstrapSide:
    """OpenFHE's EvalBootstrap on ``OpenFHEBootstrapParams`` (FLEXIBLEAUTO, full packing)."""

    impl = "openfhe"
    device = "cpu"

    def __init__(self, p: OpenFHEBootstrapParams, threads: int | None = None):
        from fhectl.bench.openfhe_baseline import _openfhe, _set_omp_threads

        o = _openfhe()
        self.o, self.p = o, p
        self.threads = _set_omp_threads(threads)
        t0 = time.perf_counter()
        dist = getattr(o.SecretKeyDist, p.secret)
        self.bootstrap_depth = int(o.CryptoContext.GetBootstrapDepth(list(p.level_budget), dist))
        # "native": 59-bit primes fill the security table sooner; as many levels after bootstrapping as it allows,
        # up to fhectl's (the report shows both)
        self.refused: list[str] = []
        for after in range(p.levels_after, -1 if p.recipe == "native" else p.levels_after - 1, -1):
            self.depth = self.bootstrap_depth + after + p.iterations - 1  # Meta-BTS takes one more level
            cp = o.CCParamsCKKSRNS()
            cp.SetSecretKeyDist(dist)
            cp.SetSecurityLevel(o.SecurityLevel.HEStd_128_classic if p.secure else o.SecurityLevel.HEStd_NotSet)
            cp.SetRingDim(p.ring_degree)
            cp.SetFirstModSize(p.first_mod_bits)
            cp.SetScalingModSize(p.scale_bits)
            cp.SetScalingTechnique(o.ScalingTechnique.FLEXIBLEAUTO)
            cp.SetKeySwitchTechnique(o.KeySwitchTechnique.HYBRID)
            cp.SetNumLargeDigits(p.dnum)
            cp.SetMultiplicativeDepth(self.depth)
            try:
                cc = o.GenCryptoContext(cp)
                break
            except RuntimeError as exc:  # e.g. Q above OpenFHE's security table for N
                self.refused.append(f"depth {self.depth}: {str(exc).split('():')[-1].strip()}")
        else:
            raise ParameterError(f"OpenFHE rejected {p}: {self.refused[-1]}") from None
        if cc.GetRingDimension() != p.ring_degree:
            raise ParameterError(f"OpenFHE chose N = {cc.GetRingDimension()} for {p}, not {p.ring_degree}")
        for f in (o.PKESchemeFeature.PKE, o.PKESchemeFeature.KEYSWITCH, o.PKESchemeFeature.LEVELEDSHE,
                  o.PKESchemeFeature.ADVANCEDSHE, o.PKESchemeFeature.FHE):
            cc.Enable(f)
        cc.EvalBootstrapSetup(list(p.level_budget), [0, 0], p.slots)
        t1 = time.perf_counter()
        self.keys = cc.KeyGen()
        cc.EvalMultKeyGen(self.keys.secretKey)
        cc.EvalBootstrapKeyGen(self.keys.secretKey, p.slots)
        self.keygen_s = time.perf_counter() - t1
        self.cc = cc
        # numIterations > 1 needs the first iteration's precision in bits, "determined by the user experimentally"
        # (OpenFHE's documentation): one untimed bootstrapping of random inputs, part of the set-up
        self.precision = self._first_iteration_bits() if p.iterations > 1 else 0
        self.setup_s = time.perf_counter() - t0

    def _first_iteration_bits(self) -> int:
        x = np.random.default_rng().uniform(-1, 1, self.p.slots)
        got = self.decrypt(self.cc.EvalBootstrap(self.encrypt_exhausted(x)))
        return int(math.floor(precision_bits(got, x)))

    def encrypt_exhausted(self, x: np.ndarray):
        pt = self.cc.MakeCKKSPackedPlaintext(np.ascontiguousarray(x, np.float64), 1, self.depth - 1, None,
                                             self.p.slots)
        return self.cc.Encrypt(self.keys.publicKey, pt)

    def bootstrap(self, ct):
        if self.p.iterations > 1:
            return self.cc.EvalBootstrap(ct, self.p.iterations, self.precision)
        return self.cc.EvalBootstrap(ct)

    def sync(self) -> None:
        return None

    def decrypt(self, ct) -> np.ndarray:
        pt = self.cc.Decrypt(self.keys.secretKey, ct)
        pt.SetLength(self.p.slots)
        return np.array(pt.GetRealPackedValue())

    def decrypt_input(self, ct) -> np.ndarray:
        """OpenFHE decodes n' < N/2 slots from the subring's coefficients alone (every (N/2n')-th): already what its
        sparse circuit keeps."""
        return self.decrypt(ct)

    def levels_left(self, ct) -> int:
        """Multiplications left: an unrescaled output (noise-scale degree 2) spends one level on its first."""
        return self.depth - ct.GetLevel() - (ct.GetNoiseScaleDeg() - 1)

    def key_bytes(self, work_dir: Path) -> dict:
        """Serialized (BINARY) EvalMultKey and EvalAutomorphismKeys of this secret key, from their files' sizes."""
        o, tag = self.o, self.keys.secretKey.GetKeyTag()
        with tempfile.TemporaryDirectory(dir=work_dir) as tmp:  # on the output's disk: GiB at N = 2^16
            mult, auto = Path(tmp) / "mult.bin", Path(tmp) / "automorphism.bin"
            if not (self.cc.SerializeEvalMultKey(str(mult), o.BINARY, tag)
                    and self.cc.SerializeEvalAutomorphismKey(str(auto), o.BINARY, tag)):
                raise FhectlError("OpenFHE could not serialize its evaluation keys")
            sizes = {"relin-key": mult.stat().st_size, "galois-keys": auto.stat().st_size}
        sizes["total"] = sizes["relin-key"] + sizes["galois-keys"]
        sizes["galois_keys_count"] = len(self.cc.GetExistingEvalAutomorphismKeyIndices(tag))
        return sizes

    def _moduli(self) -> list[int]:
        """q_0..q_depth: quotients of the moduli of plaintexts encoded at successive levels."""
        zero = np.zeros(1)
        products = [int(self.cc.MakeCKKSPackedPlaintext(zero, 1, lvl).GetElementModulus())
                    for lvl in range(self.depth + 1)] + [1]
        return [products[lvl] // products[lvl + 1] for lvl in range(self.depth + 1)][::-1]

    def describe(self) -> dict:
        from fhectl.bench.openfhe_baseline import _set_omp_threads, _version

        moduli = self._moduli()
        p = self.p
        return {
            "ring_degree": self.cc.GetRingDimension(), "slots": p.slots, "levels": self.depth,
            "moduli_bits": _bits_summary(moduli), "special_bits": None,  # P is not exposed (openfhe_baseline)
            "log_q": round(sum(math.log2(q) for q in moduli), 2),
            "first_mod_size": p.first_mod_bits, "scaling_mod_size": p.scale_bits, "dnum": p.dnum,
            "secret": p.secret, "scaling": "FLEXIBLEAUTO",
            "security": "HEStd_128_classic" if p.secure else "HEStd_NotSet",
            "level_budget": list(p.level_budget), "bootstrap_depth": self.bootstrap_depth,
            "multiplicative_depth": self.depth,
            "levels_left_asked": self.depth - self.bootstrap_depth - (p.iterations - 1),  # the iteration takes one
            "recipe": ("OpenFHE's own (FirstModSize 60, ScalingModSize 59)" if p.recipe == "native"
                       else "mirrors the fhectl profile"),
            "refused": self.refused or None,
            "threads": _set_omp_threads(None), "version": _version(), "device": self.device,
        } | ({"passes": f"{p.iterations} (EvalBootstrap numIterations, OpenFHE's Meta-BTS; first iteration's "
                        f"precision {self.precision} bits, measured at set-up)"} if p.iterations > 1 else {})


def openfhe_bootstrap_bits(x: np.ndarray, params: Parameters, config: BootstrapConfig,
                           threads: int = 1) -> tuple[float, int]:
    """OpenFHE's EvalBootstrap of real slots x at the OpenFHE parameters matching ``params`` and ``config``
    (``openfhe_bootstrap_params``): (precision bits of the real parts, levels left after it)."""
    with _Threads(threads, openfhe=True):
        side = OpenFHEBootstrapSide(openfhe_bootstrap_params(params, config), threads=threads)
        out = side.bootstrap(side.encrypt_exhausted(x))
        return precision_bits(side.decrypt(out), x), side.levels_left(out)


# ---------------------------------------------------------------------------------------------------------
# Threads


def _numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())


def preset_openfhe_threads(threads: int) -> bool:
    """Make OpenFHE run on ``threads`` OpenMP threads; False when it is too late (openfhe is already loaded).

    OpenFHE fixes its thread count when it loads: measured here (2 cores), ``omp_set_num_threads(1)`` after
    ``import openfhe`` left EvalBootstrap on 2 threads (CPU time twice its wall time), and the same call before
    the import gave 1 (CPU time = wall time). So the count goes into the environment (read by a libgomp not yet
    loaded, and by child processes) and to a libgomp already loaded (Numba's OpenMP layer loads it), before
    openfhe is imported.
    """
    if "openfhe" in sys.modules:
        return False
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(int(threads))
    except (OSError, AttributeError):  # no system libgomp: the environment variable is what OpenFHE reads
        pass
    return True


class _Threads:
    """Numba and OpenMP (OpenFHE) thread counts set for the suite, restored afterwards (OpenFHE's own count
    cannot be: it is fixed when openfhe loads, see ``preset_openfhe_threads``)."""

    def __init__(self, threads: int, openfhe: bool):
        self.threads, self.openfhe = threads, openfhe
        self.openfhe_effective: bool | None = None

    def __enter__(self):
        import numba

        self.numba_before = numba.get_num_threads()
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        self.omp_before = None
        if self.openfhe:
            from fhectl.bench.openfhe_baseline import _openfhe, _set_omp_threads

            self.omp_before = _set_omp_threads(None)  # None: no libgomp loaded yet
            self.env_before = os.environ.get("OMP_NUM_THREADS")
            self.openfhe_effective = preset_openfhe_threads(self.threads)
            _openfhe()
            _set_omp_threads(self.threads)
        return self

    def __exit__(self, *exc):
        import numba

        numba.set_num_threads(self.numba_before)
        if self.openfhe:
            from fhectl.bench.openfhe_baseline import _set_omp_threads

            if self.omp_before is not None:
                _set_omp_threads(self.omp_before)
            if self.env_before is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = self.env_before
        return False


# ---------------------------------------------------------------------------------------------------------
# Rounds


def mean_precision_bits(got, want) -> float:
    """-log2 of the mean absolute error (inf when exact)."""
    err = float(np.mean(np.abs(np.asarray(got) - np.asarray(want))))
    return math.inf if err == 0.0 else -math.log2(err)


def one_round(side: BootstrapSide, x: np.ndarray) -> dict:
    """Encrypt x as bootstrapping expects it (untimed), bootstrap it (timed), check it (untimed).

    Three precisions, each as mean and worst bits over the real parts: the output against the plaintext x
    (``mean_bits``, ``worst_bits``: what a user gets); the output against the decryption of the input
    ciphertext (``self_*``: bootstrapping's own error, without the encryption noise the input already had);
    the input's decryption against x (``fresh_*``: that encryption noise, the reference for the first).
    The input's decryption is ``decrypt_input``'s: with sparse slots, the part of the input the circuit keeps, its
    copies' mean, since the noise the circuit removes is no error of its own (measured against the first copy
    alone, fhectl's refined sparse bootstrapping at N = 2^16 read 23.0 bits, the input's own noise, for 24.0
    against the plaintext: report 2026-12-01_69f360de_..._2). OpenFHE's decoding of n' slots is that projection
    already, so both sides' ``fresh_*`` are the noise of what their circuits keep.
    """
    ct = side.encrypt_exhausted(x)
    side.sync()
    before = np.asarray(side.decrypt_input(ct)).real  # untimed: the input's own decryption
    c0, t0 = time.process_time(), time.perf_counter()
    out = side.bootstrap(ct)
    side.sync()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0  # every thread of the process: cpu / seconds ~ the threads at work
    got = side.decrypt(out)
    entry = {"seconds": seconds, "cpu_s": cpu, "mean_bits": mean_precision_bits(got.real, x),
             "worst_bits": precision_bits(got.real, x),
             "self_mean_bits": mean_precision_bits(got.real, before),
             "self_worst_bits": precision_bits(got.real, before),
             "fresh_mean_bits": mean_precision_bits(before, x), "fresh_worst_bits": precision_bits(before, x),
             "levels_left": side.levels_left(out)}
    if np.iscomplexobj(got):
        entry["imag_worst_bits"] = precision_bits(got.imag, np.zeros_like(x))
    return entry


class Journal:
    """Records appended as JSON lines as they complete; a header line says which run they belong to."""

    def __init__(self, path: Path, header: dict):
        self.path, self.header = Path(path), header
        self.records: list[dict] = []
        self.resumed = False
        if self.path.exists():
            lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
            if lines and lines[0] == {"header": header}:
                self.records, self.resumed = lines[1:], True
        if not self.resumed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps({"header": header}) + "\n")

    def append(self, record: dict) -> None:
        self.records.append(record)
        with self.path.open("a") as f:
            f.write(json.dumps(_finite(record)) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def of_kind(self, kind: str) -> list[dict]:
        return [r for r in self.records if r.get("kind") == kind]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def journal_path(out_root: Path, params: Parameters) -> Path:
    return Path(out_root) / f"bootstrap-in-progress_{params.name}_{params.params_id}.jsonl"


# ---------------------------------------------------------------------------------------------------------
# Child processes: the peak-memory probes and the isolated mode's blocks


def _own_peak_rss_bytes() -> int:
    """Peak RSS of this process image: VmHWM on Linux. Not ``ru_maxrss``: Linux carries that across execve, so a
    spawned child would report at least the RSS its parent had when it forked (measured: both children of a
    0.4 GiB parent read 0.4 GiB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return peak_rss_bytes()


def _child_main(conn, fn, args) -> None:
    """In the spawned child: send each part ``fn(*args)`` yields as soon as it is ready, or the error it raised."""
    try:
        for part in fn(*args):
            conn.send(part)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which records it
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    conn.close()


def run_in_child(fn, args: tuple, threads: int, timeout_s: float | None = None) -> dict:
    """The parts the generator ``fn(*args)`` yields, merged, from a spawned process (nothing inherited from this
    one), OMP_NUM_THREADS = ``threads`` in its environment (read by its libgomp when openfhe loads).

    A child that dies or overruns ``timeout_s`` before its first part is an ``{"error": ...}`` result that says
    how (SIGKILL: most likely the out-of-memory killer), not an exception; after its first part, what it sent
    stays and the failure is listed under ``"late_errors"`` (so a block's rounds survive a failure in the key
    serialization that follows them)."""
    ctx = multiprocessing.get_context("spawn")
    env_before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(threads)
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args))
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    result: dict = {}
    failure = None
    try:
        proc.start()
        send.close()
        while True:
            if not receive.poll(None if deadline is None else max(0.0, deadline - time.monotonic())):
                proc.kill()
                failure = f"the child process took longer than {timeout_s:.0f} s and was stopped"
                break
            try:
                part = receive.recv()
            except EOFError:  # the child closed its end: finished, or died
                break
            if "error" in part:
                failure = part["error"]
            else:
                result |= part
        proc.join()
        if failure is None and proc.exitcode != 0:
            how = ("killed by SIGKILL: most likely the kernel's out-of-memory killer" if proc.exitcode == -9
                   else f"exit code {proc.exitcode}")
            failure = f"the child process died ({how})"
    finally:
        if proc.is_alive():  # Ctrl-C in the parent, or an error here: do not leave the child behind
            proc.kill()
            proc.join()
        if env_before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = env_before
    if failure is None:
        return result
    return result | {"late_errors": [failure]} if result else {"error": failure}


def _open_side(spec, device: str, threads: int) -> tuple[list, int, dict, int]:
    """In a child: the sides for ``spec`` ((Parameters, BootstrapConfig): fhectl's rows; ``OpenFHEBootstrapParams``:
    OpenFHE's, without loading fhectl's engine), their slot count, the threads in force, the RSS after imports."""
    if isinstance(spec, OpenFHEBootstrapParams):
        set_before = preset_openfhe_threads(threads)
        after_imports = _own_peak_rss_bytes()
        side = OpenFHEBootstrapSide(spec, threads=threads)
        return [side], spec.slots, {"openfhe_omp": side.threads, "openfhe_set_before_load": set_before}, after_imports
    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    params, config = spec
    from fhectl.ckks.bootstrap import Bootstrapper  # noqa: F401 - the engine's imports, before the baseline

    after_imports = _own_peak_rss_bytes()
    side = FhectlBootstrapSide(params, config, device)
    return fhectl_sides(side), side.slots, {"numba": _numba_threads()}, after_imports


def _probe_child(spec, device: str, threads: int):
    """In a fresh process: set-up and one bootstrapping; the process's peak RSS, read here."""
    sides, slots, _, after_imports = _open_side(spec, device, threads)
    entry = one_round(sides[0], np.random.default_rng().uniform(-1, 1, slots))
    yield {"peak_rss_bytes": _own_peak_rss_bytes(), "rss_after_imports_bytes": after_imports,
           "worst_bits": entry["worst_bits"]}


def probe_peak_memory(spec, device: str, threads: int) -> dict:
    """``_probe_child`` in a spawned process; an error is recorded, not raised."""
    return run_in_child(_probe_child, (spec, device, threads), threads)


def block_input(data_seed: int, index: int, slots: int) -> np.ndarray:
    """Round ``index``'s inputs (the same in both sides' blocks); negative indices are warm-ups."""
    return np.random.default_rng([data_seed, index + 2**20]).uniform(-1, 1, slots)


def engine_digest() -> str:
    """SHA-256 (first 16 hex digits) of fhectl's engine sources (fhectl/ckks/*.py) as this process reads them."""
    import hashlib

    root = Path(__file__).resolve().parent.parent / "ckks"
    h = hashlib.sha256()
    for path in sorted(root.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _block_child(spec, device: str, threads: int, block: int, first_round: int, rounds: int, position: int,
                 data_seed: int, key_dir: str | None):
    """One block of the isolated mode, in a fresh process: set-up (timed), one untimed warm-up bootstrapping
    (Numba's kernels load, fhectl encodes the transforms' diagonals), then ``rounds`` timed rounds; the
    process's own peak RSS (VmHWM) after them; then, as a second part, the key bytes where ``key_dir`` is given
    (after the peak is read: OpenFHE serializes its keys to files for that)."""
    sources = engine_digest()  # other people may edit the tree between blocks: each block says what it ran
    sides, slots, thread_info, after_imports = _open_side(spec, device, threads)
    t0 = time.perf_counter()
    one_round(sides[0], block_input(data_seed, -1 - block, slots))
    warmup_s = time.perf_counter() - t0
    records = []
    for j in range(rounds):
        x = block_input(data_seed, first_round + j, slots)
        order = sides if j % 2 == 0 else sides[::-1]
        for k, side in enumerate(order):
            records.append({"round": first_round + j, "impl": side.impl, "block": block, "position": position + k,
                            **one_round(side, x)})
    yield {"setup_s": sides[0].setup_s, "keygen_s": sides[0].keygen_s, "warmup_s": warmup_s, "rounds": records,
           "peak_rss_bytes": _own_peak_rss_bytes(), "rss_after_imports_bytes": after_imports,
           "describe": {side.impl: side.describe() for side in sides}, "threads": thread_info,
           "engine_sha256": sources}
    if key_dir is not None:  # sent on its own: the rounds above are kept if this fails
        yield {"key_bytes": sides[0].key_bytes(Path(key_dir))}


# ---------------------------------------------------------------------------------------------------------
# The run


@dataclass
class SuiteOptions:
    repeat: int
    warmup: int = 1
    baseline: str | None = "openfhe"
    device: str = "cpu"
    threads: int = DEFAULT_THREADS
    memory: bool = True  # the peak-memory probes (two child processes); the isolated mode needs none
    seed: int | None = None  # of the benchmark data (not of keys)
    isolated: bool | None = None  # process blocks: None = when both sides would not fit in memory together
    rounds_per_block: int = 2  # isolated mode: timed rounds per child process
    block_timeout_s: float | None = None  # isolated mode: a child running longer is stopped and recorded
    openfhe_params: str = "mirror"  # OPENFHE_RECIPES
    openfhe_iterations: int = 1  # OPENFHE_ITERATIONS
    memory_wait_s: float = 600.0  # isolated mode: wait up to this long for the memory a child is estimated to need
    slots: int | None = None  # n' < N/2: the sparse-slot circuit on both sides (OpenFHE's numSlots)
    rotation_keys: str | None = None  # fhectl's baby-step split (None: the default, "fast")


def isolation_reason(params: Parameters, impls: list[str], options: SuiteOptions) -> str | None:
    """Why the suite runs in process blocks, or None (one process, rounds interleaved)."""
    if options.isolated is not None:
        return "asked for (--isolated)" if options.isolated else None
    if "openfhe" not in impls:
        return None
    from fhectl.bench.estimate import ISOLATE_MEMORY_FRACTION, bootstrap_both_sides_bytes

    both, ram = bootstrap_both_sides_bytes(params), physical_memory_bytes()
    if ram and both > ISOLATE_MEMORY_FRACTION * ram:
        return (f"both sides in one process would need about {both / 2**30:.1f} GiB (estimated), more than "
                f"{ISOLATE_MEMORY_FRACTION:.0%} of this machine's {ram / 2**30:.1f} GiB")
    return None


def run_suite(report: dict, params: Parameters, options: SuiteOptions, out_root: Path,
              tick: Callable[[str], None] = lambda s: None, commit: str | None = None) -> None:
    """Measure, and put the results into ``report`` (``results`` rows and a ``bootstrap`` section).

    Raises ``SuiteInterrupted`` after filling ``report`` with the complete rounds when the run stops early
    (at least one round done); the journal then stays in ``out_root`` for a rerun to resume from.
    """
    config = bootstrap_config(params, options.slots, options.rotation_keys)
    impls = fhectl_impls(config) + (["openfhe"] if options.baseline == "openfhe" else [])
    isolated = isolation_reason(params, impls, options)
    header = {"version": JOURNAL_VERSION, "params_id": params.params_id, "commit": commit, "impls": impls,
              "threads": options.threads, "device": options.device, "config": asdict(config),
              "isolated": None if isolated is None else options.rounds_per_block}
    if options.openfhe_params != "mirror":
        header["openfhe_params"] = options.openfhe_params
    if options.openfhe_iterations != 1:
        header["openfhe_iterations"] = options.openfhe_iterations
    journal = Journal(journal_path(out_root, params), header)
    if journal.resumed:
        tick(f"bootstrap: resuming from {journal.path.name}")
    state = {"impls": impls, "config": config, "setup": {}, "describe": {}, "stopped": None, "isolation": None,
             "failed": {}}
    run = _run_isolated if isolated is not None else _run_in_process
    stop = run(state, journal, params, config, options, out_root, tick, isolated)
    measured = [name for name in impls if name not in state["failed"]]
    rounds = _complete_rounds(journal.of_kind("round") + _block_rounds(journal), measured, options.repeat)
    if stop is not None and (not rounds or not state["describe"]):
        raise SuiteInterrupted(f"bootstrap suite stopped before a round was complete: {stop[0]}", stop[1])
    state["stopped"] = stop[0] if stop else None
    _assemble(report, state, journal, rounds, options, params)
    if stop is not None:
        raise SuiteInterrupted(f"bootstrap suite stopped after {len({r['round'] for r in rounds})} of "
                               f"{options.repeat} rounds ({stop[0]}); the partial report has them, and rerunning "
                               f"the same command resumes from {journal.path}", stop[1])
    journal.remove()


def _run_in_process(state: dict, journal: Journal, params: Parameters, config, options: SuiteOptions,
                    out_root: Path, tick, _reason) -> tuple[str, int] | None:
    """Both sides' keys in this process, rounds interleaved (AB, BA, ...); then a peak-memory probe per side."""
    impls = state["impls"]
    ofp = openfhe_bootstrap_params(params, config, options.openfhe_params, options.openfhe_iterations) if "openfhe" in impls else None
    rng = np.random.default_rng(options.seed)
    with _Threads(options.threads, "openfhe" in impls) as threads:
        state["threads"] = {"requested": options.threads, "numba": _numba_threads(), "openfhe_omp": None,
                            "openfhe_set_before_load": threads.openfhe_effective}
        sides: dict[str, BootstrapSide] = {}
        try:
            for side in fhectl_sides(FhectlBootstrapSide(params, config, options.device)):
                sides[side.impl] = side
            tick("bootstrap: fhectl keys")
            if ofp is not None:
                sides["openfhe"] = OpenFHEBootstrapSide(ofp, threads=options.threads)
                tick("bootstrap: OpenFHE keys")
            for name, side in sides.items():
                state["setup"][name] = {"setup_s": side.setup_s, "keygen_s": side.keygen_s}
                state["describe"][name] = side.describe()
            if "openfhe" in sides:
                state["threads"]["openfhe_omp"] = state["describe"]["openfhe"]["threads"]
            for name in ("fhectl", "openfhe"):
                if name in sides and not [r for r in journal.of_kind("keys") if r["impl"] == name]:
                    journal.append({"kind": "keys", "impl": name, "bytes": sides[name].key_bytes(Path(out_root))})
            done = {r["round"] for r in _complete_rounds(journal.of_kind("round"), impls, options.repeat)}
            todo = [i for i in range(options.repeat) if i not in done]
            slots = sides["fhectl"].slots
            for w in range(options.warmup if todo else 0):
                x = rng.uniform(-1, 1, slots)
                for name in (impls if w % 2 == 0 else impls[::-1]):
                    one_round(sides[name], x)
                tick(f"bootstrap warm-up {w + 1}")
            for i in todo:
                x = rng.uniform(-1, 1, slots)
                order = impls if i % 2 == 0 else impls[::-1]
                for position, name in enumerate(order):
                    entry = one_round(sides[name], x)
                    journal.append({"kind": "round", "round": i, "impl": name, "position": position, **entry})
                tick(f"bootstrap round {i + 1}/{options.repeat}")
            sides.clear()  # free the keys before the children make their own
            if options.memory:
                for name in ("fhectl", "openfhe"):
                    if name in impls and not [r for r in journal.of_kind("memory") if r["impl"] == name]:
                        spec = ofp if name == "openfhe" else (params, config)
                        probe = probe_peak_memory(spec, options.device, options.threads)
                        journal.append({"kind": "memory", "impl": name, **probe})
                        tick(f"bootstrap peak memory: {name}")
        except KeyboardInterrupt:
            return ("interrupted", 130)
        except FhectlError as exc:
            return (str(exc), exc.exit_code)
        except Exception as exc:  # noqa: BLE001 - an OpenFHE RuntimeError in a round: what was measured stays
            return (f"{type(exc).__name__}: {exc}", 1)
    return None


def _run_isolated(state: dict, journal: Journal, params: Parameters, config, options: SuiteOptions,
                  out_root: Path, tick, reason: str) -> tuple[str, int] | None:
    """Process blocks A B A B ...: each block a spawned child (set-up, a warm-up, ``rounds_per_block`` rounds,
    its own peak RSS); each finished block is journalled, so a rerun resumes at the next block. A side whose
    child fails (out of memory, an error, over ``block_timeout_s``) is recorded and not run again in this run."""
    impls = state["impls"]
    kinds = ["fhectl"] + (["openfhe"] if "openfhe" in impls else [])
    specs = {"fhectl": (params, config)}
    if "openfhe" in kinds:
        specs["openfhe"] = openfhe_bootstrap_params(params, config, options.openfhe_params, options.openfhe_iterations)
    per_block = max(1, options.rounds_per_block)
    blocks = math.ceil(options.repeat / per_block)
    seeds = journal.of_kind("data_seed")
    if seeds:
        data_seed = seeds[0]["seed"]
    else:
        data_seed = options.seed if options.seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        journal.append({"kind": "data_seed", "seed": data_seed})
    state["isolation"] = {"reason": reason, "blocks": blocks, "rounds_per_block": per_block, "order": kinds}
    state["threads"] = {"requested": options.threads, "numba": None, "openfhe_omp": None,
                        "openfhe_set_before_load": None}
    stop = None
    try:
        for b in range(blocks):
            first = b * per_block
            count = min(per_block, options.repeat - first)
            for kind in kinds:
                if kind in state["failed"] or _block_record(journal, b, kind) is not None:
                    continue
                have_keys = any("key_bytes" in r for r in journal.of_kind("block") if r["side"] == kind)
                position = 0 if kind == "fhectl" else len(fhectl_impls(config))
                waited, available = wait_for_memory(bootstrap_side_peak_bytes(params, kind), options.memory_wait_s)
                tick(f"bootstrap block {b + 1}/{blocks}: {kind} (child process)")
                started = time.time()
                result = run_in_child(_block_child, (specs[kind], options.device, options.threads, b, first, count,
                                                     position, data_seed, None if have_keys else str(out_root)),
                                      options.threads, options.block_timeout_s)
                journal.append({"kind": "block", "block": b, "side": kind, "started": started,
                                "wall_s": time.time() - started, "memory_wait_s": waited,
                                "mem_available_at_start_bytes": available, **result})
                if "error" in result:
                    state["failed"].update({name: f"block {b + 1}: {result['error']}"
                                            for name in impls if (name == "openfhe") == (kind == "openfhe")})
                    stop = (f"{kind} failed in block {b + 1}: {result['error']}", 1)
    except KeyboardInterrupt:
        stop = ("interrupted", 130)
    blocks_ok = [r for r in journal.of_kind("block") if "error" not in r]
    for r in blocks_ok:
        for name, d in r["describe"].items():
            state["describe"].setdefault(name, d)
        state["threads"].update({k: v for k, v in r["threads"].items() if v is not None})
    for name in impls:
        mine = [r for r in blocks_ok if name in r["describe"]]
        if mine:
            state["setup"][name] = {"setup_s": statistics.median(r["setup_s"] for r in mine),
                                    "keygen_s": statistics.median(r["keygen_s"] for r in mine),
                                    "setup_s_blocks": [r["setup_s"] for r in mine],
                                    "keygen_s_blocks": [r["keygen_s"] for r in mine],
                                    "warmup_s_blocks": [r["warmup_s"] for r in mine]}
    # errors of earlier, resumed runs stay visible
    for r in journal.of_kind("block"):
        if "error" in r and not any(ok["side"] == r["side"] for ok in blocks_ok):
            for name in impls:
                if (name == "openfhe") == (r["side"] == "openfhe"):
                    state["failed"].setdefault(name, f"block {r['block'] + 1}: {r['error']}")
    return stop


def mem_available_bytes() -> int | None:
    """MemAvailable (Linux): what a new process can take without swapping or the out-of-memory killer."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def wait_for_memory(need: int, limit_s: float, poll_s: float = 5.0) -> tuple[float, int | None]:
    """Wait (up to ``limit_s``) until MemAvailable reaches ``need`` bytes, on a machine other processes share: a
    child started short of memory is killed halfway, its set-up lost. Returns (seconds waited, MemAvailable at
    the end); after ``limit_s`` the child starts anyway, and the report shows what was available."""
    t0 = time.monotonic()
    available = mem_available_bytes()
    while available is not None and available < need and time.monotonic() - t0 < limit_s:
        time.sleep(poll_s)
        available = mem_available_bytes()
    return time.monotonic() - t0, available


def _block_record(journal: Journal, block: int, kind: str) -> dict | None:
    """The journalled successful block ``block`` of side ``kind`` (the last one), or None."""
    found = [r for r in journal.of_kind("block") if r["block"] == block and r["side"] == kind and "error" not in r]
    return found[-1] if found else None


def _block_rounds(journal: Journal) -> list[dict]:
    """The round records of the successful blocks (each block's once: a block run again on resume replaces)."""
    latest = {}
    for r in journal.of_kind("block"):
        if "error" not in r:
            latest[(r["block"], r["side"])] = r
    return [rec for r in latest.values() for rec in r["rounds"]]


def _complete_rounds(records: list[dict], impls: list[str], repeat: int) -> list[dict]:
    """The round records below ``repeat`` that every implementation in ``impls`` finished (a round cut in half is
    run again)."""
    by: dict[int, dict] = {}
    for r in records:
        if r["round"] >= repeat:
            continue
        by.setdefault(r["round"], {})[r["impl"]] = r
    return [r for i in sorted(by) if set(by[i]) >= set(impls) for r in (by[i][name] for name in impls)]


def _bits(value) -> float:
    return float(value)  # the journal stores an exact result's inf as "inf"


PRECISIONS = (("", "vs the plaintext"), ("self_", "vs the input's decryption"),
              ("fresh_", "fresh encryption: the input's decryption vs the plaintext"))


def _precision_summary(rs: list[dict]) -> dict:
    out = {}
    for prefix, _ in PRECISIONS:
        mean_bits = [_bits(r[f"{prefix}mean_bits"]) for r in rs if f"{prefix}mean_bits" in r]
        worst_bits = [_bits(r[f"{prefix}worst_bits"]) for r in rs if f"{prefix}worst_bits" in r]
        if mean_bits:
            out |= {f"{prefix}mean_bits_median": statistics.median(mean_bits), f"{prefix}mean_bits_min": min(mean_bits),
                    f"{prefix}worst_bits_median": statistics.median(worst_bits),
                    f"{prefix}worst_bits_min": min(worst_bits)}
    return out


def _paired_seconds(per: dict, a: str, b: str, isolated: bool) -> tuple[list[float], list[float]]:
    """Seconds of ``a`` and ``b`` paired as they were timed: per round (one process, back to back), or per pair of
    adjacent blocks (the median of each block's rounds: A_i against B_i)."""
    if not isolated:
        return [r["seconds"] for r in per[a]], [r["seconds"] for r in per[b]]
    blocks = sorted({r["block"] for r in per[a]} & {r["block"] for r in per[b]})
    med = lambda name, blk: statistics.median(r["seconds"] for r in per[name] if r["block"] == blk)  # noqa: E731
    return [med(a, blk) for blk in blocks], [med(b, blk) for blk in blocks]


def _assemble(report: dict, state: dict, journal: Journal, rounds: list[dict], options: SuiteOptions,
              params: Parameters) -> None:
    impls = [name for name in state["impls"] if name not in state["failed"]]
    isolated = state["isolation"] is not None
    per = {name: [r for r in rounds if r["impl"] == name] for name in impls}
    keys = {r["impl"]: r["bytes"] for r in journal.of_kind("keys")}
    memory = {r["impl"]: {k: v for k, v in r.items() if k not in ("kind", "impl")} for r in journal.of_kind("memory")}
    for r in journal.of_kind("block"):
        if "key_bytes" in r:
            keys[r["side"]] = r["key_bytes"]
    if isolated:
        for side in ("fhectl", "openfhe"):
            mine = [r for r in journal.of_kind("block") if r["side"] == side and "error" not in r]
            if mine:
                top = max(mine, key=lambda r: r["peak_rss_bytes"])
                memory[side] = {"peak_rss_bytes": top["peak_rss_bytes"],
                                "rss_after_imports_bytes": top["rss_after_imports_bytes"],
                                "per_block": [r["peak_rss_bytes"] for r in mine],
                                "source": "the timed child processes (VmHWM)"}
    summary, rows = {}, {}
    for name in impls:
        rs = per[name]
        if not rs:
            continue
        owner = "openfhe" if name == "openfhe" else "fhectl"  # the one-pass row shares fhectl's keys and process
        timing = summarize([r["seconds"] for r in rs], 0 if isolated else options.warmup)
        levels = sorted({r["levels_left"] for r in rs})
        summary[name] = {
            **_precision_summary(rs),
            "levels_left": levels[0] if len(levels) == 1 else levels,
            "cpu_per_wall_median": statistics.median(r["cpu_s"] / r["seconds"] for r in rs if r["seconds"] > 0),
            "key_bytes": keys.get(owner), "memory": memory.get(owner),
            **state["setup"].get(name, {}),
        }
        row = {"suite": SUITE, "name": "bootstrap", "impl": name, "batch_size": None,
               "device": state["describe"].get(name, {}).get("device", options.device),
               "timing": timing.as_dict(), "precision_bits": summary[name]["worst_bits_min"], "tokens_per_s": None,
               "counters": {}, "levels_used": None, "note": None, "bootstrap": summary[name]}
        report["results"].append(row)
        rows[name] = row
    comparison = None
    if "openfhe" in rows and "fhectl" in rows:
        ours, theirs = per["fhectl"], per["openfhe"]
        ratio = ratio_stats(*_paired_seconds(per, "fhectl", "openfhe", isolated))
        rows["fhectl"]["ratio_to_baseline"] = ratio.as_dict()
        comparison = {"time_ratio": ratio.as_dict(),
                      "paired_by": "adjacent process blocks (median of each block's rounds)" if isolated
                      else "rounds (back to back in one process)"}
        for prefix, _ in PRECISIONS[:2]:
            mean_diff = [_bits(a[f"{prefix}mean_bits"]) - _bits(b[f"{prefix}mean_bits"]) for a, b in zip(ours, theirs)]
            worst_diff = [_bits(a[f"{prefix}worst_bits"]) - _bits(b[f"{prefix}worst_bits"])
                          for a, b in zip(ours, theirs)]
            comparison |= {
                f"{prefix}mean_bits_difference_median": statistics.median(mean_diff),
                f"{prefix}mean_bits_difference_min": min(mean_diff),
                f"{prefix}worst_bits_difference_median": statistics.median(worst_diff),
                f"{prefix}worst_bits_difference_of_worst_rounds": summary["fhectl"][f"{prefix}worst_bits_min"]
                - summary["openfhe"][f"{prefix}worst_bits_min"],
            }
        if ONE_PASS in rows:
            comparison["one_pass_time_ratio"] = ratio_stats(*_paired_seconds(per, ONE_PASS, "openfhe",
                                                                             isolated)).as_dict()
    if ONE_PASS in rows:  # the refinement's cost: both rows come from the same process, round by round
        refinement = ratio_stats([r["seconds"] for r in per["fhectl"]], [r["seconds"] for r in per[ONE_PASS]])
        comparison = (comparison or {}) | {
            "refinement_time_ratio": refinement.as_dict(),
            "refinement_self_mean_bits_gain": summary["fhectl"]["self_mean_bits_median"]
            - summary[ONE_PASS]["self_mean_bits_median"],
            "refinement_self_worst_bits_gain": summary["fhectl"]["self_worst_bits_min"]
            - summary[ONE_PASS]["self_worst_bits_min"]}
    report["bootstrap"] = {
        "parameters": state["describe"], "threads": state["threads"], "rounds": rounds,
        "summary": summary, "comparison": comparison,
        "goals": goals(summary, comparison if comparison and "time_ratio" in comparison else None, params,
                       state["describe"], state["failed"]),
        "isolation": state["isolation"], "failed": state["failed"] or None,
        "blocks": [{k: v for k, v in r.items() if k not in ("kind", "rounds", "describe")}
                   for r in journal.of_kind("block")] if isolated else None,
        "partial": None if state["stopped"] is None else {
            "rounds_done": len({r["round"] for r in rounds}), "rounds_asked": options.repeat,
            "reason": state["stopped"], "journal": str(journal.path)},
        "resumed": journal.resumed,
    }
    report["config"]["interleaved"] = bool(report["config"].get("interleaved")) or "openfhe" in state["impls"]
    report["config"]["threads"] = state["threads"]


def goals(summary: dict, comparison: dict | None, params: Parameters, described: dict | None = None,
          failed: dict | None = None) -> list[dict]:
    """The issue's three goals, each judged from the measurements: {"goal", "met" (bool or None), "measured",
    "note" where the comparison is not like for like}.

    The precision goal is judged on bootstrapping's own error (each output against the decryption of its own
    input ciphertext): at Delta = 2^40 a fresh encryption is itself only about 20 bits from the plaintext, which
    caps the precision against the plaintext whatever the bootstrapping does. The differences against the
    plaintext are shown beside it."""
    out = []
    missing = ("OpenFHE failed: " + failed["openfhe"]) if failed and "openfhe" in failed \
        else "no OpenFHE baseline in this run"
    if comparison is None:
        out.append({"goal": f"precision >= OpenFHE + {GOAL_PRECISION_MARGIN_BITS:g} bits", "met": None,
                    "measured": missing})
        out.append({"goal": f"time <= {GOAL_TIME_RATIO:g}x OpenFHE", "met": None, "measured": missing})
    else:
        md = comparison["self_mean_bits_difference_median"]
        wd = comparison["self_worst_bits_difference_of_worst_rounds"]
        pmd, pwd = comparison["mean_bits_difference_median"], comparison["worst_bits_difference_of_worst_rounds"]
        out.append({"goal": f"precision >= OpenFHE + {GOAL_PRECISION_MARGIN_BITS:g} bits",
                    "met": md >= GOAL_PRECISION_MARGIN_BITS and wd >= GOAL_PRECISION_MARGIN_BITS,
                    "measured": f"judged on bootstrapping's own error (output vs the input's decryption): mean bits "
                                f"{md:+.1f} (median of per-round differences), worst bits {wd:+.1f} (worst round of "
                                f"each side); vs the plaintext, not judged: mean {pmd:+.1f}, worst {pwd:+.1f}"})
        theirs = (described or {}).get("openfhe", {}).get("scaling_mod_size")
        ours = max(_bits_summary(params.moduli_q[1:]), default=0)
        if theirs and ours > theirs:
            out[-1]["note"] = (f"fhectl's chain has primes of up to {ours} bits for bootstrapping, OpenFHE's scaling "
                               f"primes are all {theirs} bits (one ScalingModSize): part of the difference is that")
        r = comparison["time_ratio"]
        straddles = r["ci_low"] <= GOAL_TIME_RATIO <= r["ci_high"] and r["ci_low"] != r["ci_high"]
        out.append({"goal": f"time <= {GOAL_TIME_RATIO:g}x OpenFHE", "met": r["median"] <= GOAL_TIME_RATIO,
                    "measured": f"{r['median']:.2f}x (median of {r['pairs']} per-pair ratios, min - max "
                                f"{r['min']:.2f} - {r['max']:.2f}"
                                + ("; the median's interval contains the goal" if straddles else "") + ")"})
    kb = ((summary.get("fhectl") or {}).get("key_bytes") or {}).get("total")
    out.append({"goal": f"bootstrapping keys <= {GOAL_KEY_BYTES / 2**30:g} GiB",
                "met": None if kb is None else kb <= GOAL_KEY_BYTES,
                "measured": "not measured" if kb is None else f"{kb / 2**30:.3f} GiB stored"})
    if params.ring_degree != 1 << GOAL_LOG_N or params.security_bits < 128:
        for g in out:
            g["scope"] = (f"the goals are set for the 128-bit N = 2^{GOAL_LOG_N} profile; this run is at "
                         f"N = 2^{params.literal.log_n}, "
                         + (f"{params.security_bits}-bit" if params.security_bits else "insecure")
                         + ": indicative only")
    return out
