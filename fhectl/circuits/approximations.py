"""The nonlinear functions GPT-2 needs, as polynomial circuits on a calibrated domain [a, b].

Each approximation has a plaintext version (``eval_plain``, the float64 computation the circuit performs)
beside the homomorphic one (``evaluate(evaluator, ct)``), the exact function (``reference``), its measured
error on the domain and its level cost (``depth()``): the ``fhectl.circuits.protocols.Approximation``
interface. ``Exp``, ``Inverse`` and ``InverseSqrt`` are all a Chebyshev interpolant refined by a fixed
circuit (squarings, Goldschmidt or Newton steps); ``InterpolantApproximation`` holds what they share: the
domain, the reference, the error, the level cost and the level check. Domains are parameters: they come
from plaintext calibration runs, which call ``check_domain`` (raising DomainError) on what they see.

Level costs (D(p) = ceil(log2(deg p + 1)) + 1 for a series of degree >= 2 on an interval other than
[-1, 1], see ``polynomial.depth``):

* ``gelu``: a Chebyshev interpolant of the tanh-form GELU: D(p). GELU is entire and smooth at scale ~1, so the
  interpolant converges geometrically: on [-8, 8] degree 31 (depth 6) is within 1.3e-4, degree 63 (depth 7)
  within 4e-9.
* ``exp``: exp(x) = exp(x / 2^r)^(2^r): a Chebyshev interpolant of exp(x / 2^r) on [a, b] and r squarings,
  D(p) + r levels. The factory tries r = 0 .. 6 and keeps the least depth, then the fewest products. The
  coefficients of exp on an interval of half-width h decay like I_n(h) (Bessel), super-geometrically once
  n > e h / 2, so on [-30, 0] the plain interpolant of degree 31 is already within 2^-42 of exp at depth 6
  and squaring cannot beat that depth (r = 1 with degree 15 ties it, 2^-20.8, with fewer products: it is
  chosen when the tolerance allows). Squaring pays off only for wider domains, and it multiplies relative
  errors, of the interpolant and of CKKS noise alike, by 2^r.
* ``inverse``: 1/x on [a, b], 0 < a: the Chebyshev interpolant y0 of 1/x, then Goldschmidt's iteration
  e0 = 1 - x y0, y_{k+1} = y_k (1 + e_k), e_{k+1} = e_k^2 (Newton's y (2 - x y) reorganised so that y and e
  advance in parallel: one level per step instead of two). In exact arithmetic y_k = (1 - e0^(2^k)) / x, so the
  relative error is |e0|^(2^k), and for the interpolant max |e0| = 1 / T_{n+1}((b + a) / (b - a)) exactly
  (1 - x y0 vanishes at the n + 1 nodes and is 1 at 0: the optimal relative seed). Depth D(y0) + 1 + k.
* ``inverse_sqrt``: 1/sqrt(x) on [a, b], 0 < a: an interpolant seed and Newton's y' = 1.5 y - 0.5 x y^3,
  computed as 1.5 y + (w y)(y^2) with w = -0.5 x: two levels per step, three products; the residual
  e = 1 - x y^2 goes to 3/4 e^2 + 1/4 e^3. Depth D(y0) + 2k.

The factories pick the seed degree and step count of least depth (then fewest products) that meets a
tolerance, measured on a dense grid of the domain. Every ``evaluate`` returns exactly ``target_scale``
(default: the input's scale), so its output adds to other ciphertexts at that scale.

A value must also fit the modulus: the largest output (exp(b), 1/a, 1/sqrt(a)) times the scale has to stay
below q_0 / 2 at level 0, i.e. below 2^(first_mod_bits - scale_bits - 1); shift or scale the input first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fhectl.circuits import polynomial
from fhectl.circuits.polynomial import ChebyshevPoly, check_domain, chebyshev_fit, chebyshev_interpolant, error_grid
from fhectl.errors import InputError, LevelError

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def gelu_tanh(x):
    """GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _positive_grid(a: float, b: float) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(a, b, 8193), error_grid(a, b, 128)]))


def _check_positive(a: float, b: float, what: str) -> None:
    if not (math.isfinite(a) and math.isfinite(b) and 0 < a < b):
        raise InputError(f"{what} needs a domain 0 < a < b, got [{a}, {b}]")


