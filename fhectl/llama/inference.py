"""Encrypted Llama inference: the client embeds, encrypts and decrypts; the server runs the blocks.

Several prompts share one ciphertext (segments of the token axis, see ``fhectl.circuits.transformer``), so a
batch of short prompts costs one pass. The depth plan and the rotation keys come from running one block on the
level simulator before any key is made: a profile too shallow for the circuits fails in milliseconds.

After ``n_layers`` encrypted blocks the client decrypts, runs the remaining blocks in the clear (said plainly
in every report), applies the final norm and the tied LM head, and compares with the float64 reference.

Levels are restored by client refresh (round trips to the key holder, who checks every domain) or by
bootstrapping on the server (``refresh="bootstrap"``: zero round trips; the domains travel as a homomorphic
range indicator that the key holder reads with the outputs, ``fhectl.circuits.range_indicator``). "auto"
bootstraps when the level simulator says the blocks fit with it, else falls back to client refresh and says
why (``refresh_note``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import Parameters
from fhectl.circuits.bootstrap_refresh import (REFRESH_MODES, BootstrapRefresh, BootstrapStats, client_bootstrapper,
                                               plan_bootstrapped_blocks)
from fhectl.circuits.packing import Layout
from fhectl.circuits.range_indicator import RangeIndicator, read_indicators
from fhectl.circuits.refresh import Client, ClientRefresh, Stats
from fhectl.circuits.transformer import Segments, StageClock, plan_block, rescale_stream
from fhectl.errors import DomainError, InputError, LevelError, ParameterError
from fhectl.llama.calibration import BlockDomains
from fhectl.llama.encrypted import EncryptedLlamaBlock
from fhectl.llama.model import Llama
from fhectl.llama.weights import LlamaWeights


@dataclass
class LayerReport:
    layer: int
    max_abs_error: float  # over all prompts and features, unscaled model units
    precision_bits: float  # -log2 of the error relative to the largest |h| of the reference
    cosine_min: float  # over prompts, of the flattened (T, C) hidden states
    seconds: float
    bootstraps: int | None = None  # in this block, with bootstrapping
    indicator: dict | None = None  # this block's range-indicator reading, with bootstrapping (a measurement:
    # the key holder decrypts the block's accumulators after it, as it decrypts the hidden state)


@dataclass
class PromptReport:
    index: int
    n_tokens: int
    top1_agrees: bool
    top5_overlap: int
    kl: float  # KL(reference || encrypted) of the next-token distribution, nats
    encrypted_next: int
    reference_next: int


@dataclass
class RunResult:
    n_encrypted_layers: int
    n_layers: int
    layers: list[LayerReport] = field(default_factory=list)
    prompts: list[PromptReport] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    stage_seconds: dict = field(default_factory=dict)
    seconds_total: float = 0.0
    key_bytes: int = 0
    galois_keys: dict = field(default_factory=dict)  # {"count", "truncated": made for the circuits' levels only}
    layout: dict = field(default_factory=dict)
    plan: dict = field(default_factory=dict)
    refresh: str = "client"  # "client" (round trips to the key holder) or "bootstrap" (none)
    bootstrap: dict = field(default_factory=dict)  # BootstrapStats.as_dict() with bootstrapping
    indicator: dict = field(default_factory=dict)  # the range indicator's verdict (IndicatorVerdict.as_dict())

    def as_dict(self) -> dict:
        return asdict(self)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays, flattened."""
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    return z - math.log(np.exp(z).sum())


def compare_logits(enc: np.ndarray, ref: np.ndarray, index: int, n_tokens: int) -> PromptReport:
    lp, lq = _log_softmax(ref), _log_softmax(enc)
    kl = float(np.sum(np.exp(lp) * (lp - lq)))
    top5 = len(set(np.argsort(enc)[-5:].tolist()) & set(np.argsort(ref)[-5:].tolist()))
    return PromptReport(index, n_tokens, int(np.argmax(enc)) == int(np.argmax(ref)), top5, kl,
                        int(np.argmax(enc)), int(np.argmax(ref)))




