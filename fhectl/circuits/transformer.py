"""The model-independent half of an encrypted transformer block: packed prompts, heads on the feature axis,
compact attention scores, the residual stream's public scale, and the depth plan from the level simulator.

GPT-2 (``fhectl.gpt2.encrypted``) and Llama (``fhectl.llama.encrypted``) differ in their norms, position
encodings and MLPs; what this module holds they share unchanged.

Packing (``fhectl.circuits.packing``): tokens x features, feature-major, F features per chunk, T token slots.
Several prompts share one ciphertext as segments of the token axis (``Segments``), each with its own
positions and its own causal mask, so attention never crosses a segment.

Heads lie side by side on the feature axis: head j holds features [j hd, (j + 1) hd) (``PackedHeads``).
Attention scores use the COMPACT layout: the score of query t for key t - delta sits at feature
j hd + delta of token t, so all scores of a block share one ciphertext (a head needs hd >= T features) and
the softmax (normalise-and-square, Cho et al., CCS 2024: ``fhectl.circuits.softmax``) runs its squarings,
row sums and refreshes on that one ciphertext instead of T.

Levels are annotated per line (``# L -> L-1``: one rescale), as in the encrypted blocks.

With bootstrapping (``fhectl.circuits.bootstrap_refresh``) a refresh must scale its input below q0 / Delta
first, which takes a level or a shrunk scale label; the pieces both blocks need for that are here: the norm's
last product (``norm_product``), a wide activation whose output may end at level 0
(``activation_for_bootstrapping``) and the residual sums (``residual_block_shrunk``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fhectl.ckks.params import Parameters
from fhectl.circuits.domains import RSQRT_MAX_OUTPUT, STREAM_LIMIT
from fhectl.circuits.levels import SimEvaluator
from fhectl.circuits.packing import Layout
from fhectl.circuits.refresh import level0_interval


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
        """(T,) position of each token slot: its index inside its own prompt (0 on padding)."""
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
    """Seconds per stage; the encrypted code says ``with clock.stage(name):`` around each stage. ``seconds``
    may be a dict shared with a report (e.g. ``refresh.Stats.stage_seconds``)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0


