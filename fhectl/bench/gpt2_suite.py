"""The `layers` and `block` benchmark suites: encrypted GPT-2 building blocks at each batch size.

Timed with ``fhectl.bench.timing.measure``, the timing path of every suite.

The batch size is the number of tokens packed per ciphertext. Every result
carries the error of what was timed against float64, the rotation and
key-switch counts, the levels used, and tokens per second. Weights are
GPT-2-shaped random weights (seeded, and labelled as such in the report);
the layer shapes and costs do not depend on the weight values.
"""

from __future__ import annotations

import numpy as np

from fhectl.bench.timing import measure
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import ClientRefresh, Stats
from fhectl.circuits.transformer import Segments, StageClock
from fhectl.errors import InputError
from fhectl.gpt2.calibration import calibrate
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.inference import EncryptedGPT2
from fhectl.gpt2.model import GPT2
from fhectl.gpt2.weights import random_weights

WEIGHTS_SEED = 0


def quick_model_config() -> GPT2Config:
    """A tiny GPT-2 for the seconds-long --quick run (and CI)."""
    return GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=64)


def max_batch(params: Parameters, cfg: GPT2Config) -> int:
    """The most tokens one ciphertext holds for this model: softmax rows must fit one head."""
    return min(Layout.max_tokens(params.slots, cfg.n_embd), cfg.head_size, cfg.n_positions)


def check_batch_sizes(params: Parameters, cfg: GPT2Config, batch_sizes) -> None:
    limit = max_batch(params, cfg)
    too_big = [b for b in batch_sizes if b > limit]
    if too_big:
        raise InputError(f"batch size(s) {too_big} exceed the {limit} tokens one ciphertext holds "
                         f"at {params.name} with n_embd {cfg.n_embd}")


def _result(suite, name, batch, device, timing, prec, counters, levels, note=None, stages=None):
    med = timing.median_s
    return {
        "suite": suite, "name": name, "impl": "fhectl", "batch_size": batch, "device": device,
        "timing": timing.as_dict(), "precision_bits": prec, "tokens_per_s": batch / med if med > 0 else None,
        "counters": counters, "levels_used": levels, "note": note, "stages": stages,
    }


def _timed(fn, repeat: int, warmup: int):
    """(last result, Timing) of ``fn()``; the one timing path (``fhectl.bench.timing.measure``)."""
    timing, out = measure(lambda _: fn(), repeat=repeat, warmup=warmup)
    return out, timing


