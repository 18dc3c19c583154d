"""Compare two benchmark reports: ratios per result, regressions beyond the runs' noise.

A result is flagged when the new median exceeds the old one by more than the
noise of the two runs: the sum of their relative interquartile ranges, and
never less than 5 % (on shared 2-core machines, repeat-to-repeat drift of a
few percent is ordinary). Improvements beyond the same margin are marked too.
"""

from __future__ import annotations

from fhectl.errors import InputError

MIN_NOISE = 0.05


def _key(r: dict) -> tuple:
    return (r["suite"], r["name"], r["impl"], r.get("batch_size"), r.get("device"))


def compare_reports(old: dict, new: dict) -> list[dict]:
    old_by = {_key(r): r for r in old["results"]}
    rows = []
    for r in new["results"]:
        o = old_by.get(_key(r))
        if o is None:
            continue
        om, nm = o["timing"]["median_s"], r["timing"]["median_s"]
        if om <= 0:
            continue
        noise = max(MIN_NOISE, o["timing"]["iqr_s"] / om + r["timing"]["iqr_s"] / max(nm, 1e-12))
        ratio = nm / om
        verdict = "regression" if ratio > 1 + noise else "improvement" if ratio < 1 / (1 + noise) else "same"
        rows.append(
            {
                "suite": r["suite"],
                "name": r["name"],
                "impl": r["impl"],
                "batch_size": r.get("batch_size"),
                "old_median_s": om,
                "new_median_s": nm,
                "ratio": ratio,
                "noise": noise,
                "verdict": verdict,
                "old_precision_bits": o.get("precision_bits"),
                "new_precision_bits": r.get("precision_bits"),
            }
        )
    if not rows:
        raise InputError("the two reports have no result in common (suite, name, implementation, batch size, device)")
    return rows
