"""GPT-2 transformer blocks on encrypted hidden states.

Roles are kept apart:

* the ``Client`` holds the secret key: it tokenizes, embeds and encrypts the
  hidden states, decrypts the final ones, and applies ln_f and the tied LM
  head in the clear (public weights);
* the ``Server`` holds only the public, relinearization and Galois keys and
  the public weights, and runs the blocks on ciphertexts.

Without bootstrapping, the modulus chain runs out within a block. The server
then sends ciphertexts back to the client, which decrypts and re-encrypts
them at the top level: a ``ClientRefresh``, named for what it is (it is not
bootstrapping, it needs the key holder online) and counted in round trips and
bytes. Refreshes sit right before each nonlinear stage, where the client also
checks the values against the calibrated approximation domain (a value out of
range raises DomainError instead of turning into silent garbage). A
bootstrapping implementation can replace ``ClientRefresh`` behind the same
``refresh(cts, stage, domain)`` call.

Stages of one block (levels in brackets, with the polynomial depths of
``fhectl.circuits.approximations``):

  ln_1     mean and variance by rotate-and-sum over features [2];
           refresh; 1/sqrt [poly]; normalise [1]  (gamma, beta folded into c_attn)
  c_attn   q, k, v (one chunk each) [1]           (1/sqrt(hs) folded into W_q)
  scores   for each key offset delta: q * rot_tokens(k, -delta) [1], sum over
           each head's features, keep the head's first feature and the causal
           positions [1], broadcast over the head's features
  softmax  refresh; exp(s - c) [poly]; remove masked slots; sum over delta;
           refresh; 1/sum [poly]; p_delta = e_delta / sum [1]
  values   sum_delta p_delta * rot_tokens(v, -delta) [1]; c_proj [1]; residual
  ln_2     as ln_1                                (folded into c_fc)
  mlp      c_fc [1]; refresh; GELU [poly]; c_proj [1]; residual
"""

from __future__ import annotations

import math
import time

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.evaluator import Evaluator
from fhectl.errors import LevelError
from fhectl.circuits import approximations as approx
from fhectl.circuits.refresh import Client, ClientRefresh, Stats  # noqa: F401  (re-exported)
from fhectl.gpt2.calibration import BlockDomains
from fhectl.gpt2.config import GPT2Config
from fhectl.circuits.linear import PackedLinear
from fhectl.circuits.packing import Layout
from fhectl.gpt2.weights import GPT2Weights


# Levels layer_norm spends before its refresh: clearing padding, squaring, scaling the variance.
LAYER_NORM_LEVELS = 3

# Error budget of every polynomial approximation (absolute for GELU and exp, relative for 1/x and
# 1/sqrt(x)): 2^-16 sits below the ~2^-20 CKKS noise of a 50-bit scale times the values' growth through a
# block, so the approximations, not the noise, bound a block's precision at about 16 bits at worst.
APPROX_TOL = 2.0**-16


