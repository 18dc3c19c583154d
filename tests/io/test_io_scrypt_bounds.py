"""Issue 12, item 7: a sealed file cannot make opening it cost much more than fhectl's own setting.

The scrypt parameters are read from the file before the passphrase is checked, so they are bounded
(memory and work) and refused before any derivation.
"""

import dataclasses

import numpy as np
import pytest

from fhectl.errors import FormatError
from fhectl.io import secret_box
from fhectl.io.container import Container
from fhectl.io.secret_box import SCRYPT_N, SCRYPT_P, SCRYPT_R, open_container, seal_container

from conftest import FAST_SCRYPT_N, KEY_ID, PARAMS_ID

PASS = b"correct horse"


@pytest.fixture(scope="module")
def box():
    sk = Container("secret-key", PARAMS_ID, KEY_ID, 1, {}, {"coeffs": np.array([1, 0, -1], dtype=np.int64)})
    return seal_container(sk, PASS, scrypt_n=FAST_SCRYPT_N)


@pytest.mark.parametrize("n, r, p", [(2**20, 8, 1), (2**19, 8, 1), (2**15, 32, 16), (2**17, 8, 16), (2**18, 16, 1)],
                         ids=["1GiB", "512MiB", "r32-p16", "p16", "r16"])
def test_costly_scrypt_parameters_are_refused_before_deriving(box, n, r, p, monkeypatch):
    monkeypatch.setattr(secret_box, "_derive", lambda *a: pytest.fail("derived a key from costly parameters"))
    enc = {**box.meta["encrypted"], "n": n, "r": r, "p": p}
    forged = dataclasses.replace(box, meta={**box.meta, "encrypted": enc})
    with pytest.raises(FormatError, match="scrypt parameters"):
        open_container(forged, PASS)


def test_the_default_setting_is_accepted(box):
    secret_box._check_kdf(SCRYPT_N, SCRYPT_R, SCRYPT_P, "default")
    assert open_container(box, PASS).arrays["coeffs"].tolist() == [1, 0, -1]
