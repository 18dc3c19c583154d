"""Runs tests/cuda/simulated on the Numba CUDA simulator, in a fresh interpreter.

The simulator must be chosen before numba.cuda is first imported, and other
tests of the same run may already have imported it for real (``--device
auto`` probes for a GPU), so the simulated tests run in a subprocess with
NUMBA_ENABLE_CUDASIM=1. Its JUnit report is read back: every simulated test
must have run and passed; a skip, an error or an empty run fails here, with
the subprocess's output.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_cuda_kernels_and_backend_under_the_simulator(tmp_path):
    report = tmp_path / "simulated.xml"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", str(HERE / "simulated")],
        cwd=HERE.parents[1], env=env, capture_output=True, text=True, timeout=900,
    )
    output = proc.stdout[-8000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, output
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] >= 40 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, (counts, output)
