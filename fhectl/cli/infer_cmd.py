"""`fhectl infer`: GPT-2 blocks on encrypted hidden states, compared with the float64 reference."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.options import Choice, Device, Insecure, Json
from fhectl.cli.refresh_report import bootstrap_report, describe_circuit, refuse_unbootstrappable
from fhectl.errors import InputError


class ModelChoice(Choice):
    gpt2 = "gpt2"
    smollm2_135m = "smollm2-135m"


Model = Annotated[ModelChoice, typer.Option("--model", "-m", help="Model: gpt2 or smollm2-135m (Llama family).",
                                            case_sensitive=False)]
Weights = Annotated[Optional[str], typer.Option(
    "--weights", "-w", show_default=False,
    help="Checkpoint: a folder (config.json + *.safetensors), a .gguf file (Llama family) or a Hugging Face repo id. "
    "Without it, gpt2 is the Hub's openai-community/gpt2 (downloaded once into the Hugging Face cache; "
    "HF_HUB_OFFLINE=1 uses the cache only) and smollm2-135m the GGUF shipped offline.")]


class RefreshChoice(Choice):
    auto = "auto"
    bootstrap = "bootstrap"
    client = "client"


Refresh = Annotated[RefreshChoice, typer.Option(
    "--refresh", case_sensitive=False,
    help="How levels are restored inside a block (both models): bootstrap (the server bootstraps, zero round "
    "trips; a homomorphic range indicator replaces the key holder's domain checks), client (ciphertexts go back to "
    "the key holder to be decrypted and re-encrypted) or auto (bootstrap when the profile's chain fits the "
    "bootstrapper and the blocks, else client with a note). An explicit bootstrap on a profile that cannot is "
    "an error (exit 3); with --server the server decides (`fhectl serve --refresh`) and an explicit value must "
    "match it.")]
BootstrapPasses = Annotated[int, typer.Option(
    "--bootstrap-passes",
    help="With bootstrapping on a refining profile (boot-n16-128): 2, the first pass and the refinement on its "
    "error (the default), or 1, the first pass alone: half the time, about 10 bits less precise per refresh. "
    "Measured on SmolLM2 at boot-n16-128: 3.7 bits after the first block, against 13.5 with two passes; for "
    "experiments, not for trained models at that profile. Local runs only.")]
AllowOutOfDomain = Annotated[bool, typer.Option(
    "--allow-out-of-domain",
    help="With bootstrapping: report a range indicator that reads out of domain instead of failing (exit 7).")]
Revision = Annotated[Optional[str], typer.Option(
    "--revision", show_default=False,
    help="Hugging Face revision (branch, tag or commit) of a repo given by id (default: main).")]


def check_bootstrap_passes(passes: int, refresh: str, server: str | None) -> None:
    """--bootstrap-passes: 1 or 2, for bootstrapping in this process (a server decides its own)."""
    if passes not in (1, 2):
        raise InputError(f"--bootstrap-passes must be 1 or 2, got {passes}")
    if passes != 2 and refresh == "client":
        raise InputError("--bootstrap-passes is for bootstrapping; --refresh client has no bootstrapping")
    if passes != 2 and server is not None:
        raise InputError("with --server the server bootstraps as `fhectl serve` was started; drop --bootstrap-passes")


def read_prompt(path: str) -> str:
    """The prompt text of file ``path`` ('-': stdin), without its final newlines; an InputError if unusable."""
    if path == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"prompt file {path} does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"prompt file {path} is not UTF-8 text") from None
    text = text.rstrip("\n")
    if not text.strip():
        raise InputError(f"prompt {path} is empty")
    return text


@guarded
def infer(
    prompt: Annotated[str, typer.Argument(help="Prompt text file ('-' reads stdin).")],
    model: Model = ModelChoice.gpt2,
    weights: Weights = None,
    revision: Revision = None,
    chat: Annotated[bool, typer.Option("--chat", help="Llama family: wrap the prompt in the model's chat template.")] = False,
    system: Annotated[Optional[str], typer.Option("--system", help="With --chat: the system turn's text (default: the template's own; '' for an empty one).")] = None,
    random_weights_flag: Annotated[bool, typer.Option("--random-weights", help="gpt2: GPT-2-shaped random weights (clearly labelled).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random-weights.")] = 0,
    layers: Annotated[Optional[int], typer.Option("--layers", "-l", help="Blocks to run encrypted (default: all for gpt2, 1 for smollm2-135m).", show_default=False)] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-t", help="Tokens to generate.")] = 1,
    profile: Annotated[str, typer.Option("--profile", "-p", help="Parameter profile.")] = "gpt2-n16-128",
    insecure: Insecure = False,
    device: Device = "auto",
    json: Json = False,
    server: Annotated[Optional[str], typer.Option("--server", help="URL of an `fhectl serve` server to run the encrypted blocks (Llama family); the secret key stays here.", show_default=False)] = None,
    refresh: Refresh = RefreshChoice.auto,
    bootstrap_passes: BootstrapPasses = 2,
    allow_out_of_domain: AllowOutOfDomain = False,
) -> None:
    """Run a model's blocks (SmolLM2 or GPT-2) on encrypted hidden states and compare with the plaintext model.

    The client (key holder) tokenizes, embeds and encrypts; the server runs the blocks with public keys
    only (in this process, or an `fhectl serve` server with --server); the client decrypts the final hidden
    state and applies the final norm and the LM head in the clear.
    With bootstrapping (--refresh bootstrap, the default where the profile allows it) the server restores
    levels alone: zero round trips, and a homomorphic range indicator, read by the client with the outputs,
    says whether any value left its approximation's domain (exit 7 if so). Otherwise ciphertexts go back to
    the client to be decrypted and re-encrypted when the modulus chain runs out ("client refresh"); the report
    counts those round trips and their bytes.
    Everything the prompt and the flags can get wrong is checked before the weights are loaded.
    """
    check_bootstrap_passes(bootstrap_passes, str(refresh), server)
    if model != ModelChoice.gpt2:
        from fhectl.cli.infer_llama import infer_llama

        return infer_llama(prompt, str(model), weights, chat, layers, max_new_tokens, profile, insecure, str(device),
                           json, random_weights_flag, system, revision, server, str(refresh), allow_out_of_domain,
                           bootstrap_passes)
    if server is not None:
        raise InputError("--server runs the Llama family (--model smollm2-135m); GPT-2 is not served yet")
    if chat or system is not None:
        raise InputError("--chat and --system are for chat-tuned models (smollm2-135m); GPT-2 has no chat template")
    if weights is not None and random_weights_flag:
        raise InputError("give either --weights or --random-weights, not both")
    if max_new_tokens < 1:
        raise InputError("--max-new-tokens must be >= 1")
    if layers is not None and layers < 1:
        raise InputError(f"--layers must be at least 1, got {layers}")
    text = read_prompt(prompt)

    from fhectl.ckks.params import load_parameters
    from fhectl.gpt2.inference import EncryptedGPT2
    from fhectl.gpt2.model import GPT2
    from fhectl.gpt2.pipeline import calibrated_domains, check_fits, open_model, token_capacity

    params = load_parameters(profile, allow_insecure=insecure)
    if refresh == RefreshChoice.bootstrap:  # what the profile alone decides, before the weights load
        refuse_unbootstrappable(params)
    with console.stage("model config and tokenizer" if weights or random_weights_flag else
                       "model config and tokenizer (from the Hugging Face Hub on first use)"):
        source = open_model(weights, random_weights_flag, seed, revision)
    tokenizer, cfg = source.tokenizer, source.config
    ids = tokenizer.encode(text)
    n_layers = cfg.n_layer if layers is None else layers
    if not 1 <= n_layers <= cfg.n_layer:
        raise InputError(f"--layers must be in 1..{cfg.n_layer}, got {n_layers}")
    total_tokens = check_fits(len(ids), max_new_tokens, params, cfg)
    label = source.label
    if label:
        console.message(label)
    console.message(f"model: {source.describe()}")
    console.message(f"{len(ids)} prompt tokens, {n_layers} of {cfg.n_layer} blocks encrypted, profile {params.name} "
                    f"({params.security_bits}-bit, N={params.ring_degree})")
    with console.stage("drawing random weights" if label else "loading weights"):
        w = source.load()
    with console.stage("calibrating approximation domains"):
        plain_model = GPT2(w)
        domains, calib_source = calibrated_domains(plain_model, tokenizer, n_layers,
                                                   min(total_tokens, token_capacity(params, cfg)), seed)
    console.message(f"calibration: {calib_source}")
    with console.stage("generating keys (the client's secret stays on the client; the server gets public keys)"):
        engine = EncryptedGPT2(w, params, domains, n_layers, max_tokens=total_tokens, device=str(device),
                               refresh=str(refresh), bootstrap_passes=bootstrap_passes)
    if engine.refresh_note:
        console.message(engine.refresh_note)
    if engine.refresh_mode == "bootstrap":
        plan = engine.plans[0]
        console.message(f"refresh: bootstrapping on the server, {plan['bootstraps_per_block']} bootstraps per block "
                        f"planned ({plan['paired_per_block']} of them paired; level simulator), 0 round trips; a "
                        f"refresh returns level {plan['refresh_level']} "
                        f"of {params.max_level}; {describe_circuit(engine.bootstrapper.config)}")

    with console.progress(transient=True) as bar:
        task = bar.add_task("encrypted blocks", total=n_layers * max_new_tokens)

        def on_block(r):
            bar.console.print(f"  block {r.index}: {r.seconds:.1f} s, max error {r.max_abs_error:.3g}, "
                              f"precision {r.precision_bits:.1f} bits, cosine {r.cosine:.6f}",
                              markup=False, highlight=False)
            bar.advance(task)

        result = engine.generate(ids, max_new_tokens, on_block=on_block,
                                 out_of_domain="report" if allow_out_of_domain else "raise")
    continuation = tokenizer.decode(result.generated_ids)
    reference = tokenizer.decode(result.reference_ids)
    agree = sum(t.encrypted_top1 == t.reference_top1 for t in result.tokens)
    data = {
        "label": label,
        "model": source.describe(),
        "prompt_tokens": ids,
        "continuation": continuation,
        "reference_continuation": reference,
        "calibration": calib_source,
        "profile": params.describe(),
        **result.as_dict(),
        "top1_agreement": agree / len(result.tokens) if result.tokens else None,
        "indicator_clean": all(v["clean"] for v in result.indicators) if result.indicators else None,
        "bootstrap_passes": engine.bootstrapper.config.pass_count() if engine.bootstrapper is not None else None,
    }
    if json:
        console.print_json(data)
        return
    console.data(text + continuation)
    console.message("")
    table = Table(title="per block, last token: encrypted vs float64")
    for col in ("block", "max |error|", "precision (bits)", "cosine", "time"):
        table.add_column(col, justify="right")
    for r in result.blocks[-1]:
        table.add_row(str(r.index), f"{r.max_abs_error:.3g}", f"{r.precision_bits:.1f}", f"{r.cosine:.6f}",
                      f"{r.seconds:.1f} s")
    console.err.print(table)
    toks = Table(title="next-token distribution")
    for col in ("position", "encrypted top-1", "reference top-1", "top-5 overlap", "KL (nats)"):
        toks.add_column(col, justify="right")
    for t in result.tokens:  # tokens are user data: Text, so that "[b]" in a token is not read as markup
        toks.add_row(str(t.position), Text(repr(tokenizer.decode([t.encrypted_top1]))),
                     Text(repr(tokenizer.decode([t.reference_top1]))), f"{t.top5_overlap}/5", f"{t.kl_divergence:.2e}")
    console.err.print(toks)
    st = result.stats
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in st.stage_seconds.items())
    console.message(f"time per stage: {stages}")
    if result.refresh == "bootstrap":
        for line in bootstrap_report(result.bootstrap, result.indicators, n_layers, len(result.tokens)):
            console.message(line)
    else:
        plan = result.plans[0]
        console.message(f"level plan (level simulator, block 0; fresh ciphertexts have {params.max_level} levels): "
                        f"{plan['round_trips']} client round trips per block: "
                        + ", ".join(f"{k} {v}" for k, v in plan["refreshes"].items()))
    console.message("residual stream scales per block (the server holds h / s): "
                    + ", ".join(f"{s:g}" for s in result.stream_scales))
    console.message(
        f"client refreshes: {st.refresh_round_trips} round trips, {st.refresh_bytes_to_client / 2**20:.1f} MiB to the "
        f"client, {st.refresh_bytes_to_server / 2**20:.1f} MiB back; public key material "
        f"{result.key_bytes / 2**30:.2f} GiB; total {result.seconds_total:.1f} s on {result.device}"
    )
    console.message(f"top-1 agreement {agree}/{len(result.tokens)}; reference continuation: {reference!r}")
    if label:
        console.message(label)
