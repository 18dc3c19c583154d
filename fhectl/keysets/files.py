"""The names of the files inside a key version (``public/<name>.fhe``, ``secret/<name>.fhe``).

Fixed here, so that key generation, rotation, export, rewrapping and every command agree on them.
"""

from __future__ import annotations

SECRET_KEY = "secret-key"
PUBLIC_KEY = "public-key"
RELIN_KEY = "relin-key"
GALOIS_KEYS = "galois-keys"
REWRAP_PREFIX = "rewrap-from-v"


def rewrap_file(from_version: int) -> str:
    """Name of the public file holding the switching key from ``from_version`` to the version it lives in."""
    return f"{REWRAP_PREFIX}{from_version}"


def rewrap_sources(public_files) -> list[int]:
    """The old versions a version holds a switching key from, given its public file names."""
    return sorted(int(f[len(REWRAP_PREFIX):]) for f in public_files
                  if f.startswith(REWRAP_PREFIX) and f[len(REWRAP_PREFIX):].isdigit())
