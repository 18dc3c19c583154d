"""The file format of keys truncated to the levels they are used at (``SwitchingKey.max_level``) and of
bootstrapping's encapsulation keys: what a bootstrapping server's key bundle holds.

A truncated key is stored like a full one (b and the seed of a) with the digits and limbs of its level, and
its level in the container meta; a reader checks the level's range and the arrays' shapes against it. Keys
read back must rotate bit for bit as the keys that were written; a wrong or tampered level is one FormatError.
"""

import dataclasses

import numpy as np
import pytest

from fhectl.ckks import encapsulation
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encryptor import Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator
from fhectl.ckks.params import load_parameters
from fhectl.ckks.sampling import SeededRandom
from fhectl.errors import FormatError
from fhectl.io.container import decode_container, encode_container
from fhectl.io.objects import (container_to_encapsulation_keys, container_to_galois_keys,
                               container_to_switching_key, encapsulation_keys_to_container, evaluation_key_bytes,
                               galois_keys_to_container, switching_key_to_container)
from fhe_kernels.automorphism import galois_element_for_rotation

STEPS = [1, 3, -2]
LEVELS = {3: 2, -2: 0}  # step 1 stays full


@pytest.fixture(scope="module")
def kit():
    params = load_parameters("tiny-deep-insecure", allow_insecure=True)
    ctx = CKKSContext(params)
    kg = KeyGenerator(ctx, SeededRandom("tests/io/truncated"))
    sk = kg.secret_key()
    gk = kg.galois_keys(sk, STEPS, conjugation=True, max_levels=LEVELS)
    enc = Encryptor(ctx, kg.public_key(sk), SeededRandom("tests/io/truncated/enc"))
    return params, ctx, kg, sk, gk, enc


def _host(ctx, x) -> np.ndarray:
    return np.asarray(ctx.backend.to_host(x))


def _roundtrip(c):
    return decode_container(encode_container(c))


@pytest.mark.parametrize("lazy", [False, True])
def test_truncated_galois_keys_round_trip_and_rotate_bit_identically(kit, lazy):
    params, ctx, kg, sk, gk, enc = kit
    n = params.ring_degree
    c = galois_keys_to_container(ctx, gk, 1)
    els = c.meta["elements"]
    assert c.meta["max_levels"] == [{galois_element_for_rotation(s, n): lvl for s, lvl in LEVELS.items()}.get(g)
                                    for g in els]
    back = container_to_galois_keys(ctx, _roundtrip(c), lazy=lazy)
    assert sorted(back.keys) == sorted(gk.keys)
    for g, key in gk.keys.items():
        assert back.keys[g].max_level == key.max_level and back.keys[g].shape == key.shape
        assert np.array_equal(_host(ctx, back.keys[g].data), _host(ctx, key.data))
    x = np.linspace(-1, 1, params.slots)
    for step, level in [(3, 2), (-2, 0), (1, params.max_level)]:
        ct = enc.encrypt(x, level=level)
        a, b = Evaluator(ctx, galois_keys=gk).rotate(ct, step), Evaluator(ctx, galois_keys=back).rotate(ct, step)
        assert np.array_equal(_host(ctx, a.data), _host(ctx, b.data))


def test_one_truncated_switching_key_round_trips(kit):
    params, ctx, kg, sk, gk, enc = kit
    key = kg.galois_key(sk, 5, max_level=1)
    c = switching_key_to_container(ctx, key, "switching-key", 1)
    assert c.meta["max_level"] == 1 and len(c.arrays) == len(params.digits(1))
    back = container_to_switching_key(ctx, _roundtrip(c), "switching-key", "key")
    assert back.max_level == 1 and np.array_equal(_host(ctx, back.data), _host(ctx, key.data))


def test_full_key_files_are_unchanged(kit):
    """Old files stay readable and new full-key files are written as before: no max_level in the meta."""
    params, ctx, kg, sk, gk, enc = kit
    full = kg.galois_keys(sk, [1])
    c = galois_keys_to_container(ctx, full, 1)
    assert "max_levels" not in c.meta
    assert "max_level" not in switching_key_to_container(ctx, kg.relin_key(sk), "relin-key", 1).meta
    (key,) = container_to_galois_keys(ctx, _roundtrip(c)).keys.values()
    assert key.max_level is None