class InterpolantApproximation:
    """A Chebyshev interpolant followed by a refinement circuit: the shared half of ``Exp``, ``Inverse`` and
    ``InverseSqrt`` (each a frozen dataclass with a ``name`` field).

    A subclass names the interpolant the circuit starts from (``interpolant``), the exact function
    (``function``, on float64 arrays), what its refinement costs (``refinement``), its ``eval_plain`` and
    its ``evaluate``; the domain, ``reference``, ``max_error``, ``depth``, ``cost``, ``check_domain`` and the
    level check at the top of ``evaluate`` (``_target_scale``) come from here.
    """

    name: str

    @staticmethod
    def function(x: np.ndarray) -> np.ndarray:
        """The exact function on a float64 array."""
        raise NotImplementedError

    @property
    def interpolant(self) -> ChebyshevPoly:
        """The Chebyshev series the circuit evaluates first, on the approximation's domain."""
        raise NotImplementedError

    def refinement(self) -> tuple[str, int, int, int]:
        """(what the refinement repeats, how many times, levels it uses, ciphertext products it costs)."""
        raise NotImplementedError

    def _error_points(self) -> np.ndarray:
        """Where ``max_error`` is measured: a dense grid of the (positive) domain, log-spaced and Chebyshev."""
        return _positive_grid(*self.domain)

    @property
    def domain(self) -> tuple[float, float]:
        return self.interpolant.domain

    @classmethod
    def reference(cls, x):
        return cls.function(np.asarray(x, dtype=np.float64))

    def depth(self) -> int:
        return self.interpolant.depth() + self.refinement()[2]

    def cost(self) -> dict:
        what, count, _, products = self.refinement()
        c = self.interpolant.cost()
        return {"depth": self.depth(), "ct_mults": c["ct_mults"] + products, "degree": c["degree"], what: count}

    @property
    def max_error(self) -> float:
        """max |eval_plain(x) - reference(x)| on the domain (measured on ``_error_points``)."""
        x = self._error_points()
        return float(np.max(np.abs(self.eval_plain(x) - self.reference(x))))

    def check_domain(self, values) -> None:
        check_domain(values, *self.domain, self.name)

    def _target_scale(self, ct, target_scale: float | None) -> float:
        """The output scale ``evaluate`` must land on (default: the input's); LevelError when ``ct`` is too low."""
        if ct.level < self.depth():
            raise LevelError(f"{self.name} needs {self.depth()} levels, the ciphertext is at level {ct.level}")
        return ct.scale if target_scale is None else float(target_scale)


# -- GELU ------------------------------------------------------------------------------------------------


def gelu(a: float, b: float, degree: int | None = None, tol: float = 2.0**-12) -> ChebyshevPoly:
    """Chebyshev interpolant of GELU on [a, b]: of the given degree, or the least depth within ``tol``."""
    if degree is not None:
        return chebyshev_interpolant(gelu_tanh, a, b, degree, name="gelu")
    return chebyshev_fit(gelu_tanh, a, b, tol, name="gelu")


# -- exp ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exp(InterpolantApproximation):
    """exp(x) on [a, b] as p(x)^(2^squarings), p the interpolant of exp(x / 2^squarings)."""

    poly: ChebyshevPoly
    squarings: int
    name: str = "exp"

    function = staticmethod(np.exp)

    @property
    def interpolant(self) -> ChebyshevPoly:
        return self.poly

    def refinement(self) -> tuple[str, int, int, int]:
        return "squarings", self.squarings, self.squarings, self.squarings  # one level and product each

    def _error_points(self) -> np.ndarray:
        return error_grid(*self.domain, self.poly.degree)

    def eval_plain(self, x):
        y = self.poly.eval_plain(x)
        for _ in range(self.squarings):
            y = y * y
        return y

    def evaluate(self, evaluator, ct, target_scale: float | None = None):
        ev = evaluator
        target = self._target_scale(ct, target_scale)
        # Scale of p so that r squarings, each rescaled by the prime of its level, end exactly on target.
        q = ev.ctx.params.moduli_q
        level0 = ct.level - self.poly.depth()
        scale = target
        for j in range(self.squarings, 0, -1):
            scale = math.sqrt(scale * q[level0 - j + 1])
        y = polynomial.evaluate(ev, ct, self.poly, target_scale=scale)
        for _ in range(self.squarings):
            y = ev.rescale(ev.mul(y, y))
        return y


