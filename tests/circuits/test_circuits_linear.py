"""Packed matrix products: the layout, the diagonal/BSGS algebra in plaintext against numpy, the Galois
keys and rotation counts against the simulator, and encrypted products against numpy matmul."""

import math

import numpy as np
import pytest

from fhectl.circuits.levels import SimEvaluator
from fhectl.circuits.linear import LinearTransform, PackedLayout, block_offsets, choose_baby_step, rotation_steps_needed
from fhectl.ckks.precision import fresh_error_bound, precision_bits
from fhectl.errors import InputError, MissingKeyError

SLOTS = 512  # N = 2^10

# (tokens T, chunk F, d_in, d_out, real tokens, in_chunk, out_chunk)
CASES = [
    (4, 8, 8, 8, 3, None, None),  # square d = 8, several tokens
    (2, 16, 16, 16, 2, None, None),  # square d = 16
    (1, 16, 16, 16, 1, None, None),  # one vector replicated over the slots
    (4, 8, 8, 24, 4, None, None),  # rectangular 8 x 24: 1 chunk in, 3 out
    (4, 8, 24, 8, 4, None, None),  # rectangular 24 x 8: 3 chunks in, 1 out
    (4, 32, 8, 24, 3, None, None),  # 8 x 24 inside one 32-feature chunk
    (8, 16, 12, 36, 5, 12, 12),  # q, k, v style: 3 output chunks of 12 real features each
    (16, 32, 20, 20, 16, None, None),  # T * F = 512: the whole ring, no replication
]


def _transform(case, seed=0):
    tokens, chunk, d_in, d_out, n_tok, ic, oc = case
    rng = np.random.default_rng(seed + d_in * 100 + d_out)
    w = rng.normal(size=(d_in, d_out)) / math.sqrt(d_in)
    bias = rng.normal(size=d_out)
    x = rng.uniform(-1, 1, size=(n_tok, d_in))
    return LinearTransform(w, PackedLayout(SLOTS, tokens, chunk), bias=bias, in_chunk=ic, out_chunk=oc), x


@pytest.fixture(scope="module")
def linear_kit(make_kit, tiny_params):
    """Galois keys for exactly the steps rotation_steps_needed lists for the cases (and nothing else)."""
    steps = set()
    for case in CASES:
        lt, _ = _transform(case)
        steps |= set(rotation_steps_needed(lt.layout, lt.shape, lt.in_chunk, lt.out_chunk))
    return make_kit(tiny_params, "circuits/linear", rotations=tuple(sorted(steps)))


# -- layout and plaintext algebra ---------------------------------------------------------------------------


def test_pack_unpack_and_feature_rotation():
    lay = PackedLayout(SLOTS, 4, 16)
    x = np.arange(3 * 40).reshape(3, 40).astype(float)
    vecs = lay.pack(x)
    assert len(vecs) == 3 and lay.copies == 8
    np.testing.assert_array_equal(lay.unpack(vecs, 3, 40), x)
    assert vecs[0][lay.slot(2, 5)] == x[2, 5] and vecs[1][lay.slot(1, 0) + lay.period] == x[1, 16]
    # a rotation of all N/2 slots by k T is a cyclic feature shift by k for every token (the periodicity)
    for k in (1, 5, 15):
        rotated = np.roll(vecs[0], -lay.feature_step(k))
        np.testing.assert_array_equal(lay.unpack([rotated], 3, 16), np.roll(lay.unpack([vecs[0]], 3, 16), -k, axis=1))
    with pytest.raises(InputError, match="exceed"):
        PackedLayout(SLOTS, 64, 16)
    with pytest.raises(InputError, match="powers of two"):
        PackedLayout(SLOTS, 3, 16)


def test_block_offsets_are_the_possible_nonzero_diagonals():
    rng = np.random.default_rng(3)
    for rows, cols, f in [(8, 8, 8), (3, 5, 8), (8, 24, 32), (24, 8, 32), (1, 1, 16)]:
        block = np.zeros((f, f))
        block[:rows, :cols] = rng.normal(size=(rows, cols))
        j = np.arange(f)
        nonzero = [k for k in range(f) if np.any(block[(j + k) % f, j])]
        assert block_offsets(f, rows, cols) == nonzero


