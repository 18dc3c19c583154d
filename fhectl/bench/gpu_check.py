"""The GPU check: one prepared run for a session that is lent a GPU (``./dev gpu-check``).

Steps, in order, each a subprocess under its own time limit (coreutils ``timeout``) inside one total budget:

  nvidia-smi   the GPU's name, driver, compute capability and memory, as the driver reports them;
  numba-cuda   what numba.cuda detects (through ``fhectl.ckks.backend_cuda.cuda_available``): the device
               name and compute capability, or the simulator; this also proves fhectl imports;
  gpu-tests    ``tests/cuda/test_cuda_gpu.py`` and ``tests/cuda/test_cuda_selection.py`` on the real device
               (a skipped test fails the step: on a GPU machine it means the GPU was not seen);
  ops          ``fhectl bench --suite ops --device cuda`` at the 128-bit N = 2^16 profile, few repeats;
  bootstrap    ``fhectl bench --suite bootstrap --device cuda`` at each bootstrap profile; the first is
               required, the others run only if the budget left covers their whole time limit.

A report directory ``bench_results/DATE_COMMIT_gpu-check_GPU-SLUG/`` receives report.json and report.md
(per step: the command, exit code, seconds, status and output tail; the GPU named), logs/STEP.log (the whole
output) and suites/ (the benchmark reports of the suites). It is written after every step, so a run killed
half-way still leaves one, and it is written when steps fail. The exit code is 1 if any required step failed,
timed out or was not reached within the budget.

``--simulate`` (or FHECTL_GPU_CHECK_SIM=1) runs the same steps on the Numba CUDA simulator, without a GPU,
so the script is tested in CI: nvidia-smi is recorded but not required, the device is named as the
simulator whatever the machine has, the GPU tests are allowed to skip, and the suites run at toy sizes.
The simulator runs each CUDA thread as a Python thread, so even tiny-insecure (N = 2^10) takes over ten
minutes through the ops suite (measured on 2 shared cores); simulate mode times a generated N = 2^5 profile
instead (written into the report directory). Bootstrapping does not finish within minutes on the simulator,
not even at N = 2^5 (stopped unfinished after 3 minutes), so there the bootstrap step fails at its 60 s limit;
``--skip bootstrap`` leaves it out (listed as skipped). Simulate mode says nothing about GPU speed.

At import this module needs nothing but the standard library (only ``--detect`` imports fhectl): it must run, and write its report, in an environment
where fhectl itself does not import (that is then the numba-cuda step's failure, with its traceback).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("nvidia-smi", "numba-cuda", "gpu-tests", "ops", "bootstrap")
SIMULATOR_NAME = "Numba CUDA simulator (no GPU)"
TAIL_CHARS = 4000
MIN_STEP_S = 10  # a step is not started with less of the budget left than this
KILL_GRACE_S = 10  # after its limit, a step gets SIGTERM, then SIGKILL this much later

# Time limits in seconds. Real mode: one H200, numba JIT compilation of every kernel included (a fresh machine
# has no Numba cache), chosen so that the whole run stays well under 8 minutes.
REAL_LIMITS = {"nvidia-smi": 30, "numba-cuda": 120, "gpu-tests": 240, "ops": 240, "bootstrap": 150,
               "bootstrap-extra": 180}
REAL_BUDGET_S = 420
SIM_LIMITS = {"nvidia-smi": 30, "numba-cuda": 60, "gpu-tests": 120, "ops": 180, "bootstrap": 60,
              "bootstrap-extra": 60}
SIM_BUDGET_S = 360

GPU_TESTS = ("tests/cuda/test_cuda_gpu.py", "tests/cuda/test_cuda_selection.py")
REAL_OPS_PROFILE = "gpt2-n16-128"
BOOTSTRAP_PROFILES = ("tiny-bootstrap-insecure",)
# Simulate mode's ops profile: N = 2^5, one level, one digit. The simulator's cost is threads launched (the
# default launch shapes: 256 per block, per row), so rows count more than N: one level less took 20 % less CPU.
SIM_PROFILE_YAML = """\
# Written by the GPU check in simulate mode: N = 2^5 so the ops suite runs on the CUDA simulator in about a
# minute. NO SECURITY; it only exercises the commands.
description: "Simulator-only toy parameters for the GPU check (N=2^5)"
log_n: 5
scale_bits: 30
first_mod_bits: 40
levels: 1
dnum: 1
special_mod_bits: 40
security: none
"""



@dataclass
class Step:
    """One command of the check. ``judge(result, output)`` may turn a zero exit into a failure (with a note)."""

    name: str
    argv: list[str]
    limit_s: float
    env: dict[str, str | None] = field(default_factory=dict)  # None removes a variable
    required: bool = True  # its failure fails the check
    if_budget: bool = False  # started only if the budget left covers its whole limit (else skipped, not failed)
    judge: Callable[["StepResult", str], None] | None = None


@dataclass
class StepResult:
    name: str
    command: str
    status: str  # passed | failed | timed out | not run | skipped
    exit_code: int | None
    seconds: float
    limit_s: float | None
    required: bool
    note: str = ""
    output_tail: str = ""
    log: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped") or not self.required


# ---------------------------------------------------------------------------------------------------------------
# Running steps


def run_step(step: Step, budget_left_s: float, log_path: Path | None = None) -> StepResult:
    """Run ``step`` under min(its limit, the budget left); never raises for the step's own failures."""
    limit = min(step.limit_s, budget_left_s)
    if limit < min(step.limit_s, MIN_STEP_S) or (step.if_budget and budget_left_s < step.limit_s):
        why = f"{max(budget_left_s, 0):.0f} s of the total budget left, the step's limit is {step.limit_s:.0f} s"
        status = "skipped" if step.if_budget else "not run"
        return StepResult(step.name, shlex.join(step.argv), status, None, 0.0, step.limit_s, step.required,
                          note=f"{status}: {why}")
    argv = list(step.argv)
    if shutil.which("timeout"):  # GNU timeout signals the command's whole process group
        argv = ["timeout", "-k", str(KILL_GRACE_S), f"{limit:.0f}"] + argv
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for k, v in step.env.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    start = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return StepResult(step.name, shlex.join(argv), "failed", None, 0.0, limit, step.required,
                          note=f"could not start: {exc}")
    try:
        out, _ = proc.communicate(timeout=limit + 2 * KILL_GRACE_S)  # a backstop where `timeout` is missing
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the group this step started, and nothing else
        out, _ = proc.communicate()
        timed_out = True
    seconds = time.monotonic() - start
    text = out.decode("utf-8", "replace")
    rc = proc.returncode
    timed_out = timed_out or (argv[0] == "timeout" and rc in (124, 137))
    result = StepResult(step.name, shlex.join(argv), "timed out" if timed_out else ("passed" if rc == 0 else "failed"),
                        rc, round(seconds, 2), limit, step.required, output_tail=text[-TAIL_CHARS:])
    if timed_out:
        result.note = f"stopped at its limit of {limit:.0f} s"
    elif step.judge is not None:
        step.judge(result, text)
    if not step.required and result.status != "passed":
        result.note = "; ".join(filter(None, [result.note, "not required in this mode"]))
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(f"$ {result.command}\n{text}")
        result.log = str(log_path)
    return result


