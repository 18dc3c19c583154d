"""Refresh by bootstrapping (fhectl.circuits.bootstrap_refresh) and the range indicator
(fhectl.circuits.range_indicator) at the insecure N = 2^10 profile tiny-bootstrap-deep-insecure.

Precision per refresh: values in [-B, B] come back within ``RefreshModel.error(B)`` = 2^-17 * 2^b, b = max(0,
ceil(log2(4 B))). Measured here, largest absolute error, arriving at level 1 or 20 alike:

    B            1/4      1        4        16       64       256
    constant B   2^-18.3  2^-16.4  2^-14.3  2^-12.3  2^-10.2  2^-8.3   (the worst case: one coefficient)
    uniform      2^-19.2  2^-17.2  2^-15.3  2^-13.5  2^-11.4  2^-9.1

i.e. 16.2-16.6 bits relative to the bound in the worst case, 17.5-19.5 for spread values: the noise floor of one
bootstrapping (2^-18.3) times 2^b. Unshrunk at level 0 (intermediates, |m| <= 1): 2^-19.1 uniform, 2^-13.3 for
the constant 1 (the sine's cubic term), 2^-16.1 for the constant 1/2.
"""

import math
from dataclasses import replace

import numpy as np
import pytest

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.params import load_parameters
from fhectl.ckks.sampling import SeededRandom
from fhectl.circuits.bootstrap_refresh import (
    BootstrapRefresh,
    BootstrapStats,
    RefreshModel,
    SimBootstrapper,
    bootstrap_config,
    bootstrap_rotation_steps,
    server_refresh,
)
from fhectl.circuits.levels import SimEvaluator
from fhectl.circuits.protocols import BlockRefresher
from fhectl.circuits.range_indicator import RangeIndicator, indicator_value, read_indicators
from fhectl.circuits.refresh import Client, ClientRefresh, Stats
from fhectl.circuits.transformer import SimRefresh
from fhectl.errors import LevelError


pytestmark = pytest.mark.usefixtures("single_numba_thread")


class Kit:
    def __init__(self):
        self.params = load_parameters("tiny-bootstrap-deep-insecure", allow_insecure=True)
        self.ctx = CKKSContext(self.params)
        self.client = Client(self.ctx, bootstrap_rotation_steps(self.params), SeededRandom("tests/boot-refresh"),
                             conjugation=True)
        self.ev = self.client.server_evaluator()  # public keys only
        self.refresh = server_refresh(self.ev, self.params)
        self.rng = np.random.default_rng(7)

    def encrypt(self, x, level=None):
        return self.client.encryptor.encrypt(x, level=level)

    def decrypt(self, ct):
        return self.client.decryptor.decrypt(ct, self.params.slots).real

    def fresh_indicator(self):
        self.refresh.indicator = RangeIndicator(self.ev, self.params.scale)
        return self.refresh.indicator


@pytest.fixture(scope="module")
def kit(single_numba_thread):
    return Kit()


@pytest.mark.parametrize("bound", [0.25, 4.0, 64.0])
def test_precision_per_refresh_is_16_bits_of_the_bound(kit, bound):
    n = kit.params.slots
    worst = 0.0
    for x in (kit.rng.uniform(-bound, bound, n), np.full(n, bound)):
        (out,) = kit.refresh.refresh([kit.encrypt(x, level=2)], "test", domains=[(-bound, bound)])
        assert out.level == kit.refresh.top_level and out.scale == kit.params.scale
        worst = max(worst, float(np.max(np.abs(kit.decrypt(out) - x))))
    assert worst < kit.refresh.model.error(bound), (bound, math.log2(worst))
    assert -math.log2(worst / bound) > 15  # about 16 bits relative to the bound


def test_a_refresh_returns_real_values(kit):
    """The circuits compute on real values, and a client refresh re-encrypts only those: a bootstrapping refresh
    returns the real part too, so imaginary noise cannot grow through the next polynomial (the softmax's
    normalisations, squared seven times, turned it into garbage within one SmolLM2 block of 8 packed prompts
    before the real part was taken). Here the imaginary parts are as large as the real ones, with and without
    a mask."""
    n = kit.params.slots
    x = kit.rng.uniform(-1, 1, n)
    z = x + 1j * kit.rng.uniform(-1, 1, n)
    for valid in (None, [np.arange(n) % 2 == 0]):
        (out,) = kit.refresh.refresh([kit.encrypt(z, level=1)], "complex in", domain=(-1.0, 1.0), valid=valid)
        got = kit.client.decryptor.decrypt(out, n)
        want = x if valid is None else np.where(valid[0], x, 0.0)
        assert np.max(np.abs(got.real - want)) < kit.refresh.model.error(1.0)
        assert np.max(np.abs(got.imag)) < kit.refresh.model.error(1.0)