@pytest.mark.parametrize("bad", [1, "top", -1, "2", None, True, 2.0])  # None: "a full key"
def test_a_wrong_max_level_is_one_format_error(kit, bad):
    params, ctx, kg, sk, gk, enc = kit
    c = galois_keys_to_container(ctx, gk, 1)
    levels = list(c.meta["max_levels"])
    i = levels.index(2)
    levels[i] = params.max_level if bad == "top" else bad
    forged = _roundtrip(dataclasses.replace(c, meta={**c.meta, "max_levels": levels}))
    with pytest.raises(FormatError, match="max_level|arrays do not match|shape"):
        container_to_galois_keys(ctx, forged)


def test_a_max_levels_list_of_the_wrong_length_is_refused(kit):
    params, ctx, kg, sk, gk, enc = kit
    c = galois_keys_to_container(ctx, gk, 1)
    forged = dataclasses.replace(c, meta={**c.meta, "max_levels": c.meta["max_levels"][:-1]})
    with pytest.raises(FormatError, match="one level"):
        container_to_galois_keys(ctx, _roundtrip(forged))


def test_a_tampered_max_level_fails_the_header_digest(kit):
    params, ctx, kg, sk, gk, enc = kit
    key = kg.galois_key(sk, 5, max_level=1)
    data = bytearray(encode_container(switching_key_to_container(ctx, key, "switching-key", 1)))
    at = bytes(data).index(b'"max_level":1')
    data[at + len(b'"max_level":')] = ord("2")
    with pytest.raises(FormatError):
        container_to_switching_key(ctx, decode_container(bytes(data)), "switching-key", "key")
    # re-encoded with a valid digest, the shape check still refuses the forged level
    c = switching_key_to_container(ctx, key, "switching-key", 1)
    forged = _roundtrip(dataclasses.replace(c, meta={**c.meta, "max_level": 2}))
    with pytest.raises(FormatError, match="shape|arrays"):
        container_to_switching_key(ctx, forged, "switching-key", "key")


def test_evaluation_key_bytes_count_truncated_keys(kit):
    params, ctx, kg, sk, gk, enc = kit
    written = len(encode_container(galois_keys_to_container(ctx, gk, 1)))
    size = evaluation_key_bytes(params, STEPS, conjugation=True, relin=False, max_levels=LEVELS, key_version=1)
    # the keyring adds "steps" and "conjugation" to the meta: a few bytes of header
    assert abs(size["galois-keys"] - written) < 256
    full = evaluation_key_bytes(params, STEPS, conjugation=True, relin=False, key_version=1)["galois-keys"]
    assert size["galois-keys"] < 0.9 * full


def test_encapsulation_keys_round_trip():
    params = load_parameters("tiny-bootstrap-insecure", allow_insecure=True)
    ctx = CKKSContext(params)
    kg = KeyGenerator(ctx, SeededRandom("tests/io/encapsulation"))
    sk = kg.secret_key()
    keys = encapsulation.generate(kg, sk)
    c = encapsulation_keys_to_container(ctx, keys, 1)
    assert c.kind == "encapsulation-keys" and c.meta["weight"] == keys.weight
    back = container_to_encapsulation_keys(ctx, _roundtrip(c), lazy=True)
    assert back.weight == keys.weight and back.key_id == sk.key_id
    assert np.array_equal(_host(ctx, back.to_sparse), _host(ctx, keys.to_sparse))
    assert np.array_equal(_host(ctx, back.to_dense.data), _host(ctx, keys.to_dense.data))
    size = evaluation_key_bytes(params, relin=False, encapsulation=True, key_version=1)["encapsulation-keys"]
    assert size == len(encode_container(c))
    # a forged weight, or a to-sparse array over the wrong primes, is one FormatError
    with pytest.raises(FormatError, match="weight"):
        container_to_encapsulation_keys(ctx, dataclasses.replace(c, meta={**c.meta, "weight": 0}))
    arrays = dict(c.arrays)
    arrays["to-sparse"] = np.full_like(arrays["to-sparse"], np.uint64(2**63))
    with pytest.raises(FormatError, match="not reduced"):
        container_to_encapsulation_keys(ctx, dataclasses.replace(c, arrays=arrays))
    arrays = {k: v for k, v in c.arrays.items() if k != "to-dense/b/0"}
    with pytest.raises(FormatError, match="arrays"):
        container_to_encapsulation_keys(ctx, dataclasses.replace(c, arrays=arrays))
