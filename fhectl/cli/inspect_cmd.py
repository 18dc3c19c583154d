"""`fhectl inspect`: what a file is, from its verified header alone (no secret key, payload unread)."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from fhectl.ckks.params import list_profiles, load_parameters
from fhectl import keysets
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.messages import file_size, human_bytes
from fhectl.cli.options import Json, Keyring
from fhectl.errors import FhectlError
from fhectl.io.container import read_container, read_header

Verify = Annotated[bool, typer.Option("--verify", help="Also read the payload and check its checksum.")]


def known_profile(params_id: str) -> str | None:
    """The name of a bundled profile with this parameters id, if any."""
    for name in list_profiles():
        try:
            if load_parameters(name, allow_insecure=True).params_id == params_id:
                return name
        except FhectlError:
            continue
    return None


def keyring_match(keyring, key_id: str) -> dict | None:
    """Which key set and version of the local keyring holds this key id (None if none does)."""
    ring = keysets.open_keyring(keyring)
    try:
        for name in ring.list_key_sets():
            for kv in ring.versions(name):
                if kv.key_id == key_id:
                    return {"key_set": name, "version": kv.version, "status": kv.status, "keyring": str(ring.root)}
    except (OSError, FhectlError):
        return None
    return None


@guarded
def inspect(
    file: Annotated[str, typer.Argument(help="Any fhectl file: ciphertext, key, or public bundle.")],
    verify: Verify = False,
    keyring: Keyring = None,
    json: Json = False,
) -> None:
    """Show a file's header: kind, parameters, level, scale, key id and version, sizes.

    Reads only the header (its checksum is verified; the payload is not, unless --verify), and
    never needs the secret key. Also says which local key set holds the key, if any.
    """
    header = read_header(file)
    if verify:
        read_container(file)
    meta = dict(header.meta)
    data = {
        "file": file,
        "kind": header.kind,
        "format_version": header.format_version,
        "params_id": header.params_id,
        "profile": known_profile(header.params_id),
        "key_id": header.key_id,
        "key_version": header.key_version,
        "bytes": file_size(file),
        "payload_bytes": header.payload_bytes,
        "payload_verified": verify,
        "arrays": [{"name": a.name, "dtype": a.dtype, "shape": list(a.shape)} for a in header.arrays],
        "keyring": keyring_match(keyring, header.key_id) if header.key_id else None,
    }
    if header.kind == "ciphertext":
        for key in ("level", "size", "count", "slots_used", "data", "origin", "key_switches", "rewrapped_from",
                    "key_set"):
            if key in meta:
                data[key] = meta[key]
        try:
            data["scale_log2"] = round(math.log2(float.fromhex(meta["scale"])), 4)
        except (KeyError, TypeError, ValueError, OverflowError):
            data["scale_log2"] = None
    else:
        members = meta.pop("members", None)
        if isinstance(members, dict):
            data["members"] = {m: {"kind": i.get("kind"), "key_version": i.get("key_version")}
                               for m, i in members.items() if isinstance(i, dict)}
        meta.pop("parameters", None)
        if "encrypted" in meta:
            meta["encrypted"] = {k: meta["encrypted"][k] for k in ("kdf", "n", "r", "p", "aead")
                                 if isinstance(meta["encrypted"], dict) and k in meta["encrypted"]}
        data["meta"] = meta
    if json:
        console.print_json(data)
        return
    line = lambda k, v: console.out.print(f"{k:<14} {v}", markup=False, highlight=False)  # noqa: E731
    line("file", f"{file} ({human_bytes(data['bytes'])})")
    line("kind", f"{header.kind} (container format v{header.format_version})")
    line("parameters", f"{header.params_id}" + (f" (profile {data['profile']})" if data["profile"] else ""))
    version = "" if header.key_version is None else f" version {header.key_version}"
    line("key", f"{header.key_id or '-'}{version}")
    match = data["keyring"]
    line("in keyring", f"key set {match['key_set']!r} v{match['version']} ({match['status']})" if match else "no")
    if header.kind == "ciphertext":
        d = meta.get("data") if isinstance(meta.get("data"), dict) else {}
        line("data", f"{d.get('values')} {d.get('dtype')} values, shape {tuple(d.get('shape') or ())}")
        line("ciphertexts", f"{meta.get('count')} (slots used {meta.get('slots_used')})")
        line("level", meta.get("level"))
        line("scale", f"2^{data['scale_log2']}" if data["scale_log2"] is not None else meta.get("scale"))
        line("history", f"{meta.get('origin')}, {meta.get('key_switches')} key switch(es)")
    elif "members" in data:
        line("members", ", ".join(f"{m} ({i['kind']})" for m, i in data["members"].items()))
    for a in data["arrays"][:8]:
        line("array", f"{a['name']}: {a['dtype']} {tuple(a['shape'])}")
    if len(data["arrays"]) > 8:
        line("array", f"... {len(data['arrays']) - 8} more")
    line("payload", f"{human_bytes(header.payload_bytes)}, "
                    + ("checksum verified" if verify else "not verified (--verify reads it)"))
