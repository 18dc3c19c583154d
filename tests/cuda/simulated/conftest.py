"""These tests only make sense under the CUDA simulator (or a GPU); refuse to run silently without it."""

import os

import pytest


def pytest_configure(config):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        pytest.exit("tests/cuda/simulated needs NUMBA_ENABLE_CUDASIM=1 (tests/cuda/test_cuda_simulator.py sets it)", 2)
