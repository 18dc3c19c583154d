"""Levels and scales without the arithmetic: a simulator that plans depth.

``SimEvaluator`` has the interface of ``fhectl.ckks.evaluator.Evaluator``
(the methods the circuits use) but works on ``SimCiphertext`` records that
carry only a level and a scale. It repeats the evaluator's bookkeeping float
for float: a product multiplies scales, ``rescale`` divides by the top prime
q_l of the real chain, ``mul_const`` encodes at q_l (or at target * q_l /
scale), additions check scales with the same tolerance and raise the same
errors: both call the rules of ``fhectl.ckks.bookkeeping``, so they cannot
drift apart. It keeps the same counters (ct_mults, rescales, rotations,
key_switch) and records every rotation step it was asked for. So the circuits
of this package (polynomials, approximations, linear transforms) run on it
unchanged and predict, in microseconds, the level, scale and key-switch count
the real evaluator will produce (Lattigo keeps such a simulator next to its
evaluator for the same purpose).

On top of it, ``simulate(stages, params)`` plans a sequence of stages
(products, constants, rescales, polynomials, approximations, linear
transforms, or any callable over an evaluator): levels used and scale after
each stage, whether the sequence fits the chain, and, given the level a
refresh (bootstrapping, or a client round trip) returns to, where to put the
refreshes:

    stages = [Linear(c_fc), Approx(gelu_approx), Linear(c_proj)]
    plan = simulate(stages, params, refresh_level=params.max_level)
    plan.fits, plan.refresh_before, print(plan.table())
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fhectl.ckks import bookkeeping as bk
from fhectl.ckks.params import Parameters
from fhectl.circuits.polynomial import ChebyshevPoly, evaluate as evaluate_poly
from fhectl.circuits.protocols import Approximation
from fhectl.errors import InputError, LevelError


# -- the simulated evaluator ----------------------------------------------------------------------


@dataclass
class SimCiphertext:
    """What the simulator tracks of a ciphertext: level, scale, size (3 between product and relinearization)."""

    level: int
    scale: float
    slots: int
    size: int = 2

    @property
    def log_scale(self) -> float:
        return math.log2(self.scale)


@dataclass
class SimPlaintext:
    level: int
    scale: float
    slots: int


class _SimEncoder:
    """Encodes only a level and a scale. Circuits may pass ``values=None`` here (``needs_values`` is False)
    to skip computing plaintext vectors that the simulation would throw away."""

    needs_values = False

    def __init__(self, params: Parameters):
        self.params = params

    def encode(self, values, level: int | None = None, scale: float | None = None) -> SimPlaintext:
        p = self.params
        level = p.max_level if level is None else level
        if not 0 <= level <= p.max_level:
            raise LevelError(f"level {level} is outside 0..{p.max_level}")
        n = p.slots if values is None else int(np.asarray(values).shape[0])
        if n > p.slots:
            raise InputError(f"{n} values do not fit in {p.slots} slots (N = {p.ring_degree})")
        return SimPlaintext(level=level, scale=p.scale if scale is None else float(scale), slots=n)


class _SimContext:
    def __init__(self, params: Parameters):
        self.params = params


class SimEvaluator:
    """The evaluator's level and scale bookkeeping on ``SimCiphertext``: no keys, no arithmetic."""

    def __init__(self, params: Parameters):
        self.params = params
        self.ctx = _SimContext(params)
        self.encoder = _SimEncoder(params)
        self.counters = {"key_switch": 0, "rotations": 0, "rescales": 0, "ct_mults": 0}
        self.rotation_steps: set[int] = set()  # every nonzero step (mod N/2) asked for
        self.rotation_levels: dict[int, int] = {}  # step (mod N/2) -> the highest level it rotates at

    def fresh(self, level: int | None = None, scale: float | None = None) -> SimCiphertext:
        """A simulated fresh ciphertext (top level and Delta unless given)."""
        p = self.params
        return SimCiphertext(level=p.max_level if level is None else level,
                             scale=p.scale if scale is None else float(scale), slots=p.slots)

    # -- levels ---------------------------------------------------------------------------------
    def drop_level(self, ct: SimCiphertext, level: int) -> SimCiphertext:
        bk.check_drop(ct.level, level)
        return ct if level == ct.level else SimCiphertext(level, ct.scale, ct.slots, ct.size)

    def rescale(self, ct: SimCiphertext) -> SimCiphertext:
        scale = bk.rescaled_scale(ct.level, ct.scale, self.params.moduli_q)
        self.counters["rescales"] += 1
        return SimCiphertext(ct.level - 1, scale, ct.slots, ct.size)

    def mul_rescale(self, a, b):
        return self.rescale(self.mul(a, b))

    # -- additions ------------------------------------------------------------------------------
    def _add_sub(self, a: SimCiphertext, b, name: str) -> SimCiphertext:
        if isinstance(b, SimCiphertext):
            level = min(a.level, b.level)
            bk.check_scales(a.scale, b.scale, name)
            bk.check_same_size(a.size, b.size, name)
            return SimCiphertext(level, a.scale, a.slots, a.size)
        if isinstance(b, SimPlaintext):
            bk.check_scales(a.scale, b.scale, name)
            bk.check_plain_level(b.level, a.level)
            return SimCiphertext(a.level, a.scale, a.slots, a.size)
        if bk.is_constant(b):
            if not (isinstance(b, complex) and b.imag != 0):  # a complex constant is encoded, as a plaintext
                bk.check_constant(b, name)
            return SimCiphertext(a.level, a.scale, a.slots, a.size)
        raise InputError(f"{name}: unsupported operand type {type(b).__name__}")

    def add(self, a, b):
        return self._add_sub(a, b, "add")

    def sub(self, a, b):
        return self._add_sub(a, b, "sub")

    def neg(self, a: SimCiphertext) -> SimCiphertext:
        return SimCiphertext(a.level, a.scale, a.slots, a.size)

    # -- products -------------------------------------------------------------------------------
    def mul(self, a: SimCiphertext, b, relinearize: bool = True):
        if isinstance(b, SimCiphertext):
            bk.check_product_sizes(a.size, b.size)
            self.counters["ct_mults"] += 1
            prod = SimCiphertext(min(a.level, b.level), a.scale * b.scale, a.slots, 3)
            return self.relinearize(prod) if relinearize else prod
        if isinstance(b, SimPlaintext):
            bk.check_plain_level(b.level, a.level)
            return SimCiphertext(a.level, a.scale * b.scale, a.slots, a.size)
        if bk.is_real_constant(b):
            return self.mul_const(a, float(b))
        raise InputError(f"mul: unsupported operand type {type(b).__name__}")

    def square(self, a):
        return self.mul(a, a)

    def relinearize(self, ct: SimCiphertext) -> SimCiphertext:
        if ct.size == 2:
            return ct
        self.counters["key_switch"] += 1
        return SimCiphertext(ct.level, ct.scale, ct.slots, 2)

    def mul_int(self, a: SimCiphertext, k: int) -> SimCiphertext:
        return SimCiphertext(a.level, a.scale, a.slots, a.size)

    def mul_const(self, a: SimCiphertext, c: float, target_scale: float | None = None) -> SimCiphertext:
        const_scale = bk.const_scale(c, a.level, a.scale, self.params.moduli_q, target_scale)
        return SimCiphertext(a.level, a.scale * const_scale, a.slots, a.size)

    def mul_values(self, a: SimCiphertext, values) -> SimCiphertext:
        scale = bk.values_scale(a.level, self.params.moduli_q)
        return self.mul(a, self.encoder.encode(values, level=a.level, scale=scale))

    # -- rotations ------------------------------------------------------------------------------
    def _rotation(self, ct: SimCiphertext, step: int) -> SimCiphertext:
        s = int(step) % self.params.slots
        if s:  # a zero step is a copy, of any size
            bk.check_relinearized(ct.size, f"rotation by {s}")
            self.rotation_steps.add(s)
            self.rotation_levels[s] = max(self.rotation_levels.get(s, 0), ct.level)
            self.counters["rotations"] += 1
            self.counters["key_switch"] += 1
        return SimCiphertext(ct.level, ct.scale, ct.slots, ct.size)

    def rotate(self, ct: SimCiphertext, step: int) -> SimCiphertext:
        return self._rotation(ct, step)

    def rotate_hoisted(self, ct: SimCiphertext, steps) -> dict[int, SimCiphertext]:
        bk.check_relinearized(ct.size, "rotate_hoisted")
        return {int(s): self._rotation(ct, s) for s in steps}

    def conjugate(self, ct: SimCiphertext) -> SimCiphertext:
        bk.check_relinearized(ct.size, "conjugation")
        self.counters["key_switch"] += 1
        return SimCiphertext(ct.level, ct.scale, ct.slots, ct.size)


