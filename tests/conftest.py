"""Shared fixtures: contexts and keys for the insecure test profile, built once per session.

Randomness in tests comes from ``SeededRandom`` with a seed named after the
fixture, so failures reproduce; the library's default stays the OS CSPRNG.
"""

import os
import zlib

import huggingface_hub.constants
import numba
import numpy as np
import pytest

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.sampling import SeededRandom


# The simulated CUDA tests run in their own interpreter (tests/cuda/test_cuda_simulator.py).
collect_ignore = [] if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" else ["cuda/simulated"]


@pytest.fixture(scope="session")
def tiny_params():
    return load_parameters("tiny-insecure", allow_insecure=True)


class Kit:
    """A context with keys, encryptor, decryptor and evaluator for tests."""

    def __init__(self, params, seed: str, rotations=(1, 2, 3, -1, 5, 7, 16)):
        self.params = params
        self.ctx = CKKSContext(params)
        self.keygen = KeyGenerator(self.ctx, SeededRandom(seed))
        self.sk = self.keygen.secret_key()
        self.pk = self.keygen.public_key(self.sk)
        self.rlk = self.keygen.relin_key(self.sk)
        self.gk = self.keygen.galois_keys(self.sk, rotations, conjugation=True)
        self.encryptor = Encryptor(self.ctx, self.pk, random=SeededRandom(seed + "/enc"))
        self.decryptor = Decryptor(self.ctx, self.sk)
        self.evaluator = Evaluator(self.ctx, self.rlk, self.gk)
        self.rng = np.random.default_rng(zlib.crc32(seed.encode()))

    def random_slots(self, complex_values=True, bound=1.0):
        s = self.params.slots
        x = self.rng.uniform(-bound, bound, s)
        if complex_values:
            x = x + 1j * self.rng.uniform(-bound, bound, s)
        return x


@pytest.fixture(scope="session")
def kit(tiny_params):
    return Kit(tiny_params, "tests/kit")



@pytest.fixture(scope="session")
def make_kit():
    """Factory: a Kit for any parameters, seeded by name, with Galois keys for the given rotations."""
    cache = {}

    def make(params, seed: str, rotations=(1,)):
        key = (params.params_id, seed, tuple(sorted(rotations)))
        if key not in cache:
            cache[key] = Kit(params, f"tests/{seed}", rotations=tuple(rotations))
        return cache[key]

    return make


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An HF_HOME whose cache holds nothing yet, with the network switched off."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads both variables once, at import; set what it read too.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path / "hf" / "hub"


@pytest.fixture(scope="module")
def single_numba_thread():
    """One engine thread for a module (restored afterwards; use with ``pytestmark = pytest.mark.usefixtures``):
    at N = 2^10 a kernel call is microseconds of work, and on a shared 2-core machine a 2-thread team waits for
    scheduler ticks (measured: the bootstrapping module took 146 s of CPU under load against 10 s idle)."""
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)
