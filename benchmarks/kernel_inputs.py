"""Inputs and names shared by the micro-benchmarks."""

import numpy as np


def random_poly(rng, moduli, ring_degree: int) -> np.ndarray:
    """(1, len(moduli), N) uint64, limb i uniform in [0, moduli[i])."""
    return np.stack([rng.integers(0, q, ring_degree, dtype=np.uint64) for q in moduli])[None]


def label(params) -> str:
    """SEAL-style parameters in a benchmark's name: ring degree, limbs of Q, special primes, digits."""
    return (f"N={params.ring_degree},L={len(params.moduli_q)},K={len(params.moduli_p)},"
            f"dnum={params.literal.dnum}")
