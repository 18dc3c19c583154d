"""`fhectl rotate`, `rotate rewrap` (resumable, atomic, locked) and `rotate retire`."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np

from clitools import INSECURE, cli, cli_fails, cli_ok, subprocess_env, subprocess_fhectl
from fhectl.ckks.encryptor import Decryptor
from fhectl import keysets
from fhectl.io.ciphertext_files import encrypt_array
from fhectl.io.container import read_container, read_header, write_container
from fhectl.io.keyring import Keyring
from fhectl.io.objects import container_to_ciphertexts

KILL_SEED = 7342
TOL = 2.0**-20


def _encrypt_files(keyring, directory, count, rng, values=8):
    """``count`` small ciphertext files written by the encrypt command's own code (one key load for all)."""
    keys = keysets.KeySource.from_keyring(Keyring(keyring), "default", None, allow_insecure=True, device="cpu")
    directory.mkdir(parents=True, exist_ok=True)
    originals = {}
    for i in range(count):
        x = rng.uniform(-1, 1, values)
        container, _ = encrypt_array(keys, x)
        path = directory / f"f{i:04d}.fhe"
        write_container(path, container)
        originals[path.name] = x
    return originals


def _decrypt_all(keyring, directory, originals, version):
    keys = keysets.KeySource.from_keyring(Keyring(keyring), "default", version, allow_insecure=True, device="cpu")
    dec = Decryptor(keys.ctx, keys.secret_key(None))
    for name, x in originals.items():
        c = read_container(directory / name)
        assert c.key_version == version and c.key_id == keys.key_id, name
        assert c.meta["key_switches"] == version - 1
        got = dec.decrypt(container_to_ciphertexts(keys.ctx, c, name)[0])
        assert np.max(np.abs(got - x)) < TOL, name


def test_rotate_rewrap_retire(keyring, tmp_path, data_rng):
    x = data_rng.uniform(-3, 3, 900)
    np.save(tmp_path / "x.npy", x)
    files = tmp_path / "files"
    files.mkdir()
    cli_ok(keyring, "encrypt", tmp_path / "x.npy", "-o", files / "a.fhe", *INSECURE)
    cli_ok(keyring, "encrypt", tmp_path / "x.npy", "-o", tmp_path / "kept-v1.fhe", *INSECURE)

    rep = json.loads(cli_ok(keyring, "rotate", "--json", *INSECURE).stdout)
    assert rep["version"] == 2 and rep["status"] == "primary" and rep["previous_primary"] == 1
    assert rep["rotations"] == [-1, 1] and rep["rewraps_from_versions"] == [1]
    v2 = keyring / "default" / "v2"
    assert stat.S_IMODE(os.stat(v2 / "secret" / "secret-key.fhe").st_mode) == 0o600
    assert (v2 / "public" / "rewrap-from-v1.fhe").is_file()  # with the public part: a server can rewrap
    listed = json.loads(cli_ok(keyring, "keys", "list", "--json").stdout)["versions"]
    assert [(v["version"], v["status"]) for v in listed] == [(1, "active"), (2, "primary")]

    cli_ok(keyring, "encrypt", tmp_path / "x.npy", "-o", files / "b.fhe", *INSECURE)  # new files use v2
    assert read_header(files / "b.fhe").key_version == 2
    cli_ok(keyring, "decrypt", tmp_path / "kept-v1.fhe", *INSECURE)  # v1 still decrypts before retirement

    before = (files / "a.fhe").read_bytes()
    rep = json.loads(cli_ok(keyring, "rotate", "rewrap", files, "--json", *INSECURE).stdout)
    assert (rep["rewrapped"], rep["already_current"], rep["failed"]) == (1, 1, 0)
    assert (files / "a.fhe").read_bytes() != before and read_header(files / "a.fhe").key_version == 2
    again = json.loads(cli_ok(keyring, "rotate", "rewrap", files, "--json", *INSECURE).stdout)
    assert (again["rewrapped"], again["already_current"]) == (0, 2)  # idempotent
    for f in ("a.fhe", "b.fhe"):
        cli_ok(keyring, "decrypt", files / f, "-o", tmp_path / f"{f}.npy", *INSECURE)
        assert np.max(np.abs(np.load(tmp_path / f"{f}.npy") - x)) < TOL
    meta = read_header(files / "a.fhe").meta
    assert meta["key_switches"] == 1 and meta["rewrapped_from"][0]["key_version"] == 1

    cli_fails(keyring, 6, "rotate", "retire", "2", match="primary")
    cli_ok(keyring, "rotate", "retire", "1")
    res = cli_fails(keyring, 6, "decrypt", tmp_path / "kept-v1.fhe", *INSECURE)
    assert "key version 1" in res.stderr and "retired" in res.stderr
    res = cli_fails(keyring, 6, "rotate", "rewrap", tmp_path / "kept-v1.fhe", *INSECURE)
    assert "version 1" in res.stderr and "retired" in res.stderr
    cli_ok(keyring, "rotate", "retire", "1", "--undo")
    cli_ok(keyring, "decrypt", tmp_path / "kept-v1.fhe", *INSECURE)


