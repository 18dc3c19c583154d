"""Chebyshev series on an interval [a, b]: interpolation, plaintext evaluation and homomorphic evaluation.

A ``ChebyshevPoly`` is p(x) = sum_i c_i T_i(u), u = alpha x + beta the affine map of [a, b] onto
[-1, 1] (alpha = 2 / (b - a), beta = -(a + b) / (b - a)). ``chebyshev_interpolant`` builds it at the
Chebyshev points of the first kind, which is within a small factor of the best uniform approximation
[Trefethen, "Approximation Theory and Approximation Practice", ch. 16], and records its measured
maximal error on [a, b].

Homomorphic evaluation (``evaluate``) follows the baby-step giant-step evaluation in the Chebyshev basis of
Bossuat, Mouchet, Troncoso-Pastoriza and Hubaux [EUROCRYPT 2021, Sec. 5, Alg. 2], itself Paterson and
Stockmeyer's algorithm moved to the Chebyshev basis:

* baby steps T_1 .. T_{2^l - 1} and giant steps T_{2^l}, T_{2^{l+1}}, ..., T_{2^{m-1}} (m = ceil(log2(d + 1)))
  from T_{2k} = 2 T_k^2 - 1 and T_{i+j} = 2 T_i T_j - T_{i-j}: T_i costs ceil(log2 i) levels;
* the series is divided by the giant steps, p = q T_{2^k} + r with T_{k+j} = 2 T_k T_j - T_{k-j}, down to
  leaves of degree < 2^l, which are linear combinations of the baby steps (scalar products only).

Levels. A leaf costs one level for its scalar products on top of its deepest baby step, so a leaf that
holds T_i with ceil(log2 i) = l would make the whole series one level deeper than m on the path that
multiplies it by every giant step. The recursion here works against a level budget instead: a node of
degree d gets budget B with d < 2^B; a leaf is used only when its deepest T_i leaves one level for the
scalars, otherwise the node is split once more by T_{2^(B-1)} (a baby step). Only the one path that meets
every giant step is ever tight, so this costs at most l - 1 extra products, and the series takes exactly
m = ceil(log2(d + 1)) levels. The affine map u = alpha x + beta takes one more level (one ``mul_const`` whose
constant is encoded so that the rescale returns exactly to the input's scale, then a free constant
addition) unless [a, b] = [-1, 1] or the caller passes an already mapped ciphertext (``mapped=True``: fold
alpha and beta into the linear layer before, for free). For degree 1 the map folds into the one scalar
product. So ``depth(poly)`` = ceil(log2(d + 1)) + 1 for d >= 2 on a general interval, ceil(log2(d + 1))
otherwise. The baby-step size 2^l is chosen per polynomial to minimise non-scalar products, about
2 sqrt(d) + log2(d) of them.

Scales. Every result lands on the scale it was asked for (exactly, but for float rounding), so every
addition adds equal scales however far the primes are from 2^scale_bits (up to 2^-21 relative in the test
chains): a leaf's constants are encoded with ``mul_const(..., target_scale)``; a quotient is evaluated at
the scale that, multiplied by its giant step's and divided by the prime the product is rescaled by, gives
the target; in T_{i+j} = 2 T_i T_j - T_{i-j} the subtracted T_{i-j} is first multiplied by 1.0 encoded to
land on the product's scale and subtracted before the product's one rescale (no level of its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Union

import numpy as np

from fhectl.errors import DomainError, InputError, LevelError

# Coefficients below this fraction of the largest one are treated as zero: dropping them changes p by
# at most (d + 1) * 2^-50 * max|c_i|, far below CKKS noise, and keeps odd or even series from computing
# basis polynomials they do not need.
NEGLIGIBLE = 2.0**-50


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
        return _plan(self.coeffs).degree

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


# -- the evaluation plan --------------------------------------------------------------------------------


def _ceil_log2(n: int) -> int:
    """ceil(log2 n) for n >= 1: the levels T_n costs."""
    return (n - 1).bit_length()


@dataclass(frozen=True)
class _Leaf:
    coeffs: tuple[float, ...]  # c_0 .. c_{deg}, negligible ones zeroed


@dataclass(frozen=True)
class _Split:
    k: int  # p = q T_k + r
    q: "Node"
    r: "Node"


@dataclass(frozen=True)
class _Const:
    value: float


Node = Union[_Leaf, _Split, _Const]


def _divide(c: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """p = q T_k + r for k <= deg p < 2k, using T_{k+j} = 2 T_k T_j - T_{k-j} (T_k T_0 = T_k)."""
    d = len(c) - 1
    q = np.zeros(d - k + 1)
    r = np.array(c[:k], dtype=np.float64)
    q[0] = c[k]
    for j in range(1, d - k + 1):
        q[j] = 2.0 * c[k + j]
        r[k - j] -= c[k + j]
    return q, r


def _build(c: np.ndarray, budget: int, leaf_size: int, thresh: float) -> Node:
    nz = [i for i in range(len(c)) if abs(c[i]) > thresh]
    d = max(nz) if nz else 0
    if d == 0:
        return _Const(float(c[0]) if len(c) and abs(c[0]) > thresh else 0.0)
    assert d < (1 << budget), (d, budget)
    deepest = max(_ceil_log2(i) for i in nz if i >= 1)
    if d < leaf_size and deepest + 1 <= budget:
        return _Leaf(tuple(float(c[i]) if abs(c[i]) > thresh else 0.0 for i in range(d + 1)))
    # tight leaf: split by the largest baby step the budget allows; otherwise by the giant step below d
    k = 1 << (budget - 1) if d < leaf_size else 1 << (d.bit_length() - 1)
    q, r = _divide(c[: d + 1], k)
    return _Split(k, _build(q, budget - 1, leaf_size, thresh), _build(r, budget, leaf_size, thresh))


def _basis_closure(indices) -> set[int]:
    """Every T_i the evaluation computes, given those the tree reads."""
    need = set()
    stack = [i for i in indices if i >= 1]
    while stack:
        i = stack.pop()
        if i in need:
            continue
        need.add(i)
        if i == 1:
            continue
        if i & (i - 1) == 0:
            stack.append(i // 2)
        else:
            a = 1 << (i.bit_length() - 1)
            stack.extend([a, i - a, a - (i - a)])
    return need


def _walk(node: Node, leaves: list, splits: list) -> None:
    if isinstance(node, _Leaf):
        leaves.append(node)
    elif isinstance(node, _Split):
        splits.append(node)
        _walk(node.q, leaves, splits)
        _walk(node.r, leaves, splits)


@dataclass(frozen=True)
class PolyPlan:
    """How a series is evaluated: the division tree, the basis it reads, and what it costs."""

    degree: int
    series_depth: int  # levels of the series in u: ceil(log2(degree + 1))
    leaf_size: int  # 2^l: leaves have degree < leaf_size
    root: Node
    basis: tuple[int, ...]  # indices i of the T_i computed
    ct_mults: int  # non-scalar products (each one relinearization)
    scalar_mults: int  # mul_const calls in the series (affine map not included)


def _plan_for(c: np.ndarray, leaf_size: int, m: int, thresh: float) -> PolyPlan:
    root = _build(c, m, leaf_size, thresh)
    leaves, splits = [], []
    _walk(root, leaves, splits)
    read = {s.k for s in splits}
    for leaf in leaves:
        read |= {i for i, v in enumerate(leaf.coeffs) if i >= 1 and v != 0.0}
    basis = _basis_closure(read)
    fixups = sum(1 for i in basis if i & (i - 1))  # T_{i-j} brought to the product's scale
    ct_mults = (len(basis) - 1) + sum(1 for s in splits if not isinstance(s.q, _Const))
    scalars = fixups + sum(sum(1 for i, v in enumerate(leaf.coeffs) if i >= 1 and v != 0.0) for leaf in leaves)
    scalars += sum(1 for s in splits if isinstance(s.q, _Const) and s.q.value != 0.0)
    d = len(c) - 1
    return PolyPlan(d, m, leaf_size, root, tuple(sorted(basis)), ct_mults, scalars)


@lru_cache(maxsize=256)
def _plan(coeffs: tuple[float, ...]) -> PolyPlan:
    c = np.asarray(coeffs, dtype=np.float64)
    top = float(np.max(np.abs(c))) if c.size else 0.0
    thresh = NEGLIGIBLE * top
    nz = np.flatnonzero(np.abs(c) > thresh)
    d = int(nz[-1]) if nz.size else 0
    c = c[: d + 1]
    if d <= 1:
        root = _Const(float(c[0])) if d == 0 else _Leaf(tuple(float(v) for v in c))
        return PolyPlan(d, d, 2, root, (1,) if d else (), 0, d)
    m = _ceil_log2(d + 1)
    best = None
    for l in range(1, m + 1):
        plan = _plan_for(c, 1 << l, m, thresh)
        if best is None or (plan.ct_mults, plan.scalar_mults) < (best.ct_mults, best.scalar_mults):
            best = plan
    return best


def plan(poly: ChebyshevPoly) -> PolyPlan:
    return _plan(tuple(poly.coeffs))


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


# -- plaintext evaluation through the plan (checks the division algebra) ---------------------------------


def _plain_basis(u: np.ndarray, indices) -> dict[int, np.ndarray]:
    t = {0: np.ones_like(u), 1: u}
    for i in sorted(indices):
        if i <= 1:
            continue
        if i & (i - 1) == 0:
            t[i] = 2.0 * t[i // 2] ** 2 - 1.0
        else:
            a = 1 << (i.bit_length() - 1)
            t[i] = 2.0 * t[a] * t[i - a] - t[a - (i - a)]
    return t


def _plain_node(node: Node, t: dict) -> np.ndarray | float:
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, _Leaf):
        return node.coeffs[0] + sum(c * t[i] for i, c in enumerate(node.coeffs) if i >= 1 and c != 0.0)
    return _plain_node(node.q, t) * t[node.k] + _plain_node(node.r, t)


def evaluate_plain(poly: ChebyshevPoly, x) -> np.ndarray:
    """p(x) computed the way ``evaluate`` computes it (same basis recurrences, same division tree)."""
    p = plan(poly)
    u = poly.to_unit(x)
    out = _plain_node(p.root, _plain_basis(u, p.basis))
    return np.broadcast_to(out, u.shape).astype(np.float64)


# -- homomorphic evaluation ----------------------------------------------------------------------------


class _Basis:
    """T_i(u) of one ciphertext u, computed on demand: T_i at level level(u) - ceil(log2 i)."""

    def __init__(self, ev, u):
        self.ev = ev
        self.t = {1: u}

    def get(self, i: int):
        if i in self.t:
            return self.t[i]
        ev = self.ev
        if i & (i - 1) == 0:  # T_2k = 2 T_k^2 - 1
            h = self.get(i // 2)
            out = ev.sub(ev.rescale(ev.mul_int(ev.mul(h, h), 2)), 1.0)
        else:  # T_{a+b} = 2 T_a T_b - T_{a-b}, a the largest power of two below i
            a = 1 << (i.bit_length() - 1)
            ta, tb, tc = self.get(a), self.get(i - a), self.get(a - (i - a))
            level = min(ta.level, tb.level)
            prod = ev.mul(ev.drop_level(ta, level), ev.drop_level(tb, level))
            q_top = ev.ctx.params.moduli_q[level]
            # T_{a-b} at exactly the product's scale: 1.0 encoded to land there, no rescale of its own
            tc_scaled = ev.mul_const(ev.drop_level(tc, level), 1.0, target_scale=prod.scale / q_top)
            out = ev.rescale(ev.sub(ev.mul_int(prod, 2), tc_scaled))
        self.t[i] = out
        return out


def _eval_node(ev, basis: _Basis, node: Node, top_level: int, budget: int, scale: float):
    """The node's series at level top_level - budget and exactly ``scale`` (a float if it is constant)."""
    level = top_level - budget
    if isinstance(node, _Const):
        return node.value
    if isinstance(node, _Leaf):
        acc = None
        for i, c in enumerate(node.coeffs):
            if i == 0 or c == 0.0:
                continue
            term = ev.mul_const(ev.drop_level(basis.get(i), level + 1), c, target_scale=scale)
            acc = term if acc is None else ev.add(acc, term)
        acc = ev.rescale(acc)
        return ev.add(acc, node.coeffs[0]) if node.coeffs[0] != 0.0 else acc
    t_k = ev.drop_level(basis.get(node.k), level + 1)
    if isinstance(node.q, _Const):
        prod = ev.rescale(ev.mul_const(t_k, node.q.value, target_scale=scale)) if node.q.value != 0.0 else None
    else:
        q_scale = scale * ev.ctx.params.moduli_q[level + 1] / t_k.scale
        q_ct = _eval_node(ev, basis, node.q, top_level, budget - 1, q_scale)
        prod = ev.rescale(ev.mul(q_ct, t_k))
    rest = _eval_node(ev, basis, node.r, top_level, budget, scale)
    if prod is None:
        return rest
    if isinstance(rest, float):
        return ev.add(prod, rest) if rest != 0.0 else prod
    return ev.add(prod, rest)


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
        return ev.add(ev.mul_int(ct, 0), p.root.value)
    if p.degree == 1:  # c0 + c1 (alpha x + beta): the affine map folds into the one scalar product
        c0, c1 = p.root.coeffs
        out = ev.rescale(ev.mul_const(ct, c1 * alpha, target_scale=scale))
        return ev.add(out, c0 + c1 * beta) if c0 + c1 * beta != 0.0 else out
    u = ct
    if (alpha, beta) != (1.0, 0.0):
        u = ev.add(ev.rescale(ev.mul_const(ct, alpha)), beta)  # back to ct's scale exactly
    return _eval_node(ev, _Basis(ev, u), p.root, u.level, p.series_depth, scale)


__all__ = [
    "ChebyshevPoly",
    "PolyPlan",
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
