"""The two roles of encrypted inference, and the key holder's stand-in for bootstrapping.

* ``Client`` holds the secret key: it makes the keys, encrypts inputs and decrypts outputs.
* The server holds only the public, relinearization and Galois keys (an ``Evaluator`` built from
  ``Client.public_keys()``) and runs the circuits.

Without bootstrapping the modulus chain runs out inside a transformer block. ``ClientRefresh`` then sends
ciphertexts back to the key holder, who decrypts and re-encrypts them: it is named for what it is (it is not
bootstrapping; it needs the key holder online and shows it every refreshed value) and every call is counted in
round trips and bytes. It implements the circuits' ``Refresher`` protocol (``ensure_levels_all``), so a
bootstrapper can replace it behind the same calls. When given a domain it checks the values against it before
re-encrypting, so a value outside an approximation's interval is a DomainError, never silent garbage.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.circuits.packing import Layout
from fhectl.circuits.polynomial import check_domain


@dataclass
class Stats:
    """What a run cost: time per stage, refresh round trips and bytes."""

    stage_seconds: dict[str, float] = field(default_factory=dict)
    refresh_round_trips: int = 0
    refresh_bytes_to_client: int = 0
    refresh_bytes_to_server: int = 0
    refreshes_by_stage: dict[str, int] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + seconds


class Client:
    """The key holder: keys, encryption, decryption, refreshes."""

    def __init__(self, ctx: CKKSContext, rotation_steps, random=None, conjugation: bool = False,
                 key_levels: dict[int, int] | None = None):
        """``conjugation``: also the Galois key for conjugation (bootstrapping's CoeffsToSlots needs it).
        ``key_levels``: step -> the highest level the server rotates by it at; those keys are made truncated
        to that level (``fhectl.ckks.keys.SwitchingKey``), the others full."""
        self.ctx = ctx
        kg = KeyGenerator(ctx, random)
        self.sk = kg.secret_key()
        self.pk = kg.public_key(self.sk)
        self.relin_key = kg.relin_key(self.sk)
        self.galois_keys = kg.galois_keys(self.sk, sorted(rotation_steps), conjugation=conjugation,
                                          max_levels=key_levels)
        self.encryptor = Encryptor(ctx, self.pk, random)
        self.decryptor = Decryptor(ctx, self.sk)

    def server_evaluator(self) -> Evaluator:
        """What the server gets: an evaluator holding only the public evaluation keys."""
        return Evaluator(self.ctx, self.relin_key, self.galois_keys)

    def galois_key_counts(self) -> dict:
        """How many Galois keys, and how many of them truncated to the levels the circuits use them at."""
        keys = self.galois_keys.keys.values()
        return {"count": len(keys), "truncated": sum(1 for k in keys if k.max_level is not None)}

    def public_material_bytes(self) -> int:
        be = self.ctx.backend
        return (be.nbytes(self.pk.data) + be.nbytes(self.relin_key.data)
                + sum(be.nbytes(k.data) for k in self.galois_keys.keys.values()))

    def encrypt_hidden(self, layout: Layout, x: np.ndarray, level: int | None = None) -> list[Ciphertext]:
        return [self.encryptor.encrypt(v, level=level) for v in layout.pack(x)]

    def decrypt_hidden(self, layout: Layout, cts: list[Ciphertext], n_tokens: int, width: int) -> np.ndarray:
        return layout.unpack([self.decryptor.decrypt(c, self.ctx.params.slots).real for c in cts], n_tokens, width)


def level0_interval(params) -> tuple[float, float]:
    """Values a ciphertext may carry at level 0: |m| Delta < q0 / 2 or the message wraps modulo q0 and
    decrypts to something else, silently. The check uses half of that, where a wrapped value (spread over
    the whole range) is likely to land."""
    bound = params.moduli_q[0] / (4.0 * params.scale)
    return (-bound, bound)


class ClientRefresh:
    """Decrypt and re-encrypt: the key holder's stand-in for bootstrapping (one round trip per call)."""

    def __init__(self, client: Client, stats: Stats):
        self.client = client
        self.stats = stats

    def begin_block(self, index: int) -> None:
        """Nothing to keep apart: the key holder checks every refreshed value as it comes."""

    def refresh(self, cts: list[Ciphertext], stage: str, domain: tuple[float, float] | None = None,
                valid: list[np.ndarray | None] | None = None, fill: float | None = None,
                level: int | None = None, domains: list[tuple[float, float] | None] | None = None) -> list[Ciphertext]:
        """Fresh encryptions of ``cts``' values at ``level`` (default: the top).

        Slots outside ``valid`` (padding, masked positions) are set to ``fill`` (default: the domain's
        midpoint, or 0), a point where the next polynomial is accurate; with bootstrapping the server
        applies the same mask itself. ``domain`` is checked on the valid slots of the ciphertexts that
        have a mask (all of them when ``valid`` is None); ``domains`` gives one interval (or None) per
        ciphertext instead, checked on its valid slots.
        """
        be = self.client.ctx.backend
        self.stats.refresh_round_trips += 1
        self.stats.refreshes_by_stage[stage] = self.stats.refreshes_by_stage.get(stage, 0) + 1
        self.stats.refresh_bytes_to_client += sum(be.nbytes(c.data) for c in cts)
        if fill is None:
            fill = 0.0 if domain is None else 0.5 * (domain[0] + domain[1])
        out = []
        for i, ct in enumerate(cts):
            values = self.client.decryptor.decrypt(ct, self.client.ctx.params.slots).real
            mask = None if valid is None else valid[i]
            if mask is not None:
                values = np.where(mask, values, fill)
            interval = domains[i] if domains is not None else (
                domain if valid is None or mask is not None else None)
            if interval is not None:
                check_domain(values if mask is None else values[mask], *interval, f"block input to {stage}")
            out.append(self.client.encryptor.encrypt(values, level=level))
        self.stats.refresh_bytes_to_server += sum(be.nbytes(c.data) for c in out)
        return out

    def ensure_levels(self, ct: Ciphertext, levels: int, stage: str) -> Ciphertext:
        """ct itself if it has ``levels`` levels left, else a refreshed copy."""
        return ct if ct.level >= levels else self.refresh([ct], stage)[0]

    def ensure_levels_all(self, cts: list[Ciphertext], levels: int, stage: str) -> list[Ciphertext]:
        """The ciphertexts themselves if each has ``levels`` levels left, else all refreshed in one round trip."""
        if all(c.level >= levels for c in cts):
            return cts
        return self.refresh(cts, stage)