class LlamaBlocks:
    """The server's half: the first ``n_layers`` blocks packed for one layout, with no key material.

    Everything here is public (weights, calibrated domains, the layout and the level plan), so a server that
    never sees a secret builds it, and so does the local run. The rotation steps are the Galois keys the
    client must make; the stream scales are the public powers of two the residual stream is divided by.

    ``refresh``: "client" (ciphertexts go back to the key holder when levels run out), "bootstrap" (the
    server bootstraps: ``fhectl.circuits.bootstrap_refresh``; ParameterError if the profile cannot) or
    "auto" (bootstrap when the level simulator says the blocks fit with it, else client; ``refresh_note``
    says why). ``refresh_mode`` is what was chosen.
    """

    def __init__(self, weights: LlamaWeights, params: Parameters, domains: list[BlockDomains], n_layers: int,
                 max_tokens: int, refresh: str = "client"):
        cfg = weights.config
        if not 0 <= n_layers <= cfg.n_layer:
            raise InputError(f"--layers must be between 0 and {cfg.n_layer}, got {n_layers}")
        if refresh not in REFRESH_MODES:
            raise InputError(f"--refresh must be one of {', '.join(REFRESH_MODES)}, got {refresh!r}")
        width = max(cfg.n_embd, cfg.n_head * cfg.head_dim)
        if max_tokens > Layout.max_tokens(params.slots, width):
            raise InputError(f"{max_tokens} tokens do not fit one ciphertext of profile {params.name} "
                             f"(at most {Layout.max_tokens(params.slots, width)} for width {width})")
        self.cfg, self.params, self.n_layers = cfg, params, n_layers
        self.layout = Layout.for_model(params.slots, max_tokens, width)
        self.stream_scales = [d.stream_scale for d in domains[:n_layers]]
        self.refresh_note = ""
        self.refresh_mode = "client"
        self.key_levels: dict[int, int] | None = None  # step -> highest level used, for truncated keys
        if refresh != "client" and n_layers:
            why = self._try_bootstrap(weights, domains)
            if why and refresh == "bootstrap":
                raise ParameterError(f"--refresh bootstrap: {why}")
            if why:
                self.refresh_note = f"client refresh: {why}"
        if self.refresh_mode == "client":
            self._plan_client(weights, domains)

    def _try_bootstrap(self, weights, domains) -> str:
        """Blocks, plan and key levels for bootstrapping; '' when they fit, else why not (nothing is kept then)."""
        planned, why = plan_bootstrapped_blocks(
            lambda i, top: EncryptedLlamaBlock(weights, i, self.layout, domains[i], spare_level=True,
                                               stage_levels=top),
            self.n_layers, self.params, "Llama")
        if why:
            return why
        self.blocks, self.rotation_steps, self.refresh_mode = planned.blocks, planned.rotation_steps, "bootstrap"
        self.plan, self.key_levels = planned.plans[-1], planned.key_levels
        return ""

    def _plan_client(self, weights, domains) -> None:
        params = self.params
        self.blocks = [EncryptedLlamaBlock(weights, i, self.layout, domains[i]) for i in range(self.n_layers)]
        steps: set[int] = set()
        self.plan: dict = {}
        try:  # before any key is generated
            for b in self.blocks:
                p = plan_block(b, params)
                steps |= set(p["rotation_steps"])
                self.plan = p
        except LevelError as exc:
            raise LevelError(f"profile {params.name} is too shallow for the Llama circuits: {exc}") from None
        self.rotation_steps = sorted(steps)

    def forward(self, ev, h, refresh, seg: Segments, start: int, stop: int, clock: StageClock | None = None,
                on_block=None):
        """Blocks ``start``..``stop - 1`` on ``h``, which carries the hidden state divided by
        ``stream_scales[start]``; returns the output, divided by ``stream_scales[stop - 1]``.
        ``on_block(i, h, seconds)`` runs after each block."""
        if not 0 <= start < stop <= self.n_layers:
            raise InputError(f"blocks {start}..{stop - 1} are not among the {self.n_layers} encrypted ones")
        clock = clock if clock is not None else StageClock()
        s = self.stream_scales[start]
        for i in range(start, stop):
            t0 = time.perf_counter()
            h = rescale_stream(ev, h, s, self.stream_scales[i])
            s = self.stream_scales[i]
            refresh.begin_block(i)
            h = self.blocks[i].forward(ev, h, refresh, seg, clock)
            if on_block is not None:
                on_block(i, h, time.perf_counter() - t0)
        return h


