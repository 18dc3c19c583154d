"""Wide-range 1/sqrt(x) (9 decades), SiLU and GELU on [-128, 128]: plaintext error on the real ranges,
homomorphic evaluation against the plaintext twin, refreshes and level errors."""

import numpy as np
import pytest

from fhectl.circuits import approximations as A
from fhectl.circuits import wide as W
from fhectl.circuits.levels import SimEvaluator
from fhectl.circuits.protocols import SecretKeyRefresher
from fhectl.ckks.precision import fresh_precision_bits, precision_bits
from fhectl.errors import LevelError


@pytest.mark.parametrize("a,b", [(1e-6, 1e3), (1e-3, 1e6)])
def test_inverse_sqrt_over_nine_decades(a, b):
    s = W.inverse_sqrt_wide(a, b)
    assert s.max_rel_error <= 2**-12
    x = np.geomspace(a, b, 100001)
    assert np.max(np.abs(s.eval_plain(x) * np.sqrt(x) - 1.0)) <= 2**-12
    assert s.depth() == sum(n for _, n in s.stages()) and s.depth() <= 24
    # the narrow circuit (a seed on [1, 100]) is useless here
    narrow = A.inverse_sqrt(1.0, 100.0, max_seed_degree=15)
    with np.errstate(all="ignore"):
        assert not np.all(np.abs(narrow.eval_plain(x) * np.sqrt(x) - 1.0) <= 1.0)


def test_inverse_sqrt_out_scale_keeps_outputs_small():
    s = W.inverse_sqrt_wide(1e-6, 1e3, out_scale=2**-4)
    x = np.geomspace(1e-6, 1e3, 20001)
    assert np.max(np.abs(s.eval_plain(x))) <= 2**6.1 and s.max_rel_error <= 2**-12


@pytest.mark.parametrize("kind", ["silu", "gelu"])
def test_activations_on_wide_range(kind):
    f = W.silu_wide() if kind == "silu" else W.gelu_wide()
    x = np.linspace(-128.0, 128.0, 100001)
    err = np.abs(f.eval_plain(x) - f.reference(x))
    assert np.all(err <= 1e-4 * np.abs(x) + 1e-12) and f.max_gate_error <= 1e-4
    inner = np.abs(x) <= 8
    assert err[inner].max() <= 1e-3
    assert f.depth() == 11
    # the old interpolant on [-8, 8] diverges on the wide range
    if kind == "gelu":
        assert np.max(np.abs(A.gelu(-8.0, 8.0).eval_plain(x) - f.reference(x))) > 1.0


def _check(kit, ap, x, ct, out, extra_bits):
    got = kit.decryptor.decrypt(out).real
    assert precision_bits(got, ap.eval_plain(x)) >= fresh_precision_bits(kit.params) - extra_bits
    assert out.scale == pytest.approx(ct.scale, rel=1e-12)


def test_homomorphic_inverse_sqrt_wide(deep_kit):
    kit, ev = deep_kit, deep_kit.evaluator
    ap = W.inverse_sqrt_wide(1e-3, 1e6, out_scale=2**-4)
    x = np.geomspace(1e-3, 1e6, kit.params.slots)
    ct = kit.encryptor.encrypt(x)
    out = ap.evaluate(ev, ct)
    _check(kit, ap, x, ct, out, 12)
    assert ct.level - out.level == ap.depth()
    sim = SimEvaluator(kit.params)
    assert ap.evaluate(sim, sim.fresh()).level == kit.params.max_level - ap.depth()


@pytest.mark.parametrize("kind", ["silu", "gelu"])
def test_homomorphic_activation(deep_kit, kind):
    kit, ev = deep_kit, deep_kit.evaluator
    ap = W.silu_wide() if kind == "silu" else W.gelu_wide()
    x = np.concatenate([np.linspace(-128, 128, 256), kit.rng.uniform(-8, 8, kit.params.slots - 256)])
    ct = kit.encryptor.encrypt(x)
    out = ap.evaluate(ev, ct)
    _check(kit, ap, x, ct, out, 10)
    assert ct.level - out.level == ap.depth()


