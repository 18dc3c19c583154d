"""`fhectl infer`: GPT-2 blocks on encrypted hidden states, compared with the float64 reference."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.table import Table

from fhectl.ckks.params import load_parameters
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.options import Device, Insecure, Json
from fhectl.errors import InputError
from fhectl.gpt2.calibration import calibrate, load_domains, save_domains, weights_digest
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.inference import EncryptedGPT2
from fhectl.gpt2.model import GPT2
from fhectl.circuits.packing import Layout
from fhectl.gpt2.tokenizer import load_tokenizer
from fhectl.gpt2.weights import load_weights, locate_weights, random_weights

RANDOM_WEIGHTS_LABEL = "RANDOM WEIGHTS (GPT-2-shaped, seed {seed}): not a trained model, output text is meaningless"

# Prompts for calibrating approximation domains when the model has no stored calibration.
CALIBRATION_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "In 1869, the Suez Canal opened, shortening the sea route between Europe and Asia.",
    "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "Homomorphic encryption lets a server compute on data it cannot read.",
    "Once upon a time, in a small village by the sea, there lived an old fisherman.",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16",
)


def _read_prompt(path: str) -> str:
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


def _domains(model: GPT2, tokenizer, n_layers: int, max_tokens: int, cache_dir: Path | None, random_seed: int):
    """Calibrated domains: from the cache next to the weights, else from plaintext runs on sample prompts."""
    digest = weights_digest(model)
    cache = None
    if cache_dir is not None:
        cache = cache_dir / f"fhectl_calibration_{digest}.json"
        found = load_domains(cache, digest)
        if found is not None and len(found) >= n_layers:
            return found, str(cache)
    prompts = [tokenizer.encode(t)[:max_tokens] for t in CALIBRATION_TEXTS]
    rng = np.random.default_rng(random_seed)  # calibration inputs, not key material
    prompts += [list(rng.integers(0, model.config.vocab_size, max_tokens)) for _ in range(4)]
    domains = calibrate(model, [p for p in prompts if p], n_layer=model.config.n_layer)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_domains(cache, domains, digest)
        except OSError:
            cache = None
    return domains, str(cache) if cache else "computed for this run"


@guarded
def infer(
    prompt: Annotated[str, typer.Argument(help="Prompt text file ('-' reads stdin).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model: smollm2-135m (Llama family) or gpt2.")] = "gpt2",
    weights: Annotated[Optional[str], typer.Option("--weights", "-w", help="Checkpoint: a directory (config.json + *.safetensors), a .gguf file (Llama family) or a Hugging Face repo id.")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Llama family: wrap the prompt in the model's chat template.")] = False,
    system: Annotated[Optional[str], typer.Option("--system", help="With --chat: the system turn's text (default: the template's own; '' for an empty one).")] = None,
    random_weights_flag: Annotated[bool, typer.Option("--random-weights", help="GPT-2-shaped random weights (clearly labelled).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of --random-weights.")] = 0,
    layers: Annotated[Optional[int], typer.Option("--layers", "-l", help="Blocks to run encrypted (default: all).")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", "-t", help="Tokens to generate.")] = 1,
    profile: Annotated[str, typer.Option("--profile", "-p", help="Parameter profile.")] = "gpt2-n16-128",
    insecure: Insecure = False,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Run GPT-2 blocks on encrypted hidden states and compare with the plaintext model.

    The client (key holder) tokenizes, embeds and encrypts; the server runs the blocks with public keys
    only; the client decrypts the final hidden state and applies ln_f and the LM head in the clear.
    Without bootstrapping, ciphertexts go back to the client to be decrypted and re-encrypted when the
    modulus chain runs out ("client refresh"); the report counts those round trips and their bytes.
    """
    if model != "gpt2":
        from fhectl.cli.infer_llama import infer_llama

        return infer_llama(prompt, model, weights, chat, layers, max_new_tokens, profile, insecure, device, json,
                           random_weights_flag, system)
    if chat or system is not None:
        raise InputError("--chat and --system are for chat-tuned models (smollm2-135m); GPT-2 has no chat template")
    if weights is not None and random_weights_flag:
        raise InputError("give either --weights or --random-weights, not both")
    if max_new_tokens < 1:
        raise InputError("--max-new-tokens must be >= 1")
    text = _read_prompt(prompt)
    params = load_parameters(profile, allow_insecure=insecure)
    label = None
    if random_weights_flag:
        w = random_weights(GPT2Config.gpt2_small(), seed=seed)
        label = RANDOM_WEIGHTS_LABEL.format(seed=seed)
        model_dir = None
        cache_dir = Path.home() / ".cache" / "fhectl"
    else:
        model_dir = locate_weights(None if weights is None else Path(weights), name=model)
        w = load_weights(model_dir)
        cache_dir = model_dir
    tokenizer = load_tokenizer(model_dir)
    ids = tokenizer.encode(text)
    cfg = w.config
    n_layers = cfg.n_layer if layers is None else layers
    if not 1 <= n_layers <= cfg.n_layer:
        raise InputError(f"--layers must be in 1..{cfg.n_layer}, got {n_layers}")
    # one ciphertext's token slots, and the compact softmax layout keeps every row inside one head
    max_tokens = min(Layout.max_tokens(params.slots, cfg.n_embd), cfg.head_size)
    total_tokens = len(ids) + max_new_tokens - 1
    if total_tokens > max_tokens:
        raise InputError(
            f"the prompt has {len(ids)} tokens and {max_new_tokens} new ones need {total_tokens} positions; at most "
            f"{max_tokens} fit one ciphertext at {params.name} (N = {params.ring_degree}) and one head's "
            f"{cfg.head_size} features (softmax rows); shorten the prompt"
        )
    if label:
        console.err.print(f"[bold]{label}[/bold]")
    console.err.print(f"{len(ids)} prompt tokens, {n_layers} of {cfg.n_layer} blocks encrypted, profile {params.name} "
                      f"({params.security_bits}-bit, N={params.ring_degree})")
    plain_model = GPT2(w)
    domains, calib_source = _domains(plain_model, tokenizer, n_layers, min(total_tokens, max_tokens), cache_dir, seed)
    console.err.print("generating keys (the client's secret stays on the client; the server gets public keys)")
    engine = EncryptedGPT2(w, params, domains, n_layers, max_tokens=total_tokens, device=device)

    def on_block(r):
        console.err.print(f"  block {r.index}: {r.seconds:.1f} s, max error {r.max_abs_error:.3g}, "
                          f"precision {r.precision_bits:.1f} bits, cosine {r.cosine:.6f}")

    result = engine.generate(ids, max_new_tokens, on_block=on_block)
    continuation = tokenizer.decode(result.generated_ids)
    reference = tokenizer.decode(result.reference_ids)
    agree = sum(t.encrypted_top1 == t.reference_top1 for t in result.tokens)
    data = {
        "label": label,
        "prompt_tokens": ids,
        "continuation": continuation,
        "reference_continuation": reference,
        "calibration": calib_source,
        "profile": params.describe(),
        **result.as_dict(),
        "top1_agreement": agree / len(result.tokens) if result.tokens else None,
    }
    if json:
        console.print_json(data)
        return
    console.out.print(text + continuation)
    console.err.print("")
    table = Table(title="encrypted vs float64 reference, per block (last generated token)")
    for col in ("block", "max |error|", "precision (bits)", "cosine", "time"):
        table.add_column(col, justify="right")
    for r in result.blocks[-1]:
        table.add_row(str(r.index), f"{r.max_abs_error:.3g}", f"{r.precision_bits:.1f}", f"{r.cosine:.6f}",
                      f"{r.seconds:.1f} s")
    console.err.print(table)
    toks = Table(title="next-token distribution")
    for col in ("position", "encrypted top-1", "reference top-1", "top-5 overlap", "KL (nats)"):
        toks.add_column(col, justify="right")
    for t in result.tokens:
        toks.add_row(str(t.position), repr(tokenizer.decode([t.encrypted_top1])), repr(tokenizer.decode([t.reference_top1])),
                     f"{t.top5_overlap}/5", f"{t.kl_divergence:.2e}")
    console.err.print(toks)
    st = result.stats
    stages = ", ".join(f"{k} {v:.1f}s" for k, v in st.stage_seconds.items())
    console.err.print(f"time per stage: {stages}")
    plan = result.plans[0]
    console.err.print(f"level plan (level simulator, block 0; fresh ciphertexts have {params.max_level} levels): "
                      f"{plan['round_trips']} client round trips per block: "
                      + ", ".join(f"{k} {v}" for k, v in plan["refreshes"].items()))
    console.err.print("residual stream scales per block (the server holds h / s): "
                      + ", ".join(f"{s:g}" for s in result.stream_scales))
    console.err.print(
        f"client refreshes: {st.refresh_round_trips} round trips, {st.refresh_bytes_to_client / 2**20:.1f} MiB to the "
        f"client, {st.refresh_bytes_to_server / 2**20:.1f} MiB back; public key material "
        f"{result.key_bytes / 2**30:.2f} GiB; total {result.seconds_total:.1f} s on {result.device}"
    )
    console.err.print(f"top-1 agreement {agree}/{len(result.tokens)}; reference continuation: {reference!r}")
    if label:
        console.err.print(f"[bold]{label}[/bold]")
