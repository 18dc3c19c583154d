"""How wide the wide-range circuits are built: the calibration rules both model families share.

Calibration measures what each block's circuit inputs spanned over a calibration prompt set; these rules widen
that into the intervals the circuits are built for, far beyond what was seen, and round every bound outwards
to a power of two (blocks with similar ranges then share circuits, and a report reads at a glance):

* mean square or variance + eps entering a norm: [max(eps, min / 10), max * 10] -- never below eps (the
  value the circuit gets cannot be), a decade over the largest "massive activation" seen (Sun et al.,
  "Massive Activations in Large Language Models", 2024);
* attention scores: |s| <= max(16, 2 max |s|) (the normalise-and-square softmax has no per-row or per-layer
  shift, so this bounds magnitudes; it is not a window around typical values);
* SiLU / GELU inputs: |x| <= max(32, 2 max |x|);
* the residual stream's public scale s, a power of two per block with |h| / s <= 64 on what was seen
  (8 times below the 2^9 that fits q0 / Delta at level 0 for a 50-bit scale over a 60-bit q0).
"""

from __future__ import annotations

import math

import numpy as np

NORM_MARGIN = 10.0
SCORE_MARGIN, SCORE_FLOOR = 2.0, 16.0
ACTIVATION_MARGIN, ACTIVATION_FLOOR = 2.0, 32.0
STREAM_LIMIT = 64.0
# The 1/sqrt circuit's output c / sqrt(v) is kept below this (c is chosen from the domain's lower end).
RSQRT_MAX_OUTPUT = 4.0


def pow2_down(x: float) -> float:
    return 2.0 ** math.floor(math.log2(x))


def pow2_up(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x))


def update_range(lo_hi: list, values) -> None:
    """Widen the running [min, max] ``lo_hi`` (a two-element list) to cover ``values``."""
    lo_hi[0], lo_hi[1] = min(lo_hi[0], float(np.min(values))), max(lo_hi[1], float(np.max(values)))


def norm_interval(seen: tuple[float, float], eps: float) -> tuple[float, float]:
    """The 1/sqrt domain for a norm whose (mean square or variance) + eps spanned ``seen``."""
    return (pow2_down(max(eps, seen[0] / NORM_MARGIN)), pow2_up(seen[1] * NORM_MARGIN))


def score_bound(seen_abs: float) -> float:
    return pow2_up(max(SCORE_FLOOR, SCORE_MARGIN * seen_abs))


def activation_bound(seen_abs: float) -> float:
    return pow2_up(max(ACTIVATION_FLOOR, ACTIVATION_MARGIN * seen_abs))


def stream_scale_for(stream_abs: float) -> float:
    """The least power of two s >= 1 with max |h| / s <= STREAM_LIMIT."""
    return float(2.0 ** max(0, math.ceil(math.log2(max(stream_abs, 1e-30) / STREAM_LIMIT))))


def scaled_interval(interval: tuple[float, float], stream_scale: float) -> tuple[float, float]:
    """A norm's interval for the scaled stream h / s: divided by s^2."""
    return (interval[0] / stream_scale**2, interval[1] / stream_scale**2)


def rsqrt_out_scale(interval: tuple[float, float]) -> float:
    """c with c / sqrt(v) <= RSQRT_MAX_OUTPUT on the interval: small values stay far from q0."""
    return RSQRT_MAX_OUTPUT * math.sqrt(interval[0])
