"""The CUDA backend: the ``CpuBackend`` interface on numba.cuda device arrays.

Ciphertexts, keys and the ring's tables live on the device; data crosses the
bus only in ``to_device`` / ``to_host`` (encryption, decryption,
serialization). Encoding and decoding (an FFT and a CRT per polynomial) stay
on the host, as in every GPU CKKS library, and ship limbs both ways.

Selected with ``--device cuda`` (which also accepts the CUDA simulator, for
tests) or ``--device auto`` (a real GPU only).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from fhectl.ckks.backend import RingTables, _garner_table


def cuda_available(allow_simulator: bool = True) -> tuple[bool, str]:
    """(usable, why): a real GPU, or the simulator when ``allow_simulator``."""
    try:
        from numba.core import config
    except ImportError as exc:  # pragma: no cover
        return False, f"numba missing: {exc}"
    if config.ENABLE_CUDASIM:
        return (True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)") if allow_simulator else (
            False, "only the CUDA simulator is enabled")
    try:
        from numba import cuda
    except ImportError as exc:
        return False, f"numba-cuda is not installed ({exc})"
    try:
        if not cuda.is_available():
            return False, "no CUDA driver or GPU found"
        cuda.get_current_device()
    except Exception as exc:  # noqa: BLE001 - any driver failure means "not usable", with its reason
        return False, f"CUDA unusable: {exc}"
    return True, "GPU"


class CudaBackend:
    """numba.cuda kernels (fhe_kernels.cuda) on device arrays."""

    name = "cuda"

    def __init__(self, tables: RingTables, threads: int | None = None):
        import os

        from numba import cuda

        from fhe_kernels.cuda import elementwise, ntt, rns

        self.cuda = cuda
        self.kew, self.kntt, self.krns = elementwise, ntt, rns
        # threads per block; FHECTL_CUDA_BLOCK lets tests use small blocks so multi-block paths run
        self.threads = threads or int(os.environ.get("FHECTL_CUDA_BLOCK", "256"))
        self.t = tables
        up = lambda a: cuda.to_device(np.ascontiguousarray(a))  # noqa: E731
        n = tables.ntt
        self.d_moduli = up(n.moduli)
        self.d_psi_rev, self.d_psi_rev_shoup = up(n.psi_rev), up(n.psi_rev_shoup)
        self.d_ipsi_rev, self.d_ipsi_rev_shoup = up(n.ipsi_rev), up(n.ipsi_rev_shoup)
        self.d_n_inv, self.d_n_inv_shoup = up(n.n_inv), up(n.n_inv_shoup)
        self._up = up
        self._cache: dict = {}
        self._identity_perm = None

    # -- launch helpers -----------------------------------------------------------
    def _grid(self, count: int):
        return ((count + self.threads - 1) // self.threads, self.threads)

    def _size(self, arr) -> int:
        return int(np.prod(arr.shape))

    def _rows(self, rows):
        key = ("rows", tuple(rows))
        if key not in self._cache:
            r = np.array(rows, dtype=np.int64)
            t = self.t
            self._cache[key] = (self._up(r), self._up(t.moduli[r]), self._up(t.mu[r]), self._up(t.k[r]),
                                self._up(t.r64[r]), self._up(t.r64_shoup[r]))
        return self._cache[key]

    def _scalars(self, rows, values):
        w, ws = self.t.scalar_words(np.array(rows, dtype=np.int64), values)
        return self._up(w), self._up(ws)

    def _perm(self, galois_element: int):
        key = ("perm", galois_element)
        if key not in self._cache:
            self._cache[key] = self._up(self.t.automorphism_perm(galois_element))
        return self._cache[key]

    # -- memory ---------------------------------------------------------------------
    def to_device(self, host: np.ndarray):
        return self.cuda.to_device(np.ascontiguousarray(host, dtype=np.uint64))

    def to_host(self, arr) -> np.ndarray:
        if not arr.is_c_contiguous():
            arr = self.copy(arr)
        return arr.copy_to_host()

    def empty(self, shape):
        return self.cuda.device_array(tuple(shape), dtype=np.uint64)

    def zeros(self, shape):
        return self.to_device(np.zeros(tuple(shape), dtype=np.uint64))

    def assign(self, dst, src) -> None:
        self.kew.copy3d[self._grid(self._size(dst))](src, dst)

    def copy(self, arr):
        out = self.empty(arr.shape)
        self.assign(out, arr)
        return out

    def limbs(self, arr, start: int, stop: int):
        return arr[:, start:stop]

    def polys(self, arr, start: int, stop: int):
        return arr[start:stop]

    def concat_limbs(self, parts):
        total = sum(p.shape[1] for p in parts)
        out = self.empty((parts[0].shape[0], total, parts[0].shape[2]))
        off = 0
        for p in parts:
            if p.shape[1]:
                self.assign(out[:, off : off + p.shape[1]], p)
            off += p.shape[1]
        return out

    def stack_polys(self, parts):
        total = sum(p.shape[0] for p in parts)
        out = self.empty((total,) + tuple(parts[0].shape[1:]))
        off = 0
        for p in parts:
            self.assign(out[off : off + p.shape[0]], p)
            off += p.shape[0]
        return out

    def stack_new_axis(self, parts):
        out = self.cuda.device_array((len(parts),) + tuple(parts[0].shape), dtype=np.uint64)
        for i, p in enumerate(parts):
            self.assign(out[i], p)
        return out

    def nbytes(self, arr) -> int:
        return self._size(arr) * 8

    def synchronize(self) -> None:
        self.cuda.synchronize()

    def memory_report(self) -> dict:
        try:
            free, total = self.cuda.current_context().get_memory_info()
            return {"device_bytes_in_use": int(total - free), "device_bytes_total": int(total)}
        except Exception:  # noqa: BLE001 - the simulator has no memory info
            return {"device_bytes_in_use": None, "device_bytes_total": None}

    # -- transforms ------------------------------------------------------------------
    def ntt(self, a, rows) -> None:
        r = self._rows(rows)[0]
        self.kntt.ntt_forward(a, r, self.d_moduli, self.d_psi_rev, self.d_psi_rev_shoup, threads=self.threads)

    def intt(self, a, rows) -> None:
        r = self._rows(rows)[0]
        self.kntt.ntt_inverse(a, r, self.d_moduli, self.d_ipsi_rev, self.d_ipsi_rev_shoup, self.d_n_inv,
                              self.d_n_inv_shoup, threads=self.threads)

    # -- element-wise ------------------------------------------------------------------
    def add(self, a, b, out, rows) -> None:
        self.kew.poly_add[self._grid(self._size(out))](a, b, out, self._rows(rows)[1])

    def sub(self, a, b, out, rows) -> None:
        self.kew.poly_sub[self._grid(self._size(out))](a, b, out, self._rows(rows)[1])

    def neg(self, a, out, rows) -> None:
        self.kew.poly_neg[self._grid(self._size(out))](a, out, self._rows(rows)[1])

    def mul(self, a, b, out, rows) -> None:
        _, q, mu, k, _, _ = self._rows(rows)
        self.kew.poly_mul[self._grid(self._size(out))](a, b, out, q, mu, k)

    def mul_accumulate(self, acc, a, b, rows) -> None:
        _, q, mu, k, _, _ = self._rows(rows)
        self.kew.multiply_accumulate[self._grid(self._size(acc))](acc, a, b, q, mu, k)

    def tensor(self, a, b, out, rows) -> None:
        _, q, mu, k, _, _ = self._rows(rows)
        self.kew.tensor_product[self._grid(a.shape[1] * a.shape[2])](a, b, out, q, mu, k)

    def mul_scalar(self, a, out, rows, values) -> None:
        w, ws = self._scalars(rows, values)
        self.kew.poly_mul_scalar[self._grid(self._size(out))](a, out, self._rows(rows)[1], w, ws)

    def add_scalar(self, a, out, rows, values) -> None:
        w, _ = self._scalars(rows, values)
        self.kew.poly_add_scalar[self._grid(self._size(out))](a, out, self._rows(rows)[1], w)

    def keyswitch_inner_product(self, ext, key, out, rows, galois_element: int = 1) -> None:
        r, q, mu, k, r64, r64s = self._rows(rows)
        self.kew.keyswitch_inner_product[self._grid(self._size(out))](
            ext, self._perm(galois_element), key, r, out, q, mu, k, r64, r64s)

    def automorphism(self, a, out, galois_element: int) -> None:
        self.kew.automorphism_ntt[self._grid(self._size(out))](a, out, self._perm(galois_element))

    # -- RNS ---------------------------------------------------------------------------
    def basis_convert(self, x, out, source_rows, target_rows) -> None:
        key = ("basis", tuple(source_rows), tuple(target_rows))
        if key not in self._cache:
            self._cache[key] = tuple(self._up(a) for a in self.t.basis_table(tuple(source_rows), tuple(target_rows)).args())
        self.krns.fast_basis_convert[self._grid(x.shape[0] * x.shape[2])](x, out, *self._cache[key])

    def sub_and_scale(self, a, b, out, rows, values) -> None:
        w, ws = self._scalars(rows, values)
        self.krns.sub_and_scale[self._grid(self._size(out))](a, b, out, self._rows(rows)[1], w, ws)

    def rescale_prepare(self, last, out, last_row: int, rows) -> None:
        _, q, mu, k, _, _ = self._rows(rows)
        self.krns.rescale_round_prepare[self._grid(self._size(out))](last, out, self.t.moduli[last_row], q, mu, k)

    # -- host conversions (encode / decode run on the host) --------------------------------
    def float_to_rns(self, values: np.ndarray, rows) -> np.ndarray:
        from fhectl.ckks.backend import CpuBackend

        return _host_backend(self.t, CpuBackend).float_to_rns(values, rows)

    def rns_to_float(self, x: np.ndarray, rows) -> np.ndarray:
        table = _garner_table(tuple(self.t.moduli_list[r] for r in rows))
        from fhe_kernels import rns as host_rns

        out = np.empty(x.shape[1], dtype=np.float64)
        host_rns.rns_to_float_centered(np.ascontiguousarray(x), out, *table.args())
        return out


@lru_cache(maxsize=8)
def _host_backend(tables, cls):
    return cls(tables)
