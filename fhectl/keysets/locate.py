"""Which keyring version a file was made under, from its header: Tink-style routing by key id."""

from __future__ import annotations

from fhectl.errors import FhectlError, KeyMismatchError, KeyringError
from fhectl.io.container import Container, check_binding
from fhectl.io.keyring import Keyring, KeyVersion


def key_sets_summary(keyring: Keyring) -> str:
    """"default: v1 k-..., v2 k-...; other: ..." for messages."""
    parts = []
    for name in keyring.list_key_sets():
        try:
            parts.append(f"{name}: " + ", ".join(f"v{kv.version} {kv.key_id}" for kv in keyring.versions(name)))
        except FhectlError:
            parts.append(f"{name}: (unreadable)")
    return "; ".join(parts) or "none"


def locate_version(keyring: Keyring, key_id: str, key_version: int | None, params_id: str, name: str | None,
                   source: str) -> KeyVersion:
    """The version whose key id (and version) the header names.

    With ``name`` the file must belong to that key set; without, every key set is searched.
    Wrong parameters, key or version are reported as such, naming both sides.
    """
    verb = "was encrypted under"
    header = Container("ciphertext", params_id, key_id, key_version)
    if name is not None:
        versions = keyring.versions(name)
        if key_version is not None:
            kv = next((v for v in versions if v.version == key_version), None)
            if kv is None:
                raise KeyMismatchError(f"{source} {verb} key {key_id!r} version {key_version}; key set {name!r} "
                                       f"has versions {', '.join(str(v.version) for v in versions)}")
        else:
            kv = next((v for v in versions if v.key_id == key_id), versions[-1])
        check_binding(header, params_id=kv.params_id, source=source,
                      against=f"key set {name!r} v{kv.version} ({kv.profile})")
        check_binding(header, key_id=kv.key_id, source=source, against=f"key set {name!r} v{kv.version}")
        return kv
    if not keyring.root.is_dir():
        raise KeyringError(f"no keyring at {keyring.root} (set --keyring or FHECTL_KEYRING)")
    unreadable = []
    for set_name in keyring.list_key_sets():
        try:
            versions = keyring.versions(set_name)
        except KeyringError as exc:
            unreadable.append(str(exc))
            continue
        for kv in versions:
            if kv.key_id == key_id:
                if key_version is not None and kv.version != key_version:
                    raise KeyMismatchError(f"{source} {verb} key {key_id!r} version {key_version}, but key set "
                                           f"{set_name!r} holds that key as version {kv.version}")
                check_binding(header, params_id=kv.params_id, source=source,
                              against=f"key set {set_name!r} v{kv.version} ({kv.profile})")
                return kv
    found = "no key version" if key_version is None else f"version {key_version}"
    if unreadable:
        raise KeyringError(f"{source} {verb} key {key_id!r} {found}, which is in no readable key set of keyring "
                           f"{keyring.root}; unreadable: {'; '.join(unreadable)}")
    raise KeyMismatchError(f"{source} {verb} key {key_id!r} {found}, which is in no key set of keyring "
                           f"{keyring.root} (key sets: {key_sets_summary(keyring)})")
