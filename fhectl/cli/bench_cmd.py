"""`fhectl bench`: reproducible benchmark reports; `fhectl bench compare OLD NEW`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fhectl.bench.compare import compare_reports
from fhectl.bench.report import load_report
from fhectl.bench.runner import SUITES, run_benchmarks
from fhectl.ckks.params import load_parameters
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.options import Device, Insecure, Json
from fhectl.errors import InputError

app = typer.Typer(help="Benchmark fhectl (and OpenFHE) and write a report under bench_results/.")

QUICK_PROFILE = "tiny-deep-insecure"


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InputError(f"{what} must be positive integers, got {text!r}")
    return values


@app.callback(invoke_without_command=True)
@guarded
def bench(
    ctx: typer.Context,
    batch_sizes: Annotated[str, typer.Option("--batch-sizes", "-b", help="Tokens per ciphertext, e.g. 1,8,32.")] = "1,8,32",
    suite: Annotated[str, typer.Option("--suite", "-s", help=f"Comma-separated suites: {', '.join(SUITES)}; or accuracy (alone).")] = "ops,layers,block",
    device: Device = "auto",
    profile: Annotated[Optional[str], typer.Option("--profile", "-p", help="Parameter profile (default gpt2-n16-128).")] = None,
    baseline: Annotated[str, typer.Option("--baseline", help="openfhe or none.")] = "openfhe",
    repeat: Annotated[int, typer.Option("--repeat", "-r", help="Timed repeats per result (median reported).")] = 5,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed warm-up runs before timing.")] = 1,
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory that receives the report directory.")] = Path("bench_results"),
    quick: Annotated[bool, typer.Option("--quick", help="Seconds-long smoke run: tiny insecure profile, tiny model, 2 repeats.")] = False,
    model: Annotated[str, typer.Option("--model", "-m", help="accuracy suite: model name (smollm2-135m).")] = "smollm2-135m",
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", help="accuracy suite: .gguf file, checkpoint directory or Hugging Face repo id.")] = None,
    encrypted_prompts: Annotated[int, typer.Option("--encrypted-prompts", help="accuracy suite: prompts in the fully encrypted run (0: mirror only).", min=0)] = 8,
    encrypted_layers: Annotated[Optional[int], typer.Option("--encrypted-layers", help="accuracy suite: layers encrypted (default: all).", min=0)] = None,
    budget_minutes: Annotated[Optional[float], typer.Option("--budget-minutes", help="accuracy suite: stop the encrypted run after this long (it resumes on the next run).")] = None,
    insecure: Insecure = False,
    json: Json = False,
) -> None:
    """Time CKKS operations, encrypted GPT-2 layers and a whole block; or score encrypted Llama inference on
    held-out prompts (``--suite accuracy``). Writes report.json and report.md (and plots) under --out."""
    if ctx.invoked_subcommand is not None:
        return
    suites = [s.strip() for s in suite.split(",") if s.strip()]
    if "accuracy" in suites:
        if suites != ["accuracy"]:
            raise InputError("--suite accuracy runs alone (it writes its own report)")
        _accuracy(model, weights, profile, insecure, device, out, encrypted_prompts, encrypted_layers,
                  budget_minutes, json)
        return
    sizes = parse_int_list(batch_sizes, "--batch-sizes")
    if baseline not in ("openfhe", "none"):
        raise InputError(f"--baseline must be openfhe or none, got {baseline!r}")
    model_config = None
    if quick:
        profile = profile or QUICK_PROFILE
        insecure = True
        repeat, warmup = min(repeat, 2), min(warmup, 1)
        from fhectl.gpt2.bench_suite import quick_model_config

        model_config = quick_model_config()
        sizes = [s for s in sizes if s <= model_config.n_positions] or [1]
    params = load_parameters(profile or "gpt2-n16-128", allow_insecure=insecure)
    console.err.print(f"benchmarking {', '.join(suites)} on {params.name} (N={params.ring_degree}, "
                      f"{params.max_level} levels), batch sizes {sizes}, {repeat} repeats")
    with console.progress(transient=True) as bar:
        task = bar.add_task("benchmarks", total=None)

        def tick(name: str) -> None:
            bar.update(task, advance=1, description=name)
            if not console.err.is_terminal:
                console.err.print(f"  done: {name}")

        path = run_benchmarks(params, suites, sizes, device, None if baseline == "none" else baseline, repeat,
                              warmup, out, tick, model_config=model_config)
    if json:
        console.print_json({"report_dir": str(path)})
    else:
        console.out.print(str(path))
        console.err.print(f"report written: {path / 'report.md'}")


def _accuracy(model, weights, profile, insecure, device, out, encrypted_prompts, encrypted_layers, budget_minutes,
              json) -> None:
    from fhectl.bench.accuracy import run_accuracy_report

    params = load_parameters(profile or "gpt2-n16-128", allow_insecure=insecure)
    console.err.print(f"accuracy of {model} on the evaluation set: plaintext mirror of every circuit, then "
                      f"{encrypted_prompts} prompts fully encrypted on {params.name}")

    def tick(name: str) -> None:
        console.err.print(f"  {name}")

    path = run_accuracy_report(model, weights, params, out, encrypted_prompts=encrypted_prompts,
                               encrypted_layers=encrypted_layers, device="cpu" if device == "auto" else device,
                               budget_s=None if budget_minutes is None else 60 * budget_minutes, tick=tick)
    if json:
        console.print_json({"report_dir": str(path)})
    else:
        console.out.print(str(path))


@app.command("compare")
@guarded
def compare(
    old: Annotated[Path, typer.Argument(help="Old report directory or report.json.")],
    new: Annotated[Path, typer.Argument(help="New report directory or report.json.")],
    json: Json = False,
) -> None:
    """Ratios new/old per result; flags regressions beyond the noise of the two runs (exit 1 if any)."""
    rows = compare_reports(load_report(old), load_report(new))
    if json:
        console.print_json(rows)
    else:
        table = Table(title=f"{new} vs {old}")
        for col in ("suite", "name", "impl", "tokens", "old", "new", "new/old", "noise", "verdict"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["suite"], r["name"], r["impl"], str(r["batch_size"] or ""),
                          f"{r['old_median_s'] * 1e3:.2f} ms", f"{r['new_median_s'] * 1e3:.2f} ms",
                          f"{r['ratio']:.2f}", f"±{r['noise'] * 100:.0f}%", r["verdict"])
        console.out.print(table)
    if any(r["verdict"] == "regression" for r in rows):
        raise typer.Exit(1)