@dataclass(frozen=True)
class PackedHeads:
    """``n_head`` heads of ``head_dim`` features side by side in one chunk of ``layout``: the plaintext masks
    of the compact score layout and the rotate-and-sum pieces of attention."""

    layout: Layout
    n_head: int
    head_dim: int

    # -- plaintext slot vectors -----------------------------------------------------------------------
    def slots(self, block: np.ndarray) -> np.ndarray:
        """(F, T) -> slot vector (the block repeated over all slots)."""
        lay = self.layout
        return np.tile(block.reshape(-1), lay.slots // lay.period)

    def token_rows(self, rows: np.ndarray) -> np.ndarray:
        """(T,) per-token values on every feature of the chunk."""
        return self.slots(np.tile(rows[None, :], (self.layout.chunk, 1)))

    def token_padding(self, seg: Segments) -> np.ndarray:
        """1 on every feature of the padding tokens (where a mean square or a variance would be 0)."""
        return self.token_rows((np.arange(self.layout.tokens) >= seg.total).astype(np.float64))

    def token_valid(self, seg: Segments) -> np.ndarray:
        """bool, True on every feature of the tokens in use."""
        return self.token_rows((np.arange(self.layout.tokens) < seg.total).astype(np.float64)) > 0

    def score_keep(self, seg: Segments, delta: int) -> np.ndarray:
        """1 at (first feature of each head, t) where t may attend to t - delta."""
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        heads = np.arange(self.n_head) * self.head_dim
        block[heads] = seg.key_visible(self.layout.tokens, delta)
        return self.slots(block)

    def row_features(self, offsets) -> np.ndarray:
        """Features head * hd + j for every head and every j in ``offsets``."""
        return (np.arange(self.n_head)[:, None] * self.head_dim + np.asarray(offsets)[None, :]).reshape(-1)

    def compact_mask(self, seg: Segments) -> np.ndarray:
        """Compact score layout: slot (head * hd + delta, t) holds the score of query t for key t - delta;
        1 where that key is visible."""
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        for delta in range(self.layout.tokens):
            block[self.row_features([delta])] = seg.key_visible(self.layout.tokens, delta)
        return self.slots(block)

    def compact_padding(self, seg: Segments) -> np.ndarray:
        """1 on every slot that is not part of a softmax row with a visible key."""
        block = np.ones((self.layout.chunk, self.layout.tokens))
        rows = self.row_features(range(self.layout.tokens))
        block[np.ix_(rows, np.arange(seg.total))] = 0.0
        return self.slots(block)

    def head_first(self) -> np.ndarray:
        """1 on each head's first feature (every token)."""
        return self.delta_features(0)

    def delta_features(self, delta: int) -> np.ndarray:
        """1 on feature head * hd + delta of every head (every token)."""
        block = np.zeros((self.layout.chunk, self.layout.tokens))
        block[self.row_features([delta])] = 1.0
        return self.slots(block)

    # -- rotate-and-sum pieces (no level unless said) -------------------------------------------------
    def feature_sum(self, ev, ct, count: int):
        """Sum over ``count`` consecutive features (a power of two), left in every feature; no level."""
        k = 1
        while k < count:
            ct = ev.add(ct, ev.rotate(ct, self.layout.feature_step(k)))
            k *= 2
        return ct

    def broadcast_heads(self, ev, ct):
        """Copy each head's first feature onto its head_dim features; no level."""
        k = 1
        while k < self.head_dim:
            ct = ev.add(ct, ev.rotate(ct, self.layout.feature_step(-k)))
            k *= 2
        return ct

    def shift_features(self, ev, ct, k: int):
        """rot_f(ct, k) as a product of power-of-two feature rotations (keys the block already has)."""
        sign, k = (1 if k > 0 else -1), abs(k)
        bit = 0
        while k:
            if k & 1:
                ct = ev.rotate(ct, self.layout.feature_step(sign * (1 << bit)))
            k >>= 1
            bit += 1
        return ct

    def row_sum(self, ev, cts):
        """Each softmax row's sum on every slot of the row (compact layout): a forward sum over T features
        leaves it on the head's first feature, the mask keeps only that one (1 level), a backward
        broadcast copies it onto the row's T features."""
        (y,) = cts
        t = self.layout.tokens
        acc = self.feature_sum(ev, y, t)
        acc = ev.rescale(ev.mul_values(acc, self.head_first()))  # L -> L-1
        k = 1
        while k < t:
            acc = ev.add(acc, ev.rotate(acc, self.layout.feature_step(-k)))
            k *= 2
        return acc

    # -- attention on the compact layout ------------------------------------------------------------
    def compact_scores(self, ev, q, k, seg: Segments):
        """All q.k scores of the block in one ciphertext (compact layout): q and k at level 2 -> 0.

        (The attention scale 1/sqrt(hd) is folded into the query weights by the caller.)"""
        compact = None
        for delta in range(min(self.layout.tokens, seg.total)):
            k_delta = ev.rotate(k, -delta) if delta else k  # slot (f, t) <- key token t - delta
            prod = ev.rescale(ev.mul(q, k_delta))  # 2 -> 1
            head = self.feature_sum(ev, prod, self.head_dim)  # q.k on each head's first feature
            kept = ev.rescale(ev.mul_values(head, self.score_keep(seg, delta)))  # 1 -> 0
            kept = self.shift_features(ev, kept, -delta)  # to feature head * hd + delta
            compact = kept if compact is None else ev.add(compact, kept)
        return compact

    def softmax_rows(self, ev, compact, softmax, refresh, seg: Segments):
        """Softmax of every row of the compact scores: one round trip (the domain |s| <= bound is checked on
        the visible scores there), then the circuit; the probabilities stay in the compact layout."""
        mask = self.compact_mask(seg)
        (compact,) = refresh.refresh([compact], "softmax", domain=softmax.domain, valid=[mask > 0],
                                     fill=0.0)  # one ciphertext holds every score: one round trip -> top
        (probs,) = softmax.evaluate(ev, [compact], [mask], refresh=refresh, row_sum=self.row_sum,
                                    row_sum_levels=1, pad=self.compact_padding(seg))
        return probs

    def attention(self, ev, q, k, v, softmax, refresh, seg: Segments, clock: StageClock):
        """Every head's softmax(q k^T) v, one clock stage per step: q, k and v at level 2, the result at 1."""
        with clock.stage("scores"):
            compact = self.compact_scores(ev, q, k, seg)  # 2 -> 0, every score in one ciphertext
        with clock.stage("softmax"):
            probs = self.softmax_rows(ev, compact, softmax, refresh, seg)  # round trip -> top - depth
        with clock.stage("values"):
            return self.attend(ev, probs, v, refresh, seg)  # probs >= 3, v 2 -> 1

    def attend(self, ev, probs, v, refresh, seg: Segments):
        """sum_delta p_delta * rot_tokens(v, -delta) per head: v at level 2, the result at level 1."""
        (probs,) = refresh.ensure_levels_all([probs], 3, "attention values")
        out = None
        for delta in range(min(self.layout.tokens, seg.total)):
            p = ev.rescale(ev.mul_values(probs, self.delta_features(delta)))  # -> head * hd + delta only
            p = self.broadcast_heads(ev, self.shift_features(ev, p, delta))  # over the head's features
            v_delta = ev.rotate(v, -delta) if delta else v
            term = ev.mul(ev.drop_level(p, 2), v_delta)
            out = term if out is None else ev.add(out, term)
        return ev.rescale(out)  # 2 -> 1


# -- pieces both blocks end their norms and activations with ------------------------------------------


def norm_product(ev, x, r, refresh, stage: str, levels_after: int, spare: bool, x_domain: tuple[float, float]):
    """x * r, the last product of a norm (x the stream or its centred copy, r = c / sqrt(.) from the wide
    circuit), left at ``levels_after``. With client refresh both go back together when either is short (one
    more ciphertext costs only bytes); with bootstrapping (``spare``) only what is short, each with its bound
    (x: ``x_domain``; r <= RSQRT_MAX_OUTPUT by the choice of c), one bootstrap each."""
    lvl = levels_after + 1
    if spare and min(x.level, r.level) < lvl:
        if x.level < lvl:
            (x,) = refresh.refresh([x], f"{stage} product", domains=[x_domain])
        if r.level < lvl:
            (r,) = refresh.refresh([r], f"{stage} product", domains=[(-RSQRT_MAX_OUTPUT, RSQRT_MAX_OUTPUT)])
    else:
        x, r = refresh.ensure_levels_all([x, r], lvl, f"{stage} product")
    return ev.rescale(ev.mul(ev.drop_level(x, lvl), ev.drop_level(r, lvl)))  # -> levels_after


def activation_for_bootstrapping(ev, act, xs, refresh, levels: int, stage: str) -> list:
    """act(x) for each x (a ``wide.SaturatedProduct``: SiLU, GELU), each left with at least ``levels`` levels
    for what follows. Its last stage may take every level a bootstrapping refresh gives and end at level 0,
    where |act(x)| <= bound (the domain's end) cannot be scaled down before the sine: so the output lands on
    the scale Delta / 2^b and is relabelled Delta (the message is act / 2^b, exact and free), is refreshed
    with that shrunk interval (the range indicator checks it), and mul_int(2^b) restores it (no level).
    Several go to the refresh together, shrunk one bit more, so that it can pair them (``BootstrapRefresh.pair``:
    two in one bootstrapping, each at one bit more of error)."""
    bound = act.domain[1]
    b = refresh.model.shift_for(2 * bound if refresh.pair and len(xs) > 1 else bound)
    out = []
    for x in xs:
        a = act.evaluate(ev, x, refresh=refresh, target_scale=x.scale / 2**b)
        a.scale = x.scale  # relabel: the message is act / 2^b
        out.append(a)
    short = [i for i, a in enumerate(out) if a.level < levels]
    if short:
        fresh = refresh.refresh([out[i] for i in short], stage, domains=[(-bound / 2**b, bound / 2**b)] * len(short))
        for i, a in zip(short, fresh):
            out[i] = a
    return [ev.mul_int(a, 2**b) if b else a for a in out]


# -- the residual stream's public scale ---------------------------------------------------------------


def rescale_stream(ev, h, old: float, new: float):
    """h / old -> h / new for powers of two: an exact integer product when the scale shrinks, else a
    public constant (one level; the stream arrives fresh from the block-output refresh)."""
    if old == new:
        return h
    if old > new:
        return ev.mul_int(h, int(round(old / new)))
    return ev.rescale(ev.mul_const(h, old / new))


def residual_block(ev, h, attention, mlp, refresh, seg: Segments, clock: StageClock):
    """h + attention(h), then + mlp(.): each half leaves the stream at level 0, so it goes back to the key
    holder between the halves and after the block, checked against the level-0 bound (a value that wrapped
    modulo q0 is an error, never garbage)."""
    at_level0 = [level0_interval(ev.ctx.params)]
    h = ev.add(h, attention(ev, h, refresh, seg, clock))  # level 0
    (h,) = refresh.refresh([h], "residual", domains=at_level0)  # round trip -> top
    h = ev.add(h, mlp(ev, h, refresh, seg, clock))  # level 0
    (h,) = refresh.refresh([h], "block output", domains=at_level0)  # round trip -> top
    return h


def residual_block_shrunk(ev, h, attention, mlp, refresh, seg: Segments, clock: StageClock):
    """The residual pattern for bootstrapping. Each half ends at level 0 (its last linear layer runs at level
    1), so its sum cannot be scaled down before bootstrapping; instead it is computed shrunk, (h + a) / 2^b
    with |h + a| / 2^b <= the bootstrapping bound: h by a constant product (it has levels), a by its scale
    label (the half's last linear layer lands on h.scale / 2^b, its ``out_scale``, and is relabelled h.scale:
    exact and free). The refresh checks the shrunk interval and mul_int(2^b) restores the stream (no level).
    The interval is +-4 STREAM_LIMIT (calibration makes |h / s| <= STREAM_LIMIT on its prompts; the factor 4
    is the margin for unseen ones, and the range indicator checks it), at most the level-0 interval."""
    lo, hi = level0_interval(ev.ctx.params)
    hi = min(hi, 4.0 * STREAM_LIMIT)
    lo = -hi
    b = refresh.model.shift_for(hi)
    shrunk = [(lo / 2**b, hi / 2**b)]
    for half, stage in ((attention, "residual"), (mlp, "block output")):
        a = half(ev, h, refresh, seg, clock, out_scale=h.scale / 2**b)  # level 0, a at label h.scale / 2^b
        a.scale = h.scale  # relabel: the message is a / 2^b
        with clock.stage(stage):
            hs = ev.rescale(ev.mul_const(h, 2.0**-b))  # h / 2^b, one level of the refreshed stream
            (h,) = refresh.refresh([ev.add(hs, a)], stage, domains=shrunk)  # 1 bootstrap: level 0 -> top
            h = ev.mul_int(h, 2**b)  # exact, no level
    return h


# -- the depth plan from the level simulator ----------------------------------------------------------


class TransformerBlock(Protocol):
    """What ``plan_block`` runs: an encrypted block over a layout."""

    layout: Layout

    def forward(self, ev, h, refresh, seg: Segments, clock: StageClock): ...


class SimRefresh:
    """The refresh interface on the simulator: records where round trips happen, returns fresh records."""

    def __init__(self, ev: SimEvaluator):
        self.ev = ev
        self.by_stage: dict[str, int] = {}

    def begin_block(self, index: int) -> None:
        pass

    def refresh(self, cts, stage, domain=None, valid=None, fill=None, level=None, domains=None):
        self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
        return [self.ev.fresh(level) for _ in cts]

    def ensure_levels_all(self, cts, levels, stage):
        return cts if all(c.level >= levels for c in cts) else self.refresh(cts, stage)


def plan_block(block: TransformerBlock, params: Parameters) -> dict:
    """One block on the level simulator, for the worst-case batch (one prompt filling every token slot):
    refresh round trips per stage, rotation steps (the Galois keys to make), counters. LevelError if a
    circuit cannot fit a fresh ciphertext of this profile."""
    ev = SimEvaluator(params)
    refresh = SimRefresh(ev)
    seg = Segments((block.layout.tokens,))
    block.forward(ev, ev.fresh(), refresh, seg, StageClock())
    return {"refreshes": dict(refresh.by_stage), "round_trips": sum(refresh.by_stage.values()),
            "rotation_steps": sorted(s % params.slots for s in ev.rotation_steps if s % params.slots),
            "counters": dict(ev.counters)}


__all__ = ["PackedHeads", "Segments", "SimRefresh", "StageClock", "TransformerBlock", "activation_for_bootstrapping",
           "norm_product", "plan_block", "rescale_stream", "residual_block", "residual_block_shrunk"]
