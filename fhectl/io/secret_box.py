"""Passphrase encryption at rest for secret-key containers.

A sealed container keeps the outer bindings (kind, params_id, key_id, key_version) and meta
readable, adds ``meta["encrypted"]``::

    {"kdf": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<16 bytes hex>",
     "aead": "chacha20poly1305", "nonce": "<12 bytes hex>"}

and replaces the arrays with one opaque ``"<u1"`` array ``"sealed"``: the ChaCha20-Poly1305
encryption of the whole inner container (:func:`encode_container` bytes, so the inner object is
validated by the same loader after decryption). The 256-bit key is scrypt(passphrase, salt).

The associated data is a domain tag plus the canonical JSON of the outer kind, bindings and
meta (KDF parameters, salt and nonce included), so moving the blob under another key id,
version, kind or weaker KDF parameters makes decryption fail.

ChaCha20-Poly1305 rather than AES-GCM: constant time in software on machines without AES
instructions, and a random 96-bit nonce under a fresh random salt (so a fresh key) per seal
has no nonce-reuse risk.
"""

from __future__ import annotations

import getpass
import os
import re

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fhectl.errors import FormatError, InputError, KeyringError

from .container import Container, canonical_json, decode_container, encode_container

SCRYPT_N = 2**17  # 128 MiB and about 0.4 s per derivation: a key file is opened rarely
SCRYPT_R = 8
SCRYPT_P = 1
# The KDF parameters are read from the file and paid for before the AEAD tag can be checked, so a
# hostile file could ask for seconds to minutes and gigabytes per open. Bound them to twice fhectl's own
# setting: memory 128 n r bytes <= 256 MiB, work n r p <= 2 * 2^17 * 8 (about a second).
MIN_SCRYPT_N = 2**15
MAX_SCRYPT_N = 2**18
MAX_SCRYPT_R = 8
MAX_SCRYPT_P = 4
MAX_SCRYPT_MEMORY = 256 << 20  # 128 * n * r bytes
MAX_SCRYPT_WORK = 2 * SCRYPT_N * SCRYPT_R * SCRYPT_P  # n * r * p
_AAD_TAG = b"fhectl-secret-box-v1\x00"
_SEALED = "sealed"
_ENC_FIELDS = {"kdf", "n", "r", "p", "salt", "aead", "nonce"}
_SALT = re.compile(r"[0-9a-f]{32}\Z")
_NONCE = re.compile(r"[0-9a-f]{24}\Z")


def is_sealed(container: Container) -> bool:
    return "encrypted" in container.meta


def _check_kdf(n, r, p, where: str) -> None:
    ok = (type(n) is int and type(r) is int and type(p) is int and MIN_SCRYPT_N <= n <= MAX_SCRYPT_N
          and n & (n - 1) == 0 and 1 <= r <= MAX_SCRYPT_R and 1 <= p <= MAX_SCRYPT_P
          and 128 * n * r <= MAX_SCRYPT_MEMORY and n * r * p <= MAX_SCRYPT_WORK)
    if not ok:
        raise FormatError(f"{where}: scrypt parameters n={n!r} r={r!r} p={p!r} are outside the accepted range "
                          f"(n a power of two in [2**15, 2**18], r in 1..{MAX_SCRYPT_R}, p in 1..{MAX_SCRYPT_P}, "
                          f"memory <= {MAX_SCRYPT_MEMORY >> 20} MiB, n*r*p <= {MAX_SCRYPT_WORK}); "
                          "refusing to run the key derivation")


def _aad(c: Container, meta: dict) -> bytes:
    return _AAD_TAG + canonical_json({"kind": c.kind, "params_id": c.params_id, "key_id": c.key_id,
                                      "key_version": c.key_version, "meta": meta})


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase)


def _check_passphrase(passphrase) -> None:
    if not isinstance(passphrase, (bytes, bytearray)) or not passphrase:
        raise InputError("the passphrase must be non-empty bytes")


