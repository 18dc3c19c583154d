"""Llama (Hugging Face LlamaForCausalLM) forward pass in float64 numpy: the plaintext reference.

A Llama block is pre-norm attention and MLP with residual adds, like GPT-2, with four changes:
  RMSNorm instead of LayerNorm (Zhang & Sennrich 2019, arXiv:1910.07467),
  rotary position embeddings on q and k instead of a position table (Su et al. 2021, RoFormer,
    arXiv:2104.09864), in Hugging Face's `rotate_half` layout (feature f pairs with f + hd/2),
  grouped-query attention, n_head / n_kv_head query heads sharing one key/value head
    (Ainslie et al. 2023, arXiv:2305.13245),
  a SwiGLU MLP, down(silu(gate(x)) * up(x)) (Shazeer 2020, arXiv:2002.05202).

The three nonlinearities (1/sqrt in RMSNorm, softmax, SiLU) are what an encrypted circuit must
approximate, so they come in one `Nonlinearities` object: EXACT here, polynomial stand-ins in a
plaintext mirror of the encrypted model, which then runs this very code. `Llama.trace` records
the ranges those approximations must cover.

One sequence at a time, no batch axis. Letters: T tokens, C = n_embd, H = n_head,
Hkv = n_kv_head, hd = head_dim, F = n_inner, V = vocab_size. Weights are nn.Linear's
(out, in), applied as x @ W.T.
"""

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from fhectl.errors import InputError
from fhectl.llama.config import LlamaConfig
from fhectl.llama.weights import FINAL_NORM, EMBED, LlamaWeights

# --- the nonlinearities, pluggable ---------------------------------------------------------------


@dataclass(frozen=True)
class Nonlinearities:
    rsqrt: Callable[[np.ndarray], np.ndarray]  # mean square + eps -> 1/sqrt of it, elementwise
    softmax: Callable[[np.ndarray, np.ndarray], np.ndarray]  # scores (H, T, T), mask (T, T) -> probs (H, T, T)
    silu: Callable[[np.ndarray], np.ndarray]  # x -> x * sigmoid(x), elementwise


def exact_rsqrt(v):
    return 1.0 / np.sqrt(v)


def exact_softmax(scores, mask):
    """Softmax over keys; mask True = key visible, a hidden key gets probability exactly 0."""
    s = np.where(mask, scores, -np.inf)  # (H, T, T)
    # Subtracting the row maximum changes nothing mathematically and keeps exp from overflowing;
    # every row has a visible key (its own position), so the maximum is finite.
    e = np.exp(s - s.max(axis=-1, keepdims=True))  # (H, T, T) exp(-inf) = 0 where hidden
    return e / e.sum(axis=-1, keepdims=True)


def exact_silu(x):
    # sigmoid(x) = (1 + tanh(x/2)) / 2: the same function, without exp(-x) overflowing for x << 0.
    return 0.5 * x * (1.0 + np.tanh(0.5 * x))


EXACT = Nonlinearities(rsqrt=exact_rsqrt, softmax=exact_softmax, silu=exact_silu)

# --- the stages ----------------------------------------------------------------------------------


def mean_square(x, eps):
    """(T, C) -> (T,): what RMSNorm takes 1/sqrt of, eps included."""
    return (x * x).mean(axis=-1) + eps


def rms_norm(x, weight, eps, rsqrt=exact_rsqrt):
    """RMSNorm: x / sqrt(mean(x^2) + eps) * weight; no centring, no bias."""
    return x * rsqrt(mean_square(x, eps))[:, None] * weight  # (T, C)


def rope_tables(positions, head_dim: int, theta: float):
    """cos and sin of each position's rotation angles, (T, hd) each, in HF's half-split layout.

    Pair i (features i and i + hd/2) turns by angle position * theta^(-2i/hd); both features of
    a pair read the same angle, so the angles are written twice, side by side.
    """
    inv_freq = theta ** (-np.arange(0, head_dim, 2) / head_dim)  # (hd/2,)
    angles = np.outer(np.asarray(positions, dtype=np.float64), inv_freq)  # (T, hd/2)
    angles = np.concatenate([angles, angles], axis=-1)  # (T, hd)
    return np.cos(angles), np.sin(angles)


def rotate_half(x):
    """(..., hd): (x1, x2) -> (-x2, x1), with x1, x2 the two halves; the 90-degree turn of each pair."""
    x1, x2 = np.split(x, 2, axis=-1)
    return np.concatenate([-x2, x1], axis=-1)


def apply_rope(x, cos, sin):
    """Rotate each pair (f, f + hd/2) of every head by its position's angle: x (.., T, hd), tables (T, hd)."""
    return x * cos + rotate_half(x) * sin


def repeat_kv(x, n_rep: int):
    """(Hkv, T, hd) -> (Hkv * n_rep, T, hd): query head h reads key/value head h // n_rep."""
    return np.repeat(x, n_rep, axis=0)