def run(params: Parameters, suites, batch_sizes, device="cpu", repeat=3, warmup=1, tick=lambda s: None,
        model_config: GPT2Config | None = None):
    cfg = model_config or GPT2Config.gpt2_small()
    w = random_weights(cfg, seed=WEIGHTS_SEED)
    model = GPT2(w)
    note = f"GPT-2-shaped random weights (seed {WEIGHTS_SEED}), n_embd {cfg.n_embd}, {cfg.n_head} heads"
    check_batch_sizes(params, cfg, batch_sizes)
    results = []
    for batch in batch_sizes:
        rng = np.random.default_rng(batch)  # benchmark inputs, not key material
        prompts = [list(rng.integers(0, cfg.vocab_size, batch)) for _ in range(4)]
        domains = calibrate(model, prompts, n_layer=1)
        engine = EncryptedGPT2(w, params, domains, n_layers=1, max_tokens=batch, device=device,
                               random=SeededRandom(f"bench/{batch}"))
        ev, client, block = engine.server, engine.client, engine.blocks[0]
        lay = engine.layout
        ids = prompts[0]
        seg = Segments((batch,))
        s = block.domains.stream_scale  # the server holds h / s
        x = model.embed(ids) / s
        tr = model.trace(ids).blocks[0]
        dev = engine.ctx.device

        def counters_since(before):
            return {k: ev.counters[k] - before[k] for k in ev.counters}

        if "layers" in suites:
            linears = {
                f"c_attn {cfg.n_embd}x{3 * cfg.n_embd}": (block.c_attn, tr.ln_1),
                f"attn.c_proj {cfg.n_embd}x{cfg.n_embd}": (block.attn_proj, tr.ln_1),
                f"c_fc {cfg.n_embd}x{4 * cfg.n_embd}": (block.c_fc, tr.ln_2),
                f"mlp.c_proj {4 * cfg.n_embd}x{cfg.n_embd}": (block.mlp_proj, tr.gelu),
            }
            for name, (lin, inp) in linears.items():
                cts = [client.encryptor.encrypt(v, level=1) for v in lin.pack_input(inp)]  # as in the block
                before = dict(ev.counters)
                outs, timing = _timed(lambda: lin.apply(ev, cts), repeat, warmup)
                got = lin.unpack_output([client.decryptor.decrypt(c, params.slots).real for c in outs], batch)
                want = inp @ lin.weight + (lin.bias if lin.bias is not None else 0)
                per_run = {k: v // (repeat + warmup) for k, v in counters_since(before).items()}
                results.append(_result("layers", name, batch, dev, timing, precision_bits(got, want), per_run,
                                       cts[0].level - outs[0].level, note))
                tick(f"layers {name} x{batch}")
            for name, ap in (("gelu", block.gelu), ("layernorm 1/sqrt", block.rsqrt_1)):
                a, b = ap.domain
                xs = np.random.default_rng(7).uniform(a, b, params.slots)
                ct = client.encryptor.encrypt(xs)
                stats = Stats()
                refresh = ClientRefresh(client, stats)
                out, timing = _timed(lambda: ap.evaluate(ev, ct, refresh=refresh), repeat, warmup)
                got = client.decryptor.decrypt(out, params.slots).real
                results.append(_result("layers", name, batch, dev, timing, precision_bits(got, ap.reference(xs)),
                                       {"client_refreshes": stats.refresh_round_trips // (repeat + warmup)},
                                       ap.depth(), f"{note}; {ap.name} on [{a:.3g}, {b:.3g}]"))
                tick(f"layers {name} x{batch}")
            mean = tr.x.mean(1, keepdims=True)
            normalised = (tr.x - mean) / np.sqrt(tr.ln_1_var[:, None] + cfg.layer_norm_epsilon)
            pieces = {  # what each piece leaves: layer_norm c x^ (c folds into c_attn), attention attn / s
                "layernorm": (lambda h, r, c: block.layer_norm(ev, h, block.rsqrt_1, r, seg, "ln_1", 1),
                              normalised * block.rsqrt_1.out_scale),
                "attention": (lambda h, r, c: block.attention(ev, h, r, seg, c), tr.attn_out / s),
            }
            for name, (fn, want) in pieces.items():
                h_ct = client.encrypt_hidden(lay, x)[0]
                stats = Stats()
                refresh = ClientRefresh(client, stats)
                clock = StageClock(stats.stage_seconds)
                before = dict(ev.counters)
                out, timing = _timed(lambda: fn(h_ct, refresh, clock), repeat, warmup)
                got = lay.unpack([client.decryptor.decrypt(out, params.slots).real], batch, cfg.n_embd)
                per_run = {k: v // (repeat + warmup) for k, v in counters_since(before).items()}
                per_run["client_refreshes"] = stats.refresh_round_trips // (repeat + warmup)
                results.append(_result("layers", name, batch, dev, timing, precision_bits(got, want), per_run, None,
                                       note))
                tick(f"layers {name} x{batch}")
        if "block" in suites:
            stats = Stats()
            refresh = ClientRefresh(client, stats)
            clock = StageClock(stats.stage_seconds)
            before = dict(ev.counters)

            def one_block():
                h_ct = client.encrypt_hidden(lay, x)[0]
                return block.forward(ev, h_ct, refresh, seg, clock)

            out, timing = _timed(one_block, repeat, warmup)
            got = s * lay.unpack([client.decryptor.decrypt(out, params.slots).real], batch, cfg.n_embd)
            runs = repeat + warmup
            per_run = {k: v // runs for k, v in counters_since(before).items()}
            per_run["client_refreshes"] = stats.refresh_round_trips // runs
            per_run["refresh_mib"] = (stats.refresh_bytes_to_client + stats.refresh_bytes_to_server) / runs / 2**20
            stages = {k: v / runs for k, v in stats.stage_seconds.items()}
            cos = float(np.sum(got * tr.out) / (np.linalg.norm(got) * np.linalg.norm(tr.out)))
            results.append(_result("block", "gpt2 block", batch, dev, timing, precision_bits(got, tr.out), per_run,
                                   None, f"{note}; cosine {cos:.6f}", stages))
            tick(f"block x{batch}")
        del engine
    return results
