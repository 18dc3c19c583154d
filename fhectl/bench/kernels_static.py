"""What the compiler makes of every CUDA kernel for Hopper (sm_90), and a memory-bandwidth bound per operation.

No GPU is needed, and none is used. Two halves:

* Compilation. Every ``Kernel`` of ``fhe_kernels.cuda`` is compiled from its
  explicit signature (the one the backend launches: residues uint64, indices
  int64, arrays of layout 'A') to PTX for compute capability 9.0 by NVVM,
  then assembled by ``ptxas -arch=sm_90 -v`` from the NVIDIA compiler wheels
  (``numba-cuda[cu12]``), which reports registers per thread, spill bytes,
  stack and static shared memory. The PTX is scanned for floating-point
  instructions (the sign of a uint64 expression promoted to float64) and
  64-bit high multiplies (``mul.hi.u64``, one per ``umul64hi``).
* Traffic. The evaluator's real code runs on a ``CudaBackend`` whose device
  arrays are shapes only and whose kernels record their launches instead of
  running (``trace``): the launch configurations and array shapes are the
  backend's own, so the kernel sequence of an operation cannot drift from
  this report. Each launch is charged the bytes it must move between HBM and
  the SM at least (every array element it touches once; twiddle and key rows
  it uses; per-limb constant arrays included), and an operation's bound is
  the sum of its launches' bytes over the datasheet bandwidth.

Occupancy follows the CUDA occupancy calculator for sm_90 (65536 registers,
2048 threads, 64 warps, 32 blocks and 228 KiB of shared memory per SM;
registers allocated per warp in units of 256; 1 KiB of shared memory
reserved per block), for the block size and dynamic shared memory of the
backend's launches at N = 2^16.

Run: ``python -m fhectl.bench.kernels_static --out DIR`` (or ``./dev kernels-static``).
Needs numba.cuda in real mode: NUMBA_ENABLE_CUDASIM must not be set.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CC = (9, 0)
ARCH = "sm_90"
PROFILE = "gpt2-n16-128"
# H200 SXM: 4.8 TB/s HBM3e by NVIDIA's datasheet (H100 SXM: 3.35 TB/s). A datasheet peak, not a measurement.
HBM_BYTES_PER_S = 4.8e12
HBM_SOURCE = "NVIDIA H200 datasheet (SXM): 4.8 TB/s HBM3e; a peak figure: measured copy bandwidth is lower"


@dataclass(frozen=True)
class Hopper:
    """Per-SM limits of compute capability 9.0 (CUDA C Programming Guide, table of technical specifications)."""

    regs_per_sm: int = 65536
    max_regs_per_thread: int = 255
    reg_alloc_unit: int = 256  # registers are allocated per warp in units of 256
    threads_per_sm: int = 2048
    warps_per_sm: int = 64
    blocks_per_sm: int = 32
    shared_per_sm: int = 228 * 1024
    shared_reserved_per_block: int = 1024  # taken by the system from every resident block
    shared_alloc_unit: int = 128
    warp: int = 32


HOPPER = Hopper()
# The kernels an operation spends its time in; they must not spill and must keep >= 25 % occupancy.
HOT_KERNELS = ("ntt_forward_pass", "ntt_inverse_pass", "keyswitch_inner_product", "automorphism_ntt",
               "poly_mul", "tensor_product", "multiply_accumulate", "fast_basis_convert")
MIN_HOT_OCCUPANCY = 0.25


class ToolchainMissing(RuntimeError):
    """The NVIDIA compiler wheels (NVVM, ptxas) are not installed, or numba.cuda is the simulator."""


# -- compilation -----------------------------------------------------------------------------------
def ptxas_path() -> str:
    """The ptxas of the NVIDIA wheels (nvidia-cuda-nvcc-cu12), else one on PATH."""
    try:
        from cuda.pathfinder import find_nvidia_binary_utility

        found = find_nvidia_binary_utility("ptxas")
    except Exception:  # noqa: BLE001 - pathfinder missing or too old: fall back to PATH
        found = None
    found = found or shutil.which("ptxas")
    if not found:
        raise ToolchainMissing("ptxas not found: install the dev dependencies (pip install -e '.[dev]', which "
                               "brings numba-cuda[cu12] and its nvidia-cuda-nvcc-cu12 wheel)")
    return found


def _all_kernels():
    """(module name, kernel name, Kernel) for every kernel of fhe_kernels.cuda, in module order."""
    from fhe_kernels.cuda import automorphism, elementwise, keyswitch, ntt, rns
    from fhe_kernels.cuda.launch import Kernel

    for mod in (ntt, elementwise, rns, automorphism, keyswitch):
        for name, k in vars(mod).items():
            if isinstance(k, Kernel):
                yield mod.__name__.rsplit(".", 1)[-1], name, k


_PTXAS_LINE = {
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
    "registers": re.compile(r"Used (\d+) registers"),
    "static_shared_bytes": re.compile(r"(\d+) bytes smem"),
    "barriers": re.compile(r"used (\d+) barriers"),
}


def parse_ptxas(stderr: str) -> dict:
    """ptxas -v resource lines of a one-kernel module as numbers (0 where ptxas prints nothing)."""
    out = {}
    for key, pat in _PTXAS_LINE.items():
        m = pat.search(stderr)
        out[key] = int(m.group(1)) if m else 0
    if not re.search(r"Used \d+ registers", stderr):
        raise RuntimeError(f"ptxas printed no resource usage:\n{stderr[-2000:]}")
    return out


def compile_kernel(k, ptxas: str) -> dict:
    """PTX facts and sm_90 resource usage of one kernel, compiled from its explicit signature."""
    from numba import cuda

    ptx, _ = cuda.compile_ptx(k.py_func, k.signature, cc=CC)
    body = [ln.strip() for ln in ptx.splitlines() if ln.strip() and not ln.lstrip().startswith("//")]
    float_ops = [ln for ln in body if re.search(r"\.f(16|32|64)\b", ln)]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([ptxas, f"-arch={ARCH}", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True, timeout=120)
    if proc.returncode:
        raise RuntimeError(f"ptxas failed on {k.__name__}:\n{proc.stderr[-2000:]}")
    return {
        "signature": str(k.signature),
        "ptx_float_ops": len(float_ops),
        "ptx_float_examples": float_ops[:3],
        "ptx_mul_hi_u64": sum(ln.startswith("mul.hi.u64") for ln in body),
        "ptx_local_ops": sum(bool(re.match(r"(ld|st)\.local", ln)) for ln in body),
        **parse_ptxas(proc.stderr),
    }


def compile_all() -> dict:
    """{kernel name: compile_kernel(...) plus its module} for every kernel, for sm_90."""
    from fhe_kernels.cuda.launch import simulating

    if simulating():
        raise ToolchainMissing("numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1): unset it to compile")
    try:
        from numba.cuda.cudadrv.nvvm import NVVM

        NVVM()
    except Exception as exc:  # noqa: BLE001 - any way a missing libnvvm shows
        raise ToolchainMissing(f"NVVM (libnvvm) cannot be loaded ({' '.join(str(exc).split())[:200]}); install the "
                               "dev dependencies: pip install -e '.[dev]' (numba-cuda[cu12])") from None
    ptxas = ptxas_path()
    out = OrderedDict()
    for module, name, k in _all_kernels():
        out[name] = {"module": module, **compile_kernel(k, ptxas)}
    return out


# -- occupancy -------------------------------------------------------------------------------------
def occupancy(registers: int, threads: int, shared_bytes: int, hw: Hopper = HOPPER) -> dict:
    """Resident blocks and warps per SM for a kernel, and which limit binds (CUDA occupancy calculator)."""
    warps_per_block = -(-threads // hw.warp)
    regs_per_warp = -(-max(registers, 1) * hw.warp // hw.reg_alloc_unit) * hw.reg_alloc_unit
    shared = -(-shared_bytes // hw.shared_alloc_unit) * hw.shared_alloc_unit + hw.shared_reserved_per_block
    limits = {
        "warps": hw.warps_per_sm // warps_per_block,
        "blocks": hw.blocks_per_sm,
        "registers": (hw.regs_per_sm // regs_per_warp) // warps_per_block,
        "shared": hw.shared_per_sm // shared,
    }
    blocks = min(limits.values())
    warps = blocks * warps_per_block
    return {"blocks_per_sm": blocks, "warps_per_sm": warps, "occupancy": warps / hw.warps_per_sm,
            "limited_by": min(limits, key=limits.get), "limits": limits}


# -- tracing the backend's launches ----------------------------------------------------------------
class _ShapeArray:
    """A device array that is only a shape: what the tracing backend allocates, slices and launches on."""

    dtype = np.dtype(np.uint64)

    def __init__(self, shape, contiguous: bool = True):
        self.shape = tuple(int(s) for s in shape)
        self._contiguous = contiguous

    @property
    def __cuda_array_interface__(self):  # marks it a device array for CudaBackend._device
        return {"shape": self.shape, "typestr": "<u8", "data": (0, False), "version": 3}

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        shape, sliced = [], False
        for dim, k in enumerate(key):
            if isinstance(k, slice):
                n = len(range(*k.indices(self.shape[dim])))
                sliced |= dim > 0 and n != self.shape[dim]
                shape.append(n)
            # an integer index drops the dimension
        shape.extend(self.shape[len(key):])
        return _ShapeArray(shape, self._contiguous and not sliced)

    def reshape(self, *shape):
        return _ShapeArray(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)

    def is_c_contiguous(self) -> bool:
        return self._contiguous

    def copy_to_device(self, other) -> None:
        pass


class _ShapeCuda:
    """The part of numba.cuda the backend calls for memory, on shape arrays."""

    @staticmethod
    def to_device(host):
        return _ShapeArray(np.shape(host))

    @staticmethod
    def device_array(shape, dtype=None):
        return _ShapeArray(shape)

    @staticmethod
    def synchronize():
        pass


@dataclass
class Launch:
    """One recorded kernel launch: its grid, block, dynamic shared memory and argument shapes."""

    kernel: str
    grid: tuple
    threads: int
    shared_bytes: int
    args: dict  # argument name -> shape tuple (arrays) or int (scalars)


class _Recorder:
    """Stands in for a kernel's compiled dispatcher: ``k[config](*args)`` records a ``Launch``."""

    def __init__(self, k, sink: list):
        self.k, self.sink = k, sink
        self.names = list(inspect.signature(k.py_func).parameters)

    def __getitem__(self, config):
        grid, threads = config[0], config[1]
        shared = int(config[3]) if len(config) > 3 else 0

        def launch(*args):
            shapes = {n: (a.shape if isinstance(a, _ShapeArray) else int(a)) for n, a in zip(self.names, args)}
            self.sink.append(Launch(self.k.__name__, tuple(np.atleast_1d(grid).tolist()), int(threads), shared, shapes))

        return launch


