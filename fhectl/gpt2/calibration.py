"""Ranges the encrypted GPT-2 circuits must cover, measured by plaintext runs of the same model.

The circuits (``fhectl.circuits.wide``, ``fhectl.circuits.softmax``) are built for the wide ranges of trained
models; the shared rules of ``fhectl.circuits.domains`` decide how wide, per block (the same as for Llama):
var + eps entering each LayerNorm (the very value the 1/sqrt circuit receives and the client refresh checks)
widened 10x each way but never below eps, |scores| and |GELU inputs| bounded by twice what was seen (at least
16 and 32), and a residual-stream scale per block with |h| / s <= 64 at the block's input, middle and output.
Trained GPT-2 carries a few residual features of magnitude 1,000-3,000 on the first token (Sun et al.,
"Massive Activations in Large Language Models", 2024). ``fhectl.gpt2.pipeline`` caches the domains under
$XDG_CACHE_HOME/fhectl/calibration (``gpt2-<digest>.json``) for the weights they were computed on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fhectl.circuits import domains as rules
from fhectl.gpt2.model import GPT2

FORMAT = "gpt2-wide-1"  # cache files of another format are ignored


@dataclass(frozen=True)
class BlockDomains:
    """One block's calibrated intervals (unscaled model units) and its stream scale."""

    stream_scale: float  # s: the server holds h / s in this block
    ln1_var: tuple[float, float]  # var(h) + eps entering ln_1
    ln2_var: tuple[float, float]  # ... entering ln_2
    score_bound: float  # |q.k / sqrt(hs)| on visible keys
    gelu_bound: float  # |c_fc(x)|

    @property
    def ln1_var_scaled(self) -> tuple[float, float]:
        """The same interval for the scaled stream h / s: divided by s^2."""
        return rules.scaled_interval(self.ln1_var, self.stream_scale)

    @property
    def ln2_var_scaled(self) -> tuple[float, float]:
        return rules.scaled_interval(self.ln2_var, self.stream_scale)

    rsqrt_out_scale = staticmethod(rules.rsqrt_out_scale)

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "BlockDomains":
        return BlockDomains(float(d["stream_scale"]), tuple(d["ln1_var"]), tuple(d["ln2_var"]),
                            float(d["score_bound"]), float(d["gelu_bound"]))


@dataclass
class BlockRanges:
    """What one block's circuit inputs spanned over a set of prompts (min/max; +-inf before any data)."""

    ln1_var: list = field(default_factory=lambda: [math.inf, -math.inf])  # var + eps
    ln2_var: list = field(default_factory=lambda: [math.inf, -math.inf])
    score_abs: float = 0.0
    gelu_abs: float = 0.0
    stream_abs: float = 0.0


def measure(model: GPT2, prompts: list[list[int]], n_layer: int | None = None) -> list[BlockRanges]:
    """Run the float64 model on every prompt and record each block's circuit inputs."""
    n_layer = model.config.n_layer if n_layer is None else n_layer
    eps = model.config.layer_norm_epsilon
    ranges = [BlockRanges() for _ in range(n_layer)]
    for ids in prompts:
        for r, bt in zip(ranges, model.trace(ids).blocks[:n_layer]):
            rules.update_range(r.ln1_var, bt.ln_1_var + eps)
            rules.update_range(r.ln2_var, bt.ln_2_var + eps)
            scores = bt.att_scores[np.isfinite(bt.att_scores)]  # masked keys are -inf
            r.score_abs = max(r.score_abs, float(np.max(np.abs(scores))))
            r.gelu_abs = max(r.gelu_abs, float(np.max(np.abs(bt.fc))))
            mid = bt.x + bt.attn_out  # (T, C) the stream between the two halves
            r.stream_abs = max(r.stream_abs, *(float(np.max(np.abs(a))) for a in (bt.x, mid, bt.out)))
    return ranges


def domains_from(ranges: list[BlockRanges], eps: float) -> list[BlockDomains]:
    """The shared widening rules (``fhectl.circuits.domains``) applied to each block's ranges."""
    return [BlockDomains(rules.stream_scale_for(r.stream_abs), rules.norm_interval(r.ln1_var, eps),
                         rules.norm_interval(r.ln2_var, eps), rules.score_bound(r.score_abs),
                         rules.activation_bound(r.gelu_abs)) for r in ranges]


def calibrate(model: GPT2, prompts: list[list[int]], n_layer: int | None = None) -> list[BlockDomains]:
    """Domains per block from plaintext runs of ``model`` on ``prompts`` (lists of token ids)."""
    return domains_from(measure(model, prompts, n_layer), model.config.layer_norm_epsilon)


def count_violations(ranges: BlockRanges, dom: BlockDomains) -> list[str]:
    """The circuit inputs of one prompt that fall outside a block's domains (what a client refresh would refuse)."""
    out = []
    if ranges.ln1_var[0] < dom.ln1_var[0] or ranges.ln1_var[1] > dom.ln1_var[1]:
        out.append("ln_1 variance")
    if ranges.ln2_var[0] < dom.ln2_var[0] or ranges.ln2_var[1] > dom.ln2_var[1]:
        out.append("ln_2 variance")
    if ranges.score_abs > dom.score_bound:
        out.append("attention scores")
    if ranges.gelu_abs > dom.gelu_bound:
        out.append("gelu input")
    if ranges.stream_abs / dom.stream_scale > 8 * rules.STREAM_LIMIT:
        out.append("residual stream")
    return out


# -- cache ----------------------------------------------------------------------------------------------


def weights_digest(model: GPT2) -> str:
    h = hashlib.sha256()
    for name, arr in sorted(model.weights.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes()[:4096])
        h.update(str(arr.shape).encode())
    return h.hexdigest()[:16]


def save_domains(path: Path, domains: list[BlockDomains], digest: str) -> None:
    path.write_text(json.dumps({"format": FORMAT, "weights_digest": digest,
                                "blocks": [d.as_dict() for d in domains]}, indent=2))


def load_domains(path: Path, digest: str) -> list[BlockDomains] | None:
    """The cached domains if the file exists, has this format and was made for these weights, else None."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if data.get("format") != FORMAT or data.get("weights_digest") != digest:
        return None
    try:
        return [BlockDomains.from_dict(b) for b in data["blocks"]]
    except (KeyError, TypeError, ValueError):
        return None
