"""Encryption (public or secret key) and decryption.

Public-key encryption [CKKS17, Sec. 3.4]: ct = (u b + e0 + m, u a + e1) with u
ternary and e0, e1 Gaussian. Secret-key encryption: ct = (-a s + e + m, a).

Decryption computes c0 + c1 s (+ c2 s^2) only on the first few primes: the
message m + e is far smaller than q_0 q_1 ..., so the centered residue modulo
a prefix of the chain already equals it (OpenFHE decrypts on one or two
primes for the same reason). The prefix is the shortest one whose product
exceeds scale * 2**40, so values up to about 2**39 decode exactly.
"""

from __future__ import annotations

import math

import numpy as np

from fhe_kernels.rns import signed_to_rns
from fhectl.ckks import sampling
from fhectl.ckks.ciphertext import Ciphertext, Plaintext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encoder import Encoder
from fhectl.ckks.keys import PublicKey, SecretKey
from fhectl.errors import KeyMismatchError, LevelError

DECRYPT_HEADROOM_BITS = 40


class Encryptor:
    def __init__(self, ctx: CKKSContext, key: PublicKey | SecretKey, random=None):
        ctx.check(key)
        self.ctx = ctx
        self.key = key
        self.random = random if random is not None else sampling.default_random()
        self.encoder = Encoder(ctx)

    def _small(self, values: np.ndarray, rows):
        be = self.ctx.backend
        arr = be.to_device(signed_to_rns(values, [self.ctx.params.all_moduli[r] for r in rows])[None])
        be.ntt(arr, rows)
        return arr

    def _gaussian(self, rows):
        p = self.ctx.params
        return self._small(sampling.discrete_gaussian(self.random, p.literal.sigma, p.ring_degree), rows)

    def encrypt(self, values, level: int | None = None, scale: float | None = None) -> Ciphertext:
        """Encode ``values`` (at most N/2 real or complex numbers) and encrypt them."""
        return self.encrypt_plaintext(self.encoder.encode(values, level=level, scale=scale))

    def encrypt_plaintext(self, pt: Plaintext) -> Ciphertext:
        self.ctx.check(pt)
        be = self.ctx.backend
        p = self.ctx.params
        rows = self.ctx.q_rows(pt.level)
        if isinstance(self.key, PublicKey):
            u = self._small(sampling.uniform_ternary(self.random, p.ring_degree), rows)
            c = be.empty((2, len(rows), p.ring_degree))
            pk = be.limbs(self.key.data, 0, len(rows))
            c0 = be.polys(c, 0, 1)
            c1 = be.polys(c, 1, 2)
            be.mul(be.polys(pk, 0, 1), u, c0, rows)
            be.mul(be.polys(pk, 1, 2), u, c1, rows)
            be.add(c0, self._gaussian(rows), c0, rows)
            be.add(c1, self._gaussian(rows), c1, rows)
            be.add(c0, pt.data, c0, rows)
        else:
            n = p.ring_degree
            host_a = np.empty((1, len(rows), n), dtype=np.uint64)
            for i, r in enumerate(rows):
                host_a[0, i] = sampling.uniform_mod(self.random, p.all_moduli[r], n)
            a = be.to_device(host_a)
            b = be.empty(a.shape)
            be.mul(a, be.limbs(self.key.ntt, 0, len(rows)), b, rows)
            be.sub(self._gaussian(rows), b, b, rows)
            be.add(b, pt.data, b, rows)
            c = be.stack_polys([b, a])
        return Ciphertext(
            data=c, level=pt.level, scale=pt.scale, params_id=p.params_id, key_id=self.key.key_id, slots=pt.slots
        )


class Decryptor:
    def __init__(self, ctx: CKKSContext, secret_key: SecretKey):
        ctx.check(secret_key)
        self.ctx = ctx
        self.sk = secret_key
        self.encoder = Encoder(ctx)

    def decryption_limbs(self, ct: Ciphertext) -> int:
        """How many leading primes hold the message exactly (see the module docstring)."""
        need = math.log2(ct.scale) + DECRYPT_HEADROOM_BITS
        acc = 0.0
        for m, q in enumerate(self.ctx.params.moduli_q[: ct.level + 1], start=1):
            acc += math.log2(q)
            if acc >= need:
                return m
        return ct.level + 1

    def decrypt_coefficients(self, ct: Ciphertext) -> np.ndarray:
        """Centered integer coefficients of m + e as float64 (N,), before dividing by the scale."""
        self.ctx.check(ct)
        if ct.key_id != self.sk.key_id:
            raise KeyMismatchError(f"ciphertext is under key {ct.key_id}, the secret key given is {self.sk.key_id}")
        if not 0 <= ct.level <= self.ctx.params.max_level:
            raise LevelError(f"ciphertext level {ct.level} is outside 0..{self.ctx.params.max_level}")
        be = self.ctx.backend
        m = self.decryption_limbs(ct)
        rows = self.ctx.q_rows(m - 1)
        s = be.limbs(self.sk.ntt, 0, m)
        acc = be.copy(be.limbs(be.polys(ct.data, ct.size - 1, ct.size), 0, m))
        # Horner: (((c_k) s + c_{k-1}) s + ...) + c_0
        for i in range(ct.size - 2, -1, -1):
            be.mul(acc, s, acc, rows)
            be.add(acc, be.limbs(be.polys(ct.data, i, i + 1), 0, m), acc, rows)
        be.intt(acc, rows)
        return be.rns_to_float(be.to_host(acc)[0], rows)

    def decrypt(self, ct: Ciphertext, n_values: int | None = None) -> np.ndarray:
        """The slots (complex128) of ct; the first ``n_values`` (default: as many as were encrypted)."""
        coeffs = self.decrypt_coefficients(ct)
        return self.encoder.decode_coefficients(coeffs, ct.scale, ct.slots if n_values is None else n_values)
