"""`fhectl keygen` and `fhectl keys list|show|export|verify`."""

import hashlib
import json
import os
import stat

import numpy as np

from clitools import INSECURE, KEYGEN, cli, cli_fails, cli_ok
from fhectl import keysets
from fhectl.io.container import read_container
from fhectl.io.keyring import Keyring, read_public_export

FAST_PASSPHRASE = "correct horse battery staple"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keygen_reports_and_writes_secret_0600_apart_from_public(tmp_path):
    ring = tmp_path / "ring"
    res = cli_ok(ring, *KEYGEN, "--conjugation", "--json")
    data = json.loads(res.stdout)
    assert data["key_id"].startswith("k-") and data["version"] == 1 and data["status"] == "primary"
    assert data["fingerprint"].startswith("sha256:") and len(data["fingerprint"]) == 7 + 64
    assert data["parameters"]["ring_degree"] == 1024 and data["parameters"]["security_bits"] == 0
    assert data["rotations"] == [-1, 1] and data["conjugation"] is True and data["sealed"] is False
    files = {f["file"]: f for f in data["files"]}
    assert set(files) == {"secret/secret-key.fhe", "public/public-key.fhe", "public/relin-key.fhe",
                          "public/galois-keys.fhe"}
    assert files["secret/secret-key.fhe"]["mode"] == "0600" and all(f["bytes"] > 0 for f in files.values())
    v1 = ring / "default" / "v1"
    assert _mode(v1 / "secret" / "secret-key.fhe") == 0o600 and _mode(v1 / "secret") == 0o700
    secret = read_container(v1 / "secret" / "secret-key.fhe")
    coeffs = secret.arrays["coeffs"]
    assert set(np.unique(coeffs)) <= {-1, 0, 1}
    assert "not passphrase-protected" in res.stderr  # an unsealed secret is pointed out
    text = cli_ok(ring, "keys", "show").stdout
    assert data["key_id"] in text and "INSECURE" in text and "-1, 1 + conjugation" in text


def test_keygen_refuses_to_overwrite(keyring):
    secret = keyring / "default" / "v1" / "secret" / "secret-key.fhe"
    before = hashlib.sha256(secret.read_bytes()).hexdigest()
    cli_fails(keyring, 2, *KEYGEN, match="already exists")
    assert hashlib.sha256(secret.read_bytes()).hexdigest() == before
    assert not (keyring / "default" / "v2").exists()


def test_keygen_options_are_checked(tmp_path):
    cli_fails(tmp_path / "r", 3, "keygen", "--profile", "tiny-insecure", match="--insecure")
    cli_fails(tmp_path / "r", 2, "keygen", "--profile", "tiny-insecure", "--rotations", "1,x", *INSECURE,
              match="--rotations")
    cli_fails(tmp_path / "r", 2, "keygen", "--profile", "tiny-insecure", "--rotations", "0", *INSECURE,
              match="rotation steps [0]")
    cli_fails(tmp_path / "r", 2, "keygen", "--profile", "no-such-profile", match="not found")
    assert not (tmp_path / "r" / "default").exists() or not any((tmp_path / "r" / "default").glob("v*"))


