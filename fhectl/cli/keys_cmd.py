"""`fhectl keys list|show|export|verify|destroy`: the keyring's key sets, never their secret values."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fhectl.cli import console, keysets
from fhectl.cli.errors import guarded
from fhectl.cli.options import Device, Force, Insecure, Json, Keyring, KeyName, KeyVersion, Output, Passphrase
from fhectl.errors import FhectlError, InputError, KeyringError
from fhectl.io.container import bundle_containers, encode_container, write_container
from fhectl.io.objects import container_to_galois_keys, container_to_switching_key

app = typer.Typer(help="List, show, export, verify and destroy key sets in the keyring.", no_args_is_help=True)

Files = Annotated[
    Optional[str],
    typer.Option("--files", help="Comma-separated public files to export (default all), e.g. "
                                 "rewrap-from-v1 for a rewrap server, public-key for encryption only."),
]


@app.command("list")
@guarded
def list_keys(keyring: Keyring = None, json: Json = False) -> None:
    """Every key set and version: status, key id, profile, creation time, whether the secret is sealed."""
    ring = keysets.open_keyring(keyring)
    rows = []
    for name in ring.list_key_sets():
        for kv in ring.versions(name):
            rows.append({"key_set": name, "version": kv.version, "status": kv.status, "key_id": kv.key_id,
                         "profile": kv.profile, "params_id": kv.params_id, "created": kv.created,
                         "sealed": kv.sealed, "has_secret": kv.has_secret,
                         "fingerprint": keysets.fingerprint(kv)})
    if json:
        console.print_json({"keyring": str(ring.root), "versions": rows})
        return
    if not rows:
        keysets.say(f"no key sets in {ring.root} (create one with `fhectl keygen`)")
        return
    if console.out.is_terminal:
        table = Table(title=f"keyring {ring.root}")
        for col in ("key set", "version", "status", "key id", "profile", "created", "secret"):
            table.add_column(col, no_wrap=True)
        for r in rows:
            table.add_row(r["key_set"], str(r["version"]), r["status"], r["key_id"], r["profile"], r["created"],
                          _secret_state(r))
        console.out.print(table)
        return
    for r in rows:  # one line per version, for grep and awk
        print(f"{r['key_set']}\tv{r['version']}\t{r['status']}\t{r['key_id']}\t{r['profile']}\t{r['created']}\t"
              f"{_secret_state(r).split()[0]}")


def _secret_state(row: dict) -> str:
    if not row["has_secret"]:
        return "destroyed"
    return "sealed" if row["sealed"] else "plain 0600"


@app.command("show")
@guarded
def show(name: KeyName = "default", version: KeyVersion = None, keyring: Keyring = None,
         insecure: Insecure = False, json: Json = False) -> None:
    """One version (default: the primary): key id, fingerprint, parameters, rotations, files and sizes."""
    ring = keysets.open_keyring(keyring)
    kv = ring.get(name, version)
    params = None
    try:
        params = keysets.KeySource.from_keyring(ring, name, kv.version, allow_insecure=True, device="cpu",
                                                allow_retired=True).params
    except FhectlError as exc:
        keysets.say(f"warning: cannot load the parameters: {exc}")
    data = keysets.describe_version(kv, params)
    if json:
        console.print_json(data)
    else:
        keysets.print_version(data, console.out)


@app.command("export")
@guarded
def export(
    output: Output = "-",
    name: KeyName = "default",
    version: KeyVersion = None,
    files: Files = None,
    force: Force = False,
    keyring: Keyring = None,
    json: Json = False,
) -> None:
    """Bundle a version's public material into one file; never the secret key.

    Public, relinearization, Galois and rewrap keys (or those named by --files), for an evaluating
    or rewrapping server."""
    if output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write a binary bundle to a terminal; use -o FILE or redirect stdout")
    if json and output == "-":
        raise InputError("--json prints the report on stdout, which the bundle already uses; add -o FILE")
    ring = keysets.open_keyring(keyring)
    kv = ring.get(name, version)
    if kv.status == "retired":
        raise KeyringError(f"key version {kv.version} of {name!r} is retired; export the primary version")
    wanted = kv.public_files if not files else [f.strip() for f in files.split(",") if f.strip()]
    missing = sorted(set(wanted) - set(kv.public_files))
    if missing:
        raise InputError(f"key set {name!r} v{kv.version} has no public files {missing} "
                         f"(has: {', '.join(kv.public_files)})")
    members = {f: ring.read_public(name, kv.version, f) for f in wanted}
    pk = members.get(keysets.PUBLIC_KEY) or ring.read_public(name, kv.version, keysets.PUBLIC_KEY)
    literal = pk.meta.get("parameters")
    meta = {"name": name, "profile": kv.profile, "created": kv.created}
    if literal is not None:
        meta["parameters"] = literal
    bundle = bundle_containers("keyset-public", members, params_id=kv.params_id, key_id=kv.key_id,
                               key_version=kv.version, meta=meta)
    if output == "-":
        data = encode_container(bundle)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        size = len(data)
    else:
        if not force and Path(output).exists():
            raise InputError(f"{output}: already exists; refusing to overwrite it (--force replaces it)")
        write_container(output, bundle, mode=0o644, exclusive=not force)
        size = keysets.file_size(output)
    report = {"output": output, "key_set": name, "version": kv.version, "key_id": kv.key_id,
              "fingerprint": keysets.fingerprint(kv), "files": wanted, "bytes": size}
    if json:
        console.print_json(report)
    else:
        keysets.say(f"exported {', '.join(wanted)} of key set {name!r} v{kv.version} ({kv.key_id}) to "
                    f"{output}: {keysets.human_bytes(size)}; no secret material")


def _deep_check(ring, name: str, kv, insecure: bool, device: str, passphrase: str | None) -> list[str]:
    """Load every object into the CKKS layer (residue and shape checks), and the secret against the public key."""
    notes = []
    keys = keysets.KeySource.from_keyring(ring, name, kv.version, allow_insecure=insecure, device=device,
                                          allow_retired=True)
    keys.public_key()
    for f in kv.public_files:
        c = keys.public(f)
        if c.kind == "galois-keys":
            container_to_galois_keys(keys.ctx, c, f)
        elif c.kind in ("relin-key", "switching-key"):
            container_to_switching_key(keys.ctx, c, c.kind, f)
    if not kv.has_secret:
        notes.append("secret key destroyed")
    elif kv.sealed and passphrase is None and not sys.stdin.isatty():
        notes.append("secret key not checked (sealed; pass --passphrase)")
    else:
        keys.secret_key(passphrase, allow_retired=True)
        notes.append("secret key matches the public key")
    return notes


@app.command("verify")
@guarded
def verify(
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Key set (default: every key set).")] = None,
    version: KeyVersion = None,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "cpu",
    json: Json = False,
) -> None:
    """Check fingerprints, permissions, bindings, every key's contents, and the secret against the public key.

    Exit 6 if anything is wrong."""
    ring = keysets.open_keyring(keyring)
    names = [name] if name else ring.list_key_sets()
    if not names:
        raise KeyringError(f"no key sets in {ring.root}")
    results, failed = [], False
    for n in names:
        versions = [ring.get(n, version)] if version else ring.versions(n)
        for kv in versions:
            entry = {"key_set": n, "version": kv.version, "status": kv.status, "key_id": kv.key_id}
            try:
                ring.verify(n, kv.version)
                entry["notes"] = _deep_check(ring, n, kv, insecure, device, passphrase)
                entry["ok"] = True
            except FhectlError as exc:
                entry.update(ok=False, problem=str(exc))
                failed = True
            results.append(entry)
    if json:
        console.print_json({"keyring": str(ring.root), "results": results})
    else:
        for r in results:
            head = f"{r['key_set']} v{r['version']} ({r['status']}, {r['key_id']}): "
            if r["ok"]:
                console.out.print(head + "ok; " + "; ".join(r["notes"]), markup=False, highlight=False)
            else:
                console.out.print(head + "FAILED: " + r["problem"], markup=False, highlight=False)
    if failed:
        raise typer.Exit(KeyringError.exit_code)


@app.command("destroy")
@guarded
def destroy(
    version: Annotated[int, typer.Option("--version", "-V", min=1, help="The retired version whose secret to destroy.",
                                         show_default=False)],
    name: KeyName = "default",
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: files still under this version become "
                                                    "undecryptable forever.")] = False,
    keyring: Keyring = None,
    json: Json = False,
) -> None:
    """Shred the secret key of a retired version (overwritten, then removed); its public files stay.

    Files still encrypted under the version can never be decrypted again: rewrap them first
    (fhectl rotate rewrap). Exit 6 if the version is not retired."""
    ring = keysets.open_keyring(keyring)
    kv = ring.get(name, version)
    if not yes:
        raise InputError(f"destroying the secret key of {name!r} v{kv.version} ({kv.key_id}) cannot be undone; "
                         "pass --yes to confirm")
    kv = ring.destroy_secret(name, version)
    if json:
        console.print_json({"key_set": name, "version": kv.version, "key_id": kv.key_id, "destroyed": True})
    else:
        keysets.say(f"destroyed the secret key of {name!r} v{kv.version} ({kv.key_id}): files under it can no "
                    "longer be decrypted; its public files remain")
