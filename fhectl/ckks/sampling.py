"""Randomness for keys and encryption.

Every secret, mask and error is drawn from ``OsRandom`` (the operating
system's CSPRNG, ``os.urandom``) unless a caller asks, by name, for
``SeededRandom``: SHAKE-256 expanding a caller-given seed, for tests and
reproducible benchmarks only. Nothing here uses numpy's generators, which
are not cryptographic.

Distributions:
* uniform residues mod q by rejection sampling on bitlen(q)-bit words (no
  modulo bias);
* uniform ternary {-1, 0, 1} by rejection on bytes below 255;
* the discrete Gaussian of width sigma by inversion of its cumulative
  distribution table (CDT) with 63-bit probabilities, tails cut at 12 sigma
  (mass below 2**-100), as in the HE standard's error distribution.
"""

from __future__ import annotations

import hashlib
import math
import os

import numpy as np


class OsRandom:
    """The OS CSPRNG. The default everywhere."""

    name = "os-csprng"

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)


class SeededRandom:
    """Deterministic SHAKE-256 stream from a seed. Tests and reproducible benchmarks only."""

    name = "seeded-shake256"

    def __init__(self, seed: bytes | str | int):
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "little", signed=False)
        elif isinstance(seed, str):
            seed = seed.encode()
        self._seed = bytes(seed)
        self._counter = 0

    def bytes(self, n: int) -> bytes:
        self._counter += 1
        return hashlib.shake_256(self._seed + self._counter.to_bytes(8, "little")).digest(n)


def _words(source, count: int) -> np.ndarray:
    return np.frombuffer(source.bytes(8 * count), dtype=np.uint64)


def uniform_mod(source, modulus: int, count: int) -> np.ndarray:
    """``count`` uniform residues in [0, modulus), uint64."""
    bits = int(modulus).bit_length()
    mask = np.uint64((1 << bits) - 1)
    q = np.uint64(modulus)
    out = np.empty(count, dtype=np.uint64)
    filled = 0
    while filled < count:
        need = count - filled
        cand = _words(source, need + need // 2 + 16) & mask  # acceptance >= 1/2
        cand = cand[cand < q][:need]
        out[filled : filled + cand.size] = cand
        filled += cand.size
    return out


def uniform_ternary(source, count: int) -> np.ndarray:
    """``count`` values uniform in {-1, 0, 1}, int64."""
    out = np.empty(count, dtype=np.int64)
    filled = 0
    while filled < count:
        need = count - filled
        raw = np.frombuffer(source.bytes(need + need // 64 + 16), dtype=np.uint8)
        raw = raw[raw < 255][:need]  # 255 = 3 * 85: keep a multiple of 3 values
        out[filled : filled + raw.size] = (raw % 3).astype(np.int64) - 1
        filled += raw.size
    return out


def sparse_ternary(source, count: int, weight: int) -> np.ndarray:
    """``count`` values in {-1, 0, 1}, int64, exactly ``weight`` of them non-zero: the positions uniform
    among all subsets (a partial Fisher-Yates shuffle with unbiased indices), the signs uniform."""
    if not 0 < weight <= count:
        raise ValueError(f"a sparse secret needs 0 < weight <= {count}, got {weight}")
    positions = np.arange(count, dtype=np.int64)
    for i in range(weight):  # swap a uniform j in [i, count) into place i
        j = i + int(uniform_mod(source, count - i, 1)[0]) if count - i > 1 else i
        positions[i], positions[j] = positions[j], positions[i]
    signs = uniform_mod(source, 2, weight).astype(np.int64) * 2 - 1
    out = np.zeros(count, dtype=np.int64)
    out[positions[:weight]] = signs
    return out


_CDT_CACHE: dict[float, np.ndarray] = {}


def _gaussian_cdt(sigma: float) -> np.ndarray:
    """Cumulative table of |X| for the discrete Gaussian: P(|X| <= k) scaled to 2**63."""
    table = _CDT_CACHE.get(sigma)
    if table is None:
        tail = int(math.ceil(12 * sigma))
        weights = [math.exp(-(k * k) / (2 * sigma * sigma)) for k in range(tail + 1)]
        weights[1:] = [2 * w for w in weights[1:]]  # +k and -k
        total = sum(weights)
        acc = 0.0
        cdf = []
        for w in weights:
            acc += w / total
            cdf.append(min(int(acc * 2**63), 2**63 - 1))
        cdf[-1] = 2**63  # everything lands inside the table
        table = np.array(cdf, dtype=np.uint64)
        _CDT_CACHE[sigma] = table
    return table


def discrete_gaussian(source, sigma: float, count: int) -> np.ndarray:
    """``count`` samples of the discrete Gaussian of width sigma, int64."""
    table = _gaussian_cdt(sigma)
    words = _words(source, count)
    magnitude = np.searchsorted(table, words >> np.uint64(1), side="right").astype(np.int64)
    sign = (words & np.uint64(1)).astype(np.int64) * 2 - 1
    return magnitude * sign


def default_random() -> OsRandom:
    return OsRandom()
