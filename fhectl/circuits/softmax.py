"""Softmax on the score ranges of trained models: normalise-and-square (Cho, Hanrot, Kim, Park, Stehlé,
"Fast and Accurate Homomorphic Softmax Evaluation", ACM CCS 2024).

With a public bound B on |scores| and k squarings:

    z_i = p(x_i) m_i                     p ~ c exp(x / 2^k) on [-B, B], m_i the 0/1 mask
    k times:  y_i <- y_i^2 g_t(sum_j y_j^2)      (y = z at the start)

so y_i = z_i^(2^k) / sum_j z_j^(2^k) = exp(x_i) / sum_j exp(x_j) when the last g is 1/x: no row maximum and
no shift. Only the last g has to be accurate; every earlier g_t ~ sigma_t / x only has to keep the row sum
near sigma_t (a common factor per row cancels in the next normalisation), so it is a low-degree
interpolant of sigma_t / x on [l_t, u_t], and its relative residual e_t = 1 / T_{d+1}((u+l)/(u-l))
(approximations.inverse_seed_residual) sets the next interval: sum y^2 lies in
[sigma^2 (1 - e)^2 / n, sigma^2 (1 + e)^2] for n keys (Cauchy-Schwarz). sigma_t and c are chosen so that
every interval has width exactly 2: the affine map onto [-1, 1] is then the addition of a constant, and
g_t costs ceil(log2(d_t + 1)) levels only. Padding rows (no visible key) get the interval's midpoint
added to their sum, so g sees a value in its domain there, and output 0.

Levels: exp(x / 2^k) (its interpolant, ceil(log2(d + 1)) + 1 with the map x / B) + 1 (mask), then per
normalisation 1 (square) + ceil(log2(d_t + 1)) + 1 (product): ``stages()`` lists them; each stage is one
refresh segment at most (``refresh.ensure_levels_all`` runs before a stage that does not fit). Measured
plans (tol 1e-3, B = 128): n = 128 keys: k = 7, exp of degree 7 (4 + 1 mask), normalisations with
d = 127, 15, 31, 15, 31, 15, 63: 5 + 9 + 6 + 7 + 6 + 7 + 6 + 8 = 54 levels (at most 9 per stage), TV bound
2.5e-4; n = 8: k = 6, 39 levels; n = 4: k = 6, 36 levels. The first normalisation is the widest
(sum z^2 spans n e^(4 B / 2^k)); the last is the only accurate one.

Error (exact arithmetic, ``tv_bound``): with rho = max |p / (c exp(x / 2^k)) - 1| and e the last residual,
every probability is off by a factor within [(1 - rho)^(2^k) (1 - e) / (1 + rho)^(2^k), (1 + rho)^(2^k)
(1 + e) / (1 - rho)^(2^k)], so the total variation from softmax is at most half of that factor's distance
from 1. CKKS noise grows by about 2^k (each squaring doubles relative errors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fhectl.circuits import polynomial
from fhectl.circuits.approximations import inverse_seed_residual
from fhectl.circuits.polynomial import ChebyshevPoly, chebyshev_interpolant, error_grid
from fhectl.circuits.protocols import Refresher, ensure_levels
from fhectl.errors import InputError


@dataclass(frozen=True)
class NormalizeSquareSoftmax:
    """Softmax over rows spread across a list of ciphertexts (slot s of cts[j]: score of key j for row s)."""

    bound: float
    max_keys: int
    squarings: int
    exp_poly: ChebyshevPoly  # c exp(x / 2^k) on [-B, B]
    exp_rel_error: float  # rho
    inverses: tuple[ChebyshevPoly, ...]  # g_t on [l_t, l_t + 2], evaluated on S - (l_t + 1)
    residuals: tuple[float, ...]  # e_t
    name: str = "softmax"

    @property
    def domain(self) -> tuple[float, float]:
        return (-self.bound, self.bound)

    @staticmethod
    def reference(scores, mask=True):
        x = np.asarray(scores, dtype=np.float64)
        m = np.broadcast_to(np.asarray(mask, dtype=bool), x.shape)
        e = np.where(m, np.exp(x - np.max(np.where(m, x, -np.inf), axis=-1, keepdims=True, initial=-np.inf)), 0.0)
        s = e.sum(axis=-1, keepdims=True)
        return np.divide(e, s, out=np.zeros_like(e), where=s > 0)

    def stages(self) -> list[tuple[str, int]]:
        out = [(f"{self.name} exp", self.exp_poly.depth() + 1)]
        k = len(self.inverses)
        return out + [(f"{self.name} normalise {t + 1}/{k}", g.depth(mapped=True) + 2)
                      for t, g in enumerate(self.inverses)]

    def depth(self) -> int:
        return sum(n for _, n in self.stages())

    @property
    def tv_bound(self) -> float:
        k, rho, e = self.squarings, self.exp_rel_error, self.residuals[-1]
        hi = ((1 + rho) / (1 - rho)) ** (2**k) * (1 + e)
        lo = ((1 - rho) / (1 + rho)) ** (2**k) * (1 - e)
        return 0.5 * max(hi - 1.0, 1.0 - lo)

    @property
    def max_error(self) -> float:
        return self.tv_bound

    def eval_plain(self, scores, mask=True):
        """The circuit's float64 computation; rows along the last axis, masked probabilities exactly 0."""
        x = np.asarray(scores, dtype=np.float64)
        m = np.broadcast_to(np.asarray(mask, dtype=bool), x.shape)
        pad = ~m.any(axis=-1)
        y = self.exp_poly.eval_plain(x) * m
        for g in self.inverses:
            y2 = y * y
            mid = g.a + 1.0
            s = y2.sum(axis=-1) + pad * mid
            y = y2 * g.eval_plain(s)[..., None]
        return y

    def evaluate(self, evaluator, cts: list, masks: list, refresh: Refresher | None = None,
                 target_scale: float | None = None, row_sum=None, row_sum_levels: int = 0,
                 pad: np.ndarray | None = None) -> list:
        """Softmax of rows spread over ``cts`` (row sums: slot-wise sums over the list), or, with ``row_sum``,
        of rows laid out inside each ciphertext: ``row_sum(ev, ys)`` returns one ciphertext holding each
        row's sum on every slot of that row (``row_sum_levels`` levels), and ``pad`` (1 on slots of no row
        with a visible key) replaces the padding rows derived from the masks."""
        ev, q = evaluator, evaluator.ctx.params.moduli_q
        if len(cts) != len(masks) or not 1 <= len(cts) <= self.max_keys:
            raise InputError(f"{self.name}: {len(cts)} ciphertexts and {len(masks)} masks for at most "
                             f"{self.max_keys} keys")
        target = cts[0].scale if target_scale is None else float(target_scale)
        slots = ev.ctx.params.slots
        masks = [np.resize(np.asarray(m, dtype=np.float64), slots) for m in masks]
        pad = 1.0 - np.max(masks, axis=0) if pad is None else np.resize(np.asarray(pad, dtype=np.float64), slots)
        stages = self.stages()
        ys = ensure_levels(list(cts), stages[0][1], stages[0][0], refresh)
        ys = [ev.rescale(ev.mul_values(polynomial.evaluate(ev, c, self.exp_poly, target_scale=target), m))
              for c, m in zip(ys, masks)]  # z_j m_j, exp depth + 1 levels, scale target
        for g, (stage, need) in zip(self.inverses, stages[1:]):
            ys = ensure_levels(ys, need + row_sum_levels, stage, refresh)
            sq = [ev.rescale(ev.mul(y, y)) for y in ys]  # level lam - 1
            if row_sum is None:
                s = sq[0]
                for c in sq[1:]:
                    s = ev.add(s, c)
            else:
                s = row_sum(ev, sq)
            mid = g.a + 1.0
            if pad.any():
                s = ev.add(s, ev.encoder.encode(pad * mid, level=s.level, scale=s.scale))
            u = ev.add(s, -mid)  # on [-1, 1]: the interval has width 2
            lam = u.level - g.depth(mapped=True)
            gs = polynomial.evaluate(ev, u, g, mapped=True, target_scale=target * q[lam] / sq[0].scale)
            ys = [ev.rescale(ev.mul(c, gs)) for c in sq]  # scale target
        return ys


