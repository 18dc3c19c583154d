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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import Parameters
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import Client, ClientRefresh, Stats
from fhectl.circuits.transformer import Segments, StageClock, plan_block, rescale_stream
from fhectl.errors import InputError, LevelError
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
    """Keys, packed blocks and the two roles for one model, prompt length and parameter set."""

    def __init__(self, weights: GPT2Weights, params: Parameters, domains: list[BlockDomains], n_layers: int,
                 max_tokens: int, device: str = "cpu", random=None):
        self.weights = weights
        self.model = GPT2(weights, dtype=np.float64)
        self.cfg = cfg = weights.config
        if not 1 <= n_layers <= cfg.n_layer:
            raise InputError(f"--layers must be in 1..{cfg.n_layer}, got {n_layers}")
        self.params = params
        self.n_layers = n_layers
        if max_tokens > Layout.max_tokens(params.slots, cfg.n_embd):
            raise InputError(f"{max_tokens} tokens do not fit one ciphertext of profile {params.name} "
                             f"(at most {Layout.max_tokens(params.slots, cfg.n_embd)} for width {cfg.n_embd})")
        self.layout = Layout.for_model(params.slots, max_tokens, cfg.n_embd)
        self.blocks = [EncryptedBlock(weights, i, self.layout, domains[i]) for i in range(n_layers)]
        self.stream_scales = [d.stream_scale for d in domains[:n_layers]]
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
        self.ctx = CKKSContext(params, device=device)
        self.client = Client(self.ctx, steps, random)
        self.server = self.client.server_evaluator()  # the server sees the public material only

    def run_blocks(self, ids: list[int], stats: Stats, on_block=None) -> tuple[np.ndarray, list[BlockReport]]:
        """Encrypted blocks on the prompt ``ids``; returns the final hidden state (T, C) and per-block reports."""
        n = len(ids)
        seg = Segments((n,))
        x = self.model.embed(ids)  # (T, C)
        ref = x.copy()
        s = self.stream_scales[0]
        (h,) = self.client.encrypt_hidden(self.layout, x / s)  # the server holds h / s
        refresh = ClientRefresh(self.client, stats)
        clock = StageClock(stats.stage_seconds)
        reports = []
        for i, block in enumerate(self.blocks):
            t0 = time.perf_counter()
            h = rescale_stream(self.server, h, s, self.stream_scales[i])
            s = self.stream_scales[i]
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
        for i in range(self.n_layers, self.cfg.n_layer):  # blocks not run encrypted, in the clear on the client
            hidden = self.model.block(hidden, i)
        return hidden, reports

    def generate(self, prompt_ids: list[int], max_new_tokens: int, on_block=None) -> InferenceResult:
        t_start = time.perf_counter()
        result = InferenceResult(prompt_ids=list(prompt_ids), generated_ids=[], reference_ids=[],
                                 n_encrypted_layers=self.n_layers, n_layers=self.cfg.n_layer,
                                 layout={"slots": self.layout.slots, "tokens": self.layout.tokens,
                                         "features_per_chunk": self.layout.chunk},
                                 key_bytes=self.client.public_material_bytes(), device=self.ctx.device,
                                 plans=list(self.plans), stream_scales=list(self.stream_scales))
        ids = list(prompt_ids)
        ref_ids = list(prompt_ids)
        for step in range(max_new_tokens):
            if len(ids) > self.layout.tokens:
                break
            hidden, reports = self.run_blocks(ids, result.stats, on_block)
            logits = self.model.final_logits(hidden)[-1]
            ref_logits = self.model.forward(ids)[-1]
            result.blocks.append(reports)
            result.tokens.append(compare_logits(logits, ref_logits, len(ids) - 1))
            nxt = int(np.argmax(logits))
            ids.append(nxt)
            ref_ids = self.model.greedy_generate(prompt_ids, step + 1)
        result.generated_ids = ids[len(prompt_ids):]
        result.reference_ids = ref_ids[len(prompt_ids):]
        result.seconds_total = time.perf_counter() - t_start
        return result
