"""Issue 12, item 3: `keys verify` checks every key against the secret by a homomorphic round trip, and
`rotate rewrap` never replaces a file with a rewrapped one that does not decrypt to what it held.

The forged keys here are well formed: right shapes, residues, bindings and manifest fingerprints (as an
attacker with write access, or a buggy tool, would leave them); only the secret can tell them apart.
"""

import hashlib
import json

import numpy as np

from clitools import INSECURE, cli, cli_fails, cli_ok
from fhectl.ckks.keys import KeyGenerator
from fhectl.io.container import read_container, read_header, write_container
from fhectl.io.keyring import Keyring
from fhectl.io.objects import galois_keys_to_container, switching_key_to_container
from fhectl.keysets import KeySource, rewrap_key_container


def _install(keyring, version: int, file: str, container) -> None:
    """Write ``container`` as public/<file>.fhe of key set 'default' v<version>, and its fingerprint."""
    vdir = keyring / "default" / f"v{version}"
    rel = f"public/{file}.fhe"
    write_container(vdir / rel, container, mode=0o644)
    manifest = vdir / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"][rel] = hashlib.sha256((vdir / rel).read_bytes()).hexdigest()
    manifest.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _keys(keyring, version: int = 1) -> KeySource:
    return KeySource.from_keyring(Keyring(keyring), "default", version, allow_insecure=True, device="cpu",
                                  allow_retired=True)


def _impostor(keys: KeySource):
    """A fresh secret wearing the victim's key id: keys made from it carry every right binding."""
    sk = KeyGenerator(keys.ctx).secret_key()
    sk.key_id = keys.key_id
    return sk


def _verify_fails(keyring, *needles):
    res = cli(keyring, "keys", "verify", *INSECURE)
    assert res.exit_code == 6, res.stdout + res.stderr
    assert "FAILED" in res.stdout and "Traceback" not in res.stderr
    for needle in needles:
        assert needle in res.stdout, (needle, res.stdout)
    return res


def test_verify_checks_every_key_by_a_round_trip(keyring):
    cli_ok(keyring, "rotate", *INSECURE)
    report = json.loads(cli_ok(keyring, "keys", "verify", "--json", *INSECURE).stdout)
    v2 = next(r for r in report["results"] if r["version"] == 2)
    assert v2["ok"] and v2["notes"] == ["secret key matches the public key", "relin-key: relinearization checked",
                                        "galois-keys: 2 key(s) checked (rotation by 1, rotation by -1)",
                                        "rewrap-from-v1: key switching checked"]


def test_verify_refuses_a_relin_key_made_for_another_secret(keyring):
    keys = _keys(keyring)
    rlk = KeyGenerator(keys.ctx).relin_key(_impostor(keys))
    _install(keyring, 1, "relin-key", switching_key_to_container(keys.ctx, rlk, "relin-key", 1))
    _verify_fails(keyring, "relin-key: a relinearized product", "wrong or damaged")


def test_verify_refuses_galois_keys_made_for_another_secret(keyring):
    keys = _keys(keyring)
    gks = KeyGenerator(keys.ctx).galois_keys(_impostor(keys), [1, -1])
    c = galois_keys_to_container(keys.ctx, gks, 1)
    c.meta.update({"steps": [1, -1], "conjugation": False})
    _install(keyring, 1, "galois-keys", c)
    _verify_fails(keyring, "galois-keys: rotation by", "wrong or damaged")


def test_verify_refuses_a_galois_key_damaged_on_its_top_prime_only(keyring):
    """Ordinary decryption reads only the first primes: this key would pass it, and fail after a rescale."""
    keys = _keys(keyring)
    c = read_container(keyring / "default" / "v1" / "public" / "galois-keys.fhe")
    top = keys.params.max_level
    rng = np.random.default_rng(5)
    name = sorted(n for n in c.arrays if n.endswith("b/0"))[0]  # one key's first digit
    damaged = c.arrays[name].copy()
    damaged[top] = rng.integers(0, keys.params.moduli_q[top], damaged.shape[-1], dtype=np.uint64)
    c.arrays[name] = damaged
    _install(keyring, 1, "galois-keys", c)
    _verify_fails(keyring, f"limb {top}", "damaged on that prime")


