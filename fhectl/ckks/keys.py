"""Secret, public and switching keys, and their generation.

Hybrid key switching [Han and Ki, CT-RSA 2020; Kim, Polyakov, Zucca,
"Revisiting homomorphic encryption schemes for finite fields",
ASIACRYPT 2021]: the chain Q is split into ``dnum`` digits Q_j of
``digit_size`` primes, and a switching key from s' to s holds, per digit,

    (b_j, a_j) = (-a_j s + e_j + P * g_j * s',  a_j)   over QP,

where g_j = (Q/Q_j) * [(Q/Q_j)^{-1}]_{Q_j} is 1 modulo the primes of digit j
and 0 modulo the other primes of Q. So P * g_j * s' is P * s' on the limbs of
digit j and zero on every other limb, which is all the generator computes.
The same key serves every level: dropping primes leaves g_j's residues as
they are.

The a_j are public and uniform, so each key draws them from its own 32-byte
seed (OS CSPRNG) through a public expansion (``fhectl.ckks.prng``); a stored
key is b and the seed, half the bytes, and a reader re-expands a.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np

from fhe_kernels.automorphism import galois_element_for_conjugation, galois_element_for_rotation
from fhe_kernels.rns import signed_to_rns
from fhectl.ckks import prng, sampling
from fhectl.ckks.context import CKKSContext
from fhectl.errors import FormatError, LevelError

# A coefficient counts as "small" below q / 2^SMALL_SHIFT in magnitude (centred). A uniform residue is
# small with probability 2^-11, so a random polynomial with half its coefficients small has probability
# below 2^-40 even at N = 8; an error polynomial (|e| <= 12 sigma) is small on every coefficient.
SMALL_SHIFT = 12


@dataclass
class SecretKey:
    """The ternary secret: coefficients (N,) int64 in {-1, 0, 1}, and its NTT form over QP (1, L+1+K, N)."""

    coeffs: np.ndarray
    ntt: object
    params_id: str
    key_id: str

    def __repr__(self) -> str:  # never print secret material
        return f"SecretKey(key_id={self.key_id!r}, params_id={self.params_id!r})"


@dataclass
class PublicKey:
    """(b, a) = (-a s + e, a) over Q at the top level: data (2, L+1, N)."""

    data: object
    params_id: str
    key_id: str


class SwitchingKey:
    """Key switching from s' to s: data (dnum, 2, L+1+K, N), rows b_j, a_j per digit.

    ``seed``: when set, every a_j is :func:`fhectl.ckks.prng.expand_switching_a` of it (label ``source``),
    so a file stores b and the 32-byte seed only. ``data`` may be *deferred*: built on first use by a
    callable (a reader re-expanding a and joining it to a memory-mapped b), and dropped again by
    :meth:`release`, so a server can hold many clients' keys on disk and only those in use in memory.

    ``max_level``: when set, the key covers only the ciphertexts of levels up to it: its limbs are those of
    Q_max_level and P, its digits those of that level (``Parameters.digits``), shape (digits, 2, max_level + 1
    + K, N). A switching key's digit j is P (Q / Q_j) [(Q / Q_j)^-1]_{Q_j} s' + e - a s over QP, whose residues
    modulo q_0..q_l do not depend on the primes above q_l, so the truncated key is exactly what the full one
    reads at those levels [Han, Ki, CT-RSA 2020, Sec. 3]: a key used only below the bootstrapping primes (the
    circuits' rotations at boot-n16-128, levels <= 9) holds 2 digits of 16 limbs instead of 6 of 33. Its a_j
    come from its seed over those limbs (limb r of the truncated key is stream r), so a file stores b, the seed
    and ``max_level`` (``fhectl.io.objects``).
    """

    def __init__(self, data, params_id: str, key_id: str, source: str, seed: bytes | None = None,
                 max_level: int | None = None):
        self._data = data
        self.max_level = max_level
        self._make = None
        self._shape = tuple(int(d) for d in data.shape) if data is not None else None
        self.params_id = params_id
        self.key_id = key_id  # the target secret s
        self.source = source  # what s' is: "relin", "galois:<g>", or "key:<key_id>" for rewrapping
        self.seed = seed

    def key_rows(self, q_rows: tuple[int, ...], p_rows: tuple[int, ...]) -> tuple[int, ...]:
        """The key's limb of each ring row of Q_l and P (rows q_rows + p_rows): the rows themselves for a full
        key; for a truncated one, Q's limbs in place and P's right after q_max_level. LevelError if l exceeds
        ``max_level``."""
        if self.max_level is None:
            return q_rows + p_rows
        if len(q_rows) - 1 > self.max_level:
            raise LevelError(f"the switching key {self.source} covers levels up to {self.max_level}, the "
                             f"ciphertext is at level {len(q_rows) - 1}")
        return q_rows + tuple(range(self.max_level + 1, self.max_level + 1 + len(p_rows)))

    @classmethod
    def deferred(cls, make, shape: tuple[int, ...], params_id: str, key_id: str, source: str,
                 seed: bytes | None = None, max_level: int | None = None) -> "SwitchingKey":
        """A key whose ``data`` (of ``shape``) is ``make()``, called on first use and again after release()."""
        key = cls(None, params_id, key_id, source, seed, max_level)
        key._make = make
        key._shape = tuple(int(d) for d in shape)
        return key

    @property
    def data(self):
        if self._data is None:
            self._data = self._make()
        return self._data

    @property
    def loaded(self) -> bool:
        """Whether ``data`` is in memory now."""
        return self._data is not None

    def release(self) -> None:
        """Drop the in-memory ``data`` of a deferred key (it is rebuilt on next use); no-op otherwise."""
        if self._make is not None:
            self._data = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def digits(self) -> int:
        return int(self._shape[0])

    def __repr__(self) -> str:
        return (f"SwitchingKey(source={self.source!r}, key_id={self.key_id!r}, params_id={self.params_id!r}, "
                f"shape={self._shape}, seeded={self.seed is not None}, loaded={self.loaded})")


@dataclass
class GaloisKeys:
    """Switching keys from s(X^g) to s, by Galois element g."""

    keys: dict[int, SwitchingKey] = field(default_factory=dict)
    params_id: str = ""
    key_id: str = ""

    def steps_available(self, ring_degree: int) -> list[int]:
        """Rotation steps (in -N/4..N/4) whose Galois element has a key."""
        slots = ring_degree // 2
        out = []
        for step in range(-slots // 2 + 1, slots // 2 + 1):
            if galois_element_for_rotation(step, ring_degree) in self.keys:
                out.append(step)
        return out


def _sorted_distinct(x: np.ndarray) -> np.ndarray:
    """Distinct values along the last axis: (..., N) -> (...)."""
    s = np.sort(x, axis=-1)
    return 1 + np.count_nonzero(np.diff(s, axis=-1), axis=-1)


def _mostly_small(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per limb: more than half of the centred residues of x (L, N) below q / 2^SMALL_SHIFT. q: (L, 1)."""
    magnitude = np.minimum(x, q - x)
    return np.count_nonzero(magnitude < (q >> np.uint64(SMALL_SHIFT)), axis=-1) > x.shape[-1] // 2


def check_public_key(ctx: CKKSContext, pk: PublicKey, source: str = "public key") -> None:
    """Refuse a public key (b, a) that cannot hide a message: FormatError naming the limb and the defect.

    A fresh encryption is c0 = u b + e0 + m, c1 = u a + e1. If b is zero, constant or small, c0 carries m
    almost in the clear; if b + a s' is small for a trivial s' (0, 1 or -1), anyone decrypts with s'. A real
    key has b and a uniform modulo every prime: checked on every limb, in both domains (the key is stored in
    the NTT domain, where a constant polynomial has all-equal values, while a coefficient-domain constant
    is mostly zeros): b and a each take at least N/2 distinct values, and none of b, a, b + a, b - a has
    most of its coefficients small. A uniform pair fails either test with probability below 2^-40.
    """
    be = ctx.backend
    p = ctx.params
    n = p.ring_degree
    rows = ctx.q_rows(p.max_level)
    ntt = np.asarray(be.to_host(pk.data))
    if ntt.shape != (2, len(rows), n):
        raise FormatError(f"{source}: data has shape {ntt.shape}, expected {(2, len(rows), n)}")
    coeffs = be.copy(pk.data)
    be.intt(coeffs, rows)
    coeffs = np.asarray(be.to_host(coeffs))
    q = np.array(p.moduli_q, dtype=np.uint64)[:, None]
    b, a = coeffs
    problems = []
    for domain, arr in (("NTT", ntt), ("coefficient", coeffs)):
        distinct = _sorted_distinct(arr)  # (2, L+1)
        for poly, name in enumerate(("b", "a")):
            bad = np.flatnonzero(distinct[poly] < n // 2)
            if bad.size:
                i = int(bad[0])
                problems.append(f"{name} takes only {int(distinct[poly, i])} distinct values in the {domain} "
                                f"domain on limb {i} (a uniform polynomial takes about {n})")
    for name, arr in (("b", b), ("a", a), ("b + a", (b + a) % q), ("b - a", (b + (q - a)) % q)):
        bad = np.flatnonzero(_mostly_small(arr, q))
        if bad.size:
            problems.append(f"{name} has mostly small coefficients on limb {int(bad[0])}")
    if problems:
        raise FormatError(f"{source} is degenerate ({'; '.join(problems[:3])}): it would encrypt in the clear "
                          "or under a trivial secret; refusing it (the key file is corrupt or forged)")


def public_key_error(ctx: CKKSContext, sk: SecretKey, pk: PublicKey) -> np.ndarray:
    """b + a s on every limb of Q, centred: (L+1, N) int64. A matching secret gives the key's small error e
    on every limb (the same e, reduced modulo each prime); a wrong one gives uniform residues."""
    be = ctx.backend
    p = ctx.params
    rows = ctx.q_rows(p.max_level)
    b = be.copy(be.polys(pk.data, 0, 1))  # (1, L+1, N), NTT domain
    a = be.polys(pk.data, 1, 2)
    acc = be.empty(b.shape)
    be.mul(a, be.limbs(sk.ntt, 0, len(rows)), acc, rows)
    be.add(acc, b, acc, rows)
    be.intt(acc, rows)
    host = np.asarray(be.to_host(acc))[0]
    q = np.array(p.moduli_q, dtype=np.uint64)[:, None]
    upper = host > q // np.uint64(2)
    return np.where(upper, -((q - host).astype(np.int64)), host.astype(np.int64))


def new_key_id() -> str:
    return "k-" + secrets.token_hex(6)


class KeyGenerator:
    """Generates keys from the OS CSPRNG (or a named seeded source, for tests)."""

    def __init__(self, ctx: CKKSContext, random=None):
        self.ctx = ctx
        self.random = random if random is not None else sampling.default_random()

    # -- sampling helpers ---------------------------------------------------------
    def _small(self, values: np.ndarray, rows: tuple[int, ...]):
        """Signed small coefficients -> NTT-domain device array (1, len(rows), N)."""
        be = self.ctx.backend
        moduli = [self.ctx.params.all_moduli[r] for r in rows]
        arr = be.to_device(signed_to_rns(values, moduli)[None])
        be.ntt(arr, rows)
        return arr

    def _uniform(self, count: int, rows: tuple[int, ...]):
        """Uniform polynomials, sampled directly in the NTT domain: (count, len(rows), N)."""
        n = self.ctx.params.ring_degree
        host = np.empty((count, len(rows), n), dtype=np.uint64)
        for c in range(count):
            for i, r in enumerate(rows):
                host[c, i] = sampling.uniform_mod(self.random, self.ctx.params.all_moduli[r], n)
        return self.ctx.backend.to_device(host)

    def _error(self, rows: tuple[int, ...]):
        n = self.ctx.params.ring_degree
        return self._small(sampling.discrete_gaussian(self.random, self.ctx.params.literal.sigma, n), rows)

    # -- keys ---------------------------------------------------------------------
    def secret_key(self) -> SecretKey:
        p = self.ctx.params
        coeffs = sampling.uniform_ternary(self.random, p.ring_degree)
        rows = self.ctx.qp_rows(p.max_level)
        return SecretKey(coeffs=coeffs, ntt=self._small(coeffs, rows), params_id=p.params_id, key_id=new_key_id())

    def secret_from_coeffs(self, coeffs: np.ndarray, key_id: str) -> SecretKey:
        """Rebuild a secret key's NTT form from its stored coefficients."""
        rows = self.ctx.qp_rows(self.ctx.params.max_level)
        return SecretKey(coeffs=coeffs, ntt=self._small(coeffs, rows), params_id=self.ctx.params_id, key_id=key_id)

    def public_key(self, sk: SecretKey) -> PublicKey:
        be = self.ctx.backend
        rows = self.ctx.q_rows(self.ctx.params.max_level)
        a = self._uniform(1, rows)
        e = self._error(rows)
        s = be.limbs(sk.ntt, 0, len(rows))
        b = be.empty(a.shape)
        be.mul(a, s, b, rows)
        be.sub(e, b, b, rows)  # b = e - a s
        return PublicKey(data=be.stack_polys([b, a]), params_id=sk.params_id, key_id=sk.key_id)

    def _at_level(self, x, level: int):
        """The limbs of Q_level and P of an NTT polynomial over the whole of QP."""
        be, p = self.ctx.backend, self.ctx.params
        if level == p.max_level:
            return x
        nq = p.max_level + 1
        return be.concat_limbs([be.limbs(x, 0, level + 1), be.limbs(x, nq, nq + len(p.moduli_p))])

    def switching_key(self, source_ntt, sk: SecretKey, source: str, max_level: int | None = None) -> SwitchingKey:
        """A key switching ciphertexts under s' (``source_ntt``, NTT form over QP) to ``sk``; with
        ``max_level``, only for ciphertexts up to that level (``SwitchingKey``: fewer limbs and digits)."""
        ctx, be = self.ctx, self.ctx.backend
        p = ctx.params
        level = p.max_level if max_level is None else int(max_level)
        if not 0 <= level <= p.max_level:
            raise LevelError(f"a switching key for levels up to {level}: the chain has levels 0..{p.max_level}")
        truncated = level < p.max_level
        rows = ctx.qp_rows(level)
        digits = p.digits(level)
        s_ntt, source_ntt = self._at_level(sk.ntt, level), self._at_level(source_ntt, level)
        p_mod = [ctx.p_product % q for q in p.moduli_q]
        parts = []
        # a_j from a public seed (fhectl.ckks.prng): the file stores b and 32 bytes instead of both halves.
        seed = prng.new_seed(self.random)
        moduli = [p.all_moduli[r] for r in rows]
        for j, digit in enumerate(digits):
            a = be.to_device(prng.expand_uniform(seed, source, j, moduli, p.ring_degree)[None])
            b = self._error(rows)
            t = be.empty(a.shape)
            be.mul(a, s_ntt, t, rows)
            be.sub(b, t, b, rows)  # b = e - a s
            # + P * s' on the limbs of this digit only
            scaled = be.empty((1, len(digit), p.ring_degree))
            drow = tuple(digit)
            be.mul_scalar(be.limbs(source_ntt, digit.start, digit.stop), scaled, drow, [p_mod[i] for i in digit])
            top = be.limbs(b, digit.start, digit.stop)
            summed = be.empty(top.shape)
            be.add(top, scaled, summed, drow)
            b = be.concat_limbs([be.limbs(b, 0, digit.start), summed, be.limbs(b, digit.stop, len(rows))])
            parts.append(be.stack_polys([b, a]))
        data = be.stack_new_axis(parts)
        return SwitchingKey(data=data, params_id=p.params_id, key_id=sk.key_id, source=source, seed=seed,
                            max_level=level if truncated else None)

    def relin_key(self, sk: SecretKey) -> SwitchingKey:
        be = self.ctx.backend
        rows = self.ctx.qp_rows(self.ctx.params.max_level)
        s2 = be.empty(sk.ntt.shape)
        be.mul(sk.ntt, sk.ntt, s2, rows)
        return self.switching_key(s2, sk, "relin")

    def galois_key(self, sk: SecretKey, galois_element: int, max_level: int | None = None) -> SwitchingKey:
        be = self.ctx.backend
        rotated = be.empty(sk.ntt.shape)
        be.automorphism(sk.ntt, rotated, galois_element)
        return self.switching_key(rotated, sk, f"galois:{galois_element}", max_level)

    def galois_keys(self, sk: SecretKey, steps=(), conjugation: bool = False,
                    max_levels: dict[int, int] | None = None) -> GaloisKeys:
        """Keys for rotations by ``steps`` (and conjugation). ``max_levels``: step -> the highest level it is
        used at, for keys truncated to it (``SwitchingKey``); steps not in it get full keys. Each key is made
        at its size, so the full set is never held."""
        n = self.ctx.params.ring_degree
        elements = {galois_element_for_rotation(s, n) for s in steps if s % (n // 2) != 0}
        if conjugation:
            elements.add(galois_element_for_conjugation(n))
        levels: dict[int, int | None] = {g: None for g in elements}
        if max_levels:
            by_element: dict[int, int] = {}
            for s, lvl in max_levels.items():
                if s % (n // 2):
                    g = galois_element_for_rotation(s, n)
                    by_element[g] = max(by_element.get(g, 0), int(lvl))
            levels = {g: by_element.get(g) for g in elements}
        keys = {g: self.galois_key(sk, g, levels[g]) for g in sorted(elements)}
        return GaloisKeys(keys=keys, params_id=sk.params_id, key_id=sk.key_id)

    def rekey(self, old: SecretKey, new: SecretKey) -> SwitchingKey:
        """The switching key old -> new, for rewrapping ciphertexts without decrypting them."""
        return self.switching_key(old.ntt, new, f"key:{old.key_id}")


def conjugation_galois_element(ring_degree: int) -> int:
    """The Galois element whose key conjugation needs (bootstrapping's CoeffsToSlots)."""
    return galois_element_for_conjugation(ring_degree)


def rotation_galois_elements(steps, ring_degree: int) -> list[int]:
    """The Galois elements whose keys rotations by ``steps`` need (a step of 0 mod N/2 needs none)."""
    return sorted({galois_element_for_rotation(s, ring_degree) for s in steps if s % (ring_degree // 2) != 0})