def test_sealed_secret_from_file_and_env(tmp_path):
    ring = tmp_path / "ring"
    pw = tmp_path / "pw"
    pw.write_text(FAST_PASSPHRASE + "\n")
    cli_ok(ring, "keygen", "--name", "s", "--profile", "tiny-insecure", "--passphrase", f"file:{pw}", *INSECURE)
    secret = read_container(ring / "s" / "v1" / "secret" / "secret-key.fhe")
    assert "encrypted" in secret.meta and list(secret.arrays) == ["sealed"]  # no coefficients at rest
    (tmp_path / "x.txt").write_text("1 2 3\n")
    cli_ok(ring, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "x.fhe", "--name", "s", *INSECURE)  # public only
    cli_fails(ring, 6, "decrypt", tmp_path / "x.fhe", *INSECURE, match="passphrase-protected")
    cli_fails(ring, 6, "decrypt", tmp_path / "x.fhe", "--passphrase", "env:PW", *INSECURE, env={"PW": "wrong"},
              match="wrong passphrase")
    cli_fails(ring, 2, "decrypt", tmp_path / "x.fhe", "--passphrase", "env:UNSET_VAR_FOR_TEST", *INSECURE,
              match="not set")
    out = cli_ok(ring, "decrypt", tmp_path / "x.fhe", "--passphrase", "env:PW", *INSECURE,
                 env={"PW": FAST_PASSPHRASE}).stdout
    assert np.allclose([float(v) for v in out.split()], [1, 2, 3], atol=1e-6)
    # Rotation opens the old secret and seals the new one with the same passphrase.
    cli_fails(ring, 6, "rotate", "--name", "s", *INSECURE, match="passphrase")
    rep = json.loads(cli_ok(ring, "rotate", "--name", "s", "--passphrase", "env:PW", "--json", *INSECURE,
                            env={"PW": FAST_PASSPHRASE}).stdout)
    assert rep["version"] == 2 and rep["sealed"] is True


def test_keys_list_show_export_verify(keyring, tmp_path):
    listed = json.loads(cli_ok(keyring, "keys", "list", "--json").stdout)
    assert [(v["key_set"], v["version"], v["status"]) for v in listed["versions"]] == [("default", 1, "primary")]
    assert cli_ok(keyring, "keys", "list").stdout.startswith("default\tv1\tprimary\tk-")
    shown = json.loads(cli_ok(keyring, "keys", "show", "--json").stdout)
    assert shown["key_id"] == listed["versions"][0]["key_id"] and shown["parameters"]["name"] == "tiny-insecure"

    rep = json.loads(cli_ok(keyring, "keys", "export", "-o", tmp_path / "pub.fhe", "--json").stdout)
    assert sorted(rep["files"]) == ["galois-keys", "public-key", "relin-key"]
    meta, members = read_public_export(tmp_path / "pub.fhe")
    assert sorted(members) == ["galois-keys", "public-key", "relin-key"]
    assert all(c.kind != "secret-key" for c in members.values()) and meta["parameters"]["log_n"] == 10
    cli_fails(keyring, 2, "keys", "export", "-o", tmp_path / "pub.fhe", match="already exists")
    cli_fails(keyring, 2, "keys", "export", "--files", "secret-key", "-o", tmp_path / "s.fhe", match="no public")

    ok = json.loads(cli_ok(keyring, "keys", "verify", "--json", *INSECURE).stdout)
    assert ok["results"][0]["ok"] and "secret key matches the public key" in ok["results"][0]["notes"]
    relin = keyring / "default" / "v1" / "public" / "relin-key.fhe"
    data = bytearray(relin.read_bytes())
    data[-5] ^= 0x01
    relin.write_bytes(bytes(data))
    res = cli(keyring, "keys", "verify", *INSECURE)
    assert res.exit_code == 6 and "FAILED" in res.stdout and "relin-key.fhe" in res.stdout


def test_show_and_list_on_an_empty_keyring(tmp_path):
    cli_fails(tmp_path / "empty", 6, "keys", "show", match="no key set 'default'")
    res = cli_ok(tmp_path / "empty", "keys", "list")
    assert res.stdout == "" and "no key sets" in res.stderr


def test_keys_export_writes_exactly_the_key_set_librarys_bundle(keyring, tmp_path):
    """One bundle format, built in one place (fhectl.keysets.bundle): the command adds nothing by hand."""
    cli_ok(keyring, "keys", "export", "-o", tmp_path / "cli.fhe")
    assert (tmp_path / "cli.fhe").read_bytes() == keysets.public_bundle(Keyring(keyring), "default").encode()
    cli_ok(keyring, "keys", "export", "--files", "public-key", "-o", tmp_path / "pk.fhe")
    assert (tmp_path / "pk.fhe").read_bytes() == keysets.public_bundle(Keyring(keyring), "default",
                                                                      files=["public-key"]).encode()
