"""Ed25519 signatures on containers: who made a ciphertext file, and that it is unchanged since.

The container checksums (SHA-256, :mod:`fhectl.io.container`) are unkeyed: they catch corruption,
but anyone who edits a file can recompute them, so they prove nothing about where a file came from.
CKKS ciphertexts are malleable by design (anyone can add to, scale or rotate them), so the
plausibility checks of decryption catch crude edits only. A signature is what authenticates.

What is signed: SHA-256 of a domain-separation label followed by the container's canonical bytes
(:func:`fhectl.io.container.encode_container`, which is deterministic) with ``meta["signature"]``
left out. That covers the kind, parameter id, key id and version, all other meta (the data
description and the history a share-safe decryption relies on) and every array byte. The
signature is stored in the same container, as::

    "signature": {"alg": "ed25519", "key": "ed25519:<sha256 of the raw public key, 32 hex>",
                  "value": "<64-byte signature, hex>"}

Ed25519 (RFC 8032) through the ``cryptography`` package. Keys are PEM files: a PKCS#8 private key
(``openssl genpkey -algorithm ed25519 -out sign.pem``), refused when others can read it, and its
SubjectPublicKeyInfo public key (``openssl pkey -in sign.pem -pubout -out sign.pub``).

Anything that changes the file after signing, a rewrap to a new key version included, breaks the
signature: a rewrapped file must be signed again by whoever vouches for it.
"""

from __future__ import annotations

import hashlib
import os
import stat

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fhectl.errors import InputError, RefusedError

from .container import Container, encode_container

SIGNATURE_META = "signature"
ALGORITHM = "ed25519"
_DOMAIN = b"fhectl container signature v1\x00"
_MAX_KEY_FILE_BYTES = 1 << 16


def _read_key_file(path: str, what: str) -> bytes:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path}: the {what} is not a regular file")
        if st.st_size > _MAX_KEY_FILE_BYTES:
            raise InputError(f"{path}: {st.st_size} bytes is too large for a {what}")
        with open(path, "rb") as f:
            return f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def load_signing_key(path: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PKCS#8 PEM file that only its owner can read."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the signing key: {exc.strerror or exc}") from None
    if mode & 0o077:
        raise InputError(f"{path}: mode {mode:04o} lets others read a signing key; chmod 600 it")
    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InputError(f"{path}: the signing key is encrypted; give an unencrypted PKCS#8 key "
                         "(protect it with file permissions)") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(f"{path}: not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path}: a {type(key).__name__.lstrip('_')}, not an Ed25519 private key")
    return key


def load_verify_key(path: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM SubjectPublicKeyInfo file."""
    data = _read_key_file(path, "verification key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(f"{path}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{path}: a {type(key).__name__.lstrip('_')}, not an Ed25519 public key")
    return key


def key_fingerprint(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"{ALGORITHM}:{hashlib.sha256(raw).hexdigest()[:32]}"


def _unsigned(c: Container) -> Container:
    meta = {k: v for k, v in c.meta.items() if k != SIGNATURE_META}
    return Container(c.kind, c.params_id, c.key_id, c.key_version, meta, c.arrays)


def signed_message(c: Container) -> bytes:
    """What the signature covers (see the module docstring)."""
    return _DOMAIN + hashlib.sha256(encode_container(_unsigned(c))).digest()


def sign_container(c: Container, key: Ed25519PrivateKey) -> Container:
    """``c`` with ``meta["signature"]`` set (any previous signature replaced)."""
    value = key.sign(signed_message(c))
    meta = dict(_unsigned(c).meta)
    meta[SIGNATURE_META] = {"alg": ALGORITHM, "key": key_fingerprint(key.public_key()), "value": value.hex()}
    return Container(c.kind, c.params_id, c.key_id, c.key_version, meta, c.arrays)


def claimed_signer(c: Container) -> str | None:
    """The signer a file names, unverified (for reports only); None when it carries no signature."""
    sig = c.meta.get(SIGNATURE_META)
    if sig is None:
        return None
    return sig.get("key") if isinstance(sig, dict) and isinstance(sig.get("key"), str) else "malformed"


def verify_container(c: Container, key: Ed25519PublicKey, source: str, *, required: bool) -> str | None:
    """Check ``c``'s signature against ``key``; returns the signer's fingerprint, or None when the file is
    unsigned and ``required`` is false. RefusedError when a signature is required and missing, or is
    present but malformed, by another key, or does not match the file's contents."""
    sig = c.meta.get(SIGNATURE_META)
    expected = key_fingerprint(key)
    if sig is None:
        if required:
            raise RefusedError(f"{source} is not signed, and a signature by {expected} is required")
        return None
    if not (isinstance(sig, dict) and set(sig) == {"alg", "key", "value"} and sig["alg"] == ALGORITHM
            and isinstance(sig["key"], str) and isinstance(sig["value"], str)):
        raise RefusedError(f"{source}: its signature entry is malformed")
    if sig["key"] != expected:
        raise RefusedError(f"{source} is signed by {sig['key']}, not by the verification key {expected}")
    try:
        value = bytes.fromhex(sig["value"])
        key.verify(value, signed_message(c))
    except (ValueError, InvalidSignature):
        raise RefusedError(f"{source}: the signature by {expected} does not match the file's contents (changed "
                           "after signing; a rewrap also changes it)") from None
    return expected
