"""Baby-step giant-step evaluation of a Chebyshev series sum_i c_i T_i(u), u a ciphertext in [-1, 1].

This is the engine's polynomial evaluator: bootstrapping's EvalMod (``fhectl.ckks.bootstrap``) and the
circuits' approximations (``fhectl.circuits.polynomial``, which adds intervals, interpolation and domain
checks on top) both use it. It follows the baby-step giant-step evaluation in the Chebyshev basis of
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
m = ceil(log2(d + 1)) levels (``series_depth``), against ceil(log2 d) + 1 for computing every T_i and
summing c_i T_i. The baby-step size 2^l is chosen per polynomial to minimise non-scalar products, about
2 sqrt(d) + log2(d) of them instead of d - 1.

Scales. Every result lands on the scale it was asked for (exactly, but for float rounding), so every
addition adds equal scales however far the primes are from 2^scale_bits: a leaf's constants are encoded with
``mul_const(..., target_scale)``; a quotient is evaluated at the scale that, multiplied by its giant step's
and divided by the prime the product is rescaled by, gives the target; in T_{i+j} = 2 T_i T_j - T_{i-j}
the subtracted T_{i-j} is first multiplied by 1.0 encoded to land on the product's scale and subtracted
before the product's one rescale (no level of its own). Bootstrapping needs this: its message is 2^-15 of
the values EvalMod computes, far below the evaluator's tolerance between scales.

The evaluator is duck-typed: the engine's ``Evaluator`` and the circuits' level simulator
(``fhectl.circuits.levels.SimEvaluator``) both run it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Union

import numpy as np

from fhectl.errors import LevelError

# Coefficients below this fraction of the largest one are treated as zero: dropping them changes p by
# at most (d + 1) * 2^-50 * max|c_i|, far below CKKS noise, and keeps odd or even series from computing
# basis polynomials they do not need.
NEGLIGIBLE = 2.0**-50


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
def plan(coeffs: tuple[float, ...]) -> PolyPlan:
    """The plan of least non-scalar products for the series sum_i coeffs[i] T_i(u) (a tuple: cached)."""
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
        candidate = _plan_for(c, 1 << l, m, thresh)
        if best is None or (candidate.ct_mults, candidate.scalar_mults) < (best.ct_mults, best.scalar_mults):
            best = candidate
    return best


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


def evaluate_plain(coeffs, u) -> np.ndarray:
    """sum_i coeffs[i] T_i(u) computed the way ``evaluate`` computes it (same basis recurrences, same
    division tree): the float model that checks the division algebra."""
    p = plan(tuple(float(c) for c in coeffs))
    u = np.asarray(u, dtype=np.float64)
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


def series_depth(coeffs) -> int:
    """Levels ``evaluate`` consumes for the series: ceil(log2(d + 1)) (d <= 1: d)."""
    p = plan(tuple(float(c) for c in coeffs))
    return p.series_depth if p.degree >= 2 else p.degree


def evaluate(evaluator, u, coeffs, target_scale: float | None = None):
    """sum_i coeffs[i] T_i(u) slot-wise, u already in [-1, 1]: ``series_depth(coeffs)`` levels; the result
    has exactly ``target_scale`` (default: u's)."""
    ev = evaluator
    p = plan(tuple(float(c) for c in coeffs))
    need = series_depth(coeffs)
    if u.level < need:
        raise LevelError(f"a Chebyshev series of degree {p.degree} needs {need} levels, the ciphertext is at "
                         f"level {u.level}")
    scale = u.scale if target_scale is None else float(target_scale)
    if p.degree == 0:  # a constant: an exact encryption of zero plus the constant
        return ev.add(ev.mul_int(u, 0), p.root.value)
    if p.degree == 1:
        c0, c1 = p.root.coeffs
        out = ev.rescale(ev.mul_const(u, c1, target_scale=scale))
        return ev.add(out, c0) if c0 != 0.0 else out
    return _eval_node(ev, _Basis(ev, u), p.root, u.level, p.series_depth, scale)
