"""Issue 12, item 7: the 128-bit label holds only for the distributions the security table assumes.

The HomomorphicEncryption.org table (and OpenFHE's) assume a uniform ternary secret and a discrete
Gaussian error of sigma about 3.2; a smaller sigma makes the lattice problem easier, so a profile
with sigma 0.01 must not be called 128-bit.
"""

import dataclasses

import pytest

from fhectl.ckks.params import MIN_SIGMA_128, Parameters, ParametersLiteral, load_literal
from fhectl.errors import InsecureParametersError


def _n14(**changes) -> ParametersLiteral:
    return dataclasses.replace(load_literal("n14-128"), **changes)


def test_the_shipped_128_bit_profile_keeps_its_label():
    assert Parameters.from_literal(_n14()).security_bits == 128
    assert Parameters.from_literal(_n14(sigma=3.2)).security_bits == 128
    assert Parameters.from_literal(_n14(sigma=8.0)).security_bits == 128  # wider error: harder, still 128


@pytest.mark.parametrize("sigma", [0.01, 1.0, 3.0])
def test_a_narrow_error_is_not_128_bit(sigma):
    with pytest.raises(InsecureParametersError, match="sigma"):
        Parameters.from_literal(_n14(sigma=sigma))
    params = Parameters.from_literal(_n14(sigma=sigma), allow_insecure=True)
    assert params.security_bits == 0 and params.describe()["security_bits"] == 0
    assert sigma < MIN_SIGMA_128
