"""Shared fixtures for the storage-layer tests (fhectl.io)."""

import numpy as np
import pytest

from fhectl.io.container import Container

FAST_SCRYPT_N = 2**15  # the smallest n the secret box accepts; keeps each derivation near 0.1 s
PARAMS_ID = "3f2a9c0d11e4b7a8"
KEY_ID = "k-3f2a0b1c2d3e"


def _sample_containers() -> list[Container]:
    rng = np.random.default_rng(7)
    return [
        Container("ciphertext", PARAMS_ID, KEY_ID, 1, {"level": 3, "scale": 2.0**40, "slots": 8},
                  {"data": rng.integers(0, 2**63, size=(2, 4, 16), dtype=np.uint64)}),
        Container("plaintext", PARAMS_ID, "", None, {"note": "ünïcode", "nested": {"a": [1, 2.5, None, True]}},
                  {"values": rng.normal(size=5) + 1j * rng.normal(size=5),
                   "empty": np.zeros((0, 3), dtype=np.float64),
                   "scalar": np.array(-7, dtype=np.int64),
                   "bytes": rng.integers(0, 256, size=100, dtype=np.uint8)}),
        Container("galois-keys", PARAMS_ID, KEY_ID, 2, {},
                  {f"galois:{g}": rng.integers(0, 2**60, size=(2, 2, 3, 8), dtype=np.uint64) for g in (3, 5, 25)}),
    ]


@pytest.fixture
def sample_containers() -> list[Container]:
    """A ciphertext, a plaintext with every odd shape and dtype, and a multi-array Galois key set."""
    return _sample_containers()


@pytest.fixture
def key_containers():
    """A factory: (secret, public) container dicts bound to a given key id, as the CKKS layer would hand them."""

    def make(key_id: str = KEY_ID, params_id: str = PARAMS_ID, seed: int = 0):
        rng = np.random.default_rng(seed)
        secret = {"secret-key": Container("secret-key", params_id, key_id, None, {"ring_degree": 16},
                                          {"coeffs": rng.integers(-1, 2, size=16, dtype=np.int64),
                                           "ntt": rng.integers(0, 2**60, size=(1, 5, 16), dtype=np.uint64)})}
        public = {
            "public-key": Container("public-key", params_id, key_id, None, {},
                                    {"data": rng.integers(0, 2**60, size=(2, 4, 16), dtype=np.uint64)}),
            "relin-key": Container("relin-key", params_id, key_id, None, {"digits": 2},
                                   {"data": rng.integers(0, 2**60, size=(2, 2, 5, 16), dtype=np.uint64)}),
        }
        return secret, public

    return make
