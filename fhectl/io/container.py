"""One binary container for every fhectl object: a kind, bindings, metadata and named arrays.

This layer knows nothing of CKKS: ``fhectl.ckks`` turns its ciphertexts and keys into a
:class:`Container` (kind, params_id, key_id, key_version, meta, arrays) and back.

File layout (all integers little-endian)::

    offset     size  field
    ---------  ----  -----------------------------------------------------------------
    0          8     magic  b"\\x89FHECTL\\n"  (the 0x89 byte and the newline catch 7-bit and
                     text-mode transfers, as in PNG)
    8          2     format version, u16 (this module writes and reads version 1)
    10         2     kind code, u16 (see KIND_CODES; codes are never reused)
    12         4     header length H, u32, 1 <= H <= MAX_HEADER_BYTES (1 MiB)
    16         8     payload length P, u64
    24         32    header digest  = SHA-256(bytes 0..23 || header)
    56         32    payload digest = SHA-256(payload)
    88         H     header: canonical JSON, UTF-8 (sorted keys, no spaces, no NaN)
    88+H       pad   zero bytes up to D = align64(88 + H)
    D          P     payload: the arrays' raw little-endian bytes, each starting at a
                     multiple of 64 (zero padding between them); the file ends at D + P

Header JSON::

    {"kind": "ciphertext", "params_id": "<hex>", "key_id": "k-3f2a...", "key_version": 1 | null,
     "meta": {...JSON values: level, scale, slots...},
     "arrays": [{"name": "data", "dtype": "<u8", "shape": [2, 3, 8192],
                 "offset": 0, "nbytes": 393216}, ...]}

Two digests rather than one over header+payload: the header digest (which also covers the
fixed fields before it, so a changed kind, version or length is caught) lets a reader trust
the array table *before* it allocates or reads a payload of hundreds of MB, and lets
:func:`read_header` inspect a large key file without reading its payload; the payload digest
is computed while the payload streams into its buffer. Both are checked before any array is
returned.

Readers validate everything before allocating: the file size equals the declared lengths,
the header is bounded, its JSON is canonical and typed, dtypes are in :data:`DTYPES`, shapes
are bounded, ``nbytes == prod(shape) * itemsize``, and the arrays tile the payload in order
without overlap. Every failure is a :class:`~fhectl.errors.FormatError` naming the source.

Returned arrays are **writable**, 64-byte aligned views into one private buffer per read (no
second copy of a large key); changing them never touches the file. ``read_container(..., mmap=True)``
returns views of a copy-on-write memory map of the file instead, with the same guarantees.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from fhectl.errors import FormatError, InputError, KeyMismatchError

from .atomic import atomic_writer

MAGIC = b"\x89FHECTL\n"
FORMAT_VERSION = 1
ALIGN = 64
MAX_HEADER_BYTES = 1 << 20
MAX_NDIM = 8
MAX_ARRAY_ELEMENTS = 1 << 36  # per array; far above any CKKS key, far below an absurd 2**40 claim

_PREFIX = struct.Struct("<8sHHIQ32s32s")
PREFIX_BYTES = _PREFIX.size  # 88
_DIGESTED_PREFIX = 24  # magic, version, kind, header length, payload length

# Kind names and their u16 codes on disk. Append new kinds; never renumber or reuse a code.
KIND_CODES: dict[str, int] = {
    "ciphertext": 1,
    "plaintext": 2,
    "public-key": 3,
    "secret-key": 4,
    "relin-key": 5,
    "galois-keys": 6,
    "switching-key": 7,
    "evaluation-keys": 8,
    "keyset-public": 9,
    "refresh-request": 10,  # fhectl serve: ciphertexts the server sends its key holder to refresh
    "refresh-reply": 11,  # ... and the fresh encryptions that come back
    "slot-masks": 12,  # which slots of a refresh request carry values (uint8 per slot)
    "encapsulation-keys": 13,  # bootstrapping's sparse-secret encapsulation: two public switching keys
}
KIND_NAMES: dict[int, str] = {code: name for name, code in KIND_CODES.items()}

# The only dtypes a container stores: explicit little-endian, fixed size, no objects.
DTYPES: dict[str, np.dtype] = {
    "<u8": np.dtype("<u8"),
    "<i8": np.dtype("<i8"),
    "<f8": np.dtype("<f8"),
    "<c16": np.dtype("<c16"),
    "<u1": np.dtype("<u1"),
}

_HEX = re.compile(r"[0-9a-f]{0,128}\Z")
_KEY_ID = re.compile(r"[A-Za-z0-9._:-]{0,128}\Z")
# "/"-separated segments, none empty or starting with "." (so no "..", no absolute paths), <= 256 chars.
_SEGMENT = r"[A-Za-z0-9_:+=@,-][A-Za-z0-9._:+=@,-]*"
_ARRAY_NAME = re.compile(rf"(?=.{{1,256}}\Z){_SEGMENT}(?:/{_SEGMENT})*\Z")
_MEMBER_NAME = re.compile(rf"(?=.{{1,128}}\Z){_SEGMENT}\Z")
_HEADER_FIELDS = {"kind", "params_id", "key_id", "key_version", "meta", "arrays"}
_ARRAY_FIELDS = {"name", "dtype", "shape", "offset", "nbytes"}


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass(eq=False)
class Container:
    """A generic stored object. ``key_version`` is None for objects not tied to a keyring version.

    Equality is exact: same fields, same meta, same array names in the same order, dtypes,
    shapes and bytes.
    """

    kind: str
    params_id: str
    key_id: str
    key_version: int | None = None
    meta: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Container):
            return NotImplemented
        if (self.kind, self.params_id, self.key_id, self.key_version, self.meta) != (
                other.kind, other.params_id, other.key_id, other.key_version, other.meta):
            return False
        if list(self.arrays) != list(other.arrays):
            return False
        for name, a in self.arrays.items():
            b = other.arrays[name]
            a, b = np.asarray(a), np.asarray(b)
            if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:  # shapes only: a secret key's values must never reach a log
        arrays = ", ".join(f"{n}: {np.asarray(a).dtype.str}{list(np.shape(a))}" for n, a in self.arrays.items())
        return (f"Container(kind={self.kind!r}, params_id={self.params_id!r}, key_id={self.key_id!r}, "
                f"key_version={self.key_version!r}, meta={self.meta!r}, arrays={{{arrays}}})")


@dataclass(frozen=True)
class ArrayEntry:
    """One row of the header's array table."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class ContainerHeader:
    """A verified header: everything but the array values (see :func:`read_header`)."""

    kind: str
    params_id: str
    key_id: str
    key_version: int | None
    meta: dict
    arrays: tuple[ArrayEntry, ...]
    payload_bytes: int
    format_version: int = FORMAT_VERSION


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------

