"""Issue 12, items 1 and 4 through the CLI: a forged public key (digests and manifest recomputed, as an
attacker with write access would) is refused by `keys verify` and by `encrypt` from the keyring or a
bundle; a public key damaged on a limb other than the first no longer passes the secret check."""

import hashlib
import json

import numpy as np

from clitools import INSECURE, cli, cli_fails, cli_ok
from fhectl.io.container import bundle_containers, read_container, write_container
from fhectl.io.keyring import read_public_export

PK_REL = "public/public-key.fhe"


def _forge_public_key(keyring, edit) -> None:
    """Rewrite v1's public key with ``edit(data)`` applied, and the manifest's fingerprint to match."""
    v1 = keyring / "default" / "v1"
    c = read_container(v1 / PK_REL)
    c.arrays["data"] = edit(c.arrays["data"].copy())
    write_container(v1 / PK_REL, c, mode=0o644)
    manifest = v1 / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"][PK_REL] = hashlib.sha256((v1 / PK_REL).read_bytes()).hexdigest()
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _zero(data):
    return np.zeros_like(data)


def test_keys_verify_refuses_an_all_zero_public_key(keyring):
    _forge_public_key(keyring, _zero)
    res = cli(keyring, "keys", "verify", *INSECURE)
    assert res.exit_code == 6, res.stdout + res.stderr
    assert "FAILED" in res.stdout and "degenerate" in res.stdout


def test_encrypt_refuses_a_degenerate_public_key_from_the_keyring(keyring, tmp_path):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    for edit in (_zero, lambda d: (d.__setitem__((0,), 0), d)[1]):  # all zero; b zero
        _forge_public_key(keyring, edit)
        res = cli_fails(keyring, 5, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "x.fhe", *INSECURE,
                        match="degenerate")
        assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1
        assert not (tmp_path / "x.fhe").exists()


def test_encrypt_refuses_a_degenerate_public_key_from_a_bundle(keyring, tmp_path):
    cli_ok(keyring, "keys", "export", "-o", tmp_path / "pub.fhe")
    meta, members = read_public_export(tmp_path / "pub.fhe")
    members["public-key"].arrays["data"][...] = 0
    pk = members["public-key"]
    forged = bundle_containers("keyset-public", members, params_id=pk.params_id, key_id=pk.key_id,
                               key_version=pk.key_version, meta=meta)
    write_container(tmp_path / "forged.fhe", forged, mode=0o644)
    (tmp_path / "x.txt").write_text("1 2 3\n")
    cli_fails(keyring, 5, "encrypt", tmp_path / "x.txt", "-b", tmp_path / "forged.fhe", "-o", tmp_path / "x.fhe",
              *INSECURE, match="degenerate")


def test_secret_check_probes_every_limb(keyring):
    def damage_last_limb(data):
        rng = np.random.default_rng(12)
        top = int(data[0, -1].max()) + 1  # below the last prime
        data[0, -1] = rng.integers(0, top, data.shape[-1], dtype=np.uint64)
        return data

    _forge_public_key(keyring, damage_last_limb)
    res = cli(keyring, "keys", "verify", *INSECURE)
    assert res.exit_code == 6, res.stdout + res.stderr
    assert "does not belong" in res.stdout and "limb" in res.stdout
