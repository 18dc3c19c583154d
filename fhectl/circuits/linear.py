"""Ciphertext x plaintext-matrix products on packed token batches: diagonals and baby-step giant-step.

Slot layout (``PackedLayout``): T tokens (a power of two) and F features per ciphertext (a power of two),
feature-major, repeated until the N/2 slots are full:

    slot s = f * T + t   (0 <= t < T, 0 <= f < F),  period P = F * T dividing N/2

        slot   0   1  ..  T-1 | T  .. 2T-1 | ... | (F-1)T .. FT-1 | FT ...
        holds  f=0, t=0..T-1  | f=1        | ... | f=F-1          | the same again (N/2 / P copies)

A rotation of the whole slot vector is cyclic over N/2 slots, but because the vector is periodic with
period P, rotating by k*T is exactly a cyclic shift of the features by k inside the chunk, the same for
every token: slot (f, t) receives (f + k mod F, t). That is the rotation the diagonal method needs, with
no masks and no second rotation for the wrap-around (a token-major layout t * F + f would pull the next
token's features in at the block edge and need 2F - 1 diagonals with masks instead of F). So one
ciphertext runs the same F x F matrix on T tokens at once; with T = 1 it is a vector replicated across
the slots. A vector wider than F is a list of ciphertexts (chunks) of ``per_chunk`` <= F real features
each (per_chunk < F keeps, e.g., GPT-2's q, k and v of 768 features in separate ciphertexts, and the
padding features are kept at zero by the products).

y = x W (+ bias) per token, W of shape (d_in, d_out) (GPT-2's Conv1D orientation). Block (a, o) of W, the
rows of input chunk a and the columns of output chunk o zero-padded to F x F, acts by its diagonals

    (x B)_j = sum_k d_k[j] x_{(j + k) mod F},   d_k[j] = B[(j + k) mod F, j]     [Halevi, Shoup, CRYPTO 2014]

and with k = g n1 + b (baby steps b < n1, giant steps g) [Halevi, Shoup, CRYPTO 2018, "bsgs"]:

    y_o = sum_g rot( sum_a sum_b rot(d^{a,o}_{g n1 + b}, -g n1 T) * rot(x_a, b T),  g n1 T )

The n1 - 1 baby rotations of each input share one decomposition (``rotate_hoisted``) and serve every
output chunk; each output chunk costs one giant rotation per giant step, taken before the rescale, on the
sum over all input chunks. Diagonals are pre-rotated plaintexts encoded at the input's level with scale
q_l, so the single rescale returns the output to the input's scale exactly (or to ``target_scale``): one
level in all. Only diagonals that the shape can make nonzero are used (a block of r x c real entries has
r + c - 1 of them), and n1 is the power of two that minimises the rotations; ``rotation_steps_needed``
lists the Galois keys this needs, from the layout and the shape alone.

Costs at GPT-2 small sizes (N = 2^16, T = 32 tokens, F = 1024, all 1024 diagonals of each block used;
from ``counts``), rotations = key switches:

    c_attn      768 x 2304  1 -> 3 chunks (q, k, v of 768)  n1 = 64   63 hoisted + 3 x 15 giant = 108
    attn c_proj 768 x 768   1 -> 1                          n1 = 32   31 hoisted + 31 giant     =  62
    c_fc        768 x 3072  1 -> 3 chunks of 1024           n1 = 64   63 hoisted + 3 x 15 giant = 108
    mlp c_proj  3072 x 768  3 -> 1                          n1 = 16   3 x 15 hoisted + 63 giant = 108

each with 1024 plaintext products per (input, output) chunk pair and one level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fhectl.errors import InputError, LevelError


def next_power_of_two(x: int) -> int:
    return 1 if x <= 1 else 1 << (int(x) - 1).bit_length()


def _is_power_of_two(x: int) -> bool:
    return x >= 1 and x & (x - 1) == 0


@dataclass(frozen=True)
class PackedLayout:
    """T tokens x F features per ciphertext, feature-major (slot f * T + t), repeated to fill N/2 slots."""

    slots: int  # N/2
    tokens: int  # T, a power of two
    chunk: int  # F, a power of two

    def __post_init__(self):
        if not (_is_power_of_two(self.slots) and _is_power_of_two(self.tokens) and _is_power_of_two(self.chunk)):
            raise InputError(f"layout: slots {self.slots}, tokens {self.tokens} and chunk {self.chunk} "
                             "must be powers of two")
        if self.tokens * self.chunk > self.slots:
            raise InputError(f"layout: {self.tokens} tokens x {self.chunk} features exceed {self.slots} slots; "
                             "use fewer tokens, a smaller chunk or a larger ring")

    @staticmethod
    def for_shape(slots: int, n_tokens: int, width: int) -> "PackedLayout":
        """T = n_tokens rounded up to a power of two; F = width rounded up, as far as the slots allow."""
        tokens = next_power_of_two(n_tokens)
        if tokens > slots:
            raise InputError(f"{n_tokens} tokens do not fit in {slots} slots")
        return PackedLayout(slots, tokens, min(next_power_of_two(width), slots // tokens))

    @property
    def period(self) -> int:
        return self.tokens * self.chunk

    @property
    def copies(self) -> int:
        return self.slots // self.period

    def chunks(self, width: int, per_chunk: int | None = None) -> int:
        return math.ceil(width / self._per_chunk(per_chunk))

    def _per_chunk(self, per_chunk: int | None) -> int:
        c = self.chunk if per_chunk is None else int(per_chunk)
        if not 1 <= c <= self.chunk:
            raise InputError(f"per_chunk = {c} must be in 1..{self.chunk} (the layout's chunk)")
        return c

    def slot(self, token: int, feature: int) -> int:
        """First slot holding (token, feature of the chunk)."""
        return feature * self.tokens + token

    def feature_step(self, k: int) -> int:
        """Rotation step that shifts the features of every token by k (left) inside the chunk."""
        return (k * self.tokens) % self.slots

    def pack(self, x: np.ndarray, per_chunk: int | None = None) -> list[np.ndarray]:
        """(n_tokens, width) -> one slot vector (N/2,) per chunk of ``per_chunk`` features."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise InputError(f"expected a (tokens, features) array, got shape {x.shape}")
        n_tok, width = x.shape
        if n_tok > self.tokens:
            raise InputError(f"{n_tok} tokens exceed the layout's {self.tokens}")
        c = self._per_chunk(per_chunk)
        out = []
        for a in range(self.chunks(width, c)):
            block = np.zeros((self.chunk, self.tokens), dtype=x.dtype)  # (F, T)
            part = x[:, a * c : min((a + 1) * c, width)].T  # (features, n_tok)
            block[: part.shape[0], :n_tok] = part
            out.append(np.tile(block.reshape(-1), self.copies))
        return out

    def unpack(self, vectors, n_tokens: int, width: int, per_chunk: int | None = None) -> np.ndarray:
        """Inverse of ``pack`` (reads the first period of each vector): (n_tokens, width)."""
        c = self._per_chunk(per_chunk)
        parts = [np.asarray(v)[: self.period].reshape(self.chunk, self.tokens)[:c, :n_tokens].T for v in vectors]
        return np.concatenate(parts, axis=1)[:, :width]

    def expand_features(self, values: np.ndarray) -> np.ndarray:
        """A vector over the chunk's features (F,) as slots: every token of feature f gets values[f]."""
        return np.tile(np.repeat(np.asarray(values), self.tokens), self.copies)


