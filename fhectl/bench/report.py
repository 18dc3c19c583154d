"""Benchmark reports: report.json (versioned schema), report.md (tables), PNG plots.

A report directory is named ``<date>_<commit>_<device>_<profile>`` and holds
everything needed to judge and reproduce the numbers: the command line, the
commit and whether the tree was dirty, package versions, CPU/GPU, thread
counts, the profile with its parameter id, and per result the median and
spread over repeats after warm-up, the precision of what was timed, counts of
rotations and key switches, levels used and memory.

Schema (``schema_version`` 1)::

    {"schema_version": 1, "created": ISO-8601 UTC, "command": [...],
     "environment": {...}, "profile": {...Parameters.describe()},
     "config": {"suites": [...], "batch_sizes": [...], "repeat": R, "warmup": W, "device": "cpu"},
     "results": [{"suite": "ops", "name": "rotate", "impl": "fhectl" | "openfhe",
                  "batch_size": int | null, "device": str,
                  "timing": {"median_s", "p25_s", "p75_s", "iqr_s", "min_s", "max_s", "repeats", "warmup", "samples_s"},
                  "precision_bits": float | null, "tokens_per_s": float | null,
                  "counters": {...}, "levels_used": int | null, "note": str | null}],
     "sizes": {...}, "memory": {"peak_rss_bytes": int, "device": {...} | null}}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
from pathlib import Path

SCHEMA_VERSION = 1


def git_state(repo: Path | None = None) -> dict:
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def report_dir_name(created: _dt.datetime, commit: str | None, device: str, profile: str) -> str:
    short = (commit or "nocommit")[:8]
    return f"{created.strftime('%Y-%m-%d')}_{short}_{device}_{profile}"


def new_report(command: list[str], environment: dict, profile: dict, config: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "environment": environment | {"git": git_state()},
        "profile": profile,
        "config": config,
        "results": [],
        "sizes": {},
        "memory": {},
    }


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def _fmt_bits(bits) -> str:
    if bits is None:
        return "-"
    return "exact" if bits == math.inf else f"{bits:.1f}"


def ratio_rows(report: dict) -> list[dict]:
    """fhectl / OpenFHE per operation of the ops suite, where both were measured."""
    by = {}
    for r in report["results"]:
        if r["suite"] == "ops":
            by.setdefault(r["name"], {})[r["impl"]] = r
    rows = []
    for name, impls in by.items():
        ours, base = impls.get("fhectl"), impls.get("openfhe")
        ratio = None
        if ours and base and base["timing"]["median_s"] > 0:
            ratio = ours["timing"]["median_s"] / base["timing"]["median_s"]
        rows.append({"name": name, "fhectl": ours, "openfhe": base, "ratio": ratio})
    return rows


def render_markdown(report: dict) -> str:
    env = report["environment"]
    prof = report["profile"]
    git = env.get("git", {})
    lines = [
        f"# fhectl benchmark report: {prof.get('name')} on {report['config'].get('device')}",
        "",
        f"- created: {report['created']}",
        f"- command: `{' '.join(report['command'])}`",
        f"- commit: `{git.get('commit')}`{' (dirty tree)' if git.get('dirty') else ''}",
        f"- machine: {env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('numba_threads')} Numba threads); "
        f"GPU: {env.get('gpu', {}).get('name') or 'none'}",
        f"- python {env.get('python')}, " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v),
        f"- profile: {prof.get('name')} (id {prof.get('params_id')}), N = {prof.get('ring_degree')}, "
        f"{prof.get('levels')} levels, scale 2^{prof.get('scale_bits')}, dnum {prof.get('dnum')}, "
        f"log2 QP = {prof.get('log_qp')}, {prof.get('security_bits')}-bit",
        f"- timing: median over {report['config'].get('repeat')} repeats after {report['config'].get('warmup')} "
        "warm-up run(s); spread is the interquartile range; precision = -log2(max |error|) against float64",
        f"- peak host memory (RSS): {report['memory'].get('peak_rss_bytes', 0) / 2**30:.2f} GiB",
    ]
    if report["memory"].get("device"):
        lines.append(f"- device memory: {report['memory']['device']}")
    ratios = ratio_rows(report)
    if ratios:
        lines += ["", "## Operations: fhectl against OpenFHE (same parameters, same run)", "",
                  "| operation | fhectl median | IQR | precision (bits) | OpenFHE median | IQR | precision (bits) "
                  "| fhectl / OpenFHE |", "|---|---|---|---|---|---|---|---|"]
        for r in ratios:
            ours, base = r["fhectl"], r["openfhe"]
            cells = [r["name"]]
            for side in (ours, base):
                if side:
                    cells += [_fmt_time(side["timing"]["median_s"]), _fmt_time(side["timing"]["iqr_s"]),
                              _fmt_bits(side.get("precision_bits"))]
                else:
                    cells += ["-", "-", "-"]
            cells.append(f"{r['ratio']:.2f}" if r["ratio"] is not None else "-")
            lines.append("| " + " | ".join(cells) + " |")
        notes = [f"- {r['name']}: {side['note']}" for r in ratios for side in (r["fhectl"], r["openfhe"])
                 if side and side.get("note")]
        if notes:
            lines += ["", "Notes:", ""] + notes
    others = [r for r in report["results"] if r["suite"] != "ops"]
    if others:
        lines += ["", "## Encrypted layers and blocks", "",
                  "| suite | name | tokens | median | IQR | tokens/s | precision (bits) | rotations | key switches "
                  "| levels |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in others:
            c = r.get("counters") or {}
            tps = r.get("tokens_per_s")
            lines.append(
                f"| {r['suite']} | {r['name']} | {r.get('batch_size')} | {_fmt_time(r['timing']['median_s'])} | "
                f"{_fmt_time(r['timing']['iqr_s'])} | {f'{tps:.3g}' if tps else '-'} | "
                f"{_fmt_bits(r.get('precision_bits'))} | {c.get('rotations', '-')} | {c.get('key_switch', '-')} | "
                f"{r.get('levels_used') if r.get('levels_used') is not None else '-'} |"
            )
    if report.get("sizes"):
        lines += ["", "## Sizes", ""] + [f"- {k}: {v / 2**20:.2f} MiB" if isinstance(v, (int, float)) else f"- {k}: {v}"
                                         for k, v in report["sizes"].items()]
    plots = report.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_plots(report: dict, out_dir: Path) -> list[str]:
    """PNG plots: fhectl vs OpenFHE per operation; latency against batch size per layer; block stages."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ratios = [r for r in ratio_rows(report) if r["fhectl"] and r["openfhe"]]
    if ratios:
        fig, ax = plt.subplots(figsize=(8, 4))
        names = [r["name"] for r in ratios]
        xs = range(len(names))
        ax.bar([x - 0.2 for x in xs], [r["fhectl"]["timing"]["median_s"] * 1e3 for r in ratios], 0.4, label="fhectl")
        ax.bar([x + 0.2 for x in xs], [r["openfhe"]["timing"]["median_s"] * 1e3 for r in ratios], 0.4, label="OpenFHE")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(names, rotation=30, ha="right")
        ax.set_ylabel("median time (ms, log scale)")
        ax.set_yscale("log")
        ax.set_title(f"CKKS operations, {report['profile'].get('name')}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "ops_vs_openfhe.png", dpi=110)
        plt.close(fig)
        written.append("ops_vs_openfhe.png")
    layers = {}
    for r in report["results"]:
        if r["suite"] in ("layers", "block") and r.get("batch_size") is not None:
            layers.setdefault(r["name"], []).append((r["batch_size"], r["timing"]["median_s"]))
    if layers:
        fig, ax = plt.subplots(figsize=(8, 4))
        for name, pts in sorted(layers.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax.set_xlabel("tokens per ciphertext (batch size)")
        ax.set_ylabel("median latency (s)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title("Encrypted GPT-2 layers: latency against batch size")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "layers_latency.png", dpi=110)
        plt.close(fig)
        written.append("layers_latency.png")
    stages = [r for r in report["results"] if r["suite"] == "block" and r.get("stages")]
    if stages:
        r = max(stages, key=lambda r: r.get("batch_size") or 0)
        fig, ax = plt.subplots(figsize=(8, 4))
        names = list(r["stages"])
        ax.barh(names, [r["stages"][n] for n in names])
        ax.set_xlabel("seconds")
        ax.set_title(f"One GPT-2 block, {r.get('batch_size')} tokens: time per stage")
        fig.tight_layout()
        fig.savefig(out_dir / "block_stages.png", dpi=110)
        plt.close(fig)
        written.append("block_stages.png")
    return written


def write_report(report: dict, out_root: Path) -> Path:
    """Write report.json, plots and report.md into a new directory under ``out_root``; returns it."""
    created = _dt.datetime.fromisoformat(report["created"])
    git = report["environment"].get("git", {})
    name = report_dir_name(created, git.get("commit"), report["config"].get("device", "cpu"),
                           report["profile"].get("name", "profile"))
    out = Path(out_root) / name
    suffix = 1
    while out.exists():
        suffix += 1
        out = Path(out_root) / f"{name}_{suffix}"
    tmp = Path(out_root) / f".{out.name}.partial"
    tmp.mkdir(parents=True, exist_ok=False)
    report["plots"] = write_plots(report, tmp)
    (tmp / "report.json").write_text(json.dumps(_finite(report), indent=2, sort_keys=True, allow_nan=False) + "\n")
    (tmp / "report.md").write_text(render_markdown(report))
    os.replace(tmp, out)  # the directory appears whole or not at all
    return out


def _finite(value):
    """Strict JSON has no infinity: an exact result's precision is stored as the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def load_report(path: Path) -> dict:
    from fhectl.errors import InputError

    path = Path(path)
    f = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read benchmark report {f}: {exc}") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION or not isinstance(data.get("results"), list):
        raise InputError(f"{f} is not a fhectl benchmark report (schema_version {SCHEMA_VERSION})")
    return data

