"""Nonlinear functions on the wide ranges of trained models: 1/sqrt(x) over 9 decades, SiLU and GELU on [-B, B].

``inverse_sqrt_wide(a, b)``: out_scale / sqrt(x) for x in [a, b], b / a up to 1e9 and more (RMSNorm and
LayerNorm mean squares with massive activations, Sun et al. 2024). One polynomial cannot follow 1/sqrt(x)
over 9 decades, so the range is reduced by composition, as in the composite approximations of Lee, Lee,
Kim, No, "Minimax approximation of sign function by composite polynomial" (EUROCRYPT 2021):

    v_0 = x / b in [a/b, 1];  for i < K:  v_{i+1} = v_i p_i(v_i)^2,  r <- r p_i(v_i);  out = r p_K(v_K)

(v_1 is computed as x P_0^2, so the small end keeps x's own relative precision; CKKS carries absolute
errors, so the first step must bring the ratio below 2^17: see MAX_RATIO_AFTER_FIRST)

p_i is a weighted minimax fit (Lawson's iteratively reweighted least squares, Chebyshev basis) of
1/sqrt(v) on [l_i, u_i] minimising max |sqrt(v) p_i(v) - 1|; sqrt(v) p_i(v) is an odd polynomial in sqrt(v)
of degree 2 d_i + 1, which can lift the bottom of the range by about (2 d_i + 1)^2 (its slope at 0 is
bounded by its degree), so each step divides the ratio u/l by about 4 d_i^2 (measured on a dense log grid:
the next interval is the measured range of v p_i(v)^2, widened by 1e-6 relative). When the ratio is small,
p_K alone meets the tolerance: in exact arithmetic the result's relative error is max |sqrt(v) p_K(v) - 1|.
Levels: the input map (1); per step ceil(log2(d_i + 1)) + 2 (p_i; v p_i; v p_i^2; the affine map of the
next step is folded into p_i's coefficients, and r p_i runs beside the v chain); the last polynomial and
the product with r: ceil(log2(d_K + 1)) + 1. The factory searches degrees 2^j - 1 for the least depth: 22
levels for 9 decades at rel_tol 2^-12 (degrees 127, 127, then 3). r is multiplied by a constant each step so it
stays below 1; out_scale folds into p_K's coefficients, so a caller keeps the output below ~2^8.

``silu_wide(B)``, ``gelu_wide(B)``: f(x) = x s(x) with s = sigmoid (SiLU) or 0.5 (1 + tanh(...)) (GPT-2's
GELU). s saturates, so f = x P(c(x / B)) with c a composition of Cheon, Kim, Kim's odd monotone maps
f_n (Cheon, Kim, Kim, Lee, "Efficient homomorphic comparison methods with optimal complexity", ASIACRYPT
2020; used to enlarge domains in Cheon, Kim, Kim, Lee, "Efficient homomorphic evaluation on large
intervals", IEEE TIFS 2022) and P the Chebyshev interpolant of s(B c^{-1}(y)) on [-1, 1], so the maps'
distortion near 0 costs nothing. The factory also tries c = identity (P of s(B y) alone) and keeps the
least depth, then the fewest products: measured, at B = 128 the plain interpolant of degree 511 (depth
11: the map x / B, 9, the product with x) beats every composite tried (depth >= 14), because s has one
transition of width ~10 and a degree-d Chebyshev series resolves features of width ~2B/d anywhere on
[-B, B], while the maps, bounded by their own degree, gain less per level. Error: |f~(x) - f(x)| <=
tol |x| on [-B, B] (sup |P(c(x/B)) - s(x)| <= tol), i.e. <= 8 tol on [-8, 8] and relative error <= tol
in the positive tail; the default tol = 1e-4 gives <= 8e-4 on [-8, 8].

Every ``evaluate`` takes an optional ``refresh`` (protocols.Refresher) called before a stage that needs
more levels than the ciphertexts have, and returns exactly ``target_scale`` (default: the input's scale).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.polynomial import chebyshev as C

from fhectl.circuits import polynomial
from fhectl.circuits.approximations import SQRT_2_OVER_PI, gelu_tanh
from fhectl.circuits.polynomial import ChebyshevPoly, check_domain, chebyshev_nodes
from fhectl.circuits.protocols import Refresher, ensure_levels
from fhectl.errors import InputError

# -- 1/sqrt(x) over many decades ----------------------------------------------------------------------------


def _log_grid(l: float, u: float, n: int = 20001) -> np.ndarray:
    return np.unique(np.concatenate([np.geomspace(l, u, n), np.linspace(l, u, n), chebyshev_nodes(l, u, 2001)]))


@lru_cache(maxsize=512)
def _relative_fit(ratio: float, degree: int) -> tuple[tuple[float, ...], float, float]:
    """p ~ 1/sqrt(v) on [1/ratio, 1] minimising max |sqrt(v) p(v) - 1| (Lawson's IRLS, 20 rounds).

    Returns p's Chebyshev coefficients on [1/ratio, 1] and min, max of sqrt(v) p(v) on a dense log grid.
    The problem is scale-invariant: on [l, l ratio], p(v / l) / sqrt(l) is the fit.
    """
    l, u = 1.0 / ratio, 1.0
    v = np.unique(np.concatenate([np.geomspace(l, u, 1500 + 16 * degree), chebyshev_nodes(l, u, 4 * degree + 32)]))
    a = C.chebvander((2.0 * v - (u + l)) / (u - l), degree) * np.sqrt(v)[:, None]
    w = np.full(v.size, 1.0 / v.size)
    for _ in range(20):
        sw = np.sqrt(w)
        qm, rm = np.linalg.qr(a * sw[:, None])
        c = np.linalg.solve(rm, qm.T @ sw)
        w = w * np.abs(a @ c - 1.0)
        w = np.maximum(w / w.sum(), 1e-4 / v.size)  # a floor: no region is left unconstrained
        w /= w.sum()
    g = np.unique(np.concatenate([_log_grid(l, u), np.linspace(l, u, 40001)]))
    q = np.sqrt(g) * C.chebval((2.0 * g - (u + l)) / (u - l), c)
    return tuple(float(x) for x in c), float(q.min()), float(q.max())


def _depth_of(degree: int) -> int:
    return (degree).bit_length()  # ceil(log2(d + 1)) for d = 2^j - 1


# After the first reduction, v~ in [2 / R, 2] is carried with CKKS's absolute error (about 2^-33 at a 2^40
# scale), so its smallest values keep 2^-33 R relative precision: the first step must bring R below this.
MAX_RATIO_AFTER_FIRST = 2.0**17


@lru_cache(maxsize=256)
def _plan_inverse_sqrt(ratio: float, rel_tol: float, budget: int, first: bool = False,
                       max_stage: int | None = None) -> tuple | None:
    """Least-depth degree sequence (compress degrees..., final degree) within ``budget`` levels, or None;
    with ``max_stage``, every stage (a reduction: j + 2 levels for degree 2^j - 1; the finish: j + 1) within it."""
    best = None
    for j in range(2, 8):  # finish here
        d = (1 << j) - 1
        if j + 1 > budget or (max_stage is not None and j + 1 > max_stage):
            break
        _, lo, hi = _relative_fit(ratio, d)
        if max(1.0 - lo, hi - 1.0) <= rel_tol:
            best = (j + 1, (d,))
            break
    for j in range(7, 2, -1):  # or compress (large degrees first: a good bound early), then recurse
        d = (1 << j) - 1
        cost, limit = j + 2, (best[0] - 1 if best else budget)
        if cost + 3 > limit or (max_stage is not None and cost > max_stage):
            continue
        _, lo, hi = _relative_fit(ratio, d)
        nxt = float(f"{(hi / lo) ** 2 * (1.0 + 1e-6):.6g}")
        if lo <= 0 or nxt > ratio / 4 or (first and nxt > MAX_RATIO_AFTER_FIRST):
            continue
        sub = _plan_inverse_sqrt(nxt, rel_tol, limit - cost, False, max_stage)
        if sub is not None and (best is None or cost + sub[0] < best[0]):
            best = (cost + sub[0], (d,) + sub[1])
    return best


# kappa_i r_i <= 1 on the domain grid, which holds a itself, where r_i is largest. The margin is for the CKKS error
# of the product before its refresh, largest at the low end of a wide domain (measured 0.3 % at x = a with the
# insecure N = 2^10 profile, whose refresh of x itself is 2^-8 absolute): a value at a reads 0.78 (k = 4), not ~1
R_BOUND_MARGIN = 2.0**-7


@dataclass(frozen=True)
class WideInverseSqrt:
    """out_scale / sqrt(x) on [a, b] by composite range reduction (see the module docstring)."""

    a: float
    b: float
    out_scale: float
    in_map: tuple[float, float]  # t_0 = alpha x + beta, on [-1, 1]
    steps: tuple[ChebyshevPoly, ...]  # P_i (scaled p_i), evaluated on t_i
    betas: tuple[float, ...]  # beta_i: v~_i = t_i - beta_i
    kappas: tuple[float, ...]  # kappa_i for r_i, i = 1 .. K
    final: ChebyshevPoly  # C p_K on t_K
    name: str = "inverse_sqrt_wide"

    @property
    def domain(self) -> tuple[float, float]:
        return (self.a, self.b)

    def reference(self, x):
        return self.out_scale / np.sqrt(np.asarray(x, dtype=np.float64))

    def stages(self) -> list[tuple[str, int]]:
        """(stage, levels) in order: each is one refresh segment at most."""
        out = [(f"{self.name} input map", 1)]
        out += [(f"{self.name} reduction {i + 1}/{len(self.steps)}", p.depth(mapped=True) + 2)
                for i, p in enumerate(self.steps)]
        return out + [(f"{self.name} finish", self.final.depth(mapped=True) + (1 if self.steps else 0))]

    def depth(self) -> int:
        return sum(n for _, n in self.stages())

    def named(self, name: str) -> "WideInverseSqrt":
        """The same circuit under another stage name (each norm of a block its own: the range indicator sums a
        stage's observations, and the threshold grows with their count)."""
        return dataclasses.replace(self, name=name)

    def r_bound(self, i: int) -> tuple[float, float]:
        """The interval of the running product r_i before kappa_i normalises it: (0, 1 / kappa_i] on [a, b], its
        largest value at x = a (1/sqrt decreases), widened by R_BOUND_MARGIN. Tight on purpose: r_i is where the
        range indicator sees x *below* a. x's own interval spans decades, so x = a / 4 sits 2^-16 half-widths
        from its edge and reads about 1 there, while r_i follows 1/sqrt(x) above its top. On SmolLM2 block 5's
        scaled domain [2^-9, 128] (one reduction), kappa_1 r_1 at x = a, a/2, a/4, a/10, 0 is 1, 1.013, 1.019,
        1.023, 1.025 (measured in float64), where the 1/sqrt is off by 0, 0.7 %, 7 %, 26 %, 100 %; with the
        indicator's k = 4 squarings (boot-n16-128) that reads 0.78, 1.16, 1.42, 1.60, 1.73: flagged from a/2 on,
        since each norm's r_i is its own stage (one observation, threshold 1 + tolerance). As x -> 0, r_i levels
        off (the polynomials' values at 0) instead of following 1/sqrt: a value far below a is flagged, but its
        reading stops growing with the distance."""
        top = 1.0 / self.kappas[i]
        return (-R_BOUND_MARGIN * top, (1.0 + R_BOUND_MARGIN) * top)

    def running_products_plain(self, x) -> tuple[np.ndarray, list[np.ndarray]]:
        """(t_K, [r_1, ..., r_K]) in float64: the last polynomial's input and the running products, each before
        the kappa that normalises it (what a refresh inside ``evaluate`` sees)."""
        x = np.asarray(x, dtype=np.float64)
        t = self.in_map[0] * x + self.in_map[1]
        r, products = None, []
        for i, p in enumerate(self.steps):
            pv = C.chebval(t, p.coeffs)
            r = pv if r is None else (self.kappas[i - 1] * r) * pv
            products.append(r)
            t = ((x if i == 0 else t - self.betas[i]) * pv) * pv + self.betas[i + 1]
        return t, products

    def eval_plain(self, x):
        t, products = self.running_products_plain(x)
        f = C.chebval(t, self.final.coeffs)
        return f if not products else (self.kappas[-1] * products[-1]) * f

    @property
    def max_rel_error(self) -> float:
        x = _log_grid(self.a, self.b)
        return float(np.max(np.abs(self.eval_plain(x) / self.reference(x) - 1.0)))

    @property
    def max_error(self) -> float:
        x = _log_grid(self.a, self.b)
        return float(np.max(np.abs(self.eval_plain(x) - self.reference(x))))

    def check_domain(self, values) -> None:
        check_domain(values, self.a, self.b, self.name)

    def evaluate(self, evaluator, ct, refresh: Refresher | None = None, target_scale: float | None = None):
        ev, q = evaluator, evaluator.ctx.params.moduli_q
        target = ct.scale if target_scale is None else float(target_scale)
        stages = self.stages()
        [ct] = ensure_levels([ct], stages[0][1], stages[0][0], refresh)
        t = ev.add(_scale_down(ev, ct, 1.0 / self.in_map[0], target), self.in_map[1])  # 1 level
        r = None
        # t is on [-1, 1] (twice that, for the noise); x on [a, b]; r_i, before the kappa that normalises it, in
        # (0, 1 / kappa_i] on the domain (``r_bound``): a bootstrapping refresh scales by these and its range
        # indicator checks them
        t_bound = (-2.0, 2.0)
        for i, p in enumerate(self.steps):
            bounds = [t_bound, (-2.0 * self.b, 2.0 * self.b) if r is None else self.r_bound(i - 1)]
            live = ensure_levels([t, ct] if r is None else [t, r], stages[i + 1][1], stages[i + 1][0], refresh, bounds,
                                 ["t", "x" if r is None else "r"])
            t, w = live[0], (live[1] if i == 0 else ev.add(live[0], -self.betas[i]))  # x, then v~_i
            r = live[1] if i else None
            lam, d = t.level, p.depth(mapped=True)
            # P_i at the scale that makes w P_i^2 land back on the working scale after its two rescales
            s_p = math.sqrt(target * q[lam - d] * q[lam - d - 1] / w.scale)
            pv = polynomial.evaluate(ev, t, p, mapped=True, target_scale=s_p)  # level lam - d
            r = pv if r is None else ev.rescale(ev.mul(ev.rescale(ev.mul_const(r, self.kappas[i - 1])), pv))
            t = ev.add(ev.rescale(ev.mul(ev.rescale(ev.mul(w, pv)), pv)), self.betas[i + 1])  # level lam - d - 2
        if r is None:
            return polynomial.evaluate(ev, t, self.final, mapped=True, target_scale=target)
        t, r = ensure_levels([t, r], stages[-1][1], stages[-1][0], refresh, [t_bound, self.r_bound(-1)], ["t", "r"])
        r = ev.rescale(ev.mul_const(r, self.kappas[-1]))
        lam_f = t.level - self.final.depth(mapped=True)
        f = polynomial.evaluate(ev, t, self.final, mapped=True, target_scale=target * q[lam_f] / r.scale)
        return ev.rescale(ev.mul(r, f))


def _scale_down(ev, ct, w: float, target: float):
    """ct / w at about ``target`` scale, one level, without encoding 1/w as a constant.

    mul_const would encode a tiny 1/w with few significant bits (2^-19 x 2^40: 21 bits at x / 10^6); instead
    the division is a relabelling of the scale (the data stays, the scale is multiplied by w: exact and
    free, the standard CKKS trick), and the scale is brought back near ``target`` by an integer product and
    a rescale.
    """
    divided = dataclasses.replace(ct, scale=ct.scale * w)
    k = max(1, round(target * ev.ctx.params.moduli_q[ct.level] / divided.scale))
    return ev.rescale(dataclasses.replace(ev.mul_int(divided, k), scale=divided.scale * k))


def _scaled(coeffs, factor: float, l: float, u: float, name: str) -> ChebyshevPoly:
    return ChebyshevPoly(tuple(float(c) * factor for c in coeffs), l, u, name=name)


@lru_cache(maxsize=32)
def inverse_sqrt_wide(a: float, b: float, rel_tol: float = 2.0**-12, out_scale: float = 1.0,
                      max_depth: int = 40, max_stage_levels: int | None = None) -> WideInverseSqrt:
    """out_scale / sqrt(x) on [a, b] (0 < a < b) with relative error <= rel_tol, least depth. With
    ``max_stage_levels`` (a bootstrapping profile's levels per refresh), every stage fits it: lower degrees and
    more reductions where one stage would be deeper (SmolLM2's later blocks need 9 levels otherwise, at
    boot-n16-128 a refresh gives 8)."""
    if not (math.isfinite(a) and math.isfinite(b) and 0 < a < b):
        raise InputError(f"inverse_sqrt_wide needs a domain 0 < a < b, got [{a}, {b}]")
    plan = _plan_inverse_sqrt(float(f"{b / a:.6g}"), rel_tol, max_depth - 1, True, max_stage_levels)
    if plan is None:
        within = "" if max_stage_levels is None else f" with stages of at most {max_stage_levels} levels"
        raise InputError(f"inverse_sqrt_wide on [{a:.6g}, {b:.6g}]: no composite within {max_depth} levels{within} "
                         f"reaches relative error {rel_tol:.3g}")
    degrees = plan[1]
    # intervals of v_i (v_0 = x / b), and the fits on them (a fit on [1/R, 1] moved to [l, l R])
    ratio = float(f"{b / a:.6g}")
    lo_hi = [(1.0 / ratio, 1.0)]
    fits = []
    for d in degrees:
        c, lo, hi = _relative_fit(ratio, d)
        l, u = lo_hi[-1]
        fits.append((np.asarray(c) / math.sqrt(u), l, u))  # p(v) = p_unit(v / u) / sqrt(u)
        # a near-perfect final fit would round its output ratio to exactly 1 (an interval of width 0)
        ratio = max(float(f"{(hi / lo) ** 2 * (1.0 + 1e-6):.6g}"), 1.0 + 1e-5)
        top = hi * hi * (1.0 + 5e-7)
        lo_hi.append((top / ratio, top))
    alphas = [2.0 / (u - l) for l, u in lo_hi]
    betas = tuple(-(u + l) / (u - l) for l, u in lo_hi)
    # P_0 multiplies x itself (v~_1 = x P_0^2: x keeps its relative precision at the small end), P_i v~_i
    factors = [math.sqrt(alphas[1] / b)] + [math.sqrt(alphas[i + 1] / alphas[i]) for i in range(1, len(fits) - 1)]
    steps = tuple(_scaled(c, factors[i], l, u, f"inverse_sqrt_wide p{i}") for i, (c, l, u) in enumerate(fits[:-1]))
    # kappa_i keeps r_i below 1: measured on the domain grid
    x = _log_grid(a, b)
    t = alphas[0] / b * x + betas[0]
    r, kappas = None, []
    for i, p in enumerate(steps):
        pv = C.chebval(t, p.coeffs)
        if r is not None:
            kappas.append(1.0 / float(np.max(np.abs(r))))
            r = kappas[-1] * r
        r = pv if r is None else r * pv
        t = ((x if i == 0 else t - betas[i]) * pv) * pv + betas[i + 1]
    if r is not None:
        kappas.append(1.0 / float(np.max(np.abs(r))))
    const = out_scale * (1.0 / math.sqrt(b) if not steps else 1.0 / math.sqrt(alphas[len(steps)])) / math.prod(kappas)
    c, l, u = fits[-1]
    final = _scaled(c, const, l, u, "inverse_sqrt_wide final")
    return WideInverseSqrt(float(a), float(b), float(out_scale), (alphas[0] / b, betas[0]), steps, betas,
                           tuple(kappas), final)


# -- SiLU and GELU on [-B, B] ------------------------------------------------------------------------------


def _cheon_map(n: int) -> ChebyshevPoly:
    """f_n(x) = sum_{i <= n} C(2i, i) 4^-i x (1 - x^2)^i: odd, increasing on [-1, 1], f_n(1) = 1, f_n'(0) ~ sqrt(n)."""
    power = np.zeros(2 * n + 2)
    for i in range(n + 1):
        term = np.polynomial.polynomial.polypow([1.0, 0.0, -1.0], i)  # (1 - x^2)^i
        power[1: 2 * i + 2] += math.comb(2 * i, i) / 4.0**i * term
    return ChebyshevPoly(tuple(float(c) for c in C.poly2cheb(power)), name=f"cheon f_{n}")


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))


