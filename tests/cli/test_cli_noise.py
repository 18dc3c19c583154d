"""The error bounds decrypt relies on, against measured errors, and the share-safe flooding sampler.

The share-safe width is only as honest as the bound it floods: here the estimate for fresh and
key-switched files (fhectl.ckks.noise) is checked to exceed the error actually measured with
the secret key, and the sampler to produce the width it reports.
"""

import math

import numpy as np
import pytest

from clitools import INSECURE, cli_ok
from fhe_kernels.encoding import encode_slots
from fhectl.ckks.encryptor import Decryptor
from fhectl.ckks.noise import (MIN_STATISTICAL_SECURITY, coefficient_error_bound, flooding_width,
                               fresh_coefficient_bound, key_switch_coefficient_bound, share_safe_error_bound)
from fhectl.ckks.sampling import SeededRandom
from fhectl.io.ciphertext_files import encrypt_array
from fhectl.io.container import read_container, write_container
from fhectl.io.keyring import Keyring
from fhectl.io.objects import container_to_ciphertexts
from fhectl.keysets import KeySource

NOISE_SEED = "tests/cli/noise"


def _keys(keyring, version=None):
    keys = KeySource.from_keyring(Keyring(keyring), "default", version, allow_insecure=True, device="cpu")
    return keys, Decryptor(keys.ctx, keys.secret_key(None))


def _coefficient_errors(keys, dec, container, values):
    """e = (c0 + c1 s) - round(scale * encode(values)), per ciphertext."""
    out = []
    slots = keys.params.slots
    for i, ct in enumerate(container_to_ciphertexts(keys.ctx, container)):
        z = np.zeros(slots, dtype=np.complex128)
        chunk = values[i * slots:(i + 1) * slots]
        z[:chunk.size] = chunk
        m = np.rint(encode_slots(z, keys.ctx.embedding) * ct.scale)
        out.append(dec.decrypt_coefficients(ct) - m)
    return np.concatenate(out)


def test_error_bound_estimates_exceed_measured_errors(keyring, tmp_path, data_rng):
    keys, dec = _keys(keyring)
    params, scale = keys.params, keys.params.scale
    values = data_rng.uniform(-1, 1, 16 * params.slots)  # 16 ciphertexts, 16384 coefficients
    container, _ = encrypt_array(keys, values)
    write_container(tmp_path / "x.fhe", container)
    fresh = np.max(np.abs(_coefficient_errors(keys, dec, container, values)))
    bound = fresh_coefficient_bound(params, scale)
    assert fresh < bound, (fresh, bound)
    assert fresh > bound / 4  # six standard deviations, not a vacuous bound

    for switches in (1, 2):
        cli_ok(keyring, "rotate", *INSECURE)
        cli_ok(keyring, "rotate", "rewrap", tmp_path / "x.fhe", *INSECURE)
        keys, dec = _keys(keyring)
        c = read_container(tmp_path / "x.fhe")
        assert c.meta["key_switches"] == switches
        measured = np.max(np.abs(_coefficient_errors(keys, dec, c, values)))
        assert measured < coefficient_error_bound(params, scale, switches), (switches, measured)
    # With P above every digit, key switching adds mostly ModDown rounding: far below a fresh error.
    assert key_switch_coefficient_bound(params) < fresh_coefficient_bound(params, scale) / 4


# Widths 2^26 (two convolution steps), about 10^4 (one) and about 14 (the table sampler directly).
@pytest.mark.parametrize("error_bound,security", [(700.0, 30), (0.094, 30), (1.2e-4, 30)])
def test_flooding_sampler_has_the_width_it_reports(keyring, error_bound, security):
    keys, dec = _keys(keyring)
    params = keys.params
    x = np.linspace(-1, 1, params.slots)
    container, cts = encrypt_array(keys, x)
    ct = cts[0]
    plain = dec.decrypt(ct, n_values=params.slots)
    target = math.sqrt(12) * 2.0 ** (security / 2) * error_bound
    samples, sigma = [], None
    random = SeededRandom(NOISE_SEED)
    for _ in range(12):
        flooded, sigma = dec.decrypt_share_safe(ct, error_bound, security, n_values=params.slots, random=random)
        samples.append(encode_slots(flooded - plain, keys.ctx.embedding) * ct.scale)  # back to coefficients
    noise = np.concatenate(samples)  # 12288 samples
    assert target <= sigma <= 1.01 * target
    assert abs(np.std(noise) / sigma - 1) < 0.04
    assert abs(np.mean(noise)) < 0.04 * sigma
    kurtosis = np.mean((noise / np.std(noise)) ** 4)
    assert abs(kurtosis - 3) < 0.3  # Gaussian-shaped, not uniform (1.8) nor Laplace (6)


def test_share_safe_rejects_nonsense_bounds(keyring):
    keys, dec = _keys(keyring)
    _, cts = encrypt_array(keys, np.ones(4))
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError):
            dec.decrypt_share_safe(cts[0], bad)
    with pytest.raises(ValueError):
        dec.decrypt_share_safe(cts[0], 2.0**50)  # a width no int64 sample can carry exactly


def test_statistical_security_has_a_floor_of_30_bits(keyring):
    """-s 1 used to be accepted: 2^(1/2) times the error bound hides nothing."""
    keys, dec = _keys(keyring)
    _, cts = encrypt_array(keys, np.ones(4))
    for weak in (1, 10, 29):
        with pytest.raises(ValueError, match="30"):
            dec.decrypt_share_safe(cts[0], 1.0, weak)
        with pytest.raises(ValueError, match="30"):
            flooding_width(1.0, weak, 1)
    assert MIN_STATISTICAL_SECURITY == 30
    assert flooding_width(1.0, 30, 3) == pytest.approx(6 * 2.0**15)


def test_share_safe_bound_never_drops_below_what_the_parameters_give(keyring):
    """The header's history can only raise the flooded bound; the decryptor's own bound can raise it too,
    and a computed file (no fresh history) needs the decryptor's own bound."""
    keys, _ = _keys(keyring)
    params, scale = keys.params, keys.params.scale
    fresh = fresh_coefficient_bound(params, scale)
    assert share_safe_error_bound(params, scale, 0, None)[0] == fresh
    assert share_safe_error_bound(params, scale, 3, None)[0] == coefficient_error_bound(params, scale, 3)
    assert share_safe_error_bound(params, scale, 0, fresh / 1000)[0] == fresh  # a lower own bound is ignored
    assert share_safe_error_bound(params, scale, 0, fresh * 1000)[0] == fresh * 1000
    assert share_safe_error_bound(params, scale, None, fresh / 1000)[0] == fresh  # the floor, even for computed
    with pytest.raises(ValueError, match="own noise analysis"):
        share_safe_error_bound(params, scale, None, None)
