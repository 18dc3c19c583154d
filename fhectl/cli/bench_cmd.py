"""`fhectl bench`: reproducible benchmark reports; `fhectl bench compare OLD NEW`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fhectl.bench.compare import compare_reports, is_regression
from fhectl.bench.report import busy_machine, load_report, rerender
from fhectl.bench.runner import SUITES, check_arguments, estimate_run, run_benchmarks
from fhectl.ckks.params import load_parameters
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.options import Choice, Device, Insecure, Json
from fhectl.cli.refresh_report import refuse_unbootstrappable
from fhectl.errors import InputError

app = typer.Typer(help="Benchmark fhectl (and OpenFHE) and write a report under bench_results/.")

QUICK_PROFILE = "tiny-deep-insecure"
DEFAULT_SUITES = "ops"  # minutes at the 128-bit profile; layers and block (hours, ~19 GiB) are asked for by name
QUICK_SUITES = "ops,layers,block"  # all three, at toy sizes: seconds
DEFAULT_REPEAT, QUICK_REPEAT = 10, 3
DEFAULT_BATCH_SIZES, QUICK_BATCH_SIZES = "1,8,32", "2,8"


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{what} must be positive integers, got {text!r}")
    return values


class BaselineChoice(Choice):
    openfhe = "openfhe"
    none = "none"


@app.callback(invoke_without_command=True)
@guarded
def bench(
    ctx: typer.Context,
    batch_sizes: Annotated[Optional[str], typer.Option("--batch-sizes", help=f"Tokens per ciphertext of the layers and block suites (default {DEFAULT_BATCH_SIZES}; {QUICK_BATCH_SIZES} with --quick).")] = None,
    suite: Annotated[Optional[str], typer.Option("--suite", help=f"Comma-separated suites: {', '.join(SUITES)}; or accuracy (alone). Default: {DEFAULT_SUITES} (minutes); with --quick, {QUICK_SUITES} at toy sizes. layers and block at the 128-bit profile take hours and ~19 GiB. bootstrap needs a bootstrappable profile (e.g. tiny-bootstrap-insecure with --insecure); an interrupted bootstrap run writes a partial report and resumes when rerun.")] = None,
    device: Device = "auto",
    profile: Annotated[Optional[str], typer.Option("--profile", "-p", help="Parameter profile (default gpt2-n16-128).")] = None,
    baseline: Annotated[BaselineChoice, typer.Option("--baseline", help="What fhectl is timed against, interleaved.", case_sensitive=False)] = "openfhe",
    repeat: Annotated[Optional[int], typer.Option("--repeat", help=f"Timed repeats per result (with a baseline: interleaved pairs). Default {DEFAULT_REPEAT}, {QUICK_REPEAT} with --quick.")] = None,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up runs before timing.")] = 1,
    out: Annotated[Path, typer.Option("--output", "--out", "-o", help="Directory that receives the report directory.")] = Path("bench_results"),
    quick: Annotated[bool, typer.Option("--quick", help=f"Seconds-long smoke run: tiny insecure profile, tiny model, {QUICK_REPEAT} repeats (after a first-time Numba compilation).")] = False,
    estimate_only: Annotated[bool, typer.Option("--estimate", help="Print the estimated time and memory of the run and exit without running it.")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="accuracy suite: model name (smollm2-135m).")] = "smollm2-135m",
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", help="accuracy suite: .gguf file, checkpoint directory or Hugging Face repo id.")] = None,
    encrypted_prompts: Annotated[int, typer.Option("--encrypted-prompts", help="accuracy suite: prompts in the fully encrypted run (0: mirror only).", min=0)] = 8,
    encrypted_layers: Annotated[Optional[int], typer.Option("--encrypted-layers", help="accuracy suite: layers encrypted (default: all).", min=0)] = None,
    budget_minutes: Annotated[Optional[float], typer.Option("--budget-minutes", help="accuracy suite: stop the encrypted run after this long (it resumes on the next run).")] = None,
    refresh: Annotated[str, typer.Option("--refresh", help="accuracy suite: how the encrypted run restores levels: client (round trips to the key holder) or bootstrap (on the server; needs a bootstrappable profile such as boot-n16-128).")] = "client",
    threads: Annotated[Optional[int], typer.Option("--threads", help="bootstrap suite: threads for each side, Numba's for fhectl and OpenMP's for OpenFHE (set before openfhe loads). Default 1.", min=1)] = None,
    isolated: Annotated[Optional[bool], typer.Option("--isolated/--no-isolated", help="bootstrap suite: run each side in child processes, in blocks A B A B (for rings where both sides do not fit in memory together). Default: when the estimated peak of both sides exceeds 80 % of the RAM.")] = None,
    rounds_per_block: Annotated[Optional[int], typer.Option("--rounds-per-block", help="bootstrap suite, isolated: timed rounds per child process (after its set-up and one warm-up); --repeat rounds in all. Default 2.", min=1)] = None,
    block_timeout: Annotated[Optional[float], typer.Option("--block-timeout", help="bootstrap suite, isolated: stop a child process after this many seconds and record that.", min=1)] = None,
    openfhe_params: Annotated[Optional[str], typer.Option("--openfhe-params", help="bootstrap suite: OpenFHE's parameters: mirror (sizes of the fhectl profile) or native (OpenFHE's bootstrapping recipe, FirstModSize 60 / ScalingModSize 59, as many levels after as its 128-bit table allows, up to fhectl's). Default: native for profiles with primes set aside for bootstrapping (OpenFHE refuses boot-n16-128's 55/40-bit sizes), else mirror.", show_default=False)] = None,
    openfhe_iterations: Annotated[Optional[int], typer.Option("--openfhe-iterations", help="bootstrap suite: OpenFHE's EvalBootstrap numIterations: 1 (default) or 2, OpenFHE's own Meta-BTS refinement (one more level; the first iteration's precision is measured at set-up), the like of fhectl's two passes.", min=1, max=2)] = None,
    slots: Annotated[Optional[int], typer.Option("--slots", help="bootstrap suite: bootstrap n' values repeated over the slots with the sparse-slot circuit (a power of two, at most N/4; OpenFHE's numSlots on its side). Default: all N/2 slots.", min=1)] = None,
    bootstrap_passes: Annotated[int, typer.Option("--bootstrap-passes", help="accuracy suite, --refresh bootstrap: 2 (the first pass and the refinement, default) or 1 (the first pass alone: half the time; SmolLM2 at boot-n16-128 fell to 3.7 bits after one block). Its state and report are kept apart.")] = 2,
    rotation_keys: Annotated[Optional[str], typer.Option("--rotation-keys", help="bootstrap suite: fhectl's baby-step split of the transforms: fast (fewer key switches, more rotation keys: 47 at boot-n16-128) or fewest (39 keys). Default: fast.", show_default=False)] = None,
    insecure: Insecure = False,
    json: Json = False,
) -> None:
    """Time CKKS operations, encrypted GPT-2 layers and a whole block, or one bootstrapping against OpenFHE's
    (``--suite bootstrap``); or score encrypted Llama inference on held-out prompts (``--suite accuracy``).
    Writes report.json and report.md (and plots) under --out."""
    if ctx.invoked_subcommand is not None:
        return
    suites = [s.strip() for s in (suite or (QUICK_SUITES if quick else DEFAULT_SUITES)).split(",") if s.strip()]
    if "accuracy" in suites:
        if suites != ["accuracy"]:
            raise InputError("--suite accuracy runs alone (it writes its own report)")
        _accuracy(model, weights, profile, insecure, device, out, encrypted_prompts, encrypted_layers,
                  budget_minutes, json, refresh, bootstrap_passes)
        return
    if bootstrap_passes != 2:
        raise InputError("--bootstrap-passes is an option of the accuracy suite (--suite accuracy)")
    sizes = parse_int_list(batch_sizes or (QUICK_BATCH_SIZES if quick else DEFAULT_BATCH_SIZES), "--batch-sizes")
    if repeat is None:
        repeat = QUICK_REPEAT if quick else DEFAULT_REPEAT
    model_config = None
    if quick:
        profile = profile or QUICK_PROFILE
        insecure = True
        from fhectl.bench.gpt2_suite import quick_model_config

        model_config = quick_model_config()
        sizes = [s for s in sizes if s <= model_config.n_positions] or [1]
    params = load_parameters(profile or "gpt2-n16-128", allow_insecure=insecure)
    base = None if baseline == BaselineChoice.none else str(baseline)
    check_arguments(params, suites, sizes, repeat, warmup, model_config, slots, rotation_keys, openfhe_iterations)
    if openfhe_params is None:
        openfhe_params = "native" if params.bootstrap_levels else "mirror"
    boot_options = {"threads": threads, "isolated": isolated, "rounds_per_block": rounds_per_block,
                    "block_timeout_s": block_timeout, "openfhe_params": openfhe_params, "slots": slots,
                    "rotation_keys": rotation_keys, "openfhe_iterations": openfhe_iterations}
    cost = estimate_run(params, suites, sizes, repeat, warmup, base, model_config, boot_options)
    if estimate_only:
        if json:
            console.print_json({"seconds": cost.seconds, "peak_bytes": cost.peak_bytes, "parts_s": cost.parts})
        else:
            console.out.print(cost.describe())
        return
    batches = f", batch sizes {sizes}" if {"layers", "block"} & set(suites) else ""
    console.err.print(f"benchmarking {', '.join(suites)} on {params.name} (N={params.ring_degree}, "
                      f"{params.max_level} levels){batches}, {repeat} repeats")
    console.err.print(cost.describe())
    with console.progress(transient=True) as bar:
        task = bar.add_task("benchmarks", total=None)

        def tick(name: str) -> None:
            bar.update(task, advance=1, description=name)
            if not console.err.is_terminal:
                console.err.print(f"  done: {name}")

        path = run_benchmarks(params, suites, sizes, device, base, repeat, warmup, out, tick,
                              model_config=model_config, bootstrap_options=boot_options)
    if json:
        console.print_json({"report_dir": str(path)})
    else:
        console.out.print(str(path))
        console.err.print(f"report written: {path / 'report.md'}")


def _accuracy(model, weights, profile, insecure, device, out, encrypted_prompts, encrypted_layers, budget_minutes,
              json, refresh, bootstrap_passes) -> None:
    from fhectl.bench.accuracy import run_accuracy_report

    if refresh not in ("client", "bootstrap"):
        raise InputError(f"--refresh must be client or bootstrap, got {refresh!r}")
    params = load_parameters(profile or ("boot-n16-128" if refresh == "bootstrap" else "gpt2-n16-128"),
                             allow_insecure=insecure)
    if refresh == "bootstrap" and encrypted_prompts:
        refuse_unbootstrappable(params)
    console.err.print(f"accuracy of {model} on the evaluation set: plaintext mirror of every circuit, then "
                      f"{encrypted_prompts} prompts fully encrypted on {params.name} ({refresh} refresh"
                      + (", one pass)" if bootstrap_passes == 1 else ")"))

    def tick(name: str) -> None:
        console.err.print(f"  {name}")

    path = run_accuracy_report(model, weights, params, out, encrypted_prompts=encrypted_prompts,
                               encrypted_layers=encrypted_layers, device="cpu" if device == "auto" else device,
                               budget_s=None if budget_minutes is None else 60 * budget_minutes, tick=tick,
                               refresh=refresh, bootstrap_passes=bootstrap_passes)
    if json:
        console.print_json({"report_dir": str(path)})
    else:
        console.out.print(str(path))


@app.command("compare")
@guarded
def compare(
    old: Annotated[Path, typer.Argument(help="Old report directory or report.json.")],
    new: Annotated[Path, typer.Argument(help="New report directory or report.json.")],
    allow_mismatch: Annotated[bool, typer.Option("--allow-mismatch", help="Compare reports of different profiles, devices or machines anyway.")] = False,
    json: Json = False,
) -> None:
    """Change per result, new/old; flags time regressions only where the two runs' intervals separate (and by
    more than 5 %), judges ops by their fhectl/OpenFHE ratio where both runs have one, and flags precision
    losses over 1 bit. Exit 1 if anything is flagged."""
    old_report, new_report = load_report(old), load_report(new)
    rows = compare_reports(old_report, new_report, allow_mismatch=allow_mismatch)
    for path, rep in ((old, old_report), (new, new_report)):
        busy = busy_machine(rep)
        if busy:
            console.err.print(f"warning: {path} was measured on a busy machine ({busy}); its fhectl/OpenFHE ratios "
                              "are pessimistic for fhectl, so verdicts against it are unreliable")
    if json:
        console.print_json(rows)
    else:
        table = Table(title=f"{new} vs {old}")
        for col in ("suite", "name", "impl", "tokens", "old", "new", "new/old", "vs OpenFHE old -> new", "bits",
                    "verdict"):
            table.add_column(col)
        for r in rows:
            vs = (f"{r['old_vs_baseline']:.2f} -> {r['new_vs_baseline']:.2f}"
                  if r["new_vs_baseline"] is not None else "")
            bits = (f"{r['old_precision_bits']:.1f} -> {r['new_precision_bits']:.1f}"
                    if r["new_precision_bits"] is not None and r["old_precision_bits"] is not None else "")
            table.add_row(r["suite"], r["name"], r["impl"], str(r["batch_size"] or ""),
                          f"{r['old_median_s'] * 1e3:.2f} ms", f"{r['new_median_s'] * 1e3:.2f} ms",
                          f"{r['ratio']:.2f}", vs, bits, r["verdict"])
        console.out.print(table)
    if any(is_regression(r) for r in rows):
        raise typer.Exit(1)


@app.command("render")
@guarded
def render(report_dir: Annotated[Path, typer.Argument(help="Report directory (holding report.json).")]) -> None:
    """Rewrite a report's plots and report.md from its report.json, without running anything."""
    console.out.print(str(rerender(report_dir)))
