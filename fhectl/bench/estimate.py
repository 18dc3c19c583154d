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
* the first run after an install also compiles the Numba kernels (up to a few
  minutes, once; later runs load them from the cache); that is not included.
"""

from __future__ import annotations

import math
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
        return (f"estimated cost: about {_fmt_duration(self.seconds)} ({parts}) and {self.peak_bytes / GIB:.1f} GiB "
                "of memory at peak (rough, within about 2x; plus a one-time Numba compilation after an install)")


def _fmt_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def estimate(params: Parameters, suites, batch_sizes, repeat: int, warmup: int, baseline: str | None,
             n_embd: int | None = None) -> Estimate:
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
    return Estimate(sum(parts.values()), int(peak), parts)
