"""The plaintext mirror of the encrypted GPT-2 block: ``model.block_forward`` with every nonlinearity replaced
by the circuit's own float64 evaluation (``eval_plain``: the same polynomials, composites and
normalise-and-square rounds), on the stream scaled as the server holds it.

It predicts an encrypted run's approximation error (everything but the CKKS noise) in milliseconds, and
records the worst circuit errors against the exact functions on the values actually received, and the values
that fall outside a domain (what a client refresh would refuse), instead of raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fhectl.gpt2.encrypted import BlockCircuits
from fhectl.gpt2.model import causal_mask, gelu_tanh, softmax
from fhectl.gpt2.weights import GPT2Weights


@dataclass
class SilentErrors:
    """Worst errors of the circuits against the exact functions on the inputs they saw."""

    softmax_tv_max: float = 0.0  # max over rows of the total variation distance
    rsqrt_rel_max: float = 0.0  # max relative error of 1/sqrt(var + eps)
    gelu_abs_max: float = 0.0  # max |gelu circuit - gelu|
    violations: list[str] = field(default_factory=list)  # "layer i: what", values outside a domain


def _outside(values: np.ndarray, lo: float, hi: float) -> bool:
    return bool(np.any(~((values >= lo) & (values <= hi))))


def mirror_block(x: np.ndarray, weights: GPT2Weights, circuits: BlockCircuits, errors: SilentErrors) -> np.ndarray:
    """(T, C) -> (T, C): block ``circuits.index`` with the circuits' plaintext evaluations."""
    i, dom = circuits.index, circuits.domains
    bw, cfg = weights.block(i), weights.config
    s, eps = dom.stream_scale, cfg.layer_norm_epsilon

    def layer_norm(h, gamma, beta, rsqrt, name):
        mean = h.mean(axis=-1, keepdims=True)  # (T, 1)
        v = ((h - mean) ** 2).mean(axis=-1, keepdims=True) + eps  # (T, 1)
        scaled = v / s**2  # what the server holds: var(h / s) + eps / s^2
        if _outside(scaled, *rsqrt.domain):
            errors.violations.append(f"layer {i}: {name} variance")
        r = rsqrt.eval_plain(np.clip(scaled, *rsqrt.domain)) / (rsqrt.out_scale * s)  # (T, 1) ~ 1/sqrt(v)
        errors.rsqrt_rel_max = max(errors.rsqrt_rel_max, float(np.max(np.abs(r * np.sqrt(v) - 1))))
        return (h - mean) * r * gamma + beta  # (T, C)

    T, C = x.shape
    nh, hs = cfg.n_head, cfg.head_size
    a = layer_norm(x, bw["ln_1.weight"], bw["ln_1.bias"], circuits.rsqrt_1, "ln_1")  # (T, C)
    q, k, v = np.split(a @ bw["attn.c_attn.weight"] + bw["attn.c_attn.bias"], 3, axis=1)  # 3 x (T, C)
    q, k, v = (m.reshape(T, nh, hs).transpose(1, 0, 2) for m in (q, k, v))  # (nh, T, hs)
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hs)  # (nh, T, T)
    mask = causal_mask(T)  # (T, T)
    sm = circuits.softmax
    if _outside(scores[:, mask], -sm.bound, sm.bound):
        errors.violations.append(f"layer {i}: attention scores")
    probs = sm.eval_plain(np.clip(scores, -sm.bound, sm.bound), mask)  # (nh, T, T)
    exact = softmax(np.where(mask, scores, -np.inf))
    errors.softmax_tv_max = max(errors.softmax_tv_max, float(np.max(0.5 * np.abs(probs - exact).sum(-1))))
    y = (probs @ v).transpose(1, 0, 2).reshape(T, C)  # (T, C)
    x = x + y @ bw["attn.c_proj.weight"] + bw["attn.c_proj.bias"]  # (T, C)
    m = layer_norm(x, bw["ln_2.weight"], bw["ln_2.bias"], circuits.rsqrt_2, "ln_2")  # (T, C)
    fc = m @ bw["mlp.c_fc.weight"] + bw["mlp.c_fc.bias"]  # (T, 4C)
    g = circuits.gelu
    if _outside(fc, *g.domain):
        errors.violations.append(f"layer {i}: gelu input")
    act = g.eval_plain(np.clip(fc, *g.domain))  # (T, 4C)
    errors.gelu_abs_max = max(errors.gelu_abs_max, float(np.max(np.abs(act - gelu_tanh(fc)))))
    return x + act @ bw["mlp.c_proj.weight"] + bw["mlp.c_proj.bias"]  # (T, C)
