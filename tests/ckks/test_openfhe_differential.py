"""Differential tests against OpenFHE: the same inputs through both libraries at matching
parameters; fhectl's precision must be within 2 bits of OpenFHE's for every operation.

openfhe is part of the contract: in CI (or with FHECTL_REQUIRE_OPENFHE=1) its absence fails.
"""

import zlib

import numpy as np
import pytest

from openfhe_contract import openfhe_required
from fhectl.bench.runner import openfhe_params_for
from fhectl.ckks.precision import precision_bits

try:
    import openfhe  # noqa: F401

    HAVE_OPENFHE = True
except ImportError:  # pragma: no cover - exercised only where openfhe is missing
    HAVE_OPENFHE = False

if not HAVE_OPENFHE:
    if openfhe_required():
        raise ImportError("openfhe is required for the differential tests (CI): pip install openfhe==1.6.1.0.22.4")
    pytest.skip("openfhe not installed (set FHECTL_REQUIRE_OPENFHE=1 to make this an error)", allow_module_level=True)

from fhectl.bench.openfhe_baseline import OpenFHEContext  # noqa: E402

STEPS = (1, 2, 3)


@pytest.fixture(scope="module")
def pair(kit):
    ofhe = OpenFHEContext(openfhe_params_for(kit.params), rotations=STEPS)
    return kit, ofhe


def _both(pair, values, op_fhectl, op_openfhe):
    kit, ofhe = pair
    ours = kit.decryptor.decrypt(op_fhectl(kit.encryptor.encrypt(values))).real
    theirs = ofhe.decrypt(op_openfhe(ofhe.encrypt(values)), len(values))
    return ours, theirs


def test_the_contexts_match(pair):
    kit, ofhe = pair
    d = ofhe.describe()
    assert d["ring_degree"] == kit.params.ring_degree
    assert abs(d["log_q"] - kit.params.describe()["log_q"]) < 2.0  # same prime sizes, OpenFHE's own primes


@pytest.mark.parametrize("name", ["round_trip", "square_rescale", "rotate_1", "rotate_3", "hoisted_2", "add"])
def test_precision_within_two_bits_of_openfhe(pair, name):
    kit, ofhe = pair
    ev = kit.evaluator
    x = np.random.default_rng(zlib.crc32(name.encode())).uniform(-1, 1, kit.params.slots)
    ops = {
        "round_trip": (lambda c: c, lambda c: c, x),
        "square_rescale": (lambda c: ev.rescale(ev.mul(c, c)), lambda c: ofhe.rescale(ofhe.mul_relin(c, c)), x * x),
        "rotate_1": (lambda c: ev.rotate(c, 1), lambda c: ofhe.rotate(c, 1), np.roll(x, -1)),
        "rotate_3": (lambda c: ev.rotate(c, 3), lambda c: ofhe.rotate(c, 3), np.roll(x, -3)),
        "hoisted_2": (lambda c: ev.rotate_hoisted(c, [2])[2], lambda c: ofhe.hoisted_rotations(c, [2])[2], np.roll(x, -2)),
        "add": (lambda c: ev.add(c, c), lambda c: ofhe.cc.EvalAdd(c, c), 2 * x),
    }
    f_ours, f_theirs, want = ops[name]
    ours, theirs = _both(pair, x, f_ours, f_theirs)
    p_ours, p_theirs = precision_bits(ours, want), precision_bits(theirs, want)
    assert p_ours >= p_theirs - 2.0, (name, p_ours, p_theirs)
    # and both agree with each other to about their own precision
    assert precision_bits(ours, theirs) >= min(p_ours, p_theirs) - 2.0


def test_multiplication_chain_tracks_openfhe(pair):
    """x^(2^k) down the whole chain: both libraries square the running value at every level."""
    kit, ofhe = pair
    ev = kit.evaluator
    x = np.random.default_rng(99).uniform(-1, 1, kit.params.slots)
    acc_o, acc_t, want = kit.encryptor.encrypt(x), ofhe.encrypt(x), x.copy()
    for _ in range(kit.params.max_level):
        acc_o = ev.rescale(ev.mul(acc_o, acc_o))
        acc_t = ofhe.rescale(ofhe.mul_relin(acc_t, acc_t))
        want = want * want
        p_o = precision_bits(kit.decryptor.decrypt(acc_o).real, want)
        p_t = precision_bits(ofhe.decrypt(acc_t, len(x)), want)
        assert p_o >= p_t - 2.0, (p_o, p_t)
