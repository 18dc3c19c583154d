"""RNS kernels: fast basis conversion, rescaling, and conversions to and from floats.

All polynomials here are in the coefficient domain (the conversions are not
pointwise in the NTT domain). Shapes are (B, L, N) uint64 with limb i reduced
modulo the i-th modulus of the basis it is in.

Fast basis conversion [Bajard, Eynard, Hasan, Zucca, SAC 2016; Halevi,
Polyakov, Shoup, CT-RSA 2019]: for x given by residues x_i modulo
C = c_0 ... c_{m-1}, and each target modulus p,

    Conv(x) mod p = sum_i [x_i * (C/c_i)^{-1}]_{c_i} * (C/c_i)   (mod p),

which is x + u*C for an integer 0 <= u < m. Hybrid key switching absorbs that
multiple of C into its noise, so no exact correction is made.
"""

import math

import numpy as np
from numba import njit, prange

from .modarith import (
    barrett_constants,
    mul_mod,
    mul_shoup,
    mulhi64,
    reduce_u64,
    reduce_u128,
    shoup_word,
    sub_mod,
)


class BasisConversionTable:
    """Precomputed constants to convert from basis ``source`` to basis ``target``."""

    def __init__(self, source, target):
        source = [int(c) for c in source]
        target = [int(p) for p in target]
        big_c = math.prod(source)
        self.source = np.array(source, dtype=np.uint64)
        self.target = np.array(target, dtype=np.uint64)
        qhat = [big_c // c for c in source]
        inv = [pow(h % c, -1, c) for h, c in zip(qhat, source)]
        self.qhat_inv = np.array(inv, dtype=np.uint64)
        self.qhat_inv_shoup = np.array([shoup_word(v, c) for v, c in zip(inv, source)], dtype=np.uint64)
        self.qhat_mod_target = np.array([[h % p for p in target] for h in qhat], dtype=np.uint64)
        self.target_r64 = np.array([(1 << 64) % p for p in target], dtype=np.uint64)
        self.target_r64_shoup = np.array([shoup_word((1 << 64) % p, p) for p in target], dtype=np.uint64)
        consts = [barrett_constants(p) for p in target]
        self.target_mu = np.array([c[0] for c in consts], dtype=np.uint64)
        self.target_k = np.array([c[1] for c in consts], dtype=np.uint64)

    def args(self):
        """The arrays ``fast_basis_convert`` takes after its input and output."""
        return (
            self.source,
            self.qhat_inv,
            self.qhat_inv_shoup,
            self.target,
            self.qhat_mod_target,
            self.target_r64,
            self.target_r64_shoup,
            self.target_mu,
            self.target_k,
        )


@njit(parallel=True, cache=True)
def fast_basis_convert(x, out, source, qhat_inv, qhat_inv_shoup, target, qhat_mod_target, r64, r64_shoup, mu, k):
    """out[:, t] = Conv(x) mod target[t]; x: (B, m, N) over ``source``, out: (B, T, N).

    Result in [0, target[t]). Every product y_i * (C/c_i mod p) is < 2**122 and
    at most a few dozen are summed, so the 128-bit accumulator cannot overflow
    before its single reduction per output.
    """
    nb, m, n = x.shape
    nt = out.shape[1]
    chunk = 512
    nchunks = (n + chunk - 1) // chunk
    um = np.uint64(m)
    for work in prange(nb * nchunks):
        s = work // nchunks
        start = (work % nchunks) * chunk
        width = np.uint64(min(n, start + chunk) - start)
        ustart = np.uint64(start)
        # Blocked over coefficients, with unsigned indices and the digit loop
        # outside the coefficient loop, so the inner loops are straight-line
        # multiply-accumulates (signed indices cost a wraparound check each).
        y = np.empty((m, chunk), dtype=np.uint64)
        acc_hi = np.empty(chunk, dtype=np.uint64)
        acc_lo = np.empty(chunk, dtype=np.uint64)
        for i in range(um):
            w, ws, c = qhat_inv[i], qhat_inv_shoup[i], source[i]
            for jj in range(width):
                y[i, jj] = mul_shoup(x[s, i, ustart + jj], w, ws, c)
        for t in range(np.uint64(nt)):
            for jj in range(width):
                acc_hi[jj] = np.uint64(0)
                acc_lo[jj] = np.uint64(0)
            for i in range(um):
                w = qhat_mod_target[i, t]
                for jj in range(width):
                    p_lo = y[i, jj] * w
                    p_hi = mulhi64(y[i, jj], w)
                    lo = acc_lo[jj] + p_lo
                    acc_hi[jj] += p_hi + np.uint64(lo < p_lo)
                    acc_lo[jj] = lo
            p, r, rs, mu_t, k_t = target[t], r64[t], r64_shoup[t], mu[t], k[t]
            for jj in range(width):
                out[s, t, ustart + jj] = reduce_u128(acc_hi[jj], acc_lo[jj], p, r, rs, mu_t, k_t)


@njit(parallel=True, cache=True)
def sub_and_scale(a, b, out, moduli, scalars, scalars_shoup):
    """out = (a - b) * c_i (mod q_i); a, b, out: (B, L, N) in [0, q).

    The last step of ModDown (c_i = P^{-1}) and of rescaling (c_i = q_l^{-1}).
    """
    nb, nl, n = out.shape
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        w = scalars[i]
        ws = scalars_shoup[i]
        for j in range(np.uint64(n)):
            out[s, i, j] = mul_shoup(sub_mod(a[s, i, j], b[s, i, j], q), w, ws, q)


@njit(parallel=True, cache=True)
def rescale_round_prepare(last, out, last_modulus, moduli, mu, k):
    """Residues of the rounding correction of a division by q_l.

    last: (B, N) coefficients of the top limb modulo q_l = ``last_modulus``.
    out: (B, L, N) gets t_i = [x_l + floor(q_l/2)]_{q_l} - floor(q_l/2)  mod q_i,
    so that (x_i - t_i) / q_l = round(x / q_l) (mod q_i)
    [Cheon, Han, Kim, Kim, Song, SAC 2018, full-RNS rescaling].
    """
    nb, nl, n = out.shape
    half = last_modulus >> np.uint64(1)
    for r in prange(nb * nl):
        s = r // nl
        i = r % nl
        q = moduli[i]
        half_mod_q = reduce_u64(half, q, mu[i], k[i])
        for j in range(np.uint64(n)):
            v = last[s, j] + half
            if v >= last_modulus:
                v -= last_modulus
            out[s, i, j] = sub_mod(reduce_u64(v, q, mu[i], k[i]), half_mod_q, q)


@njit(parallel=True, cache=True)
def float_to_rns(values, out, moduli, mu, k, pow2_table):
    """out[i, j] = round(values[j]) mod moduli[i]; values: (N,) float64, out: (L, N).

    Exact for every finite float: below 2**62 the value is rounded to int64;
    above, a float64 is already an integer M * 2**e with |M| < 2**53, and
    2**e mod q comes from ``pow2_table[i, e]``. The magnitudes are rounded
    once, then each limb is reduced in its own contiguous pass (limb-major
    writes: a coefficient-major loop wrote with stride N and ran 4x slower).
    """
    nl, n = out.shape
    mag = np.empty(n, dtype=np.uint64)
    expo = np.zeros(n, dtype=np.int64)  # 0: small value; > 0: mantissa * 2**expo
    neg = np.empty(n, dtype=np.bool_)
    for j in prange(n):
        v = values[j]
        neg[j] = v < 0.0
        a = -v if v < 0.0 else v
        if a < 4.611686018427388e18:  # 2**62
            mag[j] = np.uint64(np.int64(a + 0.5))
        else:
            mant, ex = math.frexp(a)
            mag[j] = np.uint64(np.int64(mant * 9007199254740992.0))  # mant * 2**53, exact
            expo[j] = ex - 53
    for i in prange(nl):
        q = moduli[i]
        for j in range(np.uint64(n)):
            res = reduce_u64(mag[j], q, mu[i], k[i])
            if expo[j] > 0:
                res = mul_mod(res, pow2_table[i, expo[j]], q, mu[i], k[i])
            out[i, j] = (q - res if res != 0 else res) if neg[j] else res


@njit(inline="always", cache=True)
def _garner_digits_to_float(r, digits, moduli, inv_table, mu, k, radix_weights):
    """Mixed-radix digits of x from residues r (m,), returns sum_j v_j * prod_{i<j} q_i as float."""
    m = r.shape[0]
    for i in range(m):
        q = moduli[i]
        v = r[i]
        for j in range(i):
            # v = (v - v_j) * q_j^{-1} mod q_i
            vj = reduce_u64(digits[j], q, mu[i], k[i])
            v = mul_mod(sub_mod(v, vj, q), inv_table[j, i], q, mu[i], k[i])
        digits[i] = v
    acc = 0.0
    for j in range(m - 1, -1, -1):
        acc += float(digits[j]) * radix_weights[j]
    return acc


@njit(parallel=True, cache=True)
def rns_to_float_centered(x, out, moduli, inv_table, mu, k, radix_weights, half_digits):
    """out[j] = the centered value of x mod M as float64, M = prod(moduli); x: (m, N).

    Garner's mixed-radix conversion [Garner 1959] keeps every step in 64-bit
    words. ``inv_table[j, i] = q_j^{-1} mod q_i``, ``radix_weights[j] =
    prod_{i<j} q_i``, ``half_digits`` the mixed-radix digits of floor(M/2).
    The sign test compares digits from the top, so it is exact; a value in
    the upper half is converted as -(M - x), from negated residues, so a
    small negative number keeps its full float precision.
    """
    m, n = x.shape
    for j in prange(n):
        r = np.empty(m, dtype=np.uint64)
        digits = np.empty(m, dtype=np.uint64)
        for i in range(m):
            r[i] = x[i, j]
        value = _garner_digits_to_float(r, digits, moduli, inv_table, mu, k, radix_weights)
        upper = False
        for i in range(m - 1, -1, -1):
            if digits[i] != half_digits[i]:
                upper = digits[i] > half_digits[i]
                break
        if upper:
            for i in range(m):
                r[i] = np.uint64(0) if r[i] == np.uint64(0) else moduli[i] - r[i]
            value = -_garner_digits_to_float(r, digits, moduli, inv_table, mu, k, radix_weights)
        out[j] = value


class GarnerTable:
    """Constants of ``rns_to_float_centered`` for the first m moduli of a basis."""

    def __init__(self, moduli):
        moduli = [int(q) for q in moduli]
        m = len(moduli)
        self.moduli = np.array(moduli, dtype=np.uint64)
        self.inv_table = np.zeros((m, m), dtype=np.uint64)
        for j in range(m):
            for i in range(j + 1, m):
                self.inv_table[j, i] = pow(moduli[j], -1, moduli[i])
        consts = [barrett_constants(q) for q in moduli]
        self.mu = np.array([c[0] for c in consts], dtype=np.uint64)
        self.k = np.array([c[1] for c in consts], dtype=np.uint64)
        weights = [math.prod(moduli[:j]) for j in range(m)]
        self.radix_weights = np.array([float(w) for w in weights], dtype=np.float64)
        half = math.prod(moduli) // 2
        digits = []
        for q in moduli:
            digits.append(half % q)
            half //= q
        self.half_digits = np.array(digits, dtype=np.uint64)

    def args(self):
        return (self.moduli, self.inv_table, self.mu, self.k, self.radix_weights, self.half_digits)


def pow2_mod_table(moduli, max_exponent: int = 1100) -> np.ndarray:
    """pow2[i, e] = 2**e mod moduli[i], for float_to_rns (float64 exponents stop at 1024)."""
    out = np.empty((len(moduli), max_exponent), dtype=np.uint64)
    for i, q in enumerate(moduli):
        q = int(q)
        x = 1
        for e in range(max_exponent):
            out[i, e] = x
            x = (x << 1) % q
    return out



def signed_to_rns(values: np.ndarray, moduli) -> np.ndarray:
    """Residues (L, N) uint64 of small signed integers (|v| < min q), e.g. secrets and errors."""
    v = np.asarray(values, dtype=np.int64)
    out = np.empty((len(moduli), v.shape[0]), dtype=np.uint64)
    neg = v < 0
    mag = np.abs(v).astype(np.uint64)
    for i, q in enumerate(moduli):
        q = np.uint64(q)
        out[i] = np.where(neg, q - mag, mag)
    return out
