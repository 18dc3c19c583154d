"""What a benchmark run will cost, said before it starts: wall time and peak memory.

A rough model (within about a factor of two), fitted to runs measured on the
machines the committed reports come from (2 shared AMD EPYC cores, one OpenMP
thread for OpenFHE, at commit a0dcbbe):

* the cost of CKKS work scales with one key switch, whose work is about
  N * (L + 1 + K) * dnum word operations (ring degree, limbs of Q, special
  primes, digits); ``work_units`` is that, relative to the gpt2-n16-128
  profile (N = 2^16, 21 + 7 limbs, 3 digits);
* measured there: key generation and context set-up 7.8 s (fhectl) and
  4.8 s (OpenFHE, reading its special primes included); one repeat of the
  eight operations, inputs made included, 3.4 s (fhectl) and 4.5 s (OpenFHE);
  peak memory 1.2 GiB with fhectl's keys and 2.4 GiB with OpenFHE's beside them;
* GPT-2 small (n_embd 768) at that profile, per batch size: one run of the
  layers suite about 260 s and of one block about 170 s, with about 90 s of
  set-up (calibration, about 230 rotation keys); peak memory about 19 GiB
  (report 2026-11-22_02848c7f). The tiny --quick model (n_embd 16) at
  tiny-deep-insecure: 0.7 s and 0.8 s a run. Other widths are interpolated
  between the two on a log-log scale;
* the bootstrap suite is scaled from the run at boot-n16-128 of report
  2026-12-01_0a23c05b (N = 2^16, 27 + 6 limbs, 6 digits, budget [3, 3],
  sparse-secret encapsulation, EvalMod of 11 + 4 products, 2 Numba threads, a
  quiet 2-core machine): fhectl's set-up (relinearization, 39 Galois and the
  encapsulation keys) 26-38 s, one pass 10.5 s and the refined bootstrapping (two
  passes) 21 s once warm, the first call about 7 s longer (Numba loading its
  kernels, the transforms' diagonals encoded), peak RSS 11.9 GiB; OpenFHE's
  set-up 33 s, EvalBootstrap 16 s, 13.6 GiB (its own parameters). On a busy
  machine everything takes 2-5x longer (the report before, 2026-12-01_9d471d01).
  Time scales with a bootstrapping's key switches (``bootstrap_key_switches``)
  times one key switch's work (N log N (L + 1 + K) dnum), set-up with the keys'
  bytes. Memory (``bootstrap_side_peak_bytes``): the switching keys held in
  memory (relinearization, one Galois key per rotation step and conjugation,
  the encapsulation key to the dense secret; each dnum x 2 x (L + 1 + K) x N
  words) plus the transforms' cached diagonals (one plaintext of l + 1 limbs per
  diagonal, l the level its group runs at), times a factor for the working set
  fitted to the 11.9 GiB (the model gives 11.3 GiB of keys, diagonals and
  interpreter); OpenFHE's as fhectl's times 13.6 / 11.9. Both sides in one process
  add up; in process blocks (the isolated mode) the larger one is the peak;
* the first run after an install also compiles the Numba kernels (up to a few
  minutes, once; later runs load them from the cache); that is not included.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from fhectl.ckks.params import Parameters

GIB = 2**30
REF_WORK = 65536 * (21 + 7) * 3  # gpt2-n16-128

OPS_SETUP_S = {"fhectl": 7.8, "openfhe": 4.8}
OPS_REPEAT_S = {"fhectl": 3.4, "openfhe": 4.5}
FIXED_SETUP_S = 0.25  # interpreter-level overhead that does not shrink with the ring
FIXED_REPEAT_S = 0.01
BASE_RSS_BYTES = 0.2 * GIB  # Python, Numba, OpenFHE loaded, nothing computed

# n_embd -> (layers s per run, block s per run, set-up s per batch size) in work units, and the memory held
# at peak in switching keys' worth
GPT2_REFERENCE = {768: (260.0, 170.0, 90.0, 227), 16: (26.0, 30.0, 40.0, 40)}


def work_units(params: Parameters) -> float:
    """One key switch's work at ``params`` relative to the gpt2-n16-128 profile."""
    return params.ring_degree * (len(params.moduli_q) + len(params.moduli_p)) * params.literal.dnum / REF_WORK