def test_rewrap_on_a_server_with_only_the_switching_key(keyring, tmp_path, data_rng):
    originals = _encrypt_files(keyring, tmp_path / "files", 5, data_rng)
    cli_ok(keyring, "rotate", *INSECURE)
    cli_ok(keyring, "keys", "export", "--files", "rewrap-from-v1", "-o", tmp_path / "rewrap.bundle")
    server = tmp_path / "server-has-no-keyring"
    rep = json.loads(cli_ok(server, "rotate", "rewrap", tmp_path / "files", "--bundle", tmp_path / "rewrap.bundle",
                            "--json", *INSECURE).stdout)
    assert rep["rewrapped"] == 5 and not server.exists()
    _decrypt_all(keyring, tmp_path / "files", originals, 2)


def test_rewrap_reports_foreign_files_and_continues(keyring, tmp_path, data_rng):
    originals = _encrypt_files(keyring, tmp_path / "files", 3, data_rng)
    cli_ok(keyring, "keygen", "--name", "other", "--profile", "tiny-insecure", *INSECURE)
    (tmp_path / "x.txt").write_text("1 2\n")
    cli_ok(keyring, "encrypt", tmp_path / "x.txt", "--name", "other", "-o", tmp_path / "files" / "foreign.fhe",
           *INSECURE)
    (tmp_path / "files" / "junk.fhe").write_bytes(b"not a container")
    (tmp_path / "files" / "link.fhe").symlink_to(tmp_path / "files" / "f0000.fhe")
    cli_ok(keyring, "rotate", *INSECURE)
    res = cli(keyring, "rotate", "rewrap", tmp_path / "files", "--json", *INSECURE)
    rep = json.loads(res.stdout)
    assert res.exit_code == 6 and rep["rewrapped"] == 3 and rep["failed"] == 2  # exit code of the first failure
    assert "foreign.fhe" in res.stderr and "junk.fhe" in res.stderr and "Traceback" not in res.stderr
    cli_fails(keyring, 2, "rotate", "rewrap", tmp_path / "files" / "link.fhe", *INSECURE, match="symbolic link")
    for f in originals:
        assert read_header(tmp_path / "files" / f).key_version == 2
    cli_fails(keyring, 6, "rotate", "rewrap", tmp_path / "files", "--fail-fast", *INSECURE, match="foreign.fhe")


def test_concurrent_runs_are_locked_out(keyring, tmp_path, data_rng):
    _encrypt_files(keyring, tmp_path / "files", 1, data_rng)
    cli_ok(keyring, "rotate", *INSECURE)
    with Keyring(keyring).lock("default"):  # another process's rewrap or rotate, as far as flock can tell
        cli_fails(keyring, 6, "rotate", "rewrap", tmp_path / "files", *INSECURE, match="holds the lock")
        cli_fails(keyring, 6, "rotate", *INSECURE, match="holds the lock")
    assert read_header(tmp_path / "files" / "f0000.fhe").key_version == 1


def test_stale_temporaries_of_a_killed_run_are_removed(keyring, tmp_path, data_rng):
    _encrypt_files(keyring, tmp_path / "files", 2, data_rng)
    stale = tmp_path / "files" / ".f0000.fhe.0123456789ab.tmp"
    stale.write_bytes(b"half a file")
    unrelated = tmp_path / "files" / ".someone-else.0123456789ab.tmp"
    unrelated.write_bytes(b"")
    cli_ok(keyring, "rotate", *INSECURE)
    rep = json.loads(cli_ok(keyring, "rotate", "rewrap", tmp_path / "files", "--json", *INSECURE).stdout)
    assert rep["stale_temporaries_removed"] == 1 and not stale.exists() and unrelated.exists()


