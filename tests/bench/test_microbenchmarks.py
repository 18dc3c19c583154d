"""The kernel micro-benchmarks (benchmarks/, pytest-benchmark) run, and stay out of the normal test run."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmarks_are_not_collected_by_the_test_run():
    config = (ROOT / "pyproject.toml").read_text()
    testpaths = re.search(r"^testpaths\s*=\s*\[(.*?)\]", config, re.M).group(1)
    assert "benchmarks" not in testpaths and (ROOT / "benchmarks" / "test_kernels.py").exists()


def test_micro_benchmarks_run_once_each():
    """Each benchmark body runs once (--benchmark-disable) at the tiny profile: NTT, basis conversion, key switch."""
    env = dict(os.environ, FHECTL_MICROBENCH_PROFILE="tiny-insecure")
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "--benchmark-disable",
                           "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3 passed" in proc.stdout