def switching_key_bytes(params: Parameters) -> int:
    """One hybrid key-switching key: dnum digits of two polynomials over Q and P, 8 bytes a word."""
    return 2 * params.literal.dnum * (len(params.moduli_q) + len(params.moduli_p)) * params.ring_degree * 8


# The bootstrap suite at boot-n16-128 (see the module docstring)
BOOT_REF = {"log_n": 16, "limbs_qp": 33, "dnum": 6, "budget": (3, 3), "eval_mod_products": 15, "keys": 42}
BOOT_SETUP_S = {"fhectl": 32.0, "openfhe": 33.0}
BOOT_ROUND_S = {"fhectl": 21.0, "fhectl (one pass)": 10.5, "openfhe": 16.2}
BOOT_FIRST_CALL_S = {"fhectl": 7.0, "openfhe": 0.5}  # more than a warm call: kernels loaded, diagonals encoded
BOOT_CHILD_OVERHEAD_S = 5.0  # a fresh interpreter's imports, per child process
BOOT_MEASURED_PEAK = {"fhectl": 12.81e9, "openfhe": 14.65e9}
BOOT_WORKING_SET = 1.06  # measured peak / (keys + diagonals + interpreter) at boot-n16-128


def bootstrap_rotations(log_n: int, cts_levels: int, stc_levels: int) -> float:
    """Rotations of both transforms, roughly: each group of a FFT stages is a product with 2^(a+1) - 1
    diagonals, about 2 sqrt(diagonals) rotations baby-step giant-step."""
    stages = log_n - 1
    total = 0.0
    for levels in (cts_levels, stc_levels):
        groups = max(1, min(levels, stages))
        for i in range(groups):
            a = stages // groups + (1 if i < stages % groups else 0)
            total += 2 * math.sqrt(2 ** (a + 1) - 1)
    return total


def bootstrap_key_switches(log_n: int, cts_levels: int, stc_levels: int, eval_mod_products: int) -> float:
    """Key switches of one bootstrapping pass, roughly: the transforms' rotations, one conjugation, and EvalMod
    twice, ``eval_mod_products`` relinearized products each (``eval_mod_products``): the complex circuit's count,
    an upper bound for the real circuit's single EvalMod. Only ratios to the reference profile's count are used."""
    return bootstrap_rotations(log_n, cts_levels, stc_levels) + 1 + 2 * eval_mod_products


def eval_mod_products(config) -> int:
    """Relinearized products of one EvalMod: the series' (baby-step giant-step) and one per double angle."""
    from fhectl.ckks import chebyshev
    from fhectl.ckks.bootstrap import chebyshev_coefficients

    return chebyshev.plan(tuple(chebyshev_coefficients(config))).ct_mults + config.double_angle


def _bootstrap_memory_model(params: Parameters) -> tuple[int, int]:
    """(switching keys held, bytes of keys and cached diagonals) of fhectl's bootstrapping at ``params``: the
    transforms as the Bootstrapper builds them (about a second at N = 2^16)."""
    from fhectl.ckks.bootstrap import BootstrapConfig, linear_transforms, transform_levels

    config = BootstrapConfig.for_params(params)
    cts, stc = linear_transforms(params, config)
    steps = {s for t in cts + stc for s in t.rotation_steps()}
    keys = len(steps) + 1 + 1 + (1 if config.sparse_weight is not None else 0)  # + conjugation, relin, to_dense
    limb = params.ring_degree * 8
    cts_levels, stc_levels = transform_levels(params, config)
    special = len(params.moduli_p)  # the diagonals are encoded over Q_l P (double hoisting)
    diagonals = sum(len(t.diagonals) * (lvl + 1 + special) * limb
                    for t, lvl in zip(cts + stc, cts_levels + stc_levels))
    # Every key counted full, as when BOOT_WORKING_SET was fitted: the rotation keys are now truncated to their
    # levels (``rotation_levels``, 17% less at boot-n16-128), so this errs high, on the safe side.
    return keys, keys * switching_key_bytes(params) + diagonals


