"""`fhectl encrypt`: numbers (.npy, text or CSV; '-' is stdin) into one ciphertext file, public material only.

The command parses, calls fhectl.io.ciphertext_files.encrypt_array and prints. The file's meta and
how the values are cut into ciphertexts are described in fhectl.io.ciphertext_files and
fhectl.io.arrays; optional signatures in fhectl.io.signatures.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from fhectl.ckks.precision import fresh_precision_bits
from fhectl import keysets
from fhectl.cli import console
from fhectl.cli.errors import guarded
from fhectl.cli.messages import file_size, human_bytes, say
from fhectl.cli.options import Bundle, Device, Force, Insecure, Json, Keyring, KeyName, KeyVersion, Output, Passphrase
from fhectl.cli.passphrases import passphrase_when_sealed
from fhectl.errors import InputError
from fhectl.io.arrays import read_values
from fhectl.io.ciphertext_files import encrypt_array, round_trip_precision
from fhectl.io.container import encode_container, write_container
from fhectl.io.signatures import key_fingerprint, load_signing_key

MeasurePrecision = Annotated[
    bool,
    typer.Option("--measure-precision",
                 help="Also decrypt in memory and report the measured round-trip precision; needs the secret key "
                      "(keyring, not --bundle). Without it encrypt touches public material only."),
]
SignKey = Annotated[
    Optional[str],
    typer.Option("--sign-key", help="Sign the file with this Ed25519 private key (PEM, PKCS#8, mode 0600): "
                                    "`decrypt --verify-key PUB --require-signature` then refuses any other or "
                                    "altered file.", show_default=False),
]


def load_public_source(bundle: Path | None, keyring: Path | None, name: str, version: int | None,
                       insecure: bool, device: str) -> keysets.KeySource:
    if bundle is not None:
        return keysets.load_public_bundle(bundle, allow_insecure=insecure, device=device)
    return keysets.KeySource.from_keyring(keysets.open_keyring(keyring), name, version, allow_insecure=insecure,
                                          device=device)


@guarded
def encrypt(
    input: Annotated[str, typer.Argument(help="Numbers to encrypt: a .npy file, or text/CSV (one row per line, "
                                              "commas or spaces; complex as 1+2j); '-' reads stdin.")],
    output: Output = "-",
    name: KeyName = "default",
    version: KeyVersion = None,
    bundle: Bundle = None,
    sign_key: SignKey = None,
    force: Force = False,
    measure_precision: MeasurePrecision = False,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "auto",
    json: Json = False,
) -> None:
    """Encrypt numbers into one ciphertext file (several ciphertexts when they exceed one's N/2 slots).

    Needs public material only: the key set's primary version in the keyring, or an exported bundle
    (--bundle). The file keeps the shape and dtype, and carries the parameters id, key id and key
    version in its header. Reports sizes and the precision predicted for a fresh encryption; the
    measured round-trip precision needs the secret key, so only with --measure-precision.

    The file's checksums catch corruption only: anyone can edit a ciphertext and recompute them.
    With --sign-key the file carries an Ed25519 signature over all of it, which `fhectl decrypt
    --verify-key PUB --require-signature` checks (make a key with `openssl genpkey -algorithm ed25519
    -out sign.pem`, its public half with `openssl pkey -in sign.pem -pubout -out sign.pub`).
    """
    if output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write a binary ciphertext to a terminal; use -o FILE or redirect stdout")
    if json and output == "-":
        raise InputError("--json prints the report on stdout, which the ciphertext already uses; add -o FILE")
    if measure_precision and bundle is not None:
        raise InputError("--measure-precision needs the secret key from the keyring, not a public --bundle")
    if output != "-" and not force and Path(output).exists():
        raise InputError(f"{output}: already exists; refusing to overwrite it (--force replaces it)")
    signer = load_signing_key(sign_key) if sign_key is not None else None
    arr = read_values(input)
    keys = load_public_source(bundle, keyring, name, version, insecure, device)
    slots = keys.params.slots
    with console.progress() as bar:
        task = bar.add_task("encrypting", total=math.ceil(arr.size / slots))
        container, cts = encrypt_array(keys, arr, lambda: bar.update(task, advance=1), sign_key=signer)
    if output == "-":
        data = encode_container(container)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        size = len(data)
    else:
        write_container(output, container, mode=0o644, exclusive=not force)
        size = file_size(output)
    report = {
        "input": input,
        "output": output,
        "key_set": keys.name,
        "key_version": keys.version,
        "key_id": keys.key_id,
        "params_id": keys.params.params_id,
        "profile": keys.params.name,
        "shape": list(arr.shape),
        "dtype": arr.dtype.name,
        "values": int(arr.size),
        "ciphertexts": len(cts),
        "slots_per_ciphertext": slots,
        "level": cts[0].level,
        "scale_bits": round(math.log2(cts[0].scale), 3),
        "bytes": size,
        "plaintext_bytes": int(arr.nbytes),
        "expansion": round(size / max(1, arr.nbytes), 1),
        "predicted_precision_bits": round(fresh_precision_bits(keys.params), 2),
        "signed_by": key_fingerprint(signer.public_key()) if signer is not None else None,
    }
    if measure_precision:
        report["measured_precision_bits"] = round(
            round_trip_precision(keys.ctx, keys.secret_key(passphrase_when_sealed(passphrase)), cts, arr), 2)
    if json:
        console.print_json(report)
        return
    where = keys.origin
    say(
        f"encrypted {report['values']} {report['dtype']} values (shape {tuple(arr.shape)}) into {len(cts)} "
        f"ciphertext(s) under {where} ({keys.key_id}); {human_bytes(size)} "
        f"({report['expansion']}x the plaintext), level {report['level']}, scale 2^{report['scale_bits']:g}")
    line = f"precision: predicted >= {report['predicted_precision_bits']:.1f} bits (fresh-encryption bound)"
    if "measured_precision_bits" in report:
        line += f", measured {report['measured_precision_bits']:.1f} bits"
    say(line)
    if signer is not None:
        say(f"signed by {report['signed_by']}")
