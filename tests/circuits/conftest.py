"""Keys and helpers for the circuit tests.

Precision bounds are derived from the parameters: a fresh encryption is within
B = precision.fresh_error_bound(params) (6 sigma N sqrt(4/3) / Delta, about 2^-25.5 at N = 2^10 and
Delta = 2^40). Through a circuit computing g that error reaches the output multiplied by g's slope, and
every term the circuit adds (a term c_i T_i of a series, a Newton step, a squaring) brings its own error
of at most about B times its size: rescaling and relinearization errors are below 2^-30 here, under B.
So the predicted bound is B (max|g'| + sum_i |c_i| * amplification), and the tests ask for one bit less
than its -log2 (a factor 2 for the tails). ``error_bound`` computes it.
"""

import math

import numpy as np
import pytest

from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import fresh_error_bound


@pytest.fixture(scope="session")
def deep_params():
    """N = 2^10, 24 levels at Delta = 2^40 (tests only): room for every approximation."""
    return load_parameters("tiny-deep-insecure", allow_insecure=True)


@pytest.fixture(scope="session")
def deep_kit(make_kit, deep_params):
    return make_kit(deep_params, "circuits/deep", rotations=(1,))


def max_slope(g, a: float, b: float) -> float:
    x = np.linspace(a, b, 20001)
    y = g(x)
    return float(np.max(np.abs(np.diff(y) / np.diff(x))))


def error_bound(params, g, a: float, b: float, internal: float) -> float:
    """B (max|g'| on [a, b] + internal): the error a circuit for g is expected to stay under."""
    return fresh_error_bound(params) * (max_slope(g, a, b) + internal)


def required_bits(params, g, a: float, b: float, internal: float) -> float:
    return -math.log2(2.0 * error_bound(params, g, a, b, internal))


@pytest.fixture(scope="session")
def bits_required():
    """required_bits(params, g, a, b, internal): the precision a circuit for g on [a, b] must reach."""
    return required_bits
