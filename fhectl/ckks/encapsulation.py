"""Sparse-secret encapsulation: bootstrapping's ModRaise under a sparse secret, the ciphertexts under a dense one.

After ModRaise a ciphertext decrypts to t + q0 I, and EvalMod must cover |I| <= K. With the dense uniform
ternary secret s of the 128-bit table, I is a sum of about 2N/3 terms: K ~ 400 at N = 2^16, and EvalMod
costs 13 levels (``fhectl.ckks.bootstrap.k_bound``). Bossuat, Troncoso-Pastoriza and Hubaux
("Bootstrapping for approximate homomorphic encryption with negligible failure-probability by using
sparse-secret encapsulation", ACNS 2022) switch the level-0 ciphertext to a secret s' of Hamming weight h
(h = 32) first, raise it under s', and switch back to s at the top level: then |I| <= (h + 1) / 2 always
(no failure probability), and EvalMod takes 9 levels.

Security. Neither key reveals more than RLWE under the secret it is encrypted with:
* ``to_dense`` switches s' -> s: RLWE samples under the dense s over the whole chain QP, like every other
  switching key of the profile (the 128-bit table applies).
* ``to_sparse`` switches s -> s': RLWE samples under the sparse s', so it exists only modulo q0 p', one
  prime of Q and one of P (about 2^115 with boot-n16-128), never over the rest of the chain: the sparse
  secret's weakness against hybrid attacks is offset by that small modulus. The weight 32 and the small
  modulus follow Bossuat et al. (ACNS 2022) and Lattigo's bootstrapping defaults (an ephemeral secret of
  weight 32); fhectl has NOT run the lattice estimator on (N = 2^16, h = 32, log2 q = 115), so this key's
  128-bit claim rests on that published analysis, unverified here.
s' itself is drawn from the OS CSPRNG, used to make the two keys, and dropped: nobody stores it.

The switch to s' at level 0 uses one special prime p' (hybrid key switching with a single digit): for the
polynomial d = c1 mod q0, (b, a) = ModDown_p'(ModUp(d) * key) [Han and Ki, CT-RSA 2020]. Its error is about
sqrt(N) sigma q0 / p' ~ 2^10 in t, against t = Delta m ~ 2^40 |m|.
"""

from __future__ import annotations

from dataclasses import dataclass

from fhectl.ckks import keyswitch, sampling
from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import KeyGenerator, SecretKey, SwitchingKey
from fhectl.errors import KeyMismatchError, LevelError

DEFAULT_WEIGHT = 32  # Hamming weight of s' (Bossuat et al., ACNS 2022)


@dataclass
class EncapsulationKeys:
    """The two switching keys of sparse-secret encapsulation (no secret material).

    to_sparse: (2, 2, N) NTT, (b, a) of the key s -> s' over the rows (q0, p'), p' the first special prime;
    to_dense: the switching key s' -> s over QP.
    """

    weight: int
    to_sparse: object
    to_dense: SwitchingKey
    params_id: str
    key_id: str

    def __repr__(self) -> str:
        return f"EncapsulationKeys(weight={self.weight}, key_id={self.key_id!r})"


def sparse_bound(weight: int) -> int:
    """K for a secret of Hamming weight h: |c0 + c1 s'| <= (h + 1) q0 / 2 for centred c0, c1, so |I| <= (h + 1) / 2;
    one more for t / q0 and the switch's error."""
    return (weight + 1) // 2 + 1


def _rows(ctx: CKKSContext) -> tuple[int, int]:
    return (0, ctx.p_rows[0])