def test_mask_fill_and_requested_level(kit):
    n = kit.params.slots
    x = kit.rng.uniform(-3, 3, n)
    valid = np.arange(n) % 3 != 0
    (out,) = kit.refresh.refresh([kit.encrypt(x, level=1)], "masked", domain=(-4.0, 4.0), valid=[valid], fill=0.5,
                                 level=3)
    assert out.level == 3
    got = kit.decrypt(out)
    want = np.where(valid, x, 0.5)
    assert np.max(np.abs(got - want)) < kit.refresh.model.error(4.0)


def test_levels_it_cannot_give_are_errors(kit):
    ct = kit.encrypt(np.zeros(kit.params.slots))
    with pytest.raises(LevelError, match="at most"):
        kit.refresh.refresh([ct], "too high", level=kit.refresh.top_level + 1)
    with pytest.raises(LevelError, match="level 0 with values up to 64"):  # cannot shrink without a level
        kit.refresh.refresh([kit.ev.drop_level(ct, 0)], "stream", domains=[(-64.0, 64.0)])


def test_only_short_ciphertexts_are_bootstrapped(kit):
    stats = BootstrapStats()
    r = BootstrapRefresh(kit.ev, kit.refresh.boot, stats)
    x = kit.rng.uniform(-0.5, 0.5, kit.params.slots)
    high, low = kit.encrypt(x), kit.encrypt(x, level=1)
    a, b = r.ensure_levels_all([high, low], 4, "short")
    assert a is high and b.level == r.top_level and stats.bootstraps == 1
    assert np.max(np.abs(kit.decrypt(b) - x)) < kit.refresh.model.error(1.0)


def test_every_refresh_strategy_offers_the_same_calls(kit):
    sim = SimEvaluator(kit.params)
    for r in (kit.refresh, ClientRefresh(kit.client, Stats()), SimRefresh(sim),
              BootstrapRefresh(sim, SimBootstrapper(sim))):
        assert isinstance(r, BlockRefresher), type(r).__name__


def test_the_simulator_plans_the_same_levels(kit):
    sim = SimEvaluator(kit.params)
    r = BootstrapRefresh(sim, SimBootstrapper(sim, bootstrap_config(kit.params)))
    (s,) = r.refresh([sim.fresh(1)], "x", domains=[(-64.0, 64.0)], level=5)
    assert r.top_level == kit.refresh.top_level and s.level == 5
    # q0 / Delta = 2^8: |m| <= 2^-2, halved for the real circuit, whose sine sees 2 |m|
    assert r.model.shift_for(64.0) == 9 and r.model.shift_for(0.125) == 0


def test_the_refresh_model_follows_the_profile():
    """The shrunk bound is y = Delta m / q0 <= 2^-10 of each profile: 2^-2 at q0 / Delta = 2^8, 32 at 2^15; the
    error is relative to the bound, so it is the same per bit of shift."""
    from fhectl.ckks.bootstrap import BootstrapConfig

    tiny = load_parameters("tiny-bootstrap-deep-insecure", allow_insecure=True)
    big = load_parameters("boot-n16-128")
    m_tiny = RefreshModel.for_params(tiny, BootstrapConfig.for_params(tiny))
    m_big = RefreshModel.for_params(big, BootstrapConfig.for_params(big))
    assert abs(math.log2(m_tiny.shrunk_bound) + 2) < 0.01 and abs(math.log2(m_big.shrunk_bound) - 5) < 0.01
    assert m_big.shift_for(256.0) == 3 and m_big.shift_for(32.0) == 0 and m_big.level0_unit_error == 0.0
    assert m_tiny.level0_unit_error > 0  # |m| <= 1 at level 0 is above tiny's bound
    assert m_big.error(256.0) == 8 * m_big.error(32.0)
    # the real circuit: half the bound, one more bit of shift, the same error for a given value bound
    m_real = RefreshModel.for_params(big, replace(BootstrapConfig.for_params(big), real=True))
    assert m_real.shrunk_bound == m_big.shrunk_bound / 2 and m_real.shift_for(32.0) == 1
    assert m_real.error(256.0) == m_big.error(256.0) and m_real.error(16.0) == m_big.error(32.0) / 2
    # one pass of the refining circuit: its first pass's error at the bound, 2^-12 (the sine's cubic term)
    m_one = RefreshModel.for_params(big, replace(BootstrapConfig.for_params(big), real=True, passes=1))
    assert m_one.error(16.0) == 2.0**-13 and m_one.error(16.0) >= 2**10 * m_real.error(16.0)


