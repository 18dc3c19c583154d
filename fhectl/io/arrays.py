"""Plaintext number files, and how a ciphertext file describes the array it holds.

Input: a .npy file, or UTF-8 text/CSV with one row per line (commas, semicolons or spaces between
numbers, complex numbers written as 1+2j, '#' starts a comment). Output: .npy, CSV or text.

A ciphertext file made by `fhectl encrypt` records the array in its meta::

    "data": {"shape": [...], "dtype": "float64" | "complex128" | "int32" | ..., "values": n}

The values are flattened in C order and cut into ciphertexts of N/2 slots, so ``values``, the
ciphertext count and each ciphertext's slots_used must agree; :func:`data_description` checks that
before anything is decrypted, and :func:`restore` gives the decrypted slots back their dtype and
shape (integers and booleans rounded, and refused when they do not fit).
"""

from __future__ import annotations

import io
import math
import re
import sys
from pathlib import Path

import numpy as np

from fhectl.errors import FormatError, InputError

from .container import Container
from .inputs import NPY_MAGIC, load_npy, read_stdin

# The dtypes a ciphertext file may describe (numbers only: no objects, strings or records).
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "float32", "float64", "complex64", "complex128")
OUTPUT_FORMATS = ("auto", "npy", "csv", "text")
_SEPARATORS = re.compile(r"[,;\s]+")


# -- reading numbers ---------------------------------------------------------------------------

def parse_text(data: bytes, source: str) -> np.ndarray:
    """Numbers from text: one row per line; a single row or column becomes a vector."""
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
        arr = parse_text(data, source)
    if arr.dtype.name not in DTYPES:
        raise InputError(f"{source}: dtype {arr.dtype} is not supported (numbers: {', '.join(DTYPES)})")
    if arr.size == 0:
        raise InputError(f"{source} holds no values")
    return arr


# -- what a ciphertext file says it holds ------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def data_meta(arr: np.ndarray) -> dict:
    """The meta 'data' entry describing ``arr`` (see the module docstring)."""
    return {"shape": [int(d) for d in arr.shape], "dtype": arr.dtype.name, "values": int(arr.size)}


def data_description(c: Container, slots: int, source: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and value count from meta 'data', checked against the ciphertexts' slot counts
    (``slots``: N/2 of the parameters the file is under)."""
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
    slots_used, count = c.meta.get("slots_used"), c.meta.get("count")
    expected = [min(slots, values - i) for i in range(0, values, slots)]
    if slots_used != expected or count != len(expected):
        raise FormatError(f"{source}: {values} values should fill {len(expected)} ciphertext(s) with {expected} "
                          f"slots, the header says {count} with {slots_used}")
    return tuple(shape), np.dtype(dtype), values


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


# -- writing numbers ---------------------------------------------------------------------------

def _fmt_number(v, decimals: int, kind: str) -> str:
    if kind in "biu":
        return str(int(v))
    if kind == "c":
        return f"{v.real:.{decimals}f}{v.imag:+.{decimals}f}j"
    return f"{v:.{decimals}f}"


def format_text(arr: np.ndarray, decimals: int, sep: str) -> str:
    """Rows of the last axis, one per line (a comment line gives the shape of a 3-d or deeper array)."""
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
    """npy, csv or text: ``fmt``, or by the extension of ``output`` when ``fmt`` is auto (stdout: text)."""
    if fmt not in OUTPUT_FORMATS:
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
