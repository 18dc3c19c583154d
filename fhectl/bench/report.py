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

A bootstrap suite run (``fhectl.bench.bootstrap_suite``) adds one result per implementation (``"suite":
"bootstrap"``; "fhectl (one pass)" beside "fhectl" where the profile's bootstrapping refines), with a
``"bootstrap"`` summary: mean and worst bits against the plaintext, against the input's decryption (``self_*``)
and of the fresh encryption (``fresh_*``), levels left, key bytes, peak memory, set-up times) and a top-level
section::

    "bootstrap": {"parameters": {impl: the context as built}, "threads": {...}, "rounds": [{"round", "impl",
                  "position", "block"?, "seconds", "cpu_s", "mean_bits", "worst_bits", "self_mean_bits",
                  "self_worst_bits", "fresh_mean_bits", "fresh_worst_bits", "levels_left"}, ...],
                  "summary": {impl: ...}, "comparison": {"time_ratio": RatioStats, "paired_by", ...,
                  "refinement_time_ratio"?} | null,
                  "goals": [{"goal", "met", "measured", "note"?, "scope"?}], "partial": {...} | null,
                  "isolation": {"reason", "blocks", "rounds_per_block", "order"} | null,
                  "blocks": [{"block", "side", "setup_s", "keygen_s", "warmup_s", "peak_rss_bytes", ...}] | null,
                  "failed": {impl: why} | null, "resumed": bool}

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
    if interleaved and (report.get("bootstrap") or {}).get("isolation") and not ratio_rows(report):
        lines.append("- fhectl and OpenFHE were timed interleaved by process blocks (A B A B ...), not round by "
                     "round: see the bootstrapping section")
    elif interleaved:
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
    if report.get("bootstrap"):
        lines += render_bootstrap(report)
    others = [r for r in report["results"] if r["suite"] not in ("ops", "bootstrap")]
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


def _fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _fmt_chain(bits: list | None) -> str:
    """[60, 52, 52, ...] as "60 + 22 x 52" (runs of equal sizes collapsed)."""
    if not bits:
        return "not exposed"
    runs: list[list[int]] = []
    for b in bits:
        if runs and runs[-1][0] == b:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    return " + ".join(f"{n} x {b}" if n > 1 else str(b) for b, n in runs)


ONE_PASS_ROW = "fhectl (one pass)"  # fhectl.bench.bootstrap_suite.ONE_PASS (not imported: report reads JSON only)