def _tracing_backend(tables, launch_config=None):
    """A CudaBackend on shape arrays: the real launch code, with no device behind it."""
    from fhectl.ckks.backend import CpuBackend
    from fhectl.ckks.backend_cuda import CudaBackend, LaunchConfig, _MemoryCounter
    from fhe_kernels.cuda import automorphism, elementwise, keyswitch, ntt, rns
    from fhe_kernels.cuda.launch import grid_rows

    be = CudaBackend.__new__(CudaBackend)
    be.cuda = _ShapeCuda()
    be.k_auto, be.k_ew, be.k_ks, be.k_ntt, be.k_rns = automorphism, elementwise, keyswitch, ntt, rns
    be._grid_rows = grid_rows
    be.launch = launch_config or LaunchConfig()
    be.t = tables
    be._host = CpuBackend(tables)
    be._mem = _MemoryCounter()
    be._table_bytes = 0
    nt = tables.ntt
    be.d_moduli = be._table(nt.moduli)
    be.d_psi_rev, be.d_psi_rev_shoup = be._table(nt.psi_rev), be._table(nt.psi_rev_shoup)
    be.d_ipsi_rev, be.d_ipsi_rev_shoup = be._table(nt.ipsi_rev), be._table(nt.ipsi_rev_shoup)
    be.d_n_inv, be.d_n_inv_shoup = be._table(nt.n_inv), be._table(nt.n_inv_shoup)
    be._row_tables, be._perms, be._basis, be._scalars = {}, {}, {}, OrderedDict()
    return be


