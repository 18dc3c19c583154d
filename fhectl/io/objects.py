"""CKKS objects <-> containers, with every loaded value checked before arithmetic.

A container that passed its checksums can still be wrong for the context at
hand (another parameter set, a level beyond the chain, residues not reduced
modulo their prime, a secret with coefficients outside {-1, 0, 1}); these
checks turn each of those into a FormatError or KeyMismatchError naming the
problem instead of silently wrong numbers.

Scales are stored as float.hex strings: exact, and JSON has no other way to
keep every bit of a float64.
"""

from __future__ import annotations

import math

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import GaloisKeys, PublicKey, SecretKey, SwitchingKey, check_public_key
from fhectl.errors import FormatError, KeyMismatchError
from fhectl.io.container import Container


def _check_params(c: Container, ctx: CKKSContext, source: str) -> None:
    if c.params_id != ctx.params_id:
        raise KeyMismatchError(
            f"{source} was made under parameter set {c.params_id!r}, the key set uses {ctx.params_id!r} "
            f"({ctx.params.name})"
        )


def _array(c: Container, name: str, source: str, dtype: str) -> np.ndarray:
    arr = c.arrays.get(name)
    if arr is None:
        raise FormatError(f"{source}: missing array {name!r}")
    if arr.dtype != np.dtype(dtype):
        raise FormatError(f"{source}: array {name!r} has dtype {arr.dtype.str}, expected {dtype}")
    return arr


def _check_residues(arr: np.ndarray, moduli, source: str, axis_rows: int) -> None:
    """Every value on limb i (axis ``axis_rows``) must be below moduli[i]."""
    q = np.array(moduli, dtype=np.uint64)
    shape = [1] * arr.ndim
    shape[axis_rows] = len(moduli)
    if np.any(arr >= q.reshape(shape)):
        raise FormatError(f"{source}: residues are not reduced modulo their primes (corrupt or foreign data)")


def _meta_float(meta: dict, key: str, source: str) -> float:
    raw = meta.get(key)
    try:
        value = float.fromhex(raw) if isinstance(raw, str) else float("nan")
    except (ValueError, OverflowError):
        value = float("nan")
    if not math.isfinite(value) or value < 1.0:
        raise FormatError(f"{source}: meta {key!r} = {raw!r} is not a valid scale")
    return value


def _meta_int(meta: dict, key: str, source: str, lo: int, hi: int) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise FormatError(f"{source}: meta {key!r} = {v!r} is outside {lo}..{hi}")
    return v


# -- ciphertexts ----------------------------------------------------------------------


def ciphertexts_to_container(ctx: CKKSContext, cts: list[Ciphertext], key_version: int | None, meta: dict) -> Container:
    """Several ciphertexts of one level and scale in one container (arrays "data": (count, size, l+1, N))."""
    if not cts:
        raise FormatError("no ciphertexts to store")
    first = cts[0]
    for ct in cts:
        if (ct.level, ct.scale, ct.size, ct.key_id) != (first.level, first.scale, first.size, first.key_id):
            raise FormatError("ciphertexts stored together must share level, scale, size and key")
    be = ctx.backend
    data = np.stack([np.asarray(be.to_host(ct.data)) for ct in cts])
    full_meta = dict(meta)
    full_meta.update(
        {
            "level": first.level,
            "scale": float.hex(first.scale),
            "size": first.size,
            "count": len(cts),
            "slots_used": [ct.slots for ct in cts],
        }
    )
    return Container("ciphertext", ctx.params_id, first.key_id, key_version, full_meta, {"data": data})


def container_to_ciphertexts(ctx: CKKSContext, c: Container, source: str = "ciphertext file") -> list[Ciphertext]:
    if c.kind != "ciphertext":
        raise FormatError(f"{source} holds a {c.kind}, not a ciphertext")
    _check_params(c, ctx, source)
    p = ctx.params
    level = _meta_int(c.meta, "level", source, 0, p.max_level)
    size = _meta_int(c.meta, "size", source, 2, 3)
    count = _meta_int(c.meta, "count", source, 1, 1 << 24)
    scale = _meta_float(c.meta, "scale", source)
    slots_used = c.meta.get("slots_used")
    if not (isinstance(slots_used, list) and len(slots_used) == count and all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= p.slots for s in slots_used
    )):
        raise FormatError(f"{source}: meta 'slots_used' does not list {count} slot counts in 0..{p.slots}")
    data = _array(c, "data", source, "<u8")
    want = (count, size, level + 1, p.ring_degree)
    if data.shape != want:
        raise FormatError(f"{source}: data has shape {data.shape}, expected {want} for level {level}")
    _check_residues(data, p.moduli_q[: level + 1], source, axis_rows=2)
    be = ctx.backend
    return [
        Ciphertext(
            data=be.to_device(np.ascontiguousarray(data[i])),
            level=level,
            scale=scale,
            params_id=ctx.params_id,
            key_id=c.key_id,
            slots=slots_used[i],
        )
        for i in range(count)
    ]


# -- keys -------------------------------------------------------------------------------


