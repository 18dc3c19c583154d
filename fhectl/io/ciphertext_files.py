"""Ciphertext files: an array in, the container `fhectl encrypt` writes out; and back, with checks.

File meta (besides what :mod:`fhectl.io.objects` writes: level, scale, size, count, slots_used)::

    "data": {...}                the array's shape, dtype and value count (fhectl.io.arrays)
    "origin": "encrypt"          a fresh public-key encryption (decrypt then knows its error bound)
    "key_switches": 0            incremented by every rewrap (each adds a key-switching error)
    "rewrapped_from": []         [{"key_id", "key_version"}, ...] appended by every rewrap
    "key_set": "default"         the key set's name where it was made (a hint; routing uses the key id)
    "signature": {...}           optional Ed25519 signature by the encrypting party (fhectl.io.signatures)

What decryption can and cannot vouch for. The SHA-256 checksums are unkeyed: they catch
corruption, not a deliberate edit, since whoever edits can recompute them. Before anything is
returned, the decryption is checked against what the header claims (slots beyond the data zero,
imaginary parts of real data and fractional parts of integer data as small as the error bound
allows, nothing beyond 2^39): that turns garbage (a wrong key, a damaged limb, a crude edit) into
an error, but a *consistent* alteration (CKKS is malleable: anyone can add an encryption of their
own, scale or rotate) passes it. Only a signature verified against a key the decryptor trusts
(``verify_key``, ``require_signature``) shows that a file is what its signer encrypted.

Share-safe decryption (``share_safe``) floods the decryption for an error bound the decryptor
derives itself and counts it in a per-key ledger; see :mod:`fhectl.ckks.noise` and
:mod:`fhectl.io.decryption_ledger` for the argument.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.keys import PublicKey, SecretKey
from fhectl.ckks.noise import (GARBAGE_FACTOR, TAIL, coefficient_error_bound, flooding_width, known_zero_residue,
                               share_safe_error_bound, slot_bound)
from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import precision_bits
from fhectl.errors import FormatError, InputError, KeyMismatchError, RefusedError

from .arrays import data_description, data_meta, restore
from .container import Container, decode_container, read_container
from .decryption_ledger import DecryptionLedger
from .inputs import read_stdin
from .objects import ciphertexts_to_container, container_to_ciphertexts
from .signatures import claimed_signer, sign_container, verify_container

# Inputs up to 2**38 in magnitude decrypt exactly: decryption keeps 40 bits above the scale.
MAX_ABS_VALUE = 2.0**38
# Nothing fhectl encrypts decrypts beyond this; a larger value is garbage.
GARBAGE_MAGNITUDE = 2.0**39


class PublicMaterial(Protocol):
    """What encryption needs of a key version: its context, public key, version and key-set name."""

    ctx: CKKSContext
    version: int
    name: str | None

    def public_key(self) -> PublicKey: ...


# -- encryption --------------------------------------------------------------------------------

def encrypt_array(keys: PublicMaterial, arr: np.ndarray, tick=lambda: None, sign_key=None) -> tuple[Container, list]:
    """The ciphertext file's container for ``arr`` (and the ciphertexts), under ``keys``'s public key;
    signed when ``sign_key`` (an Ed25519 private key) is given."""
    is_complex = np.iscomplexobj(arr)
    flat = np.ascontiguousarray(arr).reshape(-1).astype(np.complex128 if is_complex else np.float64)
    if not np.all(np.isfinite(flat)):
        raise InputError("values contain NaN or infinity")
    peak = float(np.max(np.abs(flat)))
    if peak >= MAX_ABS_VALUE:
        raise InputError(f"values reach {peak:.3g}; at most 2^38 (about 2.7e11) in magnitude decrypt exactly")
    enc = Encryptor(keys.ctx, keys.public_key())
    slots = keys.ctx.params.slots
    cts = []
    for start in range(0, flat.size, slots):
        cts.append(enc.encrypt(flat[start:start + slots]))
        tick()
    meta = {"data": data_meta(arr), "origin": "encrypt", "key_switches": 0, "rewrapped_from": []}
    if keys.name is not None:
        meta["key_set"] = keys.name
    container = ciphertexts_to_container(keys.ctx, cts, keys.version, meta)
    if sign_key is not None:
        container = sign_container(container, sign_key)
    return container, cts


def round_trip_precision(ctx: CKKSContext, secret_key: SecretKey, cts: list, arr: np.ndarray) -> float:
    """Measured precision in bits of decrypting ``cts`` against ``arr`` (needs the secret key)."""
    dec = Decryptor(ctx, secret_key)
    got = np.concatenate([dec.decrypt(ct) for ct in cts])
    return precision_bits(got, arr.reshape(-1).astype(np.complex128))


# -- reading and checking ----------------------------------------------------------------------

def read_ciphertext_file(path: str) -> tuple[Container, str]:
    """The container of a ciphertext file ('-' reads stdin) and its name for messages."""
    if path == "-":
        source = "<stdin>"
        c = decode_container(read_stdin(sys.stdin.buffer, source), source)
    else:
        source = path
        c = read_container(path)
    if c.kind != "ciphertext":
        raise FormatError(f"{source} holds a {c.kind}, not a ciphertext")
    return c, source


def fresh_history(c: Container, params: Parameters, source: str) -> int | None:
    """Key switches since a fresh encryption, or None when the file does not claim to come from `fhectl encrypt`.

    A claim only (unless the file's signature was verified): see the module docstring."""
    if c.meta.get("origin") != "encrypt":
        return None
    ks = c.meta.get("key_switches")
    if not isinstance(ks, int) or isinstance(ks, bool) or not 0 <= ks < 1 << 20:
        raise FormatError(f"{source}: meta key_switches {ks!r} is not a count")
    if c.meta["level"] != params.max_level or float.fromhex(c.meta["scale"]) != params.scale:
        raise FormatError(f"{source}: a fresh encryption is at level {params.max_level} and scale "
                          f"2^{params.literal.scale_bits}; the header says level {c.meta['level']}, scale "
                          f"{c.meta['scale']}")
    return ks


def check_plausible(slots: np.ndarray, used: int, dtype: np.dtype, bound: float, source: str, index: int) -> None:
    """Garbage detection: what the header promises must hold up to GARBAGE_FACTOR times the noise bound
    (zero padding slots, zero imaginary parts for real data, whole numbers for integer data). Otherwise
    the file was altered or made under another key. Not an authentication: see the module docstring."""
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


# -- decryption --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DecryptRequest:
    """How to decrypt: plainly, or share-safe (flooded and counted); which signature to require."""

    share_safe: bool = False
    statistical_security: int = 30
    budget: int = 64
    own_error_bits: float | None = None  # log2 of the decryptor's own bound on |e_i| (integer units)
    exceed_budget: bool = False
    verify_key: object | None = None  # an Ed25519 public key
    require_signature: bool = False


@dataclass
class DecryptResult:
    array: np.ndarray
    report: dict
    warnings: list[str] = field(default_factory=list)
    precision_bits: float | None = None


def _check_request(req: DecryptRequest) -> None:
    if req.require_signature and req.verify_key is None:
        raise InputError("--require-signature needs --verify-key PUB (the signer's Ed25519 public key)")
    if req.own_error_bits is not None and not -10 <= req.own_error_bits <= 200:
        raise InputError(f"--error-bound-bits {req.own_error_bits} is not a plausible log2 error bound")


def decrypt_container(ctx: CKKSContext, secret_key: Callable[[], SecretKey], c: Container, source: str,
                      req: DecryptRequest, ledger: DecryptionLedger | None = None, tick=lambda: None) -> DecryptResult:
    """Decrypt a ciphertext file's container to the array it describes, with the report to print.

    ``secret_key`` is called only after the signature (when asked for) and the header have been
    checked. Share-safe decryption needs ``ledger`` and is recorded there before this returns.
    """
    _check_request(req)
    signer = None
    if req.verify_key is not None:
        signer = verify_container(c, req.verify_key, source, required=req.require_signature)
    params = ctx.params
    cts = container_to_ciphertexts(ctx, c, source)
    shape, dtype, n_values = data_description(c, params.slots, source)
    switches = fresh_history(c, params, source)
    scale = cts[0].scale
    own = None if req.own_error_bits is None else 2.0**req.own_error_bits
    if own is not None:
        coeff_bound, bound_from = own, "--error-bound-bits"
    elif switches is not None:
        coeff_bound = coefficient_error_bound(params, scale, switches)
        bound_from = f"fresh encryption + {switches} key switch(es)"
    else:
        coeff_bound, bound_from = None, None

    flood_bound = sigma = None
    if req.share_safe:
        if ledger is None:
            raise InputError("share-safe decryption needs the key's ledger (a keyring)")
        try:
            flood_bound, bound_from = share_safe_error_bound(params, scale, switches, own)
            flooding_width(flood_bound, req.statistical_security, req.budget)
        except ValueError as exc:
            raise InputError(f"--share-safe: {exc}; pass --error-bound-bits") from None
        coeff_bound = flood_bound
        charging = ledger.charge(len(cts), req.budget, exceed=req.exceed_budget, source=source,
                                 statistical_security=req.statistical_security)
    else:
        charging = contextlib.nullcontext(None)
    out_slots = []
    with charging as charge:
        dec = Decryptor(ctx, secret_key())
        for i, ct in enumerate(cts):
            full = dec.decrypt(ct, n_values=params.slots)
            if float(np.max(np.abs(full))) >= GARBAGE_MAGNITUDE:
                raise KeyMismatchError(f"{source}: ciphertext {i} decrypts to values beyond 2^39, outside anything "
                                       "fhectl encrypts: the file was altered or was not encrypted under this key")
            if coeff_bound is not None:
                check_plausible(full, ct.slots, dtype, slot_bound(coeff_bound, params, scale), source, i)
            if req.share_safe:
                # The flooding hides an error up to flood_bound only. Where the decryption shows its error
                # (parts that should be zero), it must be within that bound, else its real error is larger
                # (a scaled or computed-on ciphertext) and the flooding would leak: refuse.
                residue = known_zero_residue(full, ct.slots, dtype.kind != "c")
                limit = slot_bound(flood_bound, params, scale)
                if residue > limit:
                    raise RefusedError(
                        f"{source}: ciphertext {i} shows an error of 2^{math.log2(residue):.1f} where it should be "
                        f"zero, beyond the 2^{math.log2(limit):.1f} that flooding for an error bound of "
                        f"2^{math.log2(flood_bound):.1f} ({bound_from}) can hide: its real error is larger than "
                        "the bound; refusing share-safe decryption (give --error-bound-bits from your own analysis)")
                try:
                    values, sigma = dec.decrypt_share_safe(ct, flood_bound, req.statistical_security, req.budget)
                except ValueError as exc:
                    raise InputError(f"--share-safe: {exc}") from None
            else:
                values = full[:ct.slots]
            out_slots.append(values)
            tick()
    arr = restore(np.concatenate(out_slots)[:n_values], shape, dtype, source)

    report = {"params_id": params.params_id, "profile": params.name, "shape": list(shape), "dtype": dtype.name,
              "values": n_values, "ciphertexts": len(cts), "level": cts[0].level,
              "scale_bits": round(math.log2(scale), 3), "share_safe": req.share_safe,
              "signature": "verified" if signer else ("unsigned" if claimed_signer(c) is None else "not verified"),
              "signer": signer or claimed_signer(c)}
    warnings = []
    bits = None
    if coeff_bound is not None:
        plain = slot_bound(coeff_bound, params, scale)
        report.update({"error_bound_log2": round(math.log2(coeff_bound), 2), "error_bound_from": bound_from,
                       "predicted_precision_bits": round(-math.log2(plain), 2)})
        bits = -math.log2(plain)
        if req.share_safe:
            flooded = plain + slot_bound(TAIL * sigma, params, scale)
            bits = -math.log2(flooded)
            report.update({"statistical_security": req.statistical_security, "budget": req.budget,
                           "flooding_sigma_log2": round(math.log2(sigma), 2),
                           "share_safe_precision_bits": round(bits, 2),
                           "precision_cost_bits": round(math.log2(flooded / plain), 2),
                           "ledger": {"decryptions": charge.after.decryptions,
                                      "budget_spent": round(float(charge.after.spent), 4),
                                      "remaining_at_this_budget": charge.remaining,
                                      "over_budget": charge.over_budget}})
            if charge.over_budget:
                warnings.append(f"warning: over the share-safe budget (forced, recorded): the key has now given out "
                                f"{charge.after.decryptions} share-safe decryptions, "
                                f"{float(charge.after.spent):.0%} of its budget; the statistical guarantee no "
                                "longer holds for them")
    if dtype.kind in "biu" and bits is not None and bits < 1.5:
        warnings.append(f"warning: predicted error 2^{-bits:.1f} may exceed 0.5: rounded integers can be off")
    if req.share_safe and bits is not None and bits < 0:
        warnings.append(f"warning: share-safe output has no precision left (error up to 2^{-bits:.1f})")
    return DecryptResult(arr, report, warnings, bits)
