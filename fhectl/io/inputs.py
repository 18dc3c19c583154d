"""Untrusted user input, read with bounds: stdin and NumPy .npy files.

Both are read before anything can be checked, so each is bounded first: stdin to
:data:`MAX_STDIN_BYTES`, and a .npy file's declared shape to what its payload actually holds,
checked before any array is allocated (``numpy.load`` allocates the declared shape first, so a
header claiming 2^40 elements costs a MemoryError). Every failure is an
:class:`~fhectl.errors.InputError` naming the source.
"""

from __future__ import annotations

import ast
import math
from typing import BinaryIO

import numpy as np

from fhectl.errors import InputError

MAX_STDIN_BYTES = 1 << 30  # 1 GiB: larger inputs belong in a file
NPY_MAGIC = b"\x93NUMPY"
MAX_NPY_HEADER_BYTES = 1 << 16  # numpy's own limit is 10 000 bytes by default; this is a ceiling, not a target
MAX_NPY_NDIM = 32  # numpy's limit (NPY_MAXDIMS in NumPy 1.x)
_NPY_KEYS = {"descr", "fortran_order", "shape"}


def read_stdin(stream: BinaryIO, source: str = "<stdin>", limit: int | None = None) -> bytes:
    """All of ``stream`` up to ``limit`` bytes (default :data:`MAX_STDIN_BYTES`); more is an InputError."""
    limit = MAX_STDIN_BYTES if limit is None else limit
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{source}: stdin holds more than {limit} bytes (the limit for piped input); "
                         "pass a file path instead")
    return data


def _npy_header(data: bytes, source: str) -> tuple[dict, int]:
    """The header dict of a version 1, 2 or 3 .npy file and where its payload starts."""
    if len(data) < 10:
        raise InputError(f"{source}: truncated .npy header")
    major = data[6]
    if major == 1:
        length, start = int.from_bytes(data[8:10], "little"), 10
    elif major in (2, 3) and len(data) >= 12:
        length, start = int.from_bytes(data[8:12], "little"), 12
    else:
        raise InputError(f"{source}: unsupported .npy format version {data[6]}.{data[7]}")
    if length > MAX_NPY_HEADER_BYTES or start + length > len(data):
        raise InputError(f"{source}: .npy header length {length} is beyond the file or over "
                         f"{MAX_NPY_HEADER_BYTES} bytes")
    raw = data[start:start + length]
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
        header = ast.literal_eval(text)  # literals only: no names, calls or attribute access
    except Exception as exc:  # noqa: BLE001 - hostile text makes the parser raise ValueError, SyntaxError,
        # tokenize.TokenError, RecursionError, MemoryError...: every one means a damaged header
        raise InputError(f"{source}: damaged .npy header ({type(exc).__name__})") from None
    if not isinstance(header, dict) or set(header) != _NPY_KEYS:
        raise InputError(f"{source}: .npy header must be a dict with keys {sorted(_NPY_KEYS)}")
    return header, start + length


def load_npy(data: bytes, source: str, allowed_dtypes: tuple[str, ...] | None = None) -> np.ndarray:
    """The array in .npy bytes, checked against the payload before anything is allocated.

    Refused: a damaged or non-literal header, object or structured dtypes (and any not in
    ``allowed_dtypes``), a shape that is not a tuple of non-negative integers, and a payload whose
    length is not exactly the shape's element count times the item size.
    """
    if not data.startswith(NPY_MAGIC):
        raise InputError(f"{source}: not a .npy file (bad magic)")
    header, offset = _npy_header(data, source)
    descr, fortran, shape = header["descr"], header["fortran_order"], header["shape"]
    if not isinstance(descr, str):
        raise InputError(f"{source}: .npy dtype {descr!r} is not a plain number type")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{source}: .npy dtype {descr[:40]!r} is not understood ({exc})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise InputError(f"{source}: .npy dtype {descr[:40]!r} is not a plain number type")
    if allowed_dtypes is not None and dtype.name not in allowed_dtypes:
        raise InputError(f"{source}: dtype {dtype} is not supported (numbers: {', '.join(allowed_dtypes)})")
    if not isinstance(fortran, bool):
        raise InputError(f"{source}: .npy fortran_order must be True or False, not {fortran!r}")
    if not (isinstance(shape, tuple) and len(shape) <= MAX_NPY_NDIM
            and all(type(d) is int and d >= 0 for d in shape)):
        raise InputError(f"{source}: .npy shape {str(shape)[:60]} is not a tuple of non-negative integers")
    count = math.prod(shape)
    payload = len(data) - offset
    if count * dtype.itemsize != payload:
        raise InputError(f"{source}: .npy header declares shape {shape} ({count} x {dtype.itemsize} bytes), "
                         f"the file holds {payload} bytes of data")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C").copy(order="K")

