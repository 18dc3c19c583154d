"""The level/scale simulator: it plans what the real evaluator then does, level for level and scale for scale."""

import math

import numpy as np
import pytest

from fhectl.circuits import approximations as A
from fhectl.circuits import polynomial as P
from fhectl.circuits.levels import (Approx, Custom, Linear, MulConst, MulCt, Poly, Rescale, SimEvaluator,
                                    simulate, trace)
from fhectl.circuits.linear import PackedLinear
from fhectl.circuits.packing import Layout
from fhectl.errors import LevelError, ScaleMismatchError


def _stages(params):
    rng = np.random.default_rng(5)
    lt = PackedLinear(rng.normal(size=(8, 8)) / 3, rng.normal(size=8), Layout(slots=params.slots, tokens=4, chunk=8))
    gelu = A.gelu(-4.0, 4.0, degree=15)
    return lt, [
        Linear(lt, name="c_fc"),
        Poly(gelu, name="gelu"),
        MulCt(name="square"),
        Rescale(),
        MulConst(),
        Rescale(),
        Approx(A.exp(-3.0, 3.0, squarings=2)),
        Poly(7, name="degree 7"),
        Custom(lambda ev, ct: ev.rescale(ev.mul(ct, ev.drop_level(ct, ct.level - 1))), name="mixed levels"),
    ]


