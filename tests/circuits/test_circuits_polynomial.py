"""Chebyshev series: interpolants against numpy, the evaluation plan, homomorphic evaluation against the
plaintext one, levels against the simulator, and domain checks."""

import math

import numpy as np
import pytest

from fhectl.circuits import polynomial as P
from fhectl.circuits.levels import SimEvaluator, trace
from fhectl.ckks.precision import precision_bits
from fhectl.errors import DomainError, LevelError

FUNCTIONS = {
    "exp": (np.exp, -3.0, 1.0),
    "sin": (np.sin, -4.0, 4.0),
    "inverse": (lambda x: 1.0 / x, 1.0, 8.0),
    "logistic": (lambda x: 1.0 / (1.0 + np.exp(-x)), -6.0, 6.0),
}


# -- plaintext -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_interpolant_matches_numpy_and_converges(name):
    f, a, b = FUNCTIONS[name]
    errors = []
    for degree in (3, 7, 15, 31):
        poly = P.chebyshev_interpolant(f, a, b, degree, name=name)
        # the same interpolant as numpy's (Chebyshev points of the first kind)
        ref = np.polynomial.Chebyshev.interpolate(f, degree, domain=[a, b])
        np.testing.assert_allclose(poly.coeffs, ref.coef, atol=1e-13)
        x = np.linspace(a, b, 1001)
        np.testing.assert_allclose(poly.eval_plain(x), ref(x), atol=1e-12)
        grid = P.error_grid(a, b, degree)
        assert poly.max_error >= np.max(np.abs(poly.eval_plain(grid) - f(grid)))
        assert np.max(np.abs(poly.eval_plain(x) - f(x))) <= poly.max_error * (1 + 1e-9)
        errors.append(poly.max_error)
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-6  # analytic functions: geometric decay


def test_fit_returns_the_least_depth_meeting_the_tolerance():
    poly = P.chebyshev_fit(np.sin, -4.0, 4.0, tol=1e-8)
    assert poly.max_error <= 1e-8
    shallower = P.chebyshev_interpolant(np.sin, -4.0, 4.0, (poly.degree + 1) // 2 - 1)
    assert shallower.max_error > 1e-8


@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 100, 127, 128, 200, 255])
def test_plan_computes_the_same_polynomial_and_has_the_stated_depth(deep_params, degree):
    rng = np.random.default_rng(degree)
    poly = P.ChebyshevPoly(tuple(rng.uniform(-1, 1, degree + 1) / (1 + np.arange(degree + 1))), -3.0, 5.0)
    x = np.linspace(-3, 5, 513)
    np.testing.assert_allclose(P.evaluate_plain(poly, x), poly.eval_plain(x), atol=1e-11)
    m = math.ceil(math.log2(degree + 1))
    assert P.depth(poly) == (m + 1 if degree >= 2 else 1)
    assert P.depth(poly, mapped=True) == m
    cost = P.cost(poly)
    # O(sqrt d) non-scalar products: baby steps + giant steps + one per quotient
    assert cost["ct_mults"] <= 3 * math.sqrt(degree + 1) + m
    # the simulator, running the homomorphic code, consumes exactly depth() levels and counts the same products
    out, counters, _ = trace(lambda ev, ct: P.evaluate(ev, ct, poly), deep_params)
    assert deep_params.max_level - out.level == P.depth(poly)
    assert counters["ct_mults"] == cost["ct_mults"]
    assert out.scale == pytest.approx(deep_params.scale, rel=1e-12)  # lands on the input's scale


def test_odd_series_skips_even_basis_polynomials():
    poly = P.chebyshev_interpolant(np.tanh, -2.0, 2.0, 31)
    assert all(c == 0.0 for c in poly.coeffs[0::2])
    assert all(i % 2 == 1 or i & (i - 1) == 0 for i in P.plan(poly).basis)  # only odd T_i and giant steps