def causal_mask(T: int):
    """(T, T) booleans, True where query position i may look at key position j (j <= i)."""
    return np.tril(np.ones((T, T), dtype=bool))


def _heads(x, n: int, hd: int):
    T = x.shape[0]
    return x.reshape(T, n, hd).transpose(1, 0, 2)  # (n, T, hd)


class AttentionParts(NamedTuple):
    scores: np.ndarray  # (H, T, T) q.k / sqrt(hd), all entries (the mask says which count)
    mask: np.ndarray  # (T, T) True where the key is visible
    probs: np.ndarray  # (H, T, T)
    out: np.ndarray  # (T, C) after o_proj, before the residual add


def attention_parts(x_normed, block_weights, cfg: LlamaConfig, positions, nonlinear=EXACT) -> AttentionParts:
    """Causal grouped-query self-attention with RoPE, keeping scores and probabilities."""
    T, hd = x_normed.shape[0], cfg.head_dim
    q = _heads(x_normed @ block_weights["q_proj"].T, cfg.n_head, hd)  # (H, T, hd)
    k = _heads(x_normed @ block_weights["k_proj"].T, cfg.n_kv_head, hd)  # (Hkv, T, hd)
    v = _heads(x_normed @ block_weights["v_proj"].T, cfg.n_kv_head, hd)  # (Hkv, T, hd)
    cos, sin = rope_tables(positions, hd, cfg.rope_theta)  # (T, hd) each
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (H, T, hd), (Hkv, T, hd)
    k, v = repeat_kv(k, cfg.n_rep), repeat_kv(v, cfg.n_rep)  # (H, T, hd) each
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hd)  # (H, T, T)
    mask = causal_mask(T)  # (T, T)
    probs = nonlinear.softmax(scores, mask)  # (H, T, T)
    y = (probs @ v).transpose(1, 0, 2).reshape(T, cfg.n_head * hd)  # (T, H*hd) heads side by side
    return AttentionParts(scores, mask, probs, y @ block_weights["o_proj"].T)  # out (T, C)


def attention(x_normed, block_weights, cfg: LlamaConfig, positions, nonlinear=EXACT):
    """(T, C) -> (T, C): the attention half of a block, o_proj included."""
    return attention_parts(x_normed, block_weights, cfg, positions, nonlinear).out


class MLPParts(NamedTuple):
    gate: np.ndarray  # (T, F) gate_proj output, the input of SiLU
    out: np.ndarray  # (T, C) after down_proj, before the residual add


def mlp_parts(x_normed, block_weights, nonlinear=EXACT) -> MLPParts:
    gate = x_normed @ block_weights["gate_proj"].T  # (T, F)
    up = x_normed @ block_weights["up_proj"].T  # (T, F)
    h = nonlinear.silu(gate) * up  # (T, F)
    return MLPParts(gate, h @ block_weights["down_proj"].T)  # out (T, C)


def mlp(x_normed, block_weights, nonlinear=EXACT):
    """(T, C) -> (T, C): SwiGLU, down(silu(gate(x)) * up(x))."""
    return mlp_parts(x_normed, block_weights, nonlinear).out


# --- what a block saw, for calibrating the encrypted circuits -------------------------------------


@dataclass
class LayerTrace:
    attn_norm_ms: np.ndarray  # (T,) mean square + eps entering input_layernorm: the domain of rsqrt
    mlp_norm_ms: np.ndarray  # (T,) same, entering post_attention_layernorm
    scores: np.ndarray  # (H, T, T) after the 1/sqrt(hd) scale; -inf where the causal mask hides a key
    score_row_max: np.ndarray  # (H, T) max over visible keys of each row
    gate_min: float  # range of the SiLU input (gate pre-activation)
    gate_max: float
    residual_max_abs: float  # max |value| of the residual stream in this block (input, middle, output)


@dataclass
class Trace:
    layers: list[LayerTrace]
    final_norm_ms: np.ndarray  # (T,) mean square + eps entering model.norm
    logits: np.ndarray  # (T, V)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """(min, max) over all layers of each calibrated quantity (hidden scores left out)."""
        def over(get):
            values = [get(layer) for layer in self.layers]
            return min(float(np.min(v)) for v in values), max(float(np.max(v)) for v in values)
        return {
            "attn_norm_ms": over(lambda t: t.attn_norm_ms),
            "mlp_norm_ms": over(lambda t: t.mlp_norm_ms),
            "scores": over(lambda t: t.scores[np.isfinite(t.scores)]),
            "scores_minus_row_max": over(lambda t: (t.scores - t.score_row_max[..., None])[np.isfinite(t.scores)]),
            "gate": over(lambda t: np.array([t.gate_min, t.gate_max])),
            "residual_max_abs": over(lambda t: t.residual_max_abs),
            "final_norm_ms": (float(self.final_norm_ms.min()), float(self.final_norm_ms.max())),
        }


