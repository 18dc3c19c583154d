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

from fhe_kernels.automorphism import galois_element_for_conjugation, galois_element_for_rotation
from fhectl.ckks import prng
from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encapsulation import EncapsulationKeys
from fhectl.ckks.keys import GaloisKeys, PublicKey, SecretKey, SwitchingKey, check_public_key
from fhectl.ckks.params import Parameters
from fhectl.errors import FormatError, KeyMismatchError
from fhectl.io.container import ALIGN, PREFIX_BYTES, Container, canonical_json


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


def _switching_shape(ctx: CKKSContext, max_level: int | None = None) -> tuple[int, ...]:
    """(digits, 2, limbs, N) of a full key, or of one truncated to ``max_level`` (the digits of that level, the
    limbs of Q_max_level and P: ``SwitchingKey``)."""
    p = ctx.params
    level = p.max_level if max_level is None else max_level
    return (len(p.digits(level)), 2, len(ctx.qp_rows(level)), p.ring_degree)


def _key_moduli(ctx: CKKSContext, max_level: int | None) -> list[int]:
    """The primes of a key's limbs, in order: QP, or Q_max_level and P for a truncated key."""
    p = ctx.params
    return [p.all_moduli[r] for r in ctx.qp_rows(p.max_level if max_level is None else max_level)]


# A key truncated to the levels it is used at (``SwitchingKey.max_level``) is stored like a full one with
# fewer digits and limbs; its level is in the meta ("max_level" for one key, "max_levels" for Galois keys,
# one entry per element, null for a full key), covered by the header digest, and a reader checks the arrays
# against the shape of that level. Files without it hold full keys, as before.
MAX_LEVEL = "max_level"
MAX_LEVELS = "max_levels"


def _check_max_level(value, ctx: CKKSContext, source: str) -> int | None:
    """None (a full key) or a truncation level below the chain's top, else FormatError."""
    if value is None:
        return None
    top = ctx.params.max_level
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < top:
        raise FormatError(f"{source}: a truncated key's max_level must be in 0..{top - 1}, got {value!r}")
    return value


def _max_level_of(key: SwitchingKey, ctx: CKKSContext) -> int | None:
    """A key's truncation level, checked against its shape before it is written."""
    level = _check_max_level(key.max_level, ctx, f"switching key {key.source}")
    if key.shape != _switching_shape(ctx, level):
        raise FormatError(f"switching key {key.source} has shape {key.shape}, expected "
                          f"{_switching_shape(ctx, level)} for levels up to {ctx.params.max_level if level is None else level}")
    return level


# Switching keys are stored seeded (fhectl.ckks.prng): one array "b/<j>" (L+1+K, N) per digit j and, in
# the meta (covered by the header digest like every other field), the expansion's name and the 32-byte
# seed of the a_j; a reader re-expands a. One array per digit because b_j = data[j, 0] is contiguous in
# memory, so writing a key set copies nothing (a single (dnum, L+1+K, N) array would be a strided view,
# and the writer would hold a contiguous copy of every key's b at once). Files of the first format, one
# array "data" (dnum, 2, L+1+K, N) with both halves, still load.
A_EXPANSION = "a_expansion"
A_SEED = "a_seed"
A_SEEDS = "a_seeds"


def _seed_from_meta(raw, source: str) -> bytes:
    if not (isinstance(raw, str) and len(raw) == 2 * prng.SEED_BYTES
            and all(ch in "0123456789abcdef" for ch in raw)):
        raise FormatError(f"{source}: the seed of a is not {2 * prng.SEED_BYTES} lowercase hex digits")
    return bytes.fromhex(raw)


def _check_expansion(meta: dict, source: str) -> None:
    name = meta.get(A_EXPANSION)
    if name != prng.EXPANSION:
        raise FormatError(f"{source}: a is expanded by {name!r}, this fhectl knows only {prng.EXPANSION!r}")


def _b_names(prefix: str, dnum: int) -> list[str]:
    return [f"{prefix}b/{j}" for j in range(dnum)]


