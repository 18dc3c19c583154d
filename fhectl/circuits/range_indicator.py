"""Out-of-domain detection when nobody decrypts in the middle of a block: a homomorphic range indicator.

With client refresh the key holder sees every refreshed value and checks it against the domain of the next
approximation (``fhectl.circuits.refresh.ClientRefresh``). With bootstrapping the server runs the whole block
alone, so the check has to travel with the ciphertexts. On every refreshed ciphertext x with a domain [a, b]
the server evaluates

    p(x) = ((x - mid) / half)^(2^k),   mid = (a + b) / 2,  half = (b - a) / 2,

which is in [0, 1] inside the interval and grows fast outside: (1 + d)^(2^k) for a value d half-widths beyond
an edge (k = 6: 1.9 at d = 1%, 23 at d = 5%). The indicators of one stage of one block are summed, slot by
slot, into one ciphertext ("block 0 softmax", "block 0 silu", ...), which the server returns beside the
outputs; the key holder decrypts them at the end of the pass (``RangeIndicator.read``) and names every
stage with a slot above its threshold (see Resolution). The tolerance comes from the predicted error of the
refreshed values (bootstrapping's error, ``fhectl.circuits.bootstrap_refresh``): a value inside the interval
but within that error of an edge can read up to 1 + 2^k err / half, so

    tolerance = 4 * 2^k * max(err / half) + 2^-16,

and a value outside by more than about tolerance / 2^k half-widths is always flagged (``resolution``).

Wrapped values. Outside the interval p(x) can exceed the ciphertext's modulus, and the sum then decrypts to a
residue that is about uniform over [-Q_l / 2 Delta, Q_l / 2 Delta]. The accumulators are kept at level 1 (Q_1 /
Delta ~ 2^60 with the bootstrapping profiles), so a wrapped sum lands in the clean window [-tolerance,
1 + tolerance] with probability about 2^-58: it is flagged, not missed. Level 0 (2^8 of headroom) would not be
safe, which is why the accumulators stay one level up.

Resolution, said plainly: one ciphertext per block and stage name (``begin_block`` opens a block's section),
summed over the c calls of that stage in that block. In-domain terms are each at most 1, so their sum is at
most c:

* a slot above c (1 + tolerance) is certainly out of domain: ``out_of_domain``, an error for the caller. A
  single value is always caught once it is more than (c (1 + tolerance))^(2^-k) - 1 half-widths outside
  (``resolution``: 1.1% for c = 2, 4.4% for c = 16, 6.6% for c = 60 at k = 6);
* a slot between 1 + tolerance and c (1 + tolerance) is *suspect*: one value outside by less than that, or
  several values of the same slot and stage within a few percent of the edges (a sum cannot tell them
  apart). Suspect stages are reported (``IndicatorVerdict.suspect``, the summary line), not raised.

The report names the block and the stage ("block 3 softmax"). Keeping blocks apart costs one level-1
ciphertext per stage per block (2 MiB at N = 2^16: about 0.4 GiB for 30 blocks of 6 stages) and keeps c, and
so the resolution, that of one block however many blocks run; summed over 30 blocks, c would reach about 100
and a value would have to be 30% of a half-width outside (k = 4) to be flagged.

Levels: the affine map (1), k squarings (k), the product that lands on the accumulator's exact scale (1):
k + 2 levels from the refreshed ciphertext, which must leave at least ``ACCUMULATOR_LEVEL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fhectl.errors import LevelError

DEFAULT_SQUARINGS = 6
ACCUMULATOR_LEVEL = 1  # 2^60 of headroom over Delta: a wrapped sum cannot pass for a clean one (see above)
NOISE_FLOOR = 2.0**-16  # the indicator's own CKKS error (products of values <= 1 at scale ~2^52) is far below


@dataclass(frozen=True)
class StageVerdict:
    stage: str
    observations: int  # refreshed ciphertexts summed into this stage's indicator
    max_value: float  # the largest indicator slot (1 = a value on an edge)
    threshold: float  # observations * (1 + tolerance): above it, certainly out of domain
    resolution: float  # a value more than this many half-widths outside the interval is always flagged
    flagged_slots: int  # above ``threshold``
    suspect_slots: int  # above 1 + tolerance but not above ``threshold``

    @property
    def out_of_domain(self) -> bool:
        return self.flagged_slots > 0

    @property
    def suspect(self) -> bool:
        return self.suspect_slots > 0 and not self.out_of_domain


@dataclass(frozen=True)
class IndicatorVerdict:
    """What the key holder read: one line per stage, clean when no slot passed its threshold."""

    stages: tuple[StageVerdict, ...]

    @property
    def clean(self) -> bool:
        return not any(s.out_of_domain for s in self.stages)

    @property
    def flagged(self) -> list[str]:
        return [s.stage for s in self.stages if s.out_of_domain]

    @property
    def suspect(self) -> list[str]:
        return [s.stage for s in self.stages if s.suspect]

    def summary(self) -> str:
        if not self.stages:
            return "range indicator: nothing observed"
        worst = max(self.stages, key=lambda s: s.max_value / s.threshold)
        suspect = ("; SUSPECT (a value just outside, or several near an edge): " + ", ".join(
            f"{s.stage} ({s.suspect_slots} slots, reading up to {s.max_value:.3g})" for s in self.stages if s.suspect)
            if self.suspect else "")
        if self.clean:
            coarsest = max(s.resolution for s in self.stages)
            return (f"range indicator: clean ({sum(s.observations for s in self.stages)} refreshed ciphertexts in "
                    f"{len(self.stages)} stages; largest reading {worst.max_value:.3g} at {worst.stage}, threshold "
                    f"{worst.threshold:.4g}; a value {100 * coarsest:.2g}% of a half-width outside its interval "
                    f"would have failed){suspect}")
        return "range indicator: OUT OF DOMAIN at " + ", ".join(
            f"{s.stage} ({s.flagged_slots} slots, reading up to {s.max_value:.3g} > {s.threshold:.4g})"
            for s in self.stages if s.out_of_domain) + suspect

    def as_dict(self) -> dict:
        return {"clean": self.clean, "flagged": self.flagged, "suspect": self.suspect,
                "stages": [{**s.__dict__, "out_of_domain": s.out_of_domain} for s in self.stages]}


@dataclass
class _Accumulator:
    ct: object
    observations: int = 0
    tolerance: float = NOISE_FLOOR


@dataclass
class RangeIndicator:
    """The server's half: ``observe`` refreshed ciphertexts, keep one indicator ciphertext per stage.

    ``ev`` is an evaluator with public keys only (or the level simulator); ``scale`` the accumulators' exact
    scale (Delta)."""

    ev: object
    scale: float
    squarings: int = DEFAULT_SQUARINGS
    accumulators: dict[str, _Accumulator] = field(default_factory=dict)
    section: str = ""  # the block being observed: the accumulators' names start with it

    def begin_block(self, index: int) -> None:
        """The observations that follow belong to block ``index``: they go to that block's accumulators."""
        self.section = f"block {index}"

    def section_state(self, index: int) -> dict:
        """``public_state()`` restricted to block ``index``'s accumulators (what a per-block reading decrypts)."""
        prefix = f"block {index} "
        return {name: v for name, v in self.public_state().items() if name.startswith(prefix)}

    @staticmethod
    def fitting(ev, scale: float, levels: int) -> "RangeIndicator":
        """The most squarings (at most ``DEFAULT_SQUARINGS``) that ciphertexts refreshed to ``levels`` leave room
        for, mask product included: k = levels - 4 (8 refreshed levels, as boot-n16-128 gives: k = 4, so the
        resolution is coarser, (c (1 + tolerance))^(1/16) - 1: 4.4% for c = 2; ``resolution`` reports it)."""
        squarings = min(DEFAULT_SQUARINGS, levels - 3 - ACCUMULATOR_LEVEL)
        if squarings < 1:
            raise LevelError(f"range indicator: ciphertexts refreshed to level {levels} leave no room for it "
                             f"(it needs at least {4 + ACCUMULATOR_LEVEL})")
        return RangeIndicator(ev, scale, squarings)

    def depth(self) -> int:
        return self.squarings + 2

    def observe(self, ct, interval: tuple[float, float], stage: str, error: float, keep=None) -> None:
        """Add p(ct) to ``stage``'s indicator. ``error``: the predicted absolute error of ct's values (the
        tolerance is derived from it); ``keep``: a 0/1 slot vector of the slots to check (one more level),
        None for every slot."""
        ev = self.ev
        need = self.depth() + (keep is not None) + ACCUMULATOR_LEVEL
        if ct.level < need:
            raise LevelError(f"range indicator for {stage}: needs {need} levels, the refreshed ciphertext has "
                             f"{ct.level}")
        a, b = interval
        mid, half = 0.5 * (a + b), 0.5 * (b - a)
        z = ev.add(ev.rescale(ev.mul_const(ct, 1.0 / half)), -mid / half)  # l -> l-1, on [-1, 1] inside
        for _ in range(self.squarings):
            z = ev.rescale(ev.square(z))  # one level each: z^(2^k)
        if keep is not None:
            z = ev.rescale(ev.mul_values(z, keep))  # zero outside the checked slots
        z = ev.rescale(ev.mul_const(z, 1.0, target_scale=self.scale))  # lands on the accumulators' scale
        z.scale = self.scale  # equal up to float rounding of the constant's scale
        z = ev.drop_level(z, ACCUMULATOR_LEVEL)
        name = f"{self.section} {stage}" if self.section else stage
        acc = self.accumulators.get(name)
        tol = 4.0 * 2.0**self.squarings * error / half + NOISE_FLOOR
        if acc is None:
            self.accumulators[name] = _Accumulator(z, 1, tol)
        else:
            acc.ct = ev.add(acc.ct, z)
            acc.observations += 1
            acc.tolerance = max(acc.tolerance, tol)

    def public_state(self) -> dict:
        """What the server returns with the outputs: per accumulator ("block i stage", or the stage alone when
        no block was begun) the ciphertext, its count and tolerance."""
        return {stage: (a.ct, a.observations, a.tolerance) for stage, a in self.accumulators.items()}

    def read(self, decryptor, slots: int) -> IndicatorVerdict:
        """The key holder's half: decrypt every stage's indicator and compare with its threshold."""
        return read_indicators(self.public_state(), decryptor, slots, self.squarings)


