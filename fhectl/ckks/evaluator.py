"""Homomorphic operations on ciphertexts.

Levels and scales: a fresh ciphertext is at the top level L with scale Delta.
A product multiplies scales; ``rescale`` divides by the top prime q_l and
drops it. Binary operations bring both operands to the lower of their levels
(dropping primes is free and exact). Additions need equal scales: the scales
here are tracked exactly, and two are accepted as equal within a relative
``SCALE_TOLERANCE`` (see ``fhectl.ckks.bookkeeping``, which holds every level
and scale rule, shared with the level simulator of fhectl.circuits.levels).
Where a caller can, it avoids the drift altogether by giving ``mul_const`` a
target scale.

Multiplying by a non-integer constant encodes it at scale q_l, so that the
following ``rescale`` returns exactly to the ciphertext's previous scale, or
at scale target * q_l / scale, so that it lands exactly on ``target``.
"""

from __future__ import annotations

import numpy as np

from fhe_kernels.automorphism import galois_element_for_conjugation, galois_element_for_rotation
from fhectl.ckks import bookkeeping as bk
from fhectl.ckks import keyswitch
from fhectl.ckks.backend import Backend
from fhectl.ckks.bookkeeping import SCALE_TOLERANCE  # noqa: F401 - re-exported: the evaluator's tolerance
from fhectl.ckks.ciphertext import Ciphertext, Plaintext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encoder import Encoder
from fhectl.ckks.keys import GaloisKeys, SwitchingKey
from fhectl.errors import InputError, KeyMismatchError, MissingKeyError


