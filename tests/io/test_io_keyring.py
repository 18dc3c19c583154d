"""The keyring: layout and permissions, versions and status, locking, verification, export."""

import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from fhectl.errors import FormatError, KeyMismatchError, KeyringError, OutputExistsError
from fhectl.io.container import Container, bundle_containers, read_container, write_container
from fhectl.io.keyring import Keyring, default_keyring_path, read_public_export

FAST_N = 2**15
PASS = b"keyring passphrase"


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def ring(tmp_path):
    return Keyring(tmp_path / "home" / ".fhectl" / "keyring")


@pytest.fixture
def two_versions(ring, key_containers):
    """Key set 'default' with v1 (plain) and v2 (sealed, different key id)."""
    s1, p1 = key_containers("k-000000000001", seed=1)
    s2, p2 = key_containers("k-000000000002", seed=2)
    ring.create_key_set("default", 1, "tiny-insecure", s1["secret-key"].params_id, "k-000000000001", s1, p1)
    ring.create_key_set("default", 2, "tiny-insecure", s2["secret-key"].params_id, "k-000000000002", s2, p2,
                        passphrase=PASS, scrypt_n=FAST_N)
    return ring, (s1, p1), (s2, p2)


def test_layout_and_permissions(two_versions):
    ring, _, _ = two_versions
    for d in (ring.root, ring.root.parent, ring.root / "default", ring.root / "default" / "v1",
              ring.root / "default" / "v1" / "secret", ring.root / "default" / "v1" / "public"):
        assert _mode(d) == 0o700, d
    v1 = ring.root / "default" / "v1"
    assert _mode(v1 / "secret" / "secret-key.fhe") == 0o600
    assert _mode(v1 / "public" / "public-key.fhe") == 0o644
    manifest = json.loads((v1 / "manifest.json").read_text())
    assert manifest["files"].keys() == {"secret/secret-key.fhe", "public/public-key.fhe", "public/relin-key.fhe"}
    assert manifest["created"].endswith("Z") and manifest["status"] == "primary"
    assert [p for p in os.listdir(ring.root / "default") if p.startswith(".v")] == []  # no temporary leftovers


def test_versions_status_and_reads(two_versions):
    ring, (s1, p1), (s2, p2) = two_versions
    assert ring.list_key_sets() == ["default"]
    assert [(kv.version, kv.status, kv.sealed) for kv in ring.versions("default")] == [
        (1, "primary", False), (2, "active", True)]
    assert ring.get("default").version == 1
    assert ring.read_secret("default", 1, "secret-key").arrays.keys() == s1["secret-key"].arrays.keys()
    sk2 = ring.read_secret("default", 2, "secret-key", PASS)
    assert sk2 == Container(**{**s2["secret-key"].__dict__, "key_version": 2})
    assert ring.read_public("default", 2, "relin-key").key_version == 2
    with pytest.raises(KeyringError, match="passphrase-protected"):
        ring.read_secret("default", 2, "secret-key")
    with pytest.raises(KeyringError, match="wrong passphrase"):
        ring.read_secret("default", 2, "secret-key", b"nope")
    with pytest.raises(KeyringError, match=r"no public file 'galois-keys' \(has: public-key, relin-key\)"):
        ring.read_public("default", 1, "galois-keys")
    with pytest.raises(KeyringError, match=r"no version 3 \(versions: 1, 2\)"):
        ring.get("default", 3)
    with pytest.raises(KeyringError, match=r"no key set 'other' in keyring .* \(key sets: default\)"):
        ring.get("other")


def test_exactly_one_primary(two_versions):
    ring, _, _ = two_versions
    ring.set_status("default", 2, "primary")
    assert [kv.status for kv in ring.versions("default")] == ["active", "primary"]
    assert ring.get("default").version == 2
    with pytest.raises(KeyringError, match="is the primary; promote another version"):
        ring.set_status("default", 2, "retired")
    ring.set_status("default", 1, "retired")
    assert [kv.status for kv in ring.versions("default")] == ["retired", "primary"]
    with pytest.raises(KeyringError, match="not one of"):
        ring.set_status("default", 1, "deleted")


