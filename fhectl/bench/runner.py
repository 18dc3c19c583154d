"""Runs benchmark suites and assembles one report.

Suites:
  ops     one CKKS operation at a time, fhectl and (with --baseline openfhe)
          OpenFHE on identical parameters in the same run, so machine noise
          hits both columns alike;
  layers  the encrypted GPT-2 building blocks (four linear shapes, attention,
          softmax, GELU, LayerNorm) at each batch size (tokens per ciphertext);
  block   one whole encrypted GPT-2 block at each batch size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from fhectl.bench import ops as ops_suite
from fhectl.bench.environment import environment
from fhectl.bench.report import new_report, write_report
from fhectl.bench.timing import peak_rss_bytes
from fhectl.ckks.params import Parameters
from fhectl.errors import FhectlError, InputError

SUITES = ("ops", "layers", "block")


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


def run_ops(report: dict, params: Parameters, device: str, baseline: str | None, repeat: int, warmup: int,
            tick: Callable[[str], None]) -> None:
    ours = ops_suite.time_fhectl_ops(params, repeat=repeat, warmup=warmup, device=device,
                                     progress=lambda name: tick(f"fhectl {name}"))
    for name, res in ours["results"].items():
        report["results"].append({"suite": "ops", "name": name, "impl": "fhectl", "batch_size": None,
                                  "device": ours["device"], "timing": res["timing"],
                                  "precision_bits": res.get("precision_bits"), "tokens_per_s": None,
                                  "counters": {}, "levels_used": None, "note": res.get("note")})
    report["sizes"].update({f"fhectl_{k}": v for k, v in ours["sizes"].items()})
    if ours.get("device_memory"):
        report["memory"]["device"] = ours["device_memory"]
    if baseline == "openfhe":
        try:
            from fhectl.bench.openfhe_baseline import time_openfhe_ops
        except ImportError as exc:
            raise FhectlError(f"--baseline openfhe: the OpenFHE baseline cannot be imported ({exc})") from None
        base = time_openfhe_ops(openfhe_params_for(params), repeat=repeat, warmup=warmup)
        for name, res in base["results"].items():
            report["results"].append({"suite": "ops", "name": name, "impl": "openfhe", "batch_size": None,
                                      "device": "cpu", "timing": res["timing"],
                                      "precision_bits": res.get("precision_bits"), "tokens_per_s": None,
                                      "counters": {}, "levels_used": None, "note": res.get("note")})
            tick(f"openfhe {name}")
        report["environment"]["openfhe"] = base.get("context", {})


def run_encrypted_gpt2(report: dict, params: Parameters, suites: list[str], batch_sizes: list[int], device: str,
                       repeat: int, warmup: int, tick: Callable[[str], None], model_config=None) -> None:
    from fhectl.gpt2 import bench_suite

    for result in bench_suite.run(params, suites, batch_sizes, device=device, repeat=repeat, warmup=warmup,
                                  tick=tick, model_config=model_config):
        report["results"].append(result)


def run_benchmarks(params: Parameters, suites: list[str], batch_sizes: list[int], device: str,
                   baseline: str | None, repeat: int, warmup: int, out_root: Path,
                   tick: Callable[[str], None] = lambda s: None, model_config=None) -> Path:
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise InputError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    if repeat < 1 or warmup < 0:
        raise InputError("--repeat must be >= 1 and warm-up >= 0")
    env = environment()
    config = {"suites": suites, "batch_sizes": batch_sizes, "repeat": repeat, "warmup": warmup, "device": device,
              "baseline": baseline, "randomness": "OS CSPRNG for keys and encryption; numpy default_rng for data"}
    report = new_report(sys.argv, env, params.describe(), config)
    if "ops" in suites:
        run_ops(report, params, device, baseline, repeat, warmup, tick)
    gpt2_suites = [s for s in suites if s in ("layers", "block")]
    if gpt2_suites:
        run_encrypted_gpt2(report, params, gpt2_suites, batch_sizes, device, repeat, warmup, tick, model_config)
    devices = {r["device"] for r in report["results"] if r["impl"] == "fhectl"}
    report["config"]["device"] = "+".join(sorted(devices)) or device
    report["memory"]["peak_rss_bytes"] = peak_rss_bytes()
    return write_report(report, out_root)