def _seeded_key(ctx: CKKSContext, c: Container, prefix: str, seed: bytes, label: str, source: str,
                lazy: bool, max_level: int | None = None) -> SwitchingKey:
    """A key from its stored b_j (arrays "<prefix>b/<j>", (limbs, N) each) and the seed of its a; data built
    now or on first use. ``max_level``: a truncated key (fewer digits and limbs)."""
    want = _switching_shape(ctx, max_level)
    moduli = _key_moduli(ctx, max_level)
    b = [_array(c, name, source, "<u8") for name in _b_names(prefix, want[0])]
    for name, bj in zip(_b_names(prefix, want[0]), b):
        if bj.shape != want[2:]:
            raise FormatError(f"{source}: array {name!r} has shape {bj.shape}, expected {want[2:]}"
                              + ("" if max_level is None else f" (a key truncated to level {max_level})"))
        _check_residues(bj, moduli, source, axis_rows=0)
    p = ctx.params

    def make():
        data = np.empty(want, dtype=np.uint64)  # (dnum, 2, limbs, N)
        for j, bj in enumerate(b):
            data[j, 0] = bj
            data[j, 1] = prng.expand_uniform(seed, label, j, moduli, p.ring_degree)
        return ctx.backend.to_device(data)

    if lazy:
        return SwitchingKey.deferred(make, want, ctx.params_id, c.key_id, label, seed, max_level)
    return SwitchingKey(make(), ctx.params_id, c.key_id, label, seed, max_level)


def _load_switching(ctx: CKKSContext, arr: np.ndarray, key_id: str, source_label: str, source: str,
                    lazy: bool = False, max_level: int | None = None) -> SwitchingKey:
    """A key of the first format, both halves stored: (dnum, 2, limbs, N)."""
    want = _switching_shape(ctx, max_level)
    if arr.shape != want:
        raise FormatError(f"{source}: switching key has shape {arr.shape}, expected {want}"
                          + ("" if max_level is None else f" (a key truncated to level {max_level})"))
    _check_residues(arr, _key_moduli(ctx, max_level), source, axis_rows=2)
    if lazy:
        return SwitchingKey.deferred(lambda: ctx.backend.to_device(np.ascontiguousarray(arr)), want,
                                     ctx.params_id, key_id, source_label, None, max_level)
    return SwitchingKey(data=ctx.backend.to_device(np.ascontiguousarray(arr)), params_id=ctx.params_id,
                        key_id=key_id, source=source_label, max_level=max_level)


def _b_half(ctx: CKKSContext, key: SwitchingKey, prefix: str = "") -> dict[str, np.ndarray]:
    """{"<prefix>b/<j>": b_j}: views of the key's host data, no copy on the CPU."""
    host = np.asarray(ctx.backend.to_host(key.data))
    return {name: host[j, 0] for j, name in enumerate(_b_names(prefix, host.shape[0]))}


def _key_payload(ctx: CKKSContext, key: SwitchingKey, prefix: str, whole: str) -> tuple[dict, dict]:
    """(meta, arrays) of one switching key: seeded (b as "<prefix>b/<j>", the seed of a in the meta) when it has
    a seed, both halves as the array ``whole`` otherwise."""
    if key.seed is None:
        return {}, {whole: np.asarray(ctx.backend.to_host(key.data))}
    return {A_EXPANSION: prng.EXPANSION, A_SEED: key.seed.hex()}, _b_half(ctx, key, prefix)


def switching_key_to_container(ctx: CKKSContext, key: SwitchingKey, kind: str, key_version: int | None,
                               meta: dict | None = None) -> Container:
    """Seeded (b and the seed of a) when the key has a seed; both halves otherwise. A truncated key records
    its ``max_level`` in the meta."""
    level = _max_level_of(key, ctx)
    full = dict(meta or {})
    full["source"] = key.source
    if level is not None:
        full[MAX_LEVEL] = level
    extra, arrays = _key_payload(ctx, key, "", "data")
    return Container(kind, key.params_id, key.key_id, key_version, full | extra, arrays)


def container_to_switching_key(ctx: CKKSContext, c: Container, kind: str, source: str, *,
                               lazy: bool = False) -> SwitchingKey:
    """``lazy``: build the key's data on first use (with a memory-mapped container, b stays on disk till then)."""
    if c.kind != kind:
        raise FormatError(f"{source} holds a {c.kind}, not a {kind}")
    _check_params(c, ctx, source)
    label = c.meta.get("source")
    if not isinstance(label, str):
        raise FormatError(f"{source}: meta 'source' is missing")
    level = _check_max_level(c.meta.get(MAX_LEVEL), ctx, source)
    if "data" in c.arrays:  # the first format
        if sorted(c.arrays) != ["data"]:
            raise FormatError(f"{source}: arrays {sorted(c.arrays)}, expected ['data'] (the first format)")
        return _load_switching(ctx, _array(c, "data", source, "<u8"), c.key_id, label, source, lazy, level)
    expected = _b_names("", _switching_shape(ctx, level)[0])
    if sorted(c.arrays) != sorted(expected):
        raise FormatError(f"{source}: arrays {sorted(c.arrays)}, expected {expected} (or ['data'], the first format)")
    _check_expansion(c.meta, source)
    seed = _seed_from_meta(c.meta.get(A_SEED), source)
    return _seeded_key(ctx, c, "", seed, label, source, lazy, level)


