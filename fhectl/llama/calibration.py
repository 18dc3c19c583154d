"""Ranges the encrypted circuits must cover, measured on a calibration prompt set (never the evaluation set).

The circuits of ``fhectl.circuits.wide`` and ``fhectl.circuits.softmax`` are built for wide ranges; what
calibration still decides is *how* wide, per block, with margins far beyond what was seen:

* mean square + eps entering each RMSNorm: [max(eps, min / 10), max * 10] -- the lower end can never
  fall below eps, the upper end leaves a decade over the largest "massive activation" seen;
* attention scores: |s| <= max(16, 2 max |s|) (the softmax circuit has no per-row or per-layer shift, so
  this is a bound on magnitudes, not a window around typical values);
* SiLU inputs: |g| <= max(32, 2 max |g|);
* the residual stream's public scale s_i, a power of two per block, with |h| / s_i <= 64 on what was seen at
  the block's input and output (8 times below the 2^9 that fits q0 / Delta at level 0). One scale for the
  whole model would push the early blocks' small values (|h| ~ 40 in SmolLM2's block 0, ~30,000 from
  block 11 on) down towards the CKKS noise.

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

from fhectl.llama.model import EXACT, Llama, Nonlinearities

# Margins over what calibration saw (see the module docstring).
MS_MARGIN = 10.0
SCORE_MARGIN, SCORE_FLOOR = 2.0, 16.0
GATE_MARGIN, GATE_FLOOR = 2.0, 32.0
STREAM_LIMIT = 64.0
# The 1/sqrt circuit's output c / sqrt(v) is kept below this (c is chosen from the domain's lower end).
RSQRT_MAX_OUTPUT = 4.0


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
        return (self.ms_attn[0] / self.stream_scale**2, self.ms_attn[1] / self.stream_scale**2)

    @property
    def ms_mlp_scaled(self) -> tuple[float, float]:
        return (self.ms_mlp[0] / self.stream_scale**2, self.ms_mlp[1] / self.stream_scale**2)

    @staticmethod
    def rsqrt_out_scale(interval: tuple[float, float]) -> float:
        """c with c / sqrt(v) <= RSQRT_MAX_OUTPUT on the interval: small values stay far from q0."""
        return RSQRT_MAX_OUTPUT * math.sqrt(interval[0])

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
        key = "ms_attn" if self.norms_seen % 2 == 0 else "ms_mlp"
        self.norms_seen += 1
        lo_hi = getattr(self.r, key)
        lo_hi[0], lo_hi[1] = min(lo_hi[0], float(np.min(v))), max(lo_hi[1], float(np.max(v)))
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


def stream_scale_for(stream_abs: float) -> float:
    """The least power of two s >= 1 with max |h| / s <= STREAM_LIMIT."""
    return float(2.0 ** max(0, math.ceil(math.log2(max(stream_abs, 1e-30) / STREAM_LIMIT))))


def _pow2_down(x: float) -> float:
    return 2.0 ** math.floor(math.log2(x))


def _pow2_up(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x))


def domains_from(ranges: list[BlockRanges], eps: float) -> list[BlockDomains]:
    """Margins as in the module docstring, then every bound rounded outwards to a power of two (blocks
    with similar ranges then share circuits, and the numbers in a report read at a glance)."""
    def ms(lo_hi):
        return (_pow2_down(max(eps, lo_hi[0] / MS_MARGIN)), _pow2_up(lo_hi[1] * MS_MARGIN))

    return [BlockDomains(stream_scale_for(r.stream_abs), ms(r.ms_attn), ms(r.ms_mlp), _pow2_up(max(SCORE_FLOOR, SCORE_MARGIN * r.score_abs)),
                         _pow2_up(max(GATE_FLOOR, GATE_MARGIN * r.gate_abs))) for r in ranges]


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
    if ranges.stream_abs / dom.stream_scale > 8 * STREAM_LIMIT:
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
