"""Parameter profiles: derivation of the chain, the 128-bit check and clear refusals."""

import math

import pytest

from fhectl.ckks.params import MAX_LOG_QP_128, Parameters, ParametersLiteral, list_profiles, load_parameters
from fhectl.errors import InputError, InsecureParametersError, ParameterError


def test_shipped_profiles():
    assert {"tiny-insecure", "n14-128", "gpt2-n16-128"} <= set(list_profiles())
    for name, log_n, levels in [("n14-128", 14, 5), ("gpt2-n16-128", 16, 20)]:
        p = load_parameters(name)
        assert p.security_bits == 128 and p.ring_degree == 2**log_n and p.max_level == levels
        assert p.log_qp <= MAX_LOG_QP_128[log_n]
        # P exceeds every digit of Q
        for digit in p.digits(p.max_level):
            assert sum(math.log2(p.moduli_q[i]) for i in digit) <= sum(math.log2(x) for x in p.moduli_p)
        assert len(set(p.all_moduli)) == len(p.all_moduli)
        assert all(q % (2 * p.ring_degree) == 1 for q in p.all_moduli)


def test_insecure_profile_needs_opt_in():
    with pytest.raises(InsecureParametersError, match="--insecure"):
        load_parameters("tiny-insecure")
    assert load_parameters("tiny-insecure", allow_insecure=True).security_bits == 0


def test_too_large_modulus_is_refused_with_the_numbers():
    lit = ParametersLiteral(log_n=14, scale_bits=50, first_mod_bits=60, levels=10, dnum=3, name="big")
    with pytest.raises(InsecureParametersError, match=r"exceeds 438 bits"):
        Parameters.from_literal(lit)
    assert Parameters.from_literal(lit, allow_insecure=True).security_bits == 0


def test_parameter_id_changes_with_the_chain():
    a = Parameters.from_literal(ParametersLiteral(log_n=10, scale_bits=30, first_mod_bits=40, levels=2, dnum=1, security="none"), True)
    b = Parameters.from_literal(ParametersLiteral(log_n=10, scale_bits=30, first_mod_bits=40, levels=3, dnum=1, security="none"), True)
    c = Parameters.from_literal(ParametersLiteral(log_n=10, scale_bits=30, first_mod_bits=40, levels=2, dnum=1, security="none"), True)
    assert a.params_id != b.params_id and a.params_id == c.params_id


@pytest.mark.parametrize(
    "fields,match",
    [
        (dict(log_n=1), "log_n"),
        (dict(scale_bits=70), "scale_bits"),
        (dict(first_mod_bits=30, scale_bits=40), "first_mod_bits"),
        (dict(dnum=0), "dnum"),
        (dict(secret="gaussian"), "secret"),
        (dict(security="80"), "security"),
    ],
)
def test_invalid_literals_name_the_field(fields, match):
    base = dict(log_n=10, scale_bits=40, first_mod_bits=50, levels=3, dnum=2, security="none")
    base.update(fields)
    with pytest.raises(ParameterError, match=match):
        Parameters.from_literal(ParametersLiteral(**base), allow_insecure=True)


def test_profile_files_are_validated(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("log_n: 10\nscale_bits: 40\nfirst_mod_bits: 50\nlevels: 3\ndnum: 2\nsurprise: 1\n")
    with pytest.raises(ParameterError, match="surprise"):
        load_parameters(str(bad), allow_insecure=True)
    bad.write_text("log_n: ten\n")
    with pytest.raises(ParameterError):
        load_parameters(str(bad))
    bad.write_text(": : :\n")
    with pytest.raises(InputError):
        load_parameters(str(bad))
    with pytest.raises(InputError, match="known profiles"):
        load_parameters("no-such-profile")


def test_bootstrap_primes_are_validated_and_counted():
    """bootstrap_mod_bits adds primes above the scaling primes, in the listed order, checked like the others and
    counted in log2 QP; a malformed list is one ParameterError."""
    base = {"log_n": 10, "scale_bits": 40, "first_mod_bits": 50, "levels": 2, "dnum": 2, "security": "none"}
    p = Parameters.from_literal(ParametersLiteral.from_mapping({**base, "bootstrap_mod_bits": [45, 58, 58]}),
                                allow_insecure=True)
    assert p.max_level == 5 and p.bootstrap_levels == 3 and p.message_levels == 2
    assert all(abs(math.log2(q) - b) < 1 for q, b in zip(p.moduli_q[-3:], (45, 58, 58)))  # near 2^bits
    for bad in ("58", [58, "x"], [True], [70]):
        with pytest.raises(ParameterError):
            Parameters.from_literal(ParametersLiteral.from_mapping({**base, "bootstrap_mod_bits": bad}),
                                    allow_insecure=True)
