"""`fhectl rotate`: a new key version; `rotate rewrap`: move ciphertext files to it without decrypting;
`rotate retire`: make old versions undecryptable (Vault's minimum decryption version).

The work is fhectl.keysets.rotation and fhectl.keysets.rewrap (resumable, atomic per file, one lock per
directory of files, checked against the secrets where the key holder runs it); this module parses,
calls them and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fhectl import keysets
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.messages import print_version, say
from fhectl.cli.options import Bundle, Device, Insecure, Json, Keyring, KeyName, Passphrase
from fhectl.cli.passphrases import get_passphrase, passphrase_when_sealed

app = typer.Typer()


@app.callback(invoke_without_command=True)
@guarded
def rotate(
    ctx: typer.Context,
    name: KeyName = "default",
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Rotate keys: alone, make a new key version; `rewrap` moves files to it; `retire` ends old ones.

    `fhectl rotate` creates a new key version (the new primary: encryption uses it from now on)
    with the same parameters, rotations and conjugation, and a switching key from every
    non-retired version to it, stored with its public part. Old files still decrypt until their
    version is retired. Next: `fhectl rotate rewrap FILES...` (no secret needed), then
    `fhectl rotate retire OLD_VERSION`. A sealed key set stays sealed with the same passphrase;
    --passphrase on an unsealed one seals the new version.
    """
    if ctx.invoked_subcommand is not None:
        return
    ring = keysets.open_keyring(keyring)
    sources = [kv for kv in ring.versions(name) if kv.status != "retired"]
    sealed = any(kv.sealed for kv in sources)
    pw = get_passphrase(passphrase, sealed, confirm=not sealed)
    with console.progress() as bar:
        task = bar.add_task("rotating", total=keysets.rotation_steps(ring, name))
        rotation = keysets.rotate_key_set(ring, name, passphrase=pw, allow_insecure=insecure, device=device,
                                          tick=lambda what: bar.update(task, advance=1, description=what))
    data = keysets.describe_version(rotation.new, rotation.params)
    data["previous_primary"] = rotation.previous_primary
    if json:
        console.print_json(data)
        return
    print_version(data, console.out)
    olds = " ".join(str(v) for v in rotation.rewraps_from)
    say(f"new primary: v{rotation.new.version}. Next: `fhectl rotate rewrap --name {name} FILES...`, then "
        f"`fhectl rotate retire --name {name} {olds}`")


# -- rewrap -----------------------------------------------------------------------------------

@app.command("rewrap")
@guarded
def rewrap(
    paths: Annotated[list[Path], typer.Argument(help="Ciphertext files, or directories (every *.fhe below them).")],
    name: KeyName = "default",
    to_version: Annotated[Optional[int], typer.Option("--to-version", min=1,
                                                      help="Target version (default: the primary).")] = None,
    bundle: Bundle = None,
    passphrase: Passphrase = None,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first file that fails.")] = False,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Re-key ciphertext files to the new version by key switching, never decrypting.

    No secret key is needed.
    Works from the keyring, or on a server from an exported bundle holding the switching key(s)
    (`fhectl keys export --files rewrap-from-v1` on the key holder's side). Shows progress; each file
    is replaced atomically, files already at the target version are skipped from their header, so
    an interrupted run loses nothing and a rerun resumes. Failed files are listed and leave the exit
    code of the first failure; the others are still processed (unless --fail-fast).

    From the keyring with the secrets readable (unsealed, or sealed and --passphrase given; it is
    never prompted for), each rewrapped file is first checked to decrypt under the new key to what
    it held under the old one; a file that fails is left as it was and the run stops (exit 6): the
    switching key is wrong or damaged.
    """
    ring = keysets.open_keyring(keyring) if bundle is None else None
    # Only --passphrase opens sealed secrets for the check: rewrapping needs none, so it never prompts.
    secret_passphrase = passphrase_when_sealed(passphrase) if passphrase is not None else None
    with console.progress() as bar:
        task = bar.add_task("rewrapping", total=None)
        report = keysets.rewrap_files(
            paths, keyring=ring, name=name, to_version=to_version, bundle=bundle, passphrase=secret_passphrase,
            allow_insecure=insecure, device=device, fail_fast=fail_fast,
            progress=lambda done, total: bar.update(task, completed=done, total=total))
    for _, exc in report.failures:
        say(f"error: {exc}")
    if json:
        console.print_json({
            "target": report.target, "key_id": report.key_id, "version": report.version,
            "rewrapped": len(report.rewrapped), "already_current": len(report.already_current),
            "failed": len(report.failures), "checked": report.checked,
            "failures": [{"file": f, "error": str(e)} for f, e in report.failures],
            "stale_temporaries_removed": report.stale_temporaries_removed})
    else:
        removed = report.stale_temporaries_removed
        if report.checked:
            checked = "each checked against the secret keys"
        elif bundle is not None:
            checked = "not checked (a bundle holds no secret key)"
        else:
            checked = "not checked (the secret keys are sealed: pass --passphrase to check)"
        say(f"rewrapped {len(report.rewrapped)} file(s) to {report.target} ({report.key_id}), {checked}; "
            f"{len(report.already_current)} already current; {len(report.failures)} failed"
            + (f"; removed {removed} stale temporary file(s)" if removed else ""))
    if report.failures:
        raise typer.Exit(report.failures[0][1].exit_code)


# -- retire -----------------------------------------------------------------------------------

@app.command("retire")
@guarded
def retire(
    versions: Annotated[list[int], typer.Argument(help="Versions to retire.")],
    name: KeyName = "default",
    undo: Annotated[bool, typer.Option("--undo", help="Make the versions active again.")] = False,
    keyring: Keyring = None,
    json: Json = False,
) -> None:
    """Retire versions: files still under them then fail with an error naming the version.

    Rewrap files first. The primary cannot be retired; --undo reactivates versions."""
    ring = keysets.open_keyring(keyring)
    status = "active" if undo else "retired"
    changed = [ring.set_status(name, v, status) for v in versions]
    rows = [{"key_set": name, "version": kv.version, "status": kv.status, "key_id": kv.key_id} for kv in changed]
    if json:
        console.print_json(rows)
    else:
        for r in rows:
            say(f"key set {name!r} v{r['version']} ({r['key_id']}): {r['status']}")
