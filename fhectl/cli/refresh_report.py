"""What `fhectl infer` says about bootstrapping refresh, for both model families: the early refusal of a
profile that cannot bootstrap, and the report lines of a bootstrapped run."""

from __future__ import annotations

from fhectl.errors import ParameterError


def refuse_unbootstrappable(params) -> None:
    """An explicit --refresh bootstrap on a profile whose chain cannot bootstrap at all: one error line (exit
    3), before anything slow. Whether the blocks fit too is for the engine's level simulator."""
    from fhectl.circuits.bootstrap_refresh import bootstrap_fits

    fits, why = bootstrap_fits(params, 1)
    if not fits:
        raise ParameterError(f"--refresh bootstrap: {why}")


def describe_circuit(config) -> str:
    """One phrase for a ``BootstrapConfig``: its passes and packing."""
    if config.pass_count() == 2:
        passes = "two passes (refined)"
    else:
        passes = "one pass (--bootstrap-passes 1)" if config.refine_bits else "one pass"
    return f"{passes}, {'real' if config.real else 'complex'} slots"


def bootstrap_report(boot: dict, verdicts: list[dict], n_blocks: int, passes: int = 1, unit: str = "pass") -> list[str]:
    """The lines that report a bootstrapped run: ``boot`` (BootstrapStats.as_dict() over ``passes`` passes of
    ``n_blocks`` blocks; one pass: "per pass"), then the range indicator's verdict of each ``unit`` (a pass, a
    generation step): only the unclean or suspect ones when there are several."""
    per_block = boot["bootstraps"] / max(1, passes * n_blocks)
    units = unit + ("es" if unit.endswith("s") else "s")
    where = f"in {passes} {units}" if passes > 1 else f"per {unit}"
    pairs = f", {boot['paired']} of them paired (two ciphertexts each)" if boot.get("paired") else ""
    lines = [f"bootstrapping refresh: {boot['bootstraps']} bootstraps {where} ({per_block:g} per block{pairs}), 0 "
             "round trips; per stage: " + ", ".join(
                 f"{k} {n} ({boot['seconds_by_stage'][k]:.1f}s)" for k, n in boot["by_stage"].items()),
             "levels per refresh stage (arrives at -> leaves at, values scaled by 2^-b): " + ", ".join(
                 f"{k} {'/'.join(map(str, v['in']))}->{v['out']} b={'/'.join(map(str, v['shift']))}"
                 for k, v in boot["levels"].items())]
    for i, v in enumerate(verdicts):
        if len(verdicts) == 1 or not v["clean"] or v["suspect"]:
            lines.append(("" if len(verdicts) == 1 else f"{unit} {i}: ") + v["summary"])
    if len(verdicts) > 1 and all(v["clean"] for v in verdicts):
        lines.append(f"range indicator: clean in all {len(verdicts)} {units}")
    return lines
