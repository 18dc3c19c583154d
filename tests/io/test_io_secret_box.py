"""Passphrase sealing of secret-key containers, and passphrase sources."""

import dataclasses

import numpy as np
import pytest

from fhectl.errors import FormatError, InputError, KeyringError
from fhectl.io import secret_box
from fhectl.io.container import decode_container, encode_container
from fhectl.io.secret_box import is_sealed, open_container, read_passphrase, seal_container

FAST_N = 2**15
PASS = b"correct horse battery staple"


@pytest.fixture
def sealed(key_containers):
    secret, _ = key_containers()
    sk = secret["secret-key"]
    return sk, seal_container(sk, PASS, scrypt_n=FAST_N)


def test_round_trip_through_bytes(sealed):
    sk, box = sealed
    stored = decode_container(encode_container(box), "sk.fhe")
    assert open_container(stored, PASS) == sk


def test_sealed_layout_records_kdf_and_hides_arrays(sealed):
    sk, box = sealed
    enc = box.meta["encrypted"]
    assert enc["kdf"] == "scrypt" and (enc["n"], enc["r"], enc["p"]) == (FAST_N, 8, 1)
    assert enc["aead"] == "chacha20poly1305"
    assert len(bytes.fromhex(enc["salt"])) == 16 and len(bytes.fromhex(enc["nonce"])) == 12
    assert list(box.arrays) == ["sealed"] and box.arrays["sealed"].dtype == np.uint8
    assert (box.kind, box.params_id, box.key_id, box.key_version) == (sk.kind, sk.params_id, sk.key_id, sk.key_version)
    assert sk.arrays["ntt"].tobytes() not in encode_container(box)
    assert is_sealed(box) and not is_sealed(sk)


def test_fresh_salt_and_nonce_each_time(key_containers):
    sk = key_containers()[0]["secret-key"]
    a, b = (seal_container(sk, PASS, scrypt_n=FAST_N) for _ in range(2))
    assert a.meta["encrypted"]["salt"] != b.meta["encrypted"]["salt"]
    assert a.meta["encrypted"]["nonce"] != b.meta["encrypted"]["nonce"]


def test_wrong_passphrase(sealed):
    _, box = sealed
    with pytest.raises(KeyringError, match="wrong passphrase or corrupted secret key file"):
        open_container(box, b"wrong")


@pytest.mark.parametrize("tamper", [
    lambda c: dataclasses.replace(c, key_id="k-000000000000"),
    lambda c: dataclasses.replace(c, key_version=7),
    lambda c: dataclasses.replace(c, params_id="00"),
    lambda c: dataclasses.replace(c, kind="public-key"),
    lambda c: dataclasses.replace(c, meta={**c.meta, "ring_degree": 32}),
    lambda c: dataclasses.replace(c, meta={**c.meta, "encrypted": {**c.meta["encrypted"], "n": 2**16}}),
    lambda c: dataclasses.replace(c, meta={**c.meta, "encrypted": {**c.meta["encrypted"], "nonce": "00" * 12}}),
    lambda c: dataclasses.replace(c, arrays={"sealed": c.arrays["sealed"] ^ np.eye(1, c.arrays["sealed"].size,
                                                                                       40, dtype=np.uint8)[0]}),
], ids=["key_id", "key_version", "params_id", "kind", "meta", "scrypt n", "nonce", "ciphertext bit"])
def test_tampering_is_detected(sealed, tamper):
    """Edits that survive re-encoding (valid container checksums) are caught by the AEAD's associated data."""
    _, box = sealed
    forged = decode_container(encode_container(tamper(box)), "forged.fhe")
    with pytest.raises(KeyringError, match="wrong passphrase or corrupted"):
        open_container(forged, PASS)


@pytest.mark.parametrize("field, value", [("n", 2**40), ("n", 2**14), ("n", 3 * 2**15), ("r", 1000), ("p", 0),
                                          ("kdf", "pbkdf2"), ("aead", "aes-gcm"), ("salt", "zz"), ("nonce", 5)])
def test_hostile_kdf_parameters_are_refused_before_deriving(sealed, field, value, monkeypatch):
    _, box = sealed
    monkeypatch.setattr(secret_box, "_derive", lambda *a: pytest.fail("derived a key from hostile parameters"))
    forged = dataclasses.replace(box, meta={**box.meta, "encrypted": {**box.meta["encrypted"], field: value}})
    with pytest.raises(FormatError):
        open_container(forged, PASS)


def test_seal_refuses_weak_kdf_and_double_sealing(sealed):
    sk, box = sealed
    with pytest.raises(FormatError, match="scrypt parameters"):
        seal_container(sk, PASS, scrypt_n=2**10)
    with pytest.raises(FormatError, match="already sealed"):
        seal_container(box, PASS, scrypt_n=FAST_N)
    with pytest.raises(InputError, match="non-empty"):
        seal_container(sk, b"", scrypt_n=FAST_N)


def test_passphrase_from_env(monkeypatch):
    monkeypatch.setenv("FHECTL_TEST_PASS", "s3cret ")
    assert read_passphrase("env:FHECTL_TEST_PASS") == b"s3cret "
    monkeypatch.delenv("FHECTL_TEST_PASS")
    with pytest.raises(InputError, match="environment variable FHECTL_TEST_PASS is not set"):
        read_passphrase("env:FHECTL_TEST_PASS")


def test_passphrase_from_file(tmp_path):
    path = tmp_path / "pass.txt"
    path.write_bytes("  pässword  \nsecond line\n".encode())
    assert read_passphrase(f"file:{path}") == "pässword".encode()
    with pytest.raises(InputError, match="cannot read"):
        read_passphrase(f"file:{tmp_path / 'missing'}")
    path.write_bytes(b"\n")
    with pytest.raises(InputError, match="is empty"):
        read_passphrase(f"file:{path}")


def test_passphrase_prompt(monkeypatch):
    answers = iter(["one", "one", "one", "two"])
    monkeypatch.setattr(secret_box.getpass, "getpass", lambda prompt="": next(answers))
    assert read_passphrase("prompt", confirm=True) == b"one"
    with pytest.raises(InputError, match="do not match"):
        read_passphrase("prompt", confirm=True)


@pytest.mark.parametrize("source", ["", "env:", "file:", "stdin", "ENV:X"])
def test_unknown_passphrase_source(source):
    with pytest.raises(InputError):
        read_passphrase(source)
