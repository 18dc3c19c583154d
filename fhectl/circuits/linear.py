"""Ciphertext x plaintext-matrix products for feature-major packed activations.

y = x W + b per token, W of shape (C_in, C_out), x packed by ``Layout``:
input chunks a (F features each) and output chunks o. Block (a, o) of W is an
F x F matrix M; with rot_f(x, k) the cyclic shift of features by k,

    (x M)_j = sum_k d_k[j] * rot_f(x, k)_j,   d_k[j] = M[(j + k) mod F, j],

and baby-step giant-step with k = g*n1 + b [Halevi and Shoup, CRYPTO 2018]
turns the F rotations into n1 - 1 hoisted baby steps (shared by every output
chunk) and n2 - 1 giant steps per output chunk:

    x M = sum_g rot_f( sum_b rot_f(d_{g n1 + b}, -g n1) * rot_f(x, b), g n1 ).

Diagonals are encoded at the ciphertext's level with scale q_l, so the one
rescale per output chunk returns to the input's scale exactly. All-zero
diagonals (padding) are skipped. ``evaluate_plain`` is the check, next to the
homomorphic version.
"""

from __future__ import annotations

import math

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.circuits.packing import Layout


class PackedLinear:
    """x W + b on feature-major ciphertexts, W: (C_in, C_out), b: (C_out,) or None."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, layout: Layout, chunk_in: int | None = None,
                 chunk_out: int | None = None):
        self.layout = layout
        f = layout.chunk
        self.c_in, self.c_out = weight.shape
        # chunk_in / chunk_out: how many real features each chunk carries (e.g. q, k and v each padded to F)
        self.chunk_in = chunk_in or f
        self.chunk_out = chunk_out or f
        self.n_in = math.ceil(self.c_in / self.chunk_in)
        self.n_out = math.ceil(self.c_out / self.chunk_out)
        self.weight = np.asarray(weight, dtype=np.float64)
        self.bias = None if bias is None else np.asarray(bias, dtype=np.float64)
        self.n1 = 1 << math.ceil(math.log2(math.sqrt(f)))
        self.n2 = f // self.n1
        self._blocks = {}

    # -- plaintext side -----------------------------------------------------------------
    def block(self, a: int, o: int) -> np.ndarray:
        """The F x F sub-matrix taking input chunk a to output chunk o (zero padded)."""
        key = (a, o)
        if key not in self._blocks:
            f = self.layout.chunk
            m = np.zeros((f, f))
            rows = self.weight[a * self.chunk_in : min((a + 1) * self.chunk_in, self.c_in)]
            sub = rows[:, o * self.chunk_out : min((o + 1) * self.chunk_out, self.c_out)]
            m[: sub.shape[0], : sub.shape[1]] = sub
            self._blocks[key] = m
        return self._blocks[key]

    def diagonal_slots(self, a: int, o: int, k: int, giant_shift: int) -> np.ndarray | None:
        """d_k of block (a, o) expanded to slots and pre-rotated by -giant_shift features; None if zero."""
        f = self.layout.chunk
        j = np.arange(f)
        d = self.block(a, o)[(j + k) % f, j]  # (F,)
        if not np.any(d):
            return None
        d = np.roll(d, giant_shift)  # rot_f(d, -g n1)
        per_slot = np.repeat(d, self.layout.tokens)  # every token of feature j
        return np.tile(per_slot, self.layout.slots // self.layout.period)

    def rotation_steps(self) -> set[int]:
        steps = {self.layout.feature_step(b) for b in range(1, self.n1)}
        steps |= {self.layout.feature_step(g * self.n1) for g in range(1, self.n2)}
        return {s for s in steps if s}

    def pack_input(self, x: np.ndarray) -> list[np.ndarray]:
        """(T, C_in) -> slot vectors per input chunk, each chunk carrying ``chunk_in`` real features."""
        return [self.layout.pack(x[:, a * self.chunk_in : (a + 1) * self.chunk_in])[0] for a in range(self.n_in)]

    def unpack_output(self, vectors: list[np.ndarray], n_tokens: int) -> np.ndarray:
        parts = [self.layout.unpack([v], n_tokens, self.chunk_out) for v in vectors]
        return np.concatenate(parts, axis=1)[:, : self.c_out]

    def evaluate_plain(self, x: np.ndarray) -> np.ndarray:
        """The same computation on plaintext slot vectors, through the diagonals (checks the packing)."""
        t = self.layout.tokens
        xs = self.pack_input(x)
        outs = []
        for o in range(self.n_out):
            acc = np.zeros(self.layout.slots)
            for g in range(self.n2):
                inner = np.zeros(self.layout.slots)
                for a in range(self.n_in):
                    for b in range(self.n1):
                        d = self.diagonal_slots(a, o, g * self.n1 + b, g * self.n1)
                        if d is not None:
                            inner += d * np.roll(xs[a], -b * t)
                acc += np.roll(inner, -g * self.n1 * t)
            if self.bias is not None:
                acc += self._bias_slots(o)
            outs.append(acc)
        return self.unpack_output(outs, x.shape[0])

    def _bias_slots(self, o: int) -> np.ndarray:
        b = np.zeros(self.layout.chunk)
        part = self.bias[o * self.chunk_out : min((o + 1) * self.chunk_out, self.c_out)]
        b[: part.shape[0]] = part
        return np.tile(np.repeat(b, self.layout.tokens), self.layout.slots // self.layout.period)

    # -- homomorphic side ---------------------------------------------------------------------
    def apply(self, evaluator, xs: list[Ciphertext], target_scale: float | None = None) -> list[Ciphertext]:
        """Encrypted x W + b: one ciphertext per output chunk, one level used.

        The outputs have the inputs' scale, or exactly ``target_scale`` (the diagonals are encoded
        at target * q_l / scale), which lets a residual addition meet equal scales for free.
        """
        if len(xs) != self.n_in:
            raise ValueError(f"expected {self.n_in} input chunks, got {len(xs)}")
        level = min(x.level for x in xs)
        xs = [evaluator.drop_level(x, level) for x in xs]
        encoder = evaluator.encoder
        q_top = evaluator.ctx.params.moduli_q[level]
        pt_scale = q_top if target_scale is None else target_scale * q_top / xs[0].scale
        baby = [evaluator.rotate_hoisted(x, [self.layout.feature_step(b) for b in range(self.n1)]) for x in xs]
        outs = []
        for o in range(self.n_out):
            acc = None
            for g in range(self.n2):
                inner = None
                for a in range(self.n_in):
                    for b in range(self.n1):
                        d = self.diagonal_slots(a, o, g * self.n1 + b, g * self.n1)
                        if d is None:
                            continue
                        pt = encoder.encode(d, level=level, scale=pt_scale)
                        term = evaluator.mul(baby[a][self.layout.feature_step(b)], pt)
                        inner = term if inner is None else evaluator.add(inner, term)
                if inner is None:
                    continue
                if g:
                    inner = evaluator.rotate(inner, self.layout.feature_step(g * self.n1))
                acc = inner if acc is None else evaluator.add(acc, inner)
            if acc is None:  # an all-zero block: encrypt nothing, multiply the input by zero
                acc = evaluator.mul(xs[0], encoder.encode(np.zeros(self.layout.slots), level=level, scale=pt_scale))
            acc = evaluator.rescale(acc)
            if self.bias is not None:
                acc = evaluator.add(acc, encoder.encode(self._bias_slots(o), level=acc.level, scale=acc.scale))
            outs.append(acc)
        return outs
