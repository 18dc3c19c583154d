"""Seeded switching keys: the uniform half a_j expanded from a public seed (fhectl.ckks.prng), stored as
b and 32 bytes, re-expanded on load, memory-mapped and built lazily on a server; and the bundle size
computed from the parameters alone."""

import dataclasses
import hashlib

import numpy as np
import pytest

from fhectl.ckks import prng
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import KeyGenerator, SwitchingKey
from fhectl.ckks.keyswitch import key_switch
from fhectl.ckks.params import load_parameters
from fhectl.ckks.sampling import OsRandom, SeededRandom
from fhectl.errors import FormatError
from fhectl.io.container import (bundle_containers, decode_container, encode_container, read_container,
                                 unbundle_containers, write_container)
from fhectl.io.keyring import read_public_export
from fhectl.io.objects import (container_to_galois_keys, container_to_switching_key, evaluation_key_bytes,
                               galois_keys_to_container, switching_key_to_container)

try:  # the key-set layer is moving from fhectl.cli to its own package
    from fhectl.keysets import generate_key_material
except ImportError:
    from fhectl.cli.keysets import generate_key_material

SEED = bytes(range(32))

# Known answers, computed once with uniform_residues_reference (SHAKE128 from Python's hashlib) and pinned
# here, so a change of the expansion on any machine shows: (modulus, label, digit, limb) -> first residues.
# The moduli are the first two primes of the tiny-insecure profile.
KNOWN_ANSWERS = [
    ((1125899906856961, "relin", 0, 0), [264063384221810, 309772645604058, 1027450918846176, 988686173983712]),
    ((1099511678977, "galois:5", 2, 1), [153942249180, 523650671252, 732852677877, 164859595486]),
]
# SHAKE128 of the first stream's input: pins the input layout itself (domain, seed, label, indices, q).
KNOWN_STREAM = "dae145152af0a0a590a4209dbc19d9e6dfb3e21876a6ffb36397367634830f6e"


# -- the expansion ------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), KNOWN_ANSWERS)
def test_expansion_known_answers(args, expected):
    q, label, digit, limb = args
    assert prng.uniform_residues_reference(SEED, label, digit, limb, q, 4) == expected
    assert prng.uniform_residues(SEED, label, digit, limb, q, 4).tolist() == expected
    stream_input = prng.stream_input(SEED, "relin", 0, 0, KNOWN_ANSWERS[0][0][0])
    assert hashlib.shake_128(stream_input).hexdigest(32) == KNOWN_STREAM


@pytest.mark.parametrize("q", [
    1125899906856961, 1099511592961,  # a prime above and one below a power of two (both kinds in a chain)
    (1 << 62) + 1,  # rejects a quarter of the words: the rejection path is exercised hundreds of times
    (1 << 61) - 1, 97,
])
def test_vectorised_expansion_matches_the_reference(q):
    for label, digit, limb in (("relin", 0, 0), ("galois:2047", 2, 7), ("key:k-0123456789ab", 1, 3)):
        fast = prng.uniform_residues(SEED, label, digit, limb, q, 1000)
        assert fast.dtype == np.uint64 and fast.shape == (1000,)
        assert fast.tolist() == prng.uniform_residues_reference(SEED, label, digit, limb, q, 1000)
        assert int(fast.max()) < q


def test_rejection_rate_is_the_share_of_words_skipped():
    q = (1 << 62) + 1  # 2^64 = 3 q + (2^62 - 3): a word is rejected with probability about 1/4
    assert prng.rejection_rate(q) == pytest.approx(0.25, abs=1e-9)
    words = np.frombuffer(hashlib.shake_128(prng.stream_input(SEED, "relin", 0, 0, q)).digest(8 * 4000), "<u8")
    kept = words[words < np.uint64(3 * q)]
    assert abs(1 - kept.size / words.size - 0.25) < 0.03
    assert np.array_equal(prng.uniform_residues(SEED, "relin", 0, 0, q, 2000), kept[:2000] % np.uint64(q))
    assert prng.rejection_rate(1125899906856961) < 2.0**-13  # the profiles' 51-bit primes