def test_range_indicator_reads_clean_inside_and_flags_outside(kit):
    n = kit.params.slots
    ind = kit.fresh_indicator()
    inside = kit.rng.uniform(-1.9, 1.9, n)
    kit.refresh.refresh([kit.encrypt(inside, level=1)], "inside", domains=[(-2.0, 2.0)])
    slightly = inside.copy()
    slightly[17] = 2.1  # 10% of the half-width beyond the edge: (1.05)^64 = 23
    kit.refresh.refresh([kit.encrypt(slightly, level=1)], "slightly out", domains=[(-2.0, 2.0)])
    far = inside.copy()
    far[100] = 40.0  # 20 times the bound: the sine's output is garbage, and so is x^64 (wraps): flagged
    kit.refresh.refresh([kit.encrypt(far, level=1)], "far out", domains=[(-2.0, 2.0)])
    verdict = ind.read(kit.client.decryptor, n)
    assert not verdict.clean
    assert verdict.flagged == ["slightly out", "far out"]
    by_stage = {s.stage: s for s in verdict.stages}
    assert by_stage["inside"].max_value <= 1.0 and not by_stage["inside"].out_of_domain
    assert by_stage["slightly out"].flagged_slots == 1
    assert by_stage["slightly out"].max_value == pytest.approx(indicator_value(2.1, (-2.0, 2.0)), rel=0.01)
    assert by_stage["slightly out"].resolution < 1e-3  # one observation: anything 0.1% of a half-width outside
    assert "OUT OF DOMAIN" in verdict.summary() and "slightly out" in verdict.summary()


def test_indicator_sums_a_stage_and_keeps_its_count(kit):
    """public_state() is everything the server returns (ciphertexts, counts, tolerances; no key). Two values of
    one slot at the edge sum to about 2: suspect, not certainly out of domain."""
    ind = kit.fresh_indicator()
    x = kit.rng.uniform(0.0, 1.0, kit.params.slots)
    x[:4] = [1.0, 0.0, 0.999, 0.5]
    kit.refresh.refresh([kit.encrypt(x, level=1), kit.encrypt(x, level=1)], "pair", domain=(0.0, 1.0))
    state = ind.public_state()
    assert list(state) == ["pair"] and state["pair"][1] == 2
    verdict = read_indicators(state, kit.client.decryptor, kit.params.slots)
    (stage,) = verdict.stages
    assert verdict.clean and stage.suspect and stage.max_value < stage.threshold
    assert 1e-3 < stage.resolution < 0.012  # (2 (1 + tol))^(1/64) - 1
    assert "SUSPECT" in verdict.summary()


def test_indicator_keeps_each_block_apart(kit):
    """One accumulator per block and stage: a value outside in block 1 is named there, block 0 reads clean, and
    each block's count (so its threshold and resolution) is its own, however many blocks ran before."""
    ind = kit.fresh_indicator()
    x = kit.rng.uniform(-1.0, 1.0, kit.params.slots)
    out = x.copy()
    out[5] = 1.2  # 20% of a half-width outside
    for block, values in ((0, x), (1, out)):
        kit.refresh.begin_block(block)
        kit.refresh.refresh([kit.encrypt(values, level=1), kit.encrypt(x, level=1)], "gate", domain=(-1.0, 1.0))
    state = ind.public_state()
    assert sorted(state) == ["block 0 gate", "block 1 gate"] and all(v[1] == 2 for v in state.values())
    verdict = read_indicators(state, kit.client.decryptor, kit.params.slots)
    assert verdict.flagged == ["block 1 gate"] and "OUT OF DOMAIN at block 1 gate" in verdict.summary()
    assert list(ind.section_state(0)) == ["block 0 gate"]
    assert read_indicators(ind.section_state(0), kit.client.decryptor, kit.params.slots).clean