class EncryptedLlama:
    """Keys, packed blocks and the two roles for one model, batch capacity and parameter set."""

    def __init__(self, weights: LlamaWeights, params: Parameters, domains: list[BlockDomains], n_layers: int,
                 max_tokens: int, device: str = "cpu", random=None, refresh: str = "client",
                 bootstrap_passes: int = 2):
        self.weights, self.cfg, self.params, self.n_layers = weights, weights.config, params, n_layers
        self.model = Llama(weights)
        self.server_part = LlamaBlocks(weights, params, domains, n_layers, max_tokens, refresh)
        self.layout, self.blocks = self.server_part.layout, self.server_part.blocks
        self.stream_scales, self.plan = self.server_part.stream_scales, self.server_part.plan
        self.refresh_mode, self.refresh_note = self.server_part.refresh_mode, self.server_part.refresh_note
        self.ctx = CKKSContext(params, device=device)
        bootstrapping = bool(n_layers) and self.refresh_mode == "bootstrap"
        # the rotation steps already hold the bootstrapper's; its CoeffsToSlots also conjugates
        self.client = Client(self.ctx, self.server_part.rotation_steps, random, conjugation=bootstrapping,
                             key_levels=self.server_part.key_levels) if n_layers else None
        self.server = self.client.server_evaluator() if n_layers else None
        self.bootstrapper = None
        if bootstrapping:  # only then: a profile that cannot bootstrap has no bootstrapping configuration
            self.bootstrapper = client_bootstrapper(self.client, self.server, params, random, bootstrap_passes)

    # -- one pass over a batch of prompts --------------------------------------------------------------
    def _refresh(self, result: RunResult):
        """The refresh of one pass: the client's round trips, or the server's bootstrapping (with a fresh
        range indicator; the bootstrapper, and its encoded transforms, are shared by the passes)."""
        if self.refresh_mode == "client":
            return ClientRefresh(self.client, result.stats), None
        stats = BootstrapStats()
        indicator = RangeIndicator.fitting(self.server, self.params.scale, self.bootstrapper.output_level - 1)
        return BootstrapRefresh(self.server, self.bootstrapper, stats, indicator), indicator

    def run(self, prompts: list[list[int]], on_layer=None, start_layer: int = 0,
            start_hidden: np.ndarray | None = None, out_of_domain: str = "raise") -> tuple[list[np.ndarray], RunResult]:
        """Encrypted blocks on a batch of prompts packed into one ciphertext.

        Returns each prompt's final logits (after the clear blocks, if any) and the report. ``on_layer(i,
        hidden)`` receives the key holder's decryption after block i (what a client refresh sees anyway; with
        bootstrapping it is the local run's measurement, nothing goes back to the server), which a resumable
        benchmark saves; ``start_layer`` / ``start_hidden`` resume from it (one extra refresh at that boundary).

        With bootstrapping the key holder reads the range indicator with the outputs: a stage that may have
        left its domain is a DomainError (``out_of_domain="raise"``), or only reported in ``result.indicator``
        (``"report"``). Each ``result.layers`` entry then also holds that block's bootstraps and its own
        indicator reading (its accumulators decrypted after it, as its hidden state is).
        """
        if out_of_domain not in ("raise", "report"):
            raise InputError(f"out_of_domain must be 'raise' or 'report', got {out_of_domain!r}")
        t_start = time.perf_counter()
        seg = Segments(tuple(len(p) for p in prompts))
        if seg.total > self.layout.tokens:
            raise InputError(f"{seg.total} tokens exceed the {self.layout.tokens} of one ciphertext; fewer prompts")
        result = RunResult(self.n_layers, self.cfg.n_layer, key_bytes=self.client.public_material_bytes()
                           if self.client else 0, galois_keys=self.client.galois_key_counts() if self.client else {},
                           layout={"slots": self.layout.slots, "tokens": self.layout.tokens,
                                   "features_per_chunk": self.layout.chunk, "prompts": len(prompts),
                                   "tokens_used": seg.total},
                           plan={k: v for k, v in self.plan.items() if k != "rotation_steps"},
                           refresh=self.refresh_mode)
        refs = [self.model.embed(p) for p in prompts]  # (T_i, C) each: the float64 reference
        for i in range(start_layer):
            refs = [self.model.block(r, i) for r in refs]
        x = np.concatenate(refs) if start_hidden is None else start_hidden  # (total, C)
        clock = StageClock()
        if self.n_layers > start_layer:
            refresh, indicator = self._refresh(result)
            s = self.stream_scales[start_layer]
            # the server holds h / s; with bootstrapping, encrypted at the level a refresh returns, so every
            # block starts where the plan (and every later block) starts
            level = self.plan["refresh_level"] if indicator is not None else None
            (h,) = self.client.encrypt_hidden(self.layout, x / s, level=level)
            bootstraps_before = [0]

            def on_block(i, h, seconds):
                nonlocal refs
                refs = [self.model.block(r, i) for r in refs]
                got = self.stream_scales[i] * self.client.decrypt_hidden(self.layout, [h], seg.total, self.cfg.n_embd)
                ref = np.concatenate(refs)
                err = float(np.max(np.abs(got - ref)))
                scale = float(np.max(np.abs(ref)))
                cos = min(cosine(got[a:a + n], ref[a:a + n]) for a, n in zip(seg.starts, seg.lengths))
                report = LayerReport(i, err, -math.log2(err / scale) if err > 0 else math.inf, cos, seconds)
                if indicator is not None:
                    report.bootstraps = refresh.stats.bootstraps - bootstraps_before[0]
                    bootstraps_before[0] = refresh.stats.bootstraps
                    reading = read_indicators(indicator.section_state(i), self.client.decryptor,
                                              self.params.slots, indicator.squarings)
                    report.indicator = {"clean": reading.clean, "flagged": reading.flagged,
                                        "suspect": reading.suspect, "summary": reading.summary()}
                result.layers.append(report)
                if on_layer is not None:
                    on_layer(i, got, result.layers[-1])

            h = self.server_part.forward(self.server, h, refresh, seg, start_layer, self.n_layers, clock, on_block)
            s = self.stream_scales[self.n_layers - 1]
            x = s * self.client.decrypt_hidden(self.layout, [h], seg.total, self.cfg.n_embd)
            if indicator is not None:  # the key holder reads the indicator with the outputs
                result.bootstrap = refresh.stats.as_dict()
                verdict = read_indicators(indicator.public_state(), self.client.decryptor, self.params.slots,
                                          indicator.squarings)
                result.indicator = verdict.as_dict()
                result.indicator["summary"] = verdict.summary()
                if not verdict.clean and out_of_domain == "raise":
                    raise DomainError(f"{verdict.summary()}; the outputs may be wrong (client refresh shows the "
                                      "values; --allow-out-of-domain reports this instead of failing)")
        logits, result.prompts = finish_on_client(self.model, x, refs, seg, max(self.n_layers, start_layer))
        result.stage_seconds = clock.seconds
        result.seconds_total = time.perf_counter() - t_start
        return logits, result

    def generate(self, prompt_ids: list[int], max_new_tokens: int, stop_ids=(), on_token=None) -> tuple[list[int], list[RunResult]]:
        """Greedy decoding, one full encrypted pass per new token (no KV cache under encryption yet)."""
        return greedy_decode(self.run, self.layout.tokens, prompt_ids, max_new_tokens, stop_ids, on_token)


