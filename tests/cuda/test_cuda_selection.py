"""Device selection and import safety, each in a fresh interpreter without the simulator.

``import fhe_kernels.cuda`` and ``import fhectl.ckks.backend_cuda`` must work
without numba-cuda and must not import numba.cuda themselves; ``--device
auto`` falls back to the CPU without a GPU, and ``--device cuda`` refuses
with the reason.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_imports_are_lazy_and_survive_a_missing_numba_cuda():
    out = run_python(
        "import sys\n"
        "import fhe_kernels.cuda, fhectl.ckks.backend_cuda, fhectl.ckks.context\n"
        "assert 'numba.cuda' not in sys.modules, 'importing the CUDA backend imported numba.cuda'\n"
        "sys.modules['numba.cuda'] = None  # as if numba-cuda were not installed\n"
        "from fhectl.ckks.backend_cuda import cuda_available\n"
        "ok, why = cuda_available()\n"
        "assert not ok and 'numba-cuda' in why, why\n"
        "from fhectl.ckks.context import CKKSContext\n"
        "from fhectl.ckks.params import load_parameters\n"
        "from fhectl.errors import FhectlError\n"
        "p = load_parameters('tiny-insecure', allow_insecure=True)\n"
        "assert CKKSContext(p, device='auto').device == 'cpu'\n"
        "try:\n"
        "    CKKSContext(p, device='cuda')\n"
        "    raise AssertionError('--device cuda accepted without numba-cuda')\n"
        "except FhectlError as exc:\n"
        "    print(exc)\n"
    )
    assert "--device cuda" in out


def test_auto_and_cuda_devices_follow_cuda_available():
    out = run_python(
        "from fhectl.ckks.backend_cuda import cuda_available\n"
        "from fhectl.ckks.context import CKKSContext\n"
        "from fhectl.ckks.params import load_parameters\n"
        "from fhectl.errors import FhectlError\n"
        "ok, why = cuda_available(allow_simulator=False)\n"
        "assert isinstance(ok, bool) and why, (ok, why)\n"
        "p = load_parameters('tiny-insecure', allow_insecure=True)\n"
        "assert CKKSContext(p, device='auto').device == ('cuda' if ok else 'cpu')\n"
        "if not ok:\n"
        "    try:\n"
        "        CKKSContext(p, device='cuda')\n"
        "        raise AssertionError('--device cuda accepted without a GPU')\n"
        "    except FhectlError as exc:\n"
        "        assert why in str(exc), (why, str(exc))\n"
        "print(ok, why)\n"
    )
    assert out.strip()
