"""Benchmark reports: report.json (versioned schema), report.md (tables), PNG plots.

A report directory is named ``<date>_<commit>_<device>_<profile>`` and holds
everything needed to judge and reproduce the numbers: the command line, the
commit and whether the tree was dirty, package versions, CPU/GPU, thread
counts, the profile with its parameter id, and per result the median and
spread over repeats after warm-up, the precision of what was timed, counts of
rotations and key switches, levels used and memory.

Schema (``schema_version`` 2; 1 lacked the spread fields, ``interleaved`` and ``ratio_to_baseline``)::

    {"schema_version": 2, "created": ISO-8601 UTC, "command": [...],
     "environment": {...}, "profile": {...Parameters.describe()},
     "config": {"suites": [...], "batch_sizes": [...], "repeat": R, "warmup": W, "device": "cpu",
                "baseline": "openfhe" | null, "interleaved": bool, "estimate": str, "wall_s": float},
     "results": [{"suite": "ops", "name": "rotate", "impl": "fhectl" | "openfhe",
                  "batch_size": int | null, "device": str,
                  "timing": {"median_s", "mean_s", "stdev_s", "p25_s", "p75_s", "iqr_s", "min_s", "max_s",
                             "ci_low_s", "ci_high_s", "ci_coverage", "repeats", "warmup", "samples_s"},
                  "ratio_to_baseline": {"median", "mean", "stdev", "min", "max", "ci_low", "ci_high",
                                        "ci_coverage", "pairs", "ratios", "warnings"} | absent,
                  "precision_bits": float | null, "tokens_per_s": float | null,
                  "counters": {...}, "levels_used": int | null, "note": str | null}],
     "sizes": {...}, "memory": {"peak_rss_bytes": int, "device": {...} | null}}

``ratio_to_baseline`` (on fhectl's ``ops`` results of an interleaved run): fhectl
/ OpenFHE per pair of back-to-back repeats, and its statistics
(``fhectl.bench.timing.ratio_stats``); ``samples_s`` of the two results pair up
index by index.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
from pathlib import Path

SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)  # compare reads the committed schema-1 reports too


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
    bits = float(bits)  # a loaded report stores an exact result as the string "inf"
    return "exact" if bits == math.inf else f"{bits:.1f}"


def ratio_rows(report: dict) -> list[dict]:
    """fhectl / OpenFHE per operation of the ops suite, where both were measured.

    ``ratio`` is the median of the per-pair ratios of an interleaved run
    (``ratio_stats``: interval, spread, warnings); a schema-1 report, whose two
    implementations were timed in separate blocks, gives the ratio of medians
    and no interval.
    """
    by = {}
    for r in report["results"]:
        if r["suite"] == "ops":
            by.setdefault(r["name"], {})[r["impl"]] = r
    rows = []
    for name, impls in by.items():
        ours, base = impls.get("fhectl"), impls.get("openfhe")
        ratio, stats = None, None
        if ours and ours.get("ratio_to_baseline"):
            stats = ours["ratio_to_baseline"]
            ratio = stats["median"]
        elif ours and base and base["timing"]["median_s"] > 0:
            ratio = ours["timing"]["median_s"] / base["timing"]["median_s"]
        rows.append({"name": name, "fhectl": ours, "openfhe": base, "ratio": ratio, "stats": stats})
    return rows


def busy_machine(report: dict) -> str | None:
    """Why the machine counts as busy during a run, or None.

    Before the run the load average is other jobs: busy above half the cores. After it, it includes the run's
    own threads (measured: 1.4 after a quiet run on 2 cores): busy above 1.25 times the cores.
    """
    cores = report["environment"].get("cpu_count") or 1
    before, after = report["config"].get("load_before"), report["config"].get("load_after")
    if before and before[0] > cores / 2:
        return f"1-minute load average {before[0]} before the run, above half of {cores} cores"
    if after and after[0] > 1.25 * cores:
        return f"1-minute load average {after[0]} after the run, above 1.25 times {cores} cores"
    return None


def _spread_cells(t: dict) -> list[str]:
    """median, mean ± standard deviation, min - max of a timing entry."""
    mean, sd = t.get("mean_s"), t.get("stdev_s")
    return [_fmt_time(t["median_s"]),
            f"{_fmt_time(mean)} ± {_fmt_time(sd)}" if mean is not None and sd is not None else "-",
            f"{_fmt_time(t['min_s'])} - {_fmt_time(t['max_s'])}"]


def _ratio_cell(r: dict) -> str:
    st = r["stats"]
    if st:
        return f"{st['median']:.2f} [{st['ci_low']:.2f}, {st['ci_high']:.2f}]"
    return f"{r['ratio']:.2f} (no interval)" if r["ratio"] is not None else "-"


def render_markdown(report: dict) -> str:
    env = report["environment"]
    prof = report["profile"]
    cfg = report["config"]
    git = env.get("git", {})
    interleaved = cfg.get("interleaved")
    lines = [
        f"# fhectl benchmark report: {prof.get('name')} on {cfg.get('device')}",
        "",
        f"- created: {report['created']}",
        f"- command: `{' '.join(report['command'])}`",
        f"- commit: `{git.get('commit')}`{' (dirty tree)' if git.get('dirty') else ''}",
        f"- machine: {env.get('cpu')} ({env.get('cpu_count')} cores, {env.get('numba_threads')} Numba threads); "
        f"GPU: {env.get('gpu', {}).get('name') or 'none'}",
        f"- python {env.get('python')}, "
        + ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items()) if v),
        f"- profile: {prof.get('name')} (id {prof.get('params_id')}), N = {prof.get('ring_degree')}, "
        f"{prof.get('levels')} levels, scale 2^{prof.get('scale_bits')}, dnum {prof.get('dnum')}, "
        f"log2 QP = {prof.get('log_qp')}, {prof.get('security_bits')}-bit",
        f"- timing: {cfg.get('repeat')} timed repeats after {cfg.get('warmup')} warm-up run(s), fresh inputs each; "
        "median, mean ± standard deviation, min - max; precision = -log2(max |error|) against float64",
    ]
    if interleaved:
        lines.append("- fhectl and OpenFHE were timed interleaved: each repeat runs both back to back, alternating "
                     "which goes first, so machine load hits both alike. fhectl / OpenFHE is the median of the "
                     "per-pair ratios, with a distribution-free interval of that median (95 %, or [min, max] with "
                     "its stated coverage when there are fewer than 6 pairs)")
    busy = busy_machine(report)
    if cfg.get("load_before") or cfg.get("load_after"):
        lines.append(f"- load average (1, 5, 15 min) before the run: {cfg.get('load_before')}, after: "
                     f"{cfg.get('load_after')}, on {env.get('cpu_count')} cores"
                     + (f". **The machine was busy** ({busy}): fhectl and OpenFHE respond differently to sharing "
                        "cores, so even interleaved ratios shift; rerun on a quiet machine before drawing conclusions"
                        if busy else ""))
    if cfg.get("estimate"):
        lines.append(f"- estimated before the run: {cfg['estimate']}; took {cfg.get('wall_s', 0):.0f} s")
    lines.append(f"- peak host memory (RSS): {report['memory'].get('peak_rss_bytes', 0) / 2**30:.2f} GiB")
    if report["memory"].get("device"):
        lines.append(f"- device memory: {report['memory']['device']}")
    ratios = ratio_rows(report)
    if ratios:
        lines += ["", "## Operations: fhectl against OpenFHE (same parameters, same run)", "",
                  "| operation | fhectl median | mean ± sd | min - max | OpenFHE median | mean ± sd | min - max "
                  "| fhectl / OpenFHE [interval] | bits fhectl | bits OpenFHE |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in ratios:
            ours, base = r["fhectl"], r["openfhe"]
            cells = [r["name"]]
            for side in (ours, base):
                cells += _spread_cells(side["timing"]) if side else ["-", "-", "-"]
            cells.append(_ratio_cell(r))
            cells += [_fmt_bits(side.get("precision_bits")) if side else "-" for side in (ours, base)]
            lines.append("| " + " | ".join(cells) + " |")
        warnings = [f"- {r['name']}: {w}" for r in ratios if r["stats"] for w in r["stats"].get("warnings", [])]
        if warnings:
            lines += ["", "Warnings (read these ratios with care):", ""] + warnings
        notes = [f"- {r['name']}: {side['note']}" for r in ratios for side in (r["fhectl"], r["openfhe"])
                 if side and side.get("note")]
        if notes:
            lines += ["", "Notes:", ""] + notes
    others = [r for r in report["results"] if r["suite"] != "ops"]
    if others:
        lines += ["", "## Encrypted layers and blocks", "",
                  "| suite | name | tokens | median | mean ± sd | min - max | tokens/s | precision (bits) | rotations "
                  "| key switches | levels |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in others:
            c = r.get("counters") or {}
            tps = r.get("tokens_per_s")
            cells = [r["suite"], r["name"], str(r.get("batch_size")), *_spread_cells(r["timing"]),
                     f"{tps:.3g}" if tps else "-", _fmt_bits(r.get("precision_bits")),
                     str(c.get("rotations", "-")), str(c.get("key_switch", "-")),
                     str(r["levels_used"]) if r.get("levels_used") is not None else "-"]
            lines.append("| " + " | ".join(cells) + " |")
    if report.get("sizes"):
        lines += ["", "## Sizes", ""] + [f"- {k}: {v / 2**20:.2f} MiB" if isinstance(v, (int, float)) else f"- {k}: {v}"
                                         for k, v in sorted(report["sizes"].items())]
    plots = report.get("plots") or []
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _plot_ops(plt, report: dict, out_dir: Path) -> str | None:
    """fhectl / OpenFHE per operation, with the ratio's interval as error bars, against a line at 1."""
    ratios = [r for r in ratio_rows(report) if r["ratio"] is not None]
    if not ratios:
        return None
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ratios) + 1.6))
    ys = list(range(len(ratios)))[::-1]
    meds = [r["ratio"] for r in ratios]
    lo = [r["ratio"] - (r["stats"]["ci_low"] if r["stats"] else r["ratio"]) for r in ratios]
    hi = [(r["stats"]["ci_high"] if r["stats"] else r["ratio"]) - r["ratio"] for r in ratios]
    colors = ["tab:green" if m < 1 else "tab:red" for m in meds]
    ax.errorbar(meds, ys, xerr=[lo, hi], fmt="none", ecolor="black", elinewidth=1.2, capsize=4, zorder=2)
    ax.scatter(meds, ys, c=colors, s=45, zorder=3)
    for y, m in zip(ys, meds):
        ax.annotate(f"{m:.2f}", (m, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.annotate("same time", (1.0, 1.0), xycoords=("data", "axes fraction"), xytext=(-3, -12),
                textcoords="offset points", fontsize=8, color="gray", ha="right")
    ax.set_xscale("log")
    ax.set_yticks(ys)
    ax.set_yticklabels([r["name"] for r in ratios])
    span = [v for r in ratios for v in ((r["stats"] or {}).get("ci_low", r["ratio"]),
                                        (r["stats"] or {}).get("ci_high", r["ratio"]))] + [1.0]
    ax.set_xlim(min(span) / 1.6, max(span) * 1.6)
    ax.set_ylim(-0.7, len(ratios) - 0.3)
    ax.set_xlabel("fhectl time / OpenFHE time (log scale; left of 1: fhectl faster)")
    interleaved = report["config"].get("interleaved")
    ax.set_title(f"CKKS operations, {report['profile'].get('name')}: fhectl time / OpenFHE time\n"
                 + ("median of interleaved pairs; bars: the median's interval (see report.md)" if interleaved
                    else "ratio of medians timed apart (no interval)"), fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "ops_vs_openfhe.png", dpi=110)
    plt.close(fig)
    return "ops_vs_openfhe.png"


def _plot_layers(plt, report: dict, out_dir: Path) -> str | None:
    """Throughput (tokens/s) against tokens per ciphertext, one distinguishable series per layer."""
    series = {}
    for r in report["results"]:
        if r["suite"] in ("layers", "block") and r.get("batch_size") is not None and r["timing"]["median_s"] > 0:
            t = r["timing"]
            b = r["batch_size"]
            series.setdefault(r["name"], []).append((b, b / t["median_s"], b / t["max_s"], b / t["min_s"]))
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(9, 5))
    markers = "osD^vP*Xh<>p"
    styles = ["-", "--", "-.", ":"]
    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts.sort()
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
        ax.errorbar(xs, ys, yerr=err, marker=markers[i % len(markers)], linestyle=styles[i % len(styles)],
                    color=cmap(i % cmap.N), label=name, capsize=3, markersize=6)
    ax.set_xlabel("tokens per ciphertext (batch size)")
    ax.set_ylabel("throughput (tokens/s, log scale; error bars: min - max)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_title(f"Encrypted GPT-2 layers, {report['profile'].get('name')}: throughput against batch size")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out_dir / "layers_throughput.png", dpi=110)
    plt.close(fig)
    return "layers_throughput.png"


def _plot_block(plt, report: dict, out_dir: Path) -> str | None:
    """Time per stage of the largest batch's block, each bar labelled, the total in the title."""
    stages = [r for r in report["results"] if r["suite"] == "block" and r.get("stages")]
    if not stages:
        return None
    r = max(stages, key=lambda r: r.get("batch_size") or 0)
    items = sorted(r["stages"].items(), key=lambda kv: kv[1])
    total = sum(v for _, v in items)
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(items) + 1.6))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    for i, (_, v) in enumerate(items):
        ax.annotate(f"{_fmt_time(v)} ({100 * v / total:.0f} %)" if total else _fmt_time(v), (v, i),
                    textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
    ax.set_xlim(0, max(v for _, v in items) * 1.35 or 1)
    ax.set_xlabel("seconds per block")
    ax.set_title(f"One GPT-2 block, {r.get('batch_size')} tokens: stages sum to {_fmt_time(total)}\n"
                 f"(mean over runs, warm-up included); median wall time {_fmt_time(r['timing']['median_s'])}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out_dir / "block_stages.png", dpi=110)
    plt.close(fig)
    return "block_stages.png"


def write_plots(report: dict, out_dir: Path) -> list[str]:
    """PNG plots: fhectl / OpenFHE ratios per operation; throughput per layer; block stages with the total."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = [_plot_ops(plt, report, out_dir), _plot_layers(plt, report, out_dir), _plot_block(plt, report, out_dir)]
    return [w for w in written if w]


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


def rerender(report_dir: Path) -> Path:
    """Rewrite the plots and report.md of an existing report from its report.json (no timing reruns)."""
    report_dir = Path(report_dir)
    report = load_report(report_dir)
    report["plots"] = write_plots(report, report_dir)
    stale = {"layers_latency.png"} - set(report["plots"])  # the old latency plot, replaced by throughput
    for name in stale:
        (report_dir / name).unlink(missing_ok=True)
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
    note = (f"\n_Plots and this page re-rendered on {when} by `fhectl bench render` from the unchanged report.json "
            "(nothing was re-timed): the numbers are those of the run described above._\n")
    tmp = report_dir / ".report.md.partial"
    tmp.write_text(render_markdown(report) + note)
    os.replace(tmp, report_dir / "report.md")
    return report_dir


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
    if (not isinstance(data, dict) or data.get("schema_version") not in READABLE_SCHEMAS
            or not isinstance(data.get("results"), list)):
        raise InputError(f"{f} is not a fhectl benchmark report (schema_version "
                         f"{' or '.join(map(str, READABLE_SCHEMAS))})")
    return data

