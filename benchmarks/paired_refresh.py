"""Paired against separate bootstrapping refreshes, interleaved in one process (``BootstrapRefresh.pair``).

    python benchmarks/paired_refresh.py [--profile boot-n16-128] [--rounds 3] [--bound 4] [--out bench_results]

Each round refreshes the same two real ciphertexts (level 1, values uniform in [-bound, bound]) both ways: paired
(one complex bootstrapping, ``BootstrapRefresh._pair``) and separate (two real ones, ``pair=False``), in
alternating order (A B, then B A, ...), after one untimed warm-up of each (Numba compilation, the encoded
diagonals, the complex circuit's SlotsToCoeffs group). It reports the seconds of each, the per-round ratio
paired / separate (median, min - max) and each output's largest error against the input's own decryption (the
refresh's error alone: the inputs' encryption noise is common to both ways) next to the refresh model's bound for
it (``RefreshModel.error(B)`` alone, twice that paired). Keys come from the OS CSPRNG; the report goes to
OUT/<date>_<commit>_cpu_<profile>_paired-refresh/ (report.json, report.md).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from fhectl.bench.environment import environment
from fhectl.bench.report import git_state, new_report, report_dir_name
from fhectl.ckks.bootstrap import rotation_levels
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import load_parameters
from fhectl.circuits.bootstrap_refresh import (BootstrapRefresh, BootstrapStats, bootstrap_config, bootstrap_keys,
                                               bootstrap_rotation_steps, server_bootstrapper)
from fhectl.circuits.refresh import Client
from fhectl.errors import FhectlError


def _errors(client, outs, want) -> list[float]:
    n = client.ctx.params.slots
    return [float(np.max(np.abs(client.decryptor.decrypt(o, n).real - w))) for o, w in zip(outs, want)]


def run(profile: str, rounds: int, bound: float) -> dict:
    params = load_parameters(profile, allow_insecure=True)
    ctx = CKKSContext(params)
    config = bootstrap_config(params)
    levels = {s % params.slots: lvl for s, lvl in rotation_levels(params, config).items() if lvl < params.max_level}
    t0 = time.perf_counter()
    client = Client(ctx, bootstrap_rotation_steps(params), conjugation=True, key_levels=levels)
    ev = client.server_evaluator()
    boot = server_bootstrapper(ctx, ev, bootstrap_keys(client, config))
    setup = time.perf_counter() - t0
    rng = np.random.default_rng()
    want = [rng.uniform(-bound, bound, params.slots) for _ in range(2)]
    cts = [client.encryptor.encrypt(w, level=1) for w in want]
    want = [client.decryptor.decrypt(ct, params.slots).real for ct in cts]  # errors against the input's decryption
    ways = {"paired": BootstrapRefresh(ev, boot, BootstrapStats(), pair=True),
            "separate": BootstrapRefresh(ev, boot, BootstrapStats(), pair=False)}
    domains = [(-bound, bound)] * 2
    for refresh in ways.values():  # warm-up, untimed
        refresh.refresh(cts, "warm-up", domains=domains)
    seconds = {k: [] for k in ways}
    errors = {k: [] for k in ways}
    for r in range(rounds):
        order = list(ways) if r % 2 == 0 else list(ways)[::-1]
        for k in order:
            t = time.perf_counter()
            outs = ways[k].refresh(cts, "timed", domains=domains)
            seconds[k].append(time.perf_counter() - t)
            errors[k].append(max(_errors(client, outs, want)))
    ratios = [p / s for p, s in zip(seconds["paired"], seconds["separate"])]
    model = ways["paired"].model
    return {
        "profile": profile, "ring_degree": params.ring_degree, "rounds": rounds, "bound": bound,
        "setup_seconds": setup,
        "seconds": seconds,
        "ratio_paired_over_separate": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                                       "per_round": ratios},
        "max_abs_error": errors,
        "model_error": {"separate": model.error(bound), "paired": 2 * model.error(bound)},
        "bootstraps_per_refresh": {k: ways[k].stats.bootstraps // (rounds + 1) for k in ways},
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def markdown(report: dict) -> str:
    r = report["results"]
    ratio = r["ratio_paired_over_separate"]
    lines = [f"# Paired against separate bootstrapping refreshes: {r['profile']} (N = {r['ring_degree']})", "",
             f"- created: {report['created']}", f"- command: `{' '.join(report['command'])}`",
             f"- commit: `{report['environment']['git']['commit']}`" + (" (dirty tree)" if report['environment']['git']['dirty'] else ""),
             f"- machine: {report['environment'].get('cpu', '?')}; load average before: {report['load_before']}, after: {report['load_after']}",
             f"- two real ciphertexts at level 1, values uniform in [-{r['bound']:g}, {r['bound']:g}], refreshed both ways "
             f"in each of {r['rounds']} rounds, alternating which goes first, after one untimed warm-up of each; "
             f"key set-up {r['setup_seconds']:.1f} s; peak RSS {r['peak_rss_gib']:.2f} GiB", "",
             "| way | bootstraps | seconds per round (median) [min - max] | max abs error vs input, worst round | model bound |",
             "|---|---|---|---|---|"]
    for k in ("paired", "separate"):
        s = r["seconds"][k]
        lines.append(f"| {k} | {r['bootstraps_per_refresh'][k]} | {statistics.median(s):.2f} [{min(s):.2f} - {max(s):.2f}] | "
                     f"2^{math.log2(max(r['max_abs_error'][k])):.1f} | 2^{math.log2(r['model_error'][k]):.1f} |")
    lines += ["", f"paired / separate time: {ratio['median']:.3f} (median of {r['rounds']} per-round ratios, min - max "
              f"{ratio['min']:.3f} - {ratio['max']:.3f})", ""]
    return "\n".join(lines)


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
        return value
    return parse


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="boot-n16-128")
    ap.add_argument("--rounds", type=_positive(int), default=3)
    ap.add_argument("--bound", type=_positive(float), default=4.0)
    ap.add_argument("--out", type=Path, default=Path("bench_results"))
    a = ap.parse_args(argv)  # a bad option: usage and exit 2
    report = new_report(["python", "benchmarks/paired_refresh.py"] + (argv if argv is not None else sys.argv[1:]),
                        environment(), {"name": a.profile}, {"rounds": a.rounds, "bound": a.bound})
    report["load_before"] = [round(x, 2) for x in os.getloadavg()]
    try:
        report["results"] = run(a.profile, a.rounds, a.bound)
    except FhectlError as exc:  # an unknown profile, one that cannot bootstrap, a bound it cannot take
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    report["load_after"] = [round(x, 2) for x in os.getloadavg()]
    created = _dt.datetime.fromisoformat(report["created"])
    out = a.out / (report_dir_name(created, git_state()["commit"], "cpu", a.profile) + "_paired-refresh")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
