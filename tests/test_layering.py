"""Layers depend one way, and no layer reaches past the one it builds on:

    fhe_kernels -> fhectl.ckks -> fhectl.circuits -> fhectl.gpt2 / fhectl.llama
        -> fhectl.io / fhectl.keysets / fhectl.bench -> fhectl.service (the server) -> fhectl.cli

The check parses every module's imports (no importing needed; relative imports are resolved, imports
inside functions count), so a wrong dependency fails here even if nothing exercises it at run time.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_ABOVE_KEYSETS = ("fhectl.keysets", "fhectl.service", "fhectl.cli")

# For each package, the fhectl / fhe_kernels packages it must never import: every higher layer, and for
# the top layers the kernels too (layer-skipping: the CLI and the server reach the engine through
# fhectl.ckks and the libraries above it, never around them).
FORBIDDEN = {
    "kernels": ("fhectl",),
    "fhectl/ckks": ("fhectl.circuits", "fhectl.gpt2", "fhectl.llama", "fhectl.io", "fhectl.bench", *_ABOVE_KEYSETS),
    "fhectl/circuits": ("fhectl.gpt2", "fhectl.llama", "fhectl.io", "fhectl.bench", *_ABOVE_KEYSETS),
    "fhectl/gpt2": ("fhectl.bench", "fhectl.llama", *_ABOVE_KEYSETS),
    "fhectl/llama": ("fhectl.bench", "fhectl.gpt2", "fhectl.io", *_ABOVE_KEYSETS),
    "fhectl/io": ("fhectl.bench", "fhectl.gpt2", "fhectl.circuits", *_ABOVE_KEYSETS),
    "fhectl/keysets": ("fhe_kernels", "fhectl.bench", "fhectl.gpt2", "fhectl.llama", "fhectl.circuits",
                       "fhectl.service", "fhectl.cli"),
    "fhectl/bench": ("fhectl.service", "fhectl.cli"),
    "fhectl/service": ("fhe_kernels", "fhectl.cli"),
    "fhectl/cli": ("fhe_kernels",),
}


def _module_parts(path: Path) -> list[str]:
    """The dotted name of the module at ``path`` as parts ("kernels/x.py" is fhe_kernels.x)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "kernels":
        parts[0] = "fhe_kernels"
    return parts


def _imports(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_parts(path)[:-1]  # a module's package; for __init__.py, the package itself
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                yield node.module
                continue
            base = package[:len(package) - (node.level - 1)]
            if node.module:
                yield ".".join(base + [node.module])
            else:  # from . import x: x is a module of the package
                for alias in node.names:
                    yield ".".join(base + [alias.name])


def _violations(package: str, banned) -> list[str]:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            for b in banned:
                if name == b or name.startswith(b + "."):
                    out.append(f"{path.relative_to(ROOT)} imports {name}")
    return out


def test_kernels_import_only_numpy_numba_and_themselves():
    allowed_roots = {"numpy", "numba", "llvmlite", "math", "cmath", "functools", "__future__", "fhe_kernels", "os", "typing"}
    for path in (ROOT / "kernels").rglob("*.py"):
        for name in _imports(path):
            assert name.split(".")[0] in allowed_roots, f"{path.relative_to(ROOT)} imports {name}"


def test_layers_depend_one_way():
    problems = [v for package, banned in FORBIDDEN.items() for v in _violations(package, banned)]
    assert not problems, "\n".join(problems)


def test_the_key_set_library_exists_below_the_cli():
    """Key-set logic lives in fhectl/keysets (used by the CLI and the server), not in a CLI module."""
    assert (ROOT / "fhectl" / "keysets" / "__init__.py").is_file()
    assert not (ROOT / "fhectl" / "cli" / "keysets.py").exists()


def test_the_check_sees_relative_and_function_level_imports(tmp_path, monkeypatch):
    """A layer-skipping import hidden in a function or written relatively is still caught."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    cli = tmp_path / "fhectl" / "cli"
    keysets = tmp_path / "fhectl" / "keysets"
    cli.mkdir(parents=True)
    keysets.mkdir(parents=True)
    (cli / "cmd.py").write_text("def f():\n    from fhe_kernels.ntt import forward\n    return forward\n")
    (keysets / "bad.py").write_text("from ..cli import console\nfrom . import files\n")
    assert _violations("fhectl/cli", FORBIDDEN["fhectl/cli"]) == ["fhectl/cli/cmd.py imports fhe_kernels.ntt"]
    assert _violations("fhectl/keysets", FORBIDDEN["fhectl/keysets"]) == [
        "fhectl/keysets/bad.py imports fhectl.cli"]
