"""The decryption error a ciphertext can carry, and the flooding that hides it when a decryption is shared.

Error bounds (coefficient domain, integer units at the ciphertext's scale), six standard deviations
as in :mod:`fhectl.ckks.precision`:

* fresh public-key encryption: e = u e_pk + e0 + e1 s [CKKS17, Lemma 1], coefficients of standard
  deviation sigma sqrt(4N/3 + 1): ``fresh_coefficient_bound``;
* each hybrid key switch (a rewrap) adds sum_j d_j e_j / P + rounding, with |d_j| < (alpha + 1) Q_j
  after the approximate ModUp [HK20, Sec. 3]: variance dnum N sigma^2 ((alpha + 1) max Q_j / P)^2 / 3
  + (1 + 2N/3) / 12: ``key_switch_coefficient_bound``.

Bounds of successive steps are added (not root-summed), which errs on the large side. These are
what the decryptor can bound *itself*, from the parameters alone: nothing in a file's header
(which anyone can rewrite and re-checksum) enters them except as a reason to make them larger.

Share-safe decryption. A CKKS decryption returns m + e, and whoever holds the ciphertext and that
output learns e and then the secret key (Li and Micciancio, "On the security of homomorphic
encryption on approximate numbers", EUROCRYPT 2021). The defence is to add fresh Gaussian noise
wide enough to hide e statistically: with B a bound on |e_i| and an adversary who sees Q such
decryptions under one key, OpenFHE's NOISE_FLOODING_DECRYPT mode uses the width

    sigma = sqrt(12 Q) 2^(s/2) B

for s bits of statistical security (the analysis of Li, Micciancio, Schultz and Sorrell, "Securing
approximate homomorphic encryption using differential privacy", CRYPTO 2022: the divergence between
the flooded outputs for two errors |e|, |e'| <= B shrinks as B^2 / sigma^2 and adds up over the Q
queries). Two things follow and are enforced here and in fhectl.io.decryption_ledger:

* B must bound the *actual* error. If the real error is 2^k B, the same width gives only s - 2k
  bits (a ciphertext multiplied by 2^9 turns s = 30 into 12). So B is never taken from the file:
  it is the parameter bound above, or the decryptor's own larger bound, and a decryption whose
  known-zero parts (padding slots, imaginary parts of real data) show an error beyond B is refused.
  That check is evidence, not proof: those parts are a projection of the error, and a ciphertext
  crafted to keep its error out of them (adding its own conjugate, say) passes; fully packed
  complex data has no such parts. The guarantee holds for ciphertexts whose history the decryptor
  knows: its own computations (with its own bound), or fresh ones with a verified signature.
* Q must count every shared decryption under the key: the ledger counts them against a budget.
  Since the divergence per query scales as 1 / Q_i, decryptions flooded for different budgets Q_i
  stay within the guarantee while sum_i 1 / Q_i <= 1; the ledger keeps that sum.

s has a floor of 30 (:data:`MIN_STATISTICAL_SECURITY`, OpenFHE's default): below it the guarantee
is too weak to call share-safe.
"""

from __future__ import annotations

import math

import numpy as np

from fhectl.ckks.params import Parameters
from fhectl.ckks.precision import TAIL_STANDARD_DEVIATIONS, fresh_error_bound

TAIL = TAIL_STANDARD_DEVIATIONS
MIN_STATISTICAL_SECURITY = 30
MAX_STATISTICAL_SECURITY = 128
# Garbage detection for ordinary decryptions: a residue this many times beyond the error bound
# cannot be noise, so the file was altered or was made under another key. Deliberately loose
# (it must never reject a legitimate file); share-safe decryption uses the bound itself instead.
GARBAGE_FACTOR = 2.0**10


def fresh_coefficient_bound(params: Parameters, scale: float) -> float:
    """Bound on |e_i| of a fresh public-key encryption (integer units)."""
    return fresh_error_bound(params, scale) * scale / math.sqrt(params.ring_degree)