def block_with_trace(x, block_weights, cfg: LlamaConfig, nonlinear=EXACT) -> tuple[np.ndarray, LayerTrace]:
    """(T, C) -> (T, C), one decoder block at positions 0..T-1, and what its nonlinearities saw."""
    positions = np.arange(x.shape[0])  # (T,)
    eps = cfg.rms_norm_eps
    att = attention_parts(rms_norm(x, block_weights["input_layernorm"], eps, nonlinear.rsqrt), block_weights,
                          cfg, positions, nonlinear)
    mid = x + att.out  # (T, C)
    m = mlp_parts(rms_norm(mid, block_weights["post_attention_layernorm"], eps, nonlinear.rsqrt), block_weights,
                  nonlinear)
    out = mid + m.out  # (T, C)
    scores = np.where(att.mask, att.scores, -np.inf)  # (H, T, T)
    trace = LayerTrace(attn_norm_ms=mean_square(x, eps), mlp_norm_ms=mean_square(mid, eps), scores=scores,
                       score_row_max=scores.max(axis=-1), gate_min=float(m.gate.min()),
                       gate_max=float(m.gate.max()),
                       residual_max_abs=float(max(np.abs(x).max(), np.abs(mid).max(), np.abs(out).max())))
    return out, trace


# --- the whole model -----------------------------------------------------------------------------


class Llama:
    """LlamaForCausalLM over float64 numpy, with pluggable nonlinearities (EXACT by default)."""

    def __init__(self, weights: LlamaWeights, nonlinear: Nonlinearities = EXACT):
        self.weights = weights
        self.config = weights.config
        self.nonlinear = nonlinear

    def _check_ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"token ids must be a non-empty 1-D list of integers, got shape {ids.shape} "
                             f"dtype {ids.dtype}")
        if ids.size > self.config.max_position:
            raise InputError(f"{ids.size} tokens exceed the model's max_position={self.config.max_position}")
        bad = ids[(ids < 0) | (ids >= self.config.vocab_size)]
        if bad.size:
            raise InputError(f"token id {int(bad[0])} is outside the vocabulary 0..{self.config.vocab_size - 1}")
        return ids

    def embed(self, token_ids):
        """(T,) ids -> (T, C): embedding rows only; positions enter later, as rotations of q and k."""
        return self.weights[EMBED][self._check_ids(token_ids)]  # (T, C)

    def block(self, x, layer_index: int, nonlinear: Nonlinearities | None = None):
        """(T, C) -> (T, C): decoder block `layer_index`, with this model's nonlinearities unless given."""
        return block_with_trace(x, self.weights.block(layer_index), self.config, nonlinear or self.nonlinear)[0]

    def final_logits(self, h, nonlinear: Nonlinearities | None = None):
        """(T, C) -> (T, V): model.norm, then the output head (the embedding when tied)."""
        rsqrt = (nonlinear or self.nonlinear).rsqrt
        return rms_norm(h, self.weights[FINAL_NORM], self.config.rms_norm_eps, rsqrt) @ self.weights.lm_head.T

    def hidden_states(self, token_ids):
        """(T,) ids -> (T, C): the residual stream after the last block, before model.norm."""
        x = self.embed(token_ids)  # (T, C)
        for i in range(self.config.n_layer):
            x = self.block(x, i)  # (T, C)
        return x

    def forward(self, token_ids):
        """(T,) ids -> (T, V) logits; row t predicts token t + 1."""
        return self.final_logits(self.hidden_states(token_ids))  # (T, V)

    def trace(self, token_ids) -> Trace:
        """forward, keeping for each layer the ranges its nonlinearities saw."""
        x = self.embed(token_ids)  # (T, C)
        layers = []
        for i in range(self.config.n_layer):
            x, layer = block_with_trace(x, self.weights.block(i), self.config, self.nonlinear)  # (T, C)
            layers.append(layer)
        return Trace(layers=layers, final_norm_ms=mean_square(x, self.config.rms_norm_eps),
                     logits=self.final_logits(x))

    def greedy_generate(self, token_ids, n: int, stop_ids=()) -> list[int]:
        """The prompt followed by up to `n` tokens, each the argmax of the next-token logits.

        Stops after emitting a token in `stop_ids` (it is kept). Recomputes the whole sequence per
        step (no key/value cache): simple, and the computation the encrypted model does.
        """
        ids = [int(t) for t in self._check_ids(token_ids)]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InputError(f"n must be a non-negative integer, got {n!r}")
        if len(ids) + n > self.config.max_position:
            raise InputError(f"{len(ids)} prompt tokens + {n} new ones exceed max_position={self.config.max_position}")
        stop = {int(t) for t in stop_ids}
        for _ in range(n):
            logits = self.final_logits(self.hidden_states(ids)[-1:])  # (1, V) only the last row predicts
            ids.append(int(np.argmax(logits[0])))  # ties go to the lowest id, as torch.argmax
            if ids[-1] in stop:
                break
        return ids
