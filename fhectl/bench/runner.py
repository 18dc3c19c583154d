"""Runs benchmark suites and assembles one report.

Suites:
  ops     one CKKS operation at a time, fhectl and (with --baseline openfhe)
          OpenFHE on identical parameters, timed interleaved (pairs of back-to-back
          repeats, alternating order), so machine noise hits both columns alike;
  layers  the encrypted GPT-2 building blocks (four linear shapes, attention,
          softmax, GELU, LayerNorm) at each batch size (tokens per ciphertext);
  block   one whole encrypted GPT-2 block at each batch size;
  bootstrap
          one bootstrapping, fhectl and (with --baseline openfhe) OpenFHE's EvalBootstrap,
          interleaved round by round: time, precision, levels left, key bytes and peak
          memory (fhectl.bench.bootstrap_suite).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable

from fhectl.bench import ops as ops_suite
from fhectl.bench.environment import environment
from fhectl.bench.estimate import Estimate, estimate
from fhectl.bench.report import git_state, new_report, write_report
from fhectl.bench.timing import peak_rss_bytes
from fhectl.ckks.params import Parameters
from fhectl.errors import FhectlError, InputError

SUITES = ("ops", "layers", "block", "bootstrap")


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (runnable processes), where the system reports them.

    Recorded because interleaving cancels load only to first order: fhectl's and OpenFHE's kernels respond
    differently to sharing cores (measured on 2 cores: at a load average near 5, fhectl's decrypt went from 0.02
    to 0.13-0.14 of OpenFHE's time, with a tight interval), so a ratio measured on a busy machine is flagged.
    """
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def openfhe_params_for(params: Parameters):
    """OpenFHE parameters matching ours: same N, first-modulus bits, scale bits, depth and digits."""
    from fhectl.bench.openfhe_baseline import OpenFHEParams

    lit = params.literal
    return OpenFHEParams(
        log_n=lit.log_n,
        first_mod_bits=lit.first_mod_bits,
        scale_bits=lit.scale_bits,
        levels=lit.levels,
        dnum=lit.dnum,
        secure=params.security_bits >= 128,
    )


def _ops_result(name: str, impl: str, device: str, entry: dict) -> dict:
    return {"suite": "ops", "name": name, "impl": impl, "batch_size": None, "device": device,
            "timing": entry["timing"], "precision_bits": entry.get("precision_bits"), "tokens_per_s": None,
            "counters": {}, "levels_used": None, "note": entry.get("note")}


def run_ops(report: dict, params: Parameters, device: str, baseline: str | None, repeat: int, warmup: int,
            tick: Callable[[str], None]) -> None:
    """fhectl's operations, and with ``baseline == "openfhe"`` OpenFHE's, timed interleaved in pairs."""
    ours = ops_suite.fhectl_ops(params, device)
    report["sizes"].update({f"fhectl_{k}": v for k, v in ours.sizes.items()})
    if baseline == "openfhe":
        try:
            from fhectl.bench.openfhe_baseline import openfhe_ops
        except ImportError as exc:
            raise FhectlError(f"--baseline openfhe: the OpenFHE baseline cannot be imported ({exc})") from None
        base = openfhe_ops(openfhe_params_for(params))
        timed = ops_suite.time_interleaved(ours, base, repeat, warmup, progress=lambda n: tick(f"fhectl + openfhe {n}"))
        for name, res in timed.items():
            mine = _ops_result(name, "fhectl", ours.device, res["ours"])
            mine["ratio_to_baseline"] = res["ratio"]
            report["results"] += [mine, _ops_result(name, "openfhe", base.device, res["base"])]
        report["environment"]["openfhe"] = base.describe()
        report["config"]["interleaved"] = True
    else:
        for name, entry in ops_suite.time_ops(ours, repeat, warmup, progress=lambda n: tick(f"fhectl {n}")).items():
            report["results"].append(_ops_result(name, "fhectl", ours.device, entry))
    memory = ours.memory()
    if memory:
        report["memory"]["device"] = memory


def run_encrypted_gpt2(report: dict, params: Parameters, suites: list[str], batch_sizes: list[int], device: str,
                       repeat: int, warmup: int, tick: Callable[[str], None], model_config=None) -> None:
    from fhectl.bench import gpt2_suite

    for result in gpt2_suite.run(params, suites, batch_sizes, device=device, repeat=repeat, warmup=warmup,
                                 tick=tick, model_config=model_config):
        report["results"].append(result)


