"""Checks a key holder can make with the secret: does a key do what it claims, on every limb?

A key file can be well formed (right shapes, residues below their primes, the right bindings) and still
be wrong: made for another secret, damaged on one prime, or forged. Only the secret tells, so each check
here runs the key the way it will be used and decrypts the result on *every* limb of the modulus chain.
Ordinary decryption reads only the first few primes (see fhectl.ckks.encryptor), so a key damaged on a
higher prime would pass it and only show up later, after a rescale mixes that prime into all the others.

* the secret against the public key: b + a s is the key's small error on every limb;
* the relinearization key: encrypt x, y; multiply, relinearize, rescale; decrypt to x y;
* each Galois key: encrypt x; rotate (or conjugate); decrypt to the rotated (conjugated) x;
* a rewrap key old -> new: encrypt x under the old secret; key-switch; decrypt to x with the new secret;
* a rewrapped file: its phase under the new secret minus the original's under the old one is the small
  key-switching error on every limb (the plaintext itself need not be known).

The test messages are small (|Re|, |Im| <= 2^-3.3), so that the phase c0 + c1 s is one integer below every
prime in magnitude: it must then read the same on every limb. The checks take milliseconds at the test
profiles; their messages come from NumPy's generator seeded by the OS (they are not secret).
"""

from __future__ import annotations

import math

import numpy as np

from fhectl.ckks.ciphertext import Ciphertext
from fhectl.ckks.context import CKKSContext
from fhectl.ckks.encoder import Encoder
from fhectl.ckks.encryptor import Encryptor
from fhectl.ckks.evaluator import Evaluator
from fhectl.ckks.keys import GaloisKeys, PublicKey, SecretKey, SwitchingKey, public_key_error
from fhectl.ckks.precision import fresh_error_bound
from fhectl.errors import FhectlError, FormatError, KeyMismatchError, MissingKeyError

# A round trip may lose this many bits more than a fresh encryption's error bound: key switching, the
# product's error and the rescale's rounding stay far below it, while a wrong key gives errors near the
# size of the primes (2^20 times the message and more).
ROUND_TRIP_MARGIN_BITS = 10
# The difference of two phases counts as the small key-switching error below q / 2^SMALL_SHIFT on each
# limb (a worst case of dnum * digit size * N * 12 sigma is below 2^27 even at N = 2^16); a uniform residue
# falls below with probability 2^-11, so a wrong key passes with probability 2^(-11 N).
SMALL_SHIFT = 12
_MESSAGE_BOUND = 0.1


def check_secret_matches_public(ctx: CKKSContext, sk: SecretKey, pk: PublicKey, source: str) -> None:
    """b + a*s must be the public key's small error e on every limb: a wrong or damaged secret (or a public
    key altered on any prime) gives uniform garbage there."""
    e = public_key_error(ctx, sk, pk)  # (L+1, N), centred
    bound = math.ceil(12 * ctx.params.literal.sigma) + 1  # the sampler cuts its tails at 12 sigma
    worst_per_limb = np.max(np.abs(e), axis=1)
    bad = np.flatnonzero(worst_per_limb > bound)
    if bad.size:
        limb = int(bad[0])
        worst = float(worst_per_limb[limb])
        raise KeyMismatchError(f"{source} does not belong to the key set's public key (b + a*s has coefficients "
                               f"up to 2^{math.log2(worst):.1f} on limb {limb} of {e.shape[0]}, a matching secret "
                               f"gives at most {bound}): wrong or damaged secret or public key")


def phase_residues(ctx: CKKSContext, ct: Ciphertext, sk: SecretKey) -> np.ndarray:
    """c0 + c1 s (+ c2 s^2) on every limb of the ciphertext's level, coefficient domain: (level+1, N) uint64."""
    ctx.check(ct, sk)
    be = ctx.backend
    rows = ctx.q_rows(ct.level)
    s = be.limbs(sk.ntt, 0, len(rows))
    acc = be.copy(be.polys(ct.data, ct.size - 1, ct.size))
    for i in range(ct.size - 2, -1, -1):  # Horner, as the decryptor does, but on all limbs
        be.mul(acc, s, acc, rows)
        be.add(acc, be.polys(ct.data, i, i + 1), acc, rows)
    be.intt(acc, rows)
    return np.asarray(be.to_host(acc))[0]


def _centred(residues: np.ndarray, moduli) -> np.ndarray:
    """Residues (L, N) uint64 -> signed (L, N) int64 in (-q/2, q/2]."""
    q = np.array(moduli, dtype=np.uint64)[:, None]
    upper = residues > q // np.uint64(2)
    return np.where(upper, -((q - residues).astype(np.int64)), residues.astype(np.int64))


def probe_message(ctx: CKKSContext) -> np.ndarray:
    """Complex slot values small enough that the phase stays below every prime (see the module docstring)."""
    rng = np.random.default_rng()
    n = ctx.params.slots
    return rng.uniform(-_MESSAGE_BOUND, _MESSAGE_BOUND, n) + 1j * rng.uniform(-_MESSAGE_BOUND, _MESSAGE_BOUND, n)


