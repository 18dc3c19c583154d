"""CKKS operations end to end on the insecure test profile: precision in bits against
float64 with bounds derived from the parameters, homomorphic identities, and misuse errors."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encoder import Encoder
from fhectl.ckks.encryptor import Decryptor, Encryptor
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import Parameters, ParametersLiteral
from fhectl.ckks.precision import fresh_precision_bits, precision_bits
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import (
    InputError,
    KeyMismatchError,
    LevelError,
    MissingKeyError,
    ParameterMismatchError,
    ScaleMismatchError,
)

# Bits an operation may lose against a fresh encryption, each with its reason:
#  add: two independent errors add (sqrt 2 in std, < 1 bit worst case);
#  mul + rescale: |x| e_y + |y| e_x with |x|, |y| <= sqrt 2 (complex in the unit
#    square), plus the rescale rounding, far below the fresh error: < 2 bits;
#  rotation: the key-switching error after ModDown is about sqrt(N) times the
#    rounding of the P-division, comparable to a fresh error: < 2 bits.
LOSS_ADD, LOSS_MUL, LOSS_ROT = 1.0, 2.0, 2.0


def test_fresh_encryption_meets_the_predicted_precision(kit):
    x = kit.random_slots()
    bits = precision_bits(kit.decryptor.decrypt(kit.encryptor.encrypt(x)), x)
    assert bits >= fresh_precision_bits(kit.params)
    # and it is not vacuous: the error is there (a bug that zeroes noise would be suspicious)
    assert bits < fresh_precision_bits(kit.params) + 8


def test_secret_key_encryption(kit):
    x = kit.random_slots()
    enc = Encryptor(kit.ctx, kit.sk, random=SeededRandom("test/sk-enc"))
    assert precision_bits(kit.decryptor.decrypt(enc.encrypt(x)), x) >= fresh_precision_bits(kit.params)


def test_each_operation_precision(kit):
    ev, enc, dec = kit.evaluator, kit.encryptor, kit.decryptor
    fresh = fresh_precision_bits(kit.params)
    x, y = kit.random_slots(), kit.random_slots()
    cx, cy = enc.encrypt(x), enc.encrypt(y)
    checks = {
        "add": (ev.add(cx, cy), x + y, LOSS_ADD),
        "sub": (ev.sub(cx, cy), x - y, LOSS_ADD),
        "neg": (ev.neg(cx), -x, 0.0),
        "add_plain": (ev.add(cx, kit.encryptor.encoder.encode(y)), x + y, LOSS_ADD),
        "add_const": (ev.add(cx, 0.75), x + 0.75, LOSS_ADD),
        "sub_const": (ev.sub(cx, -1.25), x + 1.25, LOSS_ADD),
        "mul_rescale": (ev.rescale(ev.mul(cx, cy)), x * y, LOSS_MUL),
        "mul_plain_rescale": (ev.rescale(ev.mul(cx, kit.encryptor.encoder.encode(y))), x * y, LOSS_MUL),
        "mul_const_rescale": (ev.rescale(ev.mul(cx, -0.3)), -0.3 * x, LOSS_MUL),
        "mul_int": (ev.mul_int(cx, 3), 3 * x, 2.0),
        "square": (ev.rescale(ev.square(cx)), x * x, LOSS_MUL),
        "rotate_1": (ev.rotate(cx, 1), np.roll(x, -1), LOSS_ROT),
        "rotate_-1": (ev.rotate(cx, -1), np.roll(x, 1), LOSS_ROT),
        "rotate_16": (ev.rotate(cx, 16), np.roll(x, -16), LOSS_ROT),
        "conjugate": (ev.conjugate(cx), np.conj(x), LOSS_ROT),
    }
    for name, (ct, want, loss) in checks.items():
        got = kit.decryptor.decrypt(ct)
        assert precision_bits(got, want) >= fresh - loss, name


def test_mul_without_rescale_and_three_part_decryption(kit):
    ev = kit.evaluator
    x, y = kit.random_slots(), kit.random_slots()
    cx, cy = kit.encryptor.encrypt(x), kit.encryptor.encrypt(y)
    raw = ev.mul(cx, cy, relinearize=False)
    assert raw.size == 3 and raw.scale == pytest.approx(cx.scale * cy.scale)
    assert precision_bits(kit.decryptor.decrypt(raw), x * y) >= fresh_precision_bits(kit.params) - LOSS_MUL
    assert precision_bits(kit.decryptor.decrypt(ev.relinearize(raw)), x * y) >= fresh_precision_bits(kit.params) - LOSS_MUL


def test_hoisted_rotations_equal_single_rotations(kit):
    ev = kit.evaluator
    x = kit.random_slots()
    cx = kit.encryptor.encrypt(x)
    steps = [0, 1, 2, 3, 5, 7, -1]
    hoisted = ev.rotate_hoisted(cx, steps)
    for s in steps:
        got = kit.decryptor.decrypt(hoisted[s])
        assert precision_bits(got, np.roll(x, -s)) >= fresh_precision_bits(kit.params) - LOSS_ROT
        single = kit.decryptor.decrypt(ev.rotate(cx, s))
        assert precision_bits(got, single) >= fresh_precision_bits(kit.params) - LOSS_ROT


def test_multiplication_chain_down_the_whole_modulus_chain(kit):
    ev = kit.evaluator
    y = kit.random_slots(complex_values=False)
    cy = kit.encryptor.encrypt(y)
    acc, want = cy, y.copy()
    fresh = fresh_precision_bits(kit.params)
    for depth in range(1, kit.params.max_level + 1):
        acc = ev.rescale(ev.mul(acc, cy))
        want = want * y
        assert acc.level == kit.params.max_level - depth
        # each product adds at most the error of a fresh operand (|y| <= 1) and the rescale rounding
        bound = fresh - math.log2(depth + 1) - 1.0
        assert precision_bits(kit.decryptor.decrypt(acc), want) >= bound, depth
    with pytest.raises(LevelError, match="exhausted"):
        ev.rescale(acc)


def test_levels_are_aligned_and_dropped(kit):
    ev = kit.evaluator
    x, y = kit.random_slots(), kit.random_slots()
    cx, cy = kit.encryptor.encrypt(x), kit.encryptor.encrypt(y)
    low = ev.drop_level(cx, 2)
    assert low.level == 2 and low.scale == cx.scale
    s = ev.add(low, cy)
    assert s.level == 2
    assert precision_bits(kit.decryptor.decrypt(s), x + y) >= fresh_precision_bits(kit.params) - LOSS_ADD
    with pytest.raises(LevelError, match="bootstrapping"):
        ev.drop_level(low, 3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays(np.float64, st.integers(1, 512), elements=st.floats(-100, 100, allow_nan=False)))
def test_encode_decode_round_trip(kit, values):
    enc = Encoder(kit.ctx)
    pt = enc.encode(values)
    # decode a plaintext directly: NTT^-1 and CRT, no noise beyond rounding to integers
    be = kit.ctx.backend
    data = be.copy(pt.data)
    rows = kit.ctx.q_rows(pt.level)
    be.intt(data, rows)
    coeffs = be.rns_to_float(data[0, :2], rows[:2])
    got = enc.decode_coefficients(coeffs, pt.scale, len(values))
    # rounding each coefficient to an integer costs at most 1/2 per coefficient: N/2 / scale per slot
    assert np.max(np.abs(got - values)) <= kit.params.ring_degree / 2 / pt.scale


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(-3, 3), st.integers(-3, 3), st.floats(-2, 2, allow_nan=False))
def test_homomorphic_identities(kit, a, b, c):
    ev, dec = kit.evaluator, kit.decryptor
    x, y = kit.random_slots(), kit.random_slots()
    cx, cy = kit.encryptor.encrypt(x), kit.encryptor.encrypt(y)
    fresh = fresh_precision_bits(kit.params)
    # x + y = y + x, and (x + c) - c = x
    assert precision_bits(dec.decrypt(ev.add(cx, cy)), dec.decrypt(ev.add(cy, cx))) >= fresh - 1
    assert precision_bits(dec.decrypt(ev.sub(ev.add(cx, c), c)), x) >= fresh - 1
    # rot_a(rot_b(x)) = rot_{a+b}(x) whenever keys exist for a and b (keys: 1, 2, 3, -1, 5, 7, 16)
    avail = {1, 2, 3, -1, 5, 7, 16, 0}
    if a in avail and b in avail:
        composed = ev.rotate(ev.rotate(cx, a), b)
        assert precision_bits(dec.decrypt(composed), np.roll(x, -(a + b))) >= fresh - 2 * LOSS_ROT


def test_missing_galois_key_names_the_step(kit):
    cx = kit.encryptor.encrypt(kit.random_slots())
    with pytest.raises(MissingKeyError, match="rotation by 4"):
        kit.evaluator.rotate(cx, 4)
    with pytest.raises(MissingKeyError, match="rotation by 9"):
        kit.evaluator.rotate_hoisted(cx, [1, 9])


def test_missing_relinearization_key(kit):
    from fhectl.ckks.evaluator import Evaluator

    ev = Evaluator(kit.ctx)
    cx = kit.encryptor.encrypt(kit.random_slots())
    with pytest.raises(MissingKeyError, match="relinearization"):
        ev.mul(cx, cx)


def test_scale_mismatch_is_refused(kit):
    ev = kit.evaluator
    cx = kit.encryptor.encrypt(kit.random_slots())
    prod = ev.mul(cx, cx)  # scale Delta^2, not rescaled
    with pytest.raises(ScaleMismatchError, match="scales differ"):
        ev.add(prod, ev.drop_level(cx, prod.level))


def test_objects_from_other_parameters_or_keys_are_refused(kit):
    other_params = Parameters.from_literal(
        ParametersLiteral(log_n=10, scale_bits=40, first_mod_bits=50, levels=3, dnum=2, security="none"), True
    )
    other = CKKSContext(other_params)
    kg = KeyGenerator(other, SeededRandom("test/other"))
    sk = kg.secret_key()
    ct_other = Encryptor(other, kg.public_key(sk), random=SeededRandom("x")).encrypt([1.0])
    with pytest.raises(ParameterMismatchError, match=other_params.params_id):
        kit.evaluator.add(kit.encryptor.encrypt([1.0]), ct_other)
    with pytest.raises(ParameterMismatchError):
        kit.decryptor.decrypt(ct_other)
    # same parameters, another key
    kg2 = KeyGenerator(kit.ctx, SeededRandom("test/second-key"))
    sk2 = kg2.secret_key()
    ct2 = Encryptor(kit.ctx, kg2.public_key(sk2), random=SeededRandom("y")).encrypt([1.0])
    with pytest.raises(KeyMismatchError):
        kit.decryptor.decrypt(ct2)
    with pytest.raises(KeyMismatchError):
        kit.evaluator.add(kit.encryptor.encrypt([1.0]), ct2)


def test_rekeying_without_decryption(kit):
    kg2 = KeyGenerator(kit.ctx, SeededRandom("test/rekey-new"))
    new_sk = kg2.secret_key()
    swk = kit.keygen.rekey(kit.sk, new_sk)
    x = kit.random_slots()
    ct = kit.encryptor.encrypt(x)
    moved = kit.evaluator.key_switch(ct, swk, new_sk.key_id)
    assert moved.key_id == new_sk.key_id
    got = Decryptor(kit.ctx, new_sk).decrypt(moved)
    assert precision_bits(got, x) >= fresh_precision_bits(kit.params) - LOSS_ROT
    with pytest.raises(KeyMismatchError):
        kit.evaluator.key_switch(moved, swk, new_sk.key_id)


def test_bad_inputs(kit):
    enc = kit.encryptor
    with pytest.raises(InputError, match="do not fit"):
        enc.encrypt(np.zeros(kit.params.slots + 1))
    with pytest.raises(InputError, match="NaN"):
        enc.encrypt([1.0, float("nan")])
    with pytest.raises(InputError, match="1-D"):
        enc.encrypt(np.zeros((2, 2)))
    with pytest.raises(InputError, match="overflow"):
        enc.encrypt([1e300], scale=2.0**40)
    with pytest.raises(LevelError):
        enc.encrypt([1.0], level=kit.params.max_level + 1)


def test_secret_key_repr_hides_material(kit):
    assert "coeffs" not in repr(kit.sk) and kit.sk.key_id in repr(kit.sk)
