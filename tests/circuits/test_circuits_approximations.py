"""GELU, exp, 1/x and 1/sqrt(x): plaintext accuracy on their domains, homomorphic precision against the
plaintext circuit, level cost against depth() and the simulator, exact output scales, domain checks."""

import math

import numpy as np
import pytest

from fhectl.circuits import approximations as A
from fhectl.circuits import polynomial as P
from fhectl.circuits.levels import SimEvaluator, trace
from fhectl.circuits.protocols import Approximation
from fhectl.circuits.wide import SaturatedProduct, WideInverseSqrt
from fhectl.ckks.precision import precision_bits
from fhectl.errors import DomainError, InputError, LevelError
from protocol_check import protocol_mismatches

# -- plaintext ---------------------------------------------------------------------------------------------


def test_gelu_interpolant_accuracy_and_depth():
    g = A.gelu(-8.0, 8.0)  # default tolerance 2^-12
    assert g.max_error <= 2**-12 and g.degree <= 31 and P.depth(g) == 6
    x = np.linspace(-8, 8, 4001)
    assert np.max(np.abs(g.eval_plain(x) - A.gelu_tanh(x))) <= g.max_error * (1 + 1e-9)
    assert A.gelu(-8.0, 8.0, degree=63).max_error < 1e-8


def test_exp_picks_the_least_depth():
    e = A.exp(-30.0, 0.0, tol=2**-16)
    assert e.max_error <= 2**-16
    # least depth among every (squarings, degree 2^k - 1) that meets the tolerance
    x = P.error_grid(-30, 0, 127)
    for r in range(4):
        for k in range(1, 7):
            cand = A.Exp(P.chebyshev_interpolant(lambda t, r=r: np.exp(t / 2**r), -30, 0, 2**k - 1), r)
            if np.max(np.abs(cand.eval_plain(x) - np.exp(x))) <= 2**-16:
                assert cand.depth() >= e.depth()
    assert e.depth() == 6
    forced = A.exp(-30.0, 0.0, tol=2**-16, squarings=3)
    assert forced.squarings == 3 and forced.max_error <= 2**-16


@pytest.mark.parametrize("a,b", [(1.0, 10.0), (1.0, 100.0), (0.5, 2.0), (1.0, 1000.0)])
def test_inverse_relative_error_and_seed_residual(a, b):
    inv = A.inverse(a, b, tol=2**-20, max_seed_degree=15)
    assert inv.max_rel_error <= 2**-20
    # the interpolant of 1/x is the optimal relative seed: max |1 - x y0| = 1 / T_{n+1}((b+a)/(b-a))
    x = np.geomspace(a, b, 20001)
    for n in (1, 3, 7, 15):
        seed = P.chebyshev_interpolant(lambda t: 1 / t, a, b, n)
        assert np.max(np.abs(1 - x * seed.eval_plain(x))) == pytest.approx(A.inverse_seed_residual(a, b, n), rel=1e-6)
    # Goldschmidt in exact arithmetic: relative error e0^(2^k)
    e0 = A.inverse_seed_residual(a, b, inv.seed.degree)
    assert inv.max_rel_error <= e0 ** (2**inv.steps) * (1 + 1e-6) + 1e-15
    assert inv.depth() == P.depth(inv.seed) + (1 + inv.steps if inv.steps else 0)


@pytest.mark.parametrize("a,b", [(1.0, 10.0), (1.0, 100.0), (0.01, 1.0)])
def test_inverse_sqrt_relative_error(a, b):
    s = A.inverse_sqrt(a, b, tol=2**-20, max_seed_degree=15)
    assert s.max_rel_error <= 2**-20
    assert s.depth() == P.depth(s.seed) + 2 * s.steps


def test_unreachable_tolerances_and_bad_domains_are_refused():
    with pytest.raises(InputError, match="narrow the domain"):
        A.inverse(1.0, 1e6, tol=2**-20, max_seed_degree=3)
    with pytest.raises(InputError, match="0 < a < b"):
        A.inverse_sqrt(-1.0, 4.0)
    with pytest.raises(InputError):
        A.exp(-200.0, 0.0, tol=2**-40, max_degree=3)


def test_domain_checks_on_calibration_data():
    g = A.gelu(-8.0, 8.0)
    g.check_domain(np.array([-8.0, 0.3, 8.0]))
    with pytest.raises(DomainError, match=r"gelu: value -8\.5 .*\[-8, 8\]"):
        g.check_domain(np.array([[0.0, 1.0], [-8.5, 2.0]]))
    with pytest.raises(DomainError, match=r"inverse: value 0 .*\[1, 100\]"):
        A.inverse(1.0, 100.0).check_domain([5.0, 0.0])
    with pytest.raises(DomainError, match=r"exp: value 1\.5"):
        A.exp(-30.0, 0.0).check_domain([1.5])
    with pytest.raises(DomainError, match="inverse_sqrt"):
        A.check_domain([3.0], 0.5, 2.0, "inverse_sqrt")


# -- homomorphic ---------------------------------------------------------------------------------------------


def _series_weight(poly):
    return sum(abs(c) for c in poly.coeffs)