def fail(result: StepResult, note: str) -> None:
    result.status, result.note = "failed", note


# ---------------------------------------------------------------------------------------------------------------
# Judges: what a zero exit does not prove


def judge_nvidia_smi(result: StepResult, output: str) -> None:
    fields = [f.strip() for f in output.strip().splitlines()[0].split(",")] if output.strip() else []
    if result.status == "passed" and len(fields) < 3:
        fail(result, "nvidia-smi printed no GPU")


def detect() -> dict:
    """What numba.cuda detects, through fhectl (so the numba-cuda step also proves that fhectl imports).

    Run in the step's own interpreter (``python -m fhectl.bench.gpu_check --detect``): numba.cuda picks real or
    simulated CUDA once, at its first import, from NUMBA_ENABLE_CUDASIM.
    """
    import importlib.metadata as md

    from fhe_kernels.cuda.launch import simulating
    from fhectl.ckks.backend_cuda import cuda_available

    out: dict = {"simulator": bool(simulating())}
    out["usable"], out["why"] = cuda_available(allow_simulator=out["simulator"])
    for pkg in ("numba", "numba-cuda", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    if out["usable"] and not out["simulator"]:
        from numba import cuda

        dev = cuda.get_current_device()
        out["name"] = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        out["compute_capability"] = ".".join(map(str, dev.compute_capability))
    return out


def parse_detected(output: str) -> dict | None:
    for line in reversed(output.splitlines()):
        if line.startswith("DETECTED "):
            return json.loads(line[len("DETECTED "):])
    return None


def judge_detection(simulate: bool) -> Callable[[StepResult, str], None]:
    def judge(result: StepResult, output: str) -> None:
        if result.status != "passed":
            return
        found = parse_detected(output)
        if found is None:
            fail(result, "no detection line in the output")
        elif simulate and not found["simulator"]:
            fail(result, "simulate mode, but numba.cuda is not the simulator")
        elif not simulate and (found["simulator"] or not found["usable"]):
            fail(result, f"numba.cuda sees no GPU: {found['why']}")
        else:
            result.note = found["why"]

    return judge


def junit_counts(path: Path) -> dict[str, int] | None:
    try:
        suite = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def judge_tests(junit: Path, allow_skips: bool) -> Callable[[StepResult, str], None]:
    def judge(result: StepResult, output: str) -> None:
        counts = junit_counts(junit)
        if counts is None:
            if result.status == "passed":
                fail(result, "pytest wrote no JUnit report")
            return
        summary = ", ".join(f"{v} {k}" for k, v in counts.items())
        if result.status != "passed":
            result.note = summary
        elif counts["tests"] == 0:
            fail(result, f"no test ran ({summary})")
        elif counts["skipped"] and not allow_skips:
            fail(result, f"{summary}: a skipped GPU test means the GPU was not seen")
        else:
            result.note = summary + (" (skips expected: no GPU under the simulator)" if counts["skipped"] else "")

    return judge


def judge_bench(result: StepResult, output: str) -> None:
    if "unknown suite" in output:
        fail(result, "this checkout's `fhectl bench` has no such suite (for bootstrap: "
                     "fhectl/bench/bootstrap_suite.py is not merged yet)")
        return
    if result.status == "passed":
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        reports = [ln for ln in lines if (ROOT / ln).is_dir() or Path(ln).is_dir()]
        result.note = f"report: {reports[-1]}" if reports else "no report directory printed"


# ---------------------------------------------------------------------------------------------------------------
# The plan


@dataclass
class Options:
    simulate: bool = False
    out: Path = Path("bench_results")
    budget_s: float | None = None
    only: tuple[str, ...] = STEPS
    ops_profile: str | None = None
    ops_repeat: int | None = None
    bootstrap_profiles: tuple[str, ...] = BOOTSTRAP_PROFILES
    baseline: str = "none"
    commit: str | None = None


def plan(opts: Options, report_dir: Path) -> list[Step]:
    """The steps that follow identification, in order (their reports go into ``report_dir``)."""
    py = sys.executable
    limits = SIM_LIMITS if opts.simulate else REAL_LIMITS
    cuda_env = {"NUMBA_ENABLE_CUDASIM": "1"} if opts.simulate else {"NUMBA_ENABLE_CUDASIM": None}
    if opts.simulate:  # simulated uint64 arithmetic warns on the wraparound the kernels rely on
        cuda_env["PYTHONWARNINGS"] = "ignore:overflow encountered:RuntimeWarning"
    suites = str(report_dir / "suites")
    fhectl = [py, "-m", "fhectl.cli", "bench", "--device", "cuda", "--baseline", opts.baseline, "--out", suites]
    steps = []
    if "gpu-tests" in opts.only:
        junit = report_dir / "logs" / "gpu-tests.xml"
        steps.append(Step("gpu-tests", [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                                        f"--junitxml={junit}", *GPU_TESTS],
                          limits["gpu-tests"], cuda_env, judge=judge_tests(junit, allow_skips=opts.simulate)))
    if "ops" in opts.only:
        if opts.simulate and opts.ops_profile is None:
            profile = report_dir / "sim-profile.yaml"
            profile.write_text(SIM_PROFILE_YAML)
            profile_args = ["--profile", str(profile), "--insecure"]
        else:
            profile_args = ["--profile", opts.ops_profile or REAL_OPS_PROFILE] + (["--insecure"] if opts.simulate else [])
        repeat = opts.ops_repeat or (1 if opts.simulate else 3)
        warmup = "0" if opts.simulate else "1"  # real mode: the warm-up keeps JIT compilation out of the times
        steps.append(Step("ops", fhectl + ["--suite", "ops", *profile_args, "--repeat", str(repeat),
                                           "--warmup", warmup], limits["ops"], cuda_env, judge=judge_bench))
    if "bootstrap" in opts.only:
        for i, profile in enumerate(opts.bootstrap_profiles):
            insecure = ["--insecure"] if ("insecure" in profile or opts.simulate) else []
            steps.append(Step("bootstrap" if i == 0 else f"bootstrap-{profile}",
                              fhectl + ["--suite", "bootstrap", "--profile", profile, *insecure, "--repeat", "1",
                                        "--warmup", "0" if opts.simulate else "1"],
                              limits["bootstrap" if i == 0 else "bootstrap-extra"], cuda_env, if_budget=(i > 0),
                              judge=judge_bench))
    return steps


def identity_steps(opts: Options) -> list[Step]:
    limits = SIM_LIMITS if opts.simulate else REAL_LIMITS
    cuda_env = {"NUMBA_ENABLE_CUDASIM": "1"} if opts.simulate else {"NUMBA_ENABLE_CUDASIM": None}
    steps = []
    if "nvidia-smi" in opts.only:
        # Recorded under the simulator too, but not required there: CI machines have no driver.
        steps.append(Step("nvidia-smi", ["nvidia-smi", "--query-gpu=name,driver_version,compute_cap,memory.total",
                                         "--format=csv,noheader"], limits["nvidia-smi"], required=not opts.simulate,
                          judge=judge_nvidia_smi))
    if "numba-cuda" in opts.only:
        steps.append(Step("numba-cuda", [sys.executable, "-m", "fhectl.bench.gpu_check", "--detect"],
                          limits["numba-cuda"], cuda_env,
                          judge=judge_detection(opts.simulate)))
    return steps


# ---------------------------------------------------------------------------------------------------------------
# The device, the commit, the report


def device_identity(simulate: bool, results: list[StepResult]) -> dict:
    """The device the check ran on. Under the simulator it is the simulator, whatever nvidia-smi says."""
    by_name = {r.name: r for r in results}
    smi = by_name.get("nvidia-smi")
    driver = {}
    if smi is not None and smi.status == "passed":
        fields = [f.strip() for f in smi.output_tail.strip().splitlines()[0].split(",")]
        driver = dict(zip(("name", "driver", "compute_capability", "memory"), fields))
    detected = parse_detected(by_name["numba-cuda"].output_tail) if "numba-cuda" in by_name else None
    if simulate:  # what nvidia-smi said is in its step, never in the device's name
        return {"name": SIMULATOR_NAME, "slug": "cudasim", "simulator": True, "numba_cuda": detected}
    name = driver.get("name") or (detected or {}).get("name")
    return {"name": name or "no GPU detected", "slug": slug(name) if name else "no-gpu", "simulator": False,
            "driver": driver.get("driver"),
            "compute_capability": driver.get("compute_capability") or (detected or {}).get("compute_capability"),
            "memory": driver.get("memory"), "numba_cuda": detected}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def git_commit() -> tuple[str, bool | None]:
    """(commit, dirty). FHECTL_GPU_CHECK_COMMIT names it where the copy of the tree has no .git (device machines)."""
    given = os.environ.get("FHECTL_GPU_CHECK_COMMIT")
    if given:
        return given, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=30).stdout.strip() != ""
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "nocommit", None


