"""Issue 12, item 9: bad input is a usage error (one `error:` line, exit 2), never an internal error (70).

Covers damaged .npy headers (seeded random byte edits), a .npy that claims 2^40 elements, stdin larger
than the bound for `encrypt -` and `decrypt -`, and option range / unknown option / unknown command
errors, which Typer would otherwise print as a multi-line panel.
"""

import io
import struct

import numpy as np
import pytest

from clitools import INSECURE, cli, cli_fails, cli_ok
from fhectl.io.arrays import read_values
from fhectl.errors import InputError
from fhectl.io import inputs

MUTATION_SEED = 20261212


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _with_header(data: bytes, header: str) -> bytes:
    """A version 1.0 .npy with ``header`` (padded as numpy pads it) before the original payload."""
    header_len = struct.unpack("<H", data[8:10])[0]
    payload = data[10 + header_len:]
    text = header.encode("latin1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return data[:8] + struct.pack("<H", len(text)) + text + payload


def test_mutated_npy_headers_are_input_errors(tmp_path):
    original = _npy_bytes(np.arange(12, dtype=np.float64).reshape(3, 4))
    header_end = 10 + struct.unpack("<H", original[8:10])[0]
    rng = np.random.default_rng(MUTATION_SEED)
    outcomes = {"read": 0, "refused": 0}
    for case in range(300):
        data = bytearray(original)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, header_end))] = int(rng.integers(0, 256))
        path = tmp_path / "m.npy"
        path.write_bytes(bytes(data))
        try:
            arr = read_values(str(path))
        except InputError:
            outcomes["refused"] += 1
            continue
        assert arr.size * arr.itemsize <= len(original), f"case {case}: {arr.shape} {arr.dtype}"
        outcomes["read"] += 1
    assert outcomes["refused"] > 50


@pytest.mark.parametrize("header", [
    "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }",  # 2^40 elements
    "{'descr': '<f8', 'fortran_order': False, 'shape': (1048576, 1048576), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (13,), }",  # one more than the payload holds
    "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }",
    "{'descr': '|O', 'fortran_order': False, 'shape': (12,), }",
    "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (12,), }",
    "{'descr': '<f8', 'fortran_order': False, 'shape': (12,), 'x': __import__('os')}",
    "{'descr': '<f8', 'fortran_order': False, 'shape': " + "(" * 20 + "12," + ")," * 20 + " }",
    "{'descr': '<f8', 'fortran_order': 2, 'shape': (12,), }",
    "[" * 5000,
], ids=["2^40", "2^40 in 2-D", "short payload", "negative", "object", "structured", "call", "nested",
        "fortran", "deep"])
def test_hostile_npy_headers_are_exit_2(keyring, tmp_path, header):
    original = _npy_bytes(np.arange(12, dtype=np.float64))
    path = tmp_path / "h.npy"
    path.write_bytes(_with_header(original, header))
    res = cli_fails(keyring, 2, "encrypt", path, "-o", tmp_path / "x.fhe", *INSECURE)
    assert len([ln for ln in res.stderr.splitlines() if ln.strip()]) == 1


def test_fortran_order_npy_is_read_as_numpy_reads_it(tmp_path):
    arr = np.asfortranarray(np.arange(6, dtype=np.int32).reshape(2, 3))
    (tmp_path / "f.npy").write_bytes(_npy_bytes(arr))
    got = read_values(str(tmp_path / "f.npy"))
    assert got.dtype == np.int32 and np.array_equal(got, arr)


def test_stdin_is_bounded_for_encrypt_and_decrypt(keyring, tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "MAX_STDIN_BYTES", 4096)
    text = "1.5\n" * 2000  # 8000 bytes
    cli_fails(keyring, 2, "encrypt", "-", "-o", tmp_path / "x.fhe", *INSECURE, input=text, match="stdin")
    assert not (tmp_path / "x.fhe").exists()
    cli_ok(keyring, "encrypt", "-", "-o", tmp_path / "ok.fhe", *INSECURE, input="1.5\n" * 10)
    big = (tmp_path / "ok.fhe").read_bytes()
    assert len(big) > 4096
    cli_fails(keyring, 2, "decrypt", "-", "-o", tmp_path / "y.npy", *INSECURE, input=big, match="stdin")
    monkeypatch.setattr(inputs, "MAX_STDIN_BYTES", len(big))
    cli_ok(keyring, "decrypt", "-", "-o", tmp_path / "y.npy", *INSECURE, input=big)
    assert np.allclose(np.load(tmp_path / "y.npy"), 1.5)


@pytest.mark.parametrize("args", [
    ["keys", "show", "-V", "0"],
    ["keys", "show", "-V", "abc"],
    ["keys", "show", "--bogus"],
    ["decrypt", "x.fhe", "--decimals", "99"],
    ["decrypt", "x.fhe", "--statistical-security", "0"],
    ["nosuchcommand"],
    ["encrypt"],
], ids=["range", "type", "unknown option", "decimals", "-s", "unknown command", "missing argument"])
def test_usage_errors_are_one_error_line_with_exit_2(keyring, args):
    res = cli(keyring, *args)
    assert res.exit_code == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "╭" not in res.stderr and "Usage:" not in res.stderr
