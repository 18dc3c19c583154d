"""Compare two benchmark reports: change per result, flagged only beyond the noise of both runs.

What is compared, per result present in both reports:

* time: new median / old median, with the intervals of both medians
  (``timing.median_interval``). A change is flagged only when the intervals
  separate (the new interval lies wholly above or below the old one) *and*
  the medians differ by more than ``MIN_CHANGE`` (5 %: on shared 2-core
  machines, drift of a few percent between runs is ordinary);
* the fhectl / OpenFHE ratio of an ``ops`` result, where both runs timed
  both: the same test on the ratio's interval (from the interleaved pairs; for
  a schema-1 report, timed in separate blocks, a conservative interval from the
  two medians' intervals). Machine load largely cancels in that ratio, so it,
  not fhectl's absolute time, decides the verdict of an ``ops`` row that has
  one; OpenFHE's own rows are shown as the drift of the machine, never flagged;
* precision: a loss of more than ``PRECISION_TOLERANCE_BITS`` (one bit; the
  precision of one random input varies by a few tenths of a bit) is flagged.

Reports of different profiles (parameter ids) or devices measure different
things and are refused unless the caller allows it (``allow_mismatch``).
"""

from __future__ import annotations

from fhectl.bench.timing import median_interval, summary_from_dict
from fhectl.errors import InputError

MIN_CHANGE = 0.05
PRECISION_TOLERANCE_BITS = 1.0


def _key(r: dict) -> tuple:
    return (r["suite"], r["name"], r["impl"], r.get("batch_size"))


def _bits(value) -> float | None:
    if value is None:
        return None
    return float(value)  # "inf" (an exact result, stored as a string) parses to inf


def check_comparable(old: dict, new: dict) -> list[str]:
    """Why the two reports measure different things (empty when they are comparable)."""
    why = []
    op, np_ = old.get("profile", {}), new.get("profile", {})
    if op.get("params_id") != np_.get("params_id"):
        why.append(f"profiles differ: {op.get('name')} (id {op.get('params_id')}) and "
                   f"{np_.get('name')} (id {np_.get('params_id')})")
    od, nd = old.get("config", {}).get("device"), new.get("config", {}).get("device")
    if od != nd:
        why.append(f"devices differ: {od} and {nd}")
    ocpu, ncpu = old.get("environment", {}).get("cpu"), new.get("environment", {}).get("cpu")
    if ocpu != ncpu:
        why.append(f"machines differ: {ocpu} and {ncpu}")
    return why


def _verdict(old_lo, old_hi, old_mid, new_lo, new_hi, new_mid) -> str:
    if old_mid <= 0:
        return "same"
    change = new_mid / old_mid
    if new_lo > old_hi and change > 1 + MIN_CHANGE:
        return "regression"
    if new_hi < old_lo and change < 1 / (1 + MIN_CHANGE):
        return "improvement"
    return "same"


def _ratio_interval(r: dict, baseline: dict | None) -> tuple[float, float, float] | None:
    """(low, high, median) of fhectl / OpenFHE for an ops result: from its interleaved pairs where it has them;
    otherwise (a schema-1 report, timed in separate blocks) the ratio of the medians, with the conservative
    interval [ours low / theirs high, ours high / theirs low] of the two medians' intervals."""
    ratio = r.get("ratio_to_baseline")
    if ratio:
        if ratio.get("ratios"):
            lo, hi, _ = median_interval(ratio["ratios"])
            return lo, hi, float(ratio["median"])
        return float(ratio["ci_low"]), float(ratio["ci_high"]), float(ratio["median"])
    if r["suite"] != "ops" or r["impl"] != "fhectl" or baseline is None:
        return None
    ours, theirs = summary_from_dict(r["timing"]), summary_from_dict(baseline["timing"])
    if theirs.ci_low_s <= 0 or theirs.median_s <= 0:
        return None
    return ours.ci_low_s / theirs.ci_high_s, ours.ci_high_s / theirs.ci_low_s, ours.median_s / theirs.median_s


def compare_reports(old: dict, new: dict, allow_mismatch: bool = False) -> list[dict]:
    """One row per result in both reports, with its verdict; raises InputError on incomparable reports."""
    why = check_comparable(old, new)
    if why and not allow_mismatch:
        raise InputError("the reports are not comparable (" + "; ".join(why) + "); pass --allow-mismatch to "
                         "compare them anyway")
    old_by = {_key(r): r for r in old["results"]}
    new_by = {_key(r): r for r in new["results"]}

    def baseline_of(by: dict, r: dict) -> dict | None:
        return by.get((r["suite"], r["name"], "openfhe", r.get("batch_size")))
    rows = []
    for r in new["results"]:
        o = old_by.get(_key(r))
        if o is None:
            continue
        ot, nt = summary_from_dict(o["timing"]), summary_from_dict(r["timing"])
        if ot.median_s <= 0:
            continue
        time_verdict = _verdict(ot.ci_low_s, ot.ci_high_s, ot.median_s, nt.ci_low_s, nt.ci_high_s, nt.median_s)
        row = {
            "suite": r["suite"], "name": r["name"], "impl": r["impl"], "batch_size": r.get("batch_size"),
            "old_median_s": ot.median_s, "new_median_s": nt.median_s, "ratio": nt.median_s / ot.median_s,
            "old_interval_s": [ot.ci_low_s, ot.ci_high_s], "new_interval_s": [nt.ci_low_s, nt.ci_high_s],
            "time_verdict": time_verdict,
            "old_vs_baseline": None, "new_vs_baseline": None, "baseline_verdict": None,
            "old_precision_bits": _bits(o.get("precision_bits")), "new_precision_bits": _bits(r.get("precision_bits")),
            "precision_verdict": None,
        }
        oi, ni = _ratio_interval(o, baseline_of(old_by, o)), _ratio_interval(r, baseline_of(new_by, r))
        if oi and ni:
            row["old_vs_baseline"], row["new_vs_baseline"] = oi[2], ni[2]
            row["baseline_verdict"] = _verdict(oi[0], oi[1], oi[2], ni[0], ni[1], ni[2])
        ob, nb = row["old_precision_bits"], row["new_precision_bits"]
        if ob is not None and nb is not None:
            lost = 0.0 if ob == nb else ob - nb  # bits lost; an exact result is inf
            row["precision_verdict"] = "loss" if lost > PRECISION_TOLERANCE_BITS else "same"
        if r["impl"] == "openfhe":
            verdict = "baseline"  # OpenFHE's drift between the runs: the machine, not fhectl
        elif row["baseline_verdict"] is not None:
            verdict = row["baseline_verdict"]
        else:
            verdict = time_verdict
        if row["precision_verdict"] == "loss" and r["impl"] != "openfhe":
            verdict = "precision loss" if verdict != "regression" else "regression, precision loss"
        row["verdict"] = verdict
        rows.append(row)
    if not rows:
        raise InputError("the two reports have no result in common (suite, name, implementation, batch size)")
    return rows


def is_regression(row: dict) -> bool:
    return row["verdict"].startswith("regression") or "precision loss" in row["verdict"]
