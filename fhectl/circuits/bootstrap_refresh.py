"""Refresh by bootstrapping: the server restores levels alone, with public evaluation keys only.

``BootstrapRefresh`` implements the refresh calls of ``fhectl.circuits.refresh.ClientRefresh`` (``refresh``
with its masks, fills, domains and output level, and ``ensure_levels_all``), so the circuits run unchanged and
make zero round trips. It wraps ``fhectl.ckks.bootstrap.Bootstrapper`` (used as is: ``bootstrap`` and
``output_level``) with what the circuits need around it.

Physics. Bootstrapping recovers t = Delta m from t + q0 I through sin(2 pi y) / (2 pi), y = t / q0, so the
message must be far below q0 / Delta (2^8 with the bootstrapping profiles): the relative error of the sine is
(2 pi y)^2 / 6. Measured at N = 2^10 (tiny-bootstrap-insecure, Delta = 2^52, q0 = 2^60), absolute error of one
bootstrapping for |m| <= A, worst of uniform, tiled and constant slot vectors (a constant puts the whole
message into one coefficient, the worst case for the sine):

    A        2^-4    2^-3    2^-2    2^-1    1       2       4
    error    2^-18.3 2^-18.6 2^-18.0 2^-16.1 2^-13.2 2^-10.3 2^-7.3

Below 2^-2 the error is the circuit's noise floor (~2^-18.5); above, the sine's cubic term. The bound that
matters is y = Delta m / q0 <= SINE_Y = 2^-10 (2^-2 at q0 / Delta = 2^8), so every refresh with a known bound B
(the max |endpoint| of the ciphertext's domain) first scales the message by 2^-b, B / 2^b <= SINE_Y q0 / Delta,
halved for the real circuit, whose sine sees 2 |m| (``RefreshModel.shift_for``; 16 with boot-n16-128, whose
q0 / Delta is 2^15), and multiplies by 2^b again
afterwards. A bootstrapping's error is mostly noise, about the same for any message within that bound, so the
refreshed value carries an absolute error of about B times a profile's relative error (``RefreshModel``:
2^-15 for one dense-secret pass at N = 2^10; the refined, encapsulated circuit of boot-n16-128 at N = 2^16 is
measured there), relative to the bound, not to the value: small values in a wide domain lose more.

Where the shrink happens. Scaling by 2^-b needs a level (a constant product and a rescale): a ciphertext that
arrives at level >= 1 pays it from levels the bootstrapping would discard anyway. One that arrives at level 0
with B above the shrunk bound cannot be shrunk any more (there is no prime left to divide by), and bootstrapping
it as is would return garbage once |m| Delta approaches q0 / 4. That is a LevelError here, never a silent loss:
the circuits must leave one level before such a refresh (the Llama and GPT-2 blocks do:
``fhectl.llama.encrypted``, ``fhectl.gpt2.encrypted``), or shrink the message themselves (scale labels) and
pass the shrunk domain. Ciphertexts without a domain (the
``ensure_levels_all`` calls inside the wide circuits and the softmax) are taken to be bounded by
UNKNOWN_BOUND = 1: those circuits keep their intermediates on [-1, 1] by construction. They are shrunk when
they arrive with a level to spare; at level 0 (the softmax's normalisation steps and the attention values do
arrive there) they are bootstrapped as they are: free of cost where 1 is within the shrunk bound (boot-n16-128),
else at the measured cost in the table, up to 2^-13.2 (``RefreshModel.level0_unit_error``; tiny profile).
``BootstrapStats.unshrunk`` counts those. The assumption is checked, not trusted: the range indicator observes
those refreshes on [-2, 2] (a value far beyond the bound would come out of the sine as garbage, which reads
out of domain).

Bootstrapping returns real slots (the real circuit, ``BootstrapConfig.real``: one EvalMod instead of two; the
slots' imaginary noise would otherwise grow through the circuits' polynomials, as a client refresh, which
re-encrypts real values, never lets it; a complex circuit is followed by m + conj(m), one key switch), and one
plaintext product does three things at once: the mask (``valid``), the factor 2^b back,
and an exact landing on Delta (the plaintext is encoded at Delta q_l / scale); then ``fill`` is added on the
masked slots. So a refresh returns at most ``top_level`` = the bootstrapper's output level - 1, and
``level`` asks for less. The range indicator (``fhectl.circuits.range_indicator``) observes the result.

Two at a time. A refresh of several ciphertexts (the Llama block's q, k, v; the gates and ups before SiLU; the
activations before their product) bootstraps them in pairs, a + i b through the complex circuit
(``BootstrapRefresh._pair``, ``Bootstrapper.bootstrap_complex``): CoeffsToSlots and SlotsToCoeffs, most of a
bootstrapping, are shared, and the second EvalMod is the price. The sine then carries both vectors, so each is
shrunk one bit more and comes back with about one bit more error (twice ``RefreshModel.error(B)``, which the range
indicator is told). Each is reduced to its real part first, at level 0, so that one's imaginary noise never becomes the
other's values. ``pair=False`` refreshes one by one.

Limits, said plainly. The bound covers every slot, masked ones included (the sine acts on coefficients, which
mix all slots): the circuits zero or bound what they mask. The error is absolute, 16 bits of the bound: a
wide domain (a norm's mean square over several decades) keeps less relative precision at its low end than a
client refresh, which re-encrypts exactly. Measured on the tiny Llama block: 9-11 bits against the float64
model, 11.7 with client refresh (tests/llama/test_bootstrap_refresh.py); on the tiny GPT-2 blocks 9.8-10.8 bits,
13.9 with client refresh (tests/gpt2/test_gpt2_bootstrap_refresh.py).

``SimBootstrapper`` is the bootstrapper on the level simulator: the same ``BootstrapRefresh`` code then plans a
block (``plan_bootstrapped_block``), so the depth plan, the levels per refresh and the bootstraps per block come
from the code that runs, not from a table.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

import numpy as np

from fhectl.ckks import encapsulation
from fhectl.ckks.bootstrap import BootstrapConfig, Bootstrapper, required_steps, rotation_levels
from fhectl.ckks.encapsulation import EncapsulationKeys
from fhectl.ckks.keys import KeyGenerator
from fhectl.circuits.levels import SimCiphertext, SimEvaluator
from fhectl.circuits.range_indicator import RangeIndicator
from fhectl.circuits.transformer import Segments, StageClock
from fhectl.errors import InputError, LevelError, ParameterError


REFRESH_MODES = ("auto", "bootstrap", "client")  # what an engine's ``refresh`` may ask for
UNKNOWN_BOUND = 1.0  # |m| of ciphertexts refreshed without a domain (intermediates of the wide circuits)
SINE_Y = 2.0**-10  # the largest y = Delta m / q0 a bootstrapping is given: the sine is y to 2^-17 relative there


@dataclass(frozen=True)
class RefreshModel:
    """What one profile's bootstrapping carries, and how well (measured; see the module docstring).

    shrunk_bound: the largest |m| a bootstrapping is given, SINE_Y q0 / Delta (2^-2 at q0 / Delta = 2^8 as in
    tiny-bootstrap-insecure, 32 at 2^15 as in boot-n16-128), halved for the real circuit; relative_error: the
    absolute error of one refresh of values within shrunk_bound, per unit of shrunk_bound (the error is noise,
    the same for any small message, so a refresh of values within B shrunk by 2^b keeps about B * relative_error);
    level0_unit_error: the error when |m| <= UNKNOWN_BOUND arrives at level 0 above shrunk_bound (no level to
    shrink it: the sine's cubic term), 0 where UNKNOWN_BOUND <= shrunk_bound.
    """

    shrunk_bound: float
    relative_error: float
    level0_unit_error: float = 0.0

    @staticmethod
    def for_params(params, config: BootstrapConfig) -> "RefreshModel":
        shrunk = SINE_Y * params.moduli_q[0] / params.scale
        # The real circuit bootstraps T = 2 Delta Re(m) (``Bootstrapper.bootstrap_once``) and halves it after: the
        # sine sees twice the message, so the shrunk bound halves; the noise is halved with T, so the error of a
        # refresh, shift included, stays what it was (measured at N = 2^14, refined: 2^-25.9 to 2^-26.1 worst
        # against the input's decryption, 2^-26.0 with the complex circuit).
        if config.refine_bits and config.passes == 1:
            # its first pass alone (boot-n14-insecure, N = 2^14, complex circuit): 2^-16.0 worst against the
            # input's decryption for uniform slots, 2^-12.2 for a constant vector of 32 (the sine's cubic term,
            # which does not grow with N; the noise does, to 2^-14.3 at N = 2^16, bench report 2026-12-01_9c9bfb2c)
            relative = 2.0**-12 / shrunk
        elif config.refine_bits:
            # the refined, encapsulated circuit (boot-n14-insecure, N = 2^14, q0 / Delta = 2^15): 2^-25.9 worst
            # against the input's decryption for |m| <= 32, uniform or constant slots (one pass: 2^-16.0 and
            # 2^-12.2, the constant vector's sine term), i.e. the output's own noise at Delta = 2^40. That noise
            # grows about as N in a slot: at N = 2^16 a refresh of values in [-4, 4] measured 2^-23.5 worst over
            # 4 rounds of 2 x 2^15 slots (report 2026-12-02_36e316a4_cpu_boot-n16-128_paired-refresh), above the
            # 2^-24 this model gave then. So 2^-24 at 2^14 (1.9 bits spare), times N / 2^14: 2^-23 at 2^16.
            relative = 2.0**-24 * (params.ring_degree / 2**14) / shrunk
        else:
            # tiny-bootstrap-insecure (N = 2^10, one dense-secret pass): 2^-18.0 at |m| <= 2^-2; 1 bit spare
            relative = 2.0**-17 / 0.25
        if config.real:
            shrunk /= 2
        # tiny: measured 2^-13.2 (the constant vector); the real circuit sees 2 |m|: the table's A = 2, halved
        level0 = (2.0**-11 if config.real else 2.0**-13) if UNKNOWN_BOUND > shrunk else 0.0
        return RefreshModel(shrunk, relative, level0)

    def shift_for(self, bound: float) -> int:
        """The least b >= 0 with bound / 2^b <= shrunk_bound."""
        return max(0, math.ceil(math.log2(max(bound, 1e-300) / self.shrunk_bound)))

    def error(self, bound: float) -> float:
        """Predicted absolute error of a refresh of values bounded by ``bound``."""
        return self.relative_error * self.shrunk_bound * 2.0 ** self.shift_for(bound)


def bootstrap_config(params, passes: int = 2) -> BootstrapConfig:
    """The configuration the bootstrapping refresh uses: the circuit the profile was made for
    (``BootstrapConfig.for_params``: sparse-secret encapsulated and refined where the profile sets primes
    aside for it, else the dense-secret default), real (``BootstrapConfig.real``): the circuits compute on real
    values, and the real circuit returns real slots with one EvalMod instead of two. ``passes``: 1 runs a
    refining circuit's first pass alone (``Bootstrapper.bootstrap``: half the time, same levels and keys)."""
    return replace(BootstrapConfig.for_params(params), real=True, passes=passes)


def bootstrap_fits(params, stage_levels: int) -> tuple[bool, str]:
    """(fits, why not): can bootstrapping leave ``stage_levels`` usable levels (after the mask product)?"""
    try:
        depth = bootstrap_config(params).depth()
    except ParameterError as exc:  # the ring is too large for the dense-secret circuit
        return False, str(exc)
    left = params.max_level - depth - 1
    if left < stage_levels:
        return False, (f"profile {params.name} has {params.max_level} levels; bootstrapping takes {depth} and the "
                       f"mask product 1, leaving {left}, fewer than the {stage_levels} the circuits need")
    return True, ""


def bootstrap_keys(client, config: BootstrapConfig, random=None) -> EncapsulationKeys | None:
    """The key holder's side: the sparse-secret encapsulation keys an encapsulated circuit needs (public
    switching keys; the sparse secret is dropped), or None for the dense-secret circuit."""
    if config.sparse_weight is None:
        return None
    return encapsulation.generate(KeyGenerator(client.ctx, random), client.sk, config.sparse_weight)


@dataclass
class BootstrapStats:
    """What the refreshes cost: bootstraps per stage, their seconds, and per call the levels in and out."""

    bootstraps: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    seconds_by_stage: dict[str, float] = field(default_factory=dict)
    levels: dict[str, dict] = field(default_factory=dict)  # stage -> {"in": [levels], "out": level, "shift": b}
    unshrunk: int = 0  # intermediates bootstrapped at level 0 without the 2^-2 shrink (error <= 2^-13.2)
    paired: int = 0  # bootstraps that refreshed two ciphertexts at once (a + i b, the complex circuit)

    def record(self, stage: str, levels_in: list[int], level_out: int, shifts: list[int], seconds: float) -> None:
        """One bootstrapping of ``stage``: one ciphertext, or two paired (two levels in, two shifts)."""
        self.bootstraps += 1
        self.paired += len(levels_in) > 1
        self.by_stage[stage] = self.by_stage.get(stage, 0) + 1
        self.seconds_by_stage[stage] = self.seconds_by_stage.get(stage, 0.0) + seconds
        entry = self.levels.setdefault(stage, {"in": [], "out": level_out, "shift": []})
        for level_in in levels_in:
            if level_in not in entry["in"]:
                entry["in"].append(level_in)
        for shift in shifts:
            if shift not in entry["shift"]:
                entry["shift"].append(shift)
        entry["out"] = level_out

    def as_dict(self) -> dict:
        return asdict(self)


class Bootstrapping(Protocol):
    """What ``BootstrapRefresh`` needs of a bootstrapper: ``fhectl.ckks.bootstrap.Bootstrapper``, or
    ``SimBootstrapper`` on the level simulator."""

    config: BootstrapConfig

    @property
    def output_level(self) -> int: ...

    def bootstrap(self, ct):
        """ct (dropped to level 0) at ``output_level``, the same scale; real slots with a real ``config``."""

    def bootstrap_complex(self, ct):
        """As ``bootstrap``, real and imaginary parts both refreshed (the complex circuit)."""


class SimBootstrapper:  # implements Bootstrapping
    """The bootstrapper on the level simulator: level 0 in, ``output_level`` out, the same scale."""

    def __init__(self, ev: SimEvaluator, config: BootstrapConfig | None = None):
        self.ev = ev
        self.config = bootstrap_config(ev.params) if config is None else config
        if self.config.depth() > ev.params.max_level:
            raise LevelError(f"bootstrapping needs {self.config.depth()} levels, the chain has {ev.params.max_level}")

    @property
    def output_level(self) -> int:
        return self.ev.params.max_level - self.config.depth()

    def bootstrap(self, ct):
        ct0 = self.ev.drop_level(ct, 0)
        return SimCiphertext(self.output_level, ct0.scale, ct0.slots)

    def bootstrap_complex(self, ct):
        return self.bootstrap(ct)


class BootstrapRefresh:  # implements fhectl.circuits.protocols.BlockRefresher
    """The server's refresh: shrink, bootstrap, mask and scale back, observe the domain (see the module
    docstring). ``ev``: an evaluator with public keys (or the simulator); ``bootstrapper``: ``Bootstrapping``
    (``Bootstrapper`` or ``SimBootstrapper``). ``pair``: the ciphertexts of one call are refreshed two at a time
    (``_pair``); False bootstraps each alone (for comparison)."""

    def __init__(self, ev, bootstrapper: Bootstrapping, stats: BootstrapStats | None = None,
                 indicator: RangeIndicator | None = None, pair: bool = True):
        self.ev = ev
        self.boot = bootstrapper
        self.pair = pair  # refresh the ciphertexts of one call two at a time (``_pair``)
        self.stats = BootstrapStats() if stats is None else stats
        self.indicator = indicator
        self.scale = ev.ctx.params.scale
        self.model = RefreshModel.for_params(ev.ctx.params, bootstrapper.config)

    @property
    def top_level(self) -> int:
        """The highest level a refresh returns: the bootstrapper's output level less the mask product."""
        return self.boot.output_level - 1

    def begin_block(self, index: int) -> None:
        if self.indicator is not None:
            self.indicator.begin_block(index)

    def refresh(self, cts, stage: str, domain: tuple[float, float] | None = None, valid=None,
                fill: float | None = None, level: int | None = None, domains=None) -> list:
        """``cts`` bootstrapped to ``level`` (default ``top_level``), with ClientRefresh's semantics for
        ``domain``, ``valid``, ``fill`` and ``domains``; the domains are observed by the range indicator."""
        target = self.top_level if level is None else level
        if target > self.top_level:
            raise LevelError(f"{stage}: a refresh to level {target} was asked; bootstrapping returns level "
                             f"{self.boot.output_level} and the mask product takes one, so at most {self.top_level}")
        if fill is None:
            fill = 0.0 if domain is None else 0.5 * (domain[0] + domain[1])
        jobs = []  # per ciphertext: (mask, bound, error, the interval the indicator checks)
        for i, ct in enumerate(cts):
            mask = None if valid is None else valid[i]
            check = domains[i] if domains is not None else (domain if valid is None or mask is not None else None)
            bound_interval = domains[i] if domains is not None else domain
            model = self.model
            if bound_interval is None:  # an intermediate of a circuit: |m| <= UNKNOWN_BOUND by construction
                bound, error = UNKNOWN_BOUND, model.error(UNKNOWN_BOUND)
                if ct.level == 0 and model.shift_for(bound):  # no level to shrink it: as is
                    bound, error = model.shrunk_bound, model.level0_unit_error
                    self.stats.unshrunk += 1
                if check is None:  # the assumption is checked too, with a factor 2 of slack
                    check = (-2.0 * UNKNOWN_BOUND, 2.0 * UNKNOWN_BOUND)
            else:
                bound = max(abs(bound_interval[0]), abs(bound_interval[1]))
                error = model.error(bound)
            jobs.append((mask, bound, error, check))
        fresh = [None] * len(cts)
        # a pair's operands take one bit more of shrink (``_pair``): a level for it, or at level 0 none needed and
        # the scale exactly Delta (the pair's sum needs equal scales); the others, and an odd one, go alone
        can_pair = [i for i, ct in enumerate(cts) if self.pair and (
            ct.level >= 1 or (self.model.shift_for(2 * jobs[i][1]) == 0 and ct.scale == self.scale))]
        for i, j in zip(can_pair[0::2], can_pair[1::2]):
            fresh[i], fresh[j] = self._pair([cts[i], cts[j]], stage, [jobs[i], jobs[j]], fill)
            for k in (i, j):  # one bit more than alone (``_pair``)
                mask, bound, error, check = jobs[k]
                jobs[k] = (mask, bound, 2 * error, check)
        for i, ct in enumerate(cts):
            if fresh[i] is None:
                fresh[i] = self._one(ct, stage, jobs[i][1], jobs[i][0], fill)
        out = []
        for ct, (mask, _, error, check) in zip(fresh, jobs):
            if self.indicator is not None and check is not None:
                keep = None
                if mask is not None and not check[0] <= fill <= check[1]:
                    keep = np.asarray(mask, dtype=np.float64)  # the fill itself would read as out of domain
                self.indicator.observe(ct, check, stage, error, keep=keep)
            out.append(self.ev.drop_level(ct, target))
        return out

    def _shrink(self, ct, stage: str, bound: float):
        """(ct scaled by 2^-b and landed on Delta, b): b from the bound, one level; as is at level 0 when b = 0."""
        ev = self.ev
        b = self.model.shift_for(bound)
        if b and ct.level == 0:
            raise LevelError(
                f"{stage}: a ciphertext reaches bootstrapping at level 0 with values up to {bound:g}; they must "
                f"be scaled by 2^-{b} first (below {self.model.shrunk_bound:g}), which needs one level: "
                "leave a level before this refresh, or shrink the values and pass the shrunk domain")
        if ct.level:  # levels bootstrapping would discard: scale by 2^-b and land exactly on Delta
            ct = ev.rescale(ev.mul_const(ct, 2.0**-b, target_scale=self.scale))  # l -> l-1, message m / 2^b
            ct.scale = self.scale  # so CoeffsToSlots meets one scale and reuses its encoded diagonals
        return ct, b

    def _pair(self, cts, stage: str, jobs, fill: float) -> list:
        """Two ciphertexts a, b (see ``refresh`` for which) in one bootstrapping: the complex
        circuit (``Bootstrapper.bootstrap_complex``) on c = 2 Re(a) + i 2 Re(b), built at level 0 (the real parts
        by a + conj(a), one key switch of one prime each, so that neither one's imaginary noise lands in the
        other's values; i is the monomial X^(N/2), exact and free). Its second EvalMod costs far less than the
        CoeffsToSlots and SlotsToCoeffs the two share (one cProfile split at N = 2^16: CoeffsToSlots 51 %, each
        EvalMod 15 %, SlotsToCoeffs 17 %): a pair took 0.62 of two refreshes there (benchmarks/paired_refresh.py).
        Then 4a = c + conj(c), 4b = -i (c - conj(c)) from one conjugation, the 1/4 in each one's mask product.

        The sine sees 2 |a| + 2 |b| per coefficient at most, where the real circuit sees 2 |m|: each is shrunk one
        bit more (shift_for(2 B)), and its error is taken to be twice ``RefreshModel.error(B)``: one bit more than
        alone, as measured at N = 2^16 even where the bound needs no shift (1.1 bits, report
        2026-12-02_36e316a4_cpu_boot-n16-128_paired-refresh)."""
        ev = self.ev
        t0 = time.perf_counter()
        shrunk = [self._shrink(ct, stage, 2 * job[1]) for ct, job in zip(cts, jobs)]  # -> Delta exactly
        a0, b0 = (ev.drop_level(ct, 0) for ct, _ in shrunk)
        a0, b0 = ev.add(a0, ev.conjugate(a0)), ev.add(b0, ev.conjugate(b0))  # 2 Re
        n = ev.ctx.params.slots
        c = ev.add(a0, ev.mul(b0, ev.encoder.encode(np.full(n, 1j), level=0, scale=1.0)))
        boot = self.boot.bootstrap_complex(c)  # -> output_level, scale Delta
        conj = ev.conjugate(boot)
        four_a = ev.add(boot, conj)
        four_b = ev.mul(ev.sub(boot, conj), ev.encoder.encode(np.full(n, -1j), level=boot.level, scale=1.0))
        (_, ba), (_, bb) = shrunk
        fresh = [self._land(four_a, 2.0**ba / 4, jobs[0][0], fill), self._land(four_b, 2.0**bb / 4, jobs[1][0], fill)]
        self.stats.record(stage, [cts[0].level, cts[1].level], fresh[0].level, [ba, bb], time.perf_counter() - t0)
        return fresh

    def _one(self, ct, stage: str, bound: float, mask, fill: float):
        """One ciphertext: 2^-b, bootstrap, then mask * 2^b landing on Delta, + fill: at ``top_level``."""
        ev = self.ev
        level_in = ct.level
        t0 = time.perf_counter()
        ct, b = self._shrink(ct, stage, bound)
        boot = self.boot.bootstrap(ct)  # -> output_level, scale ct.scale
        # The real part. The circuits compute on real values, and a client refresh re-encrypts only those; a
        # complex bootstrapping keeps the slots' imaginary noise, which polynomials of high degree amplify off
        # the real axis (the softmax's normalisations, squared seven times: garbage within one SmolLM2 block of
        # 8 packed prompts, 2026-12-01). The real circuit returns real slots; after a complex one,
        # 2 Re(m) = m + conj(m), one key switch, and the 1/2 rides in the product below.
        back = 2.0**b
        if not self.boot.config.real:
            boot = ev.add(boot, ev.conjugate(boot))
            back /= 2
        fresh = self._land(boot, back, mask, fill)
        self.stats.record(stage, [level_in], fresh.level, [b], time.perf_counter() - t0)
        return fresh

    def _land(self, boot, back: float, mask, fill: float):
        """One plaintext product: the mask, the factor ``back`` and an exact landing on Delta; then ``fill`` on the
        masked slots. ``output_level`` -> ``top_level``."""
        ev = self.ev
        lvl = boot.level
        pt_scale = self.scale * ev.ctx.params.moduli_q[lvl] / boot.scale  # lands exactly on Delta
        if mask is None:
            fresh = ev.rescale(ev.mul_const(boot, back, target_scale=self.scale))  # -> top_level
        else:
            m = np.asarray(mask, dtype=bool)
            pt = ev.encoder.encode(np.where(m, back, 0.0), level=lvl, scale=pt_scale)
            fresh = ev.rescale(ev.mul(boot, pt))  # -> top_level
        fresh.scale = self.scale  # equal up to float rounding of the plaintext's scale
        if mask is not None and fill != 0.0:
            fresh = ev.add(fresh, ev.encoder.encode(np.where(m, 0.0, fill), level=fresh.level, scale=self.scale))
        return fresh

    def ensure_levels(self, ct, levels: int, stage: str):
        return ct if ct.level >= levels else self.refresh([ct], stage)[0]

    def ensure_levels_bounded(self, cts, levels: int, stage: str, bounds: list, labels: list | None = None) -> list:
        """``ensure_levels_all`` with an interval per ciphertext instead of UNKNOWN_BOUND (the wide circuits'
        intermediates that are not on [-1, 1], such as the 1/sqrt's running product before its last kappa).
        ``labels``: each ciphertext's own range-indicator stage, "<stage> <label>". The 1/sqrt's running product
        and its polynomial's input are summed apart: the input reads about 0 inside its loose interval, and a sum
        with it would double the count, and so the threshold, the product must pass (``r_bound``)."""
        if all(c.level >= levels for c in cts):
            return cts
        if levels > self.top_level:
            raise LevelError(f"{stage} needs {levels} levels; a bootstrapping refresh returns {self.top_level}")
        short = [i for i, c in enumerate(cts) if c.level < levels]
        if labels is None:
            fresh = dict(zip(short, self.refresh([cts[i] for i in short], stage, domains=[bounds[i] for i in short])))
        else:  # apart, unpaired: a pair would save one bootstrapping per norm for a bit of the 1/sqrt's error
            fresh = {i: self.refresh([cts[i]], f"{stage} {labels[i]}", domains=[bounds[i]])[0] for i in short}
        return [fresh.get(i, c) for i, c in enumerate(cts)]

    def ensure_levels_all(self, cts, levels: int, stage: str) -> list:
        """Each ciphertext itself if it has ``levels`` levels left, else bootstrapped to the top: unlike a
        client round trip, where one more ciphertext costs only bytes, a bootstrapping is paid per ciphertext,
        so only the short ones are refreshed (their values taken to be within UNKNOWN_BOUND)."""
        if all(c.level >= levels for c in cts):
            return cts
        if levels > self.top_level:
            raise LevelError(f"{stage} needs {levels} levels; a bootstrapping refresh returns {self.top_level}")
        short = [i for i, c in enumerate(cts) if c.level < levels]
        fresh = dict(zip(short, self.refresh([cts[i] for i in short], stage)))
        return [fresh.get(i, c) for i, c in enumerate(cts)]


def server_refresh(ev, params, stats: BootstrapStats | None = None, indicator: bool = True,
                   keys: EncapsulationKeys | None = None, passes: int = 2) -> BootstrapRefresh:
    """The bootstrapping refresh of a server holding ``ev`` (public keys, including the bootstrapping Galois
    keys and conjugation) and, for an encapsulated circuit, the encapsulation ``keys``."""
    boot = Bootstrapper(ev.ctx, ev, bootstrap_config(params, passes), encapsulation=keys)
    ind = RangeIndicator.fitting(ev, params.scale, boot.output_level - 1) if indicator else None
    return BootstrapRefresh(ev, boot, stats, ind)


def bootstrap_rotation_steps(params) -> list[int]:
    """The rotation steps bootstrapping needs keys for (and conjugation: ``Client(..., conjugation=True)``)."""
    return required_steps(params, bootstrap_config(params))


def plan_bootstrapped_block(block, params, indicator: bool = True) -> dict:
    """``fhectl.circuits.transformer.plan_block`` with bootstrapping: one block on the level simulator through
    ``BootstrapRefresh`` over ``SimBootstrapper``, for the worst-case batch. Bootstraps per stage, the levels
    each refresh stage arrives at and leaves, rotation steps. LevelError if it does not fit."""
    ev = SimEvaluator(params)
    boot = SimBootstrapper(ev)
    stats = BootstrapStats()
    ind = RangeIndicator.fitting(ev, params.scale, boot.output_level - 1) if indicator else None
    refresh = BootstrapRefresh(ev, boot, stats, ind)
    seg = Segments((block.layout.tokens,))
    h = ev.fresh(refresh.top_level)
    block.forward(ev, h, refresh, seg, StageClock())
    return {"refresh": "bootstrap", "bootstraps": dict(stats.by_stage), "bootstraps_per_block": stats.bootstraps,
            "paired_per_block": stats.paired,  # of those, bootstraps of two ciphertexts (the complex circuit)
            "round_trips": 0, "levels": stats.levels, "bootstrap_output_level": boot.output_level,
            "refresh_level": refresh.top_level, "bootstrap_depth": boot.config.depth(),
            "indicator_stages": sorted(ind.accumulators) if ind else [],
            "rotation_steps": sorted(s % params.slots for s in ev.rotation_steps if s % params.slots),
            "rotation_levels": dict(sorted(ev.rotation_levels.items())),  # step -> highest level: key truncation
            "counters": dict(ev.counters)}


@dataclass
class BootstrappedBlocks:
    """Encrypted blocks built for bootstrapping, with the level simulator's plan of each and the rotation steps
    (the blocks' and the bootstrapper's) the key holder must make Galois keys for. ``key_levels``: step -> the
    highest level the plans or the bootstrapper (``fhectl.ckks.bootstrap.rotation_levels``) rotate by it at, for
    every step below the top, so those keys are made for those levels only (``Client(key_levels=...)``,
    ``fhectl.ckks.keys.SwitchingKey``: at boot-n16-128 the blocks' own at levels <= 7, 2 digits of 14 limbs
    instead of 6 of 33, and the bootstrapper's at 24 and 23, 5 digits of 31 and 30); only the steps of
    CoeffsToSlots' first group, which rotates at the top, keep full keys."""

    blocks: list
    plans: list[dict]
    rotation_steps: list[int]
    key_levels: dict[int, int]


def plan_bootstrapped_blocks(make_block, n_layers: int, params, family: str) -> tuple[BootstrappedBlocks | None, str]:
    """(blocks and plans, '') when ``n_layers`` blocks fit this profile with bootstrapping, else (None, why not),
    decided before any key is made. ``make_block(i, stage_levels)``: block ``i`` with a spare level before each
    refresh and its circuits' stages within ``stage_levels`` (the levels a refresh gives); ``family`` names the
    blocks in the reason."""
    ok, why = bootstrap_fits(params, 1)
    if not ok:
        return None, why
    top = params.max_level - bootstrap_config(params).depth() - 1  # the mask product takes one
    try:
        blocks = [make_block(i, top) for i in range(n_layers)]
    except InputError as exc:
        return None, (f"profile {params.name}: the circuits do not fit the {top} levels a bootstrapping refresh "
                      f"gives: {exc}")
    steps = set(bootstrap_rotation_steps(params))
    plans, levels = [], {}
    try:
        for b in blocks:
            plans.append(plan_bootstrapped_block(b, params))
            steps |= set(plans[-1]["rotation_steps"])
            for s, lvl in plans[-1]["rotation_levels"].items():
                levels[s] = max(levels.get(s, 0), lvl)
    except LevelError as exc:
        depth = bootstrap_config(params).depth()
        return None, (f"profile {params.name} cannot bootstrap inside the {family} blocks ({depth} of its "
                      f"{params.max_level} levels go to bootstrapping): {exc}")
    for s, lvl in rotation_levels(params, bootstrap_config(params)).items():
        s %= params.slots  # as the plans name them: one Galois element each
        levels[s] = max(levels.get(s, lvl), lvl)
    key_levels = {s: lvl for s, lvl in levels.items() if lvl < params.max_level}
    return BootstrappedBlocks(blocks, plans, sorted(steps), key_levels), ""


def server_bootstrapper(ctx, ev, encapsulation: EncapsulationKeys | None = None, passes: int = 2) -> Bootstrapper:
    """The server's bootstrapper from public material only: ``ev`` holds the relinearization key and the Galois
    keys of ``bootstrap_rotation_steps`` and conjugation; ``encapsulation``, the public encapsulation keys
    (``bootstrap_keys``) when the profile's circuit needs them, else None. A server that received a key
    holder's public bundle builds it here; MissingKeyError if the encapsulation keys are missing or unneeded."""
    return Bootstrapper(ctx, ev, bootstrap_config(ctx.params, passes), encapsulation=encapsulation)


def client_bootstrapper(client, server, params, random=None, passes: int = 2) -> Bootstrapper:
    """The server's bootstrapper for the key holder ``client`` (made with ``conjugation=True`` and the
    bootstrapping rotation steps): the encapsulation keys, if the circuit needs them, are made on the client's
    side (``bootstrap_keys``) and only their public half reaches ``server`` (``server_bootstrapper``)."""
    return server_bootstrapper(client.ctx, server, bootstrap_keys(client, bootstrap_config(params), random), passes)


__all__ = ["REFRESH_MODES", "SINE_Y", "UNKNOWN_BOUND", "BootstrapRefresh", "BootstrapStats", "BootstrappedBlocks",
           "Bootstrapping",
           "RefreshModel", "SimBootstrapper", "bootstrap_fits", "bootstrap_keys", "bootstrap_rotation_steps",
           "client_bootstrapper", "plan_bootstrapped_block", "plan_bootstrapped_blocks", "server_bootstrapper",
           "server_refresh"]
