"""A new key version: same parameters, rotations and conjugation, and a switching key from every version
still in use (not retired) to it, stored with its public files so that a server can rewrap without
any secret."""

from __future__ import annotations

from dataclasses import dataclass

from fhectl.ckks.params import Parameters
from fhectl.errors import KeyMismatchError
from fhectl.io.keyring import Keyring, KeyVersion

from .files import GALOIS_KEYS, rewrap_file
from .generation import Tick, generate_key_material, rewrap_key_container
from .source import KeySource


@dataclass(frozen=True)
class Rotation:
    """What a rotation made: the new primary, its parameters, the previous primary and the rewrap sources."""

    new: KeyVersion
    params: Parameters
    previous_primary: int
    rewraps_from: list[int]


def rotation_steps(keyring: Keyring, name: str) -> int:
    """How many ticks :func:`rotate_key_set` gives (for a progress bar's total)."""
    current = keyring.get(name)
    sources = [kv for kv in keyring.versions(name) if kv.status != "retired"]
    steps, conjugation = 0, False
    if GALOIS_KEYS in current.public_files:
        meta = keyring.read_public(name, current.version, GALOIS_KEYS).meta
        steps, conjugation = len(meta.get("steps", [])), bool(meta.get("conjugation", False))
    return 2 * len(sources) + 3 + steps + int(conjugation)


def rotate_key_set(keyring: Keyring, name: str, *, passphrase: bytes | None, allow_insecure: bool,
                   device: str = "cpu", tick: Tick = lambda what: None) -> Rotation:
    """Make version max+1 the primary, under the key set's lock.

    Every non-retired version's secret is read (``passphrase`` opens sealed ones, and seals the new
    version), checked against its public key, and joined to the new secret by a switching key.
    """
    with keyring.lock(name):
        versions = keyring.versions(name)
        current = keyring.get(name)
        sources = [kv for kv in versions if kv.status != "retired"]
        keys = KeySource.from_keyring(keyring, name, current.version, allow_insecure=allow_insecure, device=device)
        params, ctx = keys.params, keys.ctx
        steps, conjugation = [], False
        if GALOIS_KEYS in current.public_files:
            meta = keys.public(GALOIS_KEYS).meta
            steps, conjugation = list(meta.get("steps", [])), bool(meta.get("conjugation", False))
        old_secrets = {}
        for kv in sources:
            if kv.params_id != params.params_id:
                raise KeyMismatchError(f"version {kv.version} of {name!r} uses parameter set {kv.params_id!r}, the "
                                       f"primary {params.params_id!r}: no switching key can join them")
            src = keys if kv.version == current.version else KeySource.from_keyring(
                keyring, name, kv.version, allow_insecure=allow_insecure, device=device)
            old_secrets[kv.version] = src.secret_key(passphrase)
            tick(f"read secret v{kv.version}")
        sk, secret, public = generate_key_material(ctx, steps, conjugation, tick)
        for v, old_sk in old_secrets.items():
            public[rewrap_file(v)] = rewrap_key_container(ctx, old_sk, v, sk)
            tick(f"switching key v{v} -> new")
        new = keyring.create_key_set(name, versions[-1].version + 1, current.profile, params.params_id, sk.key_id,
                                     secret, public, passphrase=passphrase, status="primary")
    return Rotation(new, params, current.version, sorted(old_secrets))
