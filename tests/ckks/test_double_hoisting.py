"""Double hoisting in the bootstrapping transforms (``DiagonalTransform``, ``Evaluator.rotate_hoisted_extended``)
and the baby-step split that goes with it, on the insecure N = 2^10 profile tiny-bootstrap-insecure.

The slow, obvious reference for a transform is one plain rotation per diagonal: sum_k diag_k * rot_k(ct).
"""

import numpy as np
import pytest

from fhectl.ckks import keyswitch
from fhectl.ckks.bootstrap import (
    ROTATION_KEY_CHOICES,
    BootstrapConfig,
    Bootstrapper,
    DiagonalTransform,
    linear_transforms,
    required_steps,
)
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import ParameterError

# Diagonals spread so that every split has several baby and giant steps, step 0 among both.
OFFSETS = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, -1, -7, -40, 100, -256)


pytestmark = pytest.mark.usefixtures("single_numba_thread")  # tests/conftest.py: N = 2^10 kernels want one thread


class Kit:
    def __init__(self):
        self.params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
        self.ctx = CKKSContext(self.params)
        kg = KeyGenerator(self.ctx, SeededRandom("tests/double-hoisting"))
        sk = kg.secret_key()
        n = self.params.slots
        steps = {k % n for k in OFFSETS} | {k for m in ROTATION_KEY_CHOICES for t in self.transforms(m) for k in
                                            t.rotation_steps()}
        steps |= {(k - k % b) % n for b in (4,) for k in OFFSETS} | {k % 4 for k in OFFSETS}
        config = BootstrapConfig.default(self.params, rotation_keys="fewest")
        steps |= set(required_steps(self.params, config))
        steps |= set(required_steps(self.params, BootstrapConfig.default(self.params)))
        self.ev = Evaluator(self.ctx, kg.relin_key(sk), kg.galois_keys(sk, sorted(steps - {0}), conjugation=True))
        self.enc = Encryptor(self.ctx, kg.public_key(sk), random=SeededRandom("tests/double-hoisting/enc"))
        self.dec = Decryptor(self.ctx, sk)
        self.rng = np.random.default_rng(20261201)

    def transforms(self, rotation_keys: str) -> list[DiagonalTransform]:
        n = self.params.slots
        rng = np.random.default_rng(7)
        diagonals = {k % n: rng.uniform(-1, 1, n) + 1j * rng.uniform(-1, 1, n) for k in OFFSETS}
        return [DiagonalTransform(diagonals, n, rotation_keys=rotation_keys)]

    def slots(self) -> np.ndarray:
        n = self.params.slots
        return self.rng.uniform(-1, 1, n) + 1j * self.rng.uniform(-1, 1, n)


@pytest.fixture(scope="module")
def kit(single_numba_thread):
    return Kit()


def test_extended_rotations_are_the_hoisted_ones_before_their_moddown(kit):
    """c0 + ModDown(ks) is, bit for bit, what rotate_hoisted returns; step 0 is the ciphertext itself."""
    ct = kit.enc.encrypt(kit.slots())
    steps = [0, 1, 5, -7]
    plain = kit.ev.rotate_hoisted(ct, steps)
    extended = kit.ev.rotate_hoisted_extended(ct, steps)
    be = kit.ctx.backend
    rows = kit.ctx.q_rows(ct.level)
    assert extended[0][1] is None and np.array_equal(extended[0][0], ct.data)
    for step in steps[1:]:
        c0, ks = extended[step]
        assert ks.shape == (2, ct.level + 1 + len(kit.params.moduli_p), kit.params.ring_degree)
        got = keyswitch.mod_down(kit.ctx, ks, ct.level)
        be.add(be.polys(got, 0, 1), c0, be.polys(got, 0, 1), rows)
        assert np.array_equal(got, plain[step].data), step