def secret_key_to_container(sk: SecretKey, key_version: int | None) -> Container:
    return Container("secret-key", sk.params_id, sk.key_id, key_version, {"distribution": "ternary"},
                     {"coeffs": np.asarray(sk.coeffs, dtype=np.int64)})


def container_to_secret_key(ctx: CKKSContext, c: Container, keygen, source: str = "secret key file") -> SecretKey:
    if c.kind != "secret-key":
        raise FormatError(f"{source} holds a {c.kind}, not a secret key")
    _check_params(c, ctx, source)
    coeffs = _array(c, "coeffs", source, "<i8")
    if coeffs.shape != (ctx.params.ring_degree,):
        raise FormatError(f"{source}: coeffs has shape {coeffs.shape}, expected ({ctx.params.ring_degree},)")
    if np.any(np.abs(coeffs) > 1):
        raise FormatError(f"{source}: secret coefficients outside {{-1, 0, 1}}")
    return keygen.secret_from_coeffs(np.array(coeffs), c.key_id)


def public_key_to_container(ctx: CKKSContext, pk: PublicKey, key_version: int | None) -> Container:
    return Container("public-key", pk.params_id, pk.key_id, key_version, {},
                     {"data": np.asarray(ctx.backend.to_host(pk.data))})


def container_to_public_key(ctx: CKKSContext, c: Container, source: str = "public key file") -> PublicKey:
    if c.kind != "public-key":
        raise FormatError(f"{source} holds a {c.kind}, not a public key")
    _check_params(c, ctx, source)
    p = ctx.params
    data = _array(c, "data", source, "<u8")
    want = (2, p.max_level + 1, p.ring_degree)
    if data.shape != want:
        raise FormatError(f"{source}: data has shape {data.shape}, expected {want}")
    _check_residues(data, p.moduli_q, source, axis_rows=1)
    pk = PublicKey(data=ctx.backend.to_device(np.ascontiguousarray(data)), params_id=ctx.params_id, key_id=c.key_id)
    check_public_key(ctx, pk, source)  # a zero or constant key would encrypt in the clear
    return pk


def _switching_shape(ctx: CKKSContext) -> tuple[int, ...]:
    p = ctx.params
    return (len(p.digits(p.max_level)), 2, len(p.all_moduli), p.ring_degree)


def _load_switching(ctx: CKKSContext, arr: np.ndarray, key_id: str, source_label: str, source: str) -> SwitchingKey:
    want = _switching_shape(ctx)
    if arr.shape != want:
        raise FormatError(f"{source}: switching key has shape {arr.shape}, expected {want}")
    _check_residues(arr, ctx.params.all_moduli, source, axis_rows=2)
    return SwitchingKey(data=ctx.backend.to_device(np.ascontiguousarray(arr)), params_id=ctx.params_id,
                        key_id=key_id, source=source_label)


def switching_key_to_container(ctx: CKKSContext, key: SwitchingKey, kind: str, key_version: int | None,
                               meta: dict | None = None) -> Container:
    full = dict(meta or {})
    full["source"] = key.source
    return Container(kind, key.params_id, key.key_id, key_version, full,
                     {"data": np.asarray(ctx.backend.to_host(key.data))})


def container_to_switching_key(ctx: CKKSContext, c: Container, kind: str, source: str) -> SwitchingKey:
    if c.kind != kind:
        raise FormatError(f"{source} holds a {c.kind}, not a {kind}")
    _check_params(c, ctx, source)
    label = c.meta.get("source")
    if not isinstance(label, str):
        raise FormatError(f"{source}: meta 'source' is missing")
    return _load_switching(ctx, _array(c, "data", source, "<u8"), c.key_id, label, source)


def galois_keys_to_container(ctx: CKKSContext, gk: GaloisKeys, key_version: int | None) -> Container:
    arrays = {f"g{g}": np.asarray(ctx.backend.to_host(k.data)) for g, k in sorted(gk.keys.items())}
    return Container("galois-keys", gk.params_id, gk.key_id, key_version,
                     {"elements": sorted(gk.keys)}, arrays)


def container_to_galois_keys(ctx: CKKSContext, c: Container, source: str = "Galois keys file") -> GaloisKeys:
    if c.kind != "galois-keys":
        raise FormatError(f"{source} holds a {c.kind}, not Galois keys")
    _check_params(c, ctx, source)
    elements = c.meta.get("elements")
    two_n = 2 * ctx.params.ring_degree
    if not (isinstance(elements, list) and all(isinstance(g, int) and not isinstance(g, bool) and 0 < g < two_n
                                                and g % 2 == 1 for g in elements)):
        raise FormatError(f"{source}: meta 'elements' is not a list of odd Galois elements below 2N")
    if sorted(c.arrays) != sorted(f"g{g}" for g in elements):
        raise FormatError(f"{source}: arrays do not match the listed Galois elements")
    keys = {g: _load_switching(ctx, _array(c, f"g{g}", source, "<u8"), c.key_id, f"galois:{g}", source)
            for g in elements}
    return GaloisKeys(keys=keys, params_id=ctx.params_id, key_id=c.key_id)
