"""Approximation domains for the encrypted nonlinearities, calibrated per model.

Polynomials approximate GELU, exp, 1/x and 1/sqrt(x) only on an interval, so
each block's intervals come from plaintext runs of the same model over a set
of prompts, widened by a margin. GPT-2's residual stream has large outliers
(a few features reach hundreds), so nothing here assumes narrow ranges: the
intervals are what the model produced, times a safety factor.

The intervals are stored next to the weights (``fhectl_calibration.json``) or
computed again when the model changes (the file records a digest of the
weights it belongs to).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fhectl.circuits import polynomial
from fhectl.gpt2.model import GPT2

MARGIN = 0.25  # intervals widened by 25 % of their width on each side (more where they touch 0)


@dataclass(frozen=True)
class BlockDomains:
    ln1_var: tuple[float, float]  # variance seen by ln_1 (eps added later)
    scores: tuple[float, float]  # attention scores q.k/sqrt(hs) (0 included: masked slots hold 0)
    exp_shift: float  # c: exp is evaluated on scores - c, so its outputs stay <= about 1
    softmax_sum: tuple[float, float]  # sum over keys of exp(score - c)
    ln2_var: tuple[float, float]
    gelu: tuple[float, float]  # c_fc output, the input of GELU

    def as_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "BlockDomains":
        return BlockDomains(
            ln1_var=tuple(d["ln1_var"]), scores=tuple(d["scores"]), exp_shift=float(d["exp_shift"]),
            softmax_sum=tuple(d["softmax_sum"]), ln2_var=tuple(d["ln2_var"]), gelu=tuple(d["gelu"]),
        )


def _widen(lo: float, hi: float, positive: bool = False) -> tuple[float, float]:
    width = max(hi - lo, 1e-6)
    lo2, hi2 = lo - MARGIN * width, hi + MARGIN * width
    if positive:
        lo2 = max(lo / 4, 1e-12) if lo > 0 else 1e-12
    return (float(lo2), float(hi2))


def calibrate(model: GPT2, prompts: list[list[int]], n_layer: int | None = None) -> list[BlockDomains]:
    """Domains per block from plaintext runs of ``model`` on ``prompts`` (lists of token ids)."""
    n_layer = model.config.n_layer if n_layer is None else n_layer
    acc: list[dict[str, list[float]]] = [dict() for _ in range(n_layer)]
    sums: dict[int, list[np.ndarray]] = {}

    def update(i, key, values):
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return
        lo, hi = acc[i].get(key, [math.inf, -math.inf])
        acc[i][key] = [min(lo, float(v.min())), max(hi, float(v.max()))]

    for ids in prompts:
        tr = model.trace(ids)
        for i, bt in enumerate(tr.blocks[:n_layer]):
            update(i, "ln1_var", bt.ln_1_var)
            update(i, "ln2_var", bt.ln_2_var)
            update(i, "scores", np.append(bt.att_scores[np.isfinite(bt.att_scores)], 0.0))
            update(i, "gelu", bt.fc)
            update(i, "row_max", np.where(np.isfinite(bt.att_scores), bt.att_scores, -np.inf).max(axis=-1))
            sums.setdefault(i, []).append(bt.att_scores)
    out = []
    for i in range(n_layer):
        a = acc[i]
        s_lo, s_hi = _widen(*a["scores"])
        shift = s_hi  # exp(s - c) <= 1 on the whole widened interval
        # The softmax denominators actually seen, sum over keys of exp(s - c); the lower end is
        # widened by the factor the widened score interval could lower each term.
        seen = [np.sum(np.exp(np.where(np.isfinite(s), s - shift, -np.inf)), axis=-1) for s in sums[i]]
        sum_lo = min(float(v.min()) for v in seen) * math.exp(-MARGIN * (a["scores"][1] - a["scores"][0]))
        max_tokens = max(len(p) for p in prompts)
        out.append(
            BlockDomains(
                ln1_var=_widen(*a["ln1_var"], positive=True),
                scores=(s_lo, s_hi),
                exp_shift=shift,
                softmax_sum=(sum_lo, float(max_tokens) * 1.25),
                ln2_var=_widen(*a["ln2_var"], positive=True),
                gelu=_widen(*a["gelu"]),
            )
        )
    return out


def weights_digest(model: GPT2) -> str:
    h = hashlib.sha256()
    for name, arr in sorted(model.weights.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes()[:4096])
        h.update(str(arr.shape).encode())
    return h.hexdigest()[:16]


def save_domains(path: Path, domains: list[BlockDomains], digest: str) -> None:
    path.write_text(json.dumps({"weights_digest": digest, "blocks": [d.as_dict() for d in domains]}, indent=2))


def load_domains(path: Path, digest: str) -> list[BlockDomains] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if data.get("weights_digest") != digest:
        return None
    try:
        return [BlockDomains.from_dict(b) for b in data["blocks"]]
    except (KeyError, TypeError, ValueError):
        return None


def check_domain(values: np.ndarray, interval: tuple[float, float], what: str) -> None:
    """DomainError naming the value and the interval if any value lies outside it or is not finite.

    One check for the whole project: ``fhectl.circuits.polynomial.check_domain`` (NaN counts as outside).
    """
    polynomial.check_domain(values, interval[0], interval[1], what)
