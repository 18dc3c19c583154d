"""Polynomial approximations of GPT-2's nonlinearities and their homomorphic evaluation.

Each function is a Chebyshev interpolant on its calibrated interval [a, b]
(interpolation at Chebyshev nodes is within a small factor of the best
uniform approximation [Trefethen, "Approximation Theory and Approximation
Practice", ch. 16]). The ciphertext is first mapped affinely to [-1, 1], then
the series sum c_i T_i(u) is evaluated by recursive division by T_{2^k}
[Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, EUROCRYPT 2021, Alg. 2]:

    p = q T_{2^k} + r,   with T_i = 2 T_{i - 2^k} T_{2^k} - T_{2^{k+1} - i}  for i > 2^k,

down to pieces of degree < m that are linear combinations of precomputed
baby steps T_0 .. T_{m-1}. The depth is ceil(log2(m)) + the number of giant
steps T_{2^k}, k >= log2(m), about ceil(log2(d + 1)) + 1 for degree d.

1/x and 1/sqrt(x) on wide intervals (b/a in the thousands, as LayerNorm
variances and softmax sums are) need a very high degree as plain
interpolants, so they are a low-degree interpolant of the function followed
by Newton steps (x_{n+1} = x_n (2 - a x_n) and x_{n+1} = x_n (3 - a x_n^2) / 2),
each of which doubles the correct bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.evaluator import Evaluator


@dataclass(frozen=True)
class Chebyshev:
    """sum_i coeffs[i] T_i((2x - a - b) / (b - a)) on [a, b]."""

    coeffs: tuple[float, ...]
    a: float
    b: float

    @property
    def degree(self) -> int:
        return len(self.coeffs) - 1

    def __call__(self, x):
        u = (2 * np.asarray(x, dtype=np.float64) - self.a - self.b) / (self.b - self.a)
        return np.polynomial.chebyshev.chebval(u, self.coeffs)


@dataclass(frozen=True)
class Approximation:
    """A Chebyshev interpolant, optionally refined by Newton steps for 1/x or 1/sqrt(x)."""

    name: str
    poly: Chebyshev
    newton: str | None = None  # "inverse" or "inverse_sqrt"
    newton_steps: int = 0
    reference: object = field(default=None, compare=False)  # the exact function, for error reports

    @property
    def interval(self) -> tuple[float, float]:
        return (self.poly.a, self.poly.b)

    def depth(self) -> int:
        """Levels consumed by ``evaluate``."""
        d = self.poly.degree
        base = 1 + (math.ceil(math.log2(d + 1)) + 1 if d > 1 else 0)  # affine map + series
        per_step = {"inverse": 2, "inverse_sqrt": 3}.get(self.newton, 0)
        return base + per_step * self.newton_steps

    def max_error(self, samples: int = 4097) -> float:
        x = np.linspace(self.poly.a, self.poly.b, samples)
        return float(np.max(np.abs(plain(self, x) - self.reference(x))))


def interpolate(f, a: float, b: float, degree: int) -> Chebyshev:
    """The Chebyshev interpolant of f at degree + 1 Chebyshev points of the first kind on [a, b]."""
    if not b > a:
        raise ValueError(f"empty interval [{a}, {b}]")
    k = np.arange(degree + 1)
    u = np.cos(np.pi * (k + 0.5) / (degree + 1))
    x = 0.5 * (b - a) * u + 0.5 * (a + b)
    coeffs = np.polynomial.chebyshev.chebfit(u, f(x), degree)
    return Chebyshev(tuple(float(c) for c in coeffs), float(a), float(b))


def plain(approx: Approximation, x):
    """The approximation evaluated in float64: what the homomorphic evaluation computes."""
    x = np.asarray(x, dtype=np.float64)
    y = approx.poly(x)
    for _ in range(approx.newton_steps):
        if approx.newton == "inverse":
            y = y * (2 - x * y)
        else:
            y = y * (3 - x * y * y) / 2
    return y


def gelu(a: float, b: float, degree: int = 31) -> Approximation:
    f = lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))  # noqa: E731
    return Approximation("gelu", interpolate(f, a, b, degree), reference=f)


def exp(a: float, b: float, degree: int = 31) -> Approximation:
    return Approximation("exp", interpolate(np.exp, a, b, degree), reference=np.exp)


def relative_fit(f, a: float, b: float, degree: int, samples: int = 2048) -> Chebyshev:
    """Least-squares Chebyshev fit of f minimising the relative error f(x)^-1 (p(x) - f(x)).

    Newton's iterations for 1/x and 1/sqrt(x) converge when the relative error
    of the seed is below 1 everywhere, so the seed is fitted for relative, not
    absolute, error (points clustered near a, where 1/x is steepest).
    """
    if not b > a > 0:
        raise ValueError(f"the interval [{a}, {b}] must be positive")
    t = np.linspace(0.0, 1.0, samples)
    x = a * (b / a) ** t  # geometric spacing
    u = (2 * x - a - b) / (b - a)
    fx = f(x)
    coeffs = np.polynomial.chebyshev.chebfit(u, fx, degree, w=1.0 / np.abs(fx))
    return Chebyshev(tuple(float(c) for c in coeffs), float(a), float(b))


SEED_DEGREES = (7, 15, 31)  # higher degrees make the least-squares fit ill-conditioned


# Largest residual |1 - x y0| (inverse) or |1 - x y0^2| (inverse square root) of the seed for which
# Newton's iteration still converges with margin: e -> e^2 for 1/x (any |e| < 1), and r -> r (3 - r)^2 / 4
# with r = 1 - e for 1/sqrt(x) (converges for 0 < r < 3; 0.8 keeps the first steps well-behaved).
MAX_SEED_RESIDUAL = {"inverse": 0.9, "inverse_sqrt": 0.8}


def _newton_steps(name: str, err: float, target_bits: float) -> int:
    steps = 0
    while err > 2.0**-target_bits and steps < 10:
        err = err * err * (1.5 if name == "inverse_sqrt" else 1.0)
        steps += 1
    return steps


def _newton_seeded(name: str, f, residual, a: float, b: float, target_bits: float) -> Approximation:
    """The seed degree and Newton step count of least total depth reaching ``target_bits`` of relative
    precision (each step squares the residual), among seeds Newton's method can refine."""
    x = np.geomspace(a, b, 4096)
    limit = MAX_SEED_RESIDUAL[name]
    best = None
    best_err = math.inf
    for degree in SEED_DEGREES:
        seed = relative_fit(f, a, b, degree)
        err = float(np.max(np.abs(residual(x, seed(x)))))
        best_err = min(best_err, err)
        if err >= limit:
            continue
        candidate = Approximation(name, seed, name, _newton_steps(name, err, target_bits), reference=f)
        if best is None or candidate.depth() < best.depth():
            best = candidate
    if best is None:
        raise ValueError(f"{name}: no seed up to degree {SEED_DEGREES[-1]} on [{a:.4g}, {b:.4g}] has a relative "
                         f"residual below {limit} (best {best_err:.3g}); narrow the domain")
    return best


