"""The backend seam: where the scheme's polynomial arithmetic meets a kernel set.

The scheme code (keys, encryptor, evaluator, key switching) only ever calls a
``Backend``'s methods on the arrays the backend gave it; it never indexes a
limb array itself. ``CpuBackend`` runs the Numba ``@njit`` kernels on numpy
arrays; a CUDA backend implements the same methods on device arrays so
ciphertexts and keys stay on the GPU.

Arrays are (B, L, N) uint64: B polynomials, L limbs, N coefficients. ``rows``
is an int64 array naming, for each limb, its row in the ring tables: the
primes of Q come first (rows 0..L_max), then the special primes of P. A
ciphertext at level l has rows 0..l; an extended key-switching polynomial has
rows 0..l followed by the P rows.

``Backend`` declares what every backend owes the scheme code; a context is
built on one (``CKKSContext(params, device=...)`` or ``backend_factory=``)
and keeps it for its lifetime.
"""

from __future__ import annotations

import ctypes
import os
import sys
from functools import lru_cache
from typing import Protocol, runtime_checkable

import numpy as np

from fhe_kernels import automorphism as kauto
from fhe_kernels import elementwise as kew
from fhe_kernels import keyswitch as kks
from fhe_kernels import ntt as kntt
from fhe_kernels import rns as krns
from fhe_kernels.modarith import barrett_constants, shoup_word
from fhe_kernels.ntt import NttTables