def test_streams_are_separated_by_kind_digit_limb_and_prime():
    base = prng.uniform_residues(SEED, "galois:5", 0, 0, 97, 64)
    for other in (("galois:3", 0, 0, 97), ("relin", 0, 0, 97), ("galois:5", 1, 0, 97), ("galois:5", 0, 1, 97),
                  ("galois:5", 0, 0, 101)):
        assert not np.array_equal(prng.uniform_residues(SEED, *other[:3], other[3], 64), base)
    assert not np.array_equal(prng.uniform_residues(bytes(32), "galois:5", 0, 0, 97, 64), base)
    with pytest.raises(ValueError, match="32 bytes"):
        prng.stream_input(SEED[:16], "relin", 0, 0, 97)


def test_seeds_come_from_the_csprng_by_default():
    a, b = prng.new_seed(), prng.new_seed()
    assert len(a) == len(b) == 32 and a != b
    assert prng.new_seed(SeededRandom("s")) == prng.new_seed(SeededRandom("s"))


# -- generated keys -------------------------------------------------------------------------------


def test_generated_keys_carry_the_seed_of_their_a(kit):
    p = kit.params
    dnum = len(p.digits(p.max_level))
    for key in (kit.rlk, *kit.gk.keys.values()):
        assert key.seed is not None and len(key.seed) == 32
        a = prng.expand_switching_a(key.seed, key.source, dnum, p.all_moduli, p.ring_degree)
        assert np.array_equal(np.asarray(key.data)[:, 1], a)
    seeds = {k.seed for k in (kit.rlk, *kit.gk.keys.values())}
    assert len(seeds) == 1 + len(kit.gk.keys)  # a fresh seed per key
    fresh = KeyGenerator(kit.ctx, OsRandom()).relin_key(kit.sk)
    assert fresh.seed not in seeds


def _unseeded(key: SwitchingKey) -> SwitchingKey:
    return SwitchingKey(key.data, key.params_id, key.key_id, key.source)


def test_seeded_files_are_about_half_the_size(kit):
    seeded = len(encode_container(switching_key_to_container(kit.ctx, kit.rlk, "relin-key", 1)))
    full = len(encode_container(switching_key_to_container(kit.ctx, _unseeded(kit.rlk), "relin-key", 1)))
    assert seeded <= 0.51 * full


def test_writing_a_seeded_key_copies_nothing(kit):
    c = galois_keys_to_container(kit.ctx, kit.gk, 1)
    # the b_j arrays are views of the keys' data: a writer of a multi-GiB key set holds no second copy
    for g, key in kit.gk.keys.items():
        assert all(np.shares_memory(c.arrays[f"g{g}/b/{j}"], key.data) for j in range(key.digits))


def _same_switch(ctx, key_a, key_b, level):
    rng = np.random.default_rng(3)
    q = np.array(ctx.params.moduli_q[: level + 1], dtype=np.uint64)[:, None]
    d = (rng.integers(0, 2**62, size=(1, level + 1, ctx.params.ring_degree), dtype=np.uint64) % q)
    return np.array_equal(key_switch(ctx, d.copy(), key_a, level), key_switch(ctx, d.copy(), key_b, level))


def test_seeded_round_trip_gives_the_same_key(kit):
    c = decode_container(encode_container(switching_key_to_container(kit.ctx, kit.rlk, "relin-key", 1)))
    assert list(c.arrays) == ["b/0", "b/1", "b/2"] and c.meta["a_seed"] == kit.rlk.seed.hex()
    back = container_to_switching_key(kit.ctx, c, "relin-key", "test")
    assert np.array_equal(back.data, kit.rlk.data) and back.seed == kit.rlk.seed
    assert _same_switch(kit.ctx, back, kit.rlk, kit.params.max_level)
    gc = decode_container(encode_container(galois_keys_to_container(kit.ctx, kit.gk, 1)))
    assert sorted(gc.arrays) == sorted(f"g{g}/b/{j}" for g in kit.gk.keys for j in range(3))
    gk = container_to_galois_keys(kit.ctx, gc)
    assert sorted(gk.keys) == sorted(kit.gk.keys)
    assert all(np.array_equal(gk.keys[g].data, kit.gk.keys[g].data) for g in gk.keys)
    # and it works: a rotation under the reloaded keys decrypts like one under the generated keys
    x = kit.random_slots()
    ct = kit.encryptor.encrypt(x)
    got = kit.decryptor.decrypt(Evaluator(kit.ctx, kit.rlk, gk).rotate(ct, 1))
    assert np.allclose(got, np.roll(x, -1), atol=1e-4)


