"""Feature-major packing of a (tokens x features) activation into CKKS slots.

Slot s of a ciphertext holds feature f, token t of one chunk of features:

    s = f * T + t          0 <= t < T (tokens, padded to a power of two)
                           0 <= f < F (features of this chunk, a power of two)

and the block of F * T slots repeats until all N/2 slots are filled:

        slot:  0 1 .. T-1 | T .. 2T-1 | ... | (F-1)T .. FT-1 | FT ...
        holds: f=0, t=0..  | f=1, t=..  | ... | f=F-1        | (repeat)

Because the slot vector is periodic with period F*T, a cyclic rotation of all
N/2 slots by k*T is a cyclic shift of the features by k inside the chunk, the
same shift for every token. That is what the diagonal method needs, so one
ciphertext runs the same F x F matrix on T tokens at once [Halevi and Shoup,
CRYPTO 2014, diagonal method; feature-major batching as in THOR and NEXUS].
A wide activation (768 features of GPT-2 small fit one chunk of F = 1024; the
MLP's 3072 need 3) is a list of ciphertexts, one per chunk of F features.

A rotation by delta < T moves tokens: slot (f, t) receives (f, t + delta)
while t + delta < T, and a neighbour's feature otherwise; the causal
attention only reads the positions that stay inside (see encrypted.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fhectl.errors import InputError


def next_power_of_two(x: int) -> int:
    return 1 if x <= 1 else 1 << (x - 1).bit_length()


@dataclass(frozen=True)
class Layout:
    """Where each (token, feature) lives: T tokens x F features per chunk, repeated to fill the slots."""

    slots: int  # N/2
    tokens: int  # T: padded token count, a power of two
    chunk: int  # F: features per ciphertext, a power of two

    def __post_init__(self):
        if self.tokens * self.chunk > self.slots or self.slots % (self.tokens * self.chunk):
            raise InputError(
                f"{self.tokens} tokens x {self.chunk} features do not tile {self.slots} slots; "
                "use fewer tokens or a larger ring"
            )

    @staticmethod
    def for_model(slots: int, n_tokens: int, width: int) -> "Layout":
        """The layout for ``n_tokens`` tokens of a model of width ``width`` (one chunk per width if it fits)."""
        tokens = next_power_of_two(n_tokens)
        chunk = next_power_of_two(width)
        while tokens * chunk > slots and chunk > 1:
            chunk //= 2
        return Layout(slots=slots, tokens=tokens, chunk=chunk)

    @staticmethod
    def max_tokens(slots: int, width: int) -> int:
        """The most tokens one ciphertext holds for a model of this width (one chunk of features)."""
        return max(1, slots // next_power_of_two(width))

    @property
    def period(self) -> int:
        return self.tokens * self.chunk

    def chunks(self, width: int) -> int:
        return math.ceil(width / self.chunk)

    def feature_step(self, k: int) -> int:
        """Rotation step that shifts features by k inside every chunk."""
        return (k * self.tokens) % self.slots

    def pack(self, x: np.ndarray) -> list[np.ndarray]:
        """(n_tokens, width) -> one slot vector per chunk of features."""
        n_tok, width = x.shape
        if n_tok > self.tokens:
            raise InputError(f"{n_tok} tokens exceed the layout's {self.tokens}")
        out = []
        for c in range(self.chunks(width)):
            block = np.zeros((self.chunk, self.tokens), dtype=x.dtype)  # (F, T)
            part = x[:, c * self.chunk : (c + 1) * self.chunk].T  # (f, n_tok)
            block[: part.shape[0], :n_tok] = part
            out.append(np.tile(block.reshape(-1), self.slots // self.period))
        return out

    def unpack(self, vectors: list[np.ndarray], n_tokens: int, width: int) -> np.ndarray:
        """Inverse of pack, reading the first period of each vector: (n_tokens, width)."""
        parts = []
        for v in vectors:
            block = np.asarray(v)[: self.period].reshape(self.chunk, self.tokens)  # (F, T)
            parts.append(block[:, :n_tokens].T)
        return np.concatenate(parts, axis=1)[:, :width]

    def per_feature(self, values: np.ndarray) -> list[np.ndarray]:
        """A per-feature constant (width,) expanded to every token: slot vectors per chunk."""
        return self.pack(np.broadcast_to(values, (self.tokens, values.shape[0])).copy())

    def per_token(self, values: np.ndarray) -> np.ndarray:
        """A per-token constant (T,) expanded to every feature of a chunk."""
        block = np.tile(np.asarray(values)[None, :], (self.chunk, 1))
        return np.tile(block.reshape(-1), self.slots // self.period)
