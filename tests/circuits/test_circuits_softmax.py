"""Normalise-and-square softmax: total variation on trained score ranges (plaintext), and the homomorphic
circuit against its plaintext twin with exact causal masking, refreshes and level errors."""

import numpy as np
import pytest

from fhectl.circuits import approximations as A
from fhectl.circuits.levels import SimEvaluator
from fhectl.circuits.protocols import SecretKeyRefresher
from fhectl.circuits.softmax import softmax_circuit
from fhectl.ckks.precision import fresh_precision_bits, precision_bits
from fhectl.errors import InputError, LevelError


def trained_rows(rng, rows: int, n: int):
    """Row maxima spread over 60 units, row ranges up to 100 wide, causal-style masks (some rows empty)."""
    top = rng.uniform(-30.0, 30.0, (rows, 1))
    width = rng.uniform(0.0, 100.0, (rows, 1))
    x = np.clip(top - rng.uniform(0.0, 1.0, (rows, n)) * width, -128.0, 128.0)
    x[:, :1] = top  # the maximum is attained
    mask = np.arange(n)[None, :] <= rng.integers(-1, n, (rows, 1))
    return x, mask


@pytest.mark.parametrize("n", [8, 128])
def test_total_variation_on_trained_ranges(n):
    sm = softmax_circuit(128.0, n)
    x, mask = trained_rows(np.random.default_rng(n), 3000, n)
    p, ref = sm.eval_plain(x, mask), sm.reference(x, mask)
    tv = 0.5 * np.abs(p - ref).sum(axis=-1)
    assert tv.max() <= sm.tv_bound * (1 + 1e-6) and sm.tv_bound <= 1e-3
    assert np.all(p[~mask] == 0.0)
    rows = mask.any(axis=-1)
    assert np.all(p[~rows] == 0.0) and np.max(np.abs(p[rows].sum(axis=-1) - 1.0)) <= 1e-3
    # a single exp interpolant with one shift (the old circuit) cannot hold these rows
    old = A.exp(-30.0, 0.0)
    shifted = np.where(mask, old.eval_plain(np.clip(x - 30.0, -30.0, 0.0)), 0.0)
    s = shifted.sum(axis=-1, keepdims=True)
    old_p = np.divide(shifted, s, out=np.zeros_like(s * shifted), where=s > 0)
    assert np.max(0.5 * np.abs(old_p - ref).sum(axis=-1)) > 0.1


def test_one_key_rows_get_a_plan_and_probability_one():
    """A single-token batch has one key per row: the plan once divided by zero there (bench --batch-sizes 1)."""
    sm = softmax_circuit(16.0, 1)
    x = np.random.default_rng(1).uniform(-16.0, 16.0, (50, 1))
    assert np.max(np.abs(sm.eval_plain(x) - 1.0)) <= 2 * sm.tv_bound


def test_plan_depth_and_stages():
    sm = softmax_circuit(128.0, 128)
    assert sm.depth() == sum(n for _, n in sm.stages()) and sm.squarings == 7
    assert all(g.b - g.a == pytest.approx(2.0) for g in sm.inverses)  # the affine map is a constant addition
    assert max(n for _, n in sm.stages()) <= 10


def _encrypt_rows(kit, n):
    x, mask = trained_rows(kit.rng, kit.params.slots, n)
    cts = [kit.encryptor.encrypt(x[:, j]) for j in range(n)]
    return x, mask, cts, [mask[:, j].astype(float) for j in range(n)]


def test_homomorphic_softmax_with_refreshes(deep_kit):
    kit, ev = deep_kit, deep_kit.evaluator
    n = 4
    sm = softmax_circuit(128.0, n)
    x, mask, cts, masks = _encrypt_rows(kit, n)
    refresh = SecretKeyRefresher(kit.encryptor, kit.decryptor)
    out = sm.evaluate(ev, cts, masks, refresh=refresh)
    got = np.stack([kit.decryptor.decrypt(c).real for c in out], axis=-1)
    want = sm.eval_plain(x, mask)
    # CKKS noise: a fresh error, doubled in relative terms by each squaring, times the inverses' sizes
    need = fresh_precision_bits(kit.params) - sm.squarings - 4
    assert precision_bits(got, want) >= need
    assert np.max(np.abs(got[~mask])) <= 2.0**-need  # masked keys and padding rows decrypt to ~0
    assert np.max(0.5 * np.abs(got - sm.reference(x, mask)).sum(axis=-1)) <= 1e-3
    assert refresh.calls and all(c.startswith("softmax") for c in refresh.calls)
    assert all(c.scale == pytest.approx(cts[0].scale, rel=1e-12) for c in out)


def test_level_error_without_refresher(deep_kit):
    kit, ev = deep_kit, deep_kit.evaluator
    sm = softmax_circuit(128.0, 4)
    sim = SimEvaluator(kit.params)
    cts = [sim.fresh() for _ in range(4)]
    with pytest.raises(LevelError, match=r"softmax normalise \d/\d needs \d+ levels"):
        sm.evaluate(sim, cts, [np.ones(kit.params.slots)] * 4)


def test_softmax_stages_within_a_refresh_budget():
    """With stages capped at 7 levels (8 per bootstrapping refresh, one for the row sums), the plan keeps every
    stage within it and the total-variation bound, at the cost of more stages than the least-depth plan."""
    free = softmax_circuit(64.0, 32)
    capped = softmax_circuit(64.0, 32, max_stage_levels=7)
    assert max(n for _, n in free.stages()) > 7
    assert max(n for _, n in capped.stages()) <= 7 and capped.tv_bound <= 1e-3
    with pytest.raises(InputError, match="stages of at most 2 levels"):
        softmax_circuit(64.0, 32, max_stage_levels=2)