def inverse(a: float, b: float, target_bits: float = 16) -> Approximation:
    f = lambda x: 1.0 / x  # noqa: E731
    return _newton_seeded("inverse", f, lambda x, y: 1 - x * y, a, b, target_bits)


def inverse_sqrt(a: float, b: float, target_bits: float = 16) -> Approximation:
    f = lambda x: 1.0 / np.sqrt(x)  # noqa: E731
    return _newton_seeded("inverse_sqrt", f, lambda x, y: 1 - x * y * y, a, b, target_bits)


# -- homomorphic evaluation ---------------------------------------------------------------


class _Basis:
    """Chebyshev polynomials T_i(u) of one ciphertext u, computed on demand and cached."""

    def __init__(self, ev: Evaluator, u: Ciphertext):
        self.ev = ev
        self.t = {1: u}

    def get(self, i: int) -> Ciphertext:
        if i in self.t:
            return self.t[i]
        ev = self.ev
        if i & (i - 1) == 0:  # power of two: T_2k = 2 T_k^2 - 1
            h = self.get(i // 2)
            sq = ev.rescale(ev.mul(h, h))
            out = ev.sub(ev.mul_int(sq, 2), 1.0)
        else:  # T_{a+b} = 2 T_a T_b - T_{a-b}, a the largest power of two below i
            a = 1 << (i.bit_length() - 1)
            b = i - a
            ta, tb = self.get(a), self.get(b)
            lvl = min(ta.level, tb.level)
            prod = ev.rescale(ev.mul(ev.drop_level(ta, lvl), ev.drop_level(tb, lvl)))
            prod = ev.mul_int(prod, 2)
            if a - b == 0:
                out = ev.sub(prod, 1.0)
            else:
                tab = self.get(a - b)
                out = ev.sub(prod, ev.drop_level(tab, prod.level))
        self.t[i] = out
        return out


def _linear_combination(ev: Evaluator, basis: _Basis, coeffs: list[float], target_scale: float | None = None):
    """sum_i coeffs[i] T_i for i < len(coeffs); a float when only the constant term is nonzero.

    Every term's constant is encoded so that it lands exactly on one scale (``target_scale``, or
    the first term's), so the sum adds equal scales whatever the T_i's drift.
    """
    terms = [(i, c) for i, c in enumerate(coeffs) if i > 0 and c != 0.0]
    if not terms:
        return float(coeffs[0]) if coeffs else 0.0
    level = min(basis.get(i).level for i, _ in terms)
    if target_scale is None:
        target_scale = basis.get(terms[0][0]).scale
    acc = None
    for i, c in terms:
        term = ev.mul_const(ev.drop_level(basis.get(i), level), float(c), target_scale)
        acc = term if acc is None else ev.add(acc, term)
    acc = ev.rescale(acc)
    return ev.add(acc, float(coeffs[0])) if coeffs[0] else acc


def _chebyshev_divide(coeffs: list[float], k: int) -> tuple[list[float], list[float]]:
    """p = q T_k + r in the Chebyshev basis, deg r < k (k a power of two, deg p < 2k)."""
    d = len(coeffs) - 1
    q = [0.0] * (d - k + 1)
    r = list(coeffs[:k]) + [0.0] * max(0, k - len(coeffs))
    for i in range(k, d + 1):
        c = coeffs[i]
        if i == k:
            q[0] += c
        else:
            q[i - k] += 2 * c
            r[2 * k - i] -= c
    return q, r[:k]


def _evaluate_series(ev: Evaluator, basis: _Basis, coeffs: list[float], baby: int, target_scale=None):
    d = len(coeffs) - 1
    if d < baby:
        return _linear_combination(ev, basis, coeffs, target_scale)
    k = 1 << (d.bit_length() - 1)  # largest power of two <= d
    q, r = _chebyshev_divide(coeffs, k)
    qv = _evaluate_series(ev, basis, q, baby)
    tk = basis.get(k)
    if isinstance(qv, float):
        prod = ev.rescale(ev.mul_const(tk, qv, target_scale)) if qv != 0.0 else None
    else:
        lvl = min(qv.level, tk.level)
        prod = ev.rescale(ev.mul(ev.drop_level(qv, lvl), ev.drop_level(tk, lvl)))
    # the remainder is built to land exactly on the product's scale
    rv = _evaluate_series(ev, basis, r, baby, prod.scale if prod is not None else target_scale)
    if prod is None:
        return rv
    if isinstance(rv, float):
        return ev.add(prod, rv) if rv else prod
    lvl = min(prod.level, rv.level)
    return ev.add(ev.drop_level(prod, lvl), ev.drop_level(rv, lvl))


def evaluate_chebyshev(ev: Evaluator, ct: Ciphertext, poly: Chebyshev) -> Ciphertext:
    """sum c_i T_i(u(ct)) with u the affine map of [a, b] to [-1, 1]."""
    alpha = 2.0 / (poly.b - poly.a)
    beta = -(poly.a + poly.b) / (poly.b - poly.a)
    u = ev.add(ev.rescale(ev.mul(ct, alpha)), beta)
    basis = _Basis(ev, u)
    d = poly.degree
    baby = 1 << max(1, math.ceil(math.log2(d + 1) / 2))
    out = _evaluate_series(ev, basis, list(poly.coeffs), baby)
    if isinstance(out, float):  # a constant polynomial: still return a ciphertext
        return ev.add(ev.rescale(ev.mul(u, 0.0)), out)
    return out


def evaluate(ev: Evaluator, ct: Ciphertext, approx: Approximation) -> Ciphertext:
    """The approximation applied slot-wise to ct."""
    y = evaluate_chebyshev(ev, ct, approx.poly)
    for _ in range(approx.newton_steps):
        x = ev.drop_level(ct, y.level)
        if approx.newton == "inverse":  # y (2 - x y)
            xy = ev.rescale(ev.mul(x, y))
            corr = ev.add(ev.neg(xy), 2.0)
            y = ev.rescale(ev.mul(ev.drop_level(y, corr.level), corr))
        else:  # y (3 - x y^2) / 2
            y2 = ev.rescale(ev.mul(y, y))
            xy2 = ev.rescale(ev.mul(ev.drop_level(x, y2.level), y2))
            corr = ev.add(ev.neg(xy2), 3.0)
            half_y = ev.rescale(ev.mul(y, 0.5))
            lvl = min(half_y.level, corr.level)
            y = ev.rescale(ev.mul(ev.drop_level(half_y, lvl), ev.drop_level(corr, lvl)))
    return y
