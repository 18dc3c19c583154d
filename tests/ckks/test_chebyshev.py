"""The engine's baby-step giant-step Chebyshev evaluator (fhectl.ckks.chebyshev): its division tree against
numpy's Clenshaw evaluation, its depth ceil(log2(d + 1)) and product count, and one homomorphic evaluation
landing exactly on the scale asked for. (The circuits' tests run it on intervals and through the simulator;
bootstrapping's tests run it inside EvalMod.)"""

import math

import numpy as np
import pytest

from fhectl.ckks import chebyshev
from fhectl.ckks.bootstrap import BootstrapConfig, chebyshev_coefficients
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import LevelError


@pytest.mark.parametrize("degree", [2, 3, 7, 8, 15, 27, 31, 32, 63, 100])
def test_division_tree_is_the_series(degree):
    rng = np.random.default_rng(degree)
    coeffs = rng.normal(size=degree + 1) / (1 + np.arange(degree + 1))
    u = np.linspace(-1, 1, 1001)
    np.testing.assert_allclose(chebyshev.evaluate_plain(coeffs, u), np.polynomial.chebyshev.chebval(u, coeffs),
                               atol=1e-12)
    assert chebyshev.series_depth(coeffs) == math.ceil(math.log2(degree + 1))


def test_eval_mod_series_costs_11_products_in_5_levels():
    """The figures the bootstrapping docstring and README give for EvalMod's degree-27 interpolant."""
    coeffs = chebyshev_coefficients(BootstrapConfig.encapsulated())
    plan = chebyshev.plan(tuple(coeffs))
    assert plan.degree == 27 and plan.series_depth == 5 and plan.ct_mults == 11
    assert BootstrapConfig.encapsulated().eval_mod_depth() == 5 + 4


def test_homomorphic_evaluation_lands_on_the_target_scale():
    params = load_parameters("tiny-deep-insecure", allow_insecure=True)
    ctx = CKKSContext(params)
    kg = KeyGenerator(ctx, SeededRandom("tests/chebyshev"))
    sk = kg.secret_key()
    ev = Evaluator(ctx, kg.relin_key(sk))
    enc, dec = Encryptor(ctx, kg.public_key(sk), random=SeededRandom("tests/chebyshev/enc")), Decryptor(ctx, sk)
    coeffs = np.cos(np.arange(28)) / (1 + np.arange(28)) ** 2
    u = np.random.default_rng(1).uniform(-1, 1, params.slots)
    ct = enc.encrypt(u)
    target = ct.scale * 1.25  # not the input's: the leaves and quotients must be encoded for it
    out = chebyshev.evaluate(ev, ct, coeffs, target_scale=target)
    assert out.scale == pytest.approx(target, rel=1e-12) and out.level == ct.level - 5
    assert precision_bits(dec.decrypt(out).real, np.polynomial.chebyshev.chebval(u, coeffs)) > 20
    with pytest.raises(LevelError, match="needs 5 levels"):
        chebyshev.evaluate(ev, ev.drop_level(ct, 4), coeffs)