def test_check_domain_names_the_value_and_the_domain():
    P.check_domain(np.array([-1.0, 0.0, 2.0]), -1.0, 2.0)
    with pytest.raises(DomainError, match=r"gelu: value 9\.5 \(index 2\).*\[-8, 8\]"):
        P.check_domain([0.0, -7.9, 9.5, 8.2], -8.0, 8.0, "gelu")
    with pytest.raises(DomainError, match="nan"):
        P.check_domain([0.0, float("nan")], -1.0, 1.0)
    poly = P.chebyshev_interpolant(np.exp, -30.0, 0.0, 15, name="exp")
    with pytest.raises(DomainError, match=r"exp: value 0\.5 .*\[-30, 0\]"):
        poly.check_domain(np.array([[-3.0, 0.5]]))


# -- homomorphic ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,degree", [("sin", 1), ("sin", 2), ("exp", 5), ("logistic", 16), ("sin", 31),
                                         ("logistic", 63), ("inverse", 100)])
def test_homomorphic_evaluation_matches_plaintext(deep_kit, bits_required, name, degree):
    f, a, b = FUNCTIONS[name]
    poly = P.chebyshev_interpolant(f, a, b, degree, name=name)
    kit, ev = deep_kit, deep_kit.evaluator
    x = kit.rng.uniform(a, b, kit.params.slots)
    x[:2] = (a, b)
    ct = kit.encryptor.encrypt(x)
    before = dict(ev.counters)
    out = P.evaluate(ev, ct, poly)
    used = {k: ev.counters[k] - before[k] for k in before}
    got = kit.decryptor.decrypt(out).real
    need = bits_required(kit.params, poly.eval_plain, a, b, sum(abs(c) for c in poly.coeffs))
    assert precision_bits(got, poly.eval_plain(x)) >= need
    assert ct.level - out.level == P.depth(poly)
    assert out.scale == pytest.approx(ct.scale, rel=1e-12)  # exactly but for float rounding
    sim = SimEvaluator(kit.params)
    s_out = P.evaluate(sim, sim.fresh(ct.level, ct.scale), poly)
    assert (s_out.level, s_out.scale) == (out.level, out.scale) and sim.counters == used


def test_mapped_input_and_target_scale(deep_kit, bits_required):
    kit, ev = deep_kit, deep_kit.evaluator
    poly = P.chebyshev_interpolant(np.sin, -4.0, 4.0, 15)
    alpha, beta = poly.affine
    x = kit.rng.uniform(-4, 4, kit.params.slots)
    u = kit.encryptor.encrypt(alpha * x + beta)  # as if a linear layer had folded the map in
    target = kit.params.scale * 1.001
    out = P.evaluate(ev, u, poly, mapped=True, target_scale=target)
    assert u.level - out.level == 4 and out.scale == pytest.approx(target, rel=1e-12)
    need = bits_required(kit.params, poly.eval_plain, -4, 4, sum(abs(c) for c in poly.coeffs))
    assert precision_bits(kit.decryptor.decrypt(out).real, poly.eval_plain(x)) >= need


def test_unit_interval_and_constant(deep_kit):
    kit, ev = deep_kit, deep_kit.evaluator
    x = kit.rng.uniform(-1, 1, kit.params.slots)
    ct = kit.encryptor.encrypt(x)
    cheb = P.ChebyshevPoly((0.25, -0.5, 0.125, 0.75))  # on [-1, 1]: no affine level
    out = P.evaluate(ev, ct, cheb)
    assert ct.level - out.level == 2
    assert precision_bits(kit.decryptor.decrypt(out).real, cheb.eval_plain(x)) > 22
    const = P.evaluate(ev, ct, P.ChebyshevPoly((0.5,), -2.0, 3.0))
    assert const.level == ct.level and precision_bits(kit.decryptor.decrypt(const).real, np.full_like(x, 0.5)) > 30


def test_too_few_levels_is_a_level_error(deep_kit):
    kit = deep_kit
    poly = P.chebyshev_interpolant(np.sin, -4.0, 4.0, 63)
    ct = kit.evaluator.drop_level(kit.encryptor.encrypt(np.zeros(4)), P.depth(poly) - 1)
    with pytest.raises(LevelError, match=f"needs {P.depth(poly)} levels"):
        P.evaluate(kit.evaluator, ct, poly)