# -- stages ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MulCt:
    """A product with another ciphertext at the running ciphertext's level and ``other_scale`` (default: the
    running scale, i.e. a square). No rescale: follow with ``Rescale()``."""

    other_scale: float | None = None
    name: str = "mul ct"

    def run(self, ev, ct):
        if self.other_scale is None:
            return ev.mul(ct, ct)
        return ev.mul(ct, SimCiphertext(ct.level, self.other_scale, ct.slots))


@dataclass(frozen=True)
class MulConst:
    """A product with a real constant encoded at scale q_l (or landing on ``target_scale`` after the rescale)."""

    target_scale: float | None = None
    name: str = "mul const"

    def run(self, ev, ct):
        return ev.mul_const(ct, 1.0, self.target_scale)


@dataclass(frozen=True)
class Rescale:
    name: str = "rescale"

    def run(self, ev, ct):
        return ev.rescale(ct)


@dataclass(frozen=True)
class Poly:
    """A Chebyshev series (``fhectl.circuits.polynomial.ChebyshevPoly``), or the worst case of a degree: all
    coefficients nonzero, on a general interval unless ``mapped``."""

    poly: object  # ChebyshevPoly or int degree
    mapped: bool = False
    name: str = "poly"

    def run(self, ev, ct):
        poly = self.poly
        if isinstance(poly, int):
            poly = ChebyshevPoly(tuple([1.0] * (poly + 1)), -2.0, 2.0)
        return evaluate_poly(ev, ct, poly, mapped=self.mapped)