def _bad_rewrap_key(keyring):
    """After a rotation: replace v2's rewrap-from-v1 by a switching key from another secret (bound to v1)."""
    old, new = _keys(keyring, 1), _keys(keyring, 2)
    c = rewrap_key_container(new.ctx, _impostor(old), 1, new.secret_key(None))
    _install(keyring, 2, "rewrap-from-v1", c.__class__(c.kind, c.params_id, c.key_id, 2, c.meta, c.arrays))


def test_verify_refuses_a_rewrap_key_from_another_secret(keyring):
    cli_ok(keyring, "rotate", *INSECURE)
    _bad_rewrap_key(keyring)
    _verify_fails(keyring, "rewrap-from-v1: a key-switched encryption", "wrong or damaged")


def test_rewrap_with_a_wrong_switching_key_leaves_every_file_as_it_was(keyring, tmp_path):
    files = tmp_path / "files"
    files.mkdir()
    (tmp_path / "x.txt").write_text("1 2 3\n")
    for name in ("a.fhe", "b.fhe"):
        cli_ok(keyring, "encrypt", tmp_path / "x.txt", "-o", files / name, *INSECURE)
    before = {p.name: p.read_bytes() for p in files.iterdir()}
    cli_ok(keyring, "rotate", *INSECURE)
    _bad_rewrap_key(keyring)

    res = cli_fails(keyring, 6, "rotate", "rewrap", files, *INSECURE, match="does not decrypt under the new key")
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]) == 1
    assert "left as it was" in res.stderr
    assert {p.name: p.read_bytes() for p in files.iterdir()} == before  # no file replaced, no temporary left
    cli_ok(keyring, "decrypt", files / "a.fhe", *INSECURE)  # still decrypts under v1


def test_rewrap_says_whether_it_checked(keyring, tmp_path):
    (tmp_path / "x.txt").write_text("1 2 3\n")
    cli_ok(keyring, "encrypt", tmp_path / "x.txt", "-o", tmp_path / "a.fhe", *INSECURE)
    cli_ok(keyring, "rotate", *INSECURE)
    rep = json.loads(cli_ok(keyring, "rotate", "rewrap", tmp_path / "a.fhe", "--json", *INSECURE).stdout)
    assert rep["rewrapped"] == 1 and rep["checked"] is True
    assert read_header(tmp_path / "a.fhe").key_version == 2
    out = cli_ok(keyring, "decrypt", tmp_path / "a.fhe", *INSECURE).stdout
    assert np.allclose([float(v) for v in out.split()], [1, 2, 3], atol=1e-6)


def test_a_sealed_key_sets_rewrap_is_checked_when_the_passphrase_is_given(tmp_path):
    ring, env = tmp_path / "ring", {"PW": "correct horse battery staple"}
    cli_ok(ring, "keygen", "--profile", "tiny-insecure", "--passphrase", "env:PW", *INSECURE, env=env)
    (tmp_path / "x.txt").write_text("1 2 3\n")
    for name in ("a.fhe", "b.fhe"):
        cli_ok(ring, "encrypt", tmp_path / "x.txt", "-o", tmp_path / name, *INSECURE)
    cli_ok(ring, "rotate", "--passphrase", "env:PW", *INSECURE, env=env)
    res = cli_ok(ring, "rotate", "rewrap", tmp_path / "a.fhe", *INSECURE)  # no secret needed to rewrap
    assert "not checked" in res.stderr and "--passphrase" in res.stderr
    rep = json.loads(cli_ok(ring, "rotate", "rewrap", tmp_path / "b.fhe", "--passphrase", "env:PW", "--json",
                            *INSECURE, env=env).stdout)
    assert rep["rewrapped"] == 1 and rep["checked"] is True
