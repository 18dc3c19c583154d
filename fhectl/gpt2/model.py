"""GPT-2 (Hugging Face GPT2LMHeadModel) forward pass in numpy: the plaintext reference.

The encrypted model is checked against this one stage by stage, so every stage is a free
function over arrays (layer_norm, gelu_tanh, attention, mlp, block_forward), and `GPT2.trace`
keeps what each stage produced; the min/max of those values are the domains the encrypted side
fits its polynomial approximations (GELU, 1/sqrt, exp, 1/x) on.

One sequence at a time: T tokens, no batch dimension. Shapes use nanoGPT's letters:
T tokens, C = n_embd, nh = n_head, hs = C / nh, V = vocab_size.
Weights keep the checkpoint's Conv1D layout (in, out), applied as x @ W + b; see weights.py.
"""

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from fhectl.errors import InputError
from fhectl.gpt2.weights import GPT2Weights

# --- the stages ---------------------------------------------------------------------------------


def layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis, as torch.nn.LayerNorm: biased variance, eps inside the sqrt."""
    mean = x.mean(axis=-1, keepdims=True)  # (T, 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (T, 1)
    return (x - mean) / np.sqrt(var + eps) * weight + bias  # (T, C)


def gelu_tanh(x):
    """GPT-2's GELU: the tanh approximation ("gelu_new" in transformers), not the erf form."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def softmax(x, axis=-1):
    # Subtracting the row maximum changes nothing mathematically and keeps exp from overflowing.
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def causal_mask(T: int):
    """(T, T) booleans, True where query position i may look at key position j (j <= i)."""
    return np.tril(np.ones((T, T), dtype=bool))


class AttentionParts(NamedTuple):
    qkv: np.ndarray  # (T, 3C) c_attn output: q, k and v side by side
    scores: np.ndarray  # (nh, T, T) q.k / sqrt(hs); -inf where the causal mask hides a key
    probs: np.ndarray  # (nh, T, T) softmax of scores over keys; each row sums to 1
    out: np.ndarray  # (T, C) after c_proj, before the residual add


def attention_parts(x, block_weights, n_head: int) -> AttentionParts:
    """Causal multi-head self-attention of one block, keeping its intermediate values."""
    T, C = x.shape
    hs = C // n_head
    qkv = x @ block_weights["attn.c_attn.weight"] + block_weights["attn.c_attn.bias"]  # (T, 3C)
    q, k, v = np.split(qkv, 3, axis=1)  # 3 x (T, C)
    q = q.reshape(T, n_head, hs).transpose(1, 0, 2)  # (nh, T, hs)
    k = k.reshape(T, n_head, hs).transpose(1, 0, 2)  # (nh, T, hs)
    v = v.reshape(T, n_head, hs).transpose(1, 0, 2)  # (nh, T, hs)
    scores = q @ k.transpose(0, 2, 1) / math.sqrt(hs)  # (nh, T, T)
    scores = np.where(causal_mask(T), scores, -np.inf)  # (nh, T, T) token i sees tokens 0..i only
    probs = softmax(scores, axis=-1)  # (nh, T, T)
    y = probs @ v  # (nh, T, hs)
    y = y.transpose(1, 0, 2).reshape(T, C)  # (T, C) heads side by side again
    out = y @ block_weights["attn.c_proj.weight"] + block_weights["attn.c_proj.bias"]  # (T, C)
    return AttentionParts(qkv, scores, probs, out)


def attention(x, block_weights, n_head: int):
    """(T, C) -> (T, C): causal self-attention of one block, c_proj included."""
    return attention_parts(x, block_weights, n_head).out


class MLPParts(NamedTuple):
    fc: np.ndarray  # (T, 4C) c_fc output, the input of GELU
    gelu: np.ndarray  # (T, 4C)
    out: np.ndarray  # (T, C) after c_proj, before the residual add