def galois_keys_to_container(ctx: CKKSContext, gk: GaloisKeys, key_version: int | None) -> Container:
    """Seeded (arrays "g<g>/b/<j>", seeds in the meta) when every key has a seed; both halves ("g<g>") otherwise.
    When a key is truncated, meta "max_levels" lists each element's level (null: a full key)."""
    items = sorted(gk.keys.items())
    levels = [_max_level_of(k, ctx) for _, k in items]
    meta: dict = {"elements": [g for g, _ in items]}
    if any(lvl is not None for lvl in levels):
        meta[MAX_LEVELS] = levels
    if items and all(k.seed is not None for _, k in items):
        meta.update({A_EXPANSION: prng.EXPANSION, A_SEEDS: [k.seed.hex() for _, k in items]})
        arrays = {name: b for g, k in items for name, b in _b_half(ctx, k, f"g{g}/").items()}
    else:
        arrays = {f"g{g}": np.asarray(ctx.backend.to_host(k.data)) for g, k in items}
    return Container("galois-keys", gk.params_id, gk.key_id, key_version, meta, arrays)


def container_to_galois_keys(ctx: CKKSContext, c: Container, source: str = "Galois keys file", *,
                             lazy: bool = False) -> GaloisKeys:
    """``lazy``: each key's data is built on first use (see :func:`container_to_switching_key`)."""
    if c.kind != "galois-keys":
        raise FormatError(f"{source} holds a {c.kind}, not Galois keys")
    _check_params(c, ctx, source)
    elements = c.meta.get("elements")
    two_n = 2 * ctx.params.ring_degree
    if not (isinstance(elements, list) and all(isinstance(g, int) and not isinstance(g, bool) and 0 < g < two_n
                                                and g % 2 == 1 for g in elements)):
        raise FormatError(f"{source}: meta 'elements' is not a list of odd Galois elements below 2N")
    if len(set(elements)) != len(elements):
        raise FormatError(f"{source}: meta 'elements' lists a Galois element twice")
    levels = galois_max_levels(c.meta, ctx.params.max_level, source)
    if A_SEEDS not in c.meta:  # the first format
        if sorted(c.arrays) != sorted(f"g{g}" for g in elements):
            raise FormatError(f"{source}: arrays do not match the listed Galois elements")
        keys = {g: _load_switching(ctx, _array(c, f"g{g}", source, "<u8"), c.key_id, f"galois:{g}", source, lazy,
                                   levels.get(g)) for g in elements}
        return GaloisKeys(keys=keys, params_id=ctx.params_id, key_id=c.key_id)
    _check_expansion(c.meta, source)
    seeds = c.meta[A_SEEDS]
    if not isinstance(seeds, list) or len(seeds) != len(elements):
        raise FormatError(f"{source}: meta {A_SEEDS!r} does not list one seed per Galois element")
    if sorted(c.arrays) != sorted(name for g in elements
                                  for name in _b_names(f"g{g}/", _switching_shape(ctx, levels.get(g))[0])):
        raise FormatError(f"{source}: arrays do not match the listed Galois elements")
    keys = {g: _seeded_key(ctx, c, f"g{g}/", _seed_from_meta(seed, source), f"galois:{g}", source, lazy,
                           levels.get(g)) for g, seed in zip(elements, seeds)}
    return GaloisKeys(keys=keys, params_id=ctx.params_id, key_id=c.key_id)


