"""Ciphertexts and plaintexts: limb arrays in the NTT domain plus level and scale."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Plaintext:
    """An encoded message: data (1, level + 1, N) in the NTT domain, value = data / scale."""

    data: object
    level: int
    scale: float
    params_id: str
    slots: int  # how many slots the caller filled (for decoding)


@dataclass
class Ciphertext:
    """data (size, level + 1, N) in the NTT domain; decrypts as sum_i data[i] * s^i.

    ``size`` is 2 for a normal ciphertext and 3 right after a product before
    relinearization. ``key_id`` names the secret it decrypts under.
    """

    data: object
    level: int
    scale: float
    params_id: str
    key_id: str
    slots: int

    @property
    def size(self) -> int:
        return int(self.data.shape[0])

    @property
    def log_scale(self) -> float:
        return math.log2(self.scale)