def test_retired_version_refused_for_decryption(two_versions):
    ring, _, _ = two_versions
    ring.set_status("default", 2, "primary")
    ring.set_status("default", 1, "retired")
    with pytest.raises(KeyringError, match=r"key version 1 of 'default' is retired; files under it must be "
                                           r"rewrapped \(fhectl rotate\) before retirement"):
        ring.read_secret("default", 1, "secret-key")
    with pytest.raises(KeyringError, match="retired"):
        ring.read_public("default", 1, "public-key")
    assert ring.read_secret("default", 1, "secret-key", allow_retired=True).key_version == 1


def test_new_primary_demotes_old(ring, key_containers):
    for v in (1, 2, 3):
        s, p = key_containers(f"k-00000000000{v}", seed=v)
        ring.create_key_set("ks", v, "p", s["secret-key"].params_id, f"k-00000000000{v}", s, p, status="primary")
    assert [kv.status for kv in ring.versions("ks")] == ["active", "active", "primary"]


def test_crash_between_promote_and_demote_is_repaired_on_the_next_read(two_versions, caplog):
    ring, _, _ = two_versions
    writer = Keyring(ring.root)
    with writer.lock("default"):  # a live writer between its two writes: a reader must not repair
        writer._write_status(writer.get("default", 2), "primary")  # what a crash after the first write leaves
        assert [kv.status for kv in Keyring(ring.root).versions("default")] == ["primary", "primary"]
        assert Keyring(ring.root).get("default").version == 2  # the one promoted last
    with caplog.at_level("WARNING", logger="fhectl.io.keyring"):
        assert [kv.status for kv in Keyring(ring.root).versions("default")] == ["active", "primary"]
    assert "had 2 primary versions" in caplog.text and "v2, promoted last, stays primary; v1 now active" in caplog.text
    assert [kv.status for kv in Keyring(ring.root).versions("default")] == ["active", "primary"]  # stays repaired


def test_an_interrupted_roll_back_keeps_the_version_promoted_last(two_versions):
    """Promoting an older version back is a promotion too: the repair keeps it, not the highest version."""
    ring, _, _ = two_versions
    ring.set_status("default", 2, "primary")
    ring._write_status(ring.get("default", 1), "primary")  # roll back to v1, killed before demoting v2
    with ring.lock("default"):  # any writer repairs first
        pass
    assert [kv.status for kv in ring.versions("default")] == ["primary", "active"]


def test_refuses_to_overwrite_a_version(two_versions, key_containers):
    ring, (s1, p1), _ = two_versions
    before = (ring.root / "default" / "v1" / "manifest.json").read_bytes()
    with pytest.raises(OutputExistsError, match="already has version 1"):
        ring.create_key_set("default", 1, "x", s1["secret-key"].params_id, "k-000000000001", s1, p1)
    assert (ring.root / "default" / "v1" / "manifest.json").read_bytes() == before
    assert ring.next_version("default") == 3


def test_create_checks_bindings(ring, key_containers):
    s, p = key_containers("k-aaaaaaaaaaaa")
    with pytest.raises(KeyMismatchError, match="public file 'public-key' was made under key 'k-aaaaaaaaaaaa'"):
        ring.create_key_set("ks", 1, "p", s["secret-key"].params_id, "k-bbbbbbbbbbbb", {}, p)
    wrong_version = {"secret-key": Container(**{**s["secret-key"].__dict__, "key_version": 5})}
    with pytest.raises(KeyMismatchError, match="version 5"):
        ring.create_key_set("ks", 1, "p", s["secret-key"].params_id, "k-aaaaaaaaaaaa", wrong_version, p)
    with pytest.raises(KeyringError, match="must be 1-64 characters"):
        ring.create_key_set("../evil", 1, "p", s["secret-key"].params_id, "k-aaaaaaaaaaaa", s, p)
    assert ring.list_key_sets() == []