def render_bootstrap(report: dict) -> list[str]:
    """The bootstrap suite's section: both sides' actual parameters, the table, ratios, goals and rounds."""
    boot = report["bootstrap"]
    rows = {r["impl"]: r for r in report["results"] if r["suite"] == "bootstrap"}
    params, threads = boot["parameters"], boot.get("threads") or {}
    failed = boot.get("failed") or {}
    against = "openfhe" in rows or "openfhe" in failed
    lines = ["", "## Bootstrapping: fhectl against OpenFHE" if against else "## Bootstrapping", ""]
    partial = boot.get("partial")
    if partial:
        which = (f" for {', '.join(rows)} ({', '.join(failed)} failed: no figures)" if failed else "")
        lines += [f"**Partial report**: {partial['rounds_done']} of {partial['rounds_asked']} rounds complete{which} "
                  f"(stopped: {partial['reason']}). Rerunning the same command resumes from `{partial['journal']}`.",
                  ""]
    if boot.get("resumed"):
        lines += ["Resumed: some rounds come from an earlier run of the same command (same commit and parameters, "
                  "other keys).", ""]
    set_before = threads.get("openfhe_set_before_load")
    lines.append(f"- threads: {threads.get('requested')} requested; Numba {threads.get('numba')} (fhectl), "
                 f"OpenMP {threads.get('openfhe_omp') if threads.get('openfhe_omp') is not None else '-'} (OpenFHE"
                 + ("" if set_before is None else ", set before openfhe loaded" if set_before else
                    ", **openfhe was loaded before the suite could set its threads**: it runs on the count it "
                    "read then; see CPU / wall") + ")")
    for impl, d in params.items():
        lines.append(
            f"- {impl}: N = {d.get('ring_degree')}, {d.get('slots')} slots, {d.get('levels')} levels, "
            f"log2 Q = {d.get('log_q')}, q bits {_fmt_chain(d.get('moduli_bits'))}, P bits "
            f"{_fmt_chain(d.get('special_bits'))}, dnum {d.get('dnum')}, secret {d.get('secret')}, "
            f"{d.get('scaling')}, security {d.get('security')}, level budget {d.get('level_budget')}, "
            f"bootstrapping depth {d.get('bootstrap_depth')}, "
            f"levels left {d.get('levels_left', d.get('levels_left_asked'))}"
            + (f", passes: {d['passes']}" if d.get("passes") else "")
            + (f", transforms: {d['transforms']}" if d.get("transforms") else "")
            + (f", EvalMod K = {d['eval_mod']['k']} degree {d['eval_mod']['degree']} double angles "
               f"{d['eval_mod']['double_angle']}" if d.get("eval_mod") else "")
            + (f", OpenFHE {d['version']}" if d.get("version") else ""))
    iso = boot.get("isolation")
    if iso:
        lines += [
            f"- **isolated mode, interleaved by process blocks** ({iso['reason']}): {iso['blocks']} blocks of "
            f"{iso['rounds_per_block']} timed rounds per side, in the order "
            f"{' '.join(n[0].upper() for n in iso['order'])} per block ({', '.join(iso['order'])}), each block a "
            "fresh spawned process: set-up and keys (timed, reported), one untimed warm-up bootstrapping, then the "
            "timed rounds. Interleaving round by round needs both sides' keys in one process, and at large rings "
            "that does not fit in memory. Both sides' blocks of a pair bootstrap the same inputs; time ratios pair "
            "adjacent blocks (the median of A_i's rounds against B_i's), so load that changes between blocks still "
            "shows in their spread. Peak RSS is each side's largest over its blocks (VmHWM of the timed process)",
        ]
    else:
        lines += [
            "- each round bootstraps fresh random real inputs in [-1, 1] (the same for both sides), fhectl and "
            "OpenFHE back to back in one process, alternating which goes first. Peak RSS: set-up and one "
            "bootstrapping in a fresh process per implementation"]
    lines += [
        "- only the bootstrapping is timed (fhectl from level 0, OpenFHE from level depth - 1); mean bits = "
        "-log2(mean |error|), worst bits = -log2(max |error|), over the real parts of the slots; levels left = "
        "multiplications still possible (OpenFHE: depth - GetLevel - (noise-scale degree - 1))",
        "- precision three ways, each mean / worst: **vs plaintext** (the output against the float64 input: what a "
        "user gets, capped by the encryption noise the input already carried); **vs input** (the output against "
        "the decryption of the ciphertext that was bootstrapped: bootstrapping's own error); **fresh** (that "
        "input's decryption against the plaintext: the encryption noise, the same for every row of a side)",
        "- key bytes as stored: fhectl's relinearization and Galois keys as the keyring writes them (b and the "
        "seed of a; each rotation key truncated to the highest level the circuit rotates by it at), plus the "
        "encapsulation keys where used; OpenFHE's EvalMultKey and EvalAutomorphismKeys serialized BINARY",
    ]
    if ONE_PASS_ROW in rows:
        lines.append(f"- {ONE_PASS_ROW}: the first pass alone (Bootstrapper.bootstrap_once), timed in the same "
                     "process and rounds as fhectl's refined bootstrapping (two passes), so the table shows what "
                     "the refinement costs and gains; it shares fhectl's keys, set-up and memory")
    lines += [
        "",
        "| impl | seconds median [min - max] | vs plaintext: mean / worst bits | vs input: mean / worst bits "
        "| fresh: mean / worst bits | levels left | key bytes | peak RSS | set-up (keys) | CPU / wall |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for impl, r in rows.items():
        b, t = r["bootstrap"], r["timing"]
        mem = b.get("memory") or {}
        rss = (_fmt_bytes(mem["peak_rss_bytes"]) + f" ({_fmt_bytes(mem.get('rss_after_imports_bytes'))} after imports)"
               if "peak_rss_bytes" in mem else mem.get("error", "not measured"))
        kb = (b.get("key_bytes") or {}).get("total")
        keys = f"{kb} ({_fmt_bytes(kb)})" if kb is not None else "-"
        setup = (f"{_fmt_time(b['setup_s'])} ({_fmt_time(b['keygen_s'])})" if b.get("setup_s") is not None else "-")
        if b.get("setup_s_blocks") and len(b["setup_s_blocks"]) > 1:
            setup += " per block: " + ", ".join(_fmt_time(v) for v in b["setup_s_blocks"])
        cpu = f"{b['cpu_per_wall_median']:.2f}" if b.get("cpu_per_wall_median") is not None else "-"
        bits = [f"{_fmt_bits(b.get(p + 'mean_bits_median'))} / {_fmt_bits(b.get(p + 'worst_bits_min'))}"
                for p in ("", "self_", "fresh_")]
        lines.append(f"| {impl} | {_fmt_time(t['median_s'])} [{_fmt_time(t['min_s'])} - {_fmt_time(t['max_s'])}] "
                     f"| {' | '.join(bits)} | {b['levels_left']} | {keys} | {rss} | {setup} | {cpu} |")
    for impl, why in failed.items():
        lines.append(f"| {impl} | **failed**: {why} | - | - | - | - | - | - | - | - |")
    lines += ["", "(mean bits: median over rounds; worst bits: the worst round)"]
    comp = boot.get("comparison") or {}
    if "time_ratio" in comp:
        r = comp["time_ratio"]
        lines += ["", f"- fhectl / OpenFHE time: {r['median']:.3f} (median of {r['pairs']} per-pair ratios, pairs: "
                      f"{comp.get('paired_by', 'rounds')}; min - max {r['min']:.3f} - {r['max']:.3f}; interval of "
                      f"the median [{r['ci_low']:.3f}, {r['ci_high']:.3f}] with {r['ci_coverage']:.0%} coverage)"]
        if comp.get("one_pass_time_ratio"):
            o = comp["one_pass_time_ratio"]
            lines.append(f"- {ONE_PASS_ROW} / OpenFHE time: {o['median']:.3f} (min - max {o['min']:.3f} - "
                         f"{o['max']:.3f})")
        for prefix, what in (("self_", "vs input (bootstrapping's own error)"), ("", "vs plaintext")):
            lines.append(
                f"- precision {what}, fhectl - OpenFHE: mean bits {comp[prefix + 'mean_bits_difference_median']:+.2f} "
                f"(median of per-round differences, least {comp[prefix + 'mean_bits_difference_min']:+.2f}); worst "
                f"bits {comp[prefix + 'worst_bits_difference_median']:+.2f} (median per round), "
                f"{comp[prefix + 'worst_bits_difference_of_worst_rounds']:+.2f} between the worst rounds")
        lines += [f"- warning: {w}" for w in r.get("warnings", [])]
    if comp.get("refinement_time_ratio"):
        f = comp["refinement_time_ratio"]
        lines += ([] if "time_ratio" in comp else [""]) + [
                  f"- refinement: fhectl / {ONE_PASS_ROW} time {f['median']:.2f} (median of {f['pairs']} rounds, "
                  f"min - max {f['min']:.2f} - {f['max']:.2f}) for {comp['refinement_self_mean_bits_gain']:+.2f} "
                  f"mean bits and {comp['refinement_self_worst_bits_gain']:+.2f} worst bits vs input"]
    if boot.get("blocks"):
        lines += ["", "Blocks (each a fresh process, in the order run):", "",
                  "| block | side | started (UTC) | MemAvailable at start | set-up (keys) | warm-up bootstrapping "
                  "| timed rounds | peak RSS (VmHWM) | engine sources (sha256) | result |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        counts: dict = {}
        for rec in boot.get("rounds") or []:
            if "block" in rec:
                side = "openfhe" if rec["impl"] == "openfhe" else "fhectl"
                counts.setdefault((rec["block"], side), set()).add(rec["round"])
        for blk in boot["blocks"]:
            started = (_dt.datetime.fromtimestamp(blk["started"], _dt.timezone.utc).strftime("%H:%M:%S")
                       if blk.get("started") else "-")
            waited = f" (waited {blk['memory_wait_s']:.0f} s)" if (blk.get("memory_wait_s") or 0) >= 1 else ""
            head = (f"| {blk['block'] + 1} | {blk['side']} | {started} "
                    f"| {_fmt_bytes(blk.get('mem_available_at_start_bytes'))}{waited} ")
            if "error" in blk:
                lines.append(head + f"| - | - | - | - | {blk.get('engine_sha256', '-')} "
                             f"| **failed** after {_fmt_time(blk.get('wall_s'))}: "
                             f"{blk['error']} |")
                continue
            lines.append(head + f"| {_fmt_time(blk['setup_s'])} "
                         f"({_fmt_time(blk['keygen_s'])}) | {_fmt_time(blk['warmup_s'])} "
                         f"| {len(counts.get((blk['block'], blk['side']), ()))} | {_fmt_bytes(blk['peak_rss_bytes'])} "
                         f"| {blk.get('engine_sha256', '-')} | {'; '.join(blk.get('late_errors') or ['ok'])} |")
    lines += ["", "Goals (judged from the measurements above):", ""]
    for g in boot.get("goals", []):
        verdict = {True: "met", False: "not met", None: "not judged"}[g["met"]]
        lines.append(f"- {g['goal']}: **{verdict}** (measured {g['measured']})")
    lines += [f"- note ({g['goal']}): {g['note']}" for g in boot.get("goals", []) if g.get("note")]
    scopes = {g["scope"] for g in boot.get("goals", []) if g.get("scope")}
    lines += [f"- note: {n}" for n in sorted(scopes)]
    impls = list(rows)
    if boot.get("rounds"):
        block = "block | " if iso else ""
        lines += ["", "Rounds (bits: mean / worst vs plaintext; worst vs input):", "",
                  f"| round | {block}first | " + " | ".join(f"{i} s | {i} bits | {i} worst vs input" for i in impls)
                  + (" | fhectl / OpenFHE |" if "openfhe" in impls else " |"),
                  "|---|" + ("---|" if iso else "") + "---|" + "---|---|---|" * len(impls)
                  + ("---|" if "openfhe" in impls else "")]
        by: dict = {}
        for rec in boot["rounds"]:
            by.setdefault(rec["round"], {})[rec["impl"]] = rec
        for i in sorted(by):
            recs = by[i]
            first = next(name for name in impls if recs[name].get("position") == 0)
            cells = [str(i + 1)] + ([str(recs[impls[0]].get("block", 0) + 1)] if iso else []) + [first]
            for name in impls:
                rec = recs[name]
                cells += [f"{rec['seconds']:.3f}", f"{_fmt_bits(rec['mean_bits'])} / {_fmt_bits(rec['worst_bits'])}",
                          _fmt_bits(rec.get("self_worst_bits"))]
            if "openfhe" in impls:
                cells.append(f"{recs['fhectl']['seconds'] / recs['openfhe']['seconds']:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return lines


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