def test_refresher_called_when_levels_run_out(deep_kit):
    kit, ev = deep_kit, deep_kit.evaluator
    ap = W.inverse_sqrt_wide(1e-3, 1e6, out_scale=2**-4)
    x = np.geomspace(1e-3, 1e6, kit.params.slots)
    ct = ev.drop_level(kit.encryptor.encrypt(x), 12)
    refresh = SecretKeyRefresher(kit.encryptor, kit.decryptor)
    out = ap.evaluate(ev, ct, refresh=refresh)
    assert refresh.calls and all(c.startswith("inverse_sqrt_wide") for c in refresh.calls)
    _check(kit, ap, x, ct, out, 12)
    with pytest.raises(LevelError, match=r"inverse_sqrt_wide .* needs \d+ levels"):
        ap.evaluate(ev, ct)
    with pytest.raises(LevelError, match=r"silu_wide needs 11 levels"):
        W.silu_wide().evaluate(ev, ev.drop_level(ct, 5))


def test_silu_split_for_a_short_refresh(deep_kit):
    """With 8 levels per refresh (boot-n16-128 bootstrapping), SiLU on [-128, 128] (11 levels whole) becomes a
    Cheon map and a gate with one refresh between (every stage <= 8), still within its tolerance; evaluated
    with a refresher that returns level 8, it refreshes the map's output once and keeps the precision."""
    kit, ev = deep_kit, deep_kit.evaluator
    whole = W.silu_wide()
    split = W.silu_wide(max_stage_levels=8)
    assert whole.depth() > 8 and max(split.stage_depths()) <= 8 and split.maps
    assert split.gate_error() <= 1e-4

    class ShortRefresher(SecretKeyRefresher):
        """Re-encrypts at level 8, as a bootstrapping refresh of boot-n16-128 returns."""

        def ensure_levels_all(self, cts, levels, stage):
            if all(c.level >= levels for c in cts):
                return cts
            self.calls.append(stage)
            return [self.encryptor.encrypt(self.decryptor.decrypt(c).real, level=8) for c in cts]

    x = np.concatenate([np.linspace(-128, 128, 256), kit.rng.uniform(-8, 8, kit.params.slots - 256)])
    ct = kit.encryptor.encrypt(x, level=8)
    refresh = ShortRefresher(kit.encryptor, kit.decryptor)
    out = split.evaluate(ev, ct, refresh=refresh)
    assert refresh.calls == ["silu_wide gate"]
    _check(kit, split, x, ct, out, 10)


@pytest.mark.parametrize("a, b", [(2.0**-9, 128.0)])  # SmolLM2 block 5 (scaled)
def test_running_products_lie_in_their_bounds_and_rise_below_the_domain(a, b):
    """r_i, the running products a refresh inside the 1/sqrt sees, stay within ``r_bound`` on the whole domain (a
    dense grid, 20x the one kappa was measured on), and read clean there (k = 4 squarings, as boot-n16-128's 8
    refreshed levels allow); for x = a / 2 (x's own interval spans decades, so x reads about 1 at its edge) some
    r_i reads above 1.1, which flags it (each norm's r is its own stage: one observation, threshold 1 + tol)."""
    from fhectl.circuits.range_indicator import indicator_value

    c = W.inverse_sqrt_wide(a, b, rel_tol=2.0**-12, max_stage_levels=8)
    assert c.steps, "a domain this wide takes a range reduction"
    x = np.unique(np.concatenate([np.geomspace(a, b, 400_001), np.linspace(a, b, 100_001)]))
    _, products = c.running_products_plain(x)
    for i, r in enumerate(products):
        lo, hi = c.r_bound(i)
        assert lo < r.min() and r.max() < hi
        assert indicator_value(float(r.max()), (lo, hi), squarings=4) < 0.8  # a's own: inside, room for noise
    assert indicator_value(a / 2, c.domain, squarings=4) < 1.001  # the norm's input alone: about 1
    _, below = c.running_products_plain(np.array([a / 2]))
    assert max(indicator_value(float(r[0]), c.r_bound(i), squarings=4) for i, r in enumerate(below)) > 1.1
