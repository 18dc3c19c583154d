"""The CUDA backend: the ``fhectl.ckks.backend.Backend`` protocol on numba.cuda device arrays.

Ciphertexts, keys and the ring's tables live on the device. Data crosses the
bus in ``to_device`` / ``to_host`` (sampling, encryption inputs, decryption
output, serialization), in the small per-limb constant arrays of a scalar
operation (cached per constant), and in encoding and decoding: the FFT and
the float <-> RNS conversions run on the host, as in the GPU CKKS libraries,
so ``float_to_rns`` / ``rns_to_float`` take and return host arrays exactly as
the CPU backend's do.

Every method checks that its array arguments are device arrays and raises
``TypeError`` naming the method otherwise: numba would copy a host array to
the device and back on every launch without a word.

Selected with ``--device cuda`` (which also accepts the CUDA simulator, for
tests) or ``--device auto`` (a real GPU only); see ``fhectl.ckks.context``.
Other launch sizes: ``CKKSContext(params, backend_factory=lambda t:
CudaBackend(t, LaunchConfig(...)))``.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from fhectl.ckks.backend import CpuBackend, RingTables


def cuda_available(allow_simulator: bool = True) -> tuple[bool, str]:
    """(usable, why). A real GPU is usable; so is the CUDA simulator when ``allow_simulator``.

    The simulator is whatever numba.cuda was when first imported: it needs
    NUMBA_ENABLE_CUDASIM=1 in the environment before that import.
    """
    try:
        from fhe_kernels.cuda.launch import simulating
        from numba import cuda
    except ImportError as exc:
        return False, f"numba-cuda is not installed or cannot load ({exc})"
    if simulating():
        if allow_simulator:
            return True, "CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        return False, "numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1), not a GPU"
    try:
        if not cuda.is_available():
            err = cuda.cuda_error()
            detail = f" ({' '.join(str(err).split())})" if err else ""
            return False, f"no CUDA driver or GPU found{detail}; NUMBA_ENABLE_CUDASIM=1 selects the simulator"
        dev = cuda.get_current_device()
        name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
        return True, f"GPU {name} (compute capability {dev.compute_capability[0]}.{dev.compute_capability[1]})"
    except Exception as exc:  # noqa: BLE001 - any driver failure means "not usable", with its reason
        return False, f"CUDA unusable: {exc}"


@dataclass(frozen=True)
class LaunchConfig:
    """Block and grid sizes. The defaults suit an H100; tests use tiny ones so multi-block paths run."""

    threads: int = 256  # threads per block of the element-wise, RNS and key-switching kernels
    max_blocks_x: int = 4096  # grid cap along a row (grid-stride loops cover the rest)
    max_blocks_y: int = 65535  # grid cap over rows (the hardware limit of gridDim.y)
    ntt_threads: int = 256  # threads per block of an NTT pass
    ntt_pass_bits: int = 8  # stages per NTT pass: N = 2^16 is two passes of 2^8
    ntt_columns: int = 16  # sub-transforms per block in an NTT pass (16 x 2^8 words = 32 KiB)


class _MemoryCounter:
    """Bytes of the device arrays a backend allocated that are still referenced."""

    def __init__(self):
        self.live = 0
        self.peak = 0
        self.arrays = 0

    def add(self, nbytes: int) -> None:
        self.live += nbytes
        self.arrays += 1
        self.peak = max(self.peak, self.live)

    def release(self, nbytes: int) -> None:
        self.live -= nbytes
        self.arrays -= 1


class CudaBackend:
    """The numba.cuda kernels of ``fhe_kernels.cuda`` on device arrays: a ``Backend``, as ``CpuBackend`` computes."""

    name = "cuda"
    SCALAR_CACHE = 1024  # per-limb constant arrays kept on the device, least recently used dropped

    def __init__(self, tables: RingTables, launch: LaunchConfig | None = None):
        from numba import cuda

        from fhe_kernels.cuda import automorphism, elementwise, keyswitch, ntt, rns
        from fhe_kernels.cuda.launch import grid_rows

        self.cuda = cuda
        self.k_auto, self.k_ew, self.k_ks, self.k_ntt, self.k_rns = automorphism, elementwise, keyswitch, ntt, rns
        self._grid_rows = grid_rows
        self.launch = launch or LaunchConfig()
        self.t = tables
        self._host = CpuBackend(tables)  # encode / decode conversions run on the host
        self._mem = _MemoryCounter()
        self._table_bytes = 0
        nt = tables.ntt
        self.d_moduli = self._table(nt.moduli)
        self.d_psi_rev, self.d_psi_rev_shoup = self._table(nt.psi_rev), self._table(nt.psi_rev_shoup)
        self.d_ipsi_rev, self.d_ipsi_rev_shoup = self._table(nt.ipsi_rev), self._table(nt.ipsi_rev_shoup)
        self.d_n_inv, self.d_n_inv_shoup = self._table(nt.n_inv), self._table(nt.n_inv_shoup)
        self._row_tables: dict = {}
        self._perms: dict = {}
        self._basis: dict = {}
        self._scalars: OrderedDict = OrderedDict()

    # -- tables and launches ----------------------------------------------------------------
    def _table(self, host: np.ndarray):
        arr = self.cuda.to_device(np.ascontiguousarray(host))
        self._table_bytes += int(arr.size) * arr.dtype.itemsize
        return arr

    def _rows(self, rows):
        """Device (rows int64, moduli, mu, k, r64, r64_shoup) for the limbs ``rows``, uploaded once per tuple."""
        key = tuple(int(r) for r in rows)
        out = self._row_tables.get(key)
        if out is None:
            r = np.array(key, dtype=np.int64)
            t = self.t
            out = tuple(self._table(x) for x in (r, t.moduli[r], t.mu[r], t.k[r], t.r64[r], t.r64_shoup[r]))
            self._row_tables[key] = out
        return out

    def _scalar_words(self, rows, values):
        """Device (values mod q_i, Shoup words) for one call's constants, cached by (rows, values)."""
        key = (tuple(int(r) for r in rows), tuple(int(v) for v in values))
        out = self._scalars.get(key)
        if out is None:
            w, ws = self.t.scalar_words(np.array(key[0], dtype=np.int64), list(key[1]))
            out = (self.cuda.to_device(w), self.cuda.to_device(ws))
            self._scalars[key] = out
            if len(self._scalars) > self.SCALAR_CACHE:
                self._scalars.popitem(last=False)
        else:
            self._scalars.move_to_end(key)
        return out

    def _perm(self, galois_element: int):
        g = int(galois_element)
        out = self._perms.get(g)
        if out is None:
            out = self._perms[g] = self._table(self.t.automorphism_perm(g))
        return out

    def _grid(self, rows: int, n: int):
        c = self.launch
        return self._grid_rows(rows, n, c.threads, c.max_blocks_x, c.max_blocks_y)

    def _ntt_options(self) -> dict:
        c = self.launch
        return {"threads": c.ntt_threads, "pass_bits": c.ntt_pass_bits, "columns": c.ntt_columns}

    @staticmethod
    def is_device_array(a) -> bool:
        """A numba device array (real or simulated) or any CUDA Array Interface object."""
        return bool(getattr(a, "__cuda_ndarray__", False)) or hasattr(a, "__cuda_array_interface__")

    def _device(self, method: str, *arrays) -> None:
        for a in arrays:
            if not self.is_device_array(a):
                raise TypeError(f"CudaBackend.{method}: got a host {type(a).__name__}, not a device array; "
                                "move it with to_device() first")

    @staticmethod
    def _size(arr) -> int:
        out = 1
        for s in arr.shape:
            out *= int(s)
        return out

    def _track(self, arr):
        nbytes = self._size(arr) * 8
        self._mem.add(nbytes)
        try:
            weakref.finalize(arr, self._mem.release, nbytes)
        except TypeError:  # pragma: no cover - array type without weak references: count it as never freed
            pass
        return arr

    # -- memory ---------------------------------------------------------------------------
    def to_device(self, host: np.ndarray):
        if self.is_device_array(host):
            raise TypeError("CudaBackend.to_device: the array is already on the device")
        return self._track(self.cuda.to_device(np.ascontiguousarray(host, dtype=np.uint64)))

    def to_host(self, arr) -> np.ndarray:
        self._device("to_host", arr)
        if not arr.is_c_contiguous():
            arr = self.copy(arr)
        return arr.copy_to_host()

    def empty(self, shape):
        return self._track(self.cuda.device_array(tuple(int(s) for s in shape), dtype=np.uint64))

    def zeros(self, shape):
        out = self.empty(shape)
        size = self._size(out)
        if size:
            flat = out.reshape(1, 1, size)
            self.k_ew.fill3d[self._grid(1, size)](flat, np.uint64(0))
        return out

    def assign(self, dst, src) -> None:
        """Copy src into dst (same shape; dst may be a limb slice of a larger array)."""
        self._device("assign", dst, src)
        if tuple(dst.shape) != tuple(src.shape):
            raise ValueError(f"assign: shapes differ, {tuple(dst.shape)} and {tuple(src.shape)}")
        if not self._size(dst):
            return
        if len(dst.shape) == 3:
            self.k_ew.copy3d[self._grid(dst.shape[0] * dst.shape[1], dst.shape[2])](src, dst)
        elif dst.is_c_contiguous() and src.is_c_contiguous():
            dst.copy_to_device(src)
        else:
            raise ValueError(f"assign: strided arrays of {len(dst.shape)} dimensions are not supported")

    def copy(self, arr):
        self._device("copy", arr)
        out = self.empty(arr.shape)
        self.assign(out, arr)
        return out

    def limbs(self, arr, start: int, stop: int):
        """Limbs start..stop-1 of every polynomial: a strided device view, valid as any kernel's input or output."""
        self._device("limbs", arr)
        return arr[:, start:stop]

    def polys(self, arr, start: int, stop: int):
        self._device("polys", arr)
        return arr[start:stop]

    def concat_limbs(self, parts):
        self._device("concat_limbs", *parts)
        total = sum(int(p.shape[1]) for p in parts)
        out = self.empty((parts[0].shape[0], total, parts[0].shape[2]))
        off = 0
        for p in parts:
            width = int(p.shape[1])
            if width:
                self.assign(out[:, off : off + width], p)
            off += width
        return out

    def stack_polys(self, parts):
        self._device("stack_polys", *parts)
        total = sum(int(p.shape[0]) for p in parts)
        out = self.empty((total,) + tuple(parts[0].shape[1:]))
        off = 0
        for p in parts:
            count = int(p.shape[0])
            if count:
                self.assign(out[off : off + count], p)
            off += count
        return out

    def stack_new_axis(self, parts):
        self._device("stack_new_axis", *parts)
        out = self.empty((len(parts),) + tuple(parts[0].shape))
        for i, p in enumerate(parts):
            self.assign(out[i], p)
        return out

    def nbytes(self, arr) -> int:
        return self._size(arr) * 8

    def synchronize(self) -> None:
        self.cuda.synchronize()

    def memory_report(self) -> dict:
        """Device memory: this backend's live and peak array bytes, its tables, and the device's own count.

        ``live_bytes`` / ``peak_bytes`` count the arrays this backend allocated
        (ciphertexts, keys, temporaries) while they are referenced; a limb view
        that outlives its parent keeps memory this count has already released.
        ``device_used_bytes`` is the driver's total minus free (every context on
        the GPU, and numba frees lazily), None under the simulator.
        """
        out = {
            "live_bytes": self._mem.live,
            "peak_bytes": self._mem.peak,
            "live_arrays": self._mem.arrays,
            "table_bytes": self._table_bytes,
            "device_used_bytes": None,
            "device_total_bytes": None,
        }
        try:
            free, total = self.cuda.current_context().get_memory_info()
            if np.isfinite(free) and np.isfinite(total):
                out["device_used_bytes"] = int(total - free)
                out["device_total_bytes"] = int(total)
        except Exception:  # noqa: BLE001 - no memory information (simulator, driver error): leave None
            pass
        return out

    # -- transforms -------------------------------------------------------------------------
    def ntt(self, a, rows) -> None:
        self._device("ntt", a)
        self.k_ntt.ntt_forward(a, self._rows(rows)[0], self.d_moduli, self.d_psi_rev, self.d_psi_rev_shoup,
                               **self._ntt_options())

    def intt(self, a, rows) -> None:
        self._device("intt", a)
        self.k_ntt.ntt_inverse(a, self._rows(rows)[0], self.d_moduli, self.d_ipsi_rev, self.d_ipsi_rev_shoup,
                               self.d_n_inv, self.d_n_inv_shoup, **self._ntt_options())

    # -- element-wise -----------------------------------------------------------------------
    def _rows_of(self, arr) -> tuple[int, int]:
        return int(arr.shape[0]) * int(arr.shape[1]), int(arr.shape[2])

    def add(self, a, b, out, rows) -> None:
        self._device("add", a, b, out)
        if self._size(out):
            self.k_ew.poly_add[self._grid(*self._rows_of(out))](a, b, out, self._rows(rows)[1])

    def sub(self, a, b, out, rows) -> None:
        self._device("sub", a, b, out)
        if self._size(out):
            self.k_ew.poly_sub[self._grid(*self._rows_of(out))](a, b, out, self._rows(rows)[1])

    def neg(self, a, out, rows) -> None:
        self._device("neg", a, out)
        if self._size(out):
            self.k_ew.poly_neg[self._grid(*self._rows_of(out))](a, out, self._rows(rows)[1])

    def mul(self, a, b, out, rows) -> None:
        self._device("mul", a, b, out)
        if self._size(out):
            _, q, mu, k, _, _ = self._rows(rows)
            self.k_ew.poly_mul[self._grid(*self._rows_of(out))](a, b, out, q, mu, k)

    def mul_accumulate(self, acc, a, b, rows) -> None:
        self._device("mul_accumulate", acc, a, b)
        if self._size(acc):
            _, q, mu, k, _, _ = self._rows(rows)
            self.k_ew.multiply_accumulate[self._grid(*self._rows_of(acc))](acc, a, b, q, mu, k)

    def tensor(self, a, b, out, rows) -> None:
        self._device("tensor", a, b, out)
        if self._size(out):
            _, q, mu, k, _, _ = self._rows(rows)
            self.k_ew.tensor_product[self._grid(int(a.shape[1]), int(a.shape[2]))](a, b, out, q, mu, k)

    def mul_scalar(self, a, out, rows, values: list[int]) -> None:
        """out = a * values[i] mod q_i; values are integers (any size, reduced here)."""
        self._device("mul_scalar", a, out)
        if self._size(out):
            w, ws = self._scalar_words(rows, values)
            self.k_ew.poly_mul_scalar[self._grid(*self._rows_of(out))](a, out, self._rows(rows)[1], w, ws)

    def add_scalar(self, a, out, rows, values: list[int]) -> None:
        """out = a + values[i] mod q_i on every coefficient (a constant in the NTT domain)."""
        self._device("add_scalar", a, out)
        if self._size(out):
            w, _ = self._scalar_words(rows, values)
            self.k_ew.poly_add_scalar[self._grid(*self._rows_of(out))](a, out, self._rows(rows)[1], w)

    def keyswitch_inner_product(self, ext, key, out, rows, galois_element: int = 1, key_rows=None) -> None:
        """out[c] = sum_j sigma_g(ext[j]) * key[j, c] over the limbs ``rows`` (c = 0, 1); the key's limb of
        each is ``key_rows`` (default ``rows``: a key over every row of the ring)."""
        self._device("keyswitch_inner_product", ext, key, out)
        if self._size(out):
            r, q, mu, k, r64, r64s = self._rows(rows)
            kr = r if key_rows is None else self._rows(key_rows)[0]
            self.k_ks.keyswitch_inner_product[self._grid(int(ext.shape[1]), int(ext.shape[2]))](
                ext, self._perm(galois_element), key, kr, out, q, mu, k, r64, r64s)

    def automorphism(self, a, out, galois_element: int) -> None:
        self._device("automorphism", a, out)
        if self._size(out):
            self.k_auto.automorphism_ntt[self._grid(*self._rows_of(out))](a, out, self._perm(galois_element))

    # -- RNS ----------------------------------------------------------------------------------
    def basis_convert(self, x, out, source_rows, target_rows) -> None:
        self._device("basis_convert", x, out)
        key = (tuple(int(r) for r in source_rows), tuple(int(r) for r in target_rows))
        args = self._basis.get(key)
        if args is None:
            args = self._basis[key] = tuple(self._table(a) for a in self.t.basis_table(*key).args())
        if self._size(out):
            self.k_rns.fast_basis_convert[self._grid(*self._rows_of(out))](x, out, *args)

    def sub_and_scale(self, a, b, out, rows, values: list[int]) -> None:
        self._device("sub_and_scale", a, b, out)
        if self._size(out):
            w, ws = self._scalar_words(rows, values)
            self.k_rns.sub_and_scale[self._grid(*self._rows_of(out))](a, b, out, self._rows(rows)[1], w, ws)

    def rescale_prepare(self, last, out, last_row: int, rows) -> None:
        """last: (B, 1, N) top limb in the coefficient domain; out: (B, len(rows), N)."""
        self._device("rescale_prepare", last, out)
        if self._size(out):
            _, q, mu, k, _, _ = self._rows(rows)
            self.k_rns.rescale_round_prepare[self._grid(*self._rows_of(out))](
                last, out, np.uint64(self.t.moduli[last_row]), q, mu, k)

    # -- host conversions (encode / decode run on the host, as on the CPU backend) ---------------
    def float_to_rns(self, values: np.ndarray, rows) -> np.ndarray:
        """(1, len(rows), N) residues of round(values), a host array (``to_device`` moves it)."""
        return self._host.float_to_rns(values, rows)

    def rns_to_float(self, x: np.ndarray, rows) -> np.ndarray:
        """Centered values of (len(rows), N) host residues, as float64."""
        return self._host.rns_to_float(x, rows)
