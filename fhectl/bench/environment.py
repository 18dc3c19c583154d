"""The machine and software a run happened on: versions, CPU, GPU, threads.

Used by `fhectl env` (for bug reports) and recorded in every benchmark report.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform

PACKAGES = ("fhectl", "numpy", "numba", "llvmlite", "numba-cuda", "openfhe", "typer", "rich", "pyyaml",
            "cryptography", "safetensors", "tokenizers", "matplotlib")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gpu_info() -> dict:
    """What CUDA reports, without failing where there is none."""
    try:
        from fhectl.ckks.backend_cuda import cuda_available
    except ImportError as exc:
        return {"available": False, "reason": f"CUDA backend not importable: {exc}"}
    ok, why = cuda_available()
    info = {"available": ok, "reason": why}
    if ok:
        try:
            from numba import cuda

            dev = cuda.get_current_device()
            info["name"] = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
            info["compute_capability"] = ".".join(map(str, dev.compute_capability))
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            info["detail_error"] = str(exc)
    return info


# Variables that change what a run measures, recorded by name (an allow-list: a deny-list would leak the next
# secret someone puts in the environment, such as FHECTL_PASSPHRASE, into committed reports).
RECORDED_VARIABLES = ("NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_ENABLE_CUDASIM", "NUMBA_OPT",
                      "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE", "MKL_NUM_THREADS",
                      "FHECTL_DEBUG", "FHECTL_REQUIRE_OPENFHE", "CUDA_VISIBLE_DEVICES")


def environment() -> dict:
    import numba

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "numba_targets": ["cpu"] + (["cuda"] if gpu_info().get("available") else []),
        "gpu": gpu_info(),
        "packages": versions,
        "env": {k: os.environ[k] for k in RECORDED_VARIABLES if k in os.environ},
    }
