"""`fhectl bench --suite accuracy`: how close encrypted Llama inference stays to the float64 model on held-out
prompts.

Two parts, both on the shipped *evaluation* set (calibration used the disjoint calibration set):

1. The plaintext mirror of every circuit (``fhectl.llama.mirror``) on the whole set, all layers: next-token
   top-1 agreement and top-5 overlap with the float64 reference, KL, per-layer cosine of the hidden states
   (min and median over prompts), domain violations (what a client refresh would refuse) and silent-error
   checks (softmax rows' total variation, 1/sqrt relative error, SiLU error on the inputs actually seen).
2. A fully encrypted run: ``encrypted_prompts`` prompts packed into one ciphertext, every layer encrypted,
   with client refresh (round trips to the key holder) or bootstrapping (none; the range indicator of each
   block read after it). It is resumable per layer: after each block the key holder's decryption (which a
   client refresh sees anyway; with bootstrapping a measurement only) and the per-layer report are saved in
   a state folder, and a rerun continues from the last finished layer with one extra refresh by the key
   holder at that boundary (a fresh encryption of the saved state, with fresh keys): a bootstrapped run that
   resumed is non-interactive between those boundaries, which the report lists. Whatever has finished is in
   the report, with the layers it covers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from fhectl.ckks.params import Parameters
from fhectl.errors import InputError
from fhectl.llama.calibration import BlockDomains
from fhectl.llama.encrypted import BlockCircuits
from fhectl.llama.inference import EncryptedLlama, compare_logits, cosine
from fhectl.llama.mirror import BlockMirror, SilentErrors
from fhectl.llama.model import Llama
from fhectl.llama.prompt_sets import load_prompt_set
from fhectl.circuits.packing import Layout

MAX_PROMPT_TOKENS = 128


def evaluation_prompts(tokenizer, max_tokens: int = MAX_PROMPT_TOKENS) -> list[dict]:
    """The evaluation set, each prompt cut to its first ``max_tokens`` tokens (the model's context, at most
    MAX_PROMPT_TOKENS)."""
    out = []
    for p in load_prompt_set("evaluation"):
        ids = tokenizer.encode(p["text"])
        if ids:
            out.append({"id": p["id"], "kind": p["kind"], "ids": ids[:max_tokens], "truncated": len(ids) > max_tokens})
    return out


def run_mirror(weights, domains: list[BlockDomains], prompts: list[dict], tick=lambda s: None) -> dict:
    """Part 1: the plaintext mirror against the float64 model on every prompt (circuits built for rows of
    up to the longest prompt's length)."""
    model = Llama(weights)
    n_layer = weights.config.n_layer
    max_keys = max(len(p["ids"]) for p in prompts)
    blocks = [BlockCircuits.build(i, domains[i], max_keys) for i in range(n_layer)]
    per_layer_cos = [[] for _ in range(n_layer)]
    rows, errors = [], SilentErrors()
    for k, p in enumerate(prompts):
        x_ref = x_mir = model.embed(p["ids"])  # (T, C)
        mine = SilentErrors()
        for i, b in enumerate(blocks):
            x_ref = model.block(x_ref, i)
            x_mir = model.block(x_mir, i, nonlinear=BlockMirror(b, mine).nonlinearities())
            per_layer_cos[i].append(cosine(x_mir, x_ref))
        r = compare_logits(model.final_logits(x_mir)[-1], model.final_logits(x_ref)[-1], k, len(p["ids"]))
        rows.append({"id": p["id"], "kind": p["kind"], "tokens": len(p["ids"]), "top1": r.top1_agrees,
                     "top5_overlap": r.top5_overlap, "kl": r.kl, "violations": sorted(set(mine.violations)),
                     "min_layer_cosine": min(c[-1] for c in per_layer_cos)})
        errors.merge(mine)
        tick(f"mirror {k + 1}/{len(prompts)}")
    n = len(rows)
    refused = sum(bool(r["violations"]) for r in rows)
    return {
        "prompts": n,
        "top1_agreement": sum(r["top1"] for r in rows) / n,
        "top5_overlap_mean": float(np.mean([r["top5_overlap"] for r in rows])),
        "kl_mean": float(np.mean([r["kl"] for r in rows])),
        "kl_max": float(np.max([r["kl"] for r in rows])),
        "layer_cosine_min": [float(np.min(c)) for c in per_layer_cos],
        "layer_cosine_median": [float(np.median(c)) for c in per_layer_cos],
        "prompts_with_domain_violations": refused,
        "domain_refusal_rate": refused / n,
        "silent_errors": {"softmax_tv_max": errors.softmax_tv_max, "rsqrt_rel_max": errors.rsqrt_rel_max,
                          "silu_abs_max": errors.silu_abs_max, "silu_rel_max": errors.silu_rel_max},
        "rows": rows,
    }


def pick_encrypted_batch(prompts: list[dict], count: int, capacity: int) -> list[dict]:
    """``count`` prompts for one ciphertext of ``capacity`` token slots: the first prompt (by id) of each kind,
    kinds in turn until ``count`` are chosen, each cut to its first capacity // count tokens (the float64
    reference sees the same cut prompts). Different kinds (code, SQL, numbers, other scripts...) make a
    more telling batch than the shortest prompts, which are all of one kind."""
    per = capacity // max(count, 1)
    if per < 1:
        raise InputError(f"--encrypted-prompts {count}: at most {capacity} prompts share one ciphertext of "
                         f"{capacity} token slots")
    by_kind: dict[str, list[dict]] = {}
    for p in sorted(prompts, key=lambda p: p["id"]):
        by_kind.setdefault(p["kind"], []).append(p)
    chosen, round_ = [], 0
    while len(chosen) < count and any(len(v) > round_ for v in by_kind.values()):
        for kind in sorted(by_kind):
            if len(chosen) < count and len(by_kind[kind]) > round_:
                p = by_kind[kind][round_]
                chosen.append(p | {"ids": p["ids"][:per], "cut_from": len(p["ids"])})
        round_ += 1
    return chosen


def _write_text(path: Path, text: str) -> None:
    """Whole or not at all: a temporary file, then a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_json(path: Path, data) -> None:
    _write_text(path, json.dumps(data, indent=1, default=float))


def run_encrypted(weights, domains: list[BlockDomains], params: Parameters, batch: list[dict], state_dir: Path,
                  n_layers: int | None = None, device: str = "cpu", tick=lambda s: None,
                  deadline: float | None = None, refresh: str = "client", on_progress=lambda summary: None,
                  commit: str | None = None, bootstrap_passes: int = 2) -> dict:
    """Part 2: every layer encrypted on one packed batch, resumable per layer from ``state_dir``; ``refresh``
    "client" or "bootstrap" (a stage out of its domain is reported, per layer, not raised). ``on_progress``
    receives the summary so far after each layer (a report that is current when the process is killed);
    ``commit``, the code that runs, is recorded with each layer (a resumed run may span several)."""
    cfg = weights.config
    n_layers = cfg.n_layer if n_layers is None else n_layers
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)  # the key holder's decryptions
    progress_path = state_dir / "progress.json"
    ids = [p["ids"] for p in batch]
    progress = {"prompt_ids": [p["id"] for p in batch], "refresh": refresh, "layers": [], "resumed_at": []}
    if refresh == "bootstrap":
        progress["bootstrap_passes"] = bootstrap_passes
    start, hidden = 0, None
    if progress_path.exists():
        old = json.loads(progress_path.read_text())
        if (old.get("prompt_ids"), old.get("refresh", "client")) == (progress["prompt_ids"], refresh) and old["layers"]:
            progress = {"resumed_at": []} | old
            start = len(old["layers"])
            hidden = np.load(state_dir / "hidden.npy")
    if start < n_layers:
        if start:
            progress["resumed_at"].append(start)
        total = sum(len(i) for i in ids)
        engine = EncryptedLlama(weights, params, domains, n_layers, max_tokens=total, device=device, refresh=refresh,
                                bootstrap_passes=bootstrap_passes)

        def on_layer(i, got, report):
            np.save(state_dir / "hidden.tmp.npy", got)
            os.replace(state_dir / "hidden.tmp.npy", state_dir / "hidden.npy")
            progress["layers"].append(dict(report.__dict__, commit=commit))
            _write_json(progress_path, progress)
            on_progress(_summary(progress, ids, n_layers, refresh))
            boot = "" if report.bootstraps is None else (f", {report.bootstraps} bootstraps, "
                                                         f"{report.indicator['summary']}")
            tick(f"encrypted layer {i}: cosine {report.cosine_min:.6f}, {report.seconds:.0f} s{boot}")
            if deadline is not None and time.time() > deadline and i + 1 < n_layers:
                raise _Deadline()

        try:
            _, result = engine.run(ids, on_layer=on_layer, start_layer=start, start_hidden=hidden,
                                   out_of_domain="report")
            progress["final"] = {"prompts": [r.__dict__ for r in result.prompts], "stats": result.stats.__dict__,
                                 "stage_seconds": result.stage_seconds, "key_bytes": result.key_bytes,
                                 "galois_keys": result.galois_keys, "plan": result.plan, "layout": result.layout,
                                 "resumed_at_layer": start, "bootstrap": result.bootstrap,
                                 "indicator": result.indicator}
            _write_json(progress_path, progress)
        except _Deadline:
            pass
    return _summary(progress, ids, n_layers, refresh)


def _summary(progress: dict, ids: list[list[int]], n_layers: int, refresh: str) -> dict:
    """What the report says of the encrypted run, from its saved progress."""
    layers = progress["layers"]
    final = progress.get("final")
    readings = [r for r in layers if r.get("indicator") is not None]
    return {
        "prompt_ids": progress["prompt_ids"],
        "refresh": refresh,
        "bootstrap_passes": progress.get("bootstrap_passes", 2 if refresh == "bootstrap" else None),
        "resumed_at": progress["resumed_at"],
        "bootstraps": sum(r.get("bootstraps") or 0 for r in layers),
        "indicator_layers_read": len(readings),
        "indicator_flagged_layers": [r["layer"] for r in readings if not r["indicator"]["clean"]],
        "indicator_suspect_layers": [r["layer"] for r in readings if r["indicator"]["suspect"]],
        "tokens": [len(i) for i in ids],
        "layers_done": len(layers),
        "layers_total": n_layers,
        "complete": final is not None,
        "layer_cosine_min": min((r["cosine_min"] for r in layers), default=None),
        "precision_bits_min": min((r["precision_bits"] for r in layers), default=None),
        "seconds_per_layer_median": float(np.median([r["seconds"] for r in layers])) if layers else None,
        "top1_agreement": (sum(p["top1_agrees"] for p in final["prompts"]) / len(final["prompts"])) if final else None,
        "kl_max": max(p["kl"] for p in final["prompts"]) if final else None,
        "per_layer": layers,
        "final": final,
    }


class _Deadline(Exception):
    """The time budget ran out between two layers; what finished is saved."""


# -- the report -----------------------------------------------------------------------------------------


def run_accuracy_report(model_name: str, weights_spec, params: Parameters, out_root: Path, *,
                        encrypted_prompts: int = 8, encrypted_layers: int | None = None, device: str = "cpu",
                        budget_s: float | None = None, tick=lambda s: None, refresh: str = "client",
                        bootstrap_passes: int = 2) -> Path:
    """Both parts on the evaluation set; writes report.json and report.md under ``out_root``; returns the folder.
    ``refresh``: how the encrypted run restores levels, "client" or "bootstrap"; ``bootstrap_passes``: 1 or 2
    (``fhectl.circuits.bootstrap_refresh.bootstrap_config``), kept in its own state folder."""
    import datetime as _dt
    import hashlib
    import sys

    from fhectl.bench.environment import environment
    from fhectl.bench.report import git_state
    from fhectl.llama import calibration, pipeline

    if refresh not in ("client", "bootstrap"):
        raise InputError(f"refresh must be 'client' or 'bootstrap', got {refresh!r}")
    if bootstrap_passes not in (1, 2) or (bootstrap_passes != 2 and refresh != "bootstrap"):
        raise InputError(f"--bootstrap-passes {bootstrap_passes}: 1 or 2, with --refresh bootstrap only")
    one_pass = refresh == "bootstrap" and bootstrap_passes == 1
    t0 = time.time()
    git = git_state()  # the code that runs, recorded before it runs
    deadline = None if budget_s is None else t0 + budget_s
    w, tok, source = pipeline.load_model(model_name, weights_spec)
    cfg = w.config
    domains, calib_source = pipeline.calibrated_domains(w, tok)
    cut_to = min(MAX_PROMPT_TOKENS, cfg.max_position)
    prompts = evaluation_prompts(tok, cut_to)
    width = max(cfg.n_embd, cfg.n_head * cfg.head_dim)
    capacity = min(Layout.max_tokens(params.slots, width), cfg.head_dim)  # softmax rows must fit one head
    batch = pick_encrypted_batch(prompts, encrypted_prompts, capacity) if encrypted_prompts > 0 else []
    if encrypted_layers is not None and not 0 <= encrypted_layers <= cfg.n_layer:
        raise InputError(f"--encrypted-layers must be in 0..{cfg.n_layer}, got {encrypted_layers}")
    tick("calibrated")
    mirror = run_mirror(w, domains, prompts, tick)  # minutes: after every input check
    state = None
    if batch:
        digest = hashlib.sha256((w.weights_digest() + params.name + repr([p["id"] for p in batch])
                                 + repr(encrypted_layers) + ("" if refresh == "client" else refresh)
                                 + ("/one-pass" if one_pass else "")).encode())
        state = calibration.cache_dir().parent / "accuracy-state" / digest.hexdigest()[:16]
    created = _dt.datetime.now(_dt.timezone.utc)
    name = (f"{created.strftime('%Y-%m-%d')}_{(git.get('commit') or 'nocommit')[:8]}_{device}_{params.name}"
            f"_accuracy-{model_name}" + ("_one-pass" if one_pass else ""))
    folder = Path(out_root) / name

    def write(encrypted: dict | None) -> None:
        if encrypted is not None:
            encrypted["state_dir"] = str(state)
        report = {
            "kind": "accuracy",
            "created": created.isoformat(),
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "command": sys.argv,
            "git": git,
            "model": {"name": model_name, "source": source, "config": cfg.__dict__, "digest": w.weights_digest()},
            "profile": params.describe(),
            "calibration": {"source": calib_source, "prompt_set": "calibration",
                            "domains": [d.as_dict() for d in domains]},
            "evaluation_set": {"prompts": len(prompts), "truncated_to_128_tokens": sum(p["truncated"] for p in prompts),
                               "cut_to_tokens": cut_to},
            "mirror": mirror,
            "encrypted": encrypted,
            "environment": environment(),
            "seconds": time.time() - t0,
        }
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "report.json", report)
        _write_text(folder / "report.md", render_accuracy_markdown(report))

    encrypted = None
    if batch:
        encrypted = run_encrypted(w, domains, params, batch, state, encrypted_layers, device, tick, deadline,
                                  refresh, on_progress=write,
                                  commit=(git.get("commit") or "")[:12] + (" (dirty)" if git.get("dirty") else ""),
                                  bootstrap_passes=bootstrap_passes)
    write(encrypted)
    return folder


def _span(values) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _num(x, fmt: str) -> str:
    return "n/a" if x is None else format(x, fmt)


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _reading(indicator: dict | None) -> str:
    """One layer's range-indicator reading, in a table cell."""
    if indicator is None:
        return "n/a"
    if not indicator["clean"]:
        return "OUT OF DOMAIN: " + ", ".join(indicator["flagged"])
    return "suspect: " + ", ".join(indicator["suspect"]) if indicator["suspect"] else "clean"


def _refresh_line(e: dict) -> str:
    """How the run restored levels, and where a key holder stepped in."""
    resumed = e.get("resumed_at") or []
    commits: dict[str, list[int]] = {}
    for x in e["per_layer"]:
        commits.setdefault(x.get("commit") or "unrecorded", []).append(x["layer"])
    code = ("" if len(commits) < 2 else " The layers ran at several commits: " + "; ".join(
        f"{c}: layers {_span(v)}" for c, v in commits.items()) + ".")
    boundaries = (f" The run resumed at layers {', '.join(map(str, resumed))}: at each of them the key holder "
                  "encrypted the saved state afresh (with fresh keys), one refresh by the key holder per resumption."
                  if resumed else "")
    if e.get("refresh", "client") == "client":
        return "Refresh: client (the key holder decrypts and re-encrypts when levels run out)." + boundaries + code
    flagged, suspect = e["indicator_flagged_layers"], e["indicator_suspect_layers"]
    verdict = ("clean in every layer" if not flagged and not suspect else
               (f"OUT OF DOMAIN in layers {', '.join(map(str, flagged))}" if flagged else "no layer out of domain")
               + (f"; suspect in layers {', '.join(map(str, suspect))}" if suspect else ""))
    passes = " (one pass each: --bootstrap-passes 1)" if e.get("bootstrap_passes") == 1 else ""
    return (f"Refresh: bootstrapping on the server{passes}, {e['bootstraps']} bootstraps in the layers done, "
            f"0 round trips inside a run. Range indicator, read after each layer ({e['indicator_layers_read']} "
            f"layers): {verdict}."
            + boundaries + code)


def render_accuracy_markdown(r: dict) -> str:
    m, e = r["mirror"], r["encrypted"]
    lines = [
        f"# Accuracy on held-out prompts: {r['model']['name']}",
        "",
        f"Model: {r['model']['source']}. Profile {r['profile'].get('name')} . Commit {r['git'].get('commit')}"
        f"{' (dirty)' if r['git'].get('dirty') else ''}. Command: `{' '.join(r['command'])}`.",
        f"Calibration: the shipped calibration set ({r['calibration']['source']}); scored on the disjoint evaluation "
        f"set ({r['evaluation_set']['prompts']} prompts, {r['evaluation_set']['truncated_to_128_tokens']} cut to "
        f"{r['evaluation_set'].get('cut_to_tokens', 128)} "
        "tokens).",
        "",
        "## Plaintext mirror of every circuit, all layers, whole evaluation set",
        "",
        "The float64 model with each nonlinearity replaced by the circuit's own plaintext evaluation: the "
        "approximation error of an encrypted run, without CKKS noise.",
        "",
        "| metric | value | goal |",
        "|---|---|---|",
        f"| next-token top-1 agreement | {_pct(m['top1_agreement'])} | >= 99 % |",
        f"| top-5 overlap (mean) | {m['top5_overlap_mean']:.2f} / 5 | |",
        f"| KL (mean / max, nats) | {m['kl_mean']:.2e} / {m['kl_max']:.2e} | |",
        f"| per-layer cosine, min over prompts and layers | {min(m['layer_cosine_min']):.6f} | >= 0.999 |",
        f"| per-layer cosine, median | {np.median(m['layer_cosine_median']):.6f} | |",
        f"| prompts with a domain violation (refusals) | {m['prompts_with_domain_violations']} "
        f"({_pct(m['domain_refusal_rate'])}) | <= 1 % |",
        f"| softmax rows, max total variation | {m['silent_errors']['softmax_tv_max']:.2e} | <= 1e-3 |",
        f"| 1/sqrt, max relative error | {m['silent_errors']['rsqrt_rel_max']:.2e} | <= 2^-12 = 2.4e-4 |",
        f"| SiLU, max abs error / relative to max(1, |y|) | {m['silent_errors']['silu_abs_max']:.2e} / "
        f"{m['silent_errors']['silu_rel_max']:.2e} | |",
        "",
        "Per-layer cosine (min over prompts): " + ", ".join(f"{c:.5f}" for c in m["layer_cosine_min"]),
        "",
    ]
    bad = [row for row in m["rows"] if not row["top1"] or row["violations"]]
    if bad:
        lines += ["Prompts that disagree or violate a domain:", ""]
        lines += [f"- {row['id']} ({row['kind']}, {row['tokens']} tokens): top-1 {'ok' if row['top1'] else 'differs'}, "
                  f"KL {row['kl']:.2e}, violations: {', '.join(row['violations']) or 'none'}" for row in bad]
        lines.append("")
    if e:
        lines += [
            "## Fully encrypted run",
            "",
            f"Prompts {', '.join(e['prompt_ids'])} (one per kind, each cut to its first "
            f"{_span(e['tokens'])} tokens, {sum(e['tokens'])} in all) packed into one ciphertext; "
            f"layers done: {e['layers_done']} of {e['layers_total']}"
            + ("." if e["complete"] else " (PARTIAL: the rows below cover only these layers; the same command "
               "resumes from the next)."),
            "",
            _refresh_line(e),
            "",
            "| metric | value |",
            "|---|---|",
            f"| top-1 agreement | {_pct(e['top1_agreement'])} |",
            f"| KL max (nats) | {_num(e['kl_max'], '.2e')} |",
            f"| per-layer cosine min | {_num(e['layer_cosine_min'], '.6f')} |",
            f"| precision after a layer, min (bits, relative to max abs h) | {_num(e['precision_bits_min'], '.1f')} |",
            f"| seconds per layer (median) | {_num(e['seconds_per_layer_median'], '.0f')} |",
            "",
            "| layer | cosine min | precision (bits) | max abs error | seconds | bootstraps | range indicator |",
            "|---|---|---|---|---|---|---|",
        ]
        lines += [f"| {x['layer']} | {x['cosine_min']:.6f} | {x['precision_bits']:.1f} | {x['max_abs_error']:.3g} | "
                  f"{x['seconds']:.0f} | {_num(x.get('bootstraps'), 'd')} | {_reading(x.get('indicator'))} |"
                  for x in e["per_layer"]]
        if e["final"] and e.get("refresh", "client") == "client":
            st = e["final"]["stats"]
            lines += ["", f"Client refresh round trips: {st['refresh_round_trips']} "
                      f"({st['refresh_bytes_to_client'] / 2**20:.0f} MiB to the client, "
                      f"{st['refresh_bytes_to_server'] / 2**20:.0f} MiB back); public key material "
                      f"{e['final']['key_bytes'] / 2**30:.2f} GiB."]
        elif e["final"]:
            boot = e["final"]["bootstrap"]
            by_stage = ", ".join(f"{k} {v}" for k, v in boot["by_stage"].items())
            lines += ["", f"Last run's bootstraps by stage: {by_stage}; public key material "
                      f"{e['final']['key_bytes'] / 2**30:.2f} GiB."]
    lines += ["", f"Machine: {r['environment'].get('cpu')} ({r['environment'].get('cpu_count')} cores); "
              f"total {r['seconds']:.0f} s.", ""]
    return "\n".join(lines)
