"""Level and scale bookkeeping: the rules that ``Evaluator`` enforces and the level simulator repeats.

``fhectl.ckks.evaluator.Evaluator`` does the arithmetic; ``fhectl.circuits.levels.SimEvaluator`` only
tracks levels and scales to plan depth. Both call these functions for every check and every new scale, so
a plan cannot drift from what the evaluator will accept: the same operands raise the same error with the
same message, and the same products land on the same scale float for float.

Scales: two are accepted as equal within a relative ``SCALE_TOLERANCE`` = 2**-16. Squaring chains drift
by about 2**-18 when the primes lie within 2**-28 of 2**scale_bits (measured on polynomial evaluations at
N = 2^10); the error so introduced is at most that relative amount of the smaller operand.
"""

from __future__ import annotations

import math
from numbers import Number

from fhectl.errors import InputError, LevelError, ScaleMismatchError

SCALE_TOLERANCE = 2.0**-16
MAX_CONST_SCALE = 2.0**62  # a constant times its scale must stay a word below every prime's 2**62


def check_scales(sa: float, sb: float, what: str) -> None:
    """ScaleMismatchError unless sa and sb agree within ``SCALE_TOLERANCE`` (an addition needs equal scales)."""
    if abs(sa / sb - 1.0) > SCALE_TOLERANCE:
        raise ScaleMismatchError(
            f"{what}: scales differ (2^{math.log2(sa):.4f} vs 2^{math.log2(sb):.4f}); "
            "rescale or multiply one operand so the scales match"
        )


def check_same_size(size_a: int, size_b: int, what: str) -> None:
    """InputError unless two ciphertexts have as many polynomials (3 between product and relinearization)."""
    if size_a != size_b:
        raise InputError(f"{what}: ciphertext sizes differ ({size_a} and {size_b}); relinearize first")


def check_product_sizes(size_a: int, size_b: int) -> None:
    """InputError unless both factors of a ciphertext product are relinearized."""
    if size_a != 2 or size_b != 2:
        raise InputError("mul: both ciphertexts must be relinearized (size 2)")


def check_relinearized(size: int, what: str) -> None:
    """InputError unless a ciphertext is relinearized (rotations, conjugation and key switching need it)."""
    if size != 2:
        raise InputError(f"{what}: relinearize first")


def check_drop(level: int, to_level: int) -> None:
    """LevelError unless a ciphertext at ``level`` can be brought down to ``to_level`` (dropping is free)."""
    if to_level > level:
        raise LevelError(f"cannot raise a ciphertext from level {level} to {to_level} (that needs bootstrapping)")
    if to_level < 0:
        raise LevelError(f"level {to_level} is below 0")


def check_plain_level(plain_level: int, level: int) -> None:
    """LevelError unless a plaintext reaches the ciphertext's level (its extra limbs are dropped)."""
    if plain_level < level:
        raise LevelError(f"plaintext is at level {plain_level}, below the ciphertext's level {level}: encode it higher")


def check_constant(c, what: str) -> None:
    """InputError unless the real part of a constant operand is finite."""
    value = c.real if isinstance(c, complex) else c
    if not math.isfinite(float(value)):
        raise InputError(f"{what}: constant {c} is not finite")


def is_constant(b) -> bool:
    """Whether an operand is a number (not a bool) that adds as a constant."""
    return isinstance(b, Number) and not isinstance(b, bool)


def is_real_constant(b) -> bool:
    """Whether an operand is a real number (not a bool) that multiplies as a constant."""
    return isinstance(b, Number) and not isinstance(b, (bool, complex))


def rescaled_scale(level: int, scale: float, moduli_q) -> float:
    """The scale after ``rescale`` at ``level``: divided by the top prime q_level. LevelError at level 0."""
    if level == 0:
        raise LevelError("the modulus chain is exhausted: cannot rescale a level-0 ciphertext")
    return scale / moduli_q[level]


def const_scale(c: float, level: int, scale: float, moduli_q, target_scale: float | None = None) -> float:
    """The scale ``mul_const`` encodes the constant ``c`` at: q_level, so that the next rescale restores
    ``scale``, or target_scale * q_level / scale, so that it lands on ``target_scale``.

    InputError for a non-finite c; LevelError at level 0 (no prime left to rescale by);
    ScaleMismatchError when the constant's scale falls outside [1, 2**62).
    """
    if not math.isfinite(c):
        raise InputError(f"mul: constant {c} is not finite")
    if level == 0:
        raise LevelError("mul by a constant needs a level to rescale afterwards; ciphertext is at level 0")
    q_top = moduli_q[level]
    out = q_top if target_scale is None else target_scale * q_top / scale
    if not 1.0 <= out < MAX_CONST_SCALE:
        raise ScaleMismatchError(f"mul: target scale 2^{math.log2(target_scale):.2f} is out of reach from "
                                 f"2^{math.log2(scale):.2f} at level {level}")
    return out


def values_scale(level: int, moduli_q) -> float:
    """The scale ``mul_values`` encodes a plaintext vector at: q_level. LevelError at level 0."""
    if level == 0:
        raise LevelError("mul by a plaintext vector needs a level to rescale afterwards; ciphertext is at level 0")
    return moduli_q[level]


__all__ = [
    "MAX_CONST_SCALE",
    "SCALE_TOLERANCE",
    "check_constant",
    "check_drop",
    "check_plain_level",
    "check_product_sizes",
    "check_relinearized",
    "check_same_size",
    "check_scales",
    "const_scale",
    "is_constant",
    "is_real_constant",
    "rescaled_scale",
    "values_scale",
]