def key_switch_coefficient_bound(params: Parameters) -> float:
    """Bound on the coefficient error one hybrid key switch adds (see the module docstring)."""
    n, sigma = params.ring_degree, params.literal.sigma
    digits = params.digits(params.max_level)
    p_product = math.prod(params.moduli_p)
    max_digit = max(math.prod(params.moduli_q[d.start:d.stop]) for d in digits)
    ratio = (params.digit_size + 1) * max_digit / p_product
    variance = len(digits) * n * sigma**2 * ratio**2 / 3 + (1 + 2 * n / 3) / 12
    return TAIL * math.sqrt(variance)


def coefficient_error_bound(params: Parameters, scale: float, key_switches: int) -> float:
    """Fresh encryption followed by ``key_switches`` key switches (integer units)."""
    return fresh_coefficient_bound(params, scale) + key_switches * key_switch_coefficient_bound(params)


def slot_bound(coefficient_bound: float, params: Parameters, scale: float) -> float:
    """Slot error from a coefficient error bound: each slot sums N coefficients (sqrt(N) growth)."""
    return coefficient_bound * math.sqrt(params.ring_degree) / scale


def flooding_width(error_bound: float, statistical_security: int, budget: int) -> float:
    """sigma = sqrt(12 Q) 2^(s/2) B (see the module docstring), checked: s >= 30, Q >= 1, B > 0."""
    check_statistical_security(statistical_security)
    if not (isinstance(budget, int) and budget >= 1):
        raise ValueError(f"the decryption budget must be a positive integer, got {budget!r}")
    if not (math.isfinite(error_bound) and error_bound > 0):
        raise ValueError(f"error bound must be a positive finite number, got {error_bound}")
    return math.sqrt(12.0 * budget) * 2.0 ** (statistical_security / 2) * error_bound


def check_statistical_security(statistical_security: int) -> None:
    if not (isinstance(statistical_security, int)
            and MIN_STATISTICAL_SECURITY <= statistical_security <= MAX_STATISTICAL_SECURITY):
        raise ValueError(f"statistical security must be an integer in {MIN_STATISTICAL_SECURITY}.."
                         f"{MAX_STATISTICAL_SECURITY} bits, got {statistical_security!r}")


def share_safe_error_bound(params: Parameters, scale: float, fresh_history: int | None,
                           own_bound: float | None) -> tuple[float, str]:
    """(B, where it came from): the bound share-safe decryption floods, from what the decryptor can bound.

    ``fresh_history`` is the key-switch count of a file that claims to be a fresh encryption at the
    top level and the parameters' scale (None when it claims no such thing); ``own_bound`` is the
    decryptor's own bound on |e_i| from its noise analysis (None when it has none). The claim can
    only raise B: the parameter bound for a fresh encryption is the floor, whatever the file says.
    ValueError when there is nothing to bound the error with (a computed file and no own bound).
    """
    floor = fresh_coefficient_bound(params, scale)
    if fresh_history is not None:
        claimed = coefficient_error_bound(params, scale, fresh_history)
        if own_bound is None:
            return claimed, f"fresh encryption + {fresh_history} key switch(es)"
        return max(claimed, own_bound), "your --error-bound-bits" if own_bound >= claimed else \
            f"fresh encryption + {fresh_history} key switch(es) (above your --error-bound-bits)"
    if own_bound is None:
        raise ValueError("the file went through computation, so only your own noise analysis bounds its error")
    if own_bound < floor:
        return floor, "fresh-encryption floor (your --error-bound-bits is below it)"
    return own_bound, "your --error-bound-bits"


def known_zero_residue(slots: np.ndarray, used: int, real_data: bool) -> float:
    """The largest magnitude among the parts of a decryption that should be zero up to noise.

    Padding slots beyond ``used`` are zero at encryption, and real data has zero imaginary parts,
    so what is left there is error alone (a lower bound on the error's size in the slot domain).
    """
    parts = [slots[used:]]
    if real_data:
        parts.append(slots[:used].imag)
    return max((float(np.max(np.abs(p))) for p in parts if p.size), default=0.0)
