"""Mutation tests: every damaged or forged container must raise FormatError, nothing else.

Positions, bits and bytes come from a numpy Generator seeded with MUTATION_SEED, so a failure
names a reproducible case.
"""

import hashlib
import json
import struct

import numpy as np
import pytest

from fhectl.errors import FormatError
from fhectl.io.container import MAX_HEADER_BYTES, canonical_json, decode_container, encode_container

MUTATION_SEED = 20240611
PREFIX = struct.Struct("<8sHHIQ32s32s")
FLIPS_PER_CONTAINER = 400
TRUNCATIONS_PER_CONTAINER = 120
EXTENSIONS_PER_CONTAINER = 40


def _rejects(data: bytes, case: str) -> None:
    """The only acceptable outcome for damaged bytes is a FormatError naming the source."""
    try:
        decode_container(data, "mutant.fhe")
    except FormatError as exc:
        assert str(exc).startswith("mutant.fhe: "), f"{case}: message does not name the source: {exc}"
        return
    except Exception as exc:  # noqa: BLE001 - any other exception type is the failure being tested for
        pytest.fail(f"{case}: raised {type(exc).__name__} instead of FormatError: {exc}")
    pytest.fail(f"{case}: damaged container was accepted")


def _split(data: bytes):
    fields = PREFIX.unpack_from(data)
    header_len, payload_len = fields[3], fields[4]
    header = data[PREFIX.size:PREFIX.size + header_len]
    return fields, header, data[len(data) - payload_len:]


def _forge(fields, header: bytes, payload: bytes, *, header_len=None, payload_len=None) -> bytes:
    """Assemble a file with *valid* digests around an arbitrary header: tests semantic validation."""
    magic, version, kind = fields[:3]
    header_len = len(header) if header_len is None else header_len
    payload_len = len(payload) if payload_len is None else payload_len
    fixed = struct.pack("<8sHHIQ", magic, version, kind, header_len, payload_len)
    prefix = fixed + hashlib.sha256(fixed + header).digest() + hashlib.sha256(payload).digest()
    pad = -(PREFIX.size + len(header)) % 64
    return prefix + header + bytes(pad) + payload


@pytest.fixture
def encoded(sample_containers):
    return [encode_container(c) for c in sample_containers]


def test_forge_helper_reproduces_valid_files(encoded):
    for data in encoded:
        fields, header, payload = _split(data)
        assert _forge(fields, header, payload) == data


def test_random_bit_flips(encoded):
    rng = np.random.default_rng(MUTATION_SEED)
    for n, data in enumerate(encoded):
        for _ in range(FLIPS_PER_CONTAINER):
            pos, bit = int(rng.integers(len(data))), int(rng.integers(8))
            mutant = bytearray(data)
            mutant[pos] ^= 1 << bit
            _rejects(bytes(mutant), f"container {n}, bit {bit} of byte {pos}")


def test_every_byte_of_the_fixed_header_and_padding(encoded):
    data = encoded[0]
    _, header, _ = _split(data)
    for pos in range(PREFIX.size + len(header) + 64):
        mutant = bytearray(data)
        mutant[pos] ^= 0x80
        _rejects(bytes(mutant), f"high bit of byte {pos}")


def test_truncations(encoded):
    rng = np.random.default_rng(MUTATION_SEED + 1)
    for n, data in enumerate(encoded):
        random_cuts = rng.integers(0, len(data), TRUNCATIONS_PER_CONTAINER)
        cuts = {0, 1, 7, 8, 87, 88, len(data) - 1} | {int(x) for x in random_cuts}
        for cut in sorted(cuts):
            _rejects(data[:cut], f"container {n} truncated to {cut} bytes")


