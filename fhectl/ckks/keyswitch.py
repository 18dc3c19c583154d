"""Hybrid key switching: ModUp per digit, the inner product with the key, ModDown.

For a polynomial d (NTT domain, over Q_l) and a switching key from s' to s,
``key_switch`` returns (b, a) over Q_l with b + a s = d s' + small error
[Han and Ki, CT-RSA 2020, Alg. 2-4]:

1. ModUp: for each digit Q_j of the chain at level l, take d's limbs of that
   digit to the coefficient domain and extend them by fast basis conversion
   to every other prime of Q_l and to P; NTT. The digit's own limbs are
   copied from d, already in the NTT domain.
2. Inner product: sum_j ModUp_j(d) * swk_j over Q_l and P (one fused kernel).
3. ModDown: divide by P: (x - Conv_{P->Q}([x]_P)) * P^{-1}, centred so that its error has mean zero
   (see ``CKKSContext._mod_down_offset``).

``decompose`` (step 1) is split out so that hoisted rotations do it once for
many Galois elements [Halevi and Shoup, "Faster homomorphic linear
transformations in HElib", CRYPTO 2018]: an automorphism permutes NTT slots
the same way on every limb, so it commutes with the decomposition.
"""

from __future__ import annotations

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import SwitchingKey


def decompose(ctx: CKKSContext, d, level: int):
    """ModUp of every digit of d (1, l+1, N) NTT: (digits, l+1+K, N) NTT over Q_l and P."""
    be = ctx.backend
    n = ctx.params.ring_degree
    q_rows = ctx.q_rows(level)
    p_rows = ctx.p_rows
    width = len(q_rows) + len(p_rows)
    coeff = be.copy(d)
    be.intt(coeff, q_rows)
    digits = ctx.params.digits(level)
    ext = be.empty((len(digits), width, n))
    for j, digit in enumerate(digits):
        src = be.limbs(coeff, digit.start, digit.stop)
        drows = tuple(digit)
        # Converted limbs go straight to their places around the digit's own limbs.
        for lo, hi in ((0, digit.start), (digit.stop, width)):
            if lo == hi:
                continue
            rows = (q_rows + p_rows)[lo:hi]
            dst = be.limbs(be.polys(ext, j, j + 1), lo, hi)
            be.basis_convert(src, dst, drows, rows)
            be.ntt(dst, rows)
        be.assign(be.limbs(be.polys(ext, j, j + 1), digit.start, digit.stop), be.limbs(d, digit.start, digit.stop))
    return ext


def inner_product(ctx: CKKSContext, ext, key: SwitchingKey, level: int, galois_element: int = 1):
    """sum_j sigma_g(ext_j) * (b_j, a_j) over Q_l and P: (2, l+1+K, N); g = 1 is no automorphism."""
    be = ctx.backend
    rows = ctx.qp_rows(level)
    # a truncated key's limbs sit at other places than the ring's rows (LevelError above its levels)
    key_rows = None if key.max_level is None else key.key_rows(ctx.q_rows(level), ctx.p_rows)
    out = be.empty((2, len(rows), ctx.params.ring_degree))
    be.keyswitch_inner_product(ext, key.data, out, rows, galois_element, key_rows)
    return out


def mod_down(ctx: CKKSContext, x, level: int):
    """round(x / P) over Q_l for x (B, l+1+K, N) NTT over Q_l and P: (B, l+1, N)."""
    be = ctx.backend
    q_rows = ctx.q_rows(level)
    p_rows = ctx.p_rows
    nb = x.shape[0]
    n = ctx.params.ring_degree
    nq = len(q_rows)
    p_part = be.copy(be.limbs(x, nq, nq + len(p_rows)))
    be.intt(p_part, p_rows)
    if len(p_rows) % 2:  # K odd: round x / P rather than floor it
        be.add_scalar(p_part, p_part, p_rows, ctx.mod_down_half_p())
    conv = be.empty((nb, nq, n))
    be.basis_convert(p_part, conv, p_rows, q_rows)
    be.add_scalar(conv, conv, q_rows, ctx.mod_down_offsets(level))  # conv - t: the result gains t / P, mean zero
    be.ntt(conv, q_rows)
    out = be.empty((nb, nq, n))
    be.sub_and_scale(be.limbs(x, 0, nq), conv, out, q_rows, ctx.p_inverse_mod_q(level))
    return out


def key_switch(ctx: CKKSContext, d, key: SwitchingKey, level: int):
    """(b, a) over Q_l, (2, l+1, N), with b + a s = d s' + e."""
    ext = decompose(ctx, d, level)
    return mod_down(ctx, inner_product(ctx, ext, key, level), level)