def test_verify_detects_modified_file(two_versions):
    ring, _, _ = two_versions
    assert ring.verify("default", 1).version == 1
    path = ring.root / "default" / "v1" / "public" / "relin-key.fhe"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(KeyringError, match=r"version 1 failed verification: public/relin-key.fhe: sha256 .* "
                                           r"does not match"):
        ring.verify("default", 1)
    with pytest.raises(KeyringError, match="relin-key.fhe: fingerprint mismatch"):
        ring.read_public("default", 1, "relin-key")


def test_verify_detects_loose_permissions_and_strays(two_versions):
    ring, _, _ = two_versions
    v2 = ring.root / "default" / "v2"
    os.chmod(v2 / "secret" / "secret-key.fhe", 0o644)
    (v2 / "public" / "extra.fhe").write_bytes(b"")
    with pytest.raises(KeyringError) as info:
        ring.verify("default", 2)
    assert "lets others read a secret" in str(info.value) and "public/extra.fhe: not listed" in str(info.value)


def test_read_public_export_from_a_path_or_bytes(two_versions, tmp_path):
    ring, (_, p1), _ = two_versions
    members = {f: ring.read_public("default", 1, f) for f in ring.get("default", 1).public_files}
    first = members["public-key"]
    bundle = bundle_containers("keyset-public", members, params_id=first.params_id, key_id=first.key_id,
                               key_version=1, meta={"name": "default"})
    dest = tmp_path / "default-v1.pub.fhe"
    write_container(dest, bundle)
    for source in (dest, dest.read_bytes()):
        meta, got = read_public_export(source)
        assert meta == {"name": "default"} and got.keys() == {"public-key", "relin-key"}
        assert got["public-key"].arrays["data"].tobytes() == p1["public-key"].arrays["data"].tobytes()
    with pytest.raises(FormatError, match="holds a keyset-public, expected a ciphertext"):
        read_container(dest, expected_kind="ciphertext")
    with pytest.raises(FormatError):
        read_public_export(dest.read_bytes()[:-10])


def test_lock_conflicts_with_second_fd_in_same_process(ring):
    other = Keyring(ring.root)  # a second Keyring object opens its own file description
    with ring.lock("default"):
        with ring.lock("default"):  # re-entrant for the holder
            pass
        with pytest.raises(KeyringError, match=rf"another fhectl process holds the lock on key set 'default' "
                                               rf"\(pid {os.getpid()}\)"):
            with other.lock("default"):
                pass
    with other.lock("default"):  # released
        pass


def test_lock_conflicts_across_processes(ring, key_containers):
    script = textwrap.dedent(f"""
        import sys, time
        from fhectl.io.keyring import Keyring
        with Keyring({str(ring.root)!r}).lock("default"):
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        s, p = key_containers()
        with pytest.raises(KeyringError, match=rf"holds the lock on key set 'default' \(pid {child.pid}\)"):
            ring.create_key_set("default", 1, "p", s["secret-key"].params_id, s["secret-key"].key_id, s, p)
    finally:
        child.communicate("\n", timeout=10)
    assert child.returncode == 0


def test_default_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FHECTL_KEYRING", str(tmp_path / "kr"))
    assert Keyring().root == tmp_path / "kr" == default_keyring_path()
    monkeypatch.delenv("FHECTL_KEYRING")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Keyring().root == tmp_path / ".fhectl" / "keyring"


def test_missing_file_is_reported(two_versions):
    ring, _, _ = two_versions
    (ring.root / "default" / "v1" / "public" / "relin-key.fhe").unlink()
    with pytest.raises(KeyringError, match="relin-key.fhe: missing, but listed in the manifest"):
        ring.read_public("default", 1, "relin-key")
    with pytest.raises(KeyringError, match="public/relin-key.fhe: missing"):
        ring.verify("default", 1)
