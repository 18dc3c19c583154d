"""`fhectl infer --model smollm2-135m`: Llama-family blocks on encrypted hidden states (called by infer_cmd)."""

from __future__ import annotations

from rich.table import Table

from fhectl.ckks.params import load_parameters
from fhectl.cli import console
from fhectl.errors import InputError

# The main job's default: how many of SmolLM2's 30 blocks run encrypted when --layers is not given. One
# encrypted block takes about two minutes on a 2-core CPU at N = 2^16 (one pass per generated token), so the
# default keeps `./dev demo` near five minutes; the other blocks run in the clear on the client, and the
# output says so on its first and last lines. `--layers 30` encrypts all of them.
DEFAULT_ENCRYPTED_LAYERS = 1


def infer_llama(prompt: str, model: str, weights, chat: bool, layers, max_new_tokens: int, profile: str,
                insecure: bool, device: str, json: bool, random_weights: bool, system: str | None = None) -> None:
    from fhectl.cli.infer_cmd import _read_prompt
    from fhectl.llama.inference import EncryptedLlama
    from fhectl.llama.pipeline import calibrated_domains, load_model, prompt_ids
    from fhectl.circuits.packing import Layout

    if random_weights:
        raise InputError("--random-weights is for gpt2; the Llama family runs the trained SmolLM2 shipped offline")
    if max_new_tokens < 1:
        raise InputError("--max-new-tokens must be >= 1")
    text = _read_prompt(prompt)  # input errors before anything heavy
    params = load_parameters(profile, allow_insecure=insecure)
    console.err.print(f"loading {model} ...")
    w, tok, source = load_model(model, weights)
    cfg = w.config
    n_layers = min(DEFAULT_ENCRYPTED_LAYERS, cfg.n_layer) if layers is None else layers
    if not 0 <= n_layers <= cfg.n_layer:
        raise InputError(f"--layers must be in 0..{cfg.n_layer}, got {n_layers}")
    if system is not None and not chat:
        raise InputError("--system only applies with --chat")
    ids = prompt_ids(tok, text, chat, system)
    width = max(cfg.n_embd, cfg.n_head * cfg.head_dim)
    capacity = min(Layout.max_tokens(params.slots, width), cfg.head_dim)  # softmax rows must fit one head
    total = len(ids) + max_new_tokens - 1
    if total > capacity:
        hint = (" or give a shorter system turn (--system '' leaves it empty; the template's default takes "
                f"{len(prompt_ids(tok, '', True)) - len(prompt_ids(tok, '', True, ''))} tokens)"
                if chat and system is None else "")
        raise InputError(f"the prompt has {len(ids)} tokens and {max_new_tokens} new ones need {total} positions; at "
                         f"most {capacity} fit one ciphertext at {params.name}; shorten the prompt{hint}")
    console.err.print(f"model: {source}")
    console.err.print(f"{len(ids)} prompt tokens; {n_layers} of {cfg.n_layer} blocks ENCRYPTED, the other "
                      f"{cfg.n_layer - n_layers} run in the clear on the client (--layers {cfg.n_layer} encrypts all); "
                      f"profile {params.name} ({params.security_bits}-bit, N={params.ring_degree})")
    domains, calib = calibrated_domains(w, tok)
    console.err.print(f"calibration: shipped calibration prompt set ({calib})")
    console.err.print("generating keys (the client's secret stays on the client; the server gets public keys)")
    engine = EncryptedLlama(w, params, domains, n_layers, max_tokens=total, device=device)
    console.err.print(f"public key material {engine.client.public_material_bytes() / 2**30:.2f} GiB"
                      if engine.client else "no encrypted layer: plaintext run")

    def on_token(token, result):
        last = result.layers[-1] if result.layers else None
        extra = f", last block cosine {last.cosine_min:.6f}" if last else ""
        console.err.print(f"  token {tok.decode([token])!r}: {result.seconds_total:.0f} s{extra}")

    stop = tuple(i for i in (cfg.eos_token_id, tok.token_to_id("<|im_end|>")) if i is not None)
    new_ids, results = engine.generate(ids, max_new_tokens, stop_ids=stop, on_token=on_token)
    reference = engine.model.greedy_generate(ids, len(new_ids), stop_ids=stop)[len(ids):]
    shown = [t for t in new_ids if t not in stop]  # the stop token ends the reply; it is not text
    continuation, ref_text = tok.decode(shown), tok.decode([t for t in reference if t not in stop])
    agree = sum(r.prompts[0].top1_agrees for r in results)
    if json:
        console.print_json({"model": source, "prompt_tokens": ids, "continuation": continuation,
                            "reference_continuation": ref_text, "encrypted_layers": n_layers, "layers": cfg.n_layer,
                            "profile": params.describe(), "top1_agreement": agree / len(results),
                            "steps": [r.as_dict() for r in results]})
        return
    console.out.print(continuation if chat else text + continuation)  # with --chat: the assistant's reply
    console.err.print("")
    last = results[-1]
    table = Table(title="encrypted vs float64 reference, per block (last step)")
    for col in ("block", "max |error|", "precision (bits)", "cosine", "time"):
        table.add_column(col, justify="right")
    for r in last.layers:
        table.add_row(str(r.layer), f"{r.max_abs_error:.3g}", f"{r.precision_bits:.1f}", f"{r.cosine_min:.6f}",
                      f"{r.seconds:.1f} s")
    console.err.print(table)
    st = last.stats
    console.err.print("time per stage (last step): " + ", ".join(f"{k} {v:.1f}s" for k, v in last.stage_seconds.items()))
    console.err.print(f"client refreshes per step: {st.refresh_round_trips} round trips "
                      f"({st.refresh_bytes_to_client / 2**20:.0f} MiB to the client, "
                      f"{st.refresh_bytes_to_server / 2**20:.0f} MiB back)")
    console.err.print(f"next-token top-1 agreement with the float64 model: {agree}/{len(results)}; reference "
                      f"continuation: {ref_text!r}")
    console.err.print(f"{n_layers} of {cfg.n_layer} blocks were encrypted; {cfg.n_layer - n_layers} ran in the clear "
                      "on the client.")
