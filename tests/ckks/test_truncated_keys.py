"""Switching keys truncated to the levels they are used at (``SwitchingKey.max_level``): the limbs of Q_l and
P and the digits of level l only. The reference is the full key restricted to those limbs and digits: a
rotation with it must be bit-identical to one with the full key, since key switching at level l reads nothing
else. A key generated truncated is a fresh key of that shape: its rotations decrypt as precisely as a full
key's."""

import numpy as np
import pytest

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import GaloisKeys, KeyGenerator, SwitchingKey
from fhectl.ckks.params import load_parameters
from fhectl.ckks.precision import precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import LevelError
from fhe_kernels.automorphism import galois_element_for_rotation

STEP = 3
LEVEL = 2  # the truncation level: tiny-deep-insecure has more levels and several digits above it


@pytest.fixture(scope="module")
def kit():
    params = load_parameters("tiny-deep-insecure", allow_insecure=True)
    assert params.max_level > LEVEL + 2 and len(params.digits(params.max_level)) > len(params.digits(LEVEL))
    ctx = CKKSContext(params)
    kg = KeyGenerator(ctx, SeededRandom("tests/truncated-keys"))
    sk = kg.secret_key()
    enc, dec = Encryptor(ctx, kg.public_key(sk), random=SeededRandom("tests/truncated-keys/enc")), Decryptor(ctx, sk)
    full = kg.galois_keys(sk, [STEP])
    return params, ctx, kg, sk, enc, dec, full


def restricted(ctx, key: SwitchingKey, level: int) -> SwitchingKey:
    """The full key's limbs of Q_level and P and its digits of that level: the slow, obvious truncation."""
    p = ctx.params
    host = np.asarray(ctx.backend.to_host(key.data))
    rows = list(range(level + 1)) + list(range(p.max_level + 1, p.max_level + 1 + len(p.moduli_p)))
    part = np.ascontiguousarray(host[: len(p.digits(level))][:, :, rows])
    return SwitchingKey(ctx.backend.to_device(part), key.params_id, key.key_id, key.source, max_level=level)


def _message(params, seed: int = 5):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, params.slots) + 1j * rng.uniform(-1, 1, params.slots)


def test_restricted_full_key_rotates_bit_identically(kit):
    params, ctx, kg, sk, enc, dec, full = kit
    g = galois_element_for_rotation(STEP, params.ring_degree)
    short = GaloisKeys({g: restricted(ctx, full.keys[g], LEVEL)}, full.params_id, full.key_id)
    ct = enc.encrypt(_message(params), level=LEVEL)
    for level in (LEVEL, LEVEL - 1):  # at the key's level and below it
        c = Evaluator(ctx).drop_level(ct, level)
        a = Evaluator(ctx, galois_keys=full).rotate(c, STEP)
        b = Evaluator(ctx, galois_keys=short).rotate(c, STEP)
        assert np.array_equal(np.asarray(ctx.backend.to_host(a.data)), np.asarray(ctx.backend.to_host(b.data)))
        a = Evaluator(ctx, galois_keys=full).rotate_hoisted(c, [STEP])[STEP]
        b = Evaluator(ctx, galois_keys=short).rotate_hoisted(c, [STEP])[STEP]
        assert np.array_equal(np.asarray(ctx.backend.to_host(a.data)), np.asarray(ctx.backend.to_host(b.data)))


def test_generated_truncated_key_has_the_levels_shape_and_rotates(kit):
    params, ctx, kg, sk, enc, dec, full = kit
    gk = kg.galois_keys(sk, [STEP, 1], max_levels={STEP: LEVEL})
    g, g1 = (galois_element_for_rotation(s, params.ring_degree) for s in (STEP, 1))
    key = gk.keys[g]
    k = len(params.moduli_p)
    assert key.max_level == LEVEL and key.seed is not None  # seeded like a full key: files store b and the seed
    assert key.shape == (len(params.digits(LEVEL)), 2, LEVEL + 1 + k, params.ring_degree)
    assert gk.keys[g1].max_level is None and gk.keys[g1].seed is not None  # steps not listed: full keys
    x = _message(params)
    ct = enc.encrypt(x, level=LEVEL)
    ours = dec.decrypt(Evaluator(ctx, galois_keys=gk).rotate(ct, STEP))
    theirs = dec.decrypt(Evaluator(ctx, galois_keys=full).rotate(ct, STEP))
    want = np.roll(x, -STEP)
    assert precision_bits(ours, want) > precision_bits(theirs, want) - 1.0


def test_a_truncated_key_refuses_higher_levels(kit, tmp_path):
    """(Its file format, max_level in the container meta, is tested in tests/io/test_io_truncated_keys.py.)"""
    params, ctx, kg, sk, enc, dec, full = kit
    gk = kg.galois_keys(sk, [STEP], max_levels={STEP: LEVEL})
    ct = enc.encrypt(_message(params), level=LEVEL + 1)
    with pytest.raises(LevelError, match=f"covers levels up to {LEVEL}"):
        Evaluator(ctx, galois_keys=gk).rotate(ct, STEP)
    with pytest.raises(LevelError):
        kg.galois_key(sk, 5, max_level=params.max_level + 1)
