"""A version's public material as one file (a "keyset-public" container), built and loaded here only.

`fhectl keys export` writes one, an evaluating or rewrapping server loads one: both through this module,
which never opens a secret key. The bundle's meta names the key set and carries the parameters literal
(copied from the public key's meta), so the server rebuilds the parameters without the profile file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import BinaryIO

from fhectl.errors import InputError, KeyringError
from fhectl.io.container import Container, bundle_containers, encode_container, write_container
from fhectl.io.keyring import Keyring, KeyVersion, read_public_export

from .files import PUBLIC_KEY
from .source import KeySource

BUNDLE_KIND = "keyset-public"


@dataclass(frozen=True)
class PublicBundle:
    """The bundle of one version's public files, ready to write."""

    container: Container
    version: KeyVersion
    files: list[str]

    def encode(self) -> bytes:
        return encode_container(self.container)

    def write(self, path: str | os.PathLike, *, overwrite: bool = False) -> str:
        """Write the bundle (mode 0644, atomically; exclusively unless ``overwrite``); returns its sha256 hex."""
        return write_container(path, self.container, mode=0o644, exclusive=not overwrite)


def public_bundle(keyring: Keyring, name: str, version: int | None = None,
                  files: list[str] | None = None) -> PublicBundle:
    """Bundle the public files (all, or those named) of a version (default: the primary); never a secret.

    A retired version is refused: its files are no longer meant to be used.
    """
    kv = keyring.get(name, version)
    if kv.status == "retired":
        raise KeyringError(f"key version {kv.version} of {name!r} is retired; export the primary version")
    wanted = list(kv.public_files) if not files else list(dict.fromkeys(files))
    missing = sorted(set(wanted) - set(kv.public_files))
    if missing:
        raise InputError(f"key set {name!r} v{kv.version} has no public files {missing} "
                         f"(has: {', '.join(kv.public_files)})")
    if not wanted:
        raise KeyringError(f"key set {name!r} version {kv.version} has no public files to export")
    members = {f: keyring.read_public(name, kv.version, f) for f in wanted}
    pk = members.get(PUBLIC_KEY) or keyring.read_public(name, kv.version, PUBLIC_KEY)
    meta = {"name": name, "profile": kv.profile, "created": kv.created}
    if pk.meta.get("parameters") is not None:
        meta["parameters"] = pk.meta["parameters"]
    container = bundle_containers(BUNDLE_KIND, members, params_id=kv.params_id, key_id=kv.key_id,
                                  key_version=kv.version, meta=meta)
    return PublicBundle(container, kv, wanted)


def load_public_bundle(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, *,
                       allow_insecure: bool, device: str = "cpu", max_bytes: int | None = None,
                       name: str | None = None, mmap: bool = False) -> KeySource:
    """A key source from a bundle: a path, the bundle's bytes, or a binary stream (read to its end, or to
    ``max_bytes`` + 1 bytes so that an oversized upload is refused without being held whole).

    Fully verified (checksums, bindings of every member to the bundle, parameters against the params id);
    public keys only, so nothing here can decrypt. ``name`` labels messages for bytes and streams;
    ``mmap`` maps a path's arrays instead of reading them (for a server holding many large bundles).
    """
    if hasattr(source, "read"):
        data = source.read(-1 if max_bytes is None else max_bytes + 1)
        if not isinstance(data, (bytes, bytearray)):
            raise InputError(f"{name or 'bundle stream'}: not a binary stream")
        source = data
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = f"bundle {name}" if name else "bundle (bytes)"
        meta, members = read_public_export(source, max_bytes=max_bytes, source_name=label)
    else:
        label = f"bundle {os.fspath(source)}"
        meta, members = read_public_export(source, max_bytes=max_bytes, mmap=mmap)
    return KeySource.from_public_members(meta, members, label, allow_insecure=allow_insecure, device=device)
