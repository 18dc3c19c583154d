"""Setup of the tests that run on the Numba CUDA simulator (in their own interpreter).

``tests/cuda/test_cuda_simulator.py`` starts them with NUMBA_ENABLE_CUDASIM=1
set before anything imports numba.cuda; here that is checked, never assumed:
without the simulator (or with a numba.cuda imported earlier in real mode)
the run stops with an error instead of skipping.
"""

import os
import sys
import warnings
import zlib

import numpy as np
import pytest


def pytest_configure(config):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.exit("tests/cuda/simulated needs NUMBA_ENABLE_CUDASIM=1 (tests/cuda/test_cuda_simulator.py sets it)", 2)
    from fhe_kernels.cuda.launch import simulating

    if not simulating():
        pytest.exit("numba.cuda was imported before NUMBA_ENABLE_CUDASIM=1 took effect: not the simulator", 2)
    # The simulator runs each CUDA thread as a Python thread and polls them
    # for __syncthreads(); with the default 5 ms GIL switch interval the NTT
    # tests spend most of their time waiting for hand-overs (measured 3x slower).
    sys.setswitchinterval(5e-4)
    # Simulated uint64 arithmetic is numpy scalar arithmetic, which warns on
    # the wraparound the kernels rely on (as the hardware does).
    warnings.filterwarnings("ignore", category=RuntimeWarning, message="overflow encountered")


SEED = int(os.environ.get("FHECTL_TEST_SEED", int.from_bytes(os.urandom(4), "little")))


def pytest_report_header(config):
    return f"simulated CUDA tests: random seed {SEED} (FHECTL_TEST_SEED={SEED} repeats this run)"


@pytest.fixture
def rng(request):
    """Fresh random data for every test, reproducible from the seed in the report header."""
    return np.random.default_rng([SEED, zlib.crc32(request.node.nodeid.encode())])
