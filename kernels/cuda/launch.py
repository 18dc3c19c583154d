"""Kernels compiled for an explicit signature on first launch, and launch shapes.

``numba.cuda.jit(signature)`` compiles at decoration time, which needs the
CUDA toolkit (NVVM) and a driver: a module decorated that way cannot even be
imported on a machine without them. ``Kernel`` keeps the Python function and
its signature and compiles on first launch, so every module of
``fhe_kernels.cuda`` imports anywhere numba-cuda is installed, and the
signature is still explicit: residues uint64, indices and sizes int64,
arrays of any layout (``uint64[:, :, :]`` is layout 'A'), so limb slices of
device arrays are valid arguments.

Under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` before numba.cuda is
first imported) the same objects run the Python function on simulated
threads; signatures are then not checked (``tests/cuda`` compiles them to
PTX where a CUDA toolkit is installed).
"""

from numba import cuda, int64, uint64, void

U64_1D = uint64[:]
U64_2D = uint64[:, :]
U64_3D = uint64[:, :, :]
U64_4D = uint64[:, :, :, :]
I64_1D = int64[:]

__all__ = ["Kernel", "kernel", "simulating", "grid_rows", "U64_1D", "U64_2D", "U64_3D", "U64_4D", "I64_1D",
           "int64", "uint64", "void"]


def simulating() -> bool:
    """True when numba.cuda is the CUDA simulator (fixed when numba.cuda was first imported)."""
    return cuda.jit.__module__.startswith("numba.cuda.simulator")


class Kernel:
    """A CUDA kernel: ``k[blocks, threads](*args)`` or ``k[blocks, threads, stream, shared_bytes](*args)``.

    py_func: the kernel's Python function (also what ``numba.cuda.compile_ptx`` takes).
    signature: its numba signature, e.g. ``void(U64_3D, U64_3D, U64_1D)``.
    """

    def __init__(self, py_func, signature):
        self.py_func = py_func
        self.signature = signature
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__
        self._compiled = None

    @property
    def compiled(self):
        """The numba.cuda dispatcher, compiled for ``signature`` on first access."""
        if self._compiled is None:
            self._compiled = cuda.jit(self.signature)(self.py_func)
        return self._compiled

    def __getitem__(self, config):
        return self.compiled[config]

    def __repr__(self) -> str:
        return f"Kernel({self.__name__}, {self.signature})"


def kernel(signature):
    """Decorator: a ``Kernel`` for ``signature`` (compiled lazily, see the module docstring)."""

    def wrap(py_func):
        return Kernel(py_func, signature)

    return wrap


def grid_rows(rows: int, n: int, threads: int, max_x: int = 1 << 12, max_y: int = 65535):
    """Launch configuration ((blocks_x, blocks_y), threads) for a kernel over ``rows`` rows of ``n`` elements.

    rows: how many rows (polynomial-limb pairs, usually B * L).
    n: elements per row (the ring degree).
    threads: threads per block, along a row.
    max_x, max_y: caps on the grid. Kernels loop over rows with stride
        blocks_y and along a row with stride blocks_x * threads, so small caps
        (tests use 2) run every thread over several rows and elements.
        65535 is the hardware limit of gridDim.y.
    A row index splits into (polynomial, limb) once per row, so no thread
    divides 64-bit integers per element (a software routine on GPUs).
    """
    bx = max(1, min(max_x, (n + threads - 1) // threads))
    by = max(1, min(max_y, rows))
    return (bx, by), threads
