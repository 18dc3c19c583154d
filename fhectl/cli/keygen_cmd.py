"""`fhectl keygen`: a new key set (version 1) in the keyring; never overwrites one."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fhectl import keysets
from fhectl.ckks.params import load_parameters
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.messages import print_version, say
from fhectl.cli.options import Device, Insecure, Json, Keyring, KeyName, Passphrase, Profile
from fhectl.cli.passphrases import get_passphrase
from fhectl.errors import InputError

Rotations = Annotated[
    Optional[str],
    typer.Option("--rotations", "-r", help="Comma-separated rotation steps to make Galois keys for, e.g. 1,2,4,-1."),
]
Conjugation = Annotated[bool, typer.Option("--conjugation", help="Also make the complex-conjugation key.")]


@guarded
def keygen(
    profile: Profile = "n14-128",
    name: KeyName = "default",
    rotations: Rotations = None,
    conjugation: Conjugation = False,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Create a key set (version 1) in the keyring; refuses to overwrite one.

    Writes the secret key (mode 0600, created exclusively) and, separately, the public material
    (public, relinearization and Galois keys) that an evaluating server may receive on its own
    (`fhectl keys export`). Prints the key id, fingerprint, parameters and sizes, never the secret.
    A new version of an existing key set comes from `fhectl rotate`.

    With --passphrase (prompt, env:VAR or file:PATH) the secret key is sealed at rest with
    scrypt + ChaCha20-Poly1305; without it the file is protected by its mode only.
    """
    params = load_parameters(profile, allow_insecure=insecure)
    steps = parse_steps(rotations)
    keysets.check_steps(steps, params.slots)
    ring = keysets.open_keyring(keyring)
    keysets.refuse_existing(ring, name)  # before asking for a passphrase
    secret_pass = get_passphrase(passphrase, sealed=False, confirm=True)
    if params.security_bits == 0:
        say(f"warning: profile {params.name} is INSECURE (tests and toy examples only)")
    with console.progress() as bar:
        task = bar.add_task("generating keys", total=4 + len(steps) + int(conjugation))
        kv = keysets.create_key_set(ring, name, params, profile, steps, conjugation, passphrase=secret_pass,
                                    device=device, tick=lambda what: bar.update(task, advance=1, description=what))
    data = keysets.describe_version(kv, params)
    data["keyring"] = str(ring.root)
    if json:
        console.print_json(data)
    else:
        print_version(data, console.out)
    if secret_pass is None:
        say("note: the secret key is not passphrase-protected (file mode 0600 only); "
            "use --passphrase to seal it at rest")


def parse_steps(text: str | None) -> list[int]:
    """Rotation steps from "1,2,-1" (checked against the slot count by the library)."""
    if not text:
        return []
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"--rotations must be comma-separated integers, got {text!r}") from None
