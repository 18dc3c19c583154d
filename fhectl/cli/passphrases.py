"""Passphrases from --passphrase (prompt, env:VAR, file:PATH) or, for a sealed key, the terminal.

The library (fhectl.keysets) takes bytes or a callable; reading a terminal is the CLI's business.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from fhectl.io.secret_box import read_passphrase


def get_passphrase(source: str | None, sealed: bool, *, confirm: bool = False) -> bytes | None:
    """The passphrase from ``source``; if none is named and the key is sealed, ask on the terminal if there is one."""
    if source is not None:
        return read_passphrase(source, confirm=confirm)
    if sealed and sys.stdin is not None and sys.stdin.isatty():
        return read_passphrase("prompt", confirm=confirm)
    return None


def passphrase_when_sealed(source: str | None) -> Callable[[], bytes | None]:
    """A callable for the library: reads ``source`` (or asks on a terminal) the first time a sealed secret
    needs it, and gives the same bytes on later calls, so that one command asks at most once."""
    read: list[bytes | None] = []

    def passphrase() -> bytes | None:
        if not read:
            read.append(get_passphrase(source, sealed=True))
        return read[0]

    return passphrase