class _Recording:
    """Context manager: every Kernel of fhe_kernels.cuda records its launches into ``self.launches``."""

    def __enter__(self):
        self.launches: list[Launch] = []
        self._saved = [(k, k._compiled) for _, _, k in _all_kernels()]
        for k, _ in self._saved:
            k._compiled = _Recorder(k, self.launches)
        return self

    def __exit__(self, *exc):
        for k, compiled in self._saved:
            k._compiled = compiled
        return False


def trace(profile: str = PROFILE, level: int | None = None) -> dict:
    """{operation: [Launch, ...]} of the evaluator's own code at ``level`` (default: the top) of ``profile``."""
    from fhe_kernels.automorphism import galois_element_for_rotation
    from fhectl.ckks.ciphertext import Ciphertext
    from fhectl.ckks.context import CKKSContext
    from fhectl.ckks.evaluator import Evaluator
    from fhectl.ckks.keys import GaloisKeys, SwitchingKey
    from fhectl.ckks.params import load_parameters

    params = load_parameters(profile)
    ctx = CKKSContext(params, backend_factory=_tracing_backend)
    n, nq, nk = params.ring_degree, len(params.moduli_q), len(params.moduli_p)
    level = nq - 1 if level is None else level
    dnum = len(params.digits(nq - 1))
    pid = params.params_id

    def key(source):
        return SwitchingKey(_ShapeArray((dnum, 2, nq + nk, n)), pid, "k-trace", source)

    g = galois_element_for_rotation(1, n)
    ev = Evaluator(ctx, key("relin"), GaloisKeys({g: key(f"galois:{g}")}, pid, "k-trace"))

    def ct():
        return Ciphertext(_ShapeArray((2, level + 1, n)), level, params.scale, pid, "k-trace", n // 2)

    ops = OrderedDict()
    with _Recording() as rec:
        ctx.backend.ntt(_ShapeArray((1, level + 1, n)), ctx.q_rows(level))
        ops["ntt_per_limb"] = rec.launches[:]
        rec.launches.clear()
        ev.rescale(ev.mul(ct(), ct()))
        ops["hmult_relin_rescale"] = rec.launches[:]
        rec.launches.clear()
        ev.rotate(ct(), 1)
        ops["rotate"] = rec.launches[:]
    return {"params": params, "level": level, "limbs": level + 1, "ops": ops}


# -- bytes per launch -------------------------------------------------------------------------------
WORD = 8
_WRITES = {  # output arrays (written once); in-place ones are also read
    "ntt_forward_pass": ("a",), "ntt_inverse_pass": ("a",), "multiply_accumulate": ("acc",),
    "copy3d": ("dst",), "fill3d": ("dst",), "keyswitch_inner_product": ("out",), "fast_basis_convert": ("out",),
}
_IN_PLACE = {"ntt_forward_pass": "a", "ntt_inverse_pass": "a", "multiply_accumulate": "acc"}
_WRITE_ONLY_DEFAULT = ("out",)


def _words(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _ntt_twiddle_words(n: int, lo: int, bits: int) -> int:
    """Distinct twiddles of one limb a pass at bit positions lo..lo+bits-1 reads (stage b uses N >> (b+1))."""
    return sum(n >> (b + 1) for b in range(lo, lo + bits))


def launch_bytes(x: Launch) -> tuple[int, int]:
    """(bytes read, bytes written) from and to HBM at least: every element touched once, nothing re-read."""
    a = x.args
    arrays = {k: v for k, v in a.items() if isinstance(v, tuple)}
    writes = _WRITES.get(x.kernel, _WRITE_ONLY_DEFAULT)
    written = sum(_words(arrays[w]) for w in writes)
    read = 0
    for name, shape in arrays.items():
        if name in writes and name != _IN_PLACE.get(x.kernel):
            continue
        if x.kernel.startswith("ntt_") and name in ("psi_rev", "psi_rev_shoup", "ipsi_rev", "ipsi_rev_shoup"):
            limbs, n = a["a"][1], a["a"][2]
            read += limbs * _ntt_twiddle_words(n, a["lo"], a["bits"])  # only the rows and stages used
        elif x.kernel == "keyswitch_inner_product" and name == "key":
            read += a["ext"][0] * 2 * a["ext"][1] * shape[3]  # the digits and rows of ext, both components
        elif x.kernel.startswith("ntt_") and name in ("moduli", "n_inv", "n_inv_shoup"):
            read += a["a"][1]  # one word per limb (the table has a word for every prime)
        else:
            read += _words(shape)
    return read * WORD, written * WORD


# -- the report -------------------------------------------------------------------------------------
def _versions() -> dict:
    out = {}
    for name in ("numba", "numba-cuda", "llvmlite", "cuda-bindings", "nvidia-cuda-nvcc-cu12", "nvidia-cuda-nvrtc-cu12",
                 "nvidia-nvjitlink-cu12", "numpy"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    try:
        from numba.cuda.cudadrv.nvvm import NVVM

        out["nvvm_ir_version"] = ".".join(map(str, NVVM().get_ir_version()))
    except Exception:  # noqa: BLE001 - recorded as missing
        out["nvvm_ir_version"] = None
    try:
        lines = subprocess.run([ptxas_path(), "--version"], capture_output=True, text=True, timeout=30).stdout
        out["ptxas"] = lines.strip().splitlines()[-1]
    except Exception:  # noqa: BLE001
        out["ptxas"] = None
    return out


def build_report(profile: str = PROFILE) -> dict:
    """Everything report.json holds: per kernel resources and occupancy, per operation launches and bounds."""
    from fhectl.bench.report import git_state

    t0 = time.perf_counter()
    kernels = compile_all()
    compile_s = time.perf_counter() - t0
    tr = trace(profile)
    params = tr["params"]
    # Launch shape per kernel: the one every launch of the traced operations used (checked to be unique).
    seen: dict[str, set] = {}
    for launches in tr["ops"].values():
        for x in launches:
            seen.setdefault(x.kernel, set()).add((x.threads, x.shared_bytes))
    for name, info in kernels.items():
        shapes = sorted(seen.get(name, set()))
        info["launched_in_traced_ops"] = bool(shapes)
        threads, shared = shapes[-1] if shapes else (_default_threads(), 0)
        info["launch_threads"], info["dynamic_shared_bytes"] = threads, shared
        if len(shapes) > 1:
            info["other_launch_shapes"] = shapes[:-1]
        info.update(occupancy(info["registers"], threads, shared + info["static_shared_bytes"]))
        info["hot"] = name in HOT_KERNELS
    ops = OrderedDict()
    for op, launches in tr["ops"].items():
        per_kernel: OrderedDict = OrderedDict()
        total_r = total_w = 0
        for x in launches:
            r, w = launch_bytes(x)
            total_r += r
            total_w += w
            d = per_kernel.setdefault(x.kernel, {"launches": 0, "read_bytes": 0, "written_bytes": 0})
            d["launches"] += 1
            d["read_bytes"] += r
            d["written_bytes"] += w
        per_limb = op == "ntt_per_limb"
        div = tr["limbs"] if per_limb else 1
        ops[op] = {
            "launches": len(launches), "read_bytes": total_r // div, "written_bytes": total_w // div,
            "bound_s": (total_r + total_w) / div / HBM_BYTES_PER_S, "per_limb": per_limb, "kernels": per_kernel,
            "sequence": [{"kernel": x.kernel, "grid": list(x.grid), "threads": x.threads,
                          "shared_bytes": x.shared_bytes, "bytes": sum(launch_bytes(x)),
                          "args": {k: list(v) if isinstance(v, tuple) else v for k, v in x.args.items()}}
                         for x in launches],
        }
    return {
        "schema": "kernels-static/1",
        "command": f"python -m fhectl.bench.kernels_static --profile {profile} --out DIR",
        "git": git_state(),
        "date": time.strftime("%Y-%m-%d"),
        "target": {"cc": ".".join(map(str, CC)), "arch": ARCH, "hopper_limits": asdict(HOPPER)},
        "bandwidth": {"bytes_per_s": HBM_BYTES_PER_S, "source": HBM_SOURCE},
        "profile": {"name": profile, "params_id": params.params_id, "ring_degree": params.ring_degree,
                    "primes_q": len(params.moduli_q), "primes_p": len(params.moduli_p),
                    "dnum": len(params.digits(len(params.moduli_q) - 1)), "level": tr["level"]},
        "toolchain": _versions(),
        "compile_seconds": round(compile_s, 2),
        "kernels": kernels,
        "operations": ops,
        "caveats": CAVEATS,
    }


def _default_threads() -> int:
    from fhectl.ckks.backend_cuda import LaunchConfig

    return LaunchConfig().threads


CAVEATS = [
    "No GPU ran: registers, spills and shared memory are ptxas's static figures for sm_90; occupancy is what "
    "they allow, not what a profiler measured.",
    "The time bounds count HBM traffic only (datasheet 4.8 TB/s, never reached in practice): no compute, no "
    "launch latency (several microseconds per launch), no tail effects. A real run will be slower.",
    "Bytes are the least each kernel must move: every element it touches once. The NTT's strided first pass, the "
    "automorphism's gather and the key-switch gather of ext may move more (sector granularity, poor locality).",
    "Kernels are charged independently: the 50 MB L2 of an H200 may keep a few 512 KiB limbs between "
    "consecutive kernels, so a real run can beat the bound on small working sets (not at these sizes: a "
    "ciphertext is 21 MiB, the key-switch digits 42 MiB, a switching key 84 MiB).",
    "Operations are traced at the top level (21 limbs): lower levels move proportionally fewer bytes.",
]


def _fmt_bytes(b: float) -> str:
    return f"{b / 2**20:.1f} MiB" if b >= 2**20 else f"{b / 2**10:.1f} KiB"


def _fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else f"{s * 1e3:.3f} ms"


def render_markdown(rep: dict) -> str:
    p, git, tc = rep["profile"], rep["git"], rep["toolchain"]
    lines = [
        f"# CUDA kernels compiled for {rep['target']['arch']}: resources, occupancy, bandwidth bounds",
        "",
        f"`{rep['command']}`",
        "",
        f"- commit: `{git.get('commit')}`{' (dirty tree)' if git.get('dirty') else ''}; date {rep['date']}",
        f"- target: compute capability {rep['target']['cc']} (H100 / H200), NVVM -> PTX -> `ptxas -arch={ARCH} -v`; "
        "**no GPU ran**",
        f"- toolchain: numba {tc['numba']}, numba-cuda {tc['numba-cuda']}, NVVM IR {tc['nvvm_ir_version']}, "
        f"ptxas `{tc['ptxas']}`, nvidia-cuda-nvcc-cu12 {tc['nvidia-cuda-nvcc-cu12']}, "
        f"cuda-bindings {tc['cuda-bindings']}",
        f"- profile `{p['name']}` ({p['params_id']}): N = {p['ring_degree']}, {p['primes_q']} primes in Q, "
        f"{p['primes_p']} special primes, dnum {p['dnum']}; operations traced at level {p['level']} "
        f"({p['level'] + 1} limbs)",
        f"- bandwidth: {rep['bandwidth']['bytes_per_s'] / 1e12:.1f} TB/s ({rep['bandwidth']['source']})",
        f"- compiling and assembling all {len(rep['kernels'])} kernels took {rep['compile_seconds']} s",
        "",
        "## Per kernel (sm_90)",
        "",
        "Occupancy: resident warps per SM over 64 at the backend's block size and shared memory; "
        "`limit` is the resource that binds. Hot kernels (bold) must not spill and must keep >= 25 %.",
        "",
        "| kernel | regs | spills (st/ld B) | stack B | shared B (static + dynamic) | block | blocks/SM | occupancy "
        "| limit | mul.hi.u64 | float ops |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, k in rep["kernels"].items():
        label = f"**{k['module']}.{name}**" if k["hot"] else f"{k['module']}.{name}"
        lines.append(
            f"| {label} | {k['registers']} | {k['spill_store_bytes']}/{k['spill_load_bytes']} | {k['stack_bytes']} "
            f"| {k['static_shared_bytes']} + {k['dynamic_shared_bytes']} | {k['launch_threads']} "
            f"| {k['blocks_per_sm']} | {k['occupancy'] * 100:.1f} % | {k['limited_by']} | {k['ptx_mul_hi_u64']} "
            f"| {k['ptx_float_ops']} |")
    lines += [
        "",
        "## Per operation: HBM traffic and the bandwidth lower bound",
        "",
        "Launches are the evaluator's own sequence on the CUDA backend (traced, not written by hand). "
        "`ntt_per_limb` is one forward NTT of a polynomial's limbs divided by the limb count.",
        "",
        "| operation | launches | read | written | lower bound at 4.8 TB/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, o in rep["operations"].items():
        lines.append(f"| {op} | {o['launches']} | {_fmt_bytes(o['read_bytes'])} | {_fmt_bytes(o['written_bytes'])} "
                     f"| {_fmt_time(o['bound_s'])} |")
    for op, o in rep["operations"].items():
        if o["per_limb"]:
            continue
        total = o["read_bytes"] + o["written_bytes"]
        lines += ["", f"### {op}: bytes by kernel", "", "| kernel | launches | read | written | share |",
                  "|---|---:|---:|---:|---:|"]
        for kname, d in sorted(o["kernels"].items(), key=lambda kv: -(kv[1]["read_bytes"] + kv[1]["written_bytes"])):
            b = d["read_bytes"] + d["written_bytes"]
            lines.append(f"| {kname} | {d['launches']} | {_fmt_bytes(d['read_bytes'])} | "
                         f"{_fmt_bytes(d['written_bytes'])} | {100 * b / total:.1f} % |")
    lines += ["", "## Caveats", ""] + [f"- {c}" for c in rep["caveats"]] + [""]
    return "\n".join(lines)


def check(rep: dict) -> list[str]:
    """What the report says is wrong: floats, spills, missing high multiplies, low occupancy of a hot kernel."""
    bad = []
    for name, k in rep["kernels"].items():
        if k["ptx_float_ops"]:
            bad.append(f"{name}: {k['ptx_float_ops']} floating-point PTX instructions, e.g. {k['ptx_float_examples']}")
        if k["spill_store_bytes"] or k["spill_load_bytes"] or k["ptx_local_ops"]:
            bad.append(f"{name}: spills ({k['spill_store_bytes']} B stored, {k['spill_load_bytes']} B loaded)")
        if k["hot"] and k["occupancy"] < MIN_HOT_OCCUPANCY:
            bad.append(f"{name}: occupancy {k['occupancy']:.1%} below {MIN_HOT_OCCUPANCY:.0%} "
                       f"({k['registers']} registers, limited by {k['limited_by']})")
    return bad


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fhectl.bench.kernels_static", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for report.md and report.json")
    ap.add_argument("--profile", default=PROFILE, help=f"parameter profile (default {PROFILE})")
    args = ap.parse_args(argv)
    try:
        rep = build_report(args.profile)
    except ToolchainMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(rep, indent=1) + "\n")
    (args.out / "report.md").write_text(render_markdown(rep))
    print(args.out / "report.md")
    problems = check(rep)
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