def check_decrypts_to(ctx: CKKSContext, ct: Ciphertext, sk: SecretKey, want: np.ndarray, what: str) -> float:
    """``ct`` must decrypt to ``want`` on every limb; returns the precision in bits. KeyMismatchError otherwise."""
    moduli = ctx.params.moduli_q[: ct.level + 1]
    phase = _centred(phase_residues(ctx, ct, sk), moduli)  # (level+1, N)
    differ = np.flatnonzero(np.any(phase != phase[0], axis=1))
    if differ.size:
        raise KeyMismatchError(f"{what} decrypts to different values on limb {int(differ[0])} and limb 0 "
                               f"(of {len(moduli)}): the key is wrong or damaged on that prime")
    got = Encoder(ctx).decode_coefficients(phase[0].astype(np.float64), ct.scale, len(want))
    error = float(np.max(np.abs(got - want)))
    bound = 2.0**ROUND_TRIP_MARGIN_BITS * fresh_error_bound(ctx.params)
    if not error <= bound:  # also catches NaN
        raise KeyMismatchError(f"{what} decrypts with an error of 2^{math.log2(error):.1f}, a correct key gives "
                               f"below 2^{math.log2(bound):.1f}: the key is wrong or damaged")
    return math.inf if error == 0.0 else -math.log2(error)


def check_relin_key(ctx: CKKSContext, sk: SecretKey, rlk: SwitchingKey, source: str) -> float:
    """Encrypt x, y; multiply, relinearize, rescale; decrypt: must be x y on every limb."""
    enc = Encryptor(ctx, sk)
    x, y = probe_message(ctx), probe_message(ctx)
    ev = Evaluator(ctx, relin_key=rlk)
    product = ev.rescale(ev.mul(enc.encrypt(x), enc.encrypt(y)))  # level L -> L-1, scale ~ Delta
    return check_decrypts_to(ctx, product, sk, x * y, f"{source}: a relinearized product")


def check_galois_keys(ctx: CKKSContext, sk: SecretKey, gks: GaloisKeys, source: str) -> list[str]:
    """Each key, on its own: rotate (or conjugate) an encryption of x and decrypt. Returns what was checked."""
    enc = Encryptor(ctx, sk)
    x = probe_message(ctx)
    ct = enc.encrypt(x)
    n = ctx.params.ring_degree
    checked = []
    for element, key in sorted(gks.keys.items()):
        alone = GaloisKeys(keys={element: key}, params_id=gks.params_id, key_id=gks.key_id)
        ev = Evaluator(ctx, galois_keys=alone)
        steps = alone.steps_available(n)  # the rotation this element performs, if it is one
        if steps:
            step = steps[0]
            what = f"rotation by {step}"
            got, want = ev.rotate(ct, step), np.roll(x, -step)
        else:
            what = "conjugation"
            try:
                got = ev.conjugate(ct)
            except MissingKeyError:
                raise FormatError(f"{source}: Galois element {element} is neither a slot rotation nor the "
                                  "conjugation") from None
            want = np.conj(x)
        check_decrypts_to(ctx, got, sk, want, f"{source}: {what} (Galois element {element})")
        checked.append(what)
    return checked


def check_rewrap_key(ctx: CKKSContext, old: SecretKey, new: SecretKey, swk: SwitchingKey, source: str) -> None:
    """Encrypt x under the old secret; key-switch; decrypt with the new secret: must be x on every limb."""
    x = probe_message(ctx)
    switched = Evaluator(ctx).key_switch(Encryptor(ctx, old).encrypt(x), swk, new.key_id)
    check_decrypts_to(ctx, switched, new, x, f"{source}: a key-switched encryption")


def check_rewrapped(ctx: CKKSContext, before: list[Ciphertext], old: SecretKey, after: list[Ciphertext],
                    new: SecretKey, source: str) -> None:
    """Each rewrapped ciphertext must hold what the original held: its phase under the new secret minus the
    original's under the old one is the small key-switching error on every limb. KeyMismatchError if not."""
    if len(before) != len(after):
        raise KeyMismatchError(f"{source}: rewrapping gave {len(after)} ciphertexts for {len(before)}")
    for i, (b, a) in enumerate(zip(before, after)):
        try:
            if (a.level, a.scale, a.size) != (b.level, b.scale, b.size):
                raise KeyMismatchError("level, scale or size changed")
            moduli = ctx.params.moduli_q[: b.level + 1]
            q = np.array(moduli, dtype=np.uint64)[:, None]
            diff = (phase_residues(ctx, a, new) + (q - phase_residues(ctx, b, old))) % q
            limit = q >> np.uint64(SMALL_SHIFT)
            large = np.flatnonzero(np.any(np.abs(_centred(diff, moduli)) >= limit.astype(np.int64), axis=1))
        except FhectlError as exc:
            raise KeyMismatchError(f"{source}: ciphertext {i} cannot be compared after rewrapping ({exc})") from None
        if large.size:
            raise KeyMismatchError(f"{source}: ciphertext {i} does not decrypt under the new key to what it held "
                                   f"under the old one (limb {int(large[0])} of {len(moduli)} differs by more than "
                                   "key-switching error): the switching key is wrong or damaged")
