"""Llama blocks (SmolLM2) on encrypted hidden states: the server's half of the homomorphic proxy.

The plaintext twin is ``fhectl.llama.model``; this file follows it stage by stage and annotates, where the
plaintext model annotates shapes, the level a line leaves (``# L -> L-1``: one rescale). Timing wraps the
stages (``clock.stage``), it does not interleave with the maths, and the depth plan, the refresh points and the
rotation keys all come from running this same code on the level simulator (``plan``), not from tables.

Packing (``fhectl.circuits.packing``): tokens x features, feature-major, F = 1024 features per chunk (576
used), T tokens. Several prompts share one ciphertext: they are segments of the token axis, each with its own
positions (RoPE) and its own causal mask, so attention never crosses a segment.

What differs from GPT-2, and why:

* **Residual stream scale.** Trained Llama models carry "massive activations" (Sun et al., "Massive
  Activations in Large Language Models", 2024): a few residual features reach thousands on the first token.
  CKKS has q0 / Delta = 2^10 of integer headroom at level 0, so the server holds h / s with a public power of
  two s (calibrated so |h / s| <= 64); RMSNorm is scale invariant, so only eps (-> eps / s^2) and the two
  projections that write the stream (o_proj, down_proj, both divided by s) change. The key holder multiplies
  by s after the last decryption.
* **RMSNorm** needs 1/sqrt of the mean square over 9+ decades: ``fhectl.circuits.wide.inverse_sqrt_wide``
  (composite range reduction), computing c / sqrt(v) with a public c that keeps its output small; 1/c and
  gamma fold into the next linear layer.
* **RoPE** is a plaintext cos/sin product plus two in-chunk feature rotations (rotate_half pairs feature i
  with i +- head_dim/2 of the same head): one level.
* **Grouped-query attention**: the 3 key/value heads are repeated to the 9 query heads inside W_k and W_v,
  so keys and values come out aligned with the queries' features (exact; costs nothing at run time).
* **Softmax** by normalise-and-square (Cho et al., CCS 2024; ``fhectl.circuits.softmax``): no per-layer
  shift, rows normalised by their own sums. All scores of a block share ONE ciphertext: the score of query t
  for key t - delta sits at feature head * hd + delta (a head has hd >= T features), so the softmax's
  squarings, sums and refreshes run on one ciphertext instead of T.
* **SwiGLU** with SiLU accurate on [-B, B] by a domain-extension composite (``fhectl.circuits.wide``).

Levels: each linear layer runs at the lowest level that leaves what its segment needs after it (a product on
3 limbs instead of 21 costs a seventh), and a client refresh (``fhectl.circuits.refresh``) restores the chain
before each nonlinear circuit and at the end of each half block.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from fhectl.circuits.linear import PackedLinear
from fhectl.circuits.packing import Layout
from fhectl.circuits.softmax import softmax_circuit
from fhectl.circuits.wide import inverse_sqrt_wide, silu_wide
from fhectl.errors import InputError
from fhectl.llama.calibration import BlockDomains
from fhectl.llama.config import LlamaConfig
from fhectl.llama.weights import LlamaWeights

# Relative tolerance of the RMSNorm 1/sqrt circuit: 2^-12, the target, well under bf16 rounding.
RSQRT_REL_TOL = 2.0**-12


@dataclass(frozen=True)
class Segments:
    """Prompts packed along the token axis: segment i holds tokens [starts[i], starts[i] + lengths[i])."""

    lengths: tuple[int, ...]

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(int(s) for s in np.cumsum((0,) + self.lengths[:-1]))

    @property
    def total(self) -> int:
        return int(sum(self.lengths))

    def positions(self, tokens: int) -> np.ndarray:
        """(T,) RoPE position of each token slot: its index inside its own prompt (0 on padding)."""
        pos = np.zeros(tokens, dtype=np.int64)
        for s, n in zip(self.starts, self.lengths):
            pos[s:s + n] = np.arange(n)
        return pos

    def key_visible(self, tokens: int, delta: int) -> np.ndarray:
        """(T,) bool: token t may attend to token t - delta (same prompt, causal, not padding)."""
        pos = self.positions(tokens)
        t = np.arange(tokens)
        return (t < self.total) & (pos >= delta)


@dataclass
class StageClock:
    """Seconds and levels per stage; the encrypted code says ``with clock.stage(name):`` around each stage."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass(frozen=True)