def read_indicators(state: dict, decryptor, slots: int, squarings: int = DEFAULT_SQUARINGS) -> IndicatorVerdict:
    """Verdict from ``RangeIndicator.public_state()``: a slot is flagged when its sum leaves [-tolerance,
    count (1 + tolerance)] (a wrapped or negative sum is flagged too), suspect above 1 + tolerance."""
    out = []
    for stage, (ct, count, tol) in state.items():
        values = decryptor.decrypt(ct, slots).real
        threshold = count * (1.0 + tol)
        bad = (values > threshold) | (values < -tol) | ~np.isfinite(values)
        suspect = (values > 1.0 + tol) & ~bad
        resolution = threshold ** (2.0**-squarings) - 1.0
        out.append(StageVerdict(stage, count, float(np.max(values)), threshold, resolution,
                                int(np.count_nonzero(bad)), int(np.count_nonzero(suspect))))
    return IndicatorVerdict(tuple(out))


def indicator_value(x, interval: tuple[float, float], squarings: int = DEFAULT_SQUARINGS):
    """The plaintext twin of one observation: ((x - mid) / half)^(2^k)."""
    a, b = interval
    z = (np.asarray(x, dtype=np.float64) - 0.5 * (a + b)) / (0.5 * (b - a))
    return z ** (2 ** squarings)


__all__ = ["ACCUMULATOR_LEVEL", "DEFAULT_SQUARINGS", "IndicatorVerdict", "RangeIndicator", "StageVerdict",
           "indicator_value", "read_indicators"]