def mlp_parts(x, block_weights) -> MLPParts:
    fc = x @ block_weights["mlp.c_fc.weight"] + block_weights["mlp.c_fc.bias"]  # (T, 4C)
    g = gelu_tanh(fc)  # (T, 4C)
    out = g @ block_weights["mlp.c_proj.weight"] + block_weights["mlp.c_proj.bias"]  # (T, C)
    return MLPParts(fc, g, out)


def mlp(x, block_weights):
    """(T, C) -> (T, C): c_fc, GELU, c_proj."""
    return mlp_parts(x, block_weights).out


def block_forward(x, weights: GPT2Weights, layer_index: int):
    """(T, C) -> (T, C): one transformer block, pre-LayerNorm with residual adds."""
    bw = weights.block(layer_index)
    eps = weights.config.layer_norm_epsilon
    x = x + attention(layer_norm(x, bw["ln_1.weight"], bw["ln_1.bias"], eps), bw, weights.config.n_head)  # (T, C)
    x = x + mlp(layer_norm(x, bw["ln_2.weight"], bw["ln_2.bias"], eps), bw)  # (T, C)
    return x


# --- what each stage produced, for calibration and stage-by-stage checks --------------------------


def _finite_range(a) -> tuple[float, float]:
    finite = a[np.isfinite(a)]  # masked attention scores are -inf and carry no information
    return float(finite.min()), float(finite.max())


@dataclass
class BlockTrace:
    x: np.ndarray  # (T, C) block input, the residual stream
    ln_1_var: np.ndarray  # (T,) variance ln_1 divides by (eps not added): the domain of 1/sqrt
    ln_1: np.ndarray  # (T, C)
    qkv: np.ndarray  # (T, 3C)
    att_scores: np.ndarray  # (nh, T, T) before softmax, -inf where masked
    att_probs: np.ndarray  # (nh, T, T)
    attn_out: np.ndarray  # (T, C) attention after c_proj, before the residual add
    ln_2_var: np.ndarray  # (T,)
    ln_2: np.ndarray  # (T, C)
    fc: np.ndarray  # (T, 4C) pre-GELU
    gelu: np.ndarray  # (T, 4C)
    mlp_out: np.ndarray  # (T, C) after c_proj, before the residual add
    out: np.ndarray  # (T, C) block output

    def ranges(self) -> dict[str, tuple[float, float]]:
        """(min, max) of every recorded value, masked scores left out."""
        return {name: _finite_range(value) for name, value in vars(self).items()}


@dataclass
class Trace:
    embeddings: np.ndarray  # (T, C) wte + wpe, the input of block 0
    blocks: list[BlockTrace]
    ln_f_var: np.ndarray  # (T,)
    ln_f: np.ndarray  # (T, C)
    logits: np.ndarray  # (T, V)

    def ranges(self) -> dict[str, tuple[float, float]]:
        """(min, max) of each block stage over all blocks, and of the final stages."""
        per_block = [b.ranges() for b in self.blocks]
        out = {name: (min(r[name][0] for r in per_block), max(r[name][1] for r in per_block))
               for name in per_block[0]}
        for name in ("embeddings", "ln_f_var", "ln_f", "logits"):
            out[name] = _finite_range(getattr(self, name))
        return out


def trace_block(x, weights: GPT2Weights, layer_index: int) -> BlockTrace:
    """block_forward, keeping every intermediate value (tests check both give the same output)."""
    bw = weights.block(layer_index)
    eps = weights.config.layer_norm_epsilon
    ln_1 = layer_norm(x, bw["ln_1.weight"], bw["ln_1.bias"], eps)  # (T, C)
    att = attention_parts(ln_1, bw, weights.config.n_head)
    mid = x + att.out  # (T, C)
    ln_2 = layer_norm(mid, bw["ln_2.weight"], bw["ln_2.bias"], eps)  # (T, C)
    m = mlp_parts(ln_2, bw)
    out = mid + m.out  # (T, C)
    return BlockTrace(x=x, ln_1_var=x.var(axis=-1), ln_1=ln_1, qkv=att.qkv, att_scores=att.scores,
                      att_probs=att.probs, attn_out=att.out, ln_2_var=mid.var(axis=-1), ln_2=ln_2,
                      fc=m.fc, gelu=m.gelu, mlp_out=m.out, out=out)


