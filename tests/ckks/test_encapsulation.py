"""Sparse-secret encapsulation (fhectl.ckks.encapsulation) and the bootstrapping that uses it, at the insecure
N = 2^10 profile tiny-bootstrap-insecure.

Measured with the seeds here (Delta = 2^52): one encapsulated pass (budgets 2 and 2) 20.3 to 20.7 bits, the
refined bootstrapping (two passes, refine_bits = 12) 32.9 to 33.2 bits with 6 levels left, against 18.5 bits
and 5 levels for the dense-secret circuit on the same chain; each bound below leaves 2 to 3 bits of margin.
"""

import numpy as np
import pytest

from fhectl.ckks import encapsulation, sampling
from fhectl.ckks.bootstrap import BootstrapConfig, Bootstrapper, mod_raise, required_steps
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import KeyMismatchError, LevelError, MissingKeyError

ONCE_BITS = 18.0  # measured 20.3 to 20.7
REFINED_BITS = 30.0  # measured 32.9 to 33.2
ROUNDS = 5
REPEATED_BITS = 28.0


class Kit:
    def __init__(self):
        self.params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
        self.ctx = CKKSContext(self.params)
        kg = KeyGenerator(self.ctx, SeededRandom("tests/encapsulation"))
        self.sk = kg.secret_key()
        self.keys = encapsulation.generate(kg, self.sk)
        self.config = BootstrapConfig.encapsulated(cts_levels=2, stc_levels=2)
        gk = kg.galois_keys(self.sk, required_steps(self.params, self.config), conjugation=True)
        self.ev = Evaluator(self.ctx, kg.relin_key(self.sk), gk)
        self.enc = Encryptor(self.ctx, kg.public_key(self.sk), SeededRandom("tests/encapsulation/enc"))
        self.dec = Decryptor(self.ctx, self.sk)
        self.boot = Bootstrapper(self.ctx, self.ev, self.config, encapsulation=self.keys)
        self.rng = np.random.default_rng(31)

    def slots(self) -> np.ndarray:
        n = self.params.slots
        return self.rng.uniform(-1, 1, n) + 1j * self.rng.uniform(-1, 1, n)


pytestmark = pytest.mark.usefixtures("single_numba_thread")


@pytest.fixture(scope="module")
def kit(single_numba_thread):
    return Kit()


def test_sparse_ternary_has_exactly_the_weight():
    src = SeededRandom("tests/sparse")
    for weight in (1, 32, 1024):
        s = sampling.sparse_ternary(src, 1024, weight)
        assert s.dtype == np.int64 and np.count_nonzero(s) == weight and set(np.unique(s)) <= {-1, 0, 1}
    draws = np.stack([sampling.sparse_ternary(src, 64, 8) for _ in range(2000)])
    hits = np.count_nonzero(draws, axis=0)  # each position non-zero with probability 1/8: 250 of 2000
    assert hits.min() > 180 and hits.max() < 330
    signs = draws[draws != 0]
    assert abs(np.mean(signs)) < 0.05
    with pytest.raises(ValueError):
        sampling.sparse_ternary(src, 16, 0)


def test_switch_to_the_sparse_secret_keeps_the_message_and_bounds_the_lift(kit):
    """After the switch at level 0, ModRaise gives t + q0 I with |I| <= (h + 1) / 2 (under s', not s), and the
    switch back at the top decrypts under s to the same t + q0 I up to the switch's small error."""
    x = kit.slots()
    ct = kit.ev.drop_level(kit.enc.encrypt(x), 0)
    want = kit.dec.decrypt_coefficients(ct)
    sparse = encapsulation.to_sparse(kit.ctx, ct, kit.keys)
    raised = encapsulation.to_dense(kit.ctx, mod_raise(kit.ctx, sparse), kit.keys)
    big = kit.dec.decrypt_coefficients(raised)
    lift = (big - want) / kit.params.moduli_q[0]
    assert np.max(np.abs(lift - np.round(lift))) < 2.0**-30  # t kept: the switches' error is << Delta
    assert np.max(np.abs(np.round(lift))) <= (kit.keys.weight + 1) / 2


def test_encapsulated_bootstrapping_and_its_refinement(kit):
    """One pass keeps about 20 bits; the second pass on the first one's error (Meta-BTS) about 12 more, for one
    level; both return the input's scale and key."""
    x = kit.slots()
    ct = kit.ev.drop_level(kit.enc.encrypt(x), 0)
    once = kit.boot.bootstrap_once(ct)
    out = kit.boot.bootstrap(ct)
    assert once.level == kit.params.max_level - kit.config.single_depth()
    assert out.level == kit.params.max_level - kit.config.depth() == kit.boot.output_level == once.level - 1
    assert out.key_id == kit.sk.key_id and out.scale == ct.scale == once.scale
    once_bits, refined_bits = precision_bits(kit.dec.decrypt(once), x), precision_bits(kit.dec.decrypt(out), x)
    assert once_bits > ONCE_BITS and refined_bits > REFINED_BITS and refined_bits > once_bits + 10


def test_repeated_encapsulated_bootstrapping(kit):
    x = kit.slots()
    ct = kit.enc.encrypt(x)
    for _ in range(ROUNDS):
        ct = kit.boot.bootstrap(ct)
        assert precision_bits(kit.dec.decrypt(ct), x) > REPEATED_BITS


def test_keys_and_levels_are_checked(kit):
    with pytest.raises(LevelError):
        encapsulation.to_sparse(kit.ctx, kit.enc.encrypt(kit.slots()), kit.keys)  # not at level 0
    other = KeyGenerator(kit.ctx, SeededRandom("tests/encapsulation/other")).secret_key()
    foreign = Encryptor(kit.ctx, KeyGenerator(kit.ctx, SeededRandom("o")).public_key(other)).encrypt(kit.slots())
    with pytest.raises(KeyMismatchError):
        encapsulation.to_sparse(kit.ctx, kit.ev.drop_level(foreign, 0), kit.keys)
    with pytest.raises(MissingKeyError):
        Bootstrapper(kit.ctx, kit.ev, kit.config)  # encapsulated circuit without its keys
    with pytest.raises(MissingKeyError):
        Bootstrapper(kit.ctx, kit.ev, BootstrapConfig.default(kit.params), encapsulation=kit.keys)


def test_bootstrappable_profile_lines_the_stages_up_with_its_primes():
    """boot-n16-128 is 128-bit, keeps 9 levels at Delta for circuits and sets aside exactly the levels of the
    encapsulated circuit, EvalMod's and CoeffsToSlots' on primes larger than Delta."""
    p = load_parameters("boot-n16-128")
    config = BootstrapConfig.for_params(p)
    assert p.security_bits == 128 and p.log_qp <= 1772
    assert p.message_levels == 9 and config.depth() == p.bootstrap_levels
    top = p.moduli_q[p.max_level - config.cts_depth() - config.eval_mod_depth() + 1:]
    assert min(q.bit_length() for q in top) > p.literal.scale_bits + 10


def test_a_ring_too_large_for_the_dense_circuit_is_refused():
    """gpt2-n16-128 sets no primes aside: the dense secret's K ~ 400 is beyond the default EvalMod, which would
    bootstrap to garbage; the profile is refused, not bootstrapped."""
    from fhectl.errors import ParameterError

    with pytest.raises(ParameterError, match="cannot bootstrap"):
        BootstrapConfig.for_params(load_parameters("gpt2-n16-128"))