def bootstrap_side_peak_bytes(params: Parameters, side: str) -> int:
    """Estimated peak RSS of one side's set-up and bootstrapping in a process of its own (module docstring)."""
    _, held = _bootstrap_memory_model(params)
    fhectl = BOOT_WORKING_SET * (BASE_RSS_BYTES + held)
    return int(fhectl if side == "fhectl" else fhectl * BOOT_MEASURED_PEAK["openfhe"] / BOOT_MEASURED_PEAK["fhectl"])


ISOLATE_MEMORY_FRACTION = 0.8  # the suite runs in process blocks when both sides exceed this share of the RAM


def bootstrap_both_sides_bytes(params: Parameters) -> int:
    """Estimated peak of fhectl's and OpenFHE's bootstrapping set up in one process."""
    return sum(bootstrap_side_peak_bytes(params, side) for side in ("fhectl", "openfhe"))


def estimate_bootstrap(params: Parameters, repeat: int, warmup: int, baseline: str | None,
                       isolated: bool | None = None, rounds_per_block: int = 2,
                       openfhe_iterations: int = 1) -> tuple[float, int]:
    """(seconds, peak bytes) of the bootstrap suite, scaled from BOOT_REF; ``isolated`` None: as the suite
    decides (process blocks when both sides would not fit in 80 % of the RAM); ``openfhe_iterations``: OpenFHE's
    EvalBootstrap numIterations (``--openfhe-iterations``)."""
    from fhectl.ckks.bootstrap import BootstrapConfig

    c = BootstrapConfig.for_params(params)
    lit, ref = params.literal, BOOT_REF
    limbs = len(params.moduli_q) + len(params.moduli_p)
    key_switch = (1 << lit.log_n) * limbs * lit.dnum  # one key switch's words (and one key's)
    ref_key_switch = (1 << ref["log_n"]) * ref["limbs_qp"] * ref["dnum"]
    work = (key_switch * lit.log_n * bootstrap_key_switches(lit.log_n, c.cts_levels, c.stc_levels, eval_mod_products(c))
            / (ref_key_switch * ref["log_n"] * bootstrap_key_switches(ref["log_n"], *ref["budget"],
                                                                      ref["eval_mod_products"])))
    n_keys, _ = _bootstrap_memory_model(params)
    keys = key_switch * n_keys / (ref_key_switch * ref["keys"])
    sides = ["fhectl"] + (["openfhe"] if baseline == "openfhe" else [])
    both, ram = bootstrap_both_sides_bytes(params), physical_memory_bytes()
    if isolated is None:
        isolated = len(sides) > 1 and bool(ram) and both > ISOLATE_MEMORY_FRACTION * ram
    # the fhectl process times the one-pass row beside the refined bootstrapping where the profile refines
    timed = {"fhectl": ["fhectl", "fhectl (one pass)"] if c.refine_bits else ["fhectl (one pass)"],
             "openfhe": ["openfhe"]}
    # OpenFHE's iterations each run one bootstrapping (measured at N = 2^16: 33.1 s for two against 16.2 s for
    # one, report 2026-12-01_2f9e3e3c), and its set-up runs one more to measure the first iteration's precision
    rounds = {"fhectl": 1, "openfhe": openfhe_iterations}
    seconds = 0.0
    for side in sides:
        one = work * sum(BOOT_ROUND_S[row] for row in timed[side]) * rounds[side]
        setup = (BOOT_SETUP_S[side] * keys + BOOT_CHILD_OVERHEAD_S
                 + (work * BOOT_ROUND_S[side] if rounds[side] > 1 else 0.0))
        first = BOOT_FIRST_CALL_S[side] * work + one
        if isolated:  # per block: a child with its set-up, one warm-up and its rounds
            blocks = math.ceil(repeat / max(1, rounds_per_block))
            seconds += blocks * (setup + first) + repeat * one
        else:  # set-up here, warm-up and timed rounds, then the probe: set-up and one round again
            seconds += 2 * setup + first + (repeat + max(warmup, 1)) * one
    peaks = [bootstrap_side_peak_bytes(params, side) for side in sides]
    peak = max(peaks) if isolated else sum(peaks)
    return seconds, int(peak)