# -- which diagonals, which rotations ----------------------------------------------------------------------


def block_offsets(chunk: int, rows: int, cols: int) -> list[int]:
    """Diagonals k of an F x F block whose real part is rows x cols that can be nonzero: k = i - j mod F."""
    if rows <= 0 or cols <= 0:
        return []
    if rows + cols - 1 >= chunk:
        return list(range(chunk))
    return sorted({s % chunk for s in range(-(cols - 1), rows)})


def _blocks(layout: PackedLayout, shape: tuple[int, int], in_chunk: int | None, out_chunk: int | None):
    d_in, d_out = shape
    ci, co = layout._per_chunk(in_chunk), layout._per_chunk(out_chunk)
    n_in, n_out = layout.chunks(d_in, ci), layout.chunks(d_out, co)
    offsets = {}
    for a in range(n_in):
        for o in range(n_out):
            rows, cols = min(ci, d_in - a * ci), min(co, d_out - o * co)
            offsets[(a, o)] = block_offsets(layout.chunk, rows, cols)
    return n_in, n_out, offsets


def _bsgs_sets(offsets: dict, n_in: int, n_out: int, n1: int):
    baby = [set() for _ in range(n_in)]
    giant = [set() for _ in range(n_out)]
    for (a, o), ks in offsets.items():
        for k in ks:
            baby[a].add(k % n1)
            giant[o].add(k // n1)
    return baby, giant


def _rotations(baby, giant) -> int:
    return sum(len(s - {0}) for s in baby) + sum(len(s - {0}) for s in giant)


def choose_baby_step(layout: PackedLayout, shape: tuple[int, int], in_chunk: int | None = None,
                     out_chunk: int | None = None) -> int:
    """The power of two n1 that minimises rotations (then distinct keys, then n1) for this shape."""
    n_in, n_out, offsets = _blocks(layout, shape, in_chunk, out_chunk)
    best = None
    n1 = 1
    while n1 <= layout.chunk:
        baby, giant = _bsgs_sets(offsets, n_in, n_out, n1)
        keys = len(set().union(*baby) - {0}) + len(set().union(*giant) - {0})
        key = (_rotations(baby, giant), keys, n1)
        if best is None or key < best:
            best = key
        n1 *= 2
    return best[2]


def rotation_steps_needed(layout: PackedLayout, shape: tuple[int, int], in_chunk: int | None = None,
                          out_chunk: int | None = None, baby_step: int | None = None) -> list[int]:
    """Rotation steps (left, in 1..N/2 - 1) whose Galois keys ``LinearTransform.evaluate`` uses for this shape."""
    n1 = baby_step or choose_baby_step(layout, shape, in_chunk, out_chunk)
    n_in, n_out, offsets = _blocks(layout, shape, in_chunk, out_chunk)
    baby, giant = _bsgs_sets(offsets, n_in, n_out, n1)
    steps = {layout.feature_step(b) for s in baby for b in s} | {layout.feature_step(g * n1) for s in giant for g in s}
    return sorted(s for s in steps if s)


# -- the transform ---------------------------------------------------------------------------------------------


class LinearTransform:
    """y = x W + bias for every token of a packed batch; W: (d_in, d_out), bias: (d_out,) or None."""

    def __init__(self, weight, layout: PackedLayout, bias=None, in_chunk: int | None = None,
                 out_chunk: int | None = None, baby_step: int | None = None):
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 2:
            raise InputError(f"weight must be a (d_in, d_out) matrix, got shape {w.shape}")
        self.weight = w
        self.d_in, self.d_out = w.shape
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        if self.bias is not None and self.bias.shape[0] != self.d_out:
            raise InputError(f"bias has {self.bias.shape[0]} entries, the matrix {self.d_out} columns")
        self.layout = layout
        self.in_chunk = layout._per_chunk(in_chunk)
        self.out_chunk = layout._per_chunk(out_chunk)
        self.n_in, self.n_out, self._offsets = _blocks(layout, w.shape, self.in_chunk, self.out_chunk)
        self.n1 = baby_step or choose_baby_step(layout, w.shape, self.in_chunk, self.out_chunk)
        if not _is_power_of_two(self.n1) or self.n1 > layout.chunk:
            raise InputError(f"baby step {self.n1} must be a power of two <= {layout.chunk}")
        # all diagonals of each block at once: diags[k, j] = B[(j + k) mod F, j]
        f = layout.chunk
        j = np.arange(f)
        rows = (j[None, :] + j[:, None]) % f
        self._diags = {(a, o): self.block(a, o)[rows, j[None, :]] for (a, o) in self._offsets}
        # diagonals actually nonzero, grouped by output chunk and giant step: {o: {g: [(a, b, k)]}}
        self._groups: dict[int, dict[int, list]] = {o: {} for o in range(self.n_out)}
        for (a, o), ks in self._offsets.items():
            nonzero = np.any(self._diags[(a, o)] != 0.0, axis=1)
            for k in ks:
                if nonzero[k]:
                    g, b = divmod(k, self.n1)
                    self._groups[o].setdefault(g, []).append((a, b, k))
        self._baby = [sorted({b for o in self._groups for g in self._groups[o] for (a2, b, _) in self._groups[o][g]
                              if a2 == a}) for a in range(self.n_in)]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.d_in, self.d_out)

    # -- plaintext side ---------------------------------------------------------------------------------------
    def block(self, a: int, o: int) -> np.ndarray:
        """The F x F block from input chunk a to output chunk o (real part top-left, zero padded)."""
        f = self.layout.chunk
        m = np.zeros((f, f))
        sub = self.weight[a * self.in_chunk : (a + 1) * self.in_chunk, o * self.out_chunk : (o + 1) * self.out_chunk]
        m[: sub.shape[0], : sub.shape[1]] = sub
        return m

    def diagonal(self, a: int, o: int, k: int) -> np.ndarray:
        """d_k[j] = B[(j + k) mod F, j] of block (a, o): (F,)."""
        return self._diags[(a, o)][k]

    def _diagonal_slots(self, a: int, o: int, k: int, g: int) -> np.ndarray:
        """d_k as slots, pre-rotated right by the giant step g n1 features."""
        return self.layout.expand_features(np.roll(self.diagonal(a, o, k), g * self.n1))

    def _bias_slots(self, o: int, n_tokens: int | None) -> np.ndarray:
        lay = self.layout
        block = np.zeros((lay.chunk, lay.tokens))
        part = self.bias[o * self.out_chunk : (o + 1) * self.out_chunk]
        block[: part.shape[0], : (lay.tokens if n_tokens is None else n_tokens)] = part[:, None]
        return np.tile(block.reshape(-1), lay.copies)

    def pack_input(self, x: np.ndarray) -> list[np.ndarray]:
        if x.shape[1] != self.d_in:
            raise InputError(f"input has {x.shape[1]} features, the matrix {self.d_in} rows")
        return self.layout.pack(x, self.in_chunk)

    def unpack_output(self, vectors, n_tokens: int) -> np.ndarray:
        return self.layout.unpack(vectors, n_tokens, self.d_out, self.out_chunk)

    def evaluate_slots(self, xs: list[np.ndarray], n_tokens: int | None = None) -> list[np.ndarray]:
        """The homomorphic algorithm on plaintext slot vectors (rot(v, s) = np.roll(v, -s))."""
        step = self.layout.feature_step
        outs = []
        for o in range(self.n_out):
            acc = np.zeros(self.layout.slots, dtype=np.result_type(*xs, np.float64))
            for g, terms in sorted(self._groups[o].items()):
                inner = sum(self._diagonal_slots(a, o, k, g) * np.roll(xs[a], -step(b)) for a, b, k in terms)
                acc = acc + np.roll(inner, -step(g * self.n1))
            if self.bias is not None:
                acc = acc + self._bias_slots(o, n_tokens)
            outs.append(acc)
        return outs

    def evaluate_plain(self, x: np.ndarray) -> np.ndarray:
        """(n_tokens, d_in) -> (n_tokens, d_out) through packing, diagonals and BSGS: checks all three."""
        x = np.asarray(x)
        return self.unpack_output(self.evaluate_slots(self.pack_input(x), x.shape[0]), x.shape[0])

    def rotation_steps(self) -> list[int]:
        return rotation_steps_needed(self.layout, self.shape, self.in_chunk, self.out_chunk, self.n1)

    def counts(self) -> dict:
        """What ``evaluate`` costs: rotations (= key switches), hoisted decompositions, plaintext products."""
        baby = sum(len(set(s) - {0}) for s in self._baby)
        giant = sum(len(set(gs) - {0}) for gs in self._groups.values())
        return {
            "rotations": baby + giant,
            "key_switch": baby + giant,
            "baby_rotations": baby,
            "giant_rotations": giant,
            "hoisted_decompositions": sum(1 for s in self._baby if set(s) - {0}),
            "pt_mults": sum(len(t) for gs in self._groups.values() for t in gs.values()),
            "rescales": self.n_out,
            "levels": 1,
            "baby_step": self.n1,
        }

    # -- homomorphic side ------------------------------------------------------------------------------------
    def evaluate(self, evaluator, cts: list, target_scale: float | None = None, n_tokens: int | None = None) -> list:
        """Encrypted x W + bias: ``n_out`` ciphertexts, one level used, scale exactly ``target_scale``
        (default: the first input's). ``n_tokens``: add the bias to the first n_tokens tokens only."""
        ev = evaluator
        if len(cts) != self.n_in:
            raise InputError(f"expected {self.n_in} input chunk(s) of {self.in_chunk} features, got {len(cts)}")
        level = min(ct.level for ct in cts)
        cts = [ev.drop_level(ct, level) for ct in cts]
        if level == 0:
            raise LevelError("a linear transform needs one level to rescale; the input is at level 0")
        target = cts[0].scale if target_scale is None else float(target_scale)
        q_top = ev.ctx.params.moduli_q[level]
        step = self.layout.feature_step
        values = getattr(ev.encoder, "needs_values", True)  # False on the level simulator
        baby = [ev.rotate_hoisted(ct, [step(b) for b in self._baby[a]]) for a, ct in enumerate(cts)]
        outs = []
        for o in range(self.n_out):
            acc = None
            for g, terms in sorted(self._groups[o].items()):
                inner = None
                for a, b, k in terms:
                    diag = self._diagonal_slots(a, o, k, g) if values else None
                    pt = ev.encoder.encode(diag, level=level, scale=target * q_top / cts[a].scale)
                    term = ev.mul(baby[a][step(b)], pt)
                    inner = term if inner is None else ev.add(inner, term)
                if g:
                    inner = ev.rotate(inner, step(g * self.n1))
                acc = inner if acc is None else ev.add(acc, inner)
            if acc is None:  # an all-zero block column: zero times the input, still one level
                acc = ev.mul(cts[0], ev.encoder.encode(np.zeros(self.layout.slots), level=level,
                                                        scale=target * q_top / cts[0].scale))
            acc = ev.rescale(acc)
            if self.bias is not None:
                bias = self._bias_slots(o, n_tokens) if values else None
                acc = ev.add(acc, ev.encoder.encode(bias, level=acc.level, scale=acc.scale))
            outs.append(acc)
        return outs


__all__ = [
    "LinearTransform",
    "PackedLayout",
    "block_offsets",
    "choose_baby_step",
    "next_power_of_two",
    "rotation_steps_needed",
]