@dataclass(frozen=True)
class Approx:
    """Any ``fhectl.circuits.protocols.Approximation`` (Exp, Inverse, InverseSqrt, the wide circuits)."""

    approx: Approximation
    name: str = ""

    def run(self, ev, ct):
        return self.approx.evaluate(ev, ct)


@dataclass(frozen=True)
class Linear:
    """A ``fhectl.circuits.linear.PackedLinear``: the running ciphertext stands for every input chunk."""

    transform: object
    name: str = "linear"

    def run(self, ev, ct):
        outs = self.transform.apply(ev, [ct] * self.transform.n_in)
        return outs[0]


@dataclass(frozen=True)
class Custom:
    """Any circuit ``fn(evaluator, ct) -> ct`` written against the evaluator's interface."""

    fn: Callable
    name: str = "custom"

    def run(self, ev, ct):
        return self.fn(ev, ct)


def _stage_name(stage) -> str:
    name = getattr(stage, "name", "") or ""
    if name:
        return name
    inner = getattr(stage, "approx", None)
    if inner is None:
        return type(stage).__name__
    return getattr(inner, "name", "") or type(inner).__name__


@dataclass(frozen=True)
class StageReport:
    name: str
    level_in: int
    level_out: int
    scale_in: float
    scale_out: float
    counters: dict  # what the stage cost: ct_mults, rescales, rotations, key_switch
    refreshed: bool  # a refresh was put right before this stage

    @property
    def levels_used(self) -> int:
        return self.level_in - self.level_out


@dataclass
class Plan:
    stages: list[StageReport] = field(default_factory=list)
    fits: bool = True
    failed_at: int | None = None  # index of the first stage that does not fit (no refresh possible)
    reason: str = ""

    @property
    def refresh_before(self) -> list[int]:
        return [i for i, s in enumerate(self.stages) if s.refreshed]

    @property
    def levels_used(self) -> int:
        return sum(s.levels_used for s in self.stages)

    @property
    def final_level(self) -> int | None:
        return self.stages[-1].level_out if self.stages else None

    def table(self) -> str:
        rows = [f"{'#':>3} {'stage':<24} {'level':>9} {'used':>4} {'log2 scale':>11} {'ct*ct':>5} {'rot':>5} {'ks':>5}"]
        for i, s in enumerate(self.stages):
            mark = "R " if s.refreshed else "  "
            rows.append(f"{i:>3} {mark}{s.name:<22} {s.level_in:>4}->{s.level_out:<3} {s.levels_used:>4} "
                        f"{math.log2(s.scale_out):>11.4f} {s.counters['ct_mults']:>5} {s.counters['rotations']:>5} "
                        f"{s.counters['key_switch']:>5}")
        if not self.fits:
            rows.append(f"does not fit at stage {self.failed_at}: {self.reason}")
        return "\n".join(rows)


def simulate(stages, params: Parameters, level: int | None = None, scale: float | None = None,
             refresh_level: int | None = None, min_level: int = 0) -> Plan:
    """Run ``stages`` on the simulator from a ciphertext at ``level`` and ``scale`` (default: fresh).

    A stage that would need more levels than are left (or leave fewer than ``min_level``) is, when
    ``refresh_level`` is given, preceded by a refresh that returns the ciphertext to ``refresh_level``
    and scale Delta; otherwise, or when even a fresh ciphertext is too short for it, the plan stops
    there with ``fits = False``.
    """
    ev = SimEvaluator(params)
    ct = ev.fresh(level, scale)
    plan = Plan()
    for i, stage in enumerate(stages):
        refreshed = False
        attempt = 0
        while True:
            before = dict(ev.counters)
            try:
                out = stage.run(ev, ct)
                if out.level < min_level:
                    raise LevelError(f"stage leaves level {out.level}, below the minimum {min_level}")
                break
            except LevelError as exc:
                ev.counters = before
                if refresh_level is None or attempt:
                    plan.fits, plan.failed_at, plan.reason = False, i, str(exc)
                    return plan
                ct = ev.fresh(refresh_level)
                refreshed = True
                attempt += 1
        cost = {k: ev.counters[k] - before[k] for k in ev.counters}
        plan.stages.append(StageReport(_stage_name(stage), ct.level, out.level, ct.scale, out.scale, cost, refreshed))
        ct = out
    return plan


def trace(fn, params: Parameters, level: int | None = None, scale: float | None = None):
    """Run ``fn(evaluator, ct)`` on the simulator: (output SimCiphertext, counters, rotation steps used)."""
    ev = SimEvaluator(params)
    out = fn(ev, ev.fresh(level, scale))
    return out, dict(ev.counters), set(ev.rotation_steps)


__all__ = [
    "SimCiphertext",
    "SimPlaintext",
    "SimEvaluator",
    "MulCt",
    "MulConst",
    "Rescale",
    "Poly",
    "Approx",
    "Linear",
    "Custom",
    "StageReport",
    "Plan",
    "simulate",
    "trace",
]
