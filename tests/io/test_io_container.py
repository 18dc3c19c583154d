"""Container round trips, limits, bindings and bundles."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fhectl.errors import FormatError, InputError, KeyMismatchError
from fhectl.io.container import (DTYPES, KIND_CODES, Container, bundle_containers, check_binding,
                                 decode_container, encode_container, read_container, read_header,
                                 unbundle_containers, write_container)

SHAPES = [(), (0,), (1,), (7,), (3, 5), (2, 0, 4), (1, 2, 1, 3, 1, 2, 1, 2)]


def _values(dtype: str, shape, rng):
    dt = np.dtype(dtype)
    if dt.kind == "c":
        return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dt)
    if dt.kind == "f":
        return rng.normal(size=shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("shape", SHAPES)
def test_round_trip_every_dtype_and_shape(dtype, shape):
    rng = np.random.default_rng(1)
    c = Container("plaintext", "00ff", "k-1", 3, {"shape": list(shape)}, {"a": _values(dtype, shape, rng)})
    back = decode_container(encode_container(c), "mem")
    assert back == c
    a = back.arrays["a"]
    assert a.dtype == DTYPES[dtype] and a.shape == shape
    assert a.flags.writeable and (a.size == 0 or a.ctypes.data % 64 == 0)  # empty views may point anywhere


def test_file_round_trip_and_fingerprint(tmp_path, sample_containers):
    for i, c in enumerate(sample_containers):
        path = tmp_path / f"obj{i}.fhe"
        digest = write_container(path, c)
        assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.read_bytes() == encode_container(c)
        back = read_container(path, expected_kind=c.kind)
        assert back == c
        assert list(back.arrays) == list(c.arrays)
        back.arrays[next(iter(back.arrays))][...] = 0  # writable, and private to this read
        assert read_container(path) == c


def test_layout_is_aligned(sample_containers):
    data = encode_container(sample_containers[2])
    header = decode_container(data, "mem")
    assert data[:8] == b"\x89FHECTL\n"
    assert all(a.ctypes.data % 64 == 0 for a in header.arrays.values() if a.size)


def test_inputs_are_normalised():
    big_endian = np.arange(6, dtype=">f8").reshape(2, 3)
    strided = np.arange(20, dtype=np.int64)[::3]
    c = Container("plaintext", "", "", None, {"n": np.int64(5), "x": np.float64(0.5)},
                  {"be": big_endian, "strided": strided, "native_uint": np.arange(3, dtype=np.uint64)})
    back = decode_container(encode_container(c), "mem")
    np.testing.assert_array_equal(back.arrays["be"], big_endian)
    assert back.arrays["be"].dtype == np.dtype("<f8")
    np.testing.assert_array_equal(back.arrays["strided"], strided)
    assert back.meta == {"n": 5, "x": 0.5} and type(back.meta["n"]) is int


@pytest.mark.parametrize("bad", [np.zeros(3, np.float32), np.zeros(3, bool), np.zeros(2, np.int32),
                                 np.array([object()]), np.zeros(2, "datetime64[s]")])
def test_unsupported_dtype_is_refused(bad):
    with pytest.raises(FormatError, match="cannot store array 'x': dtype"):
        encode_container(Container("plaintext", "", "", None, {}, {"x": bad}))


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "banana"}, "unknown object kind 'banana'"),
    ({"params_id": "XYZ"}, "params_id 'XYZ'"),
    ({"key_id": "a b"}, "key_id 'a b'"),
    ({"key_version": 0}, "key_version 0"),
    ({"key_version": True}, "key_version True"),
    ({"meta": {"x": float("nan")}}, "meta is not storable"),
    ({"meta": {"x": object()}}, "meta is not storable"),
    ({"arrays": {"bad name": np.zeros(1)}}, "array name 'bad name'"),
    ({"arrays": {"deep": np.zeros((1,) * 9)}}, "9 dimensions"),
])
def test_invalid_objects_are_refused_on_write(kwargs, message):
    fields = dict(kind="ciphertext", params_id="ab", key_id="k-1", key_version=1, meta={}, arrays={})
    fields.update(kwargs)
    with pytest.raises(FormatError, match=message):
        encode_container(Container(**fields))


def test_expected_kind_and_size_limit(tmp_path, sample_containers):
    path = tmp_path / "ct.fhe"
    write_container(path, sample_containers[0])
    with pytest.raises(FormatError, match="holds a ciphertext, expected a public-key"):
        read_container(path, expected_kind="public-key")
    with pytest.raises(FormatError, match="over the limit of 100"):
        read_container(path, max_bytes=100)


def test_read_header_skips_the_payload(tmp_path, sample_containers):
    c = sample_containers[2]
    path = tmp_path / "gk.fhe"
    write_container(path, c)
    header = read_header(path, expected_kind="galois-keys")
    assert (header.kind, header.params_id, header.key_id, header.key_version) == (
        c.kind, c.params_id, c.key_id, c.key_version)
    assert [(e.name, e.dtype, e.shape) for e in header.arrays] == [
        (n, "<u8", a.shape) for n, a in c.arrays.items()]


def test_write_is_exclusive_when_asked(tmp_path, sample_containers):
    path = tmp_path / "ct.fhe"
    write_container(path, sample_containers[0], exclusive=True)
    with pytest.raises(FileExistsError):
        write_container(path, sample_containers[1], exclusive=True)
    assert read_container(path) == sample_containers[0]


def test_check_binding_messages(sample_containers):
    ct = sample_containers[0]
    check_binding(ct, params_id=ct.params_id, key_id=ct.key_id, key_version=1)
    with pytest.raises(KeyMismatchError, match=r"file was encrypted under key 'k-3f2a0b1c2d3e' version 1, "
                                               r"keyring has version 2 \(primary\)"):
        check_binding(ct, key_version=2, against_status="primary")
    with pytest.raises(KeyMismatchError, match="under key 'k-3f2a0b1c2d3e', keyring has key 'k-other'"):
        check_binding(ct, key_id="k-other")
    with pytest.raises(KeyMismatchError, match="parameter set '3f2a9c0d11e4b7a8', keyring uses parameter set 'aa'"):
        check_binding(ct, params_id="aa")
    with pytest.raises(KeyMismatchError, match="was made under key '' no key version"):
        check_binding(sample_containers[1], key_version=1)


def test_bundle_round_trip(sample_containers):
    ct, pt, gk = sample_containers
    bundle = bundle_containers("keyset-public", {"gk": gk, "ct": ct}, params_id=ct.params_id, key_id=ct.key_id,
                               key_version=1, meta={"profile": "tiny"})
    back = decode_container(encode_container(bundle), "bundle")
    members = unbundle_containers(back)
    assert members["gk"] == gk and members["ct"] == ct
    back.arrays["stray"] = np.zeros(1)
    with pytest.raises(FormatError, match="belong to no bundle member"):
        unbundle_containers(back)


def test_kind_codes_are_stable():
    # Codes are written to disk: changing one breaks every existing file.
    assert KIND_CODES == {"ciphertext": 1, "plaintext": 2, "public-key": 3, "secret-key": 4, "relin-key": 5,
                          "galois-keys": 6, "switching-key": 7, "evaluation-keys": 8, "keyset-public": 9,
                          "refresh-request": 10, "refresh-reply": 11, "slot-masks": 12, "encapsulation-keys": 13}


def test_io_layer_does_not_import_ckks():
    code = ("import sys, fhectl.io.atomic, fhectl.io.container, fhectl.io.secret_box, fhectl.io.keyring; "
            "bad = [m for m in sys.modules if m.startswith(('fhectl.ckks', 'fhe_kernels', 'fhectl.gpt2', "
            "'fhectl.circuits', 'fhectl.cli', 'numba'))]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@settings(max_examples=60, deadline=None)
@given(arrays=st.dictionaries(
    st.from_regex(r"[a-z][a-z0-9_:]{0,6}(/[a-z0-9][a-z0-9_:]{0,5})?", fullmatch=True),
    st.sampled_from(sorted(DTYPES)).flatmap(
        lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))),
    max_size=5))
def test_round_trip_property(arrays):
    c = Container("evaluation-keys", "abc123", "k-9", 4, {"count": len(arrays)}, arrays)
    assert decode_container(encode_container(c), "mem") == c


def test_unreadable_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="missing.fhe: cannot read"):
        read_container(tmp_path / "missing.fhe")
    with pytest.raises(InputError, match="cannot read"):
        read_header(tmp_path)


# -- memory-mapped reading ----------------------------------------------------------------------


def test_mmap_read_gives_verified_memmaps(tmp_path, sample_containers):
    for i, c in enumerate(sample_containers):
        path = tmp_path / f"obj{i}.fhe"
        fingerprint = write_container(path, c)
        hasher = hashlib.sha256()
        back = read_container(path, expected_kind=c.kind, mmap=True, _hasher=hasher)
        assert back == c == read_container(path)
        assert hasher.hexdigest() == fingerprint  # the keyring's whole-file fingerprint still works
        payload = [a for a in back.arrays.values() if a.size]
        assert all(isinstance(a, np.memmap) and a.ctypes.data % 64 == 0 for a in payload)
        for a in payload:
            a[...] = 0  # writable, copy-on-write: private to this read
        assert read_container(path) == c and path.read_bytes() == encode_container(c)


def test_mmap_read_of_an_empty_payload(tmp_path):
    c = Container("plaintext", "ab", "k-1", None, {}, {"none": np.zeros((0, 2), np.uint64)})
    write_container(tmp_path / "e.fhe", c)
    assert read_container(tmp_path / "e.fhe", mmap=True) == c


def test_mmap_read_verifies_the_payload(tmp_path, sample_containers):
    path = tmp_path / "ct.fhe"
    write_container(path, sample_containers[0])
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="payload checksum mismatch"):
        read_container(path, mmap=True)
    path.write_bytes(bytes(raw[:-8]))
    with pytest.raises(FormatError, match="truncated"):
        read_container(path, mmap=True)
    with pytest.raises(FormatError, match="expected a public-key"):
        write_container(path, sample_containers[0])
        read_container(path, mmap=True, expected_kind="public-key")
