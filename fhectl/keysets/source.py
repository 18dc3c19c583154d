"""One key version as CKKS objects: from the keyring (public and secret), or from a public bundle.

Passphrases: this layer never reads a terminal. A caller passes the passphrase as bytes, or as a callable
returning bytes (or None) that is called only when the secret is sealed, so that a command can ask on a
terminal just when it has to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import KeyGenerator, PublicKey, SecretKey, SwitchingKey
from fhectl.ckks.params import Parameters
from fhectl.errors import FormatError, KeyMismatchError, KeyringError
from fhectl.io.container import Container, check_binding
from fhectl.io.keyring import Keyring, KeyVersion
from fhectl.io.objects import container_to_public_key, container_to_secret_key, container_to_switching_key

from .checks import check_secret_matches_public
from .contexts import context_for
from .files import PUBLIC_KEY, SECRET_KEY, rewrap_file, rewrap_sources
from .parameters import parameters_from

Passphrase = bytes | Callable[[], bytes | None] | None


def resolve_passphrase(passphrase: Passphrase, sealed: bool) -> bytes | None:
    """The passphrase bytes to open a secret with: the callable is asked only for a sealed secret."""
    if callable(passphrase):
        return passphrase() if sealed else None
    return passphrase


@dataclass
class KeySource:
    """Public material of one key version (keyring or bundle), with its context; secret access when in a keyring."""

    ctx: CKKSContext
    key_id: str
    version: int
    origin: str  # for messages: "key set 'default' v2" or "bundle x.fhe"
    name: str | None = None
    kv: KeyVersion | None = None
    keyring: Keyring | None = None
    members: dict[str, Container] = field(default_factory=dict)  # bundle members, or keyring files read so far

    @property
    def params(self) -> Parameters:
        return self.ctx.params

    # -- construction -------------------------------------------------------------------------

    @staticmethod
    def from_keyring(keyring: Keyring, name: str, version: int | None, *, allow_insecure: bool, device: str,
                     allow_retired: bool = False) -> "KeySource":
        kv = keyring.get(name, version)
        if kv.status == "retired" and not allow_retired:
            raise KeyringError(f"key version {kv.version} of {name!r} is retired")
        origin = f"key set {name!r} v{kv.version}"
        pk = keyring.read_public(name, kv.version, PUBLIC_KEY, allow_retired=True)
        params = parameters_from(pk.meta.get("parameters"), kv.params_id, kv.profile, origin, allow_insecure)
        return KeySource(context_for(params, device), kv.key_id, kv.version, origin, name=name, kv=kv,
                         keyring=keyring, members={PUBLIC_KEY: pk})

    @staticmethod
    def from_public_members(meta: dict, members: dict[str, Container], origin: str, *, allow_insecure: bool,
                            device: str) -> "KeySource":
        """A key source from a bundle's meta and members (see fhectl.keysets.bundle); public material only."""
        if not members:
            raise FormatError(f"{origin} holds no keys")
        first = next(iter(members.values()))
        version = first.key_version
        if not isinstance(version, int):
            raise FormatError(f"{origin}: members carry no key version")
        for file, c in members.items():
            check_binding(c, params_id=first.params_id, key_id=first.key_id, key_version=version,
                          source=f"{origin} member {file!r}", against="the bundle")
        literal = meta.get("parameters")
        if literal is None and PUBLIC_KEY in members:
            literal = members[PUBLIC_KEY].meta.get("parameters")
        profile = meta.get("profile") if isinstance(meta.get("profile"), str) else None
        params = parameters_from(literal, first.params_id, profile, origin, allow_insecure)
        name = meta.get("name") if isinstance(meta.get("name"), str) else None
        return KeySource(context_for(params, device), first.key_id, version, origin, name=name, members=members)

    # -- public material ---------------------------------------------------------------------

    def public_files(self) -> list[str]:
        if self.kv is not None:
            return list(self.kv.public_files)
        return list(self.members)

    def public(self, file: str) -> Container:
        if file not in self.members:
            if self.keyring is None:
                raise KeyringError(f"{self.origin} has no {file!r} (has: {', '.join(self.members) or 'nothing'})")
            self.members[file] = self.keyring.read_public(self.name, self.version, file, allow_retired=True)
        return self.members[file]

    def public_key(self) -> PublicKey:
        return container_to_public_key(self.ctx, self.public(PUBLIC_KEY), f"{self.origin} public key")

    def rewrap_sources(self) -> list[int]:
        """The old versions this version holds a switching key from."""
        return rewrap_sources(self.public_files())

    def switching_key_from(self, from_version: int, from_key_id: str) -> SwitchingKey:
        file = rewrap_file(from_version)
        if file not in self.public_files():
            have = ", ".join(f"v{v}" for v in self.rewrap_sources()) or "none"
            raise KeyringError(f"{self.origin} has no switching key from version {from_version} "
                               f"(it can rewrap files from: {have})")
        c = self.public(file)
        source = f"{self.origin} {file}"
        if c.meta.get("from_key_id") != from_key_id or c.meta.get("from_version") != from_version:
            raise KeyMismatchError(f"{source} converts from key {c.meta.get('from_key_id')!r} version "
                                   f"{c.meta.get('from_version')!r}, the file is under key {from_key_id!r} "
                                   f"version {from_version}")
        key = container_to_switching_key(self.ctx, c, "switching-key", source)
        if key.source != f"key:{from_key_id}" or key.key_id != self.key_id:
            raise FormatError(f"{source}: switches {key.source} -> {key.key_id}, expected key:{from_key_id} -> "
                              f"{self.key_id}")
        return key

    # -- secret material ---------------------------------------------------------------------

    def secret_key_if_available(self, passphrase: Passphrase = None, *,
                                allow_retired: bool = False) -> SecretKey | None:
        """The secret key; None when this is no keyring version, its secret was destroyed, or it is sealed and
        no passphrase comes (a callable ``passphrase`` is asked once, only for a sealed secret)."""
        if self.kv is None or not self.kv.has_secret:
            return None
        passphrase = resolve_passphrase(passphrase, self.kv.sealed)
        if self.kv.sealed and passphrase is None:
            return None
        return self.secret_key(passphrase, allow_retired=allow_retired)

    def secret_key(self, passphrase: Passphrase = None, *, allow_retired: bool = False) -> SecretKey:
        """The secret key, checked against the public key (so a wrong or damaged secret is caught)."""
        if self.keyring is None or self.kv is None:
            raise KeyringError(f"{self.origin} holds public material only; the secret key is in the keyring")
        c = self.keyring.read_secret(self.name, self.version, SECRET_KEY,
                                     resolve_passphrase(passphrase, self.kv.sealed), allow_retired=allow_retired)
        source = str(self.kv.path / "secret" / f"{SECRET_KEY}.fhe")
        sk = container_to_secret_key(self.ctx, c, KeyGenerator(self.ctx), source)
        check_secret_matches_public(self.ctx, sk, self.public_key(), source)
        return sk
