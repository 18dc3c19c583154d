"""Docstrings of the kernel layer name only code that exists.

The kernels are documented by reference to each other (``NttTables``, ``fhe_kernels.ntt.ntt_forward``,
``barrett_constants``); a rename that leaves a docstring behind sends the reader to nothing. Every
identifier in double backquotes must be defined somewhere in kernels/ (a module, function, class,
attribute or parameter), read from the source with ``ast`` so the CUDA modules need no numba.cuda.
"""

import ast
import re
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[2] / "kernels"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
EXTERNAL_ROOTS = {"numba", "np", "numpy"}
# Names outside the kernels' Python: x86 multiply instructions (modarith's cost notes), the libdevice symbol
# numba wraps and the PTX instruction it compiles to, and the scheme parameter dnum (fhectl.ckks.params).
FOREIGN = {"mul", "mulx", "__nv_umul64hi", "mul.hi.u64", "dnum"}


def _defined_names(trees) -> set[str]:
    names = {"fhe_kernels"} | {p.stem for p in KERNELS.rglob("*.py")}
    names |= {p.name for p in KERNELS.rglob("*") if p.is_dir()}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return names


def _docstring_references(path: Path, tree) -> list[tuple[str, str]]:
    out = []
    for node in [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]:
        doc = ast.get_docstring(node) or ""
        where = f"{path.relative_to(KERNELS.parent)}:{getattr(node, 'name', '<module>')}"
        out += [(where, token) for token in re.findall(r"``([^`]+)``", doc) if IDENTIFIER.match(token)]
    return out


def unresolved_references(sources: dict[Path, str]) -> list[str]:
    trees = {path: ast.parse(text) for path, text in sources.items()}
    names = _defined_names(trees.values())
    bad = []
    for path, tree in trees.items():
        for where, token in _docstring_references(path, tree):
            parts = token.split(".")
            if parts[0] in EXTERNAL_ROOTS or token in FOREIGN:
                continue
            if not all(p in names for p in parts):
                bad.append(f"{where}: ``{token}``")
    return bad


def _kernel_sources() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted(KERNELS.rglob("*.py"))}


def test_kernel_docstrings_name_existing_code():
    assert unresolved_references(_kernel_sources()) == []


def test_a_stale_name_is_caught():
    sources = _kernel_sources()
    ntt = KERNELS / "ntt.py"
    sources[ntt] = sources[ntt].replace('"""Twiddle tables', '"""See ``_powers_bitrev``. Twiddle tables', 1)
    assert unresolved_references(sources) == ["kernels/ntt.py:NttTables: ``_powers_bitrev``"]


def test_ntt_tables_hold_what_their_docstring_says():
    from fhe_kernels import reference as ref
    from fhe_kernels.ntt import NttTables
    from fhe_kernels.primes import ntt_primes

    n = 16
    tables = NttTables(ntt_primes(30, 2, n), n)
    for i, q in enumerate(int(q) for q in tables.moduli):
        psi = tables.psi[i]
        assert pow(psi, n, q) == q - 1  # a primitive 2N-th root of unity
        assert [int(w) for w in tables.psi_rev[i]] == [pow(psi, ref.brv(j, 4), q) for j in range(n)]
        assert [int(w) for w in tables.ipsi_rev[i]] == [pow(psi, -ref.brv(j, 4), q) for j in range(n)]
        assert int(tables.n_inv[i]) * n % q == 1