class BlockCircuits:
    """The nonlinear circuits of one block, built from its calibrated domains for rows of up to ``max_keys``
    keys. The encrypted block evaluates them; the plaintext mirror (``fhectl.llama.mirror``) runs their
    ``eval_plain``."""

    index: int
    domains: BlockDomains
    rsqrt_attn: object  # c / sqrt(mean square + eps) of the scaled stream, input_layernorm
    rsqrt_mlp: object  # the same for post_attention_layernorm
    softmax: object
    silu: object

    @staticmethod
    def build(index: int, domains: BlockDomains, max_keys: int) -> "BlockCircuits":
        return BlockCircuits(
            index, domains,
            inverse_sqrt_wide(*domains.ms_attn_scaled, rel_tol=RSQRT_REL_TOL,
                              out_scale=domains.rsqrt_out_scale(domains.ms_attn_scaled)),
            inverse_sqrt_wide(*domains.ms_mlp_scaled, rel_tol=RSQRT_REL_TOL,
                              out_scale=domains.rsqrt_out_scale(domains.ms_mlp_scaled)),
            softmax_circuit(domains.score_bound, max_keys=max_keys),
            silu_wide(domains.gate_bound))


class EncryptedLlamaBlock:
    """One Llama block on the server: folded weights, packed diagonals, circuits for its calibrated ranges."""

    def __init__(self, weights: LlamaWeights, index: int, layout: Layout, domains: BlockDomains):
        cfg: LlamaConfig = weights.config
        self.cfg, self.index, self.layout, self.domains = cfg, index, layout, domains
        d, hd, f = cfg.n_embd, cfg.head_dim, layout.chunk
        if cfg.n_head * hd > f or d > f:
            raise InputError(f"model width {max(d, cfg.n_head * hd)} exceeds one chunk of {f} features")
        if layout.tokens > hd:
            raise InputError(f"{layout.tokens} token slots exceed the head width {hd}: softmax rows must fit a head")
        s = domains.stream_scale
        self.eps = cfg.rms_norm_eps / s**2  # mean((h / s)^2) + eps / s^2 = (mean(h^2) + eps) / s^2
        self.circuits = BlockCircuits.build(index, domains, layout.tokens)
        c = self.circuits
        self.rsqrt_attn, self.rsqrt_mlp, self.softmax, self.silu = c.rsqrt_attn, c.rsqrt_mlp, c.softmax, c.silu

        w = weights.block(index)
        n_rep = cfg.n_head // cfg.n_kv_head
        # repeat_kv folded into the weights: query head j reads key/value head j // n_rep
        expand = np.concatenate([np.arange(hd) + (j // n_rep) * hd for j in range(cfg.n_head)])  # (H hd,)
        g1 = w["input_layernorm"] / self.rsqrt_attn.out_scale  # gamma and 1/c fold into q, k, v
        wq = w["q_proj"].T / math.sqrt(hd)  # (C, H hd); attention scale folded in
        wk = w["k_proj"].T[:, expand]  # (C, KV hd) -> (C, H hd)
        wv = w["v_proj"].T[:, expand]
        qkv = g1[:, None] * np.concatenate([wq, wk, wv], axis=1)  # (C, 3 H hd)
        width = cfg.n_head * hd
        self.qkv = PackedLinear(qkv, None, layout, chunk_in=d, chunk_out=width)
        self.o_proj = PackedLinear(w["o_proj"].T / s, None, layout)  # (H hd, C), writes h / s
        g2 = w["post_attention_layernorm"] / self.rsqrt_mlp.out_scale
        self.gate = PackedLinear(g2[:, None] * w["gate_proj"].T, None, layout)  # (C, I)
        self.up = PackedLinear(g2[:, None] * w["up_proj"].T, None, layout)  # (C, I)
        self.down = PackedLinear(w["down_proj"].T / s, None, layout)  # (I, C), writes h / s

    # -- plaintext slot vectors ---------------------------------------------------------------------------
    def _slots(self, block: np.ndarray) -> np.ndarray:
        """(F, T) -> slot vector (the block repeated over all slots)."""
        lay = self.layout
        return np.tile(block.reshape(-1), lay.slots // lay.period)

    def _token_rows(self, rows: np.ndarray) -> np.ndarray:
        """(T,) per-token values on every feature of the chunk."""
        return self._slots(np.tile(rows[None, :], (self.layout.chunk, 1)))

    def rope_slots(self, seg: Segments) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """cos, the sin multiplying q[f + hd/2] and the one multiplying q[f - hd/2], per (feature, token)."""
        cfg, lay = self.cfg, self.layout
        hd, half = cfg.head_dim, cfg.head_dim // 2
        pos = seg.positions(lay.tokens)  # (T,)
        inv_freq = cfg.rope_theta ** (-np.arange(half) * 2.0 / hd)  # (hd/2,)
        angle = np.outer(np.concatenate([inv_freq, inv_freq]), pos)  # (hd, T)
        cos, sin = np.zeros((lay.chunk, lay.tokens)), np.zeros((lay.chunk, lay.tokens))
        width = cfg.n_head * hd
        cos[:width] = np.tile(np.cos(angle), (cfg.n_head, 1))
        sin[:width] = np.tile(np.sin(angle), (cfg.n_head, 1))
        first = np.zeros(lay.chunk, dtype=bool)
        first[:width] = (np.arange(width) % hd) < half
        second = np.zeros(lay.chunk, dtype=bool)
        second[:width] = ~first[:width]
        # rotate_half: x_rot[i] = x[i] cos - x[i + hd/2] sin (first half), x[i] cos + x[i - hd/2] sin (second)
        return self._slots(cos), self._slots(-sin * first[:, None]), self._slots(sin * second[:, None])

    def score_keep(self, seg: Segments, delta: int) -> np.ndarray:
        """1 at (first feature of each head, t) where t may attend to t - delta."""
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        heads = np.arange(self.cfg.n_head) * self.cfg.head_dim
        block[heads] = seg.key_visible(self.layout.tokens, delta)
        return self._slots(block)

    def _row_features(self, offsets) -> np.ndarray:
        """Features head * hd + j for every head and every j in ``offsets``."""
        return (np.arange(self.cfg.n_head)[:, None] * self.cfg.head_dim + np.asarray(offsets)[None, :]).reshape(-1)

    def compact_mask(self, seg: Segments) -> np.ndarray:
        """Compact score layout: slot (head * hd + delta, t) holds the score of query t for key t - delta;
        1 where that key is visible."""
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        for delta in range(self.layout.tokens):
            block[self._row_features([delta])] = seg.key_visible(self.layout.tokens, delta)
        return self._slots(block)

    def compact_padding(self, seg: Segments) -> np.ndarray:
        """1 on every slot that is not part of a softmax row with a visible key."""
        block = np.ones((self.layout.chunk, self.layout.tokens))
        rows = self._row_features(range(self.layout.tokens))
        block[np.ix_(rows, np.arange(seg.total))] = 0.0
        return self._slots(block)

    def _head_first(self) -> np.ndarray:
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        block[self._row_features([0])] = 1.0
        return self._slots(block)

    def _delta_features(self, delta: int) -> np.ndarray:
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        block[self._row_features([delta])] = 1.0
        return self._slots(block)

    def token_padding(self, seg: Segments) -> np.ndarray:
        """1 on every feature of the padding tokens: where a mean square would be 0."""
        return self._token_rows((np.arange(self.layout.tokens) >= seg.total).astype(np.float64))

    # -- pieces --------------------------------------------------------------------------------------
    def _feature_sum(self, ev, ct, count: int):
        """Sum over ``count`` consecutive features (a power of two), left in every feature; no level."""
        k = 1
        while k < count:
            ct = ev.add(ct, ev.rotate(ct, self.layout.feature_step(k)))
            k *= 2
        return ct

    def _broadcast_heads(self, ev, ct):
        """Copy each head's first feature onto its head_dim features; no level."""
        k = 1
        while k < self.cfg.head_dim:
            ct = ev.add(ct, ev.rotate(ct, self.layout.feature_step(-k)))
            k *= 2
        return ct

    def _shift_features(self, ev, ct, k: int):
        """rot_f(ct, k) as a product of power-of-two feature rotations (keys the block already has)."""
        sign, k = (1 if k > 0 else -1), abs(k)
        bit = 0
        while k:
            if k & 1:
                ct = ev.rotate(ct, self.layout.feature_step(sign * (1 << bit)))
            k >>= 1
            bit += 1
        return ct

    def _row_sum(self, ev, cts):
        """Each softmax row's sum on every slot of the row (compact layout): a forward sum over T features
        leaves it on the head's first feature, the mask keeps only that one (1 level), a backward
        broadcast copies it onto the row's T features."""
        (y,) = cts
        t = self.layout.tokens
        acc = self._feature_sum(ev, y, t)
        acc = ev.rescale(ev.mul_values(acc, self._head_first()))  # L -> L-1
        k = 1
        while k < t:
            acc = ev.add(acc, ev.rotate(acc, self.layout.feature_step(-k)))
            k *= 2
        return acc

    def rms_norm(self, ev, h, rsqrt, refresh, seg: Segments, stage: str, levels_after: int):
        """c * h / sqrt(mean(h^2) + eps), at ``levels_after`` + 1 levels; gamma and 1/c live in the next layer."""
        d = self.cfg.n_embd
        (h,) = refresh.ensure_levels_all([h], 3, f"{stage} input")
        sq = ev.rescale(ev.mul(h, h))  # L -> L-1
        ms = ev.rescale(ev.mul_const(self._feature_sum(ev, sq, self.layout.chunk), 1.0 / d))  # -> L-2
        # padding tokens have mean square 0: lift them into the domain (the server needs no key for that)
        ms = ev.add(ms, ev.encoder.encode(self.eps + self.token_padding(seg) * rsqrt.domain[0], level=ms.level,
                                          scale=ms.scale))
        (ms,) = refresh.refresh([ms], stage, domain=rsqrt.domain)  # round trip; the domain is checked here
        r = rsqrt.evaluate(ev, ms, refresh=refresh)  # top -> top - depth
        h, r = refresh.ensure_levels_all([h, r], levels_after + 1, f"{stage} product")
        lvl = levels_after + 1
        return ev.rescale(ev.mul(ev.drop_level(h, lvl), ev.drop_level(r, lvl)))  # -> levels_after

    def rope(self, ev, x, tables):
        """x cos + rot_f(x, hd/2) sin- + rot_f(x, -hd/2) sin+ per head: L -> L-1."""
        cos, sin_first, sin_second = tables
        half = self.cfg.head_dim // 2
        lay = self.layout
        enc = lambda v: ev.encoder.encode(v, level=x.level, scale=ev.ctx.params.moduli_q[x.level])  # noqa: E731
        acc = ev.mul(x, enc(cos))
        acc = ev.add(acc, ev.mul(ev.rotate(x, lay.feature_step(half)), enc(sin_first)))
        acc = ev.add(acc, ev.mul(ev.rotate(x, lay.feature_step(-half)), enc(sin_second)))
        return ev.rescale(acc)

    # -- the block -------------------------------------------------------------------------------------
    def attention(self, ev, h, refresh, seg: Segments, clock: StageClock):
        """o_proj(attn(rms_norm(h))) / s at h's scale (level 1)."""
        n = self.layout.tokens
        with clock.stage("input_layernorm"):
            xn = self.rms_norm(ev, h, self.rsqrt_attn, refresh, seg, "input_layernorm", levels_after=4)
        with clock.stage("q k v"):
            q, k, v = self.qkv.apply(ev, [xn])  # 4 -> 3
        with clock.stage("rope"):
            tables = self.rope_slots(seg)
            q, k = self.rope(ev, q, tables), self.rope(ev, k, tables)  # 3 -> 2
        with clock.stage("scores"):
            compact = None
            for delta in range(min(n, seg.total)):
                k_delta = ev.rotate(k, -delta) if delta else k  # slot (f, t) <- key token t - delta
                prod = ev.rescale(ev.mul(q, k_delta))  # 2 -> 1
                head = self._feature_sum(ev, prod, self.cfg.head_dim)  # q.k on each head's first feature
                kept = ev.rescale(ev.mul_values(head, self.score_keep(seg, delta)))  # 1 -> 0
                kept = self._shift_features(ev, kept, -delta)  # to feature head * hd + delta
                compact = kept if compact is None else ev.add(compact, kept)
        with clock.stage("softmax"):
            mask = self.compact_mask(seg)
            (compact,) = refresh.refresh([compact], "softmax", domain=self.softmax.domain, valid=[mask > 0],
                                         fill=0.0)  # one ciphertext holds every score: one round trip -> top
            (probs,) = self.softmax.evaluate(ev, [compact], [mask], refresh=refresh, row_sum=self._row_sum,
                                             row_sum_levels=1, pad=self.compact_padding(seg))
        with clock.stage("values"):
            (probs,) = refresh.ensure_levels_all([probs], 4, "attention values")
            out = None
            for delta in range(min(n, seg.total)):
                p = ev.rescale(ev.mul_values(probs, self._delta_features(delta)))  # -> head * hd + delta only
                p = self._broadcast_heads(ev, self._shift_features(ev, p, delta))  # over the head's features
                v_delta = ev.rotate(v, -delta) if delta else v
                term = ev.mul(ev.drop_level(p, 3), ev.drop_level(v_delta, 3))
                out = term if out is None else ev.add(out, term)
            out = ev.rescale(out)  # 3 -> 2
        with clock.stage("o_proj"):
            (a,) = self.o_proj.apply(ev, [out], target_scale=h.scale)  # 2 -> 1
        return a

    def mlp(self, ev, h, refresh, seg: Segments, clock: StageClock):
        """down(silu(gate(x)) * up(x)) / s, x = rms_norm(h), at h's scale (level 0: |h / s| <= 64 fits q0)."""
        with clock.stage("post_attention_layernorm"):
            xn = self.rms_norm(ev, h, self.rsqrt_mlp, refresh, seg, "post_attention_layernorm", levels_after=3)
        with clock.stage("gate up"):
            gate = self.gate.apply(ev, [xn])  # 3 -> 2, one ciphertext per 1024 features of 1536
            up = self.up.apply(ev, [xn])  # 3 -> 2
        with clock.stage("silu"):
            valid = self._token_rows((np.arange(self.layout.tokens) < seg.total).astype(np.float64)) > 0
            gate = refresh.refresh(gate, "silu", domain=self.silu.domain, valid=[valid] * len(gate), fill=0.0)
            act = [self.silu.evaluate(ev, g, refresh=refresh) for g in gate]  # top -> top - depth
        with clock.stage("down"):
            act = refresh.ensure_levels_all(act, 2, "silu * up")
            prod = [ev.rescale(ev.mul(ev.drop_level(a, 2), ev.drop_level(u, 2))) for a, u in zip(act, up)]  # 2 -> 1
            (m,) = self.down.apply(ev, prod, target_scale=h.scale)  # 1 -> 0
        return m

    def forward(self, ev, h, refresh, seg: Segments, clock: StageClock):
        """h + attn(norm(h)), then + mlp(norm(.)); the stream goes back to the key holder between halves."""
        h = ev.add(h, self.attention(ev, h, refresh, seg, clock))
        (h,) = refresh.refresh([h], "residual")  # round trip: the attention half leaves level 1
        h = ev.add(h, self.mlp(ev, h, refresh, seg, clock))
        (h,) = refresh.refresh([h], "block output")
        return h
