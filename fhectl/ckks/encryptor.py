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
from fhectl.ckks.noise import check_statistical_security
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

    def decrypt_share_safe(self, ct: Ciphertext, error_bound: float, statistical_security: int = 30,
                           queries: int = 1, n_values: int | None = None, random=None) -> tuple[np.ndarray, float]:
        """Decrypt with noise flooding, for results handed to other parties; returns (slots, flooding sigma).

        CKKS decryption returns m + e, and e reveals the secret to whoever also holds the ciphertext
        (Li and Micciancio, "On the security of homomorphic encryption on approximate numbers",
        EUROCRYPT 2021). Here fresh noise x is added to every coefficient of m + e before decoding,
        x drawn from a discrete Gaussian of width

            sigma = sqrt(12 * queries) * 2**(statistical_security / 2) * error_bound,

        OpenFHE's NOISE_FLOODING_DECRYPT formula with ``error_bound`` (a bound on |e_i| over the
        coefficients, integer units at the ciphertext's scale) in place of its noise estimate. The
        flooding hides e only as far as ``error_bound`` really bounds it: the caller must supply an
        honest bound, and the result loses about statistical_security / 2 + log2(6 sqrt(12 queries))
        bits of precision (s / 2 + 4.4 for one query): the slot error grows by 6 * sigma * sqrt(N) / scale
        at six standard deviations, against 6 * sigma_e * sqrt(N) / scale before.

        Sampling: the OS CSPRNG (or ``random``, a named seeded source for tests) feeds the
        engine's table sampler up to width 4096; wider Gaussians are built by the convolution
        z1 * x1 + z2 * x2 of independent samples of width s, z1 and z2 coprime and at most
        s / (sqrt(2) * eta), eta the smoothing parameter of Z at epsilon = 2**-80 (Micciancio and
        Walter, CRYPTO 2017, Thm. 3): the result is within a statistical distance of a few epsilon
        per step of a discrete Gaussian of width s * sqrt(z1**2 + z2**2) >= sigma, the pair chosen
        to overshoot sigma as little as possible (never narrower than asked).
        """
        if not (math.isfinite(error_bound) and error_bound > 0):
            raise ValueError(f"error_bound must be a positive finite number, got {error_bound}")
        check_statistical_security(statistical_security)  # at least 30 bits: see fhectl.ckks.noise
        if queries < 1:
            raise ValueError(f"queries must be >= 1, got {queries}")
        source = random if random is not None else sampling.default_random()
        n = self.ctx.params.ring_degree
        target = math.sqrt(12.0 * queries) * 2.0 ** (statistical_security / 2) * error_bound
        if target >= 2.0**56:  # 12-sigma tails must stay far inside int64
            raise ValueError(f"flooding width 2^{math.log2(target):.1f} is beyond what can be added exactly")
        direct = 4096.0  # widths up to this come straight from the table sampler (12 * 4096 entries)
        eta = 4.24 / math.sqrt(2 * math.pi)  # smoothing parameter of Z at eps = 2**-80, in standard deviations

        def coprime_pair(ratio: float, z_max: int) -> tuple[int, int]:
            """Coprime z1 >= z2 >= 1, both <= z_max, with z1^2 + z2^2 >= ratio^2, the sum nearly smallest."""
            best = None
            start = max(1, math.ceil(ratio / math.sqrt(2)))
            for z1 in range(start, start + 64):  # near ratio / sqrt(2): z2 close to z1, overshoot ~ 1 / ratio
                z2 = max(1, math.ceil(math.sqrt(max(0.0, ratio * ratio - z1 * z1))))
                while math.gcd(z1, z2) != 1:
                    z2 += 1
                if max(z1, z2) <= z_max and (best is None or z1 * z1 + z2 * z2 < best[0] ** 2 + best[1] ** 2):
                    best = (z1, z2)
            assert best is not None, "convolution step beyond the smoothing condition"
            return best

        def wide_gaussian(sigma_goal: float, count: int) -> tuple[np.ndarray, float]:
            """(samples, their width): a width >= sigma_goal."""
            if sigma_goal <= direct:
                return sampling.discrete_gaussian(source, sigma_goal, count), sigma_goal
            # Two independent samples of width s = 2 sqrt(eta * goal) allow coefficients up to
            # s / (sqrt(2) eta) ~ 0.84 sqrt(goal), more than the ~0.27 sqrt(goal) needed to reach the goal.
            inner = 2 * math.sqrt(eta * sigma_goal)
            x1, s_prev = wide_gaussian(inner, count)
            x2, _ = wide_gaussian(inner, count)
            z1, z2 = coprime_pair(sigma_goal / s_prev, math.floor(s_prev / (math.sqrt(2) * eta)))
            return z1 * x1 + z2 * x2, s_prev * math.sqrt(z1 * z1 + z2 * z2)

        noise, sigma = wide_gaussian(target, n)
        coeffs = self.decrypt_coefficients(ct) + noise.astype(np.float64)
        values = self.encoder.decode_coefficients(coeffs, ct.scale, ct.slots if n_values is None else n_values)
        return values, sigma
