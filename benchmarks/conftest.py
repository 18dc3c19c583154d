"""Kernel micro-benchmarks (pytest-benchmark): NTT, RNS basis conversion, hybrid key switching.

Not collected by the normal test run (``testpaths = ["tests"]``); run them by name:

    pytest benchmarks --benchmark-autosave            # times, saved under .benchmarks/
    pytest benchmarks --benchmark-compare             # against the last saved run
    pytest-benchmark compare 0001 0002 --columns=median,iqr,min,max,stddev,rounds

The profile is the 128-bit GPT-2 one unless ``FHECTL_MICROBENCH_PROFILE`` names another (the smoke test in
tests/bench uses tiny-insecure). Set-up (tables, keys, random inputs) happens in fixtures, outside the timed
region; pytest-benchmark calibrates rounds, warms up when ``--benchmark-warmup`` is on, and reports median,
IQR, mean, standard deviation, min and max. The first call of each Numba kernel compiles it (or loads it from
the cache): run with ``--benchmark-warmup=on`` for steady-state figures.
"""

import os

import numpy as np
import pytest

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters

PROFILE = os.environ.get("FHECTL_MICROBENCH_PROFILE", "gpt2-n16-128")


@pytest.fixture(scope="session")
def params():
    return load_parameters(PROFILE, allow_insecure=True)


@pytest.fixture(scope="session")
def ctx(params):
    return CKKSContext(params, device="cpu")


@pytest.fixture(scope="session")
def relin_key(ctx):
    kg = KeyGenerator(ctx)
    return kg.relin_key(kg.secret_key())


@pytest.fixture
def rng():
    return np.random.default_rng(0)  # benchmark data, not key material
