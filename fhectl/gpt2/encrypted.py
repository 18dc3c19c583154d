"""GPT-2 blocks on encrypted hidden states: the server's half of the homomorphic proxy.

The plaintext twin is ``fhectl.gpt2.model``; this file follows it stage by stage and annotates, where the
plaintext model annotates shapes, the level a line leaves (``# L -> L-1``: one rescale). Timing wraps the
stages (``clock.stage``), it does not interleave with the maths, and the depth plan, the refresh points and
the rotation keys all come from running this same code on the level simulator
(``fhectl.circuits.transformer.plan_block``), not from tables. What GPT-2 shares with the Llama block
(prompts packed as segments of the token axis, heads on the feature axis, compact attention scores, the
softmax rows, the values) is in ``fhectl.circuits.transformer``.

Roles: the ``Client`` (``fhectl.circuits.refresh``) holds the secret key, embeds, encrypts and decrypts; the
server holds only public evaluation keys and runs the blocks. Without bootstrapping the modulus chain runs out
inside a block, so a ``ClientRefresh`` sends ciphertexts back to the key holder to be decrypted and
re-encrypted (counted in round trips and bytes). Refreshes before the nonlinear circuits check the values
against the circuit's domain (``fhectl.circuits.polynomial.check_domain``: the one domain check; a value
outside, or NaN, is a DomainError, never silent garbage); refreshes of ciphertexts that left level 0 check
that nothing wrapped modulo q0 (``level0_interval``).

The circuits are built for trained-model ranges (issue 9):

* **Residual stream scale.** Trained GPT-2 carries "massive activations" (Sun et al., "Massive Activations in
  Large Language Models", 2024): a few residual features of magnitude 1,000-3,000 on the first token. CKKS has
  q0 / Delta = 2^10 of integer headroom at level 0, so the server holds h / s with a public power of two s per
  block (calibrated so |h / s| <= 64). LayerNorm is scale invariant, so only eps (-> eps / s^2) and the two
  projections that write the stream (attn.c_proj, mlp.c_proj: weights and biases divided by s) change.
* **LayerNorm**: mean subtraction is exact (an integer product by C minus the feature sum), then the variance
  and c / sqrt(var + eps) by ``fhectl.circuits.wide.inverse_sqrt_wide`` (composite range reduction, 9+
  decades); gamma / c and beta fold into the next linear layer: (x^ g + b) W = x^ (diag(g) W) + b W.
* **Softmax** by normalise-and-square (Cho et al., CCS 2024; ``fhectl.circuits.softmax``): no per-layer exp
  shift, each row normalised by its own sums, on the compact layout (all scores in one ciphertext: tokens
  <= head size, 64 for GPT-2).
* **GELU** (GPT-2's tanh form) accurate on [-B, B] by ``fhectl.circuits.wide.gelu_wide``.

Levels: every linear layer runs at level 1 (its diagonals encoded on 2 limbs), and a refresh re-encrypts its
outputs at the level the next stage needs, as in ``fhectl.llama.encrypted``.

Bootstrapping (``spare_level=True``, ``fhectl.circuits.bootstrap_refresh``), as for Llama: the refresh must
scale each message well below q0 / Delta before the sine, which takes a level, so every refresh point keeps
one: the LayerNorms leave 2 levels for c_attn and c_fc (which then end at level 1), q k v come back at level 3
so the compact scores end at level 1, the softmax's stages and GELU's fit the levels a refresh gives (the
softmax's row sums take one more), GELU's output, which may end at level 0, is computed shrunk by its scale
label (``fhectl.circuits.transformer.activation_for_bootstrapping``), and the two residual sums, which end at
level 0 whatever happens (both c_proj run at level 1), are computed shrunk: (h + a) / 2^b with a's scale label
and one constant product on h (``fhectl.circuits.transformer.residual_block_shrunk``). Zero round trips; the
plan (bootstraps and levels per stage) comes from the level simulator, and the domain checks travel with the
outputs as a homomorphic range indicator (``fhectl.circuits.range_indicator``).
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
from fhectl.circuits.wide import gelu_wide, inverse_sqrt_wide
from fhectl.errors import InputError
from fhectl.gpt2.calibration import BlockDomains
from fhectl.gpt2.config import GPT2Config
from fhectl.gpt2.weights import GPT2Weights

# Relative tolerance of the LayerNorm 1/sqrt circuit: 2^-12, the target, well under bf16 rounding.
RSQRT_REL_TOL = 2.0**-12


@dataclass(frozen=True)
class BlockCircuits:
    """The nonlinear circuits of one block, built from its calibrated domains for rows of up to ``max_keys``
    keys. The encrypted block evaluates them; the plaintext mirror (``fhectl.gpt2.mirror``) runs their
    ``eval_plain``."""

    index: int
    domains: BlockDomains
    rsqrt_1: object  # c / sqrt(var + eps) of the scaled stream, ln_1
    rsqrt_2: object  # the same for ln_2
    softmax: object
    gelu: object

    @staticmethod
    def build(index: int, domains: BlockDomains, max_keys: int, stage_levels: int | None = None) -> "BlockCircuits":
        """``stage_levels``: the levels a refresh gives (bootstrapping); the norms' 1/sqrt, the softmax and GELU
        then keep every stage within it (the softmax's row sums take one more)."""
        v1, v2 = domains.ln1_var_scaled, domains.ln2_var_scaled
        return BlockCircuits(
            index, domains,
            inverse_sqrt_wide(*v1, rel_tol=RSQRT_REL_TOL, out_scale=domains.rsqrt_out_scale(v1),
                              max_stage_levels=stage_levels).named("ln_1 1/sqrt"),
            inverse_sqrt_wide(*v2, rel_tol=RSQRT_REL_TOL, out_scale=domains.rsqrt_out_scale(v2),
                              max_stage_levels=stage_levels).named("ln_2 1/sqrt"),
            softmax_circuit(domains.score_bound, max_keys=max_keys,
                            max_stage_levels=None if stage_levels is None else stage_levels - 1),
            gelu_wide(domains.gelu_bound, max_stage_levels=stage_levels))


class EncryptedBlock:
    """One GPT-2 block on the server: folded weights, packed diagonals, circuits for its calibrated ranges."""

    def __init__(self, weights: GPT2Weights, index: int, layout: Layout, domains: BlockDomains,
                 spare_level: bool = False, stage_levels: int | None = None):
        cfg: GPT2Config = weights.config
        self.cfg, self.index, self.layout, self.domains = cfg, index, layout, domains
        # With bootstrapping, every refresh input keeps one level (or is shrunk by its scale label), so the
        # refresh can scale it below q0 / Delta before the sine (fhectl.circuits.bootstrap_refresh)
        self.spare = 1 if spare_level else 0
        c, hs = cfg.n_embd, cfg.head_size
        if c > layout.chunk:
            raise InputError(f"model width {c} exceeds one chunk of {layout.chunk} features")
        if layout.tokens > hs:
            raise InputError(f"{layout.tokens} token slots exceed the head size {hs}: softmax rows must fit a head")
        self.heads = PackedHeads(layout, cfg.n_head, hs)
        s = domains.stream_scale
        self.eps = cfg.layer_norm_epsilon / s**2  # var(h / s) + eps / s^2 = (var(h) + eps) / s^2
        self.circuits = BlockCircuits.build(index, domains, layout.tokens, stage_levels)
        cc = self.circuits
        self.rsqrt_1, self.rsqrt_2, self.softmax, self.gelu = cc.rsqrt_1, cc.rsqrt_2, cc.softmax, cc.gelu

        bw = weights.block(index)
        # LayerNorm leaves (x - mean) c / sqrt(var + eps): gamma / c and beta fold into the next linear layer
        g1 = bw["ln_1.weight"] / self.rsqrt_1.out_scale
        w_attn = g1[:, None] * bw["attn.c_attn.weight"]  # (C, 3C) Conv1D: y = x W + b
        b_attn = bw["ln_1.bias"] @ bw["attn.c_attn.weight"] + bw["attn.c_attn.bias"]  # (3C,)
        w_attn[:, :c] /= math.sqrt(hs)  # the attention scale folds into W_q, b_q
        b_attn[:c] /= math.sqrt(hs)
        # q, k and v each get their own chunk (padded to F features), so heads stay aligned
        self.c_attn = PackedLinear(w_attn, b_attn, layout, chunk_in=c, chunk_out=c)
        self.attn_proj = PackedLinear(bw["attn.c_proj.weight"] / s, bw["attn.c_proj.bias"] / s, layout)  # writes h / s
        g2 = bw["ln_2.weight"] / self.rsqrt_2.out_scale
        self.c_fc = PackedLinear(g2[:, None] * bw["mlp.c_fc.weight"],
                                 bw["ln_2.bias"] @ bw["mlp.c_fc.weight"] + bw["mlp.c_fc.bias"], layout)  # (C, 4C)
        self.mlp_proj = PackedLinear(bw["mlp.c_proj.weight"] / s, bw["mlp.c_proj.bias"] / s, layout)  # writes h / s

    # -- plaintext slot vectors ---------------------------------------------------------------------------
    def centre_masks(self, seg: Segments) -> tuple[np.ndarray, np.ndarray]:
        """1 / C and 1 / C^(3/2) on the model's features of the tokens in use, 0 elsewhere (padding)."""
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        c = self.cfg.n_embd
        block[:c, :seg.total] = 1.0
        keep = self.heads.slots(block)
        return keep / c, keep / c**1.5

    # -- pieces --------------------------------------------------------------------------------------
    def layer_norm(self, ev, h, rsqrt, refresh, seg: Segments, stage: str, levels_after: int):
        """c (h - mean) / sqrt(var + eps), at ``levels_after`` levels; gamma / c and beta live in the next layer."""
        c = self.cfg.n_embd
        # var ends 2 levels down, with the spare level its bootstrapping refresh needs
        (h,) = refresh.ensure_levels_all([h], 2 + self.spare, f"{stage} input")
        d = ev.sub(ev.mul_int(h, c), self.heads.feature_sum(ev, h, self.layout.chunk))  # C (h - mean): exact
        to_centred, to_scaled = self.centre_masks(seg)
        xc = ev.rescale(ev.mul_values(d, to_centred))  # L -> L-1: h - mean, padding cleared
        xv = ev.rescale(ev.mul_values(d, to_scaled))  # L -> L-1: (h - mean) / sqrt(C)
        var = self.heads.feature_sum(ev, ev.rescale(ev.mul(xv, xv)), self.layout.chunk)  # -> L-2: var(h)
        # padding tokens have variance 0: lift them into the middle of the domain (at its lower end, eps / s^2
        # above it, CKKS noise of ~2^-30 would cross the edge once s is large)
        inside = math.sqrt(rsqrt.domain[0] * rsqrt.domain[1])
        var = ev.add(var, ev.encoder.encode(self.eps + self.heads.token_padding(seg) * inside,
                                            level=var.level, scale=var.scale))
        (var,) = refresh.refresh([var], stage, domain=rsqrt.domain)  # round trip; var + eps checked here
        r = rsqrt.evaluate(ev, var, refresh=refresh)  # top -> top - depth
        # xc * r -> levels_after; with bootstrapping xc, if short, is refreshed within twice the level-0
        # interval (h and its mean each lie within it)
        lo, hi = level0_interval(ev.ctx.params)
        return norm_product(ev, xc, r, refresh, stage, levels_after, bool(self.spare), (2 * lo, 2 * hi))

    # -- the block -------------------------------------------------------------------------------------
    def attention(self, ev, h, refresh, seg: Segments, clock: StageClock, out_scale: float | None = None):
        """attn.c_proj(attn(ln_1(h))) / s at h's scale or ``out_scale`` (level 0: |h / s| <= 64 fits q0)."""
        sp = self.spare  # 0 with client refresh, 1 with bootstrapping: the levels left at a refresh
        with clock.stage("ln_1"):
            xn = self.layer_norm(ev, h, self.rsqrt_1, refresh, seg, "ln_1", levels_after=1 + sp)  # -> 1 + sp
        with clock.stage("c_attn"):
            q, k, v = self.c_attn.apply(ev, [xn])  # 1 + sp -> sp, plus the bias
            # refreshed at the level the scores need (2, + sp for the softmax's refresh); v needs 2
            q, k, v = refresh.refresh([q, k, v], "c_attn", level=2 + sp,
                                      domains=[level0_interval(ev.ctx.params)] * 3)  # came from level sp
            v = ev.drop_level(v, 2)
        out = self.heads.attention(ev, q, k, v, self.softmax, refresh, seg, clock)  # scores at sp; out at 1
        with clock.stage("attn c_proj"):
            (a,) = self.attn_proj.apply(ev, [out], target_scale=h.scale if out_scale is None else out_scale)  # 1 -> 0
        return a

    def mlp(self, ev, h, refresh, seg: Segments, clock: StageClock, out_scale: float | None = None):
        """mlp.c_proj(gelu(c_fc(ln_2(h)))) / s at h's scale or ``out_scale`` (level 0)."""
        sp = self.spare
        with clock.stage("ln_2"):
            xn = self.layer_norm(ev, h, self.rsqrt_2, refresh, seg, "ln_2", levels_after=1 + sp)  # -> 1 + sp
        with clock.stage("c_fc"):
            fc = self.c_fc.apply(ev, [xn])  # 1 + sp -> sp, one ciphertext per F features of 4C
        with clock.stage("gelu"):
            valid = self.heads.token_valid(seg)
            fc = refresh.refresh(fc, "gelu", domain=self.gelu.domain, valid=[valid] * len(fc),
                                 fill=0.0)  # round trip -> top; |x| <= B checked on the tokens in use
            if not sp:
                act = [self.gelu.evaluate(ev, x, refresh=refresh) for x in fc]  # top -> top - depth
            else:  # the last stage may end at level 0: computed shrunk, at least 1 level for c_proj
                act = activation_for_bootstrapping(ev, self.gelu, fc, refresh, 1, "mlp c_proj input")
        with clock.stage("mlp c_proj"):
            act = [ev.drop_level(a, 1) for a in refresh.ensure_levels_all(act, 1, "mlp c_proj input")]
            (m,) = self.mlp_proj.apply(ev, act, target_scale=h.scale if out_scale is None else out_scale)  # 1 -> 0
        return m

    def forward(self, ev, h, refresh, seg: Segments, clock: StageClock):
        """h + attn(ln_1(h)), then + mlp(ln_2(.)); the stream is refreshed between the halves and after."""
        if not self.spare:  # client refresh: the stream goes back to the key holder between halves
            return residual_block(ev, h, self.attention, self.mlp, refresh, seg, clock)
        return residual_block_shrunk(ev, h, self.attention, self.mlp, refresh, seg, clock)
