"""Ed25519 signatures on containers (fhectl.io.signatures): what they cover, and how they fail."""

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fhectl.errors import InputError, RefusedError
from fhectl.io.container import Container, read_container, write_container
from fhectl.io.signatures import (SIGNATURE_META, claimed_signer, key_fingerprint, load_signing_key, load_verify_key,
                                  sign_container, verify_container)


def _container():
    data = np.arange(2 * 3 * 8, dtype=np.uint64).reshape(2, 3, 8)
    return Container("ciphertext", "ab" * 8, "k-test", 1, {"level": 2, "origin": "encrypt", "key_switches": 0},
                     {"data": data})


def _edited(c, meta=None, data=None):
    return Container(c.kind, c.params_id, c.key_id, c.key_version, {**c.meta, **(meta or {})},
                     {"data": c.arrays["data"] if data is None else data})


def test_signature_survives_the_file_and_covers_meta_and_arrays(tmp_path):
    key = Ed25519PrivateKey.generate()
    signed = sign_container(_container(), key)
    write_container(tmp_path / "c.fhe", signed)
    back = read_container(tmp_path / "c.fhe")
    assert verify_container(back, key.public_key(), "c.fhe", required=True) == key_fingerprint(key.public_key())
    assert claimed_signer(back) == key_fingerprint(key.public_key())
    data = back.arrays["data"].copy()
    data[1, 2, 3] += 1
    for altered in (_edited(back, meta={"key_switches": 5}), _edited(back, data=data),
                    Container(back.kind, back.params_id, back.key_id, 2, back.meta, back.arrays)):
        with pytest.raises(RefusedError, match="does not match"):
            verify_container(altered, key.public_key(), "c.fhe", required=True)


def test_unsigned_wrong_key_and_malformed_signatures():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    plain = _container()
    assert verify_container(plain, key.public_key(), "x", required=False) is None
    with pytest.raises(RefusedError, match="not signed"):
        verify_container(plain, key.public_key(), "x", required=True)
    with pytest.raises(RefusedError, match="not by the verification key"):
        verify_container(sign_container(plain, other), key.public_key(), "x", required=True)
    # Re-signing by another key replaces the signature, and the honest key then refuses it.
    resigned = sign_container(sign_container(plain, key), other)
    with pytest.raises(RefusedError):
        verify_container(resigned, key.public_key(), "x", required=False)
    for bad in ("x", {"alg": "rsa", "key": "k", "value": "00"}, {"alg": "ed25519"}):
        with pytest.raises(RefusedError, match="malformed"):
            verify_container(_edited(plain, meta={SIGNATURE_META: bad}), key.public_key(), "x", required=False)
    forged = sign_container(plain, key)
    forged.meta[SIGNATURE_META] = {**forged.meta[SIGNATURE_META], "value": "zz"}
    with pytest.raises(RefusedError, match="does not match"):
        verify_container(forged, key.public_key(), "x", required=True)


def test_key_files(tmp_path):
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "k.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public = tmp_path / "k.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    os.chmod(private, 0o640)
    with pytest.raises(InputError, match="chmod 600"):
        load_signing_key(str(private))
    os.chmod(private, 0o600)
    loaded = load_signing_key(str(private))
    assert key_fingerprint(loaded.public_key()) == key_fingerprint(load_verify_key(str(public)))
    with pytest.raises(InputError, match="not a PEM public key"):
        load_verify_key(str(private))
    with pytest.raises(InputError, match="cannot read"):
        load_signing_key(str(tmp_path / "missing.pem"))
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.BestAvailableEncryption(b"pw")))
    os.chmod(encrypted, 0o600)
    with pytest.raises(InputError, match="encrypted"):
        load_signing_key(str(encrypted))