def test_extensions(encoded):
    rng = np.random.default_rng(MUTATION_SEED + 2)
    for n, data in enumerate(encoded):
        for _ in range(EXTENSIONS_PER_CONTAINER):
            extra = rng.integers(0, 256, size=int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
            _rejects(data + extra, f"container {n} extended by {len(extra)} bytes")
        _rejects(data + bytes(64), f"container {n} extended by 64 zero bytes")


@pytest.mark.parametrize("header_len", [0, MAX_HEADER_BYTES + 1, 2**32 - 1, "plus64", "minus1"])
def test_header_length_edits(encoded, header_len):
    for n, data in enumerate(encoded):
        fields, header, payload = _split(data)
        value = {"plus64": len(header) + 64, "minus1": len(header) - 1}.get(header_len, header_len)
        mutant = bytearray(data)
        struct.pack_into("<I", mutant, 12, value)
        _rejects(bytes(mutant), f"container {n} header length {value}")


@pytest.mark.parametrize("payload_len", [2**64 - 1, 2**40, 2**40 * 8 + 64, "plus1", "minus1", 0])
def test_payload_length_edits(encoded, payload_len):
    for n, data in enumerate(encoded):
        fields, header, payload = _split(data)
        value = {"plus1": len(payload) + 1, "minus1": max(len(payload) - 1, 0)}.get(payload_len, payload_len)
        if value == len(payload):
            continue
        mutant = bytearray(data)
        struct.pack_into("<Q", mutant, 16, value)
        _rejects(bytes(mutant), f"container {n} payload length {value}")
        # the same lie with the header digest recomputed: the size check must still catch it
        _rejects(_forge(fields, header, payload, payload_len=value), f"container {n} forged payload length {value}")


def test_kind_and_version_edits(encoded):
    for n, data in enumerate(encoded):
        fields, header, payload = _split(data)
        for kind in [0, 10, 255, 65535] + [k for k in range(1, 10) if k != fields[2]]:
            mutant = bytearray(data)
            struct.pack_into("<H", mutant, 10, kind)
            _rejects(bytes(mutant), f"container {n} kind code {kind}")
            if 1 <= kind <= 9:  # digest recomputed: the JSON kind must still disagree
                _rejects(_forge(fields[:2] + (kind,) + fields[3:], header, payload), f"forged kind code {kind}")
        for version in (0, 2, 256, 65535):
            mutant = bytearray(data)
            struct.pack_into("<H", mutant, 8, version)
            _rejects(bytes(mutant), f"container {n} format version {version}")
            _rejects(_forge(fields[:1] + (version,) + fields[2:], header, payload), f"forged version {version}")


def test_json_edits_with_old_checksum(encoded):
    """Same length JSON edits, digests left as they were."""
    for n, data in enumerate(encoded):
        _, header, _ = _split(data)
        start = PREFIX.size
        for old, new in [(b'"kind"', b'"kinD"'), (b'"shape":[', b'"shape":['), (b'"<u8"', b'"<i8"'),
                         (b'"offset":0', b'"offset":1'), (b'"key_id"', b'"key_iD"')]:
            at = header.find(old)
            if at < 0 or old == new:
                continue
            mutant = bytearray(data)
            mutant[start + at:start + at + len(new)] = new
            _rejects(bytes(mutant), f"container {n} JSON edit {old!r} -> {new!r}")


def _table_forgeries(doc: dict):
    """Well-checksummed headers that lie about the arrays: each must fail validation."""
    first = doc["arrays"][0]

    def edit(**changes):
        out = json.loads(json.dumps(doc))
        out["arrays"][0].update(changes)
        return out

    yield "2**40 elements", edit(shape=[2**20, 2**20], nbytes=2**43)
    yield "2**64 elements", edit(shape=[2**32, 2**32], nbytes=2**67)
    yield "negative dim", edit(shape=[-1] + first["shape"][1:])
    yield "float dim", edit(shape=[1.0] * len(first["shape"]))
    yield "bool dim", edit(shape=[True])
    yield "nbytes off by one", edit(nbytes=first["nbytes"] + 1)
    yield "unaligned offset", edit(offset=first["offset"] + 8)
    yield "offset past payload", edit(offset=2**50)
    yield "object dtype", edit(dtype="|O")
    yield "float32 dtype", edit(dtype="<f4")
    yield "big-endian dtype", edit(dtype=">u8")
    yield "nine dims", edit(shape=[1] * 9)
    yield "bad name", edit(name="../etc/passwd")
    yield "extra field", edit(extra=1)
    yield "overlap", {**doc, "arrays": doc["arrays"] + [dict(first, name="again")]}
    yield "duplicate name", {**doc, "arrays": doc["arrays"] + [dict(doc["arrays"][-1])]}
    yield "missing field", {k: v for k, v in doc.items() if k != "meta"}
    yield "unknown kind", {**doc, "kind": "banana"}
    yield "other kind", {**doc, "kind": "secret-key" if doc["kind"] != "secret-key" else "ciphertext"}
    yield "table not a list", {**doc, "arrays": {}}
    yield "meta not a dict", {**doc, "meta": []}
    yield "params_id not hex", {**doc, "params_id": "XYZ"}
    yield "key_version float", {**doc, "key_version": 1.0}
    yield "empty table", {**doc, "arrays": []}


def test_forged_headers_with_valid_checksums(encoded):
    for n, data in enumerate(encoded):
        fields, header, payload = _split(data)
        doc = json.loads(header)
        for case, forged in _table_forgeries(doc):
            if case == "empty table" and not payload:
                continue
            _rejects(_forge(fields, canonical_json(forged), payload), f"container {n}: {case}")
        # not canonical, duplicate keys, NaN, deep nesting, bad UTF-8, not JSON at all
        for case, raw in [("spaces", json.dumps(doc).encode()),
                          ("duplicate key", header[:-1] + b',"kind":"ciphertext"}'),
                          ("NaN", header.replace(b'"meta":{', b'"meta":{"x":NaN,', 1)),
                          ("huge float", header.replace(b'"meta":{', b'"meta":{"x":1e999,', 1)),
                          ("deep nesting", b"[" * 100000 + b"]" * 100000),
                          ("bad utf-8", header.replace(b'"kind"', b'"\xff\xfeind"', 1)),
                          ("not json", b"\x00" * len(header))]:
            _rejects(_forge(fields, raw, payload), f"container {n}: {case}")


def test_forged_header_longer_than_limit(encoded):
    fields, header, payload = _split(encoded[0])
    doc = json.loads(header)
    doc["meta"]["padding"] = "x" * MAX_HEADER_BYTES
    _rejects(_forge(fields, canonical_json(doc), payload), "header over 1 MiB")