def _inverse_degree(ratio: float, residual: float) -> int | None:
    """The least degree 2^j - 1 (<= 255) whose interpolant of 1/x on [l, l ratio] has residual <= residual."""
    for j in range(1, 9):
        if inverse_seed_residual(1.0, ratio, (1 << j) - 1) <= residual:
            return (1 << j) - 1
    return None


def _plan(bound: float, n: int, k: int, tol: float, mid_residual: float) -> tuple | None:
    """(exp interpolant, rho, [(l_t, degree, sigma_t, e_t)]) for k squarings, or None if infeasible."""
    h = bound / 2**k
    x = error_grid(-bound, bound, 127)
    rho_max = (1.0 + tol / 4) ** (1.0 / 2**k) - 1.0  # the exp error's share of the tolerance
    exp_poly, rho = None, math.inf
    for j in range(2, 8):
        p = chebyshev_interpolant(lambda t: np.exp(t / 2**k), -bound, bound, (1 << j) - 1, name="softmax exp")
        rho = float(np.max(np.abs(p.eval_plain(x) * np.exp(-x / 2**k) - 1.0)))
        if rho <= rho_max:
            exp_poly = p
            break
    if exp_poly is None:
        return None
    # c scales p so that the first sum of squares lies on an interval of width 2
    lo, hi = math.exp(-2 * h) * (1 - rho) ** 2, n * math.exp(2 * h) * (1 + rho) ** 2
    c2 = 2.0 / (hi - lo)
    lo, hi = lo * c2, hi * c2
    steps = []
    for t in range(k):
        last = t == k - 1
        d = _inverse_degree(hi / lo, tol if last else mid_residual)
        if d is None:
            return None
        e = inverse_seed_residual(lo, hi, d)
        # sigma_t^2 puts the next sum of squares on an interval of width 2 (1 for the last: outputs sum to 1)
        sigma = 1.0 if last else math.sqrt(2.0 / ((1 + e) ** 2 - (1 - e) ** 2 / n))
        steps.append((lo, d, sigma, e))
        lo, hi = sigma**2 * (1 - e) ** 2 / n, sigma**2 * (1 + e) ** 2
        lo = hi - 2.0  # the width is exactly 2 (up to rounding); keeps l + 1 the midpoint
    coeffs = tuple(float(v) * math.sqrt(c2) for v in exp_poly.coeffs)
    return ChebyshevPoly(coeffs, -bound, bound, name="softmax exp"), rho, steps


