"""Fixtures for the CLI tests: one keyring made by `fhectl keygen` per session, copied per test."""

import shutil
import zlib
from pathlib import Path

import numba
import numpy as np
import pytest

from clitools import KEYGEN, cli_ok


@pytest.fixture(autouse=True)
def single_numba_thread():
    """Run the engine single-threaded in these tests (restored afterwards).

    The CLI tests use N = 2^10, where one kernel call takes microseconds and starting the OpenMP
    team costs more than the work; on a shared 2-core runner a team can even wait a scheduler tick
    per call (measured: 8 ms per poly_add with 2 threads under load, 3.5 us with one).
    """
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.fixture(scope="session")
def base_keyring(tmp_path_factory) -> Path:
    """A keyring with key set 'default' v1 (tiny-insecure, rotations 1 and -1), made by `fhectl keygen`."""
    ring = tmp_path_factory.mktemp("base") / "keyring"
    cli_ok(ring, *KEYGEN)
    return ring


@pytest.fixture
def keyring(base_keyring, tmp_path) -> Path:
    """A private copy of the session keyring (modes kept), for tests that change or damage it."""
    ring = tmp_path / "keyring"
    shutil.copytree(base_keyring, ring, ignore=shutil.ignore_patterns(".lock"))
    return ring


@pytest.fixture
def data_rng(request):
    """Test data from a Generator seeded by the test's name (reproducible; never key material)."""
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))
