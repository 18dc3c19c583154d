"""A keyring made by the key-set library itself (not the CLI): key set 'default' v1, rotations 1 and -1 and
conjugation, tiny-insecure; built once per session, copied per test."""

import shutil

import pytest

from fhectl import keysets
from fhectl.ckks.params import load_parameters
from fhectl.io.keyring import Keyring


@pytest.fixture(scope="session")
def library_keyring(tmp_path_factory):
    root = tmp_path_factory.mktemp("keysets") / "keyring"
    params = load_parameters("tiny-insecure", allow_insecure=True)
    keysets.create_key_set(Keyring(root), "default", params, "tiny-insecure", [1, -1], True, passphrase=None)
    return root


@pytest.fixture
def ring(library_keyring, tmp_path) -> Keyring:
    root = tmp_path / "keyring"
    shutil.copytree(library_keyring, root, ignore=shutil.ignore_patterns(".lock"))
    return Keyring(root)