def test_first_format_files_still_load(kit):
    c = switching_key_to_container(kit.ctx, _unseeded(kit.rlk), "relin-key", 1)
    assert sorted(c.arrays) == ["data"] and "a_seed" not in c.meta
    back = container_to_switching_key(kit.ctx, decode_container(encode_container(c)), "relin-key", "old")
    assert np.array_equal(back.data, kit.rlk.data) and back.seed is None
    old_gk = dataclasses.replace(kit.gk, keys={g: _unseeded(k) for g, k in kit.gk.keys.items()})
    gc = galois_keys_to_container(kit.ctx, old_gk, 1)
    assert sorted(gc.arrays) == sorted(f"g{g}" for g in kit.gk.keys)
    gk = container_to_galois_keys(kit.ctx, decode_container(encode_container(gc)))
    assert all(np.array_equal(gk.keys[g].data, kit.gk.keys[g].data) for g in gk.keys)


def test_the_seed_is_covered_by_the_header_checksum(kit):
    raw = bytearray(encode_container(switching_key_to_container(kit.ctx, kit.rlk, "relin-key", 1)))
    at = raw.index(kit.rlk.seed.hex().encode())
    raw[at] = ord("0") if raw[at] != ord("0") else ord("1")
    with pytest.raises(FormatError, match="header checksum"):
        decode_container(bytes(raw))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.meta.update(a_seed="00" * 16), "64 lowercase hex"),
    (lambda c: c.meta.update(a_seed="ZZ" * 32), "64 lowercase hex"),
    (lambda c: c.meta.pop("a_seed"), "64 lowercase hex"),
    (lambda c: c.meta.update(a_expansion="shake256-v9"), "knows only"),
    (lambda c: c.arrays.update({"b/1": c.arrays["b/1"][:-1]}), "shape"),
    (lambda c: c.arrays.pop("b/2"), "arrays"),
    (lambda c: c.arrays.update({"b/0": c.arrays["b/0"] + np.uint64(2**61)}), "not reduced"),
    (lambda c: c.arrays.update(extra=np.zeros(1, np.uint64)), "arrays"),
])
def test_malformed_seeded_files_are_refused(kit, edit, message):
    c = switching_key_to_container(kit.ctx, kit.rlk, "relin-key", 1)
    edit(c)
    with pytest.raises(FormatError, match=message):
        container_to_switching_key(kit.ctx, c, "relin-key", "forged")


def test_galois_seeds_must_match_the_elements(kit):
    c = galois_keys_to_container(kit.ctx, kit.gk, 1)
    c.meta["a_seeds"] = c.meta["a_seeds"][:-1]
    with pytest.raises(FormatError, match="one seed per Galois element"):
        container_to_galois_keys(kit.ctx, c)


# -- memory-mapped, lazily built keys on a server -------------------------------------------------


def _mapped(arr) -> bool:
    while arr is not None:
        if isinstance(arr, np.memmap):
            return True
        arr = getattr(arr, "base", None)
    return False


def test_memory_mapped_lazy_galois_keys(kit, tmp_path):
    path = tmp_path / "galois-keys.fhe"
    write_container(path, galois_keys_to_container(kit.ctx, kit.gk, 1))
    c = read_container(path, mmap=True, expected_kind="galois-keys")
    assert all(isinstance(a, np.memmap) for a in c.arrays.values())  # b stays on disk until touched
    gk = container_to_galois_keys(kit.ctx, c, str(path), lazy=True)
    assert not any(k.loaded for k in gk.keys.values())
    g = next(iter(gk.keys))
    key = gk.keys[g]
    assert key.shape == kit.gk.keys[g].shape and key.digits == kit.gk.keys[g].digits and not key.loaded
    assert np.array_equal(key.data, kit.gk.keys[g].data) and key.loaded
    assert sum(k.loaded for k in gk.keys.values()) == 1  # only the key in use is in memory
    key.release()
    assert not key.loaded
    assert _same_switch(kit.ctx, key, kit.gk.keys[g], 2)


def test_memory_mapped_bundle_members_load_lazily(kit, tmp_path):
    members = {"relin-key": switching_key_to_container(kit.ctx, kit.rlk, "relin-key", 1),
               "galois-keys": galois_keys_to_container(kit.ctx, kit.gk, 1)}
    write_container(tmp_path / "bundle.fhe", bundle_containers("keyset-public", members, params_id=kit.ctx.params_id,
                                                               key_id=kit.sk.key_id, key_version=1))
    back = unbundle_containers(read_container(tmp_path / "bundle.fhe", mmap=True))
    assert all(_mapped(a) for c in back.values() for a in c.arrays.values())
    rlk = container_to_switching_key(kit.ctx, back["relin-key"], "relin-key", "bundle", lazy=True)
    gk = container_to_galois_keys(kit.ctx, back["galois-keys"], "bundle", lazy=True)
    assert not rlk.loaded and not any(k.loaded for k in gk.keys.values())
    assert np.array_equal(rlk.data, kit.rlk.data)
    assert all(np.array_equal(gk.keys[g].data, k.data) for g, k in kit.gk.keys.items())