def make_report_dir(out_root: Path, created: _dt.datetime, commit: str, device_slug: str) -> Path:
    base = f"{created.strftime('%Y-%m-%d')}_{commit[:8]}_gpu-check_{device_slug}"
    path, n = out_root / base, 1
    while path.exists():
        n += 1
        path = out_root / f"{base}_{n}"
    path.mkdir(parents=True)
    return path


def render_markdown(report: dict) -> str:
    dev = report["device"]
    lines = [f"# GPU check: {dev['name']}", ""]
    if dev["simulator"]:
        lines += ["**Simulate mode: no GPU was used.** The steps ran on the Numba CUDA simulator at toy sizes; "
                  "their times say nothing about GPU speed.", ""]
    else:
        lines += [f"GPU: {dev['name']}, driver {dev.get('driver')}, compute capability "
                  f"{dev.get('compute_capability')}, memory {dev.get('memory')}.", ""]
    dirty = {True: " (dirty tree)", False: "", None: ""}[report["dirty"]]
    lines += [f"Commit {report['commit']}{dirty}, {report['created']}, {report['python']}.",
              f"Environment: {report['environment']}.",
              f"Verdict: **{'passed' if report['passed'] else 'FAILED'}** in {report['seconds']:.0f} s "
              f"(budget {report['budget_s']:.0f} s).", "",
              f"Command: `{report['command']}`", "",
              "| step | status | seconds | limit | exit code | note |", "|---|---|---|---|---|---|"]
    for s in report["steps"]:
        note = s["note"].replace("|", "\\|").replace("\n", " ")
        limit = "" if s["limit_s"] is None else f"{s['limit_s']:.0f}"
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {limit} | {s['exit_code']} | {note} |")
    for s in report["steps"]:
        lines += ["", f"## {s['name']}: {s['status']}", ""]
        if not s["command"]:  # left out on request
            lines.append(f"_{s['note']}_")
            continue
        tail = "\n".join(s["output_tail"].splitlines()[-40:])
        lines += ["```", f"$ {s['command']}", tail, "```"]
    return "\n".join(lines) + "\n"