def exp(a: float, b: float, tol: float = 2.0**-16, squarings: int | None = None, max_degree: int = 127) -> Exp:
    """exp on [a, b] within ``tol`` * exp(b) (the largest output), least depth first, then fewest products.

    ``squarings``: force r (otherwise r = 0 .. 6 are tried).
    """
    if not (math.isfinite(a) and math.isfinite(b) and b > a):
        raise InputError(f"exp needs a finite domain a < b, got [{a}, {b}]")
    x = error_grid(a, b, max_degree)
    ref = np.exp(x)
    bound = tol * math.exp(b)
    best = None
    best_err = math.inf
    for r in ([squarings] if squarings is not None else range(7)):
        k = 1
        while (1 << k) - 1 <= max_degree:
            poly = chebyshev_interpolant(lambda t, r=r: np.exp(t / 2**r), a, b, (1 << k) - 1, name=f"exp(x/2^{r})")
            cand = Exp(poly, r)
            err = float(np.max(np.abs(cand.eval_plain(x) - ref)))
            best_err = min(best_err, err)
            if err <= bound:
                key = (cand.depth(), cand.cost()["ct_mults"], err)
                if best is None or key < best[0]:
                    best = (key, cand)
                break  # higher degrees at this r only cost more
            k += 1
    if best is None:
        raise InputError(f"exp on [{a:.6g}, {b:.6g}]: no interpolant up to degree {max_degree} reaches "
                         f"{tol:.3g} * exp(b) "
                         f"(best {best_err:.3g}); narrow the domain or relax the tolerance")
    return best[1]


# -- 1/x ------------------------------------------------------------------------------------------------------


def inverse_seed_residual(a: float, b: float, degree: int) -> float:
    """max |1 - x p(x)| on [a, b] for p the degree-n Chebyshev interpolant of 1/x: 1 / T_{n+1}((b+a)/(b-a))."""
    return 1.0 / math.cosh((degree + 1) * math.acosh((b + a) / (b - a)))


@dataclass(frozen=True)
class Inverse(InterpolantApproximation):
    """1/x on [a, b]: interpolant seed y0, then ``steps`` Goldschmidt steps."""

    seed: ChebyshevPoly
    steps: int
    name: str = "inverse"

    @staticmethod
    def function(x: np.ndarray) -> np.ndarray:
        return 1.0 / x

    @property
    def interpolant(self) -> ChebyshevPoly:
        return self.seed

    def refinement(self) -> tuple[str, int, int, int]:
        # e0 = 1 - x y0 costs a level, then each step one level (y and e advance in parallel), two products
        return "steps", self.steps, (1 + self.steps if self.steps else 0), 2 * self.steps

    def eval_plain(self, x):
        x = np.asarray(x, dtype=np.float64)
        y = self.seed.eval_plain(x)
        e = 1.0 - x * y
        for _ in range(self.steps):
            y = y * (1.0 + e)
            e = e * e
        return y

    @property
    def max_rel_error(self) -> float:
        """max |x y - 1| on the domain."""
        x = self._error_points()
        return float(np.max(np.abs(x * self.eval_plain(x) - 1.0)))

    def evaluate(self, evaluator, ct, target_scale: float | None = None):
        ev = evaluator
        target = self._target_scale(ct, target_scale)
        if self.steps == 0:
            return polynomial.evaluate(ev, ct, self.seed, target_scale=target)
        q = ev.ctx.params.moduli_q
        lam = ct.level - self.seed.depth()

        def final_scale(s: float) -> float:  # the evaluator's bookkeeping below, on scales only
            se, sy = ct.scale * s / q[lam], s
            for j in range(self.steps):
                sy, se = sy * se / q[lam - 1 - j], se * se / q[lam - 1 - j]
            return sy

        # final_scale(s) is proportional to s^(2^steps): solve for the seed scale that ends on target
        s = target * (target / final_scale(target)) ** (1.0 / 2**self.steps)
        y = polynomial.evaluate(ev, ct, self.seed, target_scale=s)
        e = ev.add(ev.neg(ev.rescale(ev.mul(ev.drop_level(ct, y.level), y))), 1.0)  # 1 - x y0
        for j in range(self.steps):
            y = ev.rescale(ev.mul(ev.drop_level(y, e.level), ev.add(e, 1.0)))
            if j + 1 < self.steps:
                e = ev.rescale(ev.mul(e, e))
        return y


