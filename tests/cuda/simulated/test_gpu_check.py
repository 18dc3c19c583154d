"""The GPU check (``./dev gpu-check``, fhectl/bench/gpu_check.py) in simulate mode, with no GPU.

What a session lent a GPU will run must already work here: the report is written (also when steps fail),
names the simulator and never a GPU, and a failing or timed-out step makes the exit code nonzero. The whole
simulated check leaves the bootstrap step out: one bootstrapping is thousands of kernel launches, minutes even
at N = 2^5 on the simulator (tests/cuda/simulated/test_bootstrap_sim.py simulates two of its steps instead).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from fhectl.bench import gpu_check
from fhectl.bench.gpu_check import SIMULATOR_NAME, Step, judge_tests, run_step

ROOT = Path(__file__).resolve().parents[3]


def run_gpu_check(*args: str, timeout: int = 420) -> tuple[subprocess.CompletedProcess, dict, Path]:
    """`./dev gpu-check --simulate ARGS` as the dev script runs it, in this test's interpreter."""
    proc = subprocess.run([sys.executable, "-m", "fhectl.bench.gpu_check", "--simulate", *args], cwd=ROOT,
                          env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"), capture_output=True, text=True,
                          timeout=timeout)
    report_dir = Path(proc.stdout.strip().splitlines()[-1])
    return proc, json.loads((report_dir / "report.json").read_text()), report_dir


def test_simulated_check_passes_and_names_the_simulator(tmp_path):
    proc, report, report_dir = run_gpu_check("--out", str(tmp_path), "--skip", "bootstrap")
    steps = {s["name"]: s for s in report["steps"]}
    assert proc.returncode == 0 and report["passed"], proc.stderr[-4000:]
    assert report_dir.parent == tmp_path and report_dir.name.split("_")[2:] == ["gpu-check", "cudasim"]
    assert report["simulate"] and report["device"]["simulator"] and report["device"]["name"] == SIMULATOR_NAME
    assert list(steps) == ["nvidia-smi", "numba-cuda", "gpu-tests", "ops", "bootstrap"]
    assert steps["bootstrap"]["status"] == "skipped" and "--skip" in steps["bootstrap"]["note"]
    for name in ("numba-cuda", "gpu-tests", "ops"):
        s = steps[name]
        assert s["status"] == "passed" and s["exit_code"] == 0 and s["seconds"] > 0 and s["command"], s
    assert json.loads(steps["numba-cuda"]["output_tail"].split("DETECTED ", 1)[1])["simulator"] is True
    assert "skipped" in steps["gpu-tests"]["note"]  # test_cuda_gpu.py needs real hardware
    assert "--device cuda" in steps["ops"]["command"] and "--suite ops" in steps["ops"]["command"]
    suite_reports = list((report_dir / "suites").glob("*/report.json"))
    assert len(suite_reports) == 1 and json.loads(suite_reports[0].read_text())["config"]["device"] == "cuda"
    md = (report_dir / "report.md").read_text()
    assert md.startswith(f"# GPU check: {SIMULATOR_NAME}") and "no GPU was used" in md
    assert "NVIDIA" not in json.dumps(report["device"]) and "no GPU" in report["device"]["name"]


def test_a_failing_step_makes_the_exit_code_nonzero(tmp_path):
    proc, report, report_dir = run_gpu_check("--out", str(tmp_path), "--only", "numba-cuda,bootstrap",
                                             "--bootstrap-profiles", "no-such-profile", timeout=120)
    steps = {s["name"]: s for s in report["steps"]}
    assert proc.returncode == 1 and not report["passed"]
    assert steps["bootstrap"]["status"] == "failed" and steps["bootstrap"]["exit_code"] not in (0, None)
    assert "no-such-profile" in steps["bootstrap"]["output_tail"]
    assert "FAILED" in (report_dir / "report.md").read_text()


def test_a_step_past_its_limit_is_timed_out_and_fails():
    step = Step("slow", [sys.executable, "-c", "import time; time.sleep(60)"], limit_s=1)
    result = run_step(step, budget_left_s=100)
    assert result.status == "timed out" and not result.ok and result.seconds < 20
    assert result.command.startswith("timeout ")


def test_a_required_step_beyond_the_budget_is_not_run_and_fails():
    result = run_step(Step("late", ["true"], limit_s=60), budget_left_s=3)
    assert result.status == "not run" and not result.ok and result.exit_code is None
    optional = run_step(Step("extra", ["true"], limit_s=60, if_budget=True), budget_left_s=30)
    assert optional.status == "skipped" and optional.ok


def test_skipped_gpu_tests_fail_on_real_hardware_only(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuites><testsuite tests="3" failures="0" errors="0" skipped="2"/></testsuites>')
    for allow_skips, want in ((False, "failed"), (True, "passed")):
        result = gpu_check.StepResult("gpu-tests", "pytest", "passed", 0, 1.0, 10, True)
        judge_tests(junit, allow_skips)(result, "")
        assert result.status == want, result.note


def test_dev_script_runs_the_check(tmp_path):
    env = dict(os.environ, FHECTL_VENV=sys.prefix)
    proc = subprocess.run([str(ROOT / "dev"), "gpu-check", "--help"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "--simulate" in proc.stdout, proc.stderr
