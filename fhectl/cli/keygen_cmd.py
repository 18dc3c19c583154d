"""`fhectl keygen`: a new key set (version 1) in the keyring; never overwrites one."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from fhectl.ckks.params import load_parameters
from fhectl.cli import console, keysets
from fhectl.cli.errors import guarded
from fhectl.cli.options import Device, Insecure, Json, Keyring, KeyName, Passphrase, Profile
from fhectl.errors import OutputExistsError

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
    device: Device = "cpu",
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
    steps = keysets.parse_steps(rotations, params.slots)
    ring = keysets.open_keyring(keyring)
    if name in ring.list_key_sets():
        have = ", ".join(f"v{kv.version}" for kv in ring.versions(name))
        raise OutputExistsError(f"key set {name!r} already exists in {ring.root} ({have}); refusing to overwrite it: "
                                f"choose another --name, or make a new version with `fhectl rotate --name {name}`")
    secret_pass = keysets.get_passphrase(passphrase, sealed=False, confirm=True)
    if params.security_bits == 0:
        keysets.say(f"warning: profile {params.name} is INSECURE (tests and toy examples only)")
    ctx = keysets.context_for(params, device)
    with console.progress() as bar:
        task = bar.add_task("generating keys", total=3 + len(steps) + int(conjugation))
        sk, secret, public = keysets.generate_key_material(
            ctx, steps, conjugation, lambda what: bar.update(task, advance=1, description=what))
        bar.update(task, description="writing the key set")
        kv = ring.create_key_set(name, 1, profile, params.params_id, sk.key_id, secret, public,
                                 passphrase=secret_pass, status="primary")
    data = keysets.describe_version(kv, params)
    data["keyring"] = str(ring.root)
    if json:
        console.print_json(data)
    else:
        keysets.print_version(data, console.out)
    if secret_pass is None:
        keysets.say("note: the secret key is not passphrase-protected (file mode 0600 only); "
                    "use --passphrase to seal it at rest")
