"""Precision in bits, and the bounds the parameters predict for it.

Precision of a decrypted vector against its float64 expectation is
-log2(max |error|) (Lattigo's convention). The prediction for a fresh
public-key encryption follows from the error terms of CKKS [CKKS17, Lemma 1]:
the decryption error e = u e_pk + e0 + e1 s has coefficients of standard
deviation about sigma * sqrt(4N/3) (u and s ternary with variance 2/3), and
each slot sums N of them through the canonical embedding, multiplying the
standard deviation by sqrt(N). Over N/2 slots the largest of these Gaussians
stays below about 6 standard deviations, so the worst slot error is at most
6 * sigma * N * sqrt(4/3) / Delta.

The same bound in the coefficient domain, what key switching adds to it, and the noise flooding of
share-safe decryption are in fhectl.ckks.noise.
"""

from __future__ import annotations

import math

import numpy as np

from fhectl.ckks.params import Parameters

TAIL_STANDARD_DEVIATIONS = 6.0


def precision_bits(got, want) -> float:
    """-log2 of the largest absolute error (inf when exact)."""
    err = float(np.max(np.abs(np.asarray(got) - np.asarray(want)))) if np.size(want) else 0.0
    return math.inf if err == 0.0 else -math.log2(err)


def fresh_error_bound(params: Parameters, scale: float | None = None) -> float:
    """Largest slot error expected of a fresh public-key encryption at ``scale`` (default Delta)."""
    n = params.ring_degree
    sigma = params.literal.sigma
    scale = params.scale if scale is None else scale
    return TAIL_STANDARD_DEVIATIONS * sigma * n * math.sqrt(4.0 / 3.0) / scale


def fresh_precision_bits(params: Parameters, scale: float | None = None) -> float:
    """-log2 of ``fresh_error_bound``: the precision a fresh encryption should reach."""
    return -math.log2(fresh_error_bound(params, scale))
