"""Ranges the encrypted Llama circuits must cover, measured on a calibration prompt set (never the evaluation
set), widened by the shared rules of ``fhectl.circuits.domains`` (margins of 10x on norms, 2x on scores and SiLU
inputs, powers of two, a residual-stream scale per block with |h| / s <= 64; SmolLM2's stream is ~40 in block 0
and ~30,000 from block 11 on, so one scale for the model would push early blocks towards the CKKS noise).

Values are recorded through the plaintext model's pluggable nonlinearities (``fhectl.llama.model``), so the
numbers are exactly the inputs the encrypted circuits will see. ``count_violations`` checks a prompt against
these domains without raising, for the accuracy report.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fhectl.circuits import domains as rules
from fhectl.llama.model import EXACT, Llama, Nonlinearities


@dataclass(frozen=True)
class BlockDomains:
    """One block's calibrated intervals (unscaled model units) and the model's stream scale."""

    stream_scale: float  # s: the server holds h / s in this block
    ms_attn: tuple[float, float]  # mean(h^2) + eps entering input_layernorm
    ms_mlp: tuple[float, float]  # ... entering post_attention_layernorm
    score_bound: float  # |q.k / sqrt(hd)| on visible keys
    gate_bound: float  # |gate_proj(x)|

    @property
    def ms_attn_scaled(self) -> tuple[float, float]:
        """The same interval for the scaled stream h / s: divided by s^2."""
        return rules.scaled_interval(self.ms_attn, self.stream_scale)

    @property
    def ms_mlp_scaled(self) -> tuple[float, float]:
        return rules.scaled_interval(self.ms_mlp, self.stream_scale)

    rsqrt_out_scale = staticmethod(rules.rsqrt_out_scale)

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "BlockDomains":
        return BlockDomains(float(d["stream_scale"]), tuple(d["ms_attn"]), tuple(d["ms_mlp"]),
                            float(d["score_bound"]), float(d["gate_bound"]))


@dataclass
class BlockRanges:
    """What one block's circuit inputs spanned over a set of prompts (min/max; +-inf before any data)."""

    ms_attn: list = field(default_factory=lambda: [math.inf, -math.inf])
    ms_mlp: list = field(default_factory=lambda: [math.inf, -math.inf])
    score_abs: float = 0.0
    gate_abs: float = 0.0
    stream_abs: float = 0.0


class _Recorder:
    """Exact nonlinearities that also record their inputs into a BlockRanges."""

    def __init__(self, ranges: BlockRanges):
        self.r = ranges
        self.norms_seen = 0

    def rsqrt(self, v):
        rules.update_range(self.r.ms_attn if self.norms_seen % 2 == 0 else self.r.ms_mlp, v)
        self.norms_seen += 1
        return EXACT.rsqrt(v)

    def softmax(self, scores, mask):
        visible = np.broadcast_to(mask, scores.shape)
        self.r.score_abs = max(self.r.score_abs, float(np.max(np.abs(scores[visible]))))
        return EXACT.softmax(scores, mask)

    def silu(self, x):
        self.r.gate_abs = max(self.r.gate_abs, float(np.max(np.abs(x))))
        return EXACT.silu(x)

    def nonlinearities(self) -> Nonlinearities:
        return Nonlinearities(rsqrt=self.rsqrt, softmax=self.softmax, silu=self.silu)


def measure(model: Llama, prompts: list[list[int]], n_layer: int | None = None) -> list[BlockRanges]:
    """Run the float64 model on every prompt and record each block's circuit inputs."""
    n_layer = model.config.n_layer if n_layer is None else n_layer
    ranges = [BlockRanges() for _ in range(n_layer)]
    for ids in prompts:
        x = model.embed(ids)  # (T, C)
        for i in range(n_layer):
            rec = _Recorder(ranges[i])
            ranges[i].stream_abs = max(ranges[i].stream_abs, float(np.max(np.abs(x))))
            x = model.block(x, i, nonlinear=rec.nonlinearities())
            ranges[i].stream_abs = max(ranges[i].stream_abs, float(np.max(np.abs(x))))
    return ranges


def domains_from(ranges: list[BlockRanges], eps: float) -> list[BlockDomains]:
    """The shared widening rules (``fhectl.circuits.domains``) applied to each block's ranges."""
    return [BlockDomains(rules.stream_scale_for(r.stream_abs), rules.norm_interval(r.ms_attn, eps),
                         rules.norm_interval(r.ms_mlp, eps), rules.score_bound(r.score_abs),
                         rules.activation_bound(r.gate_abs)) for r in ranges]


def calibrate(model: Llama, prompts: list[list[int]], n_layer: int | None = None) -> list[BlockDomains]:
    return domains_from(measure(model, prompts, n_layer), model.config.rms_norm_eps)


def count_violations(ranges: BlockRanges, dom: BlockDomains) -> list[str]:
    """The circuit inputs of one prompt that fall outside a block's domains (what a client refresh would refuse)."""
    out = []
    if ranges.ms_attn[0] < dom.ms_attn[0] or ranges.ms_attn[1] > dom.ms_attn[1]:
        out.append("input_layernorm mean square")
    if ranges.ms_mlp[0] < dom.ms_mlp[0] or ranges.ms_mlp[1] > dom.ms_mlp[1]:
        out.append("post_attention_layernorm mean square")
    if ranges.score_abs > dom.score_bound:
        out.append("attention scores")
    if ranges.gate_abs > dom.gate_bound:
        out.append("silu input")
    if ranges.stream_abs / dom.stream_scale > 8 * rules.STREAM_LIMIT:
        out.append("residual stream")
    return out


# -- cache ----------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fhectl" / "calibration"


def save_domains(path: Path, domains: list[BlockDomains], key: str) -> None:
    """Atomically (temporary file, then rename), so a killed run never leaves half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"key": key, "blocks": [d.as_dict() for d in domains]}, indent=1).encode()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_domains(path: Path, key: str) -> list[BlockDomains] | None:
    """The cached domains if the file exists and was made for ``key`` (weights and prompt set), else None."""
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return None
        return [BlockDomains.from_dict(b) for b in data["blocks"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