def inverse(a: float, b: float, tol: float = 2.0**-20, max_seed_degree: int = 127) -> Inverse:
    """1/x on [a, b] (0 < a) with relative error max |x y - 1| <= tol; least depth, then fewest products."""
    _check_positive(a, b, "inverse")
    x = _positive_grid(a, b)
    best = None
    k = 1
    while (1 << k) - 1 <= max_seed_degree:
        seed = chebyshev_interpolant(lambda t: 1.0 / t, a, b, (1 << k) - 1, name="inverse seed")
        e0 = max(inverse_seed_residual(a, b, (1 << k) - 1), float(np.max(np.abs(1.0 - x * seed.eval_plain(x)))))
        if e0 < 1.0:
            steps = 0
            while e0 ** (2**steps) > tol and steps < 12:
                steps += 1
            cand = Inverse(seed, steps)
            if cand.max_rel_error <= tol:
                key = (cand.depth(), cand.cost()["ct_mults"])
                if best is None or key < best[0]:
                    best = (key, cand)
        k += 1
    if best is None:
        raise InputError(f"inverse on [{a:.6g}, {b:.6g}]: no seed up to degree {max_seed_degree} converges to "
                         f"{tol:.3g}; "
                         "narrow the domain")
    return best[1]


# -- 1/sqrt(x) ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InverseSqrt(InterpolantApproximation):
    """1/sqrt(x) on [a, b]: interpolant seed y0, then ``steps`` Newton steps y' = 1.5 y - 0.5 x y^3."""

    seed: ChebyshevPoly
    steps: int
    name: str = "inverse_sqrt"

    @staticmethod
    def function(x: np.ndarray) -> np.ndarray:
        return 1.0 / np.sqrt(x)

    @property
    def interpolant(self) -> ChebyshevPoly:
        return self.seed

    def refinement(self) -> tuple[str, int, int, int]:
        return "steps", self.steps, 2 * self.steps, 3 * self.steps  # y^2, (w y), (w y) y^2: two levels

    def eval_plain(self, x):
        x = np.asarray(x, dtype=np.float64)
        y = self.seed.eval_plain(x)
        for _ in range(self.steps):
            y = 1.5 * y + (-0.5 * x * y) * (y * y)
        return y

    @property
    def max_rel_error(self) -> float:
        """max |y sqrt(x) - 1| on the domain."""
        x = self._error_points()
        return float(np.max(np.abs(self.eval_plain(x) * np.sqrt(x) - 1.0)))

    def evaluate(self, evaluator, ct, target_scale: float | None = None):
        ev = evaluator
        target = self._target_scale(ct, target_scale)
        q = ev.ctx.params.moduli_q
        y = polynomial.evaluate(ev, ct, self.seed, target_scale=target)
        for _ in range(self.steps):
            lam = y.level
            y2 = ev.rescale(ev.mul(y, y))  # level lam - 1
            # w = -0.5 x, at the scale that makes (w y)(y^2) land exactly on target
            w_scale = target * q[lam] * q[lam - 1] / (y.scale * y2.scale)
            w = ev.rescale(ev.mul_const(ev.drop_level(ct, lam + 1), -0.5, target_scale=w_scale))
            t = ev.rescale(ev.mul(ev.rescale(ev.mul(w, y)), y2))  # -0.5 x y^3, level lam - 2
            y15 = ev.rescale(ev.mul_const(ev.drop_level(y, lam - 1), 1.5, target_scale=t.scale))
            y = ev.add(y15, t)
        return y


def inverse_sqrt(a: float, b: float, tol: float = 2.0**-20, max_seed_degree: int = 127) -> InverseSqrt:
    """1/sqrt(x) on [a, b] (0 < a) with max |y sqrt(x) - 1| <= tol; least depth, then fewest products."""
    _check_positive(a, b, "inverse_sqrt")
    best = None
    k = 1
    while (1 << k) - 1 <= max_seed_degree:
        seed = chebyshev_interpolant(lambda t: 1.0 / np.sqrt(t), a, b, (1 << k) - 1, name="inverse_sqrt seed")
        for steps in range(0, 8):
            cand = InverseSqrt(seed, steps)
            err = cand.max_rel_error
            if not math.isfinite(err) or err > 1.0 and steps > 2:
                break  # diverging seed
            if err <= tol:
                key = (cand.depth(), cand.cost()["ct_mults"])
                if best is None or key < best[0]:
                    best = (key, cand)
                break
        k += 1
    if best is None:
        raise InputError(f"inverse_sqrt on [{a:.6g}, {b:.6g}]: no seed up to degree {max_seed_degree} converges to "
                         f"{tol:.3g}; narrow the domain")
    return best[1]


__all__ = [
    "Exp",
    "InterpolantApproximation",
    "Inverse",
    "InverseSqrt",
    "check_domain",
    "exp",
    "gelu",
    "gelu_tanh",
    "inverse",
    "inverse_seed_residual",
    "inverse_sqrt",
]
