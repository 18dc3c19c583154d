"""Encoding N/2 complex (or real) slots into plaintexts, and back."""

from __future__ import annotations

import numpy as np

from fhe_kernels.encoding import decode_coefficients, encode_slots
from fhectl.ckks.ciphertext import Plaintext
from fhectl.ckks.context import CKKSContext
from fhectl.errors import InputError, LevelError

# A coefficient times the scale must stay well inside float64's exact range
# and inside q_0 ... q_l; beyond 2**1000 float64 itself overflows soon after.
_MAX_ABS_COEFF = 2.0**1000


class Encoder:
    def __init__(self, ctx: CKKSContext):
        self.ctx = ctx

    def slots_vector(self, values) -> np.ndarray:
        """Validated complex128 vector of length N/2 (zero-padded)."""
        slots = self.ctx.params.slots
        z = np.asarray(values)
        if z.ndim != 1:
            raise InputError(f"expected a 1-D vector of at most {slots} values, got shape {z.shape}")
        if z.shape[0] > slots:
            raise InputError(f"{z.shape[0]} values do not fit in {slots} slots (N = {self.ctx.params.ring_degree})")
        if not np.issubdtype(z.dtype, np.number):
            raise InputError(f"values must be numbers, got dtype {z.dtype}")
        z = z.astype(np.complex128)
        if not np.all(np.isfinite(z)):
            raise InputError("values contain NaN or infinity")
        out = np.zeros(slots, dtype=np.complex128)
        out[: z.shape[0]] = z
        return out

    def encode(self, values, level: int | None = None, scale: float | None = None) -> Plaintext:
        p = self.ctx.params
        level = p.max_level if level is None else level
        data = self._encode_rows(values, level, scale, self.ctx.q_rows(level))
        scale = p.scale if scale is None else float(scale)
        n_values = int(np.asarray(values).shape[0])
        return Plaintext(data=data, level=level, scale=scale, params_id=p.params_id, slots=n_values)

    def encode_extended(self, values, level: int, scale: float):
        """The plaintext of ``encode(values, level, scale)`` over Q_l and P (1, l+1+K, N), NTT: the same integer
        polynomial, for products with key switches left before their ModDown
        (``Evaluator.rotate_hoisted_extended``)."""
        return self._encode_rows(values, level, scale, self.ctx.qp_rows(level))

    def _encode_rows(self, values, level: int, scale: float | None, rows: tuple[int, ...]):
        p = self.ctx.params
        if not 0 <= level <= p.max_level:
            raise LevelError(f"level {level} is outside 0..{p.max_level}")
        scale = p.scale if scale is None else float(scale)
        if not (np.isfinite(scale) and scale >= 1.0):
            raise InputError(f"scale {scale} must be a finite number >= 1")
        z = self.slots_vector(values)
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported just below
            coeffs = encode_slots(z, self.ctx.embedding) * scale
        peak = float(np.max(np.abs(coeffs))) if coeffs.size else 0.0
        if not np.isfinite(peak) or peak >= _MAX_ABS_COEFF:
            raise InputError(f"values times scale 2^{np.log2(scale):.1f} overflow float64 (peak coefficient {peak:.3g})")
        be = self.ctx.backend
        data = be.to_device(be.float_to_rns(coeffs, rows))
        be.ntt(data, rows)
        return data

    def decode_coefficients(self, coeffs: np.ndarray, scale: float, n_values: int | None = None) -> np.ndarray:
        """Slots from centered float coefficients (N,) of scale ``scale``."""
        z = decode_coefficients(coeffs / scale, self.ctx.embedding)
        return z if n_values is None else z[:n_values]
