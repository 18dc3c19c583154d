"""Ranges the encrypted GPT-2 circuits must cover, measured by plaintext runs of the same model.

The circuits (``fhectl.circuits.wide``, ``fhectl.circuits.softmax``) are built for the wide ranges of trained
models; calibration decides how wide, per block, with margins far beyond what was seen (the same rules as
``fhectl.llama.calibration``):

* var + eps entering each LayerNorm: [max(eps, min / 10), max * 10] -- the interval is fitted on the very
  value the 1/sqrt circuit receives and the client refresh checks (var + eps), never below eps, and a decade
  over the largest "massive activation" seen;
* attention scores: |s| <= max(16, 2 max |s|) (the softmax has no per-row or per-layer shift: this bounds
  magnitudes, it is not a window around typical values);
* GELU inputs (c_fc outputs): |x| <= max(32, 2 max |x|);
* the residual stream's public scale s_i, a power of two per block, with |h| / s_i <= 64 on what was seen at
  the block's input, middle and output (8 times below the 2^9 that fits q0 / Delta at level 0). Trained
  GPT-2 carries a few residual features of magnitude 1,000-3,000 on the first token (Sun et al., "Massive
  Activations in Large Language Models", 2024).

Every bound is rounded outwards to a power of two. The domains are cached next to the weights
(``fhectl_calibration_<digest>.json``) for the weights they were computed on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fhectl.gpt2.model import GPT2

# Margins over what calibration saw (see the module docstring).
VAR_MARGIN = 10.0
SCORE_MARGIN, SCORE_FLOOR = 2.0, 16.0
GELU_MARGIN, GELU_FLOOR = 2.0, 32.0
STREAM_LIMIT = 64.0
# The 1/sqrt circuit's output c / sqrt(v) is kept below this (c is chosen from the domain's lower end).
RSQRT_MAX_OUTPUT = 4.0
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
        return (self.ln1_var[0] / self.stream_scale**2, self.ln1_var[1] / self.stream_scale**2)

    @property
    def ln2_var_scaled(self) -> tuple[float, float]:
        return (self.ln2_var[0] / self.stream_scale**2, self.ln2_var[1] / self.stream_scale**2)

    @staticmethod
    def rsqrt_out_scale(interval: tuple[float, float]) -> float:
        """c with c / sqrt(v) <= RSQRT_MAX_OUTPUT on the interval: small values stay far from q0."""
        return RSQRT_MAX_OUTPUT * math.sqrt(interval[0])

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


def _update(lo_hi: list, values: np.ndarray) -> None:
    lo_hi[0], lo_hi[1] = min(lo_hi[0], float(np.min(values))), max(lo_hi[1], float(np.max(values)))


def measure(model: GPT2, prompts: list[list[int]], n_layer: int | None = None) -> list[BlockRanges]:
    """Run the float64 model on every prompt and record each block's circuit inputs."""
    n_layer = model.config.n_layer if n_layer is None else n_layer
    eps = model.config.layer_norm_epsilon
    ranges = [BlockRanges() for _ in range(n_layer)]
    for ids in prompts:
        for r, bt in zip(ranges, model.trace(ids).blocks[:n_layer]):
            _update(r.ln1_var, bt.ln_1_var + eps)
            _update(r.ln2_var, bt.ln_2_var + eps)
            scores = bt.att_scores[np.isfinite(bt.att_scores)]  # masked keys are -inf
            r.score_abs = max(r.score_abs, float(np.max(np.abs(scores))))
            r.gelu_abs = max(r.gelu_abs, float(np.max(np.abs(bt.fc))))
            mid = bt.x + bt.attn_out  # (T, C) the stream between the two halves
            r.stream_abs = max(r.stream_abs, *(float(np.max(np.abs(a))) for a in (bt.x, mid, bt.out)))
    return ranges


def stream_scale_for(stream_abs: float) -> float:
    """The least power of two s >= 1 with max |h| / s <= STREAM_LIMIT."""
    return float(2.0 ** max(0, math.ceil(math.log2(max(stream_abs, 1e-30) / STREAM_LIMIT))))


def _pow2_down(x: float) -> float:
    return 2.0 ** math.floor(math.log2(x))


def _pow2_up(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x))


def domains_from(ranges: list[BlockRanges], eps: float) -> list[BlockDomains]:
    """Margins as in the module docstring, every bound rounded outwards to a power of two."""
    def var(lo_hi):
        return (_pow2_down(max(eps, lo_hi[0] / VAR_MARGIN)), _pow2_up(lo_hi[1] * VAR_MARGIN))

    return [BlockDomains(stream_scale_for(r.stream_abs), var(r.ln1_var), var(r.ln2_var),
                         _pow2_up(max(SCORE_FLOOR, SCORE_MARGIN * r.score_abs)),
                         _pow2_up(max(GELU_FLOOR, GELU_MARGIN * r.gelu_abs))) for r in ranges]


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
    if ranges.stream_abs / dom.stream_scale > 8 * STREAM_LIMIT:
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