def physical_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _interpolate(n_embd: int, i: int) -> float:
    (x0, y0), (x1, y1) = ((16, GPT2_REFERENCE[16][i]), (768, GPT2_REFERENCE[768][i]))
    slope = (math.log(y1) - math.log(y0)) / (math.log(x1) - math.log(x0))
    return math.exp(math.log(y0) + slope * (math.log(max(n_embd, 1)) - math.log(x0)))


@dataclass(frozen=True)
class Estimate:
    seconds: float
    peak_bytes: int
    parts: dict  # suite -> seconds

    def describe(self) -> str:
        parts = ", ".join(f"{k} {_fmt_duration(v)}" for k, v in self.parts.items())
        text = (f"estimated cost: about {_fmt_duration(self.seconds)} ({parts}) and {self.peak_bytes / GIB:.1f} GiB "
                "of memory at peak (rough, within about 2x; plus a one-time Numba compilation after an install)")
        if "bootstrap" in self.parts:
            text += ("; bootstrap scaled from measured N = 2^16 runs by ring degree, chain and key switches, "
                     "memory from the keys and cached diagonals held: an estimate, within a few x")
        return text


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def estimate(params: Parameters, suites, batch_sizes, repeat: int, warmup: int, baseline: str | None,
             n_embd: int | None = None, isolated: bool | None = None, rounds_per_block: int = 2,
             openfhe_iterations: int = 1) -> Estimate:
    """Wall time and peak memory of ``run_benchmarks`` with these arguments (see the module docstring)."""
    w = work_units(params)
    runs = repeat + warmup
    impls = ["fhectl"] + (["openfhe"] if baseline == "openfhe" else [])
    parts, peak = {}, BASE_RSS_BYTES
    key = switching_key_bytes(params)
    if "ops" in suites:
        parts["ops"] = sum(FIXED_SETUP_S + OPS_SETUP_S[i] * w + runs * (FIXED_REPEAT_S + OPS_REPEAT_S[i] * w)
                           for i in impls)
        # 1 relinearization + 8 rotation keys per implementation, and a few dozen ciphertexts in flight
        peak = max(peak, BASE_RSS_BYTES + len(impls) * 9 * key * 1.5)
    gpt2 = [s for s in suites if s in ("layers", "block")]
    if gpt2:
        width = n_embd or 768
        per_run = sum(_interpolate(width, 0 if s == "layers" else 1) for s in gpt2)
        setup = _interpolate(width, 2)
        for s in gpt2:
            share = _interpolate(width, 0 if s == "layers" else 1) / per_run
            parts[s] = len(batch_sizes) * (setup * share + runs * _interpolate(width, 0 if s == "layers" else 1)) * w
        peak = max(peak, BASE_RSS_BYTES + _interpolate(width, 3) * key)
    if "bootstrap" in suites:
        parts["bootstrap"], boot_peak = estimate_bootstrap(params, repeat, warmup, baseline, isolated,
                                                             rounds_per_block, openfhe_iterations)
        peak = max(peak, boot_peak)
    return Estimate(sum(parts.values()), int(peak), parts)