def generate(kg: KeyGenerator, sk: SecretKey, weight: int = DEFAULT_WEIGHT) -> EncapsulationKeys:
    """Both keys for the dense secret ``sk``, from a fresh sparse s' (dropped when this returns)."""
    ctx, be = kg.ctx, kg.ctx.backend
    p = ctx.params
    coeffs = sampling.sparse_ternary(kg.random, p.ring_degree, weight)
    rows = _rows(ctx)
    s_sparse = kg._small(coeffs, rows)
    a = kg._uniform(1, rows)
    b = kg._error(rows)
    t = be.empty(a.shape)
    be.mul(a, s_sparse, t, rows)
    be.sub(b, t, b, rows)  # b = e - a s'
    p_prime = p.all_moduli[rows[1]]
    scaled = be.empty((1, 1, p.ring_degree))
    be.mul_scalar(be.limbs(sk.ntt, 0, 1), scaled, (0,), [p_prime % p.moduli_q[0]])  # + p' s mod q0 (0 mod p')
    low = be.empty(scaled.shape)
    be.add(be.limbs(b, 0, 1), scaled, low, (0,))
    b = be.concat_limbs([low, be.limbs(b, 1, 2)])
    to_sparse = be.stack_polys([b, a])
    full = kg._small(coeffs, ctx.qp_rows(p.max_level))
    to_dense = kg.switching_key(full, sk, "encapsulation:to-dense")
    del coeffs, s_sparse, full
    return EncapsulationKeys(weight=weight, to_sparse=to_sparse, to_dense=to_dense, params_id=p.params_id,
                             key_id=sk.key_id)


def to_sparse(ctx: CKKSContext, ct: Ciphertext, keys: EncapsulationKeys) -> Ciphertext:
    """A level-0 ciphertext under s as one under s' (same level, same message)."""
    if ct.level != 0:
        raise LevelError(f"the switch to the sparse secret works at level 0, ciphertext is at level {ct.level}")
    if ct.key_id != keys.key_id:
        raise KeyMismatchError(f"encapsulation keys are for key {keys.key_id}, ciphertext is under {ct.key_id}")
    be = ctx.backend
    n = ctx.params.ring_degree
    rows = _rows(ctx)
    q0_row, p_row = (rows[0],), (rows[1],)
    # ModUp of d = c1 mod q0 to p'
    d = be.copy(be.limbs(be.polys(ct.data, 1, 2), 0, 1))
    coeff = be.copy(d)
    be.intt(coeff, q0_row)
    up = be.empty((1, 1, n))
    be.basis_convert(coeff, up, q0_row, p_row)
    be.ntt(up, p_row)
    ext = be.concat_limbs([d, up])  # (1, 2, N) over (q0, p')
    # (d * b_key, d * a_key), then ModDown by p' with rounding
    prod = be.empty((2, 2, n))
    for i in range(2):
        be.mul(ext, be.polys(keys.to_sparse, i, i + 1), be.polys(prod, i, i + 1), rows)
    top = be.copy(be.limbs(prod, 1, 2))
    be.intt(top, p_row)
    p_prime = ctx.params.all_moduli[rows[1]]
    be.add_scalar(top, top, p_row, [p_prime // 2])  # round, not floor
    conv = be.empty((2, 1, n))
    be.basis_convert(top, conv, p_row, q0_row)
    q0 = ctx.params.moduli_q[0]
    be.add_scalar(conv, conv, q0_row, [(-(p_prime // 2)) % q0])
    be.ntt(conv, q0_row)
    out = be.empty((2, 1, n))
    be.sub_and_scale(be.limbs(prod, 0, 1), conv, out, q0_row, [pow(p_prime % q0, -1, q0)])
    c0 = be.empty((1, 1, n))
    be.add(be.polys(out, 0, 1), be.polys(ct.data, 0, 1), c0, q0_row)
    data = be.stack_polys([c0, be.polys(out, 1, 2)])
    return Ciphertext(data=data, level=0, scale=ct.scale, params_id=ct.params_id, key_id=f"{ct.key_id}/sparse",
                      slots=ct.slots)


def to_dense(ctx: CKKSContext, ct: Ciphertext, keys: EncapsulationKeys) -> Ciphertext:
    """A ciphertext under s' (from ``to_sparse``, then raised) back under s, at its level."""
    if ct.key_id != f"{keys.key_id}/sparse":
        raise KeyMismatchError(f"expected a ciphertext under the sparse secret of {keys.key_id}, got {ct.key_id}")
    be = ctx.backend
    rows = ctx.q_rows(ct.level)
    ks = keyswitch.key_switch(ctx, be.polys(ct.data, 1, 2), keys.to_dense, ct.level)
    out = be.copy(ks)
    be.add(be.polys(ks, 0, 1), be.polys(ct.data, 0, 1), be.polys(out, 0, 1), rows)
    return Ciphertext(data=out, level=ct.level, scale=ct.scale, params_id=ct.params_id, key_id=keys.key_id,
                      slots=ct.slots)
