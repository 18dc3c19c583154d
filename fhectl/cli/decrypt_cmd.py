"""`fhectl decrypt`: a ciphertext file back to numbers, with its shape and dtype; optionally share-safe.

The key is found from the file's header (key id and version, Tink-style), checked against the
parameters id, and refused when its version is retired. Before anything is written, the
decryption is checked against what the file claims: slots beyond the data (zero-padded at
encryption), the imaginary parts of real data and the fractional parts of integer data must be
as small as the error bound predicts, so a file altered consistently enough to pass its
checksums still fails rather than decrypting to silently wrong numbers. (Full ciphertexts of
complex data have nothing to check: CKKS is malleable by design, and only the checksums and
bindings protect them.)

Error bound (coefficient domain, integer units at the file's scale), estimated from what the
header says happened to the ciphertext, six standard deviations as in fhectl.ckks.precision:

* fresh public-key encryption: e = u e_pk + e0 + e1 s, standard deviation sigma sqrt(4N/3 + 1),
  i.e. ``fresh_error_bound(params, scale) * scale / sqrt(N)``;
* each key switch (rewrap) adds sum_j d_j e_j / P + rounding, with |d_j| < (alpha + 1) Q_j after
  the approximate ModUp: variance dnum N sigma^2 ((alpha + 1) max Q_j / P)^2 / 3 + (1 + 2N/3) / 12.

Bounds of successive steps are added (not root-summed), which errs on the large side.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from fhectl.ckks.encryptor import Decryptor
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import fresh_error_bound
from fhectl.cli import console, keysets
from fhectl.cli.encrypt_cmd import DTYPES
from fhectl.cli.errors import guarded
from fhectl.cli.options import Device, Force, Insecure, Json, Keyring, KeySet, Output, Passphrase
from fhectl.errors import FormatError, InputError, KeyMismatchError, KeyringError
from fhectl.io.atomic import atomic_write_bytes
from fhectl.io.container import Container, decode_container, read_container
from fhectl.io.inputs import read_stdin
from fhectl.io.objects import container_to_ciphertexts

TAIL = 6.0  # standard deviations, as fhectl.ckks.precision
# A decryption whose padding or imaginary parts exceed the predicted error bound by this factor
# did not come from the file as described (altered, or not made under this key).
GARBAGE_FACTOR = 2.0**10

ShareSafe = Annotated[
    bool,
    typer.Option(
        "--share-safe",
        help="Noise-flooding decryption for results handed to other parties (defence against the key-recovery "
             "attack of Li and Micciancio on CKKS decryptions; see above). Costs about s/2 + 4.4 bits of "
             "precision, reported on stderr.",
    ),
]
StatisticalSecurity = Annotated[
    int, typer.Option("--statistical-security", "-s", min=1, max=128,
                      help="s: the flooding width exceeds the error bound by 2^(s/2) (OpenFHE uses 30).")]
Queries = Annotated[
    int, typer.Option("--queries", min=1, help="Q: share-safe decryptions of related ciphertexts an adversary may "
                                               "see; the width grows by sqrt(Q) (OpenFHE's numAdversarialQueries).")]
ErrorBits = Annotated[
    Optional[float],
    typer.Option("--error-bits", help="log2 of a bound on the ciphertext's coefficient error (integer units at its "
                                      "scale), instead of the estimate from the header's history.",
                 show_default=False)]
Format = Annotated[str, typer.Option("--format", help="Output format: auto (by extension; text on stdout), npy, "
                                                       "csv or text.")]
Decimals = Annotated[
    Optional[int],
    typer.Option("--decimals", min=0, max=17, help="Decimals in text/CSV output (default: what the predicted "
                                                   "precision supports).", show_default=False)]


# -- error bounds -----------------------------------------------------------------------------

def fresh_coefficient_bound(params: Parameters, scale: float) -> float:
    """Bound on |e_i| of a fresh public-key encryption (integer units)."""
    return fresh_error_bound(params, scale) * scale / math.sqrt(params.ring_degree)


def key_switch_coefficient_bound(params: Parameters) -> float:
    """Bound on the coefficient error one hybrid key switch adds (see the module docstring)."""
    n, sigma = params.ring_degree, params.literal.sigma
    digits = params.digits(params.max_level)
    p_product = math.prod(params.moduli_p)
    max_digit = max(math.prod(params.moduli_q[d.start:d.stop]) for d in digits)
    ratio = (params.digit_size + 1) * max_digit / p_product
    variance = len(digits) * n * sigma**2 * ratio**2 / 3 + (1 + 2 * n / 3) / 12
    return TAIL * math.sqrt(variance)


def coefficient_error_bound(params: Parameters, scale: float, key_switches: int) -> float:
    return fresh_coefficient_bound(params, scale) + key_switches * key_switch_coefficient_bound(params)


def slot_bound(coefficient_bound: float, params: Parameters, scale: float) -> float:
    """Slot error from a coefficient error bound: each slot sums N coefficients (sqrt(N) growth)."""
    return coefficient_bound * math.sqrt(params.ring_degree) / scale


# -- reading and checking the file ------------------------------------------------------------

def read_ciphertext_file(path: str) -> tuple[Container, str]:
    if path == "-":
        source = "<stdin>"
        c = decode_container(read_stdin(sys.stdin.buffer, source), source)
    else:
        source = path
        c = read_container(path)
    if c.kind != "ciphertext":
        raise FormatError(f"{source} holds a {c.kind}, not a ciphertext")
    return c, source


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def data_description(c: Container, params: Parameters, source: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and value count from meta 'data', checked against the ciphertexts' slot counts."""
    d = c.meta.get("data")
    if not isinstance(d, dict) or set(d) != {"shape", "dtype", "values"}:
        raise FormatError(f"{source}: meta 'data' must describe shape, dtype and values")
    shape, dtype, values = d["shape"], d["dtype"], d["values"]
    if not (isinstance(shape, list) and len(shape) <= 32 and all(_is_int(s) and s >= 0 for s in shape)):
        raise FormatError(f"{source}: meta data.shape {shape!r} is not a list of sizes")
    if dtype not in DTYPES:
        raise FormatError(f"{source}: meta data.dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if not _is_int(values) or values != math.prod(shape) or values < 1:
        raise FormatError(f"{source}: meta data.values {values!r} does not match shape {shape!r}")
    slots_used, count = c.meta["slots_used"], c.meta["count"]
    expected = [min(params.slots, values - i) for i in range(0, values, params.slots)]
    if slots_used != expected or count != len(expected):
        raise FormatError(f"{source}: {values} values should fill {len(expected)} ciphertext(s) with {expected} "
                          f"slots, the header says {count} with {slots_used}")
    return tuple(shape), np.dtype(dtype), values


def history(c: Container, params: Parameters, source: str) -> int | None:
    """Key switches since a fresh encryption, or None when the file did not come from `fhectl encrypt`."""
    if c.meta.get("origin") != "encrypt":
        return None
    ks = c.meta.get("key_switches")
    if not _is_int(ks) or not 0 <= ks < 1 << 20:
        raise FormatError(f"{source}: meta key_switches {ks!r} is not a count")
    if c.meta["level"] != params.max_level or float.fromhex(c.meta["scale"]) != params.scale:
        raise FormatError(f"{source}: a fresh encryption is at level {params.max_level} and scale "
                          f"2^{params.literal.scale_bits}; the header says level {c.meta['level']}, scale "
                          f"{c.meta['scale']}")
    return ks


def check_plausible(slots: np.ndarray, used: int, dtype: np.dtype, bound: float, source: str, index: int) -> None:
    """What the header promises must hold up to noise: zero padding slots, zero imaginary parts for real
    data, whole numbers for integer data. Otherwise the file was altered or made under another key."""
    limit = GARBAGE_FACTOR * bound
    data = slots[:used]
    checks = [("padding slots", slots[used:])]
    if dtype.kind != "c":
        checks.append(("imaginary parts of real data", data.imag))
    if dtype.kind in "biu" and limit < 0.25:
        checks.append(("fractional parts of integer data", data.real - np.rint(data.real)))
    for what, residue in checks:
        worst = float(np.max(np.abs(residue))) if residue.size else 0.0
        if not worst <= limit:
            raise KeyMismatchError(f"{source}: ciphertext {index} decrypts to {what} of magnitude "
                                   f"2^{math.log2(worst):.1f}, where the error bound allows 2^{math.log2(bound):.1f}: "
                                   "the file was altered or was not encrypted under this key")


def restore(values: np.ndarray, shape, dtype: np.dtype, source: str) -> np.ndarray:
    """The decrypted slots as the original dtype and shape (integers and booleans rounded)."""
    if dtype.kind == "c":
        out = values.astype(dtype)
    elif dtype.kind == "f":
        out = values.real.astype(dtype)
    else:
        rounded = np.rint(values.real)
        lo, hi = (0, 1) if dtype.kind == "b" else (np.iinfo(dtype).min, np.iinfo(dtype).max)
        if rounded.size and (rounded.min() < lo or rounded.max() > hi):
            raise FormatError(f"{source}: decrypted values {rounded.min():.0f}..{rounded.max():.0f} do not fit "
                              f"dtype {dtype.name}")
        out = rounded.astype(dtype)
    return out.reshape(shape)


# -- writing ----------------------------------------------------------------------------------

def _fmt_number(v, decimals: int, kind: str) -> str:
    if kind in "biu":
        return str(int(v))
    if kind == "c":
        return f"{v.real:.{decimals}f}{v.imag:+.{decimals}f}j"
    return f"{v:.{decimals}f}"


def format_text(arr: np.ndarray, decimals: int, sep: str) -> str:
    kind = arr.dtype.kind
    lines = []
    if arr.ndim > 2:
        lines.append(f"# shape {'x'.join(str(s) for s in arr.shape)}, rows of the last axis")
    rows = arr.reshape(1, 1) if arr.ndim == 0 else arr.reshape(-1, 1) if arr.ndim == 1 else \
        arr.reshape(-1, arr.shape[-1])
    for row in rows:
        lines.append(sep.join(_fmt_number(v, decimals, kind) for v in row))
    return "\n".join(lines) + "\n"


def output_format(output: str, fmt: str) -> str:
    if fmt not in ("auto", "npy", "csv", "text"):
        raise InputError(f"--format must be auto, npy, csv or text, got {fmt!r}")
    if fmt != "auto":
        return fmt
    suffix = Path(output).suffix.lower() if output != "-" else ""
    return {".npy": "npy", ".csv": "csv"}.get(suffix, "text")


def encode_output(arr: np.ndarray, fmt: str, decimals: int) -> bytes:
    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()
    return format_text(arr, decimals, "," if fmt == "csv" else " ").encode("utf-8")


# -- the command ------------------------------------------------------------------------------

@guarded
def decrypt(
    input: Annotated[str, typer.Argument(help="Ciphertext file ('-' reads stdin).")],
    output: Output = "-",
    name: KeySet = None,
    share_safe: ShareSafe = False,
    statistical_security: StatisticalSecurity = 30,
    queries: Queries = 1,
    error_bits: ErrorBits = None,
    fmt: Format = "auto",
    decimals: Decimals = None,
    force: Force = False,
    passphrase: Passphrase = None,
    insecure: Insecure = False,
    keyring: Keyring = None,
    device: Device = "cpu",
    json: Json = False,
) -> None:
    """Decrypt a ciphertext file to numbers with the original shape and dtype.

    Output: .npy, CSV or text by the extension of -o (text on stdout by default); files are written
    atomically with mode 0600 and never overwritten without --force. The key comes from the header
    (key id and version); a wrong key, parameter set or retired version is reported as such.
    Reports the predicted precision in bits on stderr.

    Share-safe mode (--share-safe), for results that leave your hands: a plain CKKS decryption
    returns m + e, and anyone holding the ciphertext and this output can use e to recover the
    secret key (Li and Micciancio, EUROCRYPT 2021). Fresh discrete Gaussian noise of width
    sqrt(12 Q) 2^(s/2) E is added to every coefficient first (OpenFHE's NOISE_FLOODING_DECRYPT
    width, with E estimated here instead of measured in an estimation run). What this claims: the
    added noise is 2^(s/2) times wider than E, so it statistically hides any error up to E; it
    claims nothing about an error larger than E. E is estimated from the header's history (fresh
    encryption plus key switches; see `fhectl.cli.decrypt_cmd`), which trusts that header: for
    ciphertexts from computations or from parties you do not trust, give --error-bits from your
    own noise analysis. Precision drops by about s/2 + 4.4 bits (printed; with s = 30 about 6
    to 7 bits remain with the bundled profiles).
    """
    kind = output_format(output, fmt)
    if json and output == "-":
        raise InputError("--json prints the report on stdout, which the values already use; add -o FILE")
    if kind == "npy" and output == "-" and sys.stdout.isatty():
        raise InputError("refusing to write .npy bytes to a terminal; use -o FILE or redirect stdout")
    if output != "-" and not force and Path(output).exists():
        raise InputError(f"{output}: already exists; refusing to overwrite it (--force replaces it)")
    if error_bits is not None and not -10 <= error_bits <= 200:
        raise InputError(f"--error-bits {error_bits} is not a plausible log2 error bound")
    c, source = read_ciphertext_file(input)
    ring = keysets.open_keyring(keyring)
    kv = keysets.locate_version(ring, c.key_id, c.key_version, c.params_id, name, source)
    if kv.status == "retired":
        raise KeyringError(f"{source} is under key version {kv.version} of {kv.name!r}, which is retired: files under "
                           f"it can no longer be decrypted (rewrap files before retiring; `fhectl rotate retire "
                           f"--undo {kv.version} --name {kv.name}` reactivates it)")
    keys = keysets.KeySource.from_keyring(ring, kv.name, kv.version, allow_insecure=insecure, device=device)
    params = keys.params
    cts = container_to_ciphertexts(keys.ctx, c, source)
    shape, dtype, n_values = data_description(c, params, source)
    switches = history(c, params, source)
    scale = cts[0].scale
    if error_bits is not None:
        coeff_bound, bound_from = 2.0**error_bits, "--error-bits"
    elif switches is not None:
        coeff_bound = coefficient_error_bound(params, scale, switches)
        bound_from = f"fresh encryption + {switches} key switch(es)"
    else:
        coeff_bound, bound_from = None, None
    if share_safe and coeff_bound is None:
        raise InputError(f"{source} did not come straight from `fhectl encrypt` (origin "
                         f"{c.meta.get('origin')!r}), so its error is unknown: pass --error-bits for --share-safe")
    dec = Decryptor(keys.ctx, keys.secret_key(passphrase))

    out_slots, sigma = [], None
    with console.progress() as bar:
        task = bar.add_task("decrypting", total=len(cts))
        for i, ct in enumerate(cts):
            full = dec.decrypt(ct, n_values=params.slots)
            if float(np.max(np.abs(full))) >= 2.0**39:
                raise KeyMismatchError(f"{source}: ciphertext {i} decrypts to values beyond 2^39, outside anything "
                                       "fhectl encrypts: the file was altered or was not encrypted under this key")
            if coeff_bound is not None:
                check_plausible(full, ct.slots, dtype, slot_bound(coeff_bound, params, scale), source, i)
            if share_safe:
                try:
                    values, sigma = dec.decrypt_share_safe(ct, coeff_bound, statistical_security, queries)
                except ValueError as exc:
                    raise InputError(f"--share-safe: {exc}") from None
            else:
                values = full[:ct.slots]
            out_slots.append(values)
            bar.update(task, advance=1)
    arr = restore(np.concatenate(out_slots)[:n_values], shape, dtype, source)

    report = {"input": input, "output": output, "key_set": kv.name, "key_version": kv.version, "key_id": kv.key_id,
              "params_id": params.params_id, "profile": params.name, "shape": list(shape), "dtype": dtype.name,
              "values": n_values, "ciphertexts": len(cts), "level": cts[0].level,
              "scale_bits": round(math.log2(scale), 3), "share_safe": share_safe}
    bits = None
    if coeff_bound is not None:
        plain = slot_bound(coeff_bound, params, scale)
        report.update({"error_bound_log2": round(math.log2(coeff_bound), 2), "error_bound_from": bound_from,
                       "predicted_precision_bits": round(-math.log2(plain), 2)})
        bits = -math.log2(plain)
        if share_safe:
            flooded = plain + slot_bound(TAIL * sigma, params, scale)
            bits = -math.log2(flooded)
            report.update({"statistical_security": statistical_security, "queries": queries,
                           "flooding_sigma_log2": round(math.log2(sigma), 2),
                           "share_safe_precision_bits": round(bits, 2),
                           "precision_cost_bits": round(math.log2(flooded / plain), 2)})
    if dtype.kind in "biu" and bits is not None and bits < 1.5:
        keysets.say(f"warning: predicted error 2^{-bits:.1f} may exceed 0.5: rounded integers can be off")
    if share_safe and bits is not None and bits < 0:
        keysets.say(f"warning: share-safe output has no precision left (error up to 2^{-bits:.1f})")
    places = decimals if decimals is not None else (
        min(17, max(1, math.ceil(bits * math.log10(2)) + 1)) if bits is not None else 10)
    data = encode_output(arr, kind, places)
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        atomic_write_bytes(output, data, mode=0o600, exclusive=not force)
    if json:
        console.print_json(report)
        return
    keysets.say(f"decrypted {n_values} {dtype.name} values (shape {shape}) from {len(cts)} ciphertext(s) "
                f"under key set {kv.name!r} v{kv.version} ({kv.key_id})")
    if coeff_bound is None:
        keysets.say("precision: unknown (the file went through computation; --error-bits gives a bound)")
    elif share_safe:
        keysets.say(
            f"share-safe: added discrete Gaussian noise of width 2^{report['flooding_sigma_log2']:.1f} per "
            f"coefficient (s = {statistical_security}, Q = {queries}, error bound 2^{report['error_bound_log2']:.1f} "
            f"from {bound_from}); predicted precision {bits:.1f} bits instead of "
            f"{report['predicted_precision_bits']:.1f} (cost {report['precision_cost_bits']:.1f} bits)")
    else:
        keysets.say(f"precision: predicted >= {bits:.1f} bits (error bound from {bound_from}); "
                    "use --share-safe before handing results to others")