class Evaluator:
    def __init__(self, ctx: CKKSContext, relin_key: SwitchingKey | None = None, galois_keys: GaloisKeys | None = None):
        for k in (relin_key, galois_keys):
            if k is not None:
                ctx.check(k)
        self.ctx = ctx
        self.relin_key = relin_key
        self.galois_keys = galois_keys
        self.encoder = Encoder(ctx)
        self.counters = {"key_switch": 0, "rotations": 0, "rescales": 0, "ct_mults": 0}

    # -- helpers -----------------------------------------------------------------
    @property
    def be(self) -> Backend:
        return self.ctx.backend

    def _like(self, ct: Ciphertext, data, level=None, scale=None) -> Ciphertext:
        return Ciphertext(
            data=data,
            level=ct.level if level is None else level,
            scale=ct.scale if scale is None else scale,
            params_id=ct.params_id,
            key_id=ct.key_id,
            slots=ct.slots,
        )

    def _check_pair(self, a: Ciphertext, b) -> None:
        self.ctx.check(a, b)
        if isinstance(b, Ciphertext) and a.key_id != b.key_id:
            raise KeyMismatchError(f"operands are under different keys: {a.key_id} and {b.key_id}")

    def drop_level(self, ct: Ciphertext, level: int) -> Ciphertext:
        """The same ciphertext on the first level + 1 primes (exact; the scale is unchanged)."""
        bk.check_drop(ct.level, level)
        if level == ct.level:
            return ct
        return self._like(ct, self.be.copy(self.be.limbs(ct.data, 0, level + 1)), level=level)

    def _drop_plain(self, pt: Plaintext, level: int):
        bk.check_plain_level(pt.level, level)
        return self.be.limbs(pt.data, 0, level + 1)

    def _align(self, a: Ciphertext, b: Ciphertext) -> tuple[Ciphertext, Ciphertext]:
        level = min(a.level, b.level)
        return self.drop_level(a, level), self.drop_level(b, level)

    # -- addition ----------------------------------------------------------------
    def add(self, a: Ciphertext, b) -> Ciphertext:
        return self._add_sub(a, b, subtract=False)

    def sub(self, a: Ciphertext, b) -> Ciphertext:
        return self._add_sub(a, b, subtract=True)

    def _add_sub(self, a: Ciphertext, b, subtract: bool) -> Ciphertext:
        be = self.be
        op = be.sub if subtract else be.add
        name = "sub" if subtract else "add"
        if isinstance(b, Ciphertext):
            self._check_pair(a, b)
            a, b = self._align(a, b)
            bk.check_scales(a.scale, b.scale, name)
            bk.check_same_size(a.size, b.size, name)
            rows = self.ctx.q_rows(a.level)
            out = be.empty(a.data.shape)
            op(a.data, b.data, out, rows)
            return self._like(a, out)
        if isinstance(b, Plaintext):
            self.ctx.check(b)
            bk.check_scales(a.scale, b.scale, name)
            rows = self.ctx.q_rows(a.level)
            out = be.copy(a.data)
            c0 = be.polys(out, 0, 1)
            op(be.polys(a.data, 0, 1), self._drop_plain(b, a.level), c0, rows)
            return self._like(a, out)
        if bk.is_constant(b):
            if isinstance(b, complex) and b.imag != 0:
                return self._add_sub(a, self.encoder.encode(np.full(self.ctx.params.slots, b), a.level, a.scale), subtract)
            bk.check_constant(b, name)
            real = float(b.real if isinstance(b, complex) else b)
            value = -real if subtract else real
            # A constant polynomial is the same value at every NTT point.
            const = round(value * a.scale)
            rows = self.ctx.q_rows(a.level)
            out = be.copy(a.data)
            c0 = be.polys(out, 0, 1)
            be.add_scalar(c0, c0, rows, [const] * len(rows))
            return self._like(a, out)
        raise InputError(f"{name}: unsupported operand type {type(b).__name__}")

    def neg(self, a: Ciphertext) -> Ciphertext:
        out = self.be.empty(a.data.shape)
        self.be.neg(a.data, out, self.ctx.q_rows(a.level))
        return self._like(a, out)

    # -- multiplication ----------------------------------------------------------
    def mul(self, a: Ciphertext, b, relinearize: bool = True) -> Ciphertext:
        """a * b for a ciphertext, plaintext or real constant b. Does not rescale."""
        be = self.be
        if isinstance(b, Ciphertext):
            self._check_pair(a, b)
            a, b = self._align(a, b)
            bk.check_product_sizes(a.size, b.size)
            rows = self.ctx.q_rows(a.level)
            out = be.empty((3,) + tuple(a.data.shape[1:]))
            be.tensor(a.data, b.data, out, rows)
            self.counters["ct_mults"] += 1
            prod = self._like(a, out, scale=a.scale * b.scale)
            return self.relinearize(prod) if relinearize else prod
        if isinstance(b, Plaintext):
            self.ctx.check(b)
            rows = self.ctx.q_rows(a.level)
            pt = self._drop_plain(b, a.level)
            out = be.empty(a.data.shape)
            for i in range(a.size):
                be.mul(be.polys(a.data, i, i + 1), pt, be.polys(out, i, i + 1), rows)
            return self._like(a, out, scale=a.scale * b.scale)
        if bk.is_real_constant(b):
            return self.mul_const(a, float(b))
        raise InputError(f"mul: unsupported operand type {type(b).__name__}")

    def mul_int(self, a: Ciphertext, k: int) -> Ciphertext:
        """a * k for an integer k: exact, no scale change, no level used."""
        out = self.be.empty(a.data.shape)
        rows = self.ctx.q_rows(a.level)
        self.be.mul_scalar(a.data, out, rows, [int(k)] * len(rows))
        return self._like(a, out)

    def mul_const(self, a: Ciphertext, c: float, target_scale: float | None = None) -> Ciphertext:
        """a * c for a real c. After rescale() the scale is a's own (default) or exactly ``target_scale``."""
        const_scale = bk.const_scale(c, a.level, a.scale, self.ctx.params.moduli_q, target_scale)
        const = round(c * const_scale)
        out = self.be.empty(a.data.shape)
        rows = self.ctx.q_rows(a.level)
        self.be.mul_scalar(a.data, out, rows, [const] * len(rows))
        return self._like(a, out, scale=a.scale * const_scale)

    def mul_values(self, a: Ciphertext, values) -> Ciphertext:
        """a * values slot by slot (a plaintext vector), encoded at scale q_l: rescale() restores a's scale."""
        pt = self.encoder.encode(values, level=a.level, scale=bk.values_scale(a.level, self.ctx.params.moduli_q))
        return self.mul(a, pt)

    def square(self, a: Ciphertext) -> Ciphertext:
        return self.mul(a, a)

    def relinearize(self, ct: Ciphertext) -> Ciphertext:
        if ct.size == 2:
            return ct
        if self.relin_key is None:
            raise MissingKeyError("relinearization needs the relinearization key (keygen writes it with the public keys)")
        if self.relin_key.key_id != ct.key_id:
            raise KeyMismatchError(f"relinearization key is for {self.relin_key.key_id}, ciphertext under {ct.key_id}")
        be = self.be
        rows = self.ctx.q_rows(ct.level)
        ks = keyswitch.key_switch(self.ctx, be.polys(ct.data, 2, 3), self.relin_key, ct.level)
        self.counters["key_switch"] += 1
        out = be.empty((2,) + tuple(ct.data.shape[1:]))
        be.add(be.polys(ct.data, 0, 2), ks, out, rows)
        return self._like(ct, out)

    # -- rescaling -----------------------------------------------------------------
    def rescale(self, ct: Ciphertext) -> Ciphertext:
        """Divide by the top prime q_l with rounding and drop it: level l -> l-1."""
        scale = bk.rescaled_scale(ct.level, ct.scale, self.ctx.params.moduli_q)
        be = self.be
        level = ct.level
        n = self.ctx.params.ring_degree
        rows = self.ctx.q_rows(level - 1)
        top = be.copy(be.limbs(ct.data, level, level + 1))
        be.intt(top, (level,))
        corr = be.empty((ct.size, level, n))
        be.rescale_prepare(top, corr, level, rows)
        be.ntt(corr, rows)
        q_top = self.ctx.params.moduli_q[level]
        out = be.empty((ct.size, level, n))
        be.sub_and_scale(be.limbs(ct.data, 0, level), corr, out, rows, [pow(q_top, -1, q) for q in self.ctx.params.moduli_q[:level]])
        self.counters["rescales"] += 1
        return self._like(ct, out, level=level - 1, scale=scale)

    def mul_rescale(self, a: Ciphertext, b) -> Ciphertext:
        return self.rescale(self.mul(a, b))

    # -- rotations -------------------------------------------------------------------
    def _galois_key(self, galois_element: int, what: str) -> SwitchingKey:
        keys = self.galois_keys.keys if self.galois_keys is not None else {}
        key = keys.get(galois_element)
        if key is None:
            raise MissingKeyError(f"no Galois key for {what} (Galois element {galois_element}); generate it with keygen --rotations")
        return key

    def _apply_galois(self, ct: Ciphertext, galois_element: int, what: str) -> Ciphertext:
        bk.check_relinearized(ct.size, what)
        key = self._galois_key(galois_element, what)
        be = self.be
        rows = self.ctx.q_rows(ct.level)
        rotated = be.empty(ct.data.shape)
        be.automorphism(ct.data, rotated, galois_element)
        ks = keyswitch.key_switch(self.ctx, be.polys(rotated, 1, 2), key, ct.level)
        self.counters["key_switch"] += 1
        out = be.copy(ks)
        be.add(be.polys(ks, 0, 1), be.polys(rotated, 0, 1), be.polys(out, 0, 1), rows)
        return self._like(ct, out)

    def rotate(self, ct: Ciphertext, step: int) -> Ciphertext:
        """Slots rotated left by ``step`` (right if negative): out[i] = in[(i + step) mod N/2]."""
        step = int(step) % self.ctx.params.slots
        if step == 0:
            return self._like(ct, self.be.copy(ct.data))
        self.counters["rotations"] += 1
        return self._apply_galois(ct, galois_element_for_rotation(step, self.ctx.params.ring_degree), f"rotation by {step}")

    def conjugate(self, ct: Ciphertext) -> Ciphertext:
        return self._apply_galois(ct, galois_element_for_conjugation(self.ctx.params.ring_degree), "conjugation")

    def _hoisting_plan(self, steps) -> tuple[list[int], list[tuple[int, int, SwitchingKey]]]:
        """(the steps that are no rotation, [(step, Galois element, key)] for the others)."""
        n = self.ctx.params.ring_degree
        slots = self.ctx.params.slots
        identity, wanted = [], []
        for step in steps:
            s = int(step) % slots
            if s == 0:
                identity.append(int(step))
            else:
                g = galois_element_for_rotation(s, n)
                wanted.append((int(step), g, self._galois_key(g, f"rotation by {s}")))
        return identity, wanted

    def rotate_hoisted(self, ct: Ciphertext, steps) -> dict[int, Ciphertext]:
        """Several rotations of one ciphertext sharing one ModUp decomposition."""
        bk.check_relinearized(ct.size, "rotate_hoisted")
        be = self.be
        identity, wanted = self._hoisting_plan(steps)
        out: dict[int, Ciphertext] = {step: self._like(ct, be.copy(ct.data)) for step in identity}
        if not wanted:
            return out
        rows = self.ctx.q_rows(ct.level)
        ext = keyswitch.decompose(self.ctx, be.polys(ct.data, 1, 2), ct.level)
        c0_rot = be.empty((1,) + tuple(ct.data.shape[1:]))
        for step, g, key in wanted:
            # sigma_g(ModUp(c1)) is a valid ModUp of sigma_g(c1): the permutation is read inside the product.
            ks = keyswitch.mod_down(self.ctx, keyswitch.inner_product(self.ctx, ext, key, ct.level, g), ct.level)
            be.automorphism(be.polys(ct.data, 0, 1), c0_rot, g)
            be.add(be.polys(ks, 0, 1), c0_rot, be.polys(ks, 0, 1), rows)
            out[step] = self._like(ct, ks)
            self.counters["rotations"] += 1
            self.counters["key_switch"] += 1
        return out

    def rotate_hoisted_extended(self, ct: Ciphertext, steps) -> dict[int, tuple]:
        """Rotations of one ciphertext sharing one ModUp and left before their ModDown, for a caller that sums
        plaintext products of them over Q_l P and divides by P once [Bossuat, Mouchet, Troncoso-Pastoriza,
        Hubaux, EUROCRYPT 2021, Sec. 6, "double hoisting"].

        step -> (c0, ks): rot_step(ct) = (c0, 0) + ModDown(ks), with c0 = sigma(ct's c0) over Q_l (1, l+1, N) and
        ks the key switch of sigma(ct's c1) over Q_l and P (2, l+1+K, N), both NTT. A step that is no
        rotation maps to (ct.data, None): the ciphertext itself, over Q_l.
        """
        bk.check_relinearized(ct.size, "rotate_hoisted_extended")
        be = self.be
        identity, wanted = self._hoisting_plan(steps)
        out: dict[int, tuple] = {step: (ct.data, None) for step in identity}
        if not wanted:
            return out
        ext = keyswitch.decompose(self.ctx, be.polys(ct.data, 1, 2), ct.level)
        for step, g, key in wanted:
            c0 = be.empty((1,) + tuple(ct.data.shape[1:]))
            be.automorphism(be.polys(ct.data, 0, 1), c0, g)
            out[step] = (c0, keyswitch.inner_product(self.ctx, ext, key, ct.level, g))
            self.counters["rotations"] += 1
            self.counters["key_switch"] += 1
        return out

    def key_switch(self, ct: Ciphertext, key: SwitchingKey, new_key_id: str) -> Ciphertext:
        """Re-key ct from the key ``key`` switches from to ``new_key_id``, without decrypting."""
        self.ctx.check(ct, key)
        if key.source != f"key:{ct.key_id}":
            raise KeyMismatchError(f"switching key converts from {key.source}, ciphertext is under key:{ct.key_id}")
        bk.check_relinearized(ct.size, "key_switch")
        be = self.be
        rows = self.ctx.q_rows(ct.level)
        ks = keyswitch.key_switch(self.ctx, be.polys(ct.data, 1, 2), key, ct.level)
        out = be.copy(ks)
        be.add(be.polys(ks, 0, 1), be.polys(ct.data, 0, 1), be.polys(out, 0, 1), rows)
        res = self._like(ct, out)
        res.key_id = new_key_id
        return res
