"""`fhectl keys list|show|export|verify|destroy`: the keyring's key sets, never their secret values."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from fhectl import keysets
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.messages import file_size, human_bytes, print_version, say
from fhectl.cli.options import Device, Force, Insecure, Json, Keyring, KeyName, KeyVersion, Output, Passphrase
from fhectl.cli.passphrases import passphrase_when_sealed
from fhectl.errors import FhectlError, InputError, KeyringError

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
        say(f"no key sets in {ring.root} (create one with `fhectl keygen`)")
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
        say(f"warning: cannot load the parameters: {exc}")
    data = keysets.describe_version(kv, params)
    if json:
        console.print_json(data)
    else:
        print_version(data, console.out)


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
    bundle = keysets.public_bundle(ring, name, version, [f.strip() for f in files.split(",") if f.strip()]
                                   if files else None)
    kv = bundle.version
    if output == "-":
        data = bundle.encode()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        size = len(data)
    else:
        if not force and Path(output).exists():
            raise InputError(f"{output}: already exists; refusing to overwrite it (--force replaces it)")
        bundle.write(output, overwrite=force)
        size = file_size(output)
    report = {"output": output, "key_set": name, "version": kv.version, "key_id": kv.key_id,
              "fingerprint": keysets.fingerprint(kv), "files": bundle.files, "bytes": size}
    if json:
        console.print_json(report)
    else:
        say(f"exported {', '.join(bundle.files)} of key set {name!r} v{kv.version} ({kv.key_id}) to "
            f"{output}: {human_bytes(size)}; no secret material")


@app.command("verify")
@guarded
def verify(
    name: Annotated[Optional[str], typer.Option("--name", "-n", help="Key set (default: every key set).")] = None,
    version: KeyVersion = None,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Check fingerprints, permissions, bindings, every key's contents, and every key against the secret.

    With the secret at hand (a sealed one needs --passphrase or a terminal), the secret is checked
    against the public key on every prime, and each relinearization, Galois and rewrap key by a
    homomorphic round trip (encrypt, evaluate, decrypt on every prime). Exit 6 if anything is wrong."""
    ring = keysets.open_keyring(keyring)
    names = [name] if name else ring.list_key_sets()
    if not names:
        raise KeyringError(f"no key sets in {ring.root}")
    secret_passphrase = passphrase_when_sealed(passphrase)
    results, failed = [], False
    for n in names:
        versions = [ring.get(n, version)] if version else ring.versions(n)
        for kv in versions:
            entry = {"key_set": n, "version": kv.version, "status": kv.status, "key_id": kv.key_id}
            try:
                entry["notes"] = keysets.verify_version(ring, n, kv.version, passphrase=secret_passphrase,
                                                        allow_insecure=insecure, device=device)
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
    version: Annotated[int, typer.Option("--key-version", "-V", min=1, help="The retired version whose secret to destroy.",
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
        say(f"destroyed the secret key of {name!r} v{kv.version} ({kv.key_id}): files under it can no "
            "longer be decrypted; its public files remain")