def _count_done(files, version):
    done = 0
    for f in files:
        try:
            done += read_header(f).key_version == version
        except Exception:  # noqa: BLE001 - a file must never be unreadable; asserted after the kill
            pass
    return done


def test_rewrap_killed_at_random_points_then_resumed(keyring, tmp_path):
    """A few hundred files; SIGKILL a subprocess rewrap three times at random moments, then resume:
    every file must be intact after every kill and decrypt correctly under the new key at the end."""
    rng = np.random.default_rng(KILL_SEED)
    directory = tmp_path / "files"
    originals = _encrypt_files(keyring, directory, 300, rng)
    files = sorted(directory.glob("*.fhe"))
    cli_ok(keyring, "rotate", *INSECURE)
    env = subprocess_env(keyring)
    kills = 0
    for _ in range(3):
        before = _count_done(files, 2)
        if before == len(files):
            break
        # Kill once a random number of further files (1 to 40) has been rewritten, plus a random delay.
        target = before + int(rng.integers(1, 41))
        delay = float(rng.uniform(0, 0.02))
        proc = subprocess.Popen([sys.executable, "-m", "fhectl.cli", "rotate", "rewrap", str(directory), *INSECURE],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _count_done(files, 2) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        proc.stderr.close()
        for f in files:  # after every kill: each file is a complete old or a complete new one
            c = read_container(f)
            assert c.key_version in (1, 2), f
        assert _count_done(files, 2) >= before
    assert kills >= 2
    leftovers = list(directory.glob(".*.tmp"))
    res = subprocess_fhectl(keyring, "rotate", "rewrap", directory, "--json", *INSECURE)
    assert res.returncode == 0, res.stderr
    rep = json.loads(res.stdout)
    assert rep["rewrapped"] + rep["already_current"] == len(files) and rep["already_current"] > 0
    assert rep["stale_temporaries_removed"] == len(leftovers)
    assert not list(directory.glob(".*.tmp"))
    _decrypt_all(keyring, directory, originals, 2)


def test_second_rotation_rewraps_in_one_hop_from_any_active_version(keyring, tmp_path, data_rng):
    originals = _encrypt_files(keyring, tmp_path / "v1files", 2, data_rng)
    cli_ok(keyring, "rotate", *INSECURE)
    rep = json.loads(cli_ok(keyring, "rotate", "--json", *INSECURE).stdout)
    assert rep["version"] == 3 and sorted(rep["rewraps_from_versions"]) == [1, 2]
    cli_ok(keyring, "rotate", "rewrap", tmp_path / "v1files", *INSECURE)
    keys = keysets.KeySource.from_keyring(Keyring(keyring), "default", 3, allow_insecure=True, device="cpu")
    dec = Decryptor(keys.ctx, keys.secret_key(None))
    for name, x in originals.items():
        c = read_container(tmp_path / "v1files" / name)
        assert c.key_version == 3 and c.meta["key_switches"] == 1  # one key switch, straight from v1
        got = dec.decrypt(container_to_ciphertexts(keys.ctx, c, name)[0])
        assert np.max(np.abs(got - x)) < TOL


def test_keyring_and_bundle_rewraps_of_the_same_files_take_one_lock(keyring, tmp_path, data_rng):
    """A server rewrapping with a bundle and the key holder rewrapping from the keyring must not run on the
    same files at once (each would remove the other's temporary files, or rewrap to another version)."""
    _encrypt_files(keyring, tmp_path / "files", 2, data_rng)
    cli_ok(keyring, "rotate", *INSECURE)
    cli_ok(keyring, "keys", "export", "--files", "rewrap-from-v1", "-o", tmp_path / "rewrap.bundle")
    server = tmp_path / "server-has-no-keyring"
    meanwhile = []

    def at_each_file(done, total):  # the keyring rewrap holds its locks here
        if not meanwhile:
            meanwhile.append(cli(server, "rotate", "rewrap", tmp_path / "files", "--bundle",
                                 tmp_path / "rewrap.bundle", *INSECURE))

    report = keysets.rewrap_files([tmp_path / "files"], keyring=Keyring(keyring), allow_insecure=True,
                                  progress=at_each_file)
    assert len(report.rewrapped) == 2
    assert meanwhile[0].exit_code == 6 and "another fhectl process is rewrapping files in" in meanwhile[0].stderr
    with keysets.rewrap.files_lock([tmp_path / "files" / "f0000.fhe"]):  # and the other way round
        cli_fails(keyring, 6, "rotate", "rewrap", tmp_path / "files", *INSECURE, match="rewrapping files in")
