"""The plaintext mirror of the encrypted block: the float64 model with every nonlinearity replaced by the
circuit's own plaintext evaluation (``eval_plain``: the same polynomials, the same composites, the same
normalise-and-square rounds).

It predicts the approximation error of an encrypted run (everything but the CKKS noise) in milliseconds, so
the accuracy benchmark runs it on the whole evaluation set, and it watches for silent errors: each call
compares the circuit with the exact function on the values it actually received (softmax rows' total
variation, 1/sqrt's relative error, SiLU's error) and checks them against the block's domains, counting what
a client refresh would have refused instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fhectl.llama.encrypted import BlockCircuits
from fhectl.llama.model import EXACT, Nonlinearities


@dataclass
class SilentErrors:
    """Worst errors of the circuits against the exact functions on the inputs they saw."""

    softmax_tv_max: float = 0.0  # max over rows of the total variation distance
    rsqrt_rel_max: float = 0.0  # max relative error of 1/sqrt(mean square + eps)
    silu_abs_max: float = 0.0  # max |silu circuit - silu| ...
    silu_rel_max: float = 0.0  # ... and relative to max(1, |silu(x)|)
    violations: list[str] = field(default_factory=list)  # "layer i: what", values outside a domain

    def merge(self, other: "SilentErrors") -> None:
        self.softmax_tv_max = max(self.softmax_tv_max, other.softmax_tv_max)
        self.rsqrt_rel_max = max(self.rsqrt_rel_max, other.rsqrt_rel_max)
        self.silu_abs_max = max(self.silu_abs_max, other.silu_abs_max)
        self.silu_rel_max = max(self.silu_rel_max, other.silu_rel_max)
        self.violations += other.violations


def _outside(values: np.ndarray, lo: float, hi: float) -> bool:
    return bool(np.any(~((values >= lo) & (values <= hi))))


class BlockMirror:
    """Nonlinearities for one block's plaintext mirror; call order is the block's: rsqrt (input_layernorm),
    softmax, rsqrt (post_attention_layernorm), silu."""

    def __init__(self, block: BlockCircuits, errors: SilentErrors):
        self.block, self.errors = block, errors
        self._norms = 0

    def rsqrt(self, v: np.ndarray) -> np.ndarray:
        b = self.block
        circuit, name = ((b.rsqrt_attn, "input_layernorm") if self._norms % 2 == 0
                         else (b.rsqrt_mlp, "post_attention_layernorm"))
        self._norms += 1
        s = b.domains.stream_scale
        scaled = v / s**2  # what the server holds: mean((h / s)^2) + eps / s^2
        if _outside(scaled, *circuit.domain):
            self.errors.violations.append(f"layer {b.index}: {name} mean square")
        got = circuit.eval_plain(np.clip(scaled, *circuit.domain)) / (circuit.out_scale * s)
        exact = EXACT.rsqrt(v)
        self.errors.rsqrt_rel_max = max(self.errors.rsqrt_rel_max, float(np.max(np.abs(got / exact - 1))))
        return got

    def softmax(self, scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
        sm = self.block.softmax
        visible = np.broadcast_to(mask, scores.shape)
        if _outside(scores[visible], -sm.bound, sm.bound):
            self.errors.violations.append(f"layer {self.block.index}: attention scores")
        got = sm.eval_plain(np.clip(scores, -sm.bound, sm.bound), mask)
        exact = EXACT.softmax(scores, mask)
        tv = 0.5 * np.sum(np.abs(got - exact), axis=-1)
        self.errors.softmax_tv_max = max(self.errors.softmax_tv_max, float(np.max(tv)))
        return got

    def silu(self, x: np.ndarray) -> np.ndarray:
        circuit = self.block.silu
        if _outside(x, *circuit.domain):
            self.errors.violations.append(f"layer {self.block.index}: silu input")
        got = circuit.eval_plain(np.clip(x, *circuit.domain))
        exact = EXACT.silu(x)
        err = np.abs(got - exact)
        self.errors.silu_abs_max = max(self.errors.silu_abs_max, float(np.max(err)))
        self.errors.silu_rel_max = max(self.errors.silu_rel_max, float(np.max(err / np.maximum(1.0, np.abs(exact)))))
        return got

    def nonlinearities(self) -> Nonlinearities:
        return Nonlinearities(rsqrt=self.rsqrt, softmax=self.softmax, silu=self.silu)
