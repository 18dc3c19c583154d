"""CKKS canonical embedding: N/2 complex slots <-> a real polynomial of degree < N.

Slot j of a polynomial m(X) is m(zeta^(5^j)) with zeta = exp(i pi / N)
[Cheon, Kim, Kim, Song, ASIACRYPT 2017]. Writing 5^j = 2 t_j + 1,

    m(zeta^(5^j)) = sum_k (m_k zeta^k) * exp(2 pi i k t_j / N),

a length-N DFT of the "twisted" coefficients m_k zeta^k read at index t_j, and
the conjugate slots sit at indices N - 1 - t_j. So encoding and decoding are
one complex FFT of length N (numpy's pocketfft) plus a twist and a gather,
O(N log N). ``fhe_kernels.reference.canonical_embedding`` is the O(N^2)
definition they are tested against.
"""

import numpy as np


class EmbeddingTable:
    """Twist factors and slot indices for one ring degree."""

    def __init__(self, ring_degree: int):
        n = ring_degree
        self.ring_degree = n
        k = np.arange(n)
        self.twist = np.exp(1j * np.pi * k / n)  # zeta^k
        self.untwist = np.conj(self.twist)
        powers = np.empty(n // 2, dtype=np.int64)
        x = 1
        for j in range(n // 2):
            powers[j] = x
            x = x * 5 % (2 * n)
        self.slot_index = (powers - 1) // 2  # t_j
        self.conj_index = n - 1 - self.slot_index


def decode_coefficients(coeffs: np.ndarray, table: EmbeddingTable) -> np.ndarray:
    """Slots (N/2 complex128) of the real polynomial with float64 coefficients ``coeffs`` (N,)."""
    n = table.ring_degree
    spectrum = np.fft.ifft(coeffs * table.twist) * n  # sum_k c_k exp(+2 pi i k t / N)
    return spectrum[table.slot_index]


def encode_slots(slots: np.ndarray, table: EmbeddingTable) -> np.ndarray:
    """Real coefficients (N,) float64 of the polynomial whose slots are ``slots`` (N/2 complex)."""
    n = table.ring_degree
    spectrum = np.zeros(n, dtype=np.complex128)
    spectrum[table.slot_index] = slots
    spectrum[table.conj_index] = np.conj(slots)
    twisted = np.fft.fft(spectrum) / n  # inverse of the sum above
    return (twisted * table.untwist).real
