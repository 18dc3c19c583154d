"""The OpenFHE baseline wrapper: its operations compute what numpy computes, and its timings are complete.

Small insecure contexts (N = 2^11) on one OpenMP thread, restored afterwards:
two threads on a machine whose cores are busy elsewhere make every call wait
for a time slice (measured: 100x slower at this size).
"""

import math
import sys
import zlib

import numpy as np
import pytest

from openfhe_contract import openfhe_required
from fhectl.ckks.precision import precision_bits
from fhectl.errors import FhectlError, MissingKeyError, ParameterError, ScaleMismatchError

try:
    import openfhe  # noqa: F401

    HAVE_OPENFHE = True
except ImportError:  # pragma: no cover - exercised only where openfhe is missing
    HAVE_OPENFHE = False
    if openfhe_required():
        raise ImportError("openfhe is required (CI): pip install openfhe==1.6.1.0.22.4") from None

from fhectl.bench.openfhe_baseline import OpenFHEContext, OpenFHEParams, _set_omp_threads, time_openfhe_ops  # noqa: E402

needs_openfhe = pytest.mark.skipif(not HAVE_OPENFHE, reason="openfhe not installed")

SMALL = OpenFHEParams(log_n=11, first_mod_bits=50, scale_bits=40, levels=3, dnum=2, secure=False)
STEPS = (1, 2, 3, 5)
# a fresh encryption at Delta = 2^40, N = 2^11 is good to about 25 bits; one rescale costs ~2 bits
MIN_BITS = 20


def _rng(name: str):
    return np.random.default_rng(zlib.crc32(name.encode()))


@pytest.fixture(scope="module")
def one_thread():
    before = _set_omp_threads(None) if HAVE_OPENFHE else None
    yield 1
    if before is not None:
        _set_omp_threads(before)


@pytest.fixture(scope="module")
def ctx(one_thread):
    if not HAVE_OPENFHE:
        pytest.skip("openfhe not installed")
    return OpenFHEContext(SMALL, rotations=STEPS, threads=one_thread)