def test_memory_mapped_first_format_key_is_used_in_place(kit, tmp_path):
    path = tmp_path / "relin-key.fhe"
    write_container(path, switching_key_to_container(kit.ctx, _unseeded(kit.rlk), "relin-key", 1))
    c = read_container(path, mmap=True)
    key = container_to_switching_key(kit.ctx, c, "relin-key", str(path), lazy=True)
    assert _mapped(key.data)  # the kernels read the mapped file directly, no copy in memory
    assert _same_switch(kit.ctx, key, kit.rlk, kit.params.max_level)


# -- bundle sizes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "conjugation"), [([1, 2, -3], True), ([5], False), ([], False), ([], True)])
def test_evaluation_key_bytes_equal_the_written_files(tiny_params, steps, conjugation):
    ctx = CKKSContext(tiny_params)
    _, _, public = generate_key_material(ctx, steps, conjugation)
    written = {name: len(encode_container(dataclasses.replace(public[name], key_version=7)))
               for name in ("relin-key", "galois-keys") if name in public}
    size = evaluation_key_bytes(tiny_params, steps, conjugation, key_version=7)
    assert size["relin-key"] == written["relin-key"]
    assert size["galois-keys"] == written.get("galois-keys", 0)
    assert size["total"] == sum(written.values())
    before = evaluation_key_bytes(tiny_params, steps, conjugation, key_version=7, seeded=False)
    assert size["total"] <= 0.51 * before["total"]
    full = switching_key_to_container(ctx, SwitchingKey(np.zeros((3, 2, 8, 1024), np.uint64), ctx.params_id,
                                                        public["relin-key"].key_id, "relin"), "relin-key", 7)
    assert before["relin-key"] == len(encode_container(full))


def test_the_gpt2_bundle_is_half_of_the_first_format():
    params = load_parameters("gpt2-n16-128")
    steps = list(range(1, 99))  # the encrypted GPT-2 block needs 98 rotation steps at this profile
    before = evaluation_key_bytes(params, steps, seeded=False)["total"]
    after = evaluation_key_bytes(params, steps)["total"]
    assert before / 2**30 == pytest.approx(8.12, abs=0.01)  # the 8.1 GiB of the issue
    assert after <= 0.5001 * before


def test_evaluation_key_bytes_count_one_key_per_galois_element(tiny_params):
    slots = tiny_params.slots
    assert evaluation_key_bytes(tiny_params, [slots], relin=False)["total"] == 0  # no key for a full turn
    one = evaluation_key_bytes(tiny_params, [1], relin=False)["galois-keys"]
    # -1 and slots - 1 are one Galois element: the same key, counted once (the header lists both steps)
    assert evaluation_key_bytes(tiny_params, [-1, slots - 1], relin=False)["galois-keys"] < 1.01 * one


def test_a_server_worker_maps_a_bundle_and_builds_keys_on_use(kit, tmp_path):
    worker = pytest.importorskip("fhectl.service.worker")
    members = {"relin-key": switching_key_to_container(kit.ctx, kit.rlk, "relin-key", 1),
               "galois-keys": galois_keys_to_container(kit.ctx, kit.gk, 1)}
    path = tmp_path / "bundle.fhe"
    write_container(path, bundle_containers("keyset-public", members, params_id=kit.ctx.params_id,
                                            key_id=kit.sk.key_id, key_version=1))
    _, mapped = read_public_export(path, mmap=True)
    assert all(isinstance(a, np.memmap) for c in mapped.values() for a in c.arrays.values())
    ev = worker.load_evaluator(kit.ctx, path)
    assert not ev.relin_key.loaded and not any(k.loaded for k in ev.galois_keys.keys.values())
    x = kit.random_slots()
    got = kit.decryptor.decrypt(ev.rotate(kit.encryptor.encrypt(x), 1))
    assert np.allclose(got, np.roll(x, -1), atol=1e-4)
    assert sum(k.loaded for k in ev.galois_keys.keys.values()) == 1 and not ev.relin_key.loaded