def seal_container(container: Container, passphrase: bytes, *, scrypt_n: int = SCRYPT_N, scrypt_r: int = SCRYPT_R,
                   scrypt_p: int = SCRYPT_P) -> Container:
    """Encrypt ``container``'s arrays (and a copy of its header) under ``passphrase``."""
    _check_passphrase(passphrase)
    if is_sealed(container):
        raise FormatError(f"{container.kind} container is already sealed")
    _check_kdf(scrypt_n, scrypt_r, scrypt_p, "seal_container")
    salt, nonce = os.urandom(16), os.urandom(12)
    meta = dict(container.meta)
    meta["encrypted"] = {"kdf": "scrypt", "n": scrypt_n, "r": scrypt_r, "p": scrypt_p, "salt": salt.hex(),
                         "aead": "chacha20poly1305", "nonce": nonce.hex()}
    key = _derive(bytes(passphrase), salt, scrypt_n, scrypt_r, scrypt_p)
    blob = ChaCha20Poly1305(key).encrypt(nonce, encode_container(container), _aad(container, meta))
    return Container(container.kind, container.params_id, container.key_id, container.key_version, meta,
                     {_SEALED: np.frombuffer(blob, dtype=np.uint8)})


def open_container(container: Container, passphrase: bytes, source: str = "secret key file") -> Container:
    """Decrypt a sealed container. Wrong passphrase or any tampering -> KeyringError."""
    _check_passphrase(passphrase)
    enc = container.meta.get("encrypted")
    if not isinstance(enc, dict):
        raise FormatError(f"{source}: not passphrase-protected (no meta 'encrypted')")
    if set(enc) != _ENC_FIELDS or enc["kdf"] != "scrypt" or enc["aead"] != "chacha20poly1305":
        raise FormatError(f"{source}: unsupported encryption description {enc!r}")
    _check_kdf(enc["n"], enc["r"], enc["p"], source)
    if not isinstance(enc["salt"], str) or not _SALT.match(enc["salt"]) \
            or not isinstance(enc["nonce"], str) or not _NONCE.match(enc["nonce"]):
        raise FormatError(f"{source}: salt must be 16 and nonce 12 bytes of lowercase hex")
    blob = container.arrays.get(_SEALED)
    if set(container.arrays) != {_SEALED} or blob.dtype != np.uint8 or blob.ndim != 1:
        raise FormatError(f"{source}: a sealed container holds exactly one 1-D '<u1' array 'sealed'")
    key = _derive(bytes(passphrase), bytes.fromhex(enc["salt"]), enc["n"], enc["r"], enc["p"])
    try:
        plain = ChaCha20Poly1305(key).decrypt(bytes.fromhex(enc["nonce"]), blob.tobytes(),
                                              _aad(container, container.meta))
    except InvalidTag:
        raise KeyringError(f"{source}: wrong passphrase or corrupted secret key file") from None
    inner = decode_container(plain, f"{source} (decrypted)")
    outer_meta = {k: v for k, v in container.meta.items() if k != "encrypted"}
    if (inner.kind, inner.params_id, inner.key_id, inner.key_version, inner.meta) != (
            container.kind, container.params_id, container.key_id, container.key_version, outer_meta):
        raise FormatError(f"{source}: decrypted contents do not match the outer header")
    return inner


def read_passphrase(source: str, *, confirm: bool = False, prompt: str = "Passphrase: ") -> bytes:
    """Get a passphrase from "prompt" (asked twice when ``confirm``), "env:VARNAME" or "file:PATH".

    For "file:PATH" the first line is used, stripped of surrounding whitespace.
    """
    if source == "prompt":
        try:
            value = getpass.getpass(prompt)
            if confirm and getpass.getpass("Repeat passphrase: ") != value:
                raise InputError("passphrases do not match")
        except EOFError:
            raise InputError("no passphrase given (input closed at the prompt)") from None
        data = value.encode("utf-8")
    elif source.startswith("env:"):
        name = source[4:]
        if not name:
            raise InputError("passphrase source 'env:' needs a variable name, as in env:FHECTL_PASSPHRASE")
        value = os.environ.get(name)
        if value is None:
            raise InputError(f"passphrase source {source!r}: environment variable {name} is not set")
        data = value.encode("utf-8")
    elif source.startswith("file:"):
        path = source[5:]
        if not path:
            raise InputError("passphrase source 'file:' needs a path, as in file:~/.fhectl/passphrase")
        try:
            with open(os.path.expanduser(path), "rb") as f:
                first = f.read(1 << 16)
        except OSError as exc:
            raise InputError(f"passphrase source {source!r}: cannot read {path}: {exc.strerror}") from None
        data = first.split(b"\n", 1)[0].strip()
    else:
        raise InputError(f"passphrase source {source!r} not understood; use 'prompt', 'env:VARNAME' or 'file:PATH'")
    if not data:
        raise InputError(f"passphrase from {source!r} is empty")
    return data