def finish_on_client(model: Llama, x: np.ndarray, refs: list[np.ndarray], seg: Segments, from_layer: int
                     ) -> tuple[list[np.ndarray], list[PromptReport]]:
    """The key holder's end of a pass: blocks ``from_layer``.. in the clear on the decrypted hidden states
    ``x`` (total, C) and on the float64 references ``refs``, the final norm and head; each prompt's last
    logits and its comparison with the reference."""
    logits, reports = [], []
    for k, (a, n) in enumerate(zip(seg.starts, seg.lengths)):
        hid, ref = x[a:a + n], refs[k]
        for i in range(from_layer, model.config.n_layer):  # in the clear, on the client
            hid, ref = model.block(hid, i), model.block(ref, i)
        enc_logits, ref_logits = model.final_logits(hid)[-1], model.final_logits(ref)[-1]
        logits.append(enc_logits)
        reports.append(compare_logits(enc_logits, ref_logits, k, n))
    return logits, reports


def greedy_decode(run_batch, capacity: int, prompt_ids: list[int], max_new_tokens: int, stop_ids=(), on_token=None):
    """Greedy decoding with ``run_batch([ids]) -> ([logits], result)``: (new ids, one result per pass)."""
    ids, results = list(prompt_ids), []
    for _ in range(max_new_tokens):
        if len(ids) > capacity:
            break
        logits, result = run_batch([ids])
        results.append(result)
        nxt = int(np.argmax(logits[0]))
        ids.append(nxt)
        if on_token is not None:
            on_token(nxt, result)
        if nxt in stop_ids:
            break
    return ids[len(prompt_ids):], results