CASES = {
    # name: (factory, domain, internal error weight: sum |c_i| of the series times its amplification)
    "gelu[-8,8]": (lambda: A.gelu(-8.0, 8.0), (-8.0, 8.0), lambda ap: _series_weight(ap)),
    "exp[-30,0]": (lambda: A.exp(-30.0, 0.0), (-30.0, 0.0),
                   lambda ap: _series_weight(ap.poly) * 2**ap.squarings),
    "exp[-20,1] r=3": (lambda: A.exp(-20.0, 1.0, squarings=3), (-20.0, 1.0),
                       lambda ap: _series_weight(ap.poly) * 2**ap.squarings * math.e),
    "inverse[1,100]": (lambda: A.inverse(1.0, 100.0, max_seed_degree=15), (1.0, 100.0),
                       lambda ap: _series_weight(ap.seed) + ap.steps),
    "inverse[0.5,2]": (lambda: A.inverse(0.5, 2.0), (0.5, 2.0), lambda ap: _series_weight(ap.seed) + 2 * ap.steps),
    "inverse_sqrt[1,100]": (lambda: A.inverse_sqrt(1.0, 100.0, max_seed_degree=15), (1.0, 100.0),
                            lambda ap: _series_weight(ap.seed) + ap.steps),
    "inverse_sqrt[0.01,1]": (lambda: A.inverse_sqrt(0.01, 1.0, max_seed_degree=31), (0.01, 1.0),
                             lambda ap: _series_weight(ap.seed) + 10 * ap.steps),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_homomorphic_approximation(deep_kit, bits_required, name):
    factory, (a, b), weight = CASES[name]
    ap = factory()
    kit, ev = deep_kit, deep_kit.evaluator
    x = kit.rng.uniform(a, b, kit.params.slots)
    x[:2] = (a, b)
    ct = kit.encryptor.encrypt(x)
    before = dict(ev.counters)
    out = ap.evaluate(ev, ct)
    used = {k: ev.counters[k] - before[k] for k in before}
    got = kit.decryptor.decrypt(out).real
    assert precision_bits(got, ap.eval_plain(x)) >= bits_required(kit.params, ap.eval_plain, a, b, weight(ap))
    # and against the exact function: the approximation error plus the same noise
    ref_err = np.max(np.abs(got - ap.reference(x)))
    assert ref_err <= ap.max_error + 2.0 ** -bits_required(kit.params, ap.eval_plain, a, b, weight(ap))
    assert ct.level - out.level == ap.depth()
    assert out.scale == pytest.approx(ct.scale, rel=1e-12)
    assert used["ct_mults"] == ap.cost()["ct_mults"]
    sim = SimEvaluator(kit.params)
    s_out = ap.evaluate(sim, sim.fresh(ct.level, ct.scale))
    assert (s_out.level, s_out.scale) == (out.level, out.scale) and sim.counters == used


def test_target_scale_is_met(deep_kit):
    kit, ev = deep_kit, deep_kit.evaluator
    ct = kit.encryptor.encrypt(kit.rng.uniform(1.0, 10.0, 16))
    target = kit.params.scale * 0.999
    for ap in (A.inverse(1.0, 10.0, max_seed_degree=7), A.inverse_sqrt(1.0, 10.0, max_seed_degree=7),
               A.exp(0.0, 2.0, squarings=2)):
        assert ap.evaluate(ev, ct, target_scale=target).scale == pytest.approx(target, rel=1e-12)


# -- the Approximation protocol -----------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [A.Exp, A.Inverse, A.InverseSqrt, WideInverseSqrt, SaturatedProduct])
def test_approximations_satisfy_the_protocol(cls):
    assert protocol_mismatches(cls, Approximation) == []


SHARED = ("domain", "reference", "max_error", "depth", "cost", "check_domain", "_target_scale")


@pytest.mark.parametrize("ap", [A.exp(-8.0, 0.0, squarings=2), A.inverse(0.5, 8.0, tol=2.0**-16),
                                A.inverse_sqrt(0.5, 8.0, tol=2.0**-14)], ids=lambda ap: ap.name)
def test_interpolant_approximations_share_one_implementation(ap, deep_params):
    assert isinstance(ap, A.InterpolantApproximation) and isinstance(ap, Approximation)
    assert not set(SHARED) & set(vars(type(ap))), "a subclass repeats the shared code"
    what, count, levels, products = ap.refinement()
    c = ap.interpolant.cost()
    assert ap.domain == ap.interpolant.domain and ap.depth() == ap.interpolant.depth() + levels
    assert ap.cost() == {"depth": ap.depth(), "ct_mults": c["ct_mults"] + products, "degree": c["degree"],
                         what: count}
    x = np.linspace(*ap.domain, 9)
    assert np.array_equal(ap.reference(x), type(ap).reference(list(x)))  # callable on the class, as before
    with pytest.raises(DomainError):
        ap.check_domain([ap.domain[1] + 1.0])
    with pytest.raises(LevelError, match=f"{ap.name} needs {ap.depth()} levels, the ciphertext is at level"):
        trace(lambda ev, ct: ap.evaluate(ev, ct), deep_params, level=ap.depth() - 1)