@lru_cache(maxsize=32)
def softmax_circuit(bound: float, max_keys: int, tol: float = 1e-3,
                    max_stage_levels: int | None = None) -> NormalizeSquareSoftmax:
    """Normalise-and-square softmax for |scores| <= bound and up to max_keys keys per row, TV <= tol.

    Tries k = 5 .. 9 squarings and intermediate residuals 0.1 .. 0.5, keeps the least depth. With
    ``max_stage_levels`` (what a refresh gives a stage: a bootstrapping profile's levels between bootstraps),
    only plans whose every stage fits, k up to 11, and the fewest stages first (each stage past the first
    level budget costs a refresh), then the least depth.
    """
    if not (math.isfinite(bound) and bound > 0 and max_keys >= 1 and 0 < tol < 1):
        raise InputError(f"softmax needs bound > 0, max_keys >= 1, 0 < tol < 1; got {bound}, {max_keys}, {tol}")
    # A plan holds for rows of up to max_keys keys. With one key the sums of squares have (almost) no spread,
    # the inverse seeds become exact and sigma_t = sqrt(2 / 4 e_t) overflows: plan for two keys, which
    # covers one.
    max_keys = max(int(max_keys), 2)
    best = None
    for k in range(5, 10 if max_stage_levels is None else 12):
        for mid in (0.1, 0.2, 0.3, 0.5):
            plan = _plan(float(bound), max_keys, k, tol, mid)
            if plan is None:
                continue
            exp_poly, rho, steps = plan
            inverses = tuple(chebyshev_interpolant(lambda s, sg=sigma: sg / s, lo, lo + 2.0, d,
                                                   name=f"softmax 1/x {t + 1}")
                             for t, (lo, d, sigma, _) in enumerate(steps))
            cand = NormalizeSquareSoftmax(float(bound), int(max_keys), k, exp_poly, rho, inverses,
                                          tuple(e for *_, e in steps))
            if cand.tv_bound > tol:
                continue
            need = [n for _, n in cand.stages()]
            if max_stage_levels is not None and max(need) > max_stage_levels:
                continue
            key = (cand.depth(), k) if max_stage_levels is None else (len(need), cand.depth(), k)
            if best is None or key < best[0]:
                best = (key, cand)
    if best is None:
        fit = "" if max_stage_levels is None else f" with stages of at most {max_stage_levels} levels"
        raise InputError(f"softmax on [-{bound:.6g}, {bound:.6g}] with {max_keys} keys: no plan reaches TV {tol:.3g}{fit}")
    return best[1]


__all__ = ["NormalizeSquareSoftmax", "softmax_circuit"]
