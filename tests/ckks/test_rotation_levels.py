"""Bootstrapping's rotation keys truncated to the levels they are used at (``rotation_levels``).

CoeffsToSlots' first group rotates at the top level and its later groups one or two levels lower; SlotsToCoeffs
rotates by the same steps near the bottom. A key made for levels up to l (``SwitchingKey.max_level``) has the
digits and limbs of level l only, and switching a ciphertext above l is a LevelError. So the test that the
levels are right is to bootstrap with keys truncated to each circuit's own levels (complex, real and refined,
sparse, sparse at n' = N/4 where s and s - N/2 are one Galois element), recording the level of every switch with a
truncated key: the highest must equal the key's level (not above it, which would fail; not below, which would
waste key material), and one key truncated a level lower is refused.
"""

import numpy as np
import pytest

from fhectl.ckks.bootstrap import BootstrapConfig, Bootstrapper, required_steps, rotation_levels, transform_levels
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator, SwitchingKey, rotation_galois_elements
from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import LevelError
from fhectl.io.objects import evaluation_key_bytes

BITS = 16.0  # one bootstrapping's bound in tests/ckks/test_bootstrap.py (measured 18.4 there)
SPARSE_BITS = 16.0  # n' = 64 there
GIB = 2.0**30


pytestmark = pytest.mark.usefixtures("single_numba_thread")  # tests/conftest.py: N = 2^10 kernels want one thread


def configs(params) -> dict[str, BootstrapConfig]:
    return {"complex": BootstrapConfig.default(params),
            "real, refined": BootstrapConfig.default(params, real=True, refine_bits=8),
            "sparse": BootstrapConfig.default(params, slots=64),
            "sparse, N/4": BootstrapConfig.default(params, slots=params.slots // 2)}


class Kit:
    def __init__(self, max_levels: dict[int, int], seed: str = "tests/rotation-levels"):
        self.params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
        self.ctx = CKKSContext(self.params)
        kg = KeyGenerator(self.ctx, SeededRandom(seed))
        sk = kg.secret_key()
        self.gk = kg.galois_keys(sk, sorted(max_levels), conjugation=True, max_levels=max_levels)
        self.ev = Evaluator(self.ctx, kg.relin_key(sk), self.gk)
        self.enc = Encryptor(self.ctx, kg.public_key(sk), random=SeededRandom(seed + "/enc"))
        self.dec = Decryptor(self.ctx, sk)
        self.rng = np.random.default_rng(20261202)

    def bootstrap_bits(self, config: BootstrapConfig, real: bool = False) -> float:
        boot = Bootstrapper(self.ctx, self.ev, config)
        n = boot.n
        x = self.rng.uniform(-1, 1, n) + (0 if real else 1j * self.rng.uniform(-1, 1, n))
        ct = self.ev.drop_level(self.enc.encrypt(np.tile(x, self.params.slots // n)), 0)
        out = boot.bootstrap(ct)
        got = self.dec.decrypt(out)[:n]
        return precision_bits(got.real if real else got, x)


def test_levels_cover_every_step_and_follow_the_transforms():
    params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
    for name, config in configs(params).items():
        levels = rotation_levels(params, config)
        assert set(levels) == set(required_steps(params, config)), name
        cts_at, stc_at = transform_levels(params, config)
        assert cts_at[0] == params.max_level and len(cts_at) == config.cts_levels
        assert cts_at[-1] - 1 == params.max_level - config.cts_depth()  # the last group's output feeds EvalMod
        assert stc_at[-1] - 1 == params.max_level - config.single_depth()  # the last group's output is the pass's
        assert max(levels.values()) == params.max_level and min(levels.values()) < params.max_level, name


@pytest.mark.parametrize("name", ["complex", "real, refined", "sparse", "sparse, N/4"])
def test_bootstrapping_runs_on_keys_truncated_to_its_levels_and_reaches_each(name, monkeypatch):
    params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
    config = configs(params)[name]
    kit = Kit(rotation_levels(params, config), seed=f"tests/rotation-levels/{name}")
    truncated = {k.source: k.max_level for k in kit.gk.keys.values() if k.max_level is not None}
    assert truncated
    reached: dict[str, int] = {}
    key_rows = SwitchingKey.key_rows

    def spy(key, q_rows, p_rows):  # called for every switch with a truncated key, at the ciphertext's level
        reached[key.source] = max(reached.get(key.source, -1), len(q_rows) - 1)
        return key_rows(key, q_rows, p_rows)

    monkeypatch.setattr(SwitchingKey, "key_rows", spy)
    bound = SPARSE_BITS if config.slots else BITS
    assert kit.bootstrap_bits(config, real=config.real) > bound
    assert {s: reached.get(s) for s in truncated} == truncated
    # the key files' size counts the keys as they were made: s and s - N/2 (one element) at the higher level
    steps = required_steps(params, config)
    n = params.ring_degree
    step_of = {rotation_galois_elements([s], n)[0]: s for s in steps if s % params.slots}
    made = {step_of[int(source.split(":")[1])]: lvl for source, lvl in truncated.items()}
    assert (evaluation_key_bytes(params, steps, conjugation=True, max_levels=rotation_levels(params, config))
            == evaluation_key_bytes(params, steps, conjugation=True, max_levels=made))


def test_a_key_truncated_one_level_lower_is_refused():
    """The levels are tight: the key of a step CoeffsToSlots' second group rotates by, one level lower, fails."""
    params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
    config = configs(params)["complex"]
    levels = rotation_levels(params, config)
    second = transform_levels(params, config)[0][1]
    step = next(s for s, lvl in levels.items() if lvl == second)
    short = Kit({**levels, step: second - 1}, seed="tests/rotation-levels/short")
    with pytest.raises(LevelError, match="covers levels up to"):
        short.bootstrap_bits(config)


def test_the_128_bit_bootstrapping_keys_fit_in_4_gib():
    """At boot-n16-128 (no keys are made: sizes from the parameters): with the default split, truncating the 36
    keys of CoeffsToSlots' later groups brings the stored keys (b and the seed of a) under 4 GiB; full, they are
    4.7 GiB (report 2026-12-01_9c9bfb2c)."""
    params = load_parameters("boot-n16-128")
    config = BootstrapConfig.for_params(params)
    steps = required_steps(params, config)
    levels = rotation_levels(params, config)
    top = params.max_level
    assert sorted({lvl for lvl in levels.values()}) == [top - 3, top - 2, top]
    full = evaluation_key_bytes(params, steps, conjugation=True)["total"]
    truncated = evaluation_key_bytes(params, steps, conjugation=True, max_levels=levels)["total"]
    assert full > 4.5 * GIB and truncated < 4.0 * GIB
