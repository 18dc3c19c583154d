"""Encrypted GPT-2 inference end to end, with the comparison against the float64 reference.

The client embeds and encrypts the prompt's hidden states; the server runs
``n_layers`` encrypted blocks; the client decrypts the last hidden state and
applies ln_f and the tied head in the clear. For the report, the client also
decrypts each block's output and compares it with the plaintext model run on
the same tokens (that diagnostic decryption is not part of the protocol and
is not counted as a refresh).

When fewer blocks than the model has are run encrypted (``--layers K``), the
remaining blocks run in plaintext on the client and the report says so.

The server holds the residual stream divided by a public power of two per block
(``calibration.BlockDomains.stream_scale``); the client multiplies by it after
each decryption. The depth plan and the rotation keys come from running each
block on the level simulator before any key is made, so a profile too shallow
for the circuits fails in milliseconds.

Levels are restored by client refresh (round trips to the key holder, who checks
every domain) or, as for the Llama family, by bootstrapping on the server
(``refresh="bootstrap"``: zero round trips; the domains travel as a homomorphic
range indicator that the key holder reads with each pass's outputs,
``fhectl.circuits.range_indicator``). "auto" bootstraps when the level simulator
says the blocks fit with it, else falls back to client refresh and says why
(``refresh_note``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import Parameters
from fhectl.circuits.bootstrap_refresh import (REFRESH_MODES, BootstrapRefresh, BootstrapStats, client_bootstrapper,
                                               plan_bootstrapped_blocks)
from fhectl.circuits.packing import Layout
from fhectl.circuits.range_indicator import IndicatorVerdict, RangeIndicator
from fhectl.circuits.refresh import Client, ClientRefresh, Stats
from fhectl.circuits.transformer import Segments, StageClock, plan_block, rescale_stream
from fhectl.errors import DomainError, InputError, LevelError, ParameterError
from fhectl.gpt2.calibration import BlockDomains
from fhectl.gpt2.encrypted import EncryptedBlock
from fhectl.gpt2.model import GPT2
from fhectl.gpt2.weights import GPT2Weights


@dataclass
class BlockReport:
    index: int
    max_abs_error: float  # unscaled model units
    precision_bits: float  # -log2 of the error relative to the largest |h| of the reference
    cosine: float
    seconds: float


@dataclass
class TokenReport:
    position: int
    encrypted_top1: int
    reference_top1: int
    top5_overlap: int
    kl_divergence: float


@dataclass
class InferenceResult:
    prompt_ids: list[int]
    generated_ids: list[int]
    reference_ids: list[int]
    blocks: list[list[BlockReport]] = field(default_factory=list)  # per generated token
    tokens: list[TokenReport] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)
    n_encrypted_layers: int = 0
    n_layers: int = 0
    layout: dict = field(default_factory=dict)
    key_bytes: int = 0
    seconds_total: float = 0.0
    device: str = "cpu"
    plans: list[dict] = field(default_factory=list)  # per encrypted block, from the level simulator
    stream_scales: list[float] = field(default_factory=list)  # per encrypted block
    refresh: str = "client"  # "client" (round trips to the key holder) or "bootstrap" (none)
    refresh_note: str = ""  # why "auto" fell back to client refresh
    bootstrap: dict = field(default_factory=dict)  # BootstrapStats.as_dict() over all passes, with bootstrapping
    indicators: list[dict] = field(default_factory=list)  # per pass: the range indicator's verdict and summary

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a.ravel() @ b.ravel() / (na * nb)) if na and nb else float("nan")


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    return z - math.log(np.exp(z).sum())


def compare_logits(enc: np.ndarray, ref: np.ndarray, position: int) -> TokenReport:
    lp, lq = _log_softmax(ref), _log_softmax(enc)
    kl = float(np.sum(np.exp(lp) * (lp - lq)))
    top5_e = set(np.argsort(enc)[-5:].tolist())
    top5_r = set(np.argsort(ref)[-5:].tolist())
    return TokenReport(position, int(np.argmax(enc)), int(np.argmax(ref)), len(top5_e & top5_r), kl)


class EncryptedGPT2:
    """Keys, packed blocks and the two roles for one model, prompt length and parameter set.

    ``refresh``: "client" (ciphertexts go back to the key holder when levels run out), "bootstrap" (the server
    bootstraps: ``fhectl.circuits.bootstrap_refresh``; ParameterError if the profile cannot) or "auto"
    (bootstrap when the level simulator says the blocks fit with it, else client; ``refresh_note`` says why).
    ``refresh_mode`` is what was chosen."""

    def __init__(self, weights: GPT2Weights, params: Parameters, domains: list[BlockDomains], n_layers: int,
                 max_tokens: int, device: str = "cpu", random=None, refresh: str = "client",
                 bootstrap_passes: int = 2):
        self.weights = weights
        self.model = GPT2(weights, dtype=np.float64)
        self.cfg = cfg = weights.config
        if not 1 <= n_layers <= cfg.n_layer:
            raise InputError(f"--layers must be in 1..{cfg.n_layer}, got {n_layers}")
        if refresh not in REFRESH_MODES:
            raise InputError(f"--refresh must be one of {', '.join(REFRESH_MODES)}, got {refresh!r}")
        self.params = params
        self.n_layers = n_layers
        if max_tokens > Layout.max_tokens(params.slots, cfg.n_embd):
            raise InputError(f"{max_tokens} tokens do not fit one ciphertext of profile {params.name} "
                             f"(at most {Layout.max_tokens(params.slots, cfg.n_embd)} for width {cfg.n_embd})")
        self.layout = Layout.for_model(params.slots, max_tokens, cfg.n_embd)
        self.stream_scales = [d.stream_scale for d in domains[:n_layers]]
        self.refresh_mode, self.refresh_note = "client", ""
        steps: set[int] = set()
        key_levels = None
        if refresh != "client":  # before any key is generated: the level simulator decides
            planned, why = plan_bootstrapped_blocks(
                lambda i, top: EncryptedBlock(weights, i, self.layout, domains[i], spare_level=True, stage_levels=top),
                n_layers, params, "GPT-2")
            if why and refresh == "bootstrap":
                raise ParameterError(f"--refresh bootstrap: {why}")
            if why:
                self.refresh_note = f"client refresh: {why}"
            else:
                self.refresh_mode, self.blocks, steps = "bootstrap", planned.blocks, set(planned.rotation_steps)
                key_levels = planned.key_levels
                self.plans = [{k: v for k, v in p.items() if k != "rotation_steps"} for p in planned.plans]
        if self.refresh_mode == "client":
            steps = self._plan_client(weights, domains)
        self.ctx = CKKSContext(params, device=device)
        bootstrapping = self.refresh_mode == "bootstrap"
        # with bootstrapping the steps hold the bootstrapper's too; its CoeffsToSlots also conjugates
        self.client = Client(self.ctx, steps, random, conjugation=bootstrapping, key_levels=key_levels)
        self.server = self.client.server_evaluator()  # the server sees the public material only
        self.bootstrapper = (client_bootstrapper(self.client, self.server, params, random, bootstrap_passes)
                             if bootstrapping else None)

    def _plan_client(self, weights, domains) -> set[int]:
        """Blocks and per-block plans for client refresh; the rotation steps they need."""
        params = self.params
        self.blocks = [EncryptedBlock(weights, i, self.layout, domains[i]) for i in range(self.n_layers)]
        steps: set[int] = set()
        self.plans: list[dict] = []
        try:  # before any key is generated: a too-shallow profile fails in milliseconds
            for b in self.blocks:
                p = plan_block(b, params)
                steps |= set(p["rotation_steps"])
                self.plans.append({k: v for k, v in p.items() if k != "rotation_steps"})
        except LevelError as exc:
            raise LevelError(f"profile {params.name} (fresh ciphertexts have {params.max_level} levels) is too "
                             f"shallow for the GPT-2 circuits: {exc}") from None
        return steps

    def _refresh(self, stats: Stats, boot_stats: BootstrapStats):
        """One pass's refresh: the client's round trips, or the server's bootstrapping with a fresh range
        indicator (the bootstrapper, and its encoded transforms, are shared by the passes)."""
        if self.refresh_mode == "client":
            return ClientRefresh(self.client, stats), None
        indicator = RangeIndicator.fitting(self.server, self.params.scale, self.bootstrapper.output_level - 1)
        return BootstrapRefresh(self.server, self.bootstrapper, boot_stats, indicator), indicator

    def run_blocks(self, ids: list[int], stats: Stats, on_block=None, boot_stats: BootstrapStats | None = None,
                   out_of_domain: str = "raise") -> tuple[np.ndarray, list[BlockReport], IndicatorVerdict | None]:
        """Encrypted blocks on the prompt ``ids``; returns the final hidden state (T, C), per-block reports and,
        with bootstrapping, the range indicator's verdict, which the key holder reads with the outputs: a stage
        that may have left its domain is a DomainError (``out_of_domain="raise"``) or only reported
        (``"report"``). ``boot_stats`` collects the bootstraps (a fresh one per call if None)."""
        if out_of_domain not in ("raise", "report"):
            raise InputError(f"out_of_domain must be 'raise' or 'report', got {out_of_domain!r}")
        n = len(ids)
        seg = Segments((n,))
        x = self.model.embed(ids)  # (T, C)
        ref = x.copy()
        s = self.stream_scales[0]
        refresh, indicator = self._refresh(stats, BootstrapStats() if boot_stats is None else boot_stats)
        # the server holds h / s; with bootstrapping, encrypted at the level a refresh returns, so every block
        # starts where the plan starts
        level = self.plans[0]["refresh_level"] if indicator is not None else None
        (h,) = self.client.encrypt_hidden(self.layout, x / s, level=level)
        clock = StageClock(stats.stage_seconds)
        reports = []
        for i, block in enumerate(self.blocks):
            t0 = time.perf_counter()
            h = rescale_stream(self.server, h, s, self.stream_scales[i])
            s = self.stream_scales[i]
            refresh.begin_block(i)
            h = block.forward(self.server, h, refresh, seg, clock)
            seconds = time.perf_counter() - t0
            ref = self.model.block(ref, i)
            got = s * self.client.decrypt_hidden(self.layout, [h], n, self.cfg.n_embd)  # diagnostic only
            err = float(np.max(np.abs(got - ref)))
            bits = -math.log2(err / float(np.max(np.abs(ref)))) if err > 0 else math.inf
            reports.append(BlockReport(i, err, bits, _cosine(got, ref), seconds))
            if on_block is not None:
                on_block(reports[-1])
        hidden = s * self.client.decrypt_hidden(self.layout, [h], n, self.cfg.n_embd)
        verdict = None
        if indicator is not None:  # the key holder reads the indicator with the outputs
            verdict = indicator.read(self.client.decryptor, self.params.slots)
            if not verdict.clean and out_of_domain == "raise":
                raise DomainError(f"{verdict.summary()}; the outputs may be wrong (client refresh shows the values; "
                                  "--allow-out-of-domain reports this instead of failing)")
        for i in range(self.n_layers, self.cfg.n_layer):  # blocks not run encrypted, in the clear on the client
            hidden = self.model.block(hidden, i)
        return hidden, reports, verdict

    def generate(self, prompt_ids: list[int], max_new_tokens: int, on_block=None,
                 out_of_domain: str = "raise") -> InferenceResult:
        """Greedy decoding, one encrypted pass per new token; ``out_of_domain`` as for ``run_blocks``."""
        t_start = time.perf_counter()
        result = InferenceResult(prompt_ids=list(prompt_ids), generated_ids=[], reference_ids=[],
                                 n_encrypted_layers=self.n_layers, n_layers=self.cfg.n_layer,
                                 layout={"slots": self.layout.slots, "tokens": self.layout.tokens,
                                         "features_per_chunk": self.layout.chunk},
                                 key_bytes=self.client.public_material_bytes(), device=self.ctx.device,
                                 plans=list(self.plans), stream_scales=list(self.stream_scales),
                                 refresh=self.refresh_mode, refresh_note=self.refresh_note)
        boot_stats = BootstrapStats()
        ids = list(prompt_ids)
        ref_ids = list(prompt_ids)
        for step in range(max_new_tokens):
            if len(ids) > self.layout.tokens:
                break
            hidden, reports, verdict = self.run_blocks(ids, result.stats, on_block, boot_stats, out_of_domain)
            if verdict is not None:
                result.indicators.append({**verdict.as_dict(), "summary": verdict.summary()})
            logits = self.model.final_logits(hidden)[-1]
            ref_logits = self.model.forward(ids)[-1]
            result.blocks.append(reports)
            result.tokens.append(compare_logits(logits, ref_logits, len(ids) - 1))
            nxt = int(np.argmax(logits))
            ids.append(nxt)
            ref_ids = self.model.greedy_generate(prompt_ids, step + 1)
        if self.refresh_mode == "bootstrap":
            result.bootstrap = boot_stats.as_dict()
        result.generated_ids = ids[len(prompt_ids):]
        result.reference_ids = ref_ids[len(prompt_ids):]
        result.seconds_total = time.perf_counter() - t_start
        return result
