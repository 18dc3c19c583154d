"""Chebyshev series on an interval [a, b]: interpolation, plaintext evaluation and homomorphic evaluation.

A ``ChebyshevPoly`` is p(x) = sum_i c_i T_i(u), u = alpha x + beta the affine map of [a, b] onto
[-1, 1] (alpha = 2 / (b - a), beta = -(a + b) / (b - a)). ``chebyshev_interpolant`` builds it at the
Chebyshev points of the first kind, which is within a small factor of the best uniform approximation
[Trefethen, "Approximation Theory and Approximation Practice", ch. 16], and records its measured
maximal error on [a, b].

Homomorphic evaluation (``evaluate``) is the engine's baby-step giant-step evaluator of a series in u
(``fhectl.ckks.chebyshev``: Bossuat et al., EUROCRYPT 2021, Alg. 2, with exact scales; its docstring
explains the levels and scales), after the affine map u = alpha x + beta. The map takes one more level (one
``mul_const`` whose constant is encoded so that the rescale returns exactly to the input's scale, then a free
constant addition) unless [a, b] = [-1, 1] or the caller passes an already mapped ciphertext
(``mapped=True``: fold alpha and beta into the linear layer before, for free). For degree 1 the map folds
into the one scalar product. So ``depth(poly)`` = ceil(log2(d + 1)) + 1 for d >= 2 on a general interval,
ceil(log2(d + 1)) otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from fhectl.ckks import chebyshev
from fhectl.errors import DomainError, InputError, LevelError

# -- the series ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChebyshevPoly:
    """p(x) = sum_i coeffs[i] T_i(alpha x + beta) on [a, b]."""

    coeffs: tuple[float, ...]
    a: float = -1.0
    b: float = 1.0
    max_error: float | None = field(default=None, compare=False)  # measured sup |p - f| on [a, b], if known
    name: str = field(default="", compare=False)
    reference: Callable | None = field(default=None, compare=False, repr=False)  # the function approximated

    def __post_init__(self):
        if not (math.isfinite(self.a) and math.isfinite(self.b) and self.b > self.a):
            raise InputError(f"interval [{self.a}, {self.b}] is empty or not finite")
        if len(self.coeffs) == 0:
            raise InputError("a Chebyshev series needs at least one coefficient")
        if not all(math.isfinite(c) for c in self.coeffs):
            raise InputError("Chebyshev coefficients contain NaN or infinity")

    @property
    def degree(self) -> int:
        """Degree after dropping negligible top coefficients."""
        return chebyshev.plan(tuple(self.coeffs)).degree

    @property
    def domain(self) -> tuple[float, float]:
        return (self.a, self.b)

    @property
    def is_unit_interval(self) -> bool:
        return self.a == -1.0 and self.b == 1.0

    @property
    def affine(self) -> tuple[float, float]:
        """(alpha, beta) with u = alpha x + beta mapping [a, b] onto [-1, 1]."""
        return 2.0 / (self.b - self.a), -(self.a + self.b) / (self.b - self.a)

    def to_unit(self, x):
        alpha, beta = self.affine
        return alpha * np.asarray(x, dtype=np.float64) + beta

    def eval_plain(self, x):
        """p(x) in float64 (Clenshaw's recurrence): the definition the homomorphic evaluation must match."""
        return np.polynomial.chebyshev.chebval(self.to_unit(x), np.asarray(self.coeffs))

    def __call__(self, x):
        return self.eval_plain(x)

    def depth(self, mapped: bool = False) -> int:
        return depth(self, mapped)

    def cost(self, mapped: bool = False) -> dict:
        return cost(self, mapped)

    def evaluate(self, evaluator, ct, mapped: bool = False, target_scale: float | None = None):
        return evaluate(evaluator, ct, self, mapped=mapped, target_scale=target_scale)

    def check_domain(self, values) -> None:
        check_domain(values, self.a, self.b, self.name)


def chebyshev_nodes(a: float, b: float, n: int) -> np.ndarray:
    """The n Chebyshev points of the first kind mapped to [a, b]."""
    u = np.cos(np.pi * (np.arange(n) + 0.5) / n)
    return 0.5 * (b - a) * u + 0.5 * (a + b)


def error_grid(a: float, b: float, degree: int) -> np.ndarray:
    """Points on which a maximal error is measured: uniform plus Chebyshev-clustered near the ends."""
    n = max(4097, 16 * (degree + 1))
    return np.unique(np.concatenate([np.linspace(a, b, n), chebyshev_nodes(a, b, n), [a, b]]))


def max_abs_error(f: Callable, g: Callable, a: float, b: float, degree: int = 64) -> float:
    """max |f - g| on [a, b]: on ``error_grid``, refined around the largest few grid values."""
    x = error_grid(a, b, degree)
    err = np.abs(np.asarray(f(x)) - np.asarray(g(x)))
    best = float(np.max(err))
    for i in np.argsort(err)[-8:]:
        lo, hi = x[max(i - 1, 0)], x[min(i + 1, x.size - 1)]
        z = np.linspace(lo, hi, 257)
        best = max(best, float(np.max(np.abs(np.asarray(f(z)) - np.asarray(g(z))))))
    return best


def chebyshev_interpolant(f: Callable, a: float, b: float, degree: int, name: str = "") -> ChebyshevPoly:
    """The interpolant of f at degree + 1 Chebyshev points of [a, b], with its measured max error."""
    if degree < 0:
        raise InputError(f"degree {degree} must be >= 0")
    if not b > a:
        raise InputError(f"interval [{a}, {b}] is empty")
    n = degree + 1
    theta = np.pi * (np.arange(n) + 0.5) / n
    fx = np.asarray(f(0.5 * (b - a) * np.cos(theta) + 0.5 * (a + b)), dtype=np.float64)
    if not np.all(np.isfinite(fx)):
        raise InputError(f"{name or 'function'} is not finite at some Chebyshev point of [{a}, {b}]")
    coeffs = (2.0 / n) * np.cos(np.outer(np.arange(n), theta)) @ fx  # discrete cosine transform
    coeffs[0] /= 2.0
    # below the transform's own rounding (n terms of size max|f| each): zero, so that odd or even
    # functions give exactly odd or even series
    coeffs[np.abs(coeffs) <= 4.0 * n * np.finfo(np.float64).eps * np.max(np.abs(fx))] = 0.0
    poly = ChebyshevPoly(tuple(float(c) for c in coeffs), float(a), float(b), name=name)
    err = max_abs_error(poly.eval_plain, f, a, b, degree)
    return ChebyshevPoly(poly.coeffs, poly.a, poly.b, max_error=err, name=name, reference=f)


def chebyshev_fit(f: Callable, a: float, b: float, tol: float, max_degree: int = 255, name: str = "") -> ChebyshevPoly:
    """The interpolant of least depth (degree 2^k - 1, the most a depth buys) whose max error is <= tol."""
    best = None
    k = 1
    while (1 << k) - 1 <= max_degree:
        poly = chebyshev_interpolant(f, a, b, (1 << k) - 1, name)
        if poly.max_error <= tol:
            return poly
        best = poly
        k += 1
    got = f"degree {best.degree} gives {best.max_error:.3g}" if best else "no degree tried"
    raise InputError(f"{name or 'function'} on [{a:.6g}, {b:.6g}]: no Chebyshev interpolant up to degree {max_degree} "
                     f"reaches error {tol:.3g} ({got}); narrow the domain or relax the tolerance")


def check_domain(values, a: float, b: float, name: str = "") -> None:
    """Raise DomainError if any value lies outside [a, b] (or is not finite), naming the value and the domain.

    Callers run it on plaintext calibration data: outside its domain a polynomial approximation diverges
    quickly, and homomorphically nothing would notice.
    """
    v = np.asarray(values)
    if np.iscomplexobj(v):
        v = v.real
    v = v.astype(np.float64).reshape(-1)
    bad = ~((v >= a) & (v <= b))  # NaN counts as outside
    if np.any(bad):
        idx = np.flatnonzero(bad)
        worst = idx[np.argmax(np.where(np.isfinite(v[idx]), np.maximum(a - v[idx], v[idx] - b), np.inf))]
        finite = v[np.isfinite(v)]
        seen = f"; values seen in [{finite.min():.6g}, {finite.max():.6g}]" if finite.size else ""
        raise DomainError(f"{name + ': ' if name else ''}value {v[worst]:.6g} (index {worst}) lies outside the "
                          f"domain [{a:.6g}, {b:.6g}] ({idx.size} of {v.size} values outside{seen}); "
                          "recalibrate the domain or rescale the input")


# -- the evaluation plan (``fhectl.ckks.chebyshev``) -------------------------------------------------------


def plan(poly: ChebyshevPoly) -> chebyshev.PolyPlan:
    return chebyshev.plan(tuple(poly.coeffs))


def depth(poly: ChebyshevPoly, mapped: bool = False) -> int:
    """Levels ``evaluate`` consumes: ceil(log2(d + 1)), plus one for the affine map when d >= 2 on an
    interval other than [-1, 1] and the input is not already mapped."""
    d = plan(poly).degree
    if d <= 1:
        return d
    return plan(poly).series_depth + (0 if mapped or poly.is_unit_interval else 1)


def cost(poly: ChebyshevPoly, mapped: bool = False) -> dict:
    """Depth and operation counts of ``evaluate`` (ct_mults = relinearizations)."""
    p = plan(poly)
    affine = p.degree >= 2 and not (mapped or poly.is_unit_interval)
    return {
        "degree": p.degree,
        "depth": depth(poly, mapped),
        "ct_mults": p.ct_mults,
        "scalar_mults": p.scalar_mults + (1 if affine else 0),
        "baby_steps": p.leaf_size,
        "basis": p.basis,
    }


def evaluate_plain(poly: ChebyshevPoly, x) -> np.ndarray:
    """p(x) computed the way ``evaluate`` computes it (same basis recurrences, same division tree)."""
    return chebyshev.evaluate_plain(poly.coeffs, poly.to_unit(x))


# -- homomorphic evaluation ----------------------------------------------------------------------------


def evaluate(evaluator, ct, poly: ChebyshevPoly, mapped: bool = False, target_scale: float | None = None):
    """p(ct) slot-wise: ``depth(poly, mapped)`` levels; the result has exactly ``target_scale`` (default: ct's).

    ``mapped``: ct already holds u = alpha x + beta (see ``ChebyshevPoly.affine``), so no level goes to the
    affine map. Works with the real ``Evaluator`` and with ``levels.SimEvaluator``.
    """
    ev = evaluator
    p = plan(poly)
    need = depth(poly, mapped)
    if ct.level < need:
        raise LevelError(f"{poly.name or 'polynomial'} of degree {p.degree} needs {need} levels, "
                         f"the ciphertext is at level {ct.level}")
    scale = ct.scale if target_scale is None else float(target_scale)
    alpha, beta = (1.0, 0.0) if mapped or poly.is_unit_interval else poly.affine
    if p.degree == 0:  # a constant: an exact encryption of zero plus the constant
        return chebyshev.evaluate(ev, ct, poly.coeffs, scale)
    if p.degree == 1:  # c0 + c1 (alpha x + beta): the affine map folds into the one scalar product
        c0, c1 = p.root.coeffs
        out = ev.rescale(ev.mul_const(ct, c1 * alpha, target_scale=scale))
        return ev.add(out, c0 + c1 * beta) if c0 + c1 * beta != 0.0 else out
    u = ct
    if (alpha, beta) != (1.0, 0.0):
        u = ev.add(ev.rescale(ev.mul_const(ct, alpha)), beta)  # back to ct's scale exactly
    return chebyshev.evaluate(ev, u, poly.coeffs, scale)


__all__ = [
    "ChebyshevPoly",
    "chebyshev_interpolant",
    "chebyshev_fit",
    "chebyshev_nodes",
    "check_domain",
    "cost",
    "depth",
    "error_grid",
    "evaluate",
    "evaluate_plain",
    "max_abs_error",
    "plan",
]
