"""`keys verify` for one version: the files, every key's contents, and every key against the secret.

In order: fingerprints, permissions and bindings (Keyring.verify); every object loaded into the CKKS
layer (shapes, residues, a degenerate public key refused); then, when the secret is at hand, the secret
against the public key and each evaluation key by a homomorphic round trip (fhectl.keysets.checks):
a well-formed key made for another secret, or damaged on one prime, fails here and not later on a
server or in a rewrap.
"""

from __future__ import annotations

from fhectl.errors import FormatError
from fhectl.io.keyring import Keyring
from fhectl.io.objects import container_to_galois_keys, container_to_switching_key

from .checks import check_galois_keys, check_relin_key, check_rewrap_key
from .files import REWRAP_PREFIX, rewrap_file, rewrap_sources
from .source import KeySource, Passphrase, resolve_passphrase


def verify_version(keyring: Keyring, name: str, version: int, *, passphrase: Passphrase, allow_insecure: bool,
                   device: str = "cpu") -> list[str]:
    """Check one version; returns notes on what was (and was not) checked. FhectlError on the first problem.

    A callable ``passphrase`` is asked at most once, and only if a sealed secret is needed."""
    kv = keyring.verify(name, version)
    keys = KeySource.from_keyring(keyring, name, kv.version, allow_insecure=allow_insecure, device=device,
                                  allow_retired=True)
    ctx = keys.ctx
    keys.public_key()
    relin, galois = {}, {}
    for f in kv.public_files:
        c = keys.public(f)
        if c.kind == "galois-keys":
            galois[f] = container_to_galois_keys(ctx, c, f)
        elif c.kind == "relin-key":
            relin[f] = container_to_switching_key(ctx, c, c.kind, f)
        elif c.kind == "switching-key":
            if [rewrap_file(v) for v in rewrap_sources([f])] != [f]:
                raise FormatError(f"key set {name!r} v{kv.version}: switching key {f!r} is not named "
                                  f"{REWRAP_PREFIX}<version>")
            container_to_switching_key(ctx, c, c.kind, f)
    if not kv.has_secret:
        return ["secret key destroyed"]
    if kv.sealed:
        passphrase = resolve_passphrase(passphrase, True)
        if passphrase is None:
            return ["secret key not checked (sealed; pass --passphrase)"]
    sk = keys.secret_key(passphrase, allow_retired=True)
    notes = ["secret key matches the public key"]
    for f, rlk in relin.items():
        check_relin_key(ctx, sk, rlk, f)
        notes.append(f"{f}: relinearization checked")
    for f, gks in galois.items():
        done = check_galois_keys(ctx, sk, gks, f)
        notes.append(f"{f}: {len(done)} key(s) checked ({', '.join(done)})")
    for old_version in keys.rewrap_sources():
        f = rewrap_file(old_version)
        old = KeySource.from_keyring(keyring, name, old_version, allow_insecure=allow_insecure, device=device,
                                     allow_retired=True)
        swk = keys.switching_key_from(old_version, old.key_id)
        old_sk = old.secret_key_if_available(passphrase, allow_retired=True)
        if old_sk is None:
            notes.append(f"{f}: not checked (the secret of v{old_version} is destroyed)")
            continue
        check_rewrap_key(ctx, old_sk, sk, swk, f)
        notes.append(f"{f}: key switching checked")
    return notes
