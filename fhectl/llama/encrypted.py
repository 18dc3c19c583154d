"""Llama blocks (SmolLM2) on encrypted hidden states: the server's half of the homomorphic proxy.

The plaintext twin is ``fhectl.llama.model``; this file follows it stage by stage and annotates, where the
plaintext model annotates shapes, the level a line leaves (``# L -> L-1``: one rescale). Timing wraps the
stages (``clock.stage``), it does not interleave with the maths, and the depth plan, the refresh points and the
rotation keys all come from running this same code on the level simulator (``plan``), not from tables.

Packing (``fhectl.circuits.packing``): tokens x features, feature-major, F = 1024 features per chunk (576
used), T tokens. Several prompts share one ciphertext: they are segments of the token axis, each with its own
positions (RoPE) and its own causal mask, so attention never crosses a segment. What GPT-2 shares with this
block (segments, heads on the feature axis, compact scores, softmax rows, values) is in
``fhectl.circuits.transformer``.

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

Levels: every linear layer runs at level 1, on 2 limbs instead of 21: encoding its ~2,000 diagonals (an FFT,
an RNS split and an NTT per limb each) dominates a block, and the split and the NTTs scale with the limbs.
A client refresh (``fhectl.circuits.refresh``) then re-encrypts the outputs at the level the next stage
needs: 9 round trips per block in ``./dev demo`` (more when the deep circuits need a refresh inside), each
of 1-5 ciphertexts. With bootstrapping instead of client refresh this trade would go the other way (a
bootstrap costs far more than the encodings it saves).

Bootstrapping (``spare_level=True``, ``fhectl.circuits.bootstrap_refresh``): the refresh must scale each
message well below q0 / Delta before the sine, which takes a level, so every refresh point keeps one: the
norms leave 2 levels for q k v, gate and up (which then end at level 1), q k v come back at level 4 so the
compact scores end at level 1, and the two residual sums, which end at level 0 whatever happens (o_proj and
down run at level 1 on the attention and SwiGLU outputs), are computed shrunk: (h + a) / 2^b with a's
scale label and one constant product on h (``fhectl.circuits.transformer.residual_block_shrunk``, shared with
GPT-2, as are the norm's last product and the shrunk SiLU output). Zero round trips; the plan (bootstraps and
levels per stage) comes from the simulator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fhectl.circuits.linear import PackedLinear
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import level0_interval
from fhectl.circuits.softmax import softmax_circuit
from fhectl.circuits.transformer import (PackedHeads, Segments, StageClock, activation_for_bootstrapping, norm_product,
                                         residual_block, residual_block_shrunk)
from fhectl.circuits.wide import inverse_sqrt_wide, silu_wide
from fhectl.errors import InputError
from fhectl.llama.calibration import BlockDomains
from fhectl.llama.config import LlamaConfig
from fhectl.llama.weights import LlamaWeights

# Relative tolerance of the RMSNorm 1/sqrt circuit: 2^-12, the target, well under bf16 rounding.
RSQRT_REL_TOL = 2.0**-12


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
    def build(index: int, domains: BlockDomains, max_keys: int, stage_levels: int | None = None) -> "BlockCircuits":
        """``stage_levels``: the levels a refresh gives (bootstrapping); the norms' 1/sqrt, the softmax and SiLU
        then keep every stage within it (the softmax's row sums take one more)."""
        return BlockCircuits(
            index, domains,
            inverse_sqrt_wide(*domains.ms_attn_scaled, rel_tol=RSQRT_REL_TOL,
                              out_scale=domains.rsqrt_out_scale(domains.ms_attn_scaled),
                              max_stage_levels=stage_levels).named("input_layernorm 1/sqrt"),
            inverse_sqrt_wide(*domains.ms_mlp_scaled, rel_tol=RSQRT_REL_TOL,
                              out_scale=domains.rsqrt_out_scale(domains.ms_mlp_scaled),
                              max_stage_levels=stage_levels).named("post_attention_layernorm 1/sqrt"),
            softmax_circuit(domains.score_bound, max_keys=max_keys,
                            max_stage_levels=None if stage_levels is None else stage_levels - 1),
            silu_wide(domains.gate_bound, max_stage_levels=stage_levels))


class EncryptedLlamaBlock:
    """One Llama block on the server: folded weights, packed diagonals, circuits for its calibrated ranges."""

    def __init__(self, weights: LlamaWeights, index: int, layout: Layout, domains: BlockDomains,
                 spare_level: bool = False, stage_levels: int | None = None):
        cfg: LlamaConfig = weights.config
        self.cfg, self.index, self.layout, self.domains = cfg, index, layout, domains
        # With bootstrapping, every refresh input keeps one level (or is shrunk by its scale label), so the
        # refresh can scale it below q0 / Delta before the sine (fhectl.circuits.bootstrap_refresh)
        self.spare = 1 if spare_level else 0
        self.heads = PackedHeads(layout, cfg.n_head, cfg.head_dim)
        d, hd, f = cfg.n_embd, cfg.head_dim, layout.chunk
        if cfg.n_head * hd > f or d > f:
            raise InputError(f"model width {max(d, cfg.n_head * hd)} exceeds one chunk of {f} features")
        if layout.tokens > hd:
            raise InputError(f"{layout.tokens} token slots exceed the head width {hd}: softmax rows must fit a head")
        s = domains.stream_scale
        self.eps = cfg.rms_norm_eps / s**2  # mean((h / s)^2) + eps / s^2 = (mean(h^2) + eps) / s^2
        self.circuits = BlockCircuits.build(index, domains, layout.tokens, stage_levels)
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
        slots = self.heads.slots
        return slots(cos), slots(-sin * first[:, None]), slots(sin * second[:, None])

    # -- pieces --------------------------------------------------------------------------------------
    def rms_norm(self, ev, h, rsqrt, refresh, seg: Segments, stage: str, levels_after: int):
        """c * h / sqrt(mean(h^2) + eps), at ``levels_after`` + 1 levels; gamma and 1/c live in the next layer."""
        d = self.cfg.n_embd
        (h,) = refresh.ensure_levels_all([h], 3, f"{stage} input")
        sq = ev.rescale(ev.mul(h, h))  # L -> L-1
        ms = ev.rescale(ev.mul_const(self.heads.feature_sum(ev, sq, self.layout.chunk), 1.0 / d))  # -> L-2
        # padding tokens have mean square 0: lift them into the middle of the domain (the server needs no key
        # for that; at its lower end, CKKS noise could push them across the edge once s is large)
        inside = math.sqrt(rsqrt.domain[0] * rsqrt.domain[1])
        ms = ev.add(ms, ev.encoder.encode(self.eps + self.heads.token_padding(seg) * inside, level=ms.level,
                                          scale=ms.scale))
        (ms,) = refresh.refresh([ms], stage, domain=rsqrt.domain)  # round trip; the domain is checked here
        r = rsqrt.evaluate(ev, ms, refresh=refresh)  # top -> top - depth
        # h * r -> levels_after; with bootstrapping h, if short, is refreshed within the level-0 interval
        return norm_product(ev, h, r, refresh, stage, levels_after, bool(self.spare), level0_interval(ev.ctx.params))

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
    def attention(self, ev, h, refresh, seg: Segments, clock: StageClock, out_scale: float | None = None):
        """o_proj(attn(rms_norm(h))) / s at h's scale or ``out_scale`` (level 0: |h / s| <= 64 fits q0)."""
        sp = self.spare  # 0 with client refresh, 1 with bootstrapping: the levels left at a refresh
        with clock.stage("input_layernorm"):
            xn = self.rms_norm(ev, h, self.rsqrt_attn, refresh, seg, "input_layernorm", levels_after=1 + sp)
        with clock.stage("q k v"):
            q, k, v = self.qkv.apply(ev, [xn])  # 1 + sp -> sp: diagonals encoded on 2 (+ sp) limbs, not 21
            # refreshed at the level the rest of the segment needs (rope 1, scores 2, + sp for the softmax)
            q, k, v = refresh.refresh([q, k, v], "q k v", level=3 + sp,
                                      domains=[level0_interval(ev.ctx.params)] * 3)  # came from level sp
            v = ev.drop_level(v, 2)
        with clock.stage("rope"):
            tables = self.rope_slots(seg)
            q, k = self.rope(ev, q, tables), self.rope(ev, k, tables)  # 3 + sp -> 2 + sp
        out = self.heads.attention(ev, q, k, v, self.softmax, refresh, seg, clock)  # scores at sp; out at 1
        with clock.stage("o_proj"):
            (a,) = self.o_proj.apply(ev, [out], target_scale=h.scale if out_scale is None else out_scale)  # 1 -> 0
        return a

    def mlp(self, ev, h, refresh, seg: Segments, clock: StageClock, out_scale: float | None = None):
        """down(silu(gate(x)) * up(x)) / s, x = rms_norm(h), at h's scale or ``out_scale`` (level 0: |h / s| <= 64
        fits q0)."""
        sp = self.spare
        with clock.stage("post_attention_layernorm"):
            xn = self.rms_norm(ev, h, self.rsqrt_mlp, refresh, seg, "post_attention_layernorm", levels_after=1 + sp)
        with clock.stage("gate up"):
            gate = self.gate.apply(ev, [xn])  # 1 + sp -> sp, one ciphertext per 1024 features of 1536
            up = self.up.apply(ev, [xn])  # 1 + sp -> sp
        with clock.stage("silu"):
            valid = self.heads.token_valid(seg)
            both = refresh.refresh(gate + up, "silu", valid=[valid] * (len(gate) + len(up)), fill=0.0,
                                   domains=[self.silu.domain] * len(gate) + [level0_interval(ev.ctx.params)] * len(up))
            gate, up = both[: len(gate)], [ev.drop_level(u, 2) for u in both[len(gate):]]
            if not self.spare:
                act = [self.silu.evaluate(ev, g, refresh=refresh) for g in gate]  # top -> top - depth
            else:  # the last stage may end at level 0: computed shrunk, at least 2 levels for the product
                act = activation_for_bootstrapping(ev, self.silu, gate, refresh, 2, "silu * up")
        with clock.stage("down"):
            act = refresh.ensure_levels_all(act, 2, "silu * up")
            prod = [ev.rescale(ev.mul(ev.drop_level(a, 2), ev.drop_level(u, 2))) for a, u in zip(act, up)]  # 2 -> 1
            (m,) = self.down.apply(ev, prod, target_scale=h.scale if out_scale is None else out_scale)  # 1 -> 0
        return m

    def forward(self, ev, h, refresh, seg: Segments, clock: StageClock):
        """h + attn(norm(h)), then + mlp(norm(.)); the stream is refreshed between the halves and after."""
        if not self.spare:  # client refresh: the stream goes back to the key holder between halves
            return residual_block(ev, h, self.attention, self.mlp, refresh, seg, clock)
        return residual_block_shrunk(ev, h, self.attention, self.mlp, refresh, seg, clock)
