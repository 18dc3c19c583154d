"""Runs the CUDA kernel tests under the Numba CUDA simulator, in a subprocess.

The simulator must be chosen before numba.cuda is first imported, which other
tests of the same run may already have done with the real driver, so the
simulated tests run in a fresh interpreter with NUMBA_ENABLE_CUDASIM=1 and
small thread blocks (FHECTL_CUDA_BLOCK=16), so multi-block paths run. They
never skip: a failure there fails this test, with the subprocess's output.
"""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_cuda_kernels_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", FHECTL_CUDA_BLOCK="16", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "simulated")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