def test_encode_extended_is_encode_over_more_primes(kit):
    x = kit.slots()
    level, scale = 5, 2.0**45
    pt = kit.ev.encoder.encode(x, level=level, scale=scale)
    ext = kit.ev.encoder.encode_extended(x, level, scale)
    assert ext.shape == (1, level + 1 + len(kit.params.moduli_p), kit.params.ring_degree)
    assert np.array_equal(ext[:, :level + 1], pt.data)


def _split_at(t: DiagonalTransform, b: int) -> DiagonalTransform:
    """t with the baby step b forced (many giant steps: each a ModDown and a key switch)."""
    t.baby, t.babies, t.giants = b, sorted({k % b for k in t.diagonals}), sorted({k - k % b for k in t.diagonals})
    return t


@pytest.mark.parametrize("split", ROTATION_KEY_CHOICES + ("b=4",))
def test_transform_matches_one_rotation_per_diagonal(kit, split):
    """The double-hoisted product against the obvious one (a rotation and a plaintext product per diagonal,
    rescaled once) and against the float model, on the same ciphertext."""
    (t,) = kit.transforms("fast") if split == "b=4" else kit.transforms(split)
    if split == "b=4":
        t = _split_at(t, 4)
        assert len(t.giants) > 5
    assert len(t.babies) >= 2 and len(t.giants) >= 2  # baby and giant rotations, step 0 among both
    x = kit.slots()
    ct = kit.enc.encrypt(x)
    out = t.evaluate(kit.ev, ct, kit.params.scale)
    scale = kit.params.moduli_q[ct.level]
    reference = None
    for k, diag in t.diagonals.items():
        term = kit.ev.mul(kit.ev.rotate(ct, k), kit.ev.encoder.encode(diag, level=ct.level, scale=scale))
        reference = term if reference is None else kit.ev.add(reference, term)
    reference = kit.ev.rescale(reference)
    want = t.eval_plain(x)
    got, ref = kit.dec.decrypt(out), kit.dec.decrypt(reference)
    assert out.level == reference.level == ct.level - 1 and out.scale == kit.params.scale
    # the float model's values reach ~15 in size: 2^-30 absolute is about the encryption's own error
    assert precision_bits(got, want) > 30
    assert precision_bits(got, want) > precision_bits(ref, want) - 1  # no worse than the reference


def test_the_fast_split_trades_keys_for_key_switches():
    """At boot-n16-128 (no keys are made: the split alone): "fewest" takes the fewest rotations in each group,
    39 keys in all; "fast" 47, and fewer giant steps, each a whole key switch."""
    params = load_parameters("boot-n16-128")
    counts, giants = {}, {}
    for mode in ROTATION_KEY_CHOICES:
        config = BootstrapConfig.encapsulated(rotation_keys=mode)
        cts, stc = linear_transforms(params, config)
        counts[mode] = len(required_steps(params, config))
        giants[mode] = sum(len(t.giants) for t in cts + stc)
        if mode == "fewest":
            for t in cts + stc:
                least = min(len({k % b for k in t.diagonals}) + len({k - k % b for k in t.diagonals})
                            for b in (2**i for i in range(16)))
                assert len(t.babies) + len(t.giants) == least
    assert counts == {"fast": 47, "fewest": 39}
    assert giants["fast"] < giants["fewest"]


def test_an_unknown_split_is_refused():
    with pytest.raises(ParameterError, match="rotation_keys"):
        BootstrapConfig(k=17, rotation_keys="cheapest")


def test_bootstrapping_with_the_fewest_keys(kit):
    """The other split bootstraps as well (same bound as tests/ckks/test_bootstrap.py's one pass)."""
    config = BootstrapConfig.default(kit.params, rotation_keys="fewest")
    boot = Bootstrapper(kit.ctx, kit.ev, config)
    x = kit.slots()
    out = boot.bootstrap(kit.ev.drop_level(kit.enc.encrypt(x), 0))
    assert precision_bits(kit.dec.decrypt(out), x) > 16.0