def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def canonical_json(value) -> bytes:
    """The one byte string fhectl writes for a JSON value (sorted keys, compact, UTF-8, no NaN)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False, default=_json_default).encode("utf-8")


def _storage_dtype(name: str, array: np.ndarray) -> str:
    dt = array.dtype
    for code, target in DTYPES.items():
        if dt.kind == target.kind and dt.itemsize == target.itemsize:
            return code
    raise FormatError(f"cannot store array {name!r}: dtype {dt} is not one of {', '.join(DTYPES)}")


def _check_bindings(source: str, kind, params_id, key_id, key_version) -> None:
    if not isinstance(kind, str) or kind not in KIND_CODES:
        raise FormatError(f"{source}: unknown object kind {kind!r} (known: {', '.join(KIND_CODES)})")
    if not isinstance(params_id, str) or not _HEX.match(params_id):
        raise FormatError(f"{source}: params_id {params_id!r} is not a lowercase hex string of at most 128 digits")
    if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
        raise FormatError(f"{source}: key_id {key_id!r} is not a string of at most 128 characters [A-Za-z0-9._:-]")
    if key_version is not None and (type(key_version) is not int or not 1 <= key_version < 2**31):
        raise FormatError(f"{source}: key_version {key_version!r} is not null or an integer in [1, 2**31)")


@dataclass
class _Prepared:
    prefix: bytes
    header: bytes
    arrays: list[tuple[int, np.ndarray]]  # (padding before, flat uint8 view)


def _prepare(obj: Container) -> _Prepared:
    source = f"container of kind {obj.kind!r}"
    _check_bindings(source, obj.kind, obj.params_id, obj.key_id, obj.key_version)
    if not isinstance(obj.meta, dict) or not all(isinstance(k, str) for k in obj.meta):
        raise FormatError(f"{source}: meta must be a dict with string keys")
    table, views, cursor = [], [], 0
    payload_hash = hashlib.sha256()
    for name, value in obj.arrays.items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name):
            raise FormatError(f"{source}: array name {name!r} is not 1-256 characters [A-Za-z0-9._:/+=@,-] "
                              "in '/'-separated parts, none empty or starting with '.'")
        array = np.asarray(value)
        code = _storage_dtype(name, array)
        shape = tuple(int(d) for d in array.shape)
        if len(shape) > MAX_NDIM:
            raise FormatError(f"{source}: array {name!r} has {len(shape)} dimensions, more than {MAX_NDIM}")
        flat = np.ascontiguousarray(array, dtype=DTYPES[code]).reshape(-1).view(np.uint8)
        offset = _align(cursor)
        pad = offset - cursor
        payload_hash.update(bytes(pad))
        payload_hash.update(memoryview(flat))
        table.append({"name": name, "dtype": code, "shape": list(shape), "offset": offset, "nbytes": flat.size})
        views.append((pad, flat))
        cursor = offset + flat.size
    doc = {"kind": obj.kind, "params_id": obj.params_id, "key_id": obj.key_id, "key_version": obj.key_version,
           "meta": obj.meta, "arrays": table}
    try:
        header = canonical_json(doc)
    except (TypeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{source}: meta is not storable as JSON: {exc}") from None
    if len(header) > MAX_HEADER_BYTES:
        raise FormatError(f"{source}: header is {len(header)} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    fixed = _PREFIX.pack(MAGIC, FORMAT_VERSION, KIND_CODES[obj.kind], len(header), cursor, bytes(32), bytes(32))
    header_digest = hashlib.sha256(fixed[:_DIGESTED_PREFIX] + header).digest()
    prefix = fixed[:_DIGESTED_PREFIX] + header_digest + payload_hash.digest()
    return _Prepared(prefix, header, views)


def _chunks(prep: _Prepared) -> Iterator[bytes | memoryview]:
    yield prep.prefix
    yield prep.header
    yield bytes(_align(PREFIX_BYTES + len(prep.header)) - PREFIX_BYTES - len(prep.header))
    for pad, flat in prep.arrays:
        if pad:
            yield bytes(pad)
        yield memoryview(flat)


def encode_container(obj: Container) -> bytes:
    """The container's file bytes (for stdout; use :func:`write_container` for files)."""
    return b"".join(_chunks(_prepare(obj)))


