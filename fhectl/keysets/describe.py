"""What `keygen`, `rotate` and `keys show` report about one version: never a secret value."""

from __future__ import annotations

import os

from fhectl.ckks.params import Parameters
from fhectl.errors import FhectlError
from fhectl.io.container import read_header
from fhectl.io.keyring import KeyVersion

from .files import PUBLIC_KEY, REWRAP_PREFIX


def fingerprint(kv: KeyVersion) -> str:
    """The key's fingerprint: SHA-256 of its public key file, as the manifest records it."""
    return "sha256:" + kv.files.get(f"public/{PUBLIC_KEY}.fhe", "?")


def describe_version(kv: KeyVersion, params: Parameters | None = None) -> dict:
    """Key id, fingerprint, status, rotations, rewrap sources and every file with its size and mode."""
    files = []
    steps, conjugation, rewrap_from = [], False, []
    for rel in sorted(kv.files):
        path = kv.path / rel
        entry = {"file": rel, "path": str(path), "bytes": 0, "sha256": kv.files[rel]}
        try:
            st = os.stat(path)
            entry["bytes"] = st.st_size
            entry["mode"] = f"{st.st_mode & 0o777:04o}"
            header = read_header(path)
            entry["kind"] = header.kind
            if header.kind == "galois-keys":
                steps = header.meta.get("steps", [])
                conjugation = bool(header.meta.get("conjugation", False))
            if rel.startswith(f"public/{REWRAP_PREFIX}"):
                rewrap_from.append(header.meta.get("from_version"))
        except (OSError, FhectlError) as exc:
            entry["problem"] = str(exc)
        files.append(entry)
    data = {
        "key_set": kv.name,
        "version": kv.version,
        "status": kv.status,
        "key_id": kv.key_id,
        "fingerprint": fingerprint(kv),
        "profile": kv.profile,
        "params_id": kv.params_id,
        "created": kv.created,
        "sealed": kv.sealed,
        "has_secret": kv.has_secret,
        "rotations": steps,
        "conjugation": conjugation,
        "rewraps_from_versions": rewrap_from,
        "files": files,
        "path": str(kv.path),
    }
    if params is not None:
        data["parameters"] = params.describe()
    return data
