"""`fhectl infer --model smollm2-135m`: Llama-family blocks on encrypted hidden states (called by infer_cmd)."""

from __future__ import annotations

from rich.table import Table

from fhectl.cli import console
from fhectl.cli.refresh_report import bootstrap_report, describe_circuit, refuse_unbootstrappable
from fhectl.errors import InputError

# The main job's default: how many of SmolLM2's 30 blocks run encrypted when --layers is not given. One
# encrypted block takes about two minutes on a 2-core CPU at N = 2^16 (one pass per generated token), so the
# default keeps `./dev demo` near five minutes; the other blocks run in the clear on the client, and the
# output says so on its first and last lines. `--layers 30` encrypts all of them.
DEFAULT_ENCRYPTED_LAYERS = 1


def infer_llama(prompt: str, model: str, weights, chat: bool, layers, max_new_tokens: int, profile: str,
                insecure: bool, device: str, json: bool, random_weights: bool, system: str | None = None,
                revision: str | None = None, server: str | None = None, refresh: str = "auto",
                allow_out_of_domain: bool = False, bootstrap_passes: int = 2) -> None:
    from fhectl.ckks.params import load_parameters
    from fhectl.circuits.packing import Layout
    from fhectl.cli.infer_cmd import read_prompt
    from fhectl.llama.inference import EncryptedLlama, greedy_decode
    from fhectl.llama.pipeline import calibrated_domains, open_model, prompt_ids

    # input errors before anything heavy
    if random_weights:
        raise InputError("--random-weights is for gpt2; the Llama family runs the trained SmolLM2 shipped offline")
    if max_new_tokens < 1:
        raise InputError("--max-new-tokens must be >= 1")
    if system is not None and not chat:
        raise InputError("--system only applies with --chat")
    if layers is not None and layers < 0:
        raise InputError(f"--layers must be at least 0, got {layers}")
    if server is not None and layers is not None:
        raise InputError("with --server the server decides how many blocks run encrypted; drop --layers")
    text = read_prompt(prompt)
    params = load_parameters(profile, allow_insecure=insecure) if server is None else None
    if params is not None and refresh == "bootstrap":  # what the profile alone decides, before the weights load
        refuse_unbootstrappable(params)
    with console.stage(f"reading the {model} config and tokenizer"):
        cfg, tok, source, load_weights = open_model(model, weights, revision=revision)
    service = served = None
    if server is not None:
        from fhectl.service.client import ServiceClient
        from fhectl.service.remote_llama import parameters_of

        service = ServiceClient(server)
        models = service.models()
        if len(models) != 1:
            raise InputError(f"the server at {server} serves {len(models)} models; fhectl infer expects one")
        served = models[0]
        params, n_layers = parameters_of(served, insecure), served["encrypted_layers"]
        check_served_refresh(served, refresh, server)
    else:
        n_layers = min(DEFAULT_ENCRYPTED_LAYERS, cfg.n_layer) if layers is None else layers
    if not 0 <= n_layers <= cfg.n_layer:
        raise InputError(f"--layers must be in 0..{cfg.n_layer}, got {n_layers}")
    ids = prompt_ids(tok, text, chat, system)
    width = max(cfg.n_embd, cfg.n_head * cfg.head_dim)
    capacity = min(Layout.max_tokens(params.slots, width), cfg.head_dim)  # softmax rows must fit one head
    if served is not None:
        capacity = min(capacity, served["token_capacity"])
    total = len(ids) + max_new_tokens - 1
    if total > capacity:
        hint = (" or give a shorter system turn (--system '' leaves it empty; the template's default takes "
                f"{len(prompt_ids(tok, '', True)) - len(prompt_ids(tok, '', True, ''))} tokens)"
                if chat and system is None else "")
        raise InputError(f"the prompt has {len(ids)} tokens and {max_new_tokens} new ones need {total} positions; at "
                         f"most {capacity} fit one ciphertext at {params.name}; shorten the prompt{hint}")
    with console.stage(f"loading the {model} weights"):  # every input check has passed: now the slow part
        w = load_weights()
    remote = None
    if service is not None:
        from fhectl.service.remote_llama import RemoteLlama

        with console.stage(f"generating keys and uploading the public bundle to {server} (the secret key stays "
                           "here)"):
            remote = RemoteLlama(service, served["name"], w, device=device, allow_insecure=insecure)
        counts = remote.galois_keys
        short = (f"; {counts['truncated']} of {counts['count']} Galois keys made for the blocks' levels only"
                 if counts["truncated"] else "")
        console.message(f"server {server}: model {served['name']}, {n_layers} of {cfg.n_layer} blocks encrypted "
                        f"there, public key bundle {remote.bundle_bytes / 2**20:.1f} MiB uploaded{short}")
        if served.get("refresh_note"):
            console.message(f"server: {served['refresh_note']}")
        if remote.refresh_mode == "bootstrap":
            boot = served["bootstrap"]
            console.message(f"refresh: bootstrapping on the server, {boot['bootstraps_per_block']} bootstraps per "
                            f"block planned (level simulator), 0 round trips; a refresh returns level "
                            f"{boot['refresh_level']} of {params.max_level}")
    console.message(f"model: {source}")
    console.message(f"{len(ids)} prompt tokens; {n_layers} of {cfg.n_layer} blocks ENCRYPTED, the other "
                    f"{cfg.n_layer - n_layers} run in the clear on the client (--layers {cfg.n_layer} encrypts all); "
                    f"profile {params.name} ({params.security_bits}-bit, N={params.ring_degree})")
    if remote is None:
        with console.stage("calibrating approximation domains"):
            domains, calib = calibrated_domains(w, tok)
        console.message(f"calibration: shipped calibration prompt set ({calib})")
        with console.stage("generating keys (the client's secret stays on the client; the server gets public keys)"):
            engine = EncryptedLlama(w, params, domains, n_layers, max_tokens=total, device=device,
                                    refresh=refresh, bootstrap_passes=bootstrap_passes)
        if engine.client:
            counts = engine.client.galois_key_counts()
            short = (f" ({counts['truncated']} of {counts['count']} Galois keys made for the blocks' levels only)"
                     if counts["truncated"] else "")
            console.message(f"public key material {engine.client.public_material_bytes() / 2**30:.2f} GiB{short}")
        else:
            console.message("no encrypted layer: plaintext run")
        if engine.refresh_note:
            console.message(engine.refresh_note)
        if engine.refresh_mode == "bootstrap":
            console.message(f"refresh: bootstrapping on the server, {engine.plan['bootstraps_per_block']} bootstraps "
                            f"per block planned ({engine.plan['paired_per_block']} of them paired; level simulator), "
                            f"0 round trips; a refresh returns level "
                            f"{engine.plan['refresh_level']} of {params.max_level}; "
                            f"{describe_circuit(engine.bootstrapper.config)}")
    else:
        engine = remote

    stop = tuple(i for i in (cfg.eos_token_id, tok.token_to_id("<|im_end|>")) if i is not None)
    console.message(f"generating up to {max_new_tokens} token(s): one pass through {n_layers} encrypted block(s) "
                    "each")
    with console.progress(transient=True) as bar:
        task = bar.add_task("encrypted blocks", total=max(1, n_layers) * max_new_tokens)

        def say(line: str) -> None:
            bar.console.print(line, markup=False, highlight=False, emoji=False)

        def on_layer(i, hidden, report):  # after each encrypted block: a line, so a log is never silent long
            say(f"  block {report.layer}: {report.seconds:.1f} s, max error {report.max_abs_error:.3g}, "
                f"cosine {report.cosine_min:.6f}")
            bar.advance(task)

        def on_token(token, result):
            last = result.layers[-1] if result.layers else None
            extra = f", last block cosine {last.cosine_min:.6f}" if last else ""
            say(f"  token {tok.decode([token])!r}: {result.seconds_total:.0f} s{extra}")
            if not n_layers:
                bar.advance(task)

        if remote is None:
            def run_batch(batch):
                return engine.run(batch, on_layer=on_layer,
                                  out_of_domain="report" if allow_out_of_domain else "raise")
        else:
            def on_state(job, seen=set()):  # the server's blocks: a line when one finishes
                if job.get("block") is not None and job["block"] not in seen:
                    seen.add(job["block"])
                    say(f"  server finished block {job['block']}")
                    bar.advance(task)

            def run_batch(batch):
                seen_blocks = set()
                remote.on_state = lambda job: on_state(job, seen_blocks)
                return remote.run(batch, out_of_domain="report" if allow_out_of_domain else "raise")
        try:
            new_ids, results = greedy_decode(run_batch, engine.layout.tokens, ids, max_new_tokens, stop, on_token)
        finally:
            if remote is not None:
                remote.close()  # the bundle and its jobs are deleted on the server
    reference = engine.model.greedy_generate(ids, len(new_ids), stop_ids=stop)[len(ids):]
    shown = [t for t in new_ids if t not in stop]  # the stop token ends the reply; it is not text
    continuation, ref_text = tok.decode(shown), tok.decode([t for t in reference if t not in stop])
    agree = sum(r.prompts[0].top1_agrees for r in results)
    mode = results[-1].refresh
    verdicts = [r.indicator for r in results if r.indicator]
    indicator_clean = all(v["clean"] for v in verdicts) if verdicts else None
    if json:
        console.print_json({"model": source, "prompt_tokens": ids, "continuation": continuation,
                            "reference_continuation": ref_text, "encrypted_layers": n_layers, "layers": cfg.n_layer,
                            "profile": params.describe(), "top1_agreement": agree / len(results),
                            "refresh": mode,
                            "bootstrap_passes": (engine.bootstrapper.config.pass_count()
                                                 if remote is None and engine.bootstrapper is not None else None),
                            "refresh_note": engine.refresh_note if remote is None else served.get("refresh_note", ""),
                            "indicator_clean": indicator_clean, "steps": [r.as_dict() for r in results]})
        return
    console.data(continuation if chat else text + continuation)  # with --chat: the assistant's reply
    console.message("")
    last = results[-1]
    if last.layers:  # a remote run decrypts only the server's output, not each block's
        table = Table(title="encrypted vs float64 reference, per block (last step)")
        for col in ("block", "max |error|", "precision (bits)", "cosine", "time"):
            table.add_column(col, justify="right")
        for r in last.layers:
            table.add_row(str(r.layer), f"{r.max_abs_error:.3g}", f"{r.precision_bits:.1f}", f"{r.cosine_min:.6f}",
                          f"{r.seconds:.1f} s")
        console.err.print(table)
    st = last.stats
    console.message("time per stage (last step): " + ", ".join(f"{k} {v:.1f}s" for k, v in last.stage_seconds.items()))
    if mode == "bootstrap":
        for line in bootstrap_report(last.bootstrap, verdicts, n_layers, unit="step"):  # the last step's
            console.message(line)
    else:
        console.message(f"client refreshes per step: {st.refresh_round_trips} round trips "
                        f"({st.refresh_bytes_to_client / 2**20:.0f} MiB to the client, "
                        f"{st.refresh_bytes_to_server / 2**20:.0f} MiB back)")
    console.message(f"next-token top-1 agreement with the float64 model: {agree}/{len(results)}; reference "
                    f"continuation: {ref_text!r}")
    console.message(f"{n_layers} of {cfg.n_layer} blocks were encrypted; {cfg.n_layer - n_layers} ran in the clear "
                    "on the client.")


def check_served_refresh(served: dict, refresh: str, server: str) -> None:
    """With --server the server decides how levels are restored; an explicit --refresh must be what it does
    (one InputError line otherwise, before any key is made)."""
    mode = served.get("refresh", "client")
    if refresh != "auto" and refresh != mode:
        how = ("bootstraps (no round trips)" if mode == "bootstrap" else
               "uses client refresh (start it with `fhectl serve --refresh bootstrap` to bootstrap there)")
        raise InputError(f"--refresh {refresh}: the server at {server} {how}; drop --refresh or use --refresh auto")