def write_report(report_dir: Path, report: dict) -> None:
    for name, text in (("report.json", json.dumps(report, indent=2) + "\n"), ("report.md", render_markdown(report))):
        tmp = report_dir / f".{name}.partial"
        tmp.write_text(text)
        os.replace(tmp, report_dir / name)  # a reader sees the old file or the new one, never half


# ---------------------------------------------------------------------------------------------------------------
# The whole check


def run_check(opts: Options, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> tuple[int, Path]:
    """Run every step, write the report after each; (exit code, report directory)."""
    budget = opts.budget_s or (SIM_BUDGET_S if opts.simulate else REAL_BUDGET_S)
    start = time.monotonic()
    created = _dt.datetime.now(_dt.timezone.utc)
    commit, dirty = (opts.commit, None) if opts.commit else git_commit()

    def left() -> float:
        return budget - (time.monotonic() - start)

    def announce(r: StepResult) -> None:
        log(f"[gpu-check] {r.name}: {r.status} in {r.seconds:.1f} s" + (f" ({r.note})" if r.note else ""))

    results: list[StepResult] = []
    for step in identity_steps(opts):
        log(f"[gpu-check] {step.name} ...")
        results.append(run_step(step, left()))
        announce(results[-1])
    device = device_identity(opts.simulate, results)
    report_dir = make_report_dir(Path(opts.out), created, commit, device["slug"])
    for r in results:  # the identity steps ran before the directory existed
        path = report_dir / "logs" / f"{r.name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"$ {r.command}\n{r.output_tail}")
        r.log = str(path)
    report = {
        "kind": "gpu-check", "schema_version": 1, "created": created.isoformat(timespec="seconds"),
        "command": shlex.join([sys.executable, "-m", "fhectl.bench.gpu_check", *sys.argv[1:]]), "commit": commit, "dirty": dirty, "simulate": opts.simulate,
        "device": device, "python": f"Python {sys.version.split()[0]} ({sys.executable})",
        "environment": os.environ.get("FHECTL_GPU_CHECK_ENV", "the calling interpreter"),
        "budget_s": budget, "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
        "steps": [], "passed": False, "seconds": 0.0,
    }

    def save() -> None:
        results.sort(key=lambda r: next(i for i, n in enumerate(STEPS) if r.name == n or r.name.startswith(n + "-")))
        report["steps"] = [asdict(r) for r in results]
        report["passed"] = all(r.ok for r in results)
        report["seconds"] = round(time.monotonic() - start, 1)
        write_report(report_dir, report)

    for name in STEPS:
        if name not in opts.only:  # left out on request: shown, never silently missing
            results.append(StepResult(name, "", "skipped", None, 0.0, None, True, note="left out by --only/--skip"))
    save()
    known = ", ".join(f"{k} {device[k]}" for k in ("driver", "compute_capability", "memory") if device.get(k))
    log(f"[gpu-check] device: {device['name']}" + (f" ({known})" if known else "") + f"; report: {report_dir}")
    for step in plan(opts, report_dir):
        log(f"[gpu-check] {step.name} ({'if the budget allows,' if step.if_budget else 'at most'} "
            f"{min(step.limit_s, max(left(), 0)):.0f} s) ...")
        results.append(run_step(step, left(), report_dir / "logs" / f"{step.name}.log"))
        announce(results[-1])
        save()
    log(summary_table(report))
    return (0 if report["passed"] else 1), report_dir


def summary_table(report: dict) -> str:
    rows = [f"GPU check on {report['device']['name']}: {'passed' if report['passed'] else 'FAILED'} "
            f"in {report['seconds']:.0f} s"]
    for s in report["steps"]:
        rows.append(f"  {s['name']:<28} {s['status']:<10} {s['seconds']:>7.1f} s  exit {s['exit_code']}")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="./dev gpu-check", description=__doc__.split("\n\n")[0])
    p.add_argument("--simulate", action="store_true", default=os.environ.get("FHECTL_GPU_CHECK_SIM") == "1",
                   help="Run on the Numba CUDA simulator at toy sizes (also FHECTL_GPU_CHECK_SIM=1).")
    p.add_argument("--out", type=Path, default=ROOT / "bench_results", help="Where the report directory goes.")
    p.add_argument("--budget", type=float, help=f"Total seconds (default {REAL_BUDGET_S}; {SIM_BUDGET_S} simulated).")
    p.add_argument("--only", help=f"Comma-separated steps to run: {', '.join(STEPS)} (default all).")
    p.add_argument("--skip", help="Comma-separated steps to leave out (listed as skipped in the report).")
    p.add_argument("--ops-profile", help=f"Profile of the ops suite (default {REAL_OPS_PROFILE}; simulated: N=2^5).")
    p.add_argument("--ops-repeat", type=int, help="Timed repeats of the ops suite (default 3; simulated 1).")
    p.add_argument("--bootstrap-profiles", default=",".join(BOOTSTRAP_PROFILES),
                   help="Comma-separated profiles of the bootstrap suite; the first is required, the others run "
                        "only if the budget left covers their limit.")
    p.add_argument("--baseline", choices=("none", "openfhe"), default="none",
                   help="Baseline of the suites (default none: the OpenFHE timings are CPU ones and its wheel "
                        "needs CPython 3.10, which the device image lacks).")
    p.add_argument("--commit", help="Commit to name in the report (default: git, else FHECTL_GPU_CHECK_COMMIT).")
    a = p.parse_args(argv)
    only = tuple(s.strip() for s in (a.only or ",".join(STEPS)).split(",") if s.strip())
    skip = {s.strip() for s in (a.skip or "").split(",") if s.strip()}
    unknown = (set(only) | skip) - set(STEPS)
    if unknown:
        p.error(f"unknown step(s) {', '.join(sorted(unknown))}; choose from {', '.join(STEPS)}")
    profiles = tuple(s.strip() for s in a.bootstrap_profiles.split(",") if s.strip())
    return Options(simulate=a.simulate, out=a.out, budget_s=a.budget, only=tuple(s for s in only if s not in skip),
                   ops_profile=a.ops_profile, ops_repeat=a.ops_repeat, bootstrap_profiles=profiles,
                   baseline=a.baseline, commit=a.commit)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--detect"]:  # the numba-cuda step, in its own interpreter
        print("DETECTED " + json.dumps(detect()))
        return 0
    code, report_dir = run_check(parse_args(argv))
    print(report_dir)  # data on stdout: where the report is
    return code


if __name__ == "__main__":
    sys.exit(main())