def _gelu_gate(x):
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x**3)))


def _silu(x):
    x = np.asarray(x, dtype=np.float64)
    return x * _sigmoid(x)


GATES = {"silu": (_sigmoid, _silu), "gelu": (_gelu_gate, gelu_tanh)}


@dataclass(frozen=True)
class SaturatedProduct:
    """f(x) = x s(x) on [-bound, bound] as x P(c(x / bound)), c a composition of Cheon maps (maybe none).

    ``gate`` P is stored times ``bound`` (so x P = (x / bound) (bound P)).
    """

    kind: str  # "silu" or "gelu"
    bound: float
    maps: tuple[ChebyshevPoly, ...]
    gate: ChebyshevPoly  # bound * P on [-1, 1]

    @property
    def name(self) -> str:
        return f"{self.kind}_wide"

    @property
    def domain(self) -> tuple[float, float]:
        return (-self.bound, self.bound)

    def reference(self, x):
        return GATES[self.kind][1](x)

    def eval_plain(self, x):
        y = np.asarray(x, dtype=np.float64) / self.bound
        t = y
        for m in self.maps:
            t = C.chebval(t, m.coeffs)
        return y * C.chebval(t, self.gate.coeffs)

    def depth(self) -> int:
        """1 (x / bound) + the maps + P + 1 (the product with x / bound)."""
        return 2 + sum(m.depth() for m in self.maps) + self.gate.depth()

    def cost(self) -> dict:
        ct = sum(polynomial.cost(m)["ct_mults"] for m in self.maps) + polynomial.cost(self.gate)["ct_mults"] + 1
        return {"depth": self.depth(), "ct_mults": ct, "maps": tuple(m.degree for m in self.maps),
                "degree": self.gate.degree}

    def _grid(self, n: int = 200001) -> np.ndarray:
        b = self.bound
        return np.unique(np.concatenate([np.linspace(-b, b, n), np.linspace(-12, 12, n // 10)]))

    def gate_error(self, n: int = 200001) -> float:
        """sup |P(c(x / B)) - s(x)| on n grid points: |f~ - f| <= this * |x|."""
        x = self._grid(n)
        x = x[x != 0]
        return float(np.max(np.abs(self.eval_plain(x) / x - GATES[self.kind][0](x))))

    @property
    def max_gate_error(self) -> float:
        return self.gate_error()

    @property
    def max_error(self) -> float:
        x = self._grid()
        return float(np.max(np.abs(self.eval_plain(x) - self.reference(x))))

    @property
    def max_rel_error(self) -> float:
        """max |f~ - f| / |x| (the error relative to the input's size)."""
        return self.max_gate_error

    def check_domain(self, values) -> None:
        check_domain(values, -self.bound, self.bound, self.name)

    def stage_depths(self) -> tuple[int, int]:
        """(x / B and the maps, the gate and the product): the two stages a refresh may separate."""
        return 1 + sum(m.depth() for m in self.maps), self.gate.depth() + 1

    def evaluate(self, evaluator, ct, refresh: Refresher | None = None, target_scale: float | None = None):
        """One segment when ct has the whole depth (or a refresh gives it); else the maps' output t (on [-1, 1])
        is refreshed before the gate, and x / B, one level below ct's, waits for the product."""
        ev = evaluator
        target = ct.scale if target_scale is None else float(target_scale)
        first, second = self.stage_depths()
        # without a refresh the whole depth must be there; with one, the first stage's (the gate gets its own)
        [ct] = ensure_levels([ct], self.depth() if refresh is None else first, self.name, refresh)
        y = ev.rescale(ev.mul_const(ct, 1.0 / self.bound))  # level l - 1, x / B on [-1, 1]
        t = y
        for m in self.maps:
            t = polynomial.evaluate(ev, t, m)
        [t] = ensure_levels([t], second, f"{self.name} gate", refresh)
        lam = t.level - self.gate.depth()
        g = polynomial.evaluate(ev, t, self.gate, target_scale=target * ev.ctx.params.moduli_q[lam] / y.scale)
        return ev.rescale(ev.mul(ev.drop_level(y, min(y.level, g.level)), g))


def _invert_monotone(maps, y: np.ndarray) -> np.ndarray:
    """x in [-1, 1] with c(x) = y (c increasing on [-1, 1]): bisection."""
    lo, hi = -np.ones_like(y), np.ones_like(y)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        t = mid
        for m in maps:
            t = C.chebval(t, m.coeffs)
        below = t < y
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)


MAP_CHOICES = ((), (3,), (7,), (15,), (7, 3))


@lru_cache(maxsize=16)
def _saturated(kind: str, bound: float, tol: float, max_degree: int,
               max_stage_levels: int | None = None) -> SaturatedProduct:
    if not (math.isfinite(bound) and bound > 0):
        raise InputError(f"{kind}_wide needs a bound > 0, got {bound}")
    gate = GATES[kind][0]
    best = None
    for choice in MAP_CHOICES:
        maps = tuple(_cheon_map(n) for n in choice)
        k = 3
        while (1 << k) - 1 <= max_degree:
            d = (1 << k) - 1
            y = np.cos(np.pi * (np.arange(d + 1) + 0.5) / (d + 1))
            fy = bound * gate(bound * _invert_monotone(maps, y))
            coeffs = C.chebfit(y, fy, d)
            cand = SaturatedProduct(kind, float(bound), maps, ChebyshevPoly(tuple(float(c) for c in coeffs),
                                                                            name=f"{kind} gate"))
            if best is not None and max_stage_levels is None and cand.depth() > best[0][1]:
                break
            if max_stage_levels is not None and max(cand.stage_depths()) > max_stage_levels:
                if cand.gate.depth() + 1 > max_stage_levels:
                    break  # higher degrees only deepen the gate
                k += 1
                continue
            if cand.gate_error(20001) <= tol:
                # with a stage limit: one stage when the whole depth fits, else two (one refresh between)
                stages = 1 if max_stage_levels is None or cand.depth() <= max_stage_levels else 2
                key = (stages, cand.depth(), cand.cost()["ct_mults"])
                if best is None or key < best[0]:
                    best = (key, cand)
                break
            k += 1
    if best is None:
        raise InputError(f"{kind}_wide on [-{bound:.6g}, {bound:.6g}]: nothing up to degree {max_degree} reaches "
                         f"gate error {tol:.3g}")
    return best[1]


def silu_wide(bound: float = 128.0, tol: float = 1e-4, max_degree: int = 1023,
              max_stage_levels: int | None = None) -> SaturatedProduct:
    """SiLU x sigmoid(x) on [-bound, bound] with |error| <= tol |x|; least depth, then fewest products. With
    ``max_stage_levels`` (a bootstrapping profile's levels per refresh), every stage fits it: one stage if
    possible, else a Cheon map before the gate and one refresh between (``stage_depths``)."""
    return _saturated("silu", float(bound), float(tol), int(max_degree), max_stage_levels)


def gelu_wide(bound: float = 128.0, tol: float = 1e-4, max_degree: int = 1023,
              max_stage_levels: int | None = None) -> SaturatedProduct:
    """GPT-2's tanh GELU on [-bound, bound] with |error| <= tol |x|; least depth, then fewest products. With
    ``max_stage_levels``, every stage fits it, as for ``silu_wide``."""
    return _saturated("gelu", float(bound), float(tol), int(max_degree), max_stage_levels)


__all__ = ["SaturatedProduct", "WideInverseSqrt", "gelu_wide", "inverse_sqrt_wide", "silu_wide"]