@pytest.fixture
def x(request):
    return _rng(request.node.name).uniform(-1, 1, SMALL.ring_degree // 2)


def test_missing_openfhe_is_a_fhectl_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openfhe", None)  # makes `import openfhe` raise ImportError
    with pytest.raises(FhectlError, match=r"pip install openfhe==1\.6\.1\.0\.22\.4"):
        OpenFHEContext(SMALL)


def test_parameters_are_checked():
    with pytest.raises(ParameterError, match="secret"):
        OpenFHEParams(log_n=11, first_mod_bits=50, scale_bits=40, levels=3, dnum=2, secure=False, secret="gaussian")
    with pytest.raises(ParameterError, match="levels"):
        OpenFHEParams(log_n=11, first_mod_bits=50, scale_bits=40, levels=0, dnum=2, secure=False)


@needs_openfhe
def test_secure_rejects_a_ring_below_the_table(one_thread):
    with pytest.raises(ParameterError, match="ring dimension"):
        OpenFHEContext(OpenFHEParams(log_n=11, first_mod_bits=50, scale_bits=40, levels=3, dnum=2, secure=True))


@needs_openfhe
def test_moduli_and_threads_are_read_back(ctx):
    assert ctx.threads == 1
    assert len(ctx.moduli) == SMALL.levels + 1 and ctx.moduli_bits[0] == SMALL.first_mod_bits
    assert all(abs(b - SMALL.scale_bits) <= 1 for b in ctx.moduli_bits[1:])
    assert all(q % (2 * SMALL.ring_degree) == 1 for q in ctx.moduli + ctx.special_moduli)  # NTT-friendly primes
    # hybrid key switching needs P at least as large as every digit of Q
    per_digit = math.ceil(len(ctx.moduli) / SMALL.dnum)
    largest_digit = max(sum(ctx.moduli_bits[i:i + per_digit]) for i in range(0, len(ctx.moduli), per_digit))
    assert sum(ctx.special_bits) >= largest_digit
    d = ctx.describe()
    assert d["ring_degree"] == SMALL.ring_degree and d["special_bits"] == list(ctx.special_bits)


@needs_openfhe
def test_round_trip(ctx, x):
    ct = ctx.encrypt(x)
    assert (ctx.level(ct), ctx.noise_scale_degree(ct), ctx.scale(ct)) == (0, 1, 2.0**SMALL.scale_bits)
    got = ctx.decrypt(ct, len(x))
    assert got.dtype == np.float64 and precision_bits(got, x) > MIN_BITS


@needs_openfhe
def test_real_context_refuses_imaginary_parts(ctx, x):
    with pytest.raises(ParameterError, match="complex"):
        ctx.encrypt(x + 0.5j)


@needs_openfhe
def test_mul_relin_then_rescale_is_the_elementwise_product(ctx, x):
    y = _rng("y").uniform(-1, 1, len(x))
    prod = ctx.mul_relin(ctx.encrypt(x), ctx.encrypt(y))
    assert (ctx.level(prod), ctx.noise_scale_degree(prod)) == (0, 2)
    assert precision_bits(ctx.decrypt(prod, len(x)), x * y) > MIN_BITS  # a degree-2 ciphertext decrypts
    res = ctx.rescale(prod)
    assert (ctx.level(res), ctx.noise_scale_degree(res)) == (1, 1)
    assert precision_bits(ctx.decrypt(res, len(x)), x * y) > MIN_BITS


@needs_openfhe
def test_mul_plain_add_and_level_reduce(ctx, x):
    y = _rng("y").uniform(-1, 1, len(x))
    ct = ctx.encrypt(x)
    prod = ctx.mul_plain(ct, y)
    with pytest.raises(ScaleMismatchError):
        ctx.add(prod, ct)  # degree 2 + degree 1: OpenFHE would return garbage
    total = ctx.add(ctx.rescale(prod), ct)  # levels 1 and 0: OpenFHE aligns them
    assert precision_bits(ctx.decrypt(total, len(x)), x * y + x) > MIN_BITS
    dropped = ctx.level_reduce(ct, 2)
    assert ctx.level(dropped) == 2 and precision_bits(ctx.decrypt(dropped, len(x)), x) > MIN_BITS


@needs_openfhe
def test_rotate_is_a_left_roll(ctx, x):
    for step in (1, 3):
        assert precision_bits(ctx.decrypt(ctx.rotate(ctx.encrypt(x), step), len(x)), np.roll(x, -step)) > MIN_BITS
    with pytest.raises(MissingKeyError, match="step"):
        ctx.rotate(ctx.encrypt(x), 4)


@needs_openfhe
def test_hoisted_rotations_equal_single_rotations(ctx, x):
    ct = ctx.encrypt(x)
    hoisted = ctx.hoisted_rotations(ct, STEPS)
    assert sorted(hoisted) == sorted(STEPS)
    for s in STEPS:
        one = ctx.decrypt(ctx.rotate(ct, s), len(x))
        many = ctx.decrypt(hoisted[s], len(x))
        assert precision_bits(many, np.roll(x, -s)) > MIN_BITS and precision_bits(many, one) > MIN_BITS


@needs_openfhe
def test_complex_slots_and_conjugation(one_thread):
    params = OpenFHEParams(log_n=11, first_mod_bits=50, scale_bits=40, levels=2, dnum=1, secure=False,
                           secret="sparse-ternary", data_type="complex")
    cctx = OpenFHEContext(params, threads=one_thread, conjugation=True)
    rng = _rng("complex")
    z = rng.uniform(-1, 1, 1024) + 1j * rng.uniform(-1, 1, 1024)
    ct = cctx.encrypt(z)
    got = cctx.decrypt(ct, len(z))
    assert got.dtype == np.complex128 and precision_bits(got, z) > MIN_BITS
    assert precision_bits(cctx.decrypt(cctx.conjugate(ct), len(z)), np.conj(z)) > MIN_BITS


@needs_openfhe
def test_time_openfhe_ops_reports_every_operation(one_thread):
    report = time_openfhe_ops(SMALL, repeat=3, warmup=1, threads=one_thread, seed=7)
    results = report["results"]
    assert set(results) == {"ntt_per_limb", "encode", "encrypt", "hmult_relin", "rescale", "rotate",
                            "hoisted_rotations_8", "decrypt"}
    for name, r in results.items():
        assert r["median_s"] > 0 and r["min_s"] <= r["median_s"] <= r["max_s"] and r["repeats"] == 3, name
        assert r["timing"]["median_s"] == r["median_s"] and r["iqr_s"] >= 0
        if name not in ("encode", "ntt_per_limb"):
            assert r["precision_bits"] > MIN_BITS, (name, r["precision_bits"])
    assert results["ntt_per_limb"]["note"].startswith("Plaintext.SetFormat")
    assert report["context"]["threads"] == 1 and report["context"]["moduli_bits"][0] == SMALL.first_mod_bits
