"""`fhectl encrypt`: numbers (.npy, text or CSV; '-' is stdin) into one ciphertext file, public material only.

File meta (besides what fhectl.io.objects writes: level, scale, size, count, slots_used)::

    "data": {"shape": [...], "dtype": "float64" | "complex128" | "int32" | ..., "values": n}
    "origin": "encrypt"          a fresh public-key encryption (decrypt then knows its error bound)
    "key_switches": 0            incremented by every rewrap (each adds a key-switching error)
    "rewrapped_from": []         [{"key_id", "key_version"}, ...] appended by every rewrap
    "key_set": "default"         the key set's name where it was made (a hint; routing uses the key id)

The values are flattened in C order and cut into ciphertexts of N/2 slots; decrypt restores shape
and dtype.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.precision import fresh_precision_bits, precision_bits
from fhectl.cli import console, keysets
from fhectl.cli.errors import guarded
from fhectl.cli.options import Bundle, Device, Force, Insecure, Json, Keyring, KeyName, KeyVersion, Output, Passphrase
from fhectl.errors import InputError
from fhectl.io.container import Container, encode_container, write_container
from fhectl.io.inputs import NPY_MAGIC, load_npy, read_stdin
from fhectl.io.objects import ciphertexts_to_container

# Inputs up to 2**38 in magnitude decrypt exactly: decryption keeps 40 bits above the scale.
MAX_ABS_VALUE = 2.0**38
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")
_SEPARATORS = re.compile(r"[,;\s]+")

MeasurePrecision = Annotated[
    bool,
    typer.Option("--measure-precision",
                 help="Also decrypt in memory and report the measured round-trip precision; needs the secret key "
                      "(keyring, not --bundle). Without it encrypt touches public material only."),
]


def _parse_text(data: bytes, source: str) -> np.ndarray:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source} is neither a .npy file nor UTF-8 text") from None
    rows, is_complex = [], False
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        row = []
        for token in _SEPARATORS.split(line):
            if not token:
                continue
            try:
                if "j" in token.lower():
                    row.append(complex(token))
                    is_complex = True
                else:
                    row.append(float(token))
            except ValueError:
                raise InputError(f"{source}, line {lineno}: {token[:40]!r} is not a number") from None
        rows.append((lineno, row))
    if not rows:
        raise InputError(f"{source} holds no numbers")
    dtype = np.complex128 if is_complex else np.float64
    widths = {len(r) for _, r in rows}
    if len(rows) == 1:
        return np.array(rows[0][1], dtype=dtype)
    if widths == {1}:
        return np.array([r[0] for _, r in rows], dtype=dtype)
    if len(widths) > 1:
        first = len(rows[0][1])
        lineno, row = next((n, r) for n, r in rows if len(r) != first)
        raise InputError(f"{source}, line {lineno}: {len(row)} values, the first row has {first}; "
                         "rows must have equal lengths")
    return np.array([r for _, r in rows], dtype=dtype)


def read_values(path: str) -> np.ndarray:
    """An array from a .npy file, or from text/CSV numbers (one row per line); '-' reads stdin."""
    source = "<stdin>" if path == "-" else path
    if path == "-":
        data = read_stdin(sys.stdin.buffer, source)
    else:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if data.startswith(NPY_MAGIC):
        arr = load_npy(data, source, DTYPES)
    elif data.startswith(b"PK\x03\x04"):
        raise InputError(f"{source}: .npz archives are not supported; save one array with numpy.save")
    else:
        arr = _parse_text(data, source)
    if arr.dtype.name not in DTYPES:
        raise InputError(f"{source}: dtype {arr.dtype} is not supported (numbers: {', '.join(DTYPES)})")
    if arr.size == 0:
        raise InputError(f"{source} holds no values")
    return arr


def encrypt_array(keys: keysets.KeySource, arr: np.ndarray, tick=lambda: None) -> tuple[Container, list]:
    """The ciphertext file's container for ``arr`` (and the ciphertexts), under ``keys``'s public key."""
    is_complex = np.iscomplexobj(arr)
    flat = np.ascontiguousarray(arr).reshape(-1).astype(np.complex128 if is_complex else np.float64)
    if not np.all(np.isfinite(flat)):
        raise InputError("values contain NaN or infinity")
    peak = float(np.max(np.abs(flat)))
    if peak >= MAX_ABS_VALUE:
        raise InputError(f"values reach {peak:.3g}; at most 2^38 (about 2.7e11) in magnitude decrypt exactly")
    enc = Encryptor(keys.ctx, keys.public_key())
    slots = keys.params.slots
    cts = []
    for start in range(0, flat.size, slots):
        cts.append(enc.encrypt(flat[start:start + slots]))
        tick()
    meta = {
        "data": {"shape": [int(d) for d in arr.shape], "dtype": arr.dtype.name, "values": int(flat.size)},
        "origin": "encrypt",
        "key_switches": 0,
        "rewrapped_from": [],
    }
    if keys.name is not None:
        meta["key_set"] = keys.name
    return ciphertexts_to_container(keys.ctx, cts, keys.version, meta), cts


def load_public_source(bundle: Path | None, keyring: Path | None, name: str, version: int | None,
                       insecure: bool, device: str) -> keysets.KeySource:
    if bundle is not None:
        return keysets.KeySource.from_bundle(bundle, allow_insecure=insecure, device=device)
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
    force: Force = False,
    measure_precision: MeasurePrecision = False,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "cpu",
    json: Json = False,
) -> None:
    """Encrypt numbers into one ciphertext file (several ciphertexts when they exceed one's N/2 slots).

    Needs public material only: the key set's primary version in the keyring, or an exported bundle
    (--bundle). The file keeps the shape and dtype, and carries the parameters id, key id and key
    version in its header. Reports sizes and the precision predicted for a fresh encryption; the
    measured round-trip precision needs the secret key, so only with --measure-precision.
    """
    if output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write a binary ciphertext to a terminal; use -o FILE or redirect stdout")
    if json and output == "-":
        raise InputError("--json prints the report on stdout, which the ciphertext already uses; add -o FILE")
    if measure_precision and bundle is not None:
        raise InputError("--measure-precision needs the secret key from the keyring, not a public --bundle")
    if output != "-" and not force and Path(output).exists():
        raise InputError(f"{output}: already exists; refusing to overwrite it (--force replaces it)")
    arr = read_values(input)
    keys = load_public_source(bundle, keyring, name, version, insecure, device)
    slots = keys.params.slots
    with console.progress() as bar:
        task = bar.add_task("encrypting", total=math.ceil(arr.size / slots))
        container, cts = encrypt_array(keys, arr, lambda: bar.update(task, advance=1))
    if output == "-":
        data = encode_container(container)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        size = len(data)
    else:
        write_container(output, container, mode=0o644, exclusive=not force)
        size = keysets.file_size(output)
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
    }
    if measure_precision:
        dec = Decryptor(keys.ctx, keys.secret_key(passphrase))
        flat = arr.reshape(-1).astype(np.complex128)
        got = np.concatenate([dec.decrypt(ct) for ct in cts])
        report["measured_precision_bits"] = round(precision_bits(got, flat), 2)
    if json:
        console.print_json(report)
        return
    where = keys.origin
    keysets.say(
        f"encrypted {report['values']} {report['dtype']} values (shape {tuple(arr.shape)}) into {len(cts)} "
        f"ciphertext(s) under {where} ({keys.key_id}); {keysets.human_bytes(size)} "
        f"({report['expansion']}x the plaintext), level {report['level']}, scale 2^{report['scale_bits']:g}")
    line = f"precision: predicted >= {report['predicted_precision_bits']:.1f} bits (fresh-encryption bound)"
    if "measured_precision_bits" in report:
        line += f", measured {report['measured_precision_bits']:.1f} bits"
    keysets.say(line)