# --- the whole model ----------------------------------------------------------------------------


class GPT2:
    """GPT2LMHeadModel over numpy, computing in `dtype` (float64 for a reference, float32 as torch does)."""

    def __init__(self, weights: GPT2Weights, dtype=np.float64):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise InputError(f"GPT2 reference: dtype must be float32 or float64, got {self.dtype}")
        self.config = weights.config
        self.weights = weights.astype(self.dtype)

    def _check_ids(self, token_ids) -> np.ndarray:
        ids = np.asarray(token_ids)
        if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
            raise InputError(f"token ids must be a non-empty 1-D list of integers, got shape {ids.shape} "
                             f"dtype {ids.dtype}")
        if ids.size > self.config.n_positions:
            raise InputError(f"{ids.size} tokens exceed the model's n_positions={self.config.n_positions}")
        bad = ids[(ids < 0) | (ids >= self.config.vocab_size)]
        if bad.size:
            raise InputError(f"token id {int(bad[0])} is outside the vocabulary 0..{self.config.vocab_size - 1}")
        return ids

    def embed(self, token_ids):
        """(T,) ids -> (T, C): token embedding plus position embedding."""
        ids = self._check_ids(token_ids)
        tok_emb = self.weights["wte.weight"][ids]  # (T, C)
        pos_emb = self.weights["wpe.weight"][: ids.size]  # (T, C)
        return tok_emb + pos_emb  # (T, C)

    def block(self, x, layer_index: int):
        """(T, C) -> (T, C): block `layer_index` on this model's weights."""
        return block_forward(x, self.weights, layer_index)

    def final_logits(self, h):
        """(T, C) -> (T, V): ln_f, then the output head, which is wte itself (tied)."""
        h = layer_norm(h, self.weights["ln_f.weight"], self.weights["ln_f.bias"],
                       self.config.layer_norm_epsilon)  # (T, C)
        return h @ self.weights["wte.weight"].T  # (T, V)

    def forward(self, token_ids):
        """(T,) ids -> (T, V) logits; row t predicts token t + 1."""
        x = self.embed(token_ids)  # (T, C)
        for i in range(self.config.n_layer):
            x = block_forward(x, self.weights, i)  # (T, C)
        return self.final_logits(x)  # (T, V)

    def trace(self, token_ids) -> Trace:
        """forward, keeping every block's intermediate values."""
        x = self.embed(token_ids)  # (T, C)
        embeddings = x
        blocks = []
        for i in range(self.config.n_layer):
            blocks.append(trace_block(x, self.weights, i))
            x = blocks[-1].out  # (T, C)
        ln_f = layer_norm(x, self.weights["ln_f.weight"], self.weights["ln_f.bias"],
                          self.config.layer_norm_epsilon)  # (T, C)
        logits = ln_f @ self.weights["wte.weight"].T  # (T, V)
        return Trace(embeddings=embeddings, blocks=blocks, ln_f_var=x.var(axis=-1), ln_f=ln_f, logits=logits)

    def greedy_generate(self, token_ids, max_new_tokens: int) -> list[int]:
        """The prompt followed by `max_new_tokens` tokens, each the argmax of the next-token logits.

        Recomputes the whole sequence per step (no key/value cache): simple, and the same
        computation the encrypted model does.
        """
        ids = [int(t) for t in self._check_ids(token_ids)]
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise InputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        if len(ids) + max_new_tokens > self.config.n_positions:
            raise InputError(f"{len(ids)} prompt tokens + {max_new_tokens} new ones exceed "
                             f"n_positions={self.config.n_positions}")
        for _ in range(max_new_tokens):
            logits = self.forward(ids)  # (T, V)
            ids.append(int(np.argmax(logits[-1])))  # ties go to the lowest id, as torch.argmax
        return ids