def check_arguments(params: Parameters, suites: list[str], batch_sizes: list[int], repeat: int, warmup: int,
                    model_config=None, bootstrap_slots: int | None = None,
                    rotation_keys: str | None = None, openfhe_iterations: int | None = None) -> None:
    """Everything that can be refused before minutes of work, refused with one message."""
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise InputError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if repeat < 1 or warmup < 0:
        raise InputError("--repeat must be >= 1 and warm-up >= 0")
    if any(s in suites for s in ("layers", "block")):
        from fhectl.bench.gpt2_suite import check_batch_sizes
        from fhectl.gpt2.config import GPT2Config

        check_batch_sizes(params, model_config or GPT2Config.gpt2_small(), batch_sizes)
    if "bootstrap" in suites:
        from fhectl.bench.bootstrap_suite import bootstrap_config

        bootstrap_config(params, bootstrap_slots, rotation_keys)  # a chain too short to bootstrap, a slot
        # count the sparse-slot circuit cannot take or an unknown split is refused here, before any key is made
    elif bootstrap_slots is not None:
        raise InputError("--slots is an option of the bootstrap suite (--suite bootstrap)")
    elif rotation_keys is not None:
        raise InputError("--rotation-keys is an option of the bootstrap suite (--suite bootstrap)")
    elif openfhe_iterations is not None:
        raise InputError("--openfhe-iterations is an option of the bootstrap suite (--suite bootstrap)")


def estimate_run(params: Parameters, suites: list[str], batch_sizes: list[int], repeat: int, warmup: int,
                 baseline: str | None, model_config=None, bootstrap_options: dict | None = None) -> Estimate:
    n_embd = model_config.n_embd if model_config is not None else None
    b = bootstrap_options or {}
    return estimate(params, suites, batch_sizes, repeat, warmup, baseline, n_embd, b.get("isolated"),
                    b.get("rounds_per_block") or 2, b.get("openfhe_iterations") or 1)


def run_benchmarks(params: Parameters, suites: list[str], batch_sizes: list[int], device: str,
                   baseline: str | None, repeat: int, warmup: int, out_root: Path,
                   tick: Callable[[str], None] = lambda s: None, model_config=None,
                   bootstrap_options: dict | None = None) -> Path:
    """``bootstrap_options``: SuiteOptions fields of the bootstrap suite (threads, isolated, rounds_per_block,
    block_timeout_s); None values keep the defaults."""
    b = bootstrap_options or {}
    check_arguments(params, suites, batch_sizes, repeat, warmup, model_config, b.get("slots"), b.get("rotation_keys"),
                    b.get("openfhe_iterations"))
    cost = estimate_run(params, suites, batch_sizes, repeat, warmup, baseline, model_config, bootstrap_options)
    env = environment()
    config = {"suites": suites, "batch_sizes": batch_sizes, "repeat": repeat, "warmup": warmup, "device": device,
              "baseline": baseline, "interleaved": False, "estimate": cost.describe(),
              "randomness": "OS CSPRNG for keys and encryption; numpy default_rng for data"}
    report = new_report(sys.argv, env, params.describe(), config)
    report["config"]["load_before"] = load_average()
    start = time.perf_counter()
    if "ops" in suites:
        run_ops(report, params, device, baseline, repeat, warmup, tick)
    gpt2_suites = [s for s in suites if s in ("layers", "block")]
    if gpt2_suites:
        run_encrypted_gpt2(report, params, gpt2_suites, batch_sizes, device, repeat, warmup, tick, model_config)
    stopped = None
    if "bootstrap" in suites:
        stopped = run_bootstrap(report, params, device, baseline, repeat, warmup, Path(out_root), tick,
                                bootstrap_options)
    devices = {r["device"] for r in report["results"] if r["impl"] == "fhectl"}
    report["config"]["device"] = "+".join(sorted(devices)) or device
    report["config"]["wall_s"] = time.perf_counter() - start
    report["config"]["load_after"] = load_average()
    report["memory"]["peak_rss_bytes"] = peak_rss_bytes()
    path = write_report(report, out_root)
    if stopped is not None:
        raise type(stopped)(f"{stopped}; partial report written: {path}", stopped.exit_code)
    return path


def run_bootstrap(report: dict, params: Parameters, device: str, baseline: str | None, repeat: int, warmup: int,
                  out_root: Path, tick: Callable[[str], None], bootstrap_options: dict | None = None):
    """The bootstrap suite into ``report``; returns None, or the ``SuiteInterrupted`` it stopped with (the report
    then holds the rounds that were complete, and is still written)."""
    from fhectl.bench import bootstrap_suite

    extra = {k: v for k, v in (bootstrap_options or {}).items() if v is not None}
    options = bootstrap_suite.SuiteOptions(repeat=repeat, warmup=warmup, baseline=baseline, device=device, **extra)
    try:
        bootstrap_suite.run_suite(report, params, options, out_root, tick, commit=git_state().get("commit"))
    except bootstrap_suite.SuiteInterrupted as exc:
        if "bootstrap" not in report:  # nothing measured: nothing to write
            raise
        return exc
    return None
