"""Issue 12, item 8: a killed rotation's temporary version directory (which can hold a secret key) is
shredded on the next run, two primary versions left by a killed rotation are repaired on the next run,
and `keys destroy` shreds the secret material of a retired version.

A hard link taken before the clean-up shows that the secret's bytes were overwritten, not just unlinked.
"""

import json
import os
import shutil

from clitools import INSECURE, cli_fails, cli_ok
from fhectl.io.keyring import Keyring


def _leftover(keyring, tmp_path, name=".v2.tmp-0badc0de"):
    """What a rotation killed after writing its secret key leaves: .v2.tmp-XXXXXXXX/secret/secret-key.fhe."""
    tmp = keyring / "default" / name
    (tmp / "secret").mkdir(parents=True, mode=0o700)
    (tmp / "public").mkdir(mode=0o700)
    secret = tmp / "secret" / "secret-key.fhe"
    shutil.copyfile(keyring / "default" / "v1" / "secret" / "secret-key.fhe", secret)
    peek = tmp_path / "peek"
    os.link(secret, peek)  # same inode: sees whether the bytes were overwritten
    return tmp, peek


def test_a_killed_rotations_temporary_directory_is_shredded_on_the_next_run(keyring, tmp_path):
    tmp, peek = _leftover(keyring, tmp_path)
    size = peek.stat().st_size
    cli_ok(keyring, "keys", "list")
    assert not tmp.exists()
    assert peek.stat().st_size == size and not any(peek.read_bytes())  # overwritten with zeros, then unlinked
    assert [kv.version for kv in Keyring(keyring).versions("default")] == [1]


def test_the_clean_up_leaves_a_temporary_directory_alone_while_its_writer_holds_the_lock(keyring, tmp_path):
    writer = Keyring(keyring)
    with writer.lock("default"):  # a live rotation, assembling its version
        tmp, _ = _leftover(keyring, tmp_path)
        Keyring(keyring).versions("default")  # another process: cannot take the lock, so must not clean
        assert tmp.exists()
    Keyring(keyring).versions("default")
    assert not tmp.exists()


def test_keys_destroy_shreds_a_retired_versions_secret(keyring, tmp_path):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    cli_ok(keyring, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "x1.fhe", *INSECURE)
    cli_ok(keyring, "rotate", *INSECURE)
    v1 = keyring / "default" / "v1"
    peek = tmp_path / "peek"
    os.link(v1 / "secret" / "secret-key.fhe", peek)

    cli_fails(keyring, 6, "keys", "destroy", "-n", "default", "-V", "1", "--yes", match="retire")  # active
    cli_fails(keyring, 6, "keys", "destroy", "-n", "default", "-V", "2", "--yes", match="retire")  # primary
    cli_ok(keyring, "rotate", "retire", "1")
    cli_fails(keyring, 2, "keys", "destroy", "-n", "default", "-V", "1", match="--yes")  # no confirmation

    res = cli_ok(keyring, "keys", "destroy", "-n", "default", "-V", "1", "--yes")
    assert "destroyed" in res.stderr
    assert not (v1 / "secret").exists() and not any(peek.read_bytes())
    manifest = json.loads((v1 / "manifest.json").read_text())
    assert all(not rel.startswith("secret/") for rel in manifest["files"]) and manifest["status"] == "retired"

    verified = json.loads(cli_ok(keyring, "keys", "verify", "--json", *INSECURE).stdout)
    assert all(r["ok"] for r in verified["results"]), verified
    assert "secret key destroyed" in next(r for r in verified["results"] if r["version"] == 1)["notes"]
    cli_fails(keyring, 6, "decrypt", tmp_path / "x1.fhe", "-o", tmp_path / "y.npy", *INSECURE)
    cli_fails(keyring, 6, "rotate", "retire", "--undo", "1", match="destroyed")
    cli_fails(keyring, 6, "keys", "destroy", "-n", "default", "-V", "1", "--yes", match="already")
    # the key set stays usable through its primary
    cli_ok(keyring, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "x2.fhe", *INSECURE)
    cli_ok(keyring, "decrypt", tmp_path / "x2.fhe", "-o", tmp_path / "y2.npy", *INSECURE)


def test_a_killed_destroy_is_finished_on_the_next_run(keyring, tmp_path):
    """`keys destroy` rewrites the manifest first; killed before shredding, the next run shreds the rest."""
    cli_ok(keyring, "rotate", *INSECURE)
    cli_ok(keyring, "rotate", "retire", "1")
    v1 = keyring / "default" / "v1"
    peek = tmp_path / "peek"
    os.link(v1 / "secret" / "secret-key.fhe", peek)
    manifest = v1 / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"] = {rel: d for rel, d in doc["files"].items() if not rel.startswith("secret/")}
    doc["sealed"] = False
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")  # the state a kill right here leaves
    cli_ok(keyring, "keys", "list")
    assert not (v1 / "secret").exists() and not any(peek.read_bytes())
    cli_ok(keyring, "keys", "verify", *INSECURE)


def test_two_primaries_left_by_a_killed_rotation_are_repaired_on_the_next_run(keyring):
    """`rotate` writes the new version as primary, then demotes the old one: killed in between, both are
    primary. The next command repairs it, says so once, and every command agrees on the primary."""
    cli_ok(keyring, "rotate", *INSECURE)
    v1 = keyring / "default" / "v1" / "manifest.json"
    doc = json.loads(v1.read_text())
    doc["status"] = "primary"  # the demotion that never happened; its status_changed stays older than v2's
    doc["status_changed"] = "2000-01-01T00:00:00.000000Z"
    v1.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")

    res = cli_ok(keyring, "keys", "list", "--json")
    assert "had 2 primary versions" in res.stderr and "v2, promoted last, stays primary; v1 now active" in res.stderr
    assert [(v["version"], v["status"]) for v in json.loads(res.stdout)["versions"]] == [(1, "active"), (2, "primary")]
    again = cli_ok(keyring, "keys", "list")
    assert "primary versions" not in again.stderr  # repaired once, for good
    cli_ok(keyring, "keys", "verify", *INSECURE)
    cli_ok(keyring, "rotate", "retire", "1")  # the old primary is an ordinary active version again
