"""Public-key sanity: degenerate keys are refused, and the secret is checked against every limb.

Issue 12, items 1 and 4: an all-zero (or constant, or trivially decryptable) public key encrypts in
the clear while the real secret still decrypts, so it must be refused on load; and a public key
damaged on any limb but the first must not pass the secret-versus-public check.
"""

import numpy as np
import pytest

from fhectl.ckks.keys import PublicKey, check_public_key, public_key_error
from fhectl.errors import FormatError


def _with(kit, data: np.ndarray) -> PublicKey:
    return PublicKey(data=kit.ctx.backend.to_device(np.ascontiguousarray(data)), params_id=kit.pk.params_id,
                     key_id=kit.pk.key_id)


def _ntt(kit, coeffs: np.ndarray) -> np.ndarray:
    """Coefficient-domain residues (k, L+1, N) -> NTT domain."""
    be = kit.ctx.backend
    arr = be.to_device(np.ascontiguousarray(coeffs))
    be.ntt(arr, kit.ctx.q_rows(kit.params.max_level))
    return np.asarray(be.to_host(arr))


def test_a_generated_public_key_passes(kit):
    check_public_key(kit.ctx, kit.pk)


def _degenerate_keys(kit):
    good = np.asarray(kit.ctx.backend.to_host(kit.pk.data))
    q = np.array(kit.params.moduli_q, dtype=np.uint64)[:, None]
    zero = np.zeros_like(good)
    b_zero = good.copy()
    b_zero[0] = 0
    a_zero = good.copy()
    a_zero[1] = 0
    a_zero_last_limb = good.copy()
    a_zero_last_limb[1, -1] = 0
    b_const_ntt = good.copy()
    b_const_ntt[0, 2] = 12345  # all NTT values equal on limb 2: a constant-times-delta polynomial
    coeff_const = np.zeros((1,) + good.shape[1:], dtype=np.uint64)
    coeff_const[0, :, 0] = 987654321 % q[:, 0]  # b(X) = 987654321, a constant polynomial
    b_const = good.copy()
    b_const[0] = _ntt(kit, coeff_const)[0]
    b_equals_minus_a = good.copy()  # b + a * 1 = 0: the "secret" s' = 1 decrypts
    b_equals_minus_a[0] = (q - good[1]) % q
    return {"all zero": zero, "b zero": b_zero, "a zero": a_zero, "a zero on the last limb": a_zero_last_limb,
            "b constant in NTT domain": b_const_ntt, "b constant polynomial": b_const,
            "b = -a": b_equals_minus_a}


@pytest.mark.parametrize("case", ["all zero", "b zero", "a zero", "a zero on the last limb",
                                  "b constant in NTT domain", "b constant polynomial", "b = -a"])
def test_degenerate_public_keys_are_refused(kit, case):
    with pytest.raises(FormatError, match="degenerate"):
        check_public_key(kit.ctx, _with(kit, _degenerate_keys(kit)[case]), "test key")


def test_public_key_error_covers_every_limb(kit):
    e = public_key_error(kit.ctx, kit.sk, kit.pk)
    assert e.shape == (kit.params.max_level + 1, kit.params.ring_degree)
    bound = 12 * kit.params.literal.sigma + 1
    assert np.max(np.abs(e)) <= bound
    assert all(np.array_equal(e[0], e[i]) for i in range(e.shape[0]))  # the same small e on every limb

    damaged = np.asarray(kit.ctx.backend.to_host(kit.pk.data)).copy()
    damaged[0, -1] = np.random.default_rng(4).integers(0, kit.params.moduli_q[-1], kit.params.ring_degree,
                                                       dtype=np.uint64)
    e = public_key_error(kit.ctx, kit.sk, _with(kit, damaged))
    assert np.max(np.abs(e[:-1])) <= bound and np.max(np.abs(e[-1])) > 2**20