def test_plan_agrees_with_the_real_evaluator(make_kit, deep_params):
    lt, stages = _stages(deep_params)
    kit = make_kit(deep_params, "circuits/levels", rotations=tuple(lt.rotation_steps()))
    plan = simulate(stages, deep_params)
    assert plan.fits and plan.refresh_before == []
    ev = kit.evaluator
    ct = kit.encryptor.encrypt(np.tile(np.linspace(-0.5, 0.5, 32), kit.params.slots // 32))
    for stage, report in zip(stages, plan.stages):
        before = dict(ev.counters)
        assert (ct.level, ct.scale) == (report.level_in, report.scale_in)
        ct = stage.run(ev, ct)
        assert (ct.level, ct.scale) == (report.level_out, report.scale_out), report.name
        assert {k: ev.counters[k] - before[k] for k in before} == report.counters, report.name
    assert plan.levels_used == deep_params.max_level - ct.level
    assert [s.levels_used for s in plan.stages] == [1, 5, 0, 1, 0, 1, 6, 4, 2]
    assert "gelu" in plan.table()


def test_refreshes_are_placed_where_the_chain_runs_out(deep_params):
    _, stages = _stages(deep_params)
    short = simulate(stages, deep_params, level=8)
    # from level 8: c_fc (1), gelu (5), square + rescale (1), constant + rescale (1) use all 8; exp (6) cannot
    assert not short.fits and short.failed_at == 6 and "exp needs 6 levels" in short.reason
    plan = simulate(stages, deep_params, level=8, refresh_level=9)
    # refreshed to 9: exp leaves 3, too few for the degree-7 series (4), refreshed again, 5 left for the rest
    assert plan.fits and plan.refresh_before == [6, 7]
    assert [s.level_in for s in plan.stages[6:]] == [9, 9, 5]
    assert all(s.level_out >= 0 for s in plan.stages)
    def power_2_25(ev, ct):  # 25 squarings: deeper than the whole chain
        for _ in range(25):
            ct = ev.rescale(ev.mul(ct, ct))
        return ct

    too_deep = simulate([Custom(power_2_25)], deep_params, refresh_level=deep_params.max_level)
    assert not too_deep.fits and too_deep.failed_at == 0


def test_simulator_raises_like_the_evaluator(deep_kit, deep_params):
    sim = SimEvaluator(deep_params)
    a = sim.fresh()
    sq = sim.mul(a, a)
    with pytest.raises(ScaleMismatchError):
        sim.add(sq, a)
    with pytest.raises(ScaleMismatchError):
        deep_kit.evaluator.add(deep_kit.evaluator.mul(*(2 * [deep_kit.encryptor.encrypt([1.0])])),
                               deep_kit.encryptor.encrypt([1.0]))
    with pytest.raises(LevelError):
        sim.rescale(sim.fresh(level=0))
    with pytest.raises(LevelError):
        sim.drop_level(sim.fresh(level=3), 4)
    with pytest.raises(LevelError):
        sim.mul_const(sim.fresh(level=0), 0.5)


def test_trace_reports_depth_and_products(deep_params):
    poly = P.chebyshev_interpolant(np.sin, -3.0, 3.0, 31)
    out, counters, steps = trace(lambda ev, ct: P.evaluate(ev, ct, poly), deep_params)
    assert deep_params.max_level - out.level == P.depth(poly) == math.ceil(math.log2(32)) + 1
    assert counters["ct_mults"] == P.cost(poly)["ct_mults"] and steps == set()


# -- one set of rules: the simulator and the evaluator raise the same errors ----------------------------

INF = float("inf")

# Each case: fn(ev, fresh, encode) with fresh(level, relinearized) a ciphertext at the top scale.
MISMATCHES = {
    "add: scales differ": lambda ev, fresh, enc: ev.add(ev.mul(fresh(), fresh()), fresh()),
    "sub: sizes differ": lambda ev, fresh, enc: ev.sub(fresh(product=True), ev.mul(fresh(), fresh())),
    "add: plaintext too low": lambda ev, fresh, enc: ev.add(fresh(), enc([0.5], level=1)),
    "add: plaintext scale": lambda ev, fresh, enc: ev.add(fresh(), enc([0.5], scale=2.0**30)),
    "add: infinite constant": lambda ev, fresh, enc: ev.add(fresh(), INF),
    "sub: NaN constant": lambda ev, fresh, enc: ev.sub(fresh(), complex(float("nan"), 0.0)),
    "mul: not relinearized": lambda ev, fresh, enc: ev.mul(fresh(product=True), fresh()),
    "mul: plaintext too low": lambda ev, fresh, enc: ev.mul(fresh(), enc([0.5], level=2)),
    "mul_const: level 0": lambda ev, fresh, enc: ev.mul_const(fresh(level=0), 0.5),
    "mul_const: infinite": lambda ev, fresh, enc: ev.mul_const(fresh(), INF),
    "mul_const: target out of reach": lambda ev, fresh, enc: ev.mul_const(fresh(), 0.5, target_scale=2.0**-80),
    "mul: infinite constant": lambda ev, fresh, enc: ev.mul(fresh(), INF),
    "mul_values: level 0": lambda ev, fresh, enc: ev.mul_values(fresh(level=0), [0.5]),
    "rescale: level 0": lambda ev, fresh, enc: ev.rescale(fresh(level=0)),
    "drop_level: up": lambda ev, fresh, enc: ev.drop_level(fresh(level=3), 4),
    "drop_level: below 0": lambda ev, fresh, enc: ev.drop_level(fresh(), -1),
    "rotate: not relinearized": lambda ev, fresh, enc: ev.rotate(fresh(product=True), 1),
    "rotate_hoisted: not relinearized": lambda ev, fresh, enc: ev.rotate_hoisted(fresh(product=True), [0, 1]),
    "conjugate: not relinearized": lambda ev, fresh, enc: ev.conjugate(fresh(product=True)),
    "unsupported operand": lambda ev, fresh, enc: ev.add(fresh(), "0.5"),
    # not mismatches: the same outcome on both, no error
    "rotate by 0 of a product": lambda ev, fresh, enc: ev.rotate(fresh(product=True), 0),
    "add a complex constant": lambda ev, fresh, enc: ev.add(fresh(), 0.5 + 0.0j),
    "mul_const onto a target": lambda ev, fresh, enc: ev.mul_const(fresh(), 0.5, target_scale=2.0**30),
}


def _outcome(fn, ev, fresh, encode):
    try:
        out = fn(ev, fresh, encode)
    except Exception as exc:  # noqa: BLE001 - the error itself is what is compared
        return type(exc), str(exc)
    out = next(iter(out.values())) if isinstance(out, dict) else out
    return "ok", out.level, out.scale, out.size


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_simulator_and_evaluator_raise_the_same_errors(case, deep_kit):
    fn = MISMATCHES[case]
    kit, sim = deep_kit, SimEvaluator(deep_kit.params)

    def real_fresh(level=None, product=False):
        ev = kit.evaluator
        ct = kit.encryptor.encrypt([0.5])
        ct = ev.mul(ct, ct, relinearize=False) if product else ct
        return ct if level is None else ev.drop_level(ct, level)

    def sim_fresh(level=None, product=False):
        ct = sim.fresh(level)
        return sim.mul(ct, ct, relinearize=False) if product else ct

    real = _outcome(fn, kit.evaluator, real_fresh, kit.evaluator.encoder.encode)
    simulated = _outcome(fn, sim, sim_fresh, sim.encoder.encode)
    assert simulated == real
    assert real[0] != "ok" or case in ("rotate by 0 of a product", "add a complex constant",
                                       "mul_const onto a target")
