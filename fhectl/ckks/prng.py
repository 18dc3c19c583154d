"""Public seed expansion: the uniform half of a switching key, rebuilt from 32 bytes.

A switching key's rows (b_j, a_j) have a_j uniform modulo every prime of QP, and a_j is public: anyone
holding the key sees it. So the key generator may draw a_j from a public seed instead of storing it,
and a reader re-expands it; a file then carries b_j and the seed, about half the bytes. This is the
seeded-key compression of Kyber's matrix A [Bos et al., "CRYSTALS-Kyber", EuroS&P 2018, Sec. 3] and of
SEAL's serialized "seeded" keys. Security holds as long as the XOF behaves as a random oracle on the
seed: the RLWE samples (b_j, a_j) are then distributed as with a truly uniform a_j.

The expansion (name :data:`EXPANSION`; a file records it, so a change of scheme needs a new name):

* one SHAKE128 stream [FIPS 202] per (key kind, digit j, limb r), its input
  ``DOMAIN || seed || u16 len(label) || label || u32 j || u32 r || u64 q_r`` (little-endian), where
  label is the key's source (``relin``, ``galois:<g>``, ``key:<id>``). The label, digit and limb
  separate every stream of a key, and of keys that (against the rules) share a seed; q_r ties the
  stream to the prime, so a key re-read under other parameters cannot give the same residues.
* the stream read as little-endian 64-bit words w; a word is kept if w < t = q * floor(2^64 / q), and
  gives the residue w mod q (rejection sampling: [0, t) holds every residue exactly floor(2^64 / q)
  times, so there is no modulo bias). The kept residues are the limb's values in order, used directly
  as NTT-domain values (the NTT is a bijection, so a uniform polynomial is uniform in either domain,
  and no transform is spent).

Rejection rate: a word is rejected with probability (2^64 mod q) / 2^64 < q / 2^64 <= 2^(bitlen(q) - 64):
at most 1/8 for the 61-bit primes of the 128-bit profiles and below 2^-13 for their 50- and 51-bit
primes. (Masking to bitlen(q) bits instead would reject almost half the words for the primes just
above a power of two that fhectl's chains alternate with.) :func:`rejection_rate` gives the exact value.

Cost: about 0.25 s of one CPU core per key at N = 2^16 with 28 primes and 3 digits (42 MiB of residues,
SHAKE128 and the reduction in about equal parts): the price of loading a key from half the bytes.

:func:`uniform_residues_reference` is the obvious definition (a Python loop over words, big ints);
:func:`uniform_residues` is the vectorised path tested against it and against pinned known answers.
"""

from __future__ import annotations

import hashlib
import math
import secrets

import numpy as np

EXPANSION = "shake128-rejection-v1"
DOMAIN = b"fhectl/switching-key-a/v1\x00"
SEED_BYTES = 32


def new_seed(random=None) -> bytes:
    """A fresh public seed: from ``random.bytes`` (a named source, for tests) or the OS CSPRNG."""
    return bytes(random.bytes(SEED_BYTES)) if random is not None else secrets.token_bytes(SEED_BYTES)


def stream_input(seed: bytes, label: str, digit: int, limb: int, modulus: int) -> bytes:
    """The XOF input of one limb's stream (see the module docstring for the layout)."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"a seed has {SEED_BYTES} bytes, got {len(seed)}")
    name = label.encode("utf-8")
    if len(name) >= 1 << 16 or not 0 <= digit < 1 << 32 or not 0 <= limb < 1 << 32 or not 0 < modulus < 1 << 64:
        raise ValueError("label, digit, limb or modulus out of range for the stream input")
    return (DOMAIN + bytes(seed) + len(name).to_bytes(2, "little") + name + digit.to_bytes(4, "little")
            + limb.to_bytes(4, "little") + int(modulus).to_bytes(8, "little"))


def rejection_rate(modulus: int) -> float:
    """Probability that one 64-bit word is rejected for the prime ``modulus``."""
    return ((1 << 64) % int(modulus)) / 2.0**64


def _threshold(modulus: int) -> int:
    """Largest multiple of ``modulus`` not above 2^64: words below it are kept."""
    if not 1 < modulus < 1 << 63:
        raise ValueError(f"modulus {modulus} is outside 2..2^63")
    return (1 << 64) // modulus * modulus


def uniform_residues_reference(seed: bytes, label: str, digit: int, limb: int, modulus: int,
                               count: int) -> list[int]:
    """The definition, one word at a time: ``count`` residues in [0, modulus)."""
    xof_input = stream_input(seed, label, digit, limb, modulus)
    threshold = _threshold(int(modulus))
    out: list[int] = []
    words = count + 16
    while True:
        stream = hashlib.shake_128(xof_input).digest(8 * words)  # a longer digest extends the shorter one
        out.clear()
        for i in range(words):
            word = int.from_bytes(stream[8 * i : 8 * i + 8], "little")
            if word < threshold:
                out.append(word % modulus)
                if len(out) == count:
                    return out
        words *= 2


def uniform_residues(seed: bytes, label: str, digit: int, limb: int, modulus: int, count: int) -> np.ndarray:
    """``count`` residues in [0, modulus), uint64 (N,): the same values as the reference, vectorised."""
    xof_input = stream_input(seed, label, digit, limb, modulus)
    threshold = np.uint64(_threshold(int(modulus)))
    # Enough words for count acceptances on average, plus a margin of many standard deviations;
    # a shortfall (vanishingly rare) doubles the request: SHAKE's longer output extends the shorter.
    words = math.ceil(count / (1.0 - rejection_rate(modulus))) + 64 + 8 * math.isqrt(count)
    while True:
        stream = np.frombuffer(hashlib.shake_128(xof_input).digest(8 * words), dtype="<u8")
        kept = stream[stream < threshold]
        if kept.size >= count:
            return kept[:count] % np.uint64(modulus)
        words *= 2


def expand_uniform(seed: bytes, label: str, digit: int, moduli, ring_degree: int) -> np.ndarray:
    """One uniform polynomial over ``moduli`` (limb r modulo moduli[r]), NTT domain: (len(moduli), N) uint64."""
    out = np.empty((len(moduli), ring_degree), dtype=np.uint64)
    for r, q in enumerate(moduli):
        out[r] = uniform_residues(seed, label, digit, r, int(q), ring_degree)
    return out


def expand_switching_a(seed: bytes, label: str, digits: int, moduli, ring_degree: int) -> np.ndarray:
    """The a_j of a seeded switching key, every digit: (digits, len(moduli), N) uint64."""
    return np.stack([expand_uniform(seed, label, j, moduli, ring_degree) for j in range(digits)])