def galois_max_levels(meta: dict, top_level: int, source: str = "Galois keys") -> dict[int, int]:
    """{element: truncation level} of a Galois-keys container's meta (elements with full keys left out), checked:
    "max_levels" absent (every key full) or one entry per element, null or an integer in 0..top_level - 1. A
    server reads it from the header to see which levels a bundle's keys cover without loading them."""
    raw = meta.get(MAX_LEVELS)
    if raw is None:
        return {}
    elements = meta.get("elements")
    if not (isinstance(raw, list) and isinstance(elements, list) and len(raw) == len(elements)):
        raise FormatError(f"{source}: meta {MAX_LEVELS!r} does not list one level (or null) per Galois element")
    out = {}
    for g, lvl in zip(elements, raw):
        if lvl is None:
            continue
        if not isinstance(lvl, int) or isinstance(lvl, bool) or not 0 <= lvl < top_level:
            raise FormatError(f"{source}: a truncated key's max_level must be in 0..{top_level - 1}, got {lvl!r}")
        out[g] = lvl
    return out


# -- encapsulation keys (bootstrapping's sparse-secret switch, fhectl.ckks.encapsulation) -------------------

# One container of kind "encapsulation-keys": array "to-sparse" (b, a) over (q0, p') as (2, 2, N) (two limbs,
# stored whole), and to_dense as a switching key over QP, seeded like the others ("to-dense/b/<j>" and its
# seed in the meta) or both halves ("to-dense"). Public material: neither key is a secret.
ENCAPSULATION_SOURCE = "encapsulation:to-dense"


def encapsulation_keys_to_container(ctx: CKKSContext, keys: EncapsulationKeys, key_version: int | None) -> Container:
    if keys.to_dense.max_level is not None:
        raise FormatError("encapsulation key to_dense must be a full key (bootstrapping switches at the top level)")
    to_sparse = np.asarray(ctx.backend.to_host(keys.to_sparse))
    extra, arrays = _key_payload(ctx, keys.to_dense, "to-dense/", "to-dense")
    meta = {"weight": int(keys.weight), "source": keys.to_dense.source} | extra
    return Container("encapsulation-keys", keys.params_id, keys.key_id, key_version, meta,
                     {"to-sparse": to_sparse} | arrays)


def container_to_encapsulation_keys(ctx: CKKSContext, c: Container, source: str = "encapsulation keys", *,
                                    lazy: bool = False) -> EncapsulationKeys:
    if c.kind != "encapsulation-keys":
        raise FormatError(f"{source} holds a {c.kind}, not encapsulation keys")
    _check_params(c, ctx, source)
    p = ctx.params
    weight = _meta_int(c.meta, "weight", source, 1, p.ring_degree)
    if c.meta.get("source") != ENCAPSULATION_SOURCE:
        raise FormatError(f"{source}: meta 'source' must be {ENCAPSULATION_SOURCE!r}")
    rows = (0, ctx.p_rows[0])  # q0 and the first special prime
    to_sparse = _array(c, "to-sparse", source, "<u8")
    if to_sparse.shape != (2, 2, p.ring_degree):
        raise FormatError(f"{source}: array 'to-sparse' has shape {to_sparse.shape}, expected {(2, 2, p.ring_degree)}")
    _check_residues(to_sparse, [p.all_moduli[r] for r in rows], source, axis_rows=1)
    dnum = _switching_shape(ctx)[0]
    seeded = _b_names("to-dense/", dnum)
    if sorted(c.arrays) == sorted(["to-sparse", "to-dense"]):
        to_dense = _load_switching(ctx, _array(c, "to-dense", source, "<u8"), c.key_id, ENCAPSULATION_SOURCE,
                                   source, lazy)
    elif sorted(c.arrays) == sorted(["to-sparse", *seeded]):
        _check_expansion(c.meta, source)
        to_dense = _seeded_key(ctx, c, "to-dense/", _seed_from_meta(c.meta.get(A_SEED), source),
                               ENCAPSULATION_SOURCE, source, lazy)
    else:
        raise FormatError(f"{source}: arrays {sorted(c.arrays)}, expected 'to-sparse' and the {dnum} digits of "
                          "'to-dense'")
    return EncapsulationKeys(weight=weight, to_sparse=ctx.backend.to_device(np.ascontiguousarray(to_sparse)),
                             to_dense=to_dense, params_id=ctx.params_id, key_id=c.key_id)


# -- sizes ----------------------------------------------------------------------------------------


