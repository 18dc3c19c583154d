"""Layers depend one way: fhe_kernels -> fhectl.ckks -> circuits/gpt2 -> io/bench -> cli.

The check parses every module's imports (no importing needed), so a wrong
dependency fails here even if nothing exercises it at run time.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# For each package, the fhectl / fhe_kernels packages it must never import.
FORBIDDEN = {
    "kernels": ("fhectl",),
    "fhectl/ckks": ("fhectl.circuits", "fhectl.gpt2", "fhectl.io", "fhectl.bench", "fhectl.cli"),
    "fhectl/circuits": ("fhectl.gpt2", "fhectl.io", "fhectl.bench", "fhectl.cli"),
    "fhectl/gpt2": ("fhectl.bench", "fhectl.cli", "fhectl.llama"),
    "fhectl/llama": ("fhectl.bench", "fhectl.cli", "fhectl.gpt2", "fhectl.io"),
    "fhectl/io": ("fhectl.bench", "fhectl.cli", "fhectl.gpt2", "fhectl.circuits"),
    "fhectl/bench": ("fhectl.cli",),
}


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def test_kernels_import_only_numpy_numba_and_themselves():
    allowed_roots = {"numpy", "numba", "llvmlite", "math", "cmath", "functools", "__future__", "fhe_kernels", "os", "typing"}
    for path in (ROOT / "kernels").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] in allowed_roots, f"{path.relative_to(ROOT)} imports {name}"


def test_layers_depend_one_way():
    for package, banned in FORBIDDEN.items():
        for path in (ROOT / package).rglob("*.py"):
            for name in _imports(path):
                for b in banned:
                    assert not (name == b or name.startswith(b + ".")), f"{path.relative_to(ROOT)} imports {name}"