def write_container(path: str | os.PathLike, obj: Container, *, mode: int = 0o644, exclusive: bool = False) -> str:
    """Write ``obj`` to ``path`` atomically, streaming the arrays (no whole-file copy in memory).

    Returns the SHA-256 (hex) of the whole file as written: its fingerprint for a manifest.
    """
    prep = _prepare(obj)
    file_hash = hashlib.sha256()
    with atomic_writer(path, mode, exclusive) as f:
        for chunk in _chunks(prep):
            file_hash.update(chunk)
            f.write(chunk)
    return file_hash.hexdigest()


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------

def _reject_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def _no_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(value) -> bool:
    return type(value) is int


def _parse_header(source: str, raw: bytes, kind_code: int, payload_len: int) -> ContainerHeader:
    try:
        doc = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
        canonical = canonical_json(doc)
    except (UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise FormatError(f"{source}: header is not valid JSON: {exc}") from None
    if canonical != raw:
        raise FormatError(f"{source}: header JSON is not in canonical form")
    if not isinstance(doc, dict) or set(doc) != _HEADER_FIELDS:
        found = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise FormatError(f"{source}: header fields are {found}, expected {sorted(_HEADER_FIELDS)}")
    _check_bindings(source, doc["kind"], doc["params_id"], doc["key_id"], doc["key_version"])
    if doc["kind"] != KIND_NAMES[kind_code]:
        raise FormatError(f"{source}: header says kind {doc['kind']!r} "
                          f"but the kind code says {KIND_NAMES[kind_code]!r}")
    if not isinstance(doc["meta"], dict):
        raise FormatError(f"{source}: meta is a {type(doc['meta']).__name__}, expected an object")
    table = doc["arrays"]
    if not isinstance(table, list):
        raise FormatError(f"{source}: array table is a {type(table).__name__}, expected a list")
    entries, names, cursor = [], set(), 0
    for i, row in enumerate(table):
        if not isinstance(row, dict) or set(row) != _ARRAY_FIELDS:
            raise FormatError(f"{source}: array table entry {i} must have exactly the fields {sorted(_ARRAY_FIELDS)}")
        name, dtype, shape, offset, nbytes = (row[k] for k in ("name", "dtype", "shape", "offset", "nbytes"))
        if not isinstance(name, str) or not _ARRAY_NAME.match(name):
            raise FormatError(f"{source}: array table entry {i} has an invalid name {name!r}")
        where = f"{source}: array {name!r}"
        if name in names:
            raise FormatError(f"{where} appears twice in the array table")
        names.add(name)
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise FormatError(f"{where} has dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
        if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(_is_int(d) and d >= 0 for d in shape):
            raise FormatError(f"{where} has shape {shape!r}; expected at most {MAX_NDIM} non-negative integers")
        if any(d > MAX_ARRAY_ELEMENTS for d in shape) or math.prod(shape) > MAX_ARRAY_ELEMENTS:
            raise FormatError(f"{where} declares shape {shape}, more than {MAX_ARRAY_ELEMENTS} elements")
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if not _is_int(nbytes) or nbytes != expected:
            raise FormatError(f"{where} declares {nbytes!r} bytes, but shape {shape} of {dtype} needs {expected}")
        if not _is_int(offset) or offset != _align(cursor):
            raise FormatError(f"{where} starts at payload offset {offset!r}, expected {_align(cursor)} "
                              "(arrays are stored in order, each aligned to 64 bytes, without overlap)")
        if offset + nbytes > payload_len:
            raise FormatError(f"{where} ends at payload byte {offset + nbytes}, past the payload's {payload_len} bytes")
        entries.append(ArrayEntry(name, dtype, tuple(shape), offset, nbytes))
        cursor = offset + nbytes
    if cursor != payload_len:
        raise FormatError(f"{source}: array table covers {cursor} payload bytes, header declares {payload_len}")
    return ContainerHeader(doc["kind"], doc["params_id"], doc["key_id"], doc["key_version"], doc["meta"],
                           tuple(entries), payload_len)


def _read_exact(f: BinaryIO, buf, source: str, what: str) -> None:
    view = memoryview(buf)
    done = 0
    while done < len(view):
        n = f.readinto(view[done:])
        if not n:
            raise FormatError(f"{source}: truncated while reading the {what} (file shrank during the read?)")
        done += n


def _read_verified_header(f: BinaryIO, size: int, source: str, max_bytes: int | None,
                          hasher=None) -> tuple[ContainerHeader, bytes]:
    """Read and verify everything before the payload; returns the header and the payload digest."""
    if max_bytes is not None and size > max_bytes:
        raise FormatError(f"{source}: file is {size} bytes, over the limit of {max_bytes}")
    first = bytearray(min(size, PREFIX_BYTES))
    _read_exact(f, first, source, "fixed header")
    if hasher is not None:
        hasher.update(first)
    if first[:8] != MAGIC[:len(first[:8])]:
        raise FormatError(f"{source}: not an fhectl container (bad magic {bytes(first[:8])!r})")
    if size < PREFIX_BYTES:
        raise FormatError(f"{source}: truncated: file has {size} bytes, "
                          f"shorter than the {PREFIX_BYTES}-byte fixed header")
    _, version, kind_code, header_len, payload_len, header_digest, payload_digest = _PREFIX.unpack(first)
    if version != FORMAT_VERSION:
        raise FormatError(f"{source}: unsupported container format version {version} "
                          f"(this fhectl reads version {FORMAT_VERSION})")
    if kind_code not in KIND_NAMES:
        raise FormatError(f"{source}: unknown object kind code {kind_code}")
    if not 1 <= header_len <= MAX_HEADER_BYTES:
        raise FormatError(f"{source}: header length {header_len} is outside 1..{MAX_HEADER_BYTES} bytes")
    data_start = _align(PREFIX_BYTES + header_len)
    if size < data_start:
        raise FormatError(f"{source}: truncated: header declares {header_len} header bytes, "
                          f"file has {max(0, size - PREFIX_BYTES)}")
    if size - data_start < payload_len:
        raise FormatError(f"{source}: truncated: header declares {payload_len} payload bytes, "
                          f"file has {size - data_start}")
    if size - data_start > payload_len:
        raise FormatError(f"{source}: {size - data_start - payload_len} unexpected bytes after the declared "
                          f"{payload_len}-byte payload")
    rest = bytearray(data_start - PREFIX_BYTES)
    _read_exact(f, rest, source, "header")
    if hasher is not None:
        hasher.update(rest)
    raw = bytes(rest[:header_len])
    if hashlib.sha256(bytes(first[:_DIGESTED_PREFIX]) + raw).digest() != header_digest:
        raise FormatError(f"{source}: header checksum mismatch (file corrupted or edited)")
    if any(rest[header_len:]):
        raise FormatError(f"{source}: non-zero padding between header and payload")
    return _parse_header(source, raw, kind_code, payload_len), payload_digest


def _check_kind(source: str, header: ContainerHeader, expected_kind: str | None) -> None:
    if expected_kind is not None and header.kind != expected_kind:
        raise FormatError(f"{source}: holds a {header.kind}, expected a {expected_kind}")


def _read_container_stream(f: BinaryIO, size: int, source: str, expected_kind: str | None,
                           max_bytes: int | None, hasher=None) -> Container:
    header, payload_digest = _read_verified_header(f, size, source, max_bytes, hasher)
    _check_kind(source, header, expected_kind)
    # Only now, with every length checked against the real file size, allocate the payload:
    # one 64-byte aligned buffer, so every array view is aligned for the kernels.
    n = header.payload_bytes
    raw = np.empty(n + ALIGN, dtype=np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    payload = raw[start:start + n]
    _read_exact(f, payload, source, "payload")
    if hasher is not None:
        hasher.update(memoryview(payload))
    if f.read(1):
        raise FormatError(f"{source}: file grew during the read")
    if hashlib.sha256(memoryview(payload)).digest() != payload_digest:
        raise FormatError(f"{source}: payload checksum mismatch (file corrupted)")
    arrays = {e.name: payload[e.offset:e.offset + e.nbytes].view(DTYPES[e.dtype]).reshape(e.shape)
              for e in header.arrays}
    return Container(header.kind, header.params_id, header.key_id, header.key_version, header.meta, arrays)


def _open_for_reading(source: str) -> BinaryIO:
    try:
        return open(source, "rb")
    except OSError as exc:
        raise InputError(f"{source}: cannot read: {exc.strerror or exc}") from None


MMAP_HASH_CHUNK = 1 << 24  # bytes hashed per step of a mapped payload: bounded memory touched at once


def _map_container(f: BinaryIO, size: int, source: str, expected_kind: str | None, max_bytes: int | None,
                   hasher=None) -> Container:
    """Like :func:`_read_container_stream`, but the arrays are views into a copy-on-write map of the file."""
    header, payload_digest = _read_verified_header(f, size, source, max_bytes, hasher)
    _check_kind(source, header, expected_kind)
    n = header.payload_bytes
    start = f.tell()  # the payload's offset, a multiple of 64: so is every array's address in the map
    if n == 0:
        payload = np.empty(0, dtype=np.uint8)
    else:
        try:
            payload = np.memmap(f, dtype=np.uint8, mode="c", offset=start, shape=(n,))
        except (OSError, ValueError) as exc:
            raise FormatError(f"{source}: cannot map the payload: {exc}") from None
    # The digest is taken through the map itself, so what was verified is what the arrays show. fhectl
    # replaces files by rename (atomic_writer), which leaves a map of the old file intact; a writer
    # editing the file in place while it is mapped is outside this check, as it is for any reader.
    digest = hashlib.sha256()
    for lo in range(0, n, MMAP_HASH_CHUNK):
        chunk = memoryview(payload[lo:lo + MMAP_HASH_CHUNK])
        digest.update(chunk)
        if hasher is not None:
            hasher.update(chunk)
    if os.fstat(f.fileno()).st_size != size:
        raise FormatError(f"{source}: file changed size during the read")
    if digest.digest() != payload_digest:
        raise FormatError(f"{source}: payload checksum mismatch (file corrupted)")
    arrays = {e.name: payload[e.offset:e.offset + e.nbytes].view(DTYPES[e.dtype]).reshape(e.shape)
              for e in header.arrays}
    return Container(header.kind, header.params_id, header.key_id, header.key_version, header.meta, arrays)


def read_container(path: str | os.PathLike, *, expected_kind: str | None = None, max_bytes: int | None = None,
                   mmap: bool = False, _hasher=None) -> Container:
    """Read and fully verify a container file. ``_hasher`` (hashlib object) is fed every byte read.

    ``mmap=True``: the arrays are ``np.memmap`` views of a private copy-on-write map of the file (writable,
    changes never reach the file), verified against the payload digest through the map before they are
    returned; pages are read from disk when first touched and the kernel may drop them again, so a server
    can hold many large key files without holding them in its own memory.

    A file that cannot be opened raises InputError; anything wrong inside it, FormatError.
    """
    source = os.fspath(path)
    with _open_for_reading(source) as f:
        size = os.fstat(f.fileno()).st_size
        if mmap:
            return _map_container(f, size, source, expected_kind, max_bytes, _hasher)
        return _read_container_stream(f, size, source, expected_kind, max_bytes, _hasher)


def decode_container(data: bytes | bytearray | memoryview, source_name: str = "<stdin>", *,
                     expected_kind: str | None = None, max_bytes: int | None = None) -> Container:
    """Decode container bytes (from stdin, say); arrays are copied into a private aligned buffer."""
    view = memoryview(data)
    return _read_container_stream(io.BytesIO(view), view.nbytes, source_name, expected_kind, max_bytes)


def read_header(path: str | os.PathLike, *, expected_kind: str | None = None) -> ContainerHeader:
    """Verify the file's lengths and header digest and return the header, without reading the payload.

    The payload is *not* verified: use this to inspect, never to trust array contents.
    """
    source = os.fspath(path)
    with _open_for_reading(source) as f:
        header, _ = _read_verified_header(f, os.fstat(f.fileno()).st_size, source, None)
    _check_kind(source, header, expected_kind)
    return header


# ---------------------------------------------------------------------------------------------
# Bindings and bundles
# ---------------------------------------------------------------------------------------------

def check_binding(container: Container, *, params_id: str | None = None, key_id: str | None = None,
                  key_version: int | None = None, source: str = "file", against: str = "keyring",
                  against_status: str | None = None) -> None:
    """Raise KeyMismatchError if ``container`` was not made under the given parameters / key / version.

    ``source`` names the file and ``against`` what it is compared with, for the message, e.g.
    "file was encrypted under key 'k-3f2a' version 1, keyring has version 2 (primary)".
    """
    verb = "was encrypted under" if container.kind == "ciphertext" else "was made under"
    if params_id is not None and container.params_id != params_id:
        raise KeyMismatchError(f"{source} {verb} parameter set {container.params_id!r}, "
                               f"{against} uses parameter set {params_id!r}")
    if key_id is not None and container.key_id != key_id:
        raise KeyMismatchError(f"{source} {verb} key {container.key_id!r}, {against} has key {key_id!r}")
    if key_version is not None and container.key_version != key_version:
        found = "no key version" if container.key_version is None else f"version {container.key_version}"
        status = f" ({against_status})" if against_status else ""
        raise KeyMismatchError(f"{source} {verb} key {container.key_id!r} {found}, "
                               f"{against} has version {key_version}{status}")


def bundle_containers(kind: str, members: dict[str, Container], *, params_id: str, key_id: str,
                      key_version: int | None = None, meta: dict | None = None) -> Container:
    """Pack several containers into one (e.g. kind "keyset-public"): arrays become "<member>/<array>".

    Each member's kind, bindings and meta are kept under ``meta["members"]``, so
    :func:`unbundle_containers` restores them exactly.
    """
    meta = dict(meta or {})
    if "members" in meta:
        raise FormatError("bundle meta may not define 'members' itself")
    index, arrays = {}, {}
    for member, c in members.items():
        if not isinstance(member, str) or not _MEMBER_NAME.match(member):
            raise FormatError(f"bundle member name {member!r} is not 1-128 characters [A-Za-z0-9._:+=@,-] "
                              "not starting with '.'")
        index[member] = {"kind": c.kind, "params_id": c.params_id, "key_id": c.key_id,
                         "key_version": c.key_version, "meta": c.meta, "arrays": list(c.arrays)}
        for name, value in c.arrays.items():
            arrays[f"{member}/{name}"] = value
    meta["members"] = index
    return Container(kind, params_id, key_id, key_version, meta, arrays)


def unbundle_containers(bundle: Container, source: str = "bundle") -> dict[str, Container]:
    """Inverse of :func:`bundle_containers`; FormatError if the index and the arrays disagree."""
    index = bundle.meta.get("members")
    if not isinstance(index, dict):
        raise FormatError(f"{source}: not a bundle (meta has no 'members' object)")
    out, claimed = {}, set()
    for member, info in index.items():
        where = f"{source}: bundle member {member!r}"
        if not _MEMBER_NAME.match(member) or not isinstance(info, dict) or set(info) != {
                "kind", "params_id", "key_id", "key_version", "meta", "arrays"}:
            raise FormatError(f"{where} has a malformed index entry")
        _check_bindings(where, info["kind"], info["params_id"], info["key_id"], info["key_version"])
        if not isinstance(info["meta"], dict) or not isinstance(info["arrays"], list):
            raise FormatError(f"{where} has a malformed index entry")
        arrays = {}
        for name in info["arrays"]:
            full = f"{member}/{name}" if isinstance(name, str) else None
            if full is None or full not in bundle.arrays or full in claimed:
                raise FormatError(f"{where} lists array {name!r}, which the bundle does not hold")
            claimed.add(full)
            arrays[name] = bundle.arrays[full]
        out[member] = Container(info["kind"], info["params_id"], info["key_id"], info["key_version"],
                                info["meta"], arrays)
    extra = set(bundle.arrays) - claimed
    if extra:
        raise FormatError(f"{source}: arrays {sorted(extra)} belong to no bundle member")
    return out