@pytest.mark.parametrize("case", CASES + [(4, 64, 100, 70, 4, None, None), (2, 8, 30, 17, 2, 5, 7)])
def test_plaintext_bsgs_matches_numpy(case):
    lt, x = _transform(case)
    np.testing.assert_allclose(lt.evaluate_plain(x), x @ lt.weight + lt.bias, atol=1e-12)
    for n1 in (1, 2, lt.layout.chunk):  # any baby step gives the same product
        other = LinearTransform(lt.weight, lt.layout, lt.bias, lt.in_chunk, lt.out_chunk, baby_step=n1)
        np.testing.assert_allclose(other.evaluate_plain(x), x @ lt.weight + lt.bias, atol=1e-12)


@pytest.mark.parametrize("case", CASES)
def test_rotation_steps_and_counts_match_the_simulator(tiny_params, case):
    lt, _ = _transform(case)
    sim = SimEvaluator(tiny_params)
    outs = lt.evaluate(sim, [sim.fresh() for _ in range(lt.n_in)])
    counts = lt.counts()
    assert sorted(sim.rotation_steps) == lt.rotation_steps()
    assert sim.counters["rotations"] == sim.counters["key_switch"] == counts["rotations"]
    assert sim.counters["rescales"] == lt.n_out and len(outs) == lt.n_out
    assert all(o.level == tiny_params.max_level - 1 for o in outs)


def test_baby_step_choice_for_gpt2_shapes():
    """GPT-2 small at N = 2^16, 32 tokens, F = 1024: the table in linear.py's docstring."""
    lay = PackedLayout(32768, 32, 1024)
    for shape, ic, oc, n1, keys in [((768, 2304), 768, 768, 64, 63 + 15), ((768, 768), None, None, 32, 31 + 31),
                                    ((768, 3072), None, 1024, 64, 63 + 15), ((3072, 768), 1024, 768, 16, 15 + 63)]:
        assert choose_baby_step(lay, shape, ic, oc) == n1
        steps = rotation_steps_needed(lay, shape, ic, oc)
        assert len(steps) == keys and all(s % 32 == 0 for s in steps)


# -- homomorphic ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_encrypted_product_matches_numpy(linear_kit, case):
    kit, ev = linear_kit, linear_kit.evaluator
    lt, x = _transform(case)
    cts = [kit.encryptor.encrypt(v) for v in lt.pack_input(x)]
    before = dict(ev.counters)
    outs = lt.evaluate(ev, cts, n_tokens=x.shape[0])
    used = {k: ev.counters[k] - before[k] for k in before}
    got = lt.unpack_output([kit.decryptor.decrypt(o).real for o in outs], x.shape[0])
    want = x @ lt.weight + lt.bias
    # input error B per slot reaches y_j through column j of W; rotations and encodings add far less
    bound = fresh_error_bound(kit.params) * (np.max(np.sum(np.abs(lt.weight), axis=0)) + 1.0)
    assert precision_bits(got, want) >= -math.log2(2.0 * bound)
    assert all(o.level == cts[0].level - 1 and o.scale == pytest.approx(cts[0].scale, rel=1e-12) for o in outs)
    assert used["rotations"] == used["key_switch"] == lt.counts()["rotations"]
    # padding stays zero: padded tokens (bias restricted to real tokens) and padded features
    full = [kit.decryptor.decrypt(o).real for o in outs]
    lay = lt.layout
    width = lay.chunks(lt.d_out, lt.out_chunk) * lt.out_chunk
    pad_tokens = lay.unpack(full, lay.tokens, width, lt.out_chunk)[x.shape[0]:]
    assert np.max(np.abs(pad_tokens), initial=0.0) < 2**-20


def test_target_scale_and_missing_key(linear_kit, make_kit, tiny_params):
    kit, ev = linear_kit, linear_kit.evaluator
    lt, x = _transform(CASES[0])
    target = kit.params.scale * 1.01
    outs = lt.evaluate(ev, [kit.encryptor.encrypt(v) for v in lt.pack_input(x)], target_scale=target)
    assert outs[0].scale == pytest.approx(target, rel=1e-12)
    bare = make_kit(tiny_params, "circuits/linear-bare", rotations=(1,))
    with pytest.raises(MissingKeyError):
        lt.evaluate(bare.evaluator, [bare.encryptor.encrypt(v) for v in lt.pack_input(x)])