class RingTables:
    """Host-side constants of the ring Z_{QP}[X]/(X^N + 1) for one parameter set."""

    def __init__(self, moduli: tuple[int, ...], ring_degree: int, n_q: int):
        self.ring_degree = ring_degree
        self.moduli_list = [int(q) for q in moduli]
        self.n_q = n_q  # rows 0..n_q-1 are Q, the rest P
        self.ntt = NttTables(moduli, ring_degree)
        self.moduli = self.ntt.moduli
        consts = [barrett_constants(q) for q in self.moduli_list]
        self.mu = np.array([c[0] for c in consts], dtype=np.uint64)
        self.k = np.array([c[1] for c in consts], dtype=np.uint64)
        self.r64 = np.array([(1 << 64) % q for q in self.moduli_list], dtype=np.uint64)
        self.r64_shoup = np.array([shoup_word((1 << 64) % q, q) for q in self.moduli_list], dtype=np.uint64)
        self._basis_tables: dict = {}
        self._perms: dict = {}
        self._pow2 = None

    def basis_table(self, source_rows: tuple[int, ...], target_rows: tuple[int, ...]) -> krns.BasisConversionTable:
        key = (source_rows, target_rows)
        table = self._basis_tables.get(key)
        if table is None:
            table = krns.BasisConversionTable(
                [self.moduli_list[r] for r in source_rows], [self.moduli_list[r] for r in target_rows]
            )
            self._basis_tables[key] = table
        return table

    def automorphism_perm(self, galois_element: int) -> np.ndarray:
        perm = self._perms.get(galois_element)
        if perm is None:
            perm = kauto.ntt_automorphism_permutation(galois_element, self.ring_degree)
            self._perms[galois_element] = perm
        return perm

    def pow2_table(self) -> np.ndarray:
        if self._pow2 is None:
            self._pow2 = krns.pow2_mod_table(self.moduli_list)
        return self._pow2

    def scalar_words(self, rows: np.ndarray, values: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Per-row constants reduced mod each row's prime, with their Shoup words."""
        red = [int(v) % self.moduli_list[int(r)] for v, r in zip(values, rows)]
        words = [shoup_word(v, self.moduli_list[int(r)]) for v, r in zip(red, rows)]
        return np.array(red, dtype=np.uint64), np.array(words, dtype=np.uint64)


@lru_cache(maxsize=None)
def _rows_array(rows: tuple[int, ...]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def _keep_freed_memory_for_reuse() -> None:
    """Ask glibc to serve large arrays from its heap and not hand freed ones back to the OS.

    Every operation allocates multi-megabyte limb arrays. By default glibc
    maps each one fresh (mmap above 128 KiB-32 MiB) and unmaps it on free, so
    every operation pays a page fault per 4 KiB on first touch: measured at
    N=2^16, 21 limbs, key-switching decomposition 47 ms -> 32 ms with this.
    Peak memory is unchanged; memory freed stays with the process.
    """
    if os.environ.get("FHECTL_NO_MALLOPT") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 1 << 30)
        libc.mallopt(m_trim_threshold, (1 << 31) - 1)
    except (OSError, AttributeError):
        pass


@runtime_checkable
class Backend(Protocol):
    """The polynomial arithmetic the scheme code calls: what ``CpuBackend`` and ``CudaBackend`` both provide.

    Arrays are the backend's own (numpy on the CPU, device arrays on CUDA) and (B, L, N) uint64; ``rows``
    names each limb's row in the ring tables. Operations write into ``out`` (which may alias an input
    where the CPU kernels allow it) and return None. ``float_to_rns`` / ``rns_to_float`` take and return
    host arrays on every backend: encoding and decoding run on the host.
    """

    name: str  # "cpu", "cuda": what ``CKKSContext.device`` reports

    # -- memory
    def to_device(self, host: np.ndarray): ...

    def to_host(self, arr) -> np.ndarray: ...

    def empty(self, shape): ...

    def zeros(self, shape): ...

    def copy(self, arr): ...

    def assign(self, dst, src) -> None: ...

    def limbs(self, arr, start: int, stop: int): ...

    def polys(self, arr, start: int, stop: int): ...

    def concat_limbs(self, parts): ...

    def stack_polys(self, parts): ...

    def stack_new_axis(self, parts): ...

    def nbytes(self, arr) -> int: ...

    def synchronize(self) -> None:
        """Wait until every operation issued so far has finished (a no-op where operations are synchronous)."""
        ...

    def memory_report(self) -> dict | None:
        """Device memory counters (see ``CudaBackend.memory_report``), or None where there is no device memory."""
        ...

    # -- transforms
    def ntt(self, a, rows) -> None: ...

    def intt(self, a, rows) -> None: ...

    # -- element-wise
    def add(self, a, b, out, rows) -> None: ...

    def sub(self, a, b, out, rows) -> None: ...

    def neg(self, a, out, rows) -> None: ...

    def mul(self, a, b, out, rows) -> None: ...

    def mul_accumulate(self, acc, a, b, rows) -> None: ...

    def tensor(self, a, b, out, rows) -> None: ...

    def mul_scalar(self, a, out, rows, values: list[int]) -> None: ...

    def add_scalar(self, a, out, rows, values: list[int]) -> None: ...

    def keyswitch_inner_product(self, ext, key, out, rows, galois_element: int = 1, key_rows=None) -> None: ...

    def automorphism(self, a, out, galois_element: int) -> None: ...

    # -- RNS
    def basis_convert(self, x, out, source_rows, target_rows) -> None: ...

    def sub_and_scale(self, a, b, out, rows, values: list[int]) -> None: ...

    def rescale_prepare(self, last, out, last_row: int, rows) -> None: ...

    # -- host conversions
    def float_to_rns(self, values: np.ndarray, rows) -> np.ndarray: ...

    def rns_to_float(self, x: np.ndarray, rows) -> np.ndarray: ...


class CpuBackend:
    """Numba @njit kernels on numpy arrays (the reference backend)."""

    name = "cpu"

    def __init__(self, tables: RingTables):
        self.t = tables
        _keep_freed_memory_for_reuse()

    # -- memory ---------------------------------------------------------------
    def to_device(self, host: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(host, dtype=np.uint64)

    def to_host(self, arr) -> np.ndarray:
        return arr

    def empty(self, shape) -> np.ndarray:
        return np.empty(shape, dtype=np.uint64)

    def zeros(self, shape) -> np.ndarray:
        return np.zeros(shape, dtype=np.uint64)

    def copy(self, arr) -> np.ndarray:
        return arr.copy()

    def limbs(self, arr, start: int, stop: int):
        """A view (or device slice) of limbs start..stop-1 of every polynomial."""
        return arr[:, start:stop]

    def polys(self, arr, start: int, stop: int):
        return arr[start:stop]

    def concat_limbs(self, parts):
        return np.concatenate(parts, axis=1)

    def stack_polys(self, parts):
        return np.concatenate(parts, axis=0)

    def stack_new_axis(self, parts):
        return np.stack(parts)

    def nbytes(self, arr) -> int:
        return int(arr.nbytes)

    def synchronize(self) -> None:
        """Nothing to wait for: every kernel has returned when its call does."""

    def memory_report(self) -> None:
        """None: host memory is the process's own, not counted here."""
        return None

    # -- per-row constants ------------------------------------------------------
    def _moduli(self, rows: tuple[int, ...]):
        r = _rows_array(rows)
        return self.t.moduli[r], self.t.mu[r], self.t.k[r]

    # -- transforms ---------------------------------------------------------------
    def ntt(self, a, rows: tuple[int, ...]) -> None:
        n = self.t.ntt
        kntt.ntt_forward(a, _rows_array(rows), n.moduli, n.psi_rev, n.psi_rev_shoup)

    def intt(self, a, rows: tuple[int, ...]) -> None:
        n = self.t.ntt
        kntt.ntt_inverse(a, _rows_array(rows), n.moduli, n.ipsi_rev, n.ipsi_rev_shoup, n.n_inv, n.n_inv_shoup)

    # -- element-wise ---------------------------------------------------------------
    def add(self, a, b, out, rows) -> None:
        kew.poly_add(a, b, out, self._moduli(rows)[0])

    def sub(self, a, b, out, rows) -> None:
        kew.poly_sub(a, b, out, self._moduli(rows)[0])

    def neg(self, a, out, rows) -> None:
        kew.poly_neg(a, out, self._moduli(rows)[0])

    def mul(self, a, b, out, rows) -> None:
        q, mu, k = self._moduli(rows)
        kew.poly_mul(a, b, out, q, mu, k)

    def mul_accumulate(self, acc, a, b, rows) -> None:
        q, mu, k = self._moduli(rows)
        kew.multiply_accumulate(acc, a, b, q, mu, k)

    def tensor(self, a, b, out, rows) -> None:
        q, mu, k = self._moduli(rows)
        kew.tensor_product(a, b, out, q, mu, k)

    def mul_scalar(self, a, out, rows, values: list[int]) -> None:
        """out = a * values[i] mod q_i; values are integers (any size, reduced here)."""
        w, ws = self.t.scalar_words(_rows_array(rows), values)
        kew.poly_mul_scalar(a, out, self._moduli(rows)[0], w, ws)

    def add_scalar(self, a, out, rows, values: list[int]) -> None:
        """out = a + values[i] mod q_i on every coefficient (a constant in the NTT domain)."""
        w, _ = self.t.scalar_words(_rows_array(rows), values)
        kew.poly_add_scalar(a, out, self._moduli(rows)[0], w)

    def keyswitch_inner_product(self, ext, key, out, rows, galois_element: int = 1, key_rows=None) -> None:
        """out[c] = sum_j sigma_g(ext[j]) * key[j, c] over the limbs ``rows`` (c = 0, 1); the key's limb of
        each is ``key_rows`` (default ``rows``: a key over every row of the ring)."""
        r = _rows_array(rows)
        t = self.t
        perm = t.automorphism_perm(galois_element)
        kr = r if key_rows is None else _rows_array(key_rows)
        kks.keyswitch_inner_product(ext, perm, key, kr, out, t.moduli[r], t.mu[r], t.k[r], t.r64[r], t.r64_shoup[r])

    def assign(self, dst, src) -> None:
        """Copy src into the view dst (same shape)."""
        dst[...] = src

    def automorphism(self, a, out, galois_element: int) -> None:
        kauto.automorphism_ntt(a, out, self.t.automorphism_perm(galois_element))

    # -- RNS ---------------------------------------------------------------------
    def basis_convert(self, x, out, source_rows: tuple[int, ...], target_rows: tuple[int, ...]) -> None:
        table = self.t.basis_table(source_rows, target_rows)
        krns.fast_basis_convert(x, out, *table.args())

    def sub_and_scale(self, a, b, out, rows, values: list[int]) -> None:
        w, ws = self.t.scalar_words(_rows_array(rows), values)
        krns.sub_and_scale(a, b, out, self._moduli(rows)[0], w, ws)

    def rescale_prepare(self, last, out, last_row: int, rows) -> None:
        """last: (B, 1, N) top limb in the coefficient domain; out: (B, len(rows), N)."""
        q, mu, k = self._moduli(rows)
        krns.rescale_round_prepare(last[:, 0], out, self.t.moduli[last_row], q, mu, k)

    # -- host conversions (encode / decode always run on the host) ------------------
    def float_to_rns(self, values: np.ndarray, rows) -> np.ndarray:
        """(1, len(rows), N) residues of round(values), host array."""
        r = _rows_array(rows)
        out = np.empty((len(rows), values.shape[0]), dtype=np.uint64)
        krns.float_to_rns(values, out, self.t.moduli[r], self.t.mu[r], self.t.k[r], self.t.pow2_table()[r])
        return out[None]

    def rns_to_float(self, x: np.ndarray, rows) -> np.ndarray:
        """Centered values of (len(rows), N) host residues, as float64."""
        table = _garner_table(tuple(self.t.moduli_list[r] for r in rows))
        out = np.empty(x.shape[1], dtype=np.float64)
        krns.rns_to_float_centered(np.ascontiguousarray(x), out, *table.args())
        return out


@lru_cache(maxsize=64)
def _garner_table(moduli: tuple[int, ...]) -> krns.GarnerTable:
    return krns.GarnerTable(moduli)