class EncryptedBlock:
    """One GPT-2 block on the server: folded weights, packed diagonals, approximations."""

    def __init__(self, weights: GPT2Weights, index: int, layout: Layout, domains: BlockDomains):
        cfg: GPT2Config = weights.config
        self.cfg = cfg
        self.index = index
        self.layout = layout
        self.domains = domains
        bw = weights.block(index)
        c, hs = cfg.n_embd, cfg.head_size
        f = layout.chunk
        if c > f:
            raise ValueError(f"model width {c} exceeds one chunk of {f} features")
        g1, b1 = bw["ln_1.weight"], bw["ln_1.bias"]
        g2, b2 = bw["ln_2.weight"], bw["ln_2.bias"]
        # LayerNorm's gamma and beta fold into the next linear layer: (x^ g + b) W = x^ (diag(g) W) + b W.
        w_attn = g1[:, None] * bw["attn.c_attn.weight"]  # (C, 3C) Conv1D: y = x W + b
        b_attn = b1 @ bw["attn.c_attn.weight"] + bw["attn.c_attn.bias"]
        scale = 1.0 / math.sqrt(hs)  # the attention scale folds into W_q, b_q
        w_attn = w_attn.copy()
        b_attn = b_attn.copy()
        w_attn[:, :c] *= scale
        b_attn[:c] *= scale
        # q, k and v each get their own chunk (padded to F features), so heads stay aligned.
        self.c_attn = PackedLinear(w_attn, b_attn, layout, chunk_in=c, chunk_out=c)
        self.attn_proj = PackedLinear(bw["attn.c_proj.weight"], bw["attn.c_proj.bias"], layout)
        w_fc = g2[:, None] * bw["mlp.c_fc.weight"]
        b_fc = b2 @ bw["mlp.c_fc.weight"] + bw["mlp.c_fc.bias"]
        self.c_fc = PackedLinear(w_fc, b_fc, layout)
        self.mlp_proj = PackedLinear(bw["mlp.c_proj.weight"], bw["mlp.c_proj.bias"], layout)
        eps = cfg.layer_norm_epsilon
        self.inv_sqrt_1 = approx.inverse_sqrt(domains.ln1_var[0] + eps, domains.ln1_var[1] + eps, tol=APPROX_TOL)
        self.inv_sqrt_2 = approx.inverse_sqrt(domains.ln2_var[0] + eps, domains.ln2_var[1] + eps, tol=APPROX_TOL)
        lo, hi = domains.scores
        self.exp = approx.exp(lo - domains.exp_shift, hi - domains.exp_shift, tol=APPROX_TOL)
        self.inverse = approx.inverse(*domains.softmax_sum, tol=APPROX_TOL)
        self.gelu = approx.gelu(*domains.gelu, tol=APPROX_TOL)

    # -- depth plan --------------------------------------------------------------------
    def level_plan(self) -> dict[str, int]:
        """Levels each stage consumes, from the circuits' own depths (refreshes restore the chain between
        segments; ``check_levels`` checks each segment fits)."""
        ln = lambda f: LAYER_NORM_LEVELS + f.depth() + 1  # noqa: E731  (mean/var, 1/sqrt, normalise)
        return {"ln_1": ln(self.inv_sqrt_1), "c_attn": 1, "scores": 2, "softmax exp": self.exp.depth(),
                "softmax 1/sum": self.inverse.depth() + 1, "attn values + c_proj": 2, "ln_2": ln(self.inv_sqrt_2),
                "c_fc": 1, "gelu": self.gelu.depth(), "mlp c_proj": 1}

    def check_levels(self, max_level: int, profile: str) -> None:
        """Each piece between two refreshes must fit in a fresh ciphertext's ``max_level`` levels."""
        pieces = {"ln_1 mean/variance": LAYER_NORM_LEVELS,
                  "ln_1 1/sqrt + normalise": self.inv_sqrt_1.depth() + 1,
                  "ln_2 1/sqrt + normalise": self.inv_sqrt_2.depth() + 1,
                  "q k scores": 2, "softmax exp": self.exp.depth(), "softmax 1/sum + product": self.inverse.depth() + 1,
                  "gelu": self.gelu.depth()}
        for piece, need in pieces.items():
            if need > max_level:
                raise LevelError(f"block {self.index}: {piece} needs {need} levels but the profile {profile} has "
                                 f"{max_level}; use a deeper profile (e.g. gpt2-n16-128)")

    # -- rotation keys -----------------------------------------------------------------
    def rotation_steps(self, n_tokens: int) -> set[int]:
        lay = self.layout
        steps = set()
        for lin in (self.c_attn, self.attn_proj, self.c_fc, self.mlp_proj):
            steps |= lin.rotation_steps()
        f = lay.chunk
        steps |= {lay.feature_step(1 << i) for i in range(int(math.log2(f)))}  # feature sums
        hs = self.cfg.head_size
        steps |= {lay.feature_step(-(1 << i)) for i in range(int(math.log2(hs)))}  # head broadcast
        steps |= {(-d) % lay.slots for d in range(1, n_tokens)}  # token offsets
        return {s for s in steps if s % lay.slots}

    # -- masks ---------------------------------------------------------------------------
    def _feature_mask(self, features: np.ndarray) -> np.ndarray:
        """Slot vector: 1 on every token of the given features of a chunk."""
        m = np.zeros(self.layout.chunk)
        m[features] = 1.0
        return self.layout.per_feature(m)[0]

    def _score_mask(self, delta: int, n_tokens: int) -> np.ndarray:
        """1 at (first feature of each head, token t) for t - delta >= 0 and t < n_tokens."""
        lay = self.layout
        heads = np.arange(self.cfg.n_head) * self.cfg.head_size
        block = np.zeros((lay.chunk, lay.tokens))
        block[np.ix_(heads, np.arange(delta, n_tokens))] = 1.0
        return np.tile(block.reshape(-1), lay.slots // lay.period)

    def _valid_tokens(self, n_tokens: int, features: int) -> np.ndarray:
        lay = self.layout
        block = np.zeros((lay.chunk, lay.tokens), dtype=bool)
        block[:features, :n_tokens] = True
        return np.tile(block.reshape(-1), lay.slots // lay.period)

    # -- pieces ---------------------------------------------------------------------------
    def _feature_sum(self, ev: Evaluator, ct: Ciphertext, count: int) -> Ciphertext:
        """Sum over ``count`` consecutive features (a power of two), left in every feature of the chunk."""
        acc = ct
        k = 1
        while k < count:
            acc = ev.add(acc, ev.rotate(acc, self.layout.feature_step(k)))
            k *= 2
        return acc

    def layer_norm(self, ev: Evaluator, x: Ciphertext, inv_sqrt, refresh: ClientRefresh, stage: str,
                   var_domain, n_tokens: int) -> Ciphertext:
        """(x - mean) / sqrt(var + eps); gamma and beta are folded into the next layer."""
        c = self.cfg.n_embd
        total = self._feature_sum(ev, x, self.layout.chunk)  # padding features are 0
        # d = C x - sum: exact (integer multiply), C times the centred value
        d = ev.sub(ev.mul_int(x, c), total)
        d = ev.rescale(ev.mul_values(d, self._feature_mask(np.arange(c)) / c))  # x - mean, padding cleared
        sq = ev.rescale(ev.mul(d, d))
        var = ev.rescale(ev.mul(self._feature_sum(ev, sq, self.layout.chunk), 1.0 / c))
        var = ev.add(var, self.cfg.layer_norm_epsilon)
        var, d = refresh.refresh([var, d], stage, domain=(var_domain[0], var_domain[1]),
                                 valid=[self._valid_tokens(n_tokens, c), None])
        # (refreshing d too gives the normalisation and c_attn their levels back)
        r = inv_sqrt.evaluate(ev, var)
        r, d = refresh.ensure_levels_all([r, ev.drop_level(d, r.level)], 2, f"{stage} (levels for the product)")
        return ev.rescale(ev.mul(d, r))

    def attention(self, ev: Evaluator, h: Ciphertext, refresh: ClientRefresh, stats: Stats, n_tokens: int) -> Ciphertext:
        """attn(ln_1(h)), at exactly h's scale so the residual addition is exact."""
        t0 = time.perf_counter()
        xn = self.layer_norm(ev, h, self.inv_sqrt_1, refresh, "ln_1 1/sqrt", self.domains.ln1_var, n_tokens)
        stats.add_time("ln_1", time.perf_counter() - t0)
        t0 = time.perf_counter()
        (xn,) = refresh.ensure_levels_all([xn], 1, "c_attn input")
        q, k, v = self.c_attn.apply(ev, [xn])
        q, k, v = refresh.ensure_levels_all([q, k, v], 2, "scores (levels for q k)")
        stats.add_time("c_attn", time.perf_counter() - t0)
        t0 = time.perf_counter()
        hs = self.cfg.head_size
        scores = []
        for delta in range(n_tokens):
            k_shift = ev.rotate(k, -delta) if delta else k  # slot (f, t) <- key token t - delta
            prod = ev.rescale(ev.mul(q, k_shift))
            head_sum = self._feature_sum(ev, prod, hs)  # valid at each head's first feature
            kept = ev.rescale(ev.mul_values(head_sum, self._score_mask(delta, n_tokens)))
            # broadcast each head's score over its features
            acc = kept
            step = 1
            while step < hs:
                acc = ev.add(acc, ev.rotate(acc, self.layout.feature_step(-step)))
                step *= 2
            scores.append(acc)
        stats.add_time("scores", time.perf_counter() - t0)
        t0 = time.perf_counter()
        shift = self.domains.exp_shift
        valid = [self._attention_valid(delta, n_tokens) for delta in range(n_tokens)]
        scores = refresh.refresh(scores, "softmax exp", domain=self.domains.scores, valid=valid, fill=0.0)
        exps = []
        for delta, s in enumerate(scores):
            e = self.exp.evaluate(ev, ev.sub(s, shift))
            # masked slots hold exp(0 - c); subtract it so they add nothing to the sum
            outside = ~valid[delta]
            e = ev.sub(e, ev.encoder.encode(outside * self.exp.eval_plain(-shift), level=e.level, scale=e.scale))
            exps.append(e)
        total = exps[0]
        for e in exps[1:]:
            total = ev.add(total, e)
        stats.add_time("softmax exp", time.perf_counter() - t0)
        t0 = time.perf_counter()
        (total,) = refresh.refresh([total], "softmax 1/sum", domain=self.domains.softmax_sum, valid=[valid[0]],
                                   fill=1.0)
        inv = self.inverse.evaluate(ev, total)
        exps = refresh.ensure_levels_all(exps + [inv], 2, "softmax p = e / sum")
        inv = exps.pop()
        stats.add_time("softmax 1/sum", time.perf_counter() - t0)
        t0 = time.perf_counter()
        out = None
        for delta, e in enumerate(exps):
            lvl = min(e.level, inv.level)
            p = ev.rescale(ev.mul(ev.drop_level(e, lvl), ev.drop_level(inv, lvl)))
            v_shift = ev.rotate(v, -delta) if delta else v
            lvl = min(p.level, v_shift.level)
            term = ev.mul(ev.drop_level(p, lvl), ev.drop_level(v_shift, lvl))
            out = term if out is None else ev.add(ev.drop_level(out, term.level), term)
        out = ev.rescale(out)
        (out,) = refresh.ensure_levels_all([out], 1, "attn c_proj input")
        (proj,) = self.attn_proj.apply(ev, [out], target_scale=h.scale)
        stats.add_time("attn values + c_proj", time.perf_counter() - t0)
        return proj

    def _attention_valid(self, delta: int, n_tokens: int) -> np.ndarray:
        """Slots where the score for key offset delta is real: every feature of a head, t in [delta, n)."""
        lay = self.layout
        block = np.zeros((lay.chunk, lay.tokens), dtype=bool)
        block[: self.cfg.n_embd, delta:n_tokens] = True
        return np.tile(block.reshape(-1), lay.slots // lay.period)

    def mlp(self, ev: Evaluator, h: Ciphertext, refresh: ClientRefresh, stats: Stats, n_tokens: int) -> Ciphertext:
        """mlp(ln_2(h)), at exactly h's scale."""
        t0 = time.perf_counter()
        xn = self.layer_norm(ev, h, self.inv_sqrt_2, refresh, "ln_2 1/sqrt", self.domains.ln2_var, n_tokens)
        stats.add_time("ln_2", time.perf_counter() - t0)
        t0 = time.perf_counter()
        (xn,) = refresh.ensure_levels_all([xn], 1, "c_fc input")
        fc = self.c_fc.apply(ev, [xn])
        stats.add_time("c_fc", time.perf_counter() - t0)
        t0 = time.perf_counter()
        valid = self._valid_tokens(n_tokens, self.layout.chunk)
        fc = refresh.refresh(fc, "gelu", domain=self.domains.gelu, valid=[valid] * len(fc), fill=0.0)
        act = [self.gelu.evaluate(ev, x) for x in fc]
        act = refresh.ensure_levels_all(act, 1, "mlp c_proj input")
        stats.add_time("gelu", time.perf_counter() - t0)
        t0 = time.perf_counter()
        (out,) = self.mlp_proj.apply(ev, act, target_scale=h.scale)
        stats.add_time("mlp c_proj", time.perf_counter() - t0)
        return out

    def forward(self, ev: Evaluator, h: Ciphertext, refresh: ClientRefresh, stats: Stats, n_tokens: int) -> Ciphertext:
        """h + attn(ln_1(h)), then + mlp(ln_2(.)): one block on the residual stream."""
        a = self.attention(ev, h, refresh, stats, n_tokens)
        h = ev.add(h, a)
        h = refresh.ensure_levels(h, LAYER_NORM_LEVELS, "residual (levels for ln_2)")
        m = self.mlp(ev, h, refresh, stats, n_tokens)
        h = ev.add(h, m)
        return refresh.ensure_levels(h, LAYER_NORM_LEVELS, "block output (levels for the next ln_1)")
