"""The level and scale rules of fhectl.ckks.bookkeeping, which the evaluator and the level simulator share.

That both raise the same errors for the same operands is checked in tests/circuits/test_circuits_levels.py.
"""

import pytest

from fhectl.ckks import bookkeeping as bk
from fhectl.ckks import evaluator
from fhectl.errors import InputError, LevelError, ScaleMismatchError

Q = [2**40 + 1, 2**40 - 87, 2**40 + 97]  # only their values matter here, not primality


def test_scales_agree_within_the_tolerance_and_no_further():
    s = 2.0**40
    bk.check_scales(s, s * (1 + bk.SCALE_TOLERANCE * 0.99), "add")
    with pytest.raises(ScaleMismatchError, match=r"add: scales differ \(2\^40.0000 vs 2\^40.0002\)"):
        bk.check_scales(s, s * (1 + 8 * bk.SCALE_TOLERANCE), "add")
    assert evaluator.SCALE_TOLERANCE is bk.SCALE_TOLERANCE  # still importable from the evaluator


def test_rescale_and_constant_scales():
    assert bk.rescaled_scale(2, 2.0**80, Q) == 2.0**80 / Q[2]
    with pytest.raises(LevelError, match="exhausted"):
        bk.rescaled_scale(0, 2.0**40, Q)
    assert bk.const_scale(0.5, 2, 2.0**40, Q) == Q[2]  # the next rescale restores 2^40
    assert bk.const_scale(0.5, 2, 2.0**40, Q, target_scale=2.0**39) == 2.0**39 * Q[2] / 2.0**40
    with pytest.raises(ScaleMismatchError, match="out of reach"):
        bk.const_scale(0.5, 2, 2.0**40, Q, target_scale=2.0**70)
    with pytest.raises(InputError, match="not finite"):
        bk.const_scale(float("nan"), 2, 2.0**40, Q)
    with pytest.raises(LevelError, match="needs a level to rescale"):
        bk.const_scale(0.5, 0, 2.0**40, Q)
    assert bk.values_scale(1, Q) == Q[1]


def test_level_and_size_checks():
    bk.check_drop(3, 3)
    bk.check_drop(3, 0)
    with pytest.raises(LevelError, match="from level 3 to 4"):
        bk.check_drop(3, 4)
    with pytest.raises(LevelError, match="below 0"):
        bk.check_drop(3, -1)
    bk.check_plain_level(4, 3)
    with pytest.raises(LevelError, match="plaintext is at level 2"):
        bk.check_plain_level(2, 3)
    with pytest.raises(InputError, match="sizes differ"):
        bk.check_same_size(3, 2, "sub")
    with pytest.raises(InputError, match="relinearized"):
        bk.check_product_sizes(2, 3)
    with pytest.raises(InputError, match="rotation by 5: relinearize first"):
        bk.check_relinearized(3, "rotation by 5")
    with pytest.raises(InputError, match="constant inf"):
        bk.check_constant(float("inf"), "add")
    assert bk.is_constant(1j) and not bk.is_constant(True) and not bk.is_real_constant(1j)