def test_indicator_sees_a_norm_input_below_its_domain(kit):
    """1/sqrt over 5 decades ([2^-9, 128], SmolLM2 block 5's scaled domain), evaluated encrypted with every
    refresh a bootstrapping and the indicator's k = 4 (as at boot-n16-128): x = a / 2 sits within 2^-17
    half-widths of x's own lower edge, so x alone reads about 1; the running product refreshed inside the 1/sqrt
    follows 1/sqrt(x) above its bound (``r_bound``), and its stage, apart from the polynomial input's, is
    flagged. The same circuit on values inside, a itself among them, reads clean."""
    from fhectl.circuits.wide import inverse_sqrt_wide

    a, b = 2.0**-9, 128.0
    circuit = inverse_sqrt_wide(a, b, rel_tol=2.0**-12, max_stage_levels=8)  # boot-n16-128's stages
    # the input arrives with the levels of the input map and the first reduction only (and the spare level a
    # bootstrapping refresh shrinks in), as at boot-n16-128: the running product is refreshed, and observed,
    # before the last polynomial
    (_, map_levels), (_, reduction_levels) = circuit.stages()[:2]
    inside = np.exp(kit.rng.uniform(np.log(a), np.log(b), kit.params.slots))
    inside[:2] = [a, b]
    below = inside.copy()
    below[9] = a / 2

    def read(values):
        ind = kit.fresh_indicator()
        ind.squarings = 4
        ct = kit.refresh.refresh([kit.encrypt(values, level=1)], "norm input", domain=(a, b),
                                 level=map_levels + reduction_levels + 1)[0]  # + the refresh's shrink
        circuit.evaluate(kit.ev, ct, refresh=kit.refresh)
        return ind.read(kit.client.decryptor, kit.params.slots)

    clean = read(inside)
    assert clean.clean and not clean.suspect, clean.summary()
    stages = [s.stage for s in clean.stages]
    assert "inverse_sqrt_wide finish r" in stages, f"the running product was never observed: {stages}"
    flagged = read(below)
    assert flagged.flagged == ["inverse_sqrt_wide finish r"], flagged.summary()
    assert "norm input" not in flagged.flagged  # x's own interval does not see it


def test_two_ciphertexts_share_one_bootstrapping(kit):
    """A refresh of several ciphertexts bootstraps them two at a time (a + i b, the complex circuit): each comes
    back within twice its own bound's error (one bit more than alone), with its own mask and fill,
    real, and free of the other's imaginary part (large here on purpose); an odd one goes alone. The level
    simulator counts the same bootstraps."""
    n = kit.params.slots
    stats = BootstrapStats()
    r = BootstrapRefresh(kit.ev, kit.refresh.boot, stats)
    x, y, z = (kit.rng.uniform(-b, b, n) for b in (3.0, 0.5, 1.0))
    noisy = y + 1j * kit.rng.uniform(-0.5, 0.5, n)
    valid = np.arange(n) % 4 != 1
    cts = [kit.encrypt(x, level=1), kit.encrypt(noisy, level=3), kit.encrypt(z, level=2)]
    out = r.refresh(cts, "three", domains=[(-3.0, 3.0), (-0.5, 0.5), (-1.0, 1.0)], valid=[valid] * 3, fill=0.25)
    assert stats.bootstraps == 2 and stats.paired == 1 and stats.by_stage == {"three": 2}
    assert sorted(stats.levels["three"]["in"]) == [1, 2, 3]
    for ct, want, bound, alone in zip(out, (x, y, z), (3.0, 0.5, 1.0), (False, False, True)):
        assert ct.level == r.top_level and ct.scale == kit.params.scale
        got = kit.client.decryptor.decrypt(ct, n)
        error = r.model.error(bound) * (1 if alone else 2)
        assert np.max(np.abs(got.real - np.where(valid, want, 0.25))) < error, (bound, alone)
        assert np.max(np.abs(got.imag)) < error
    sim = SimEvaluator(kit.params)
    sim_stats = BootstrapStats()
    rs = BootstrapRefresh(sim, SimBootstrapper(sim, bootstrap_config(kit.params)), sim_stats)
    rs.refresh([sim.fresh(1), sim.fresh(3), sim.fresh(2)], "three", domains=[(-3.0, 3.0), (-0.5, 0.5), (-1.0, 1.0)])
    assert (sim_stats.bootstraps, sim_stats.paired) == (2, 1)


def test_pairs_cost_less_than_two_alone(kit):
    """``pair=False`` bootstraps each ciphertext alone: two real bootstrappings against one complex, which has
    the same EvalMod products (two) and one set of transforms: about half the rotations."""
    n = kit.params.slots
    cts = [kit.encrypt(kit.rng.uniform(-1, 1, n), level=1) for _ in range(2)]
    products = {}
    for pair in (True, False):
        stats = BootstrapStats()
        before = dict(kit.ev.counters)
        BootstrapRefresh(kit.ev, kit.refresh.boot, stats, pair=pair).refresh(cts, "two", domain=(-1.0, 1.0))
        products[pair] = {k: kit.ev.counters[k] - before[k] for k in ("ct_mults", "rotations")}
        assert stats.bootstraps == (1 if pair else 2)
    assert products[True]["ct_mults"] == products[False]["ct_mults"], products
    assert products[True]["rotations"] < 0.6 * products[False]["rotations"], products