def _encoded_bytes(kind: str, params_id: str, key_id: str, key_version: int | None, meta: dict,
                   arrays: list[tuple[str, str, tuple[int, ...]]]) -> int:
    """The size of a container file with these fields and arrays (name, dtype, shape), without the arrays:
    the header is the same canonical JSON :func:`fhectl.io.container.encode_container` writes."""
    table, cursor = [], 0
    for name, dtype, shape in arrays:
        offset = -(-cursor // ALIGN) * ALIGN
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        table.append({"name": name, "dtype": dtype, "shape": list(shape), "offset": offset, "nbytes": nbytes})
        cursor = offset + nbytes
    header = canonical_json({"kind": kind, "params_id": params_id, "key_id": key_id, "key_version": key_version,
                             "meta": meta, "arrays": table})
    return -(-(PREFIX_BYTES + len(header)) // ALIGN) * ALIGN + cursor


def evaluation_key_bytes(params: Parameters, steps=(), conjugation: bool = False, relin: bool = True, *,
                         seeded: bool = True, key_version: int | None = 1, max_levels: dict | None = None,
                         encapsulation: bool = False) -> dict[str, int]:
    """Bytes of the evaluation-key files of one key version, computed from the parameters alone (no key is
    generated): {"relin-key": ..., "galois-keys": ..., "encapsulation-keys": ..., "total": ...}, each file as
    the keyring writes it (meta "steps" and "conjugation" on the Galois keys, ``key_version`` set).
    ``seeded=False`` gives the first format, both halves of every key stored. ``max_levels``: step -> the
    level its key is truncated to (``SwitchingKey.max_level``; as ``Client(key_levels=...)`` makes them);
    ``encapsulation``: with bootstrapping's encapsulation keys."""
    n = params.ring_degree
    top = params.max_level
    key_id = "k-" + "0" * 12  # the length of new_key_id()
    seed = "0" * (2 * prng.SEED_BYTES)
    elements = sorted({galois_element_for_rotation(s, n) for s in steps if s % (n // 2)}
                      | ({galois_element_for_conjugation(n)} if conjugation else set()))
    by_element: dict[int, int] = {}
    for s, lvl in (max_levels or {}).items():
        g = galois_element_for_rotation(int(s), n) if int(s) % (n // 2) else None
        if g in elements:
            by_element[g] = max(by_element.get(g, 0), int(lvl))
    # The highest level over the steps of one element first, as KeyGenerator.galois_keys makes the key: a step
    # at the top makes it full, whatever a step of the same element (s and s - N/2) says.
    by_element = {g: lvl for g, lvl in by_element.items() if lvl < top}

    def shape(level: int) -> tuple[int, int]:  # (digits, limbs)
        return len(params.digits(level)), level + 1 + len(params.moduli_p)

    dnum, rows = shape(top)
    out = {"relin-key": 0, "galois-keys": 0, "encapsulation-keys": 0}
    if relin:
        meta = {"source": "relin"}
        if seeded:
            meta.update({A_EXPANSION: prng.EXPANSION, A_SEED: seed})
        arrays = ([(name, "<u8", (rows, n)) for name in _b_names("", dnum)] if seeded
                  else [("data", "<u8", (dnum, 2, rows, n))])
        out["relin-key"] = _encoded_bytes("relin-key", params.params_id, key_id, key_version, meta, arrays)
    if elements:
        meta = {"elements": elements, "steps": list(steps), "conjugation": bool(conjugation)}
        if by_element:
            meta[MAX_LEVELS] = [by_element.get(g) for g in elements]
        shapes = {g: shape(by_element.get(g, top)) for g in elements}
        if seeded:
            meta.update({A_EXPANSION: prng.EXPANSION, A_SEEDS: [seed] * len(elements)})
            arrays = [(name, "<u8", (shapes[g][1], n)) for g in elements
                      for name in _b_names(f"g{g}/", shapes[g][0])]
        else:
            arrays = [(f"g{g}", "<u8", (shapes[g][0], 2, shapes[g][1], n)) for g in elements]
        out["galois-keys"] = _encoded_bytes("galois-keys", params.params_id, key_id, key_version, meta, arrays)
    if encapsulation:
        meta = {"weight": 32, "source": ENCAPSULATION_SOURCE}
        arrays = [("to-sparse", "<u8", (2, 2, n))]
        if seeded:
            meta.update({A_EXPANSION: prng.EXPANSION, A_SEED: seed})
            arrays += [(name, "<u8", (rows, n)) for name in _b_names("to-dense/", dnum)]
        else:
            arrays.append(("to-dense", "<u8", (dnum, 2, rows, n)))
        out["encapsulation-keys"] = _encoded_bytes("encapsulation-keys", params.params_id, key_id, key_version,
                                                   meta, arrays)
    out["total"] = out["relin-key"] + out["galois-keys"] + out["encapsulation-keys"]
    return out
