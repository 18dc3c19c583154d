"""A per-key ledger of share-safe decryptions, counted against a budget.

Share-safe decryption floods each decryption for an adversary who sees Q of them under one key
(see :mod:`fhectl.ckks.noise`); past Q the statistical guarantee no longer holds. So every
share-safe decryption is recorded here, and one that would go past the budget is refused unless
the caller forces it (it is then recorded as over budget).

The divergence a decryption flooded for budget Q_i gives away scales as 1 / Q_i, so the ledger
keeps ``spent`` = sum over decryptions of (ciphertexts / Q_i), exactly (a fraction), and the budget
is respected while ``spent`` <= 1. With one budget throughout that is simply "at most Q
decryptions"; changing the budget later stays sound.

File: ``<keyring>/.share-safe-ledger/<key id>.json``, mode 0600 in a 0700 directory, rewritten
atomically (:mod:`fhectl.io.atomic`) under an exclusive lock on ``<key id>.lock``, so concurrent
decryptions are counted one after the other. The entries record when, what file, how many
ciphertexts, the budget and s; never a value or a key. A damaged ledger is an error, never a
reset to zero. The ledger protects against mistakes, not against someone with write access to the
keyring (who holds the secret key anyway).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

from fhectl.errors import InputError, KeyringError, RefusedError

from .atomic import atomic_write_bytes, fsync_directory
from .container import canonical_json

LEDGER_DIR = ".share-safe-ledger"
BUDGET_ENV = "FHECTL_SHARE_BUDGET"
DEFAULT_BUDGET = 64
MAX_ENTRIES = 10_000  # the totals are kept exactly; only the oldest detail lines are dropped
_FORMAT = "fhectl-share-safe-ledger"
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")


def budget_from_environment(value: int | None) -> int:
    """``value`` if given, else $FHECTL_SHARE_BUDGET, else :data:`DEFAULT_BUDGET`."""
    if value is not None:
        return value
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_BUDGET
    try:
        budget = int(text)
    except ValueError:
        budget = 0
    if budget < 1:
        raise InputError(f"${BUDGET_ENV} must be a positive integer, got {text[:40]!r}")
    return budget


@dataclass(frozen=True)
class LedgerState:
    key_id: str
    decryptions: int  # ciphertexts decrypted share-safe so far
    spent: Fraction  # sum of ciphertexts / budget over every entry; the budget holds while <= 1
    over_budget: int  # how many of the decryptions were forced past the budget


@dataclass(frozen=True)
class Charge:
    """One decryption's entry, as the ledger will record it once the decryption succeeds."""

    before: LedgerState
    ciphertexts: int
    budget: int
    cost: Fraction
    over_budget: bool

    @property
    def after(self) -> LedgerState:
        b = self.before
        return LedgerState(b.key_id, b.decryptions + self.ciphertexts, b.spent + self.cost,
                           b.over_budget + (self.ciphertexts if self.over_budget else 0))

    @property
    def remaining(self) -> int:
        """Decryptions left at this budget after this one (0 when spent or over)."""
        return max(0, int((1 - self.after.spent) * self.budget))


class DecryptionLedger:
    def __init__(self, keyring_root: str | os.PathLike, key_id: str):
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise KeyringError(f"key id {key_id!r} cannot name a ledger file")
        self.directory = Path(keyring_root) / LEDGER_DIR
        self.key_id = key_id
        self.path = self.directory / f"{key_id}.json"

    def _doc(self) -> dict:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"format": _FORMAT, "version": 1, "key_id": self.key_id, "decryptions": 0, "spent": "0",
                    "over_budget": 0, "entries": []}
        except OSError as exc:
            raise KeyringError(f"{self.path}: cannot read the share-safe ledger: {exc.strerror or exc}") from None
        try:
            doc = json.loads(raw)
            ok = (isinstance(doc, dict) and doc.get("format") == _FORMAT and doc.get("version") == 1
                  and doc.get("key_id") == self.key_id and type(doc.get("decryptions")) is int
                  and doc["decryptions"] >= 0 and type(doc.get("over_budget")) is int
                  and isinstance(doc.get("spent"), str) and Fraction(doc["spent"]) >= 0
                  and isinstance(doc.get("entries"), list))
        except (ValueError, ZeroDivisionError):
            ok = False
        if not ok:
            raise KeyringError(f"{self.path}: the share-safe ledger is damaged; it is never reset silently "
                               "(restore it from a backup, or remove it deliberately to start counting again)")
        return doc

    def state(self) -> LedgerState:
        doc = self._doc()
        return LedgerState(self.key_id, doc["decryptions"], Fraction(doc["spent"]), doc["over_budget"])

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.directory.is_dir():
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.directory, 0o700)
        fd = os.open(self.directory / f"{self.key_id}.lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another decryption of this key waits its turn
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def charge(self, ciphertexts: int, budget: int, *, exceed: bool, source: str,
               statistical_security: int) -> Iterator[Charge]:
        """Hold the lock, refuse (RefusedError) a decryption past the budget unless ``exceed``, yield the
        charge, and record it when the block exits cleanly (before the caller releases any output).
        If the block raises, nothing is recorded."""
        if not (isinstance(budget, int) and budget >= 1):
            raise InputError(f"the share-safe budget must be a positive integer, got {budget!r}")
        with self._locked():
            doc = self._doc()
            before = LedgerState(self.key_id, doc["decryptions"], Fraction(doc["spent"]), doc["over_budget"])
            cost = Fraction(ciphertexts, budget)
            over = before.spent + cost > 1
            if over and not exceed:
                used = "all" if before.spent >= 1 else f"{float(before.spent):.0%}"
                raise RefusedError(
                    f"key {self.key_id}: share-safe budget spent ({before.decryptions} decryption(s) given out, "
                    f"{used} of the budget); {ciphertexts} more at budget {budget} would exceed it. Keep the "
                    "result to yourself (decrypt without --share-safe), or pass --exceed-budget (counted; the "
                    "statistical guarantee then no longer holds)")
            result = Charge(before, ciphertexts, budget, cost, over)
            yield result
            after = result.after
            entry = {"time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source,
                     "ciphertexts": ciphertexts, "budget": budget, "statistical_security": statistical_security,
                     "over_budget": over}
            doc.update(decryptions=after.decryptions, spent=str(after.spent), over_budget=after.over_budget,
                       entries=(doc["entries"] + [entry])[-MAX_ENTRIES:])
            atomic_write_bytes(self.path, canonical_json(doc) + b"\n", mode=0o600)
            fsync_directory(str(self.directory))
