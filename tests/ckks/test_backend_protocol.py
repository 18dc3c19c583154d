"""The ``Backend`` protocol: what the CPU and CUDA backends both owe, and how a context is built on one.

The CUDA backend is checked on its class (importing it does not import numba.cuda); the simulated tests
(tests/cuda/simulated) run it.
"""

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
from protocol_check import protocol_members, protocol_mismatches

from fhectl.ckks.backend import Backend, CpuBackend, RingTables
from fhectl.ckks.backend_cuda import CudaBackend
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import FhectlError


def _public_methods(cls) -> set[str]:
    return {n for n, v in inspect.getmembers(cls) if not n.startswith("_") and callable(v) and not inspect.isclass(v)}


@pytest.mark.parametrize("cls", [CpuBackend, CudaBackend])
def test_both_backends_satisfy_the_protocol(cls):
    assert protocol_mismatches(cls, Backend) == []


def test_the_protocol_declares_every_method_the_backends_share():
    shared = _public_methods(CpuBackend) & _public_methods(CudaBackend)
    declared = set(protocol_members(Backend)) - {"name"}
    assert shared == declared, (sorted(shared - declared), sorted(declared - shared))


def test_the_checker_sees_a_wrong_signature():
    class Skewed(CpuBackend):
        def ntt(self, a, rows, inverse):  # an extra required parameter
            pass

        def add(self, x, y, out, rows):  # renamed parameters
            pass

    del_sync = type("NoSync", (CpuBackend,), {"synchronize": property(lambda self: None)})
    assert len(protocol_mismatches(Skewed, Backend)) == 2
    assert protocol_mismatches(del_sync, Backend) == ["synchronize is a property, the protocol declares a method"]


def test_the_cpu_backend_needs_no_probing(tiny_params):
    be = CKKSContext(tiny_params).backend
    assert isinstance(be, Backend) and be.name == "cpu"
    assert be.synchronize() is None and be.memory_report() is None


class CountingBackend(CpuBackend):
    """The CPU backend, counting forward NTTs: a stand-in for an instrumented or differently tuned backend."""

    def __init__(self, tables: RingTables):
        super().__init__(tables)
        self.ntts = 0

    def ntt(self, a, rows) -> None:
        self.ntts += 1
        super().ntt(a, rows)


def test_a_context_is_built_on_the_backend_its_factory_returns(tiny_params):
    seen = []

    def factory(tables):
        seen.append(tables)
        return CountingBackend(tables)

    ctx = CKKSContext(tiny_params, backend_factory=factory)
    assert seen == [ctx.tables] and isinstance(ctx.backend, CountingBackend) and ctx.device == "cpu"
    kg = KeyGenerator(ctx, SeededRandom("tests/backend-factory"))
    sk = kg.secret_key()
    ev = Evaluator(ctx, kg.relin_key(sk))
    enc, dec = Encryptor(ctx, kg.public_key(sk), SeededRandom("tests/backend-factory/enc")), Decryptor(ctx, sk)
    before = ctx.backend.ntts
    x = np.linspace(-0.5, 0.5, tiny_params.slots)
    got = dec.decrypt(ev.rescale(ev.mul(enc.encrypt(x), enc.encrypt(x)))).real
    assert ctx.backend.ntts > before  # every operation went through the given backend
    assert np.max(np.abs(got - x * x)) < 2.0**-10


def test_a_context_keeps_its_backend(tiny_params):
    ctx = CKKSContext(tiny_params)
    with pytest.raises(AttributeError):
        ctx.backend = CpuBackend(ctx.tables)  # keys and ciphertexts already live on the first one


def test_backend_arguments_are_checked(tiny_params):
    with pytest.raises(FhectlError, match="not both"):
        CKKSContext(tiny_params, device="cpu", backend_factory=CpuBackend)
    with pytest.raises(FhectlError, match="lacks the Backend methods"):
        CKKSContext(tiny_params, backend_factory=lambda tables: object())
    assert CKKSContext(tiny_params, device="cpu").device == "cpu"


def test_no_caller_probes_a_backend_for_a_declared_method():
    """``getattr(be, "synchronize", ...)`` hides a missing method; every backend declares them all."""
    methods = set(protocol_members(Backend)) - {"name"}
    probes = []
    for path in sorted((Path(__file__).resolve().parents[2] / "fhectl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 2):
                continue
            attr = node.args[1]
            if node.func.id in ("getattr", "hasattr") and isinstance(attr, ast.Constant) and attr.value in methods:
                probes.append(f"{path.name}:{node.lineno} {node.func.id}(..., {attr.value!r})")
    assert probes == []
