"""fhectl.keysets.bundle: the one place a public bundle is built (for `keys export`) and loaded (for a
server), from a path, bytes or a stream, without ever touching secret material."""

import io

import numpy as np
import pytest

from fhectl import keysets
from fhectl.ckks.encryptor import Encryptor
from fhectl.errors import FormatError, InputError, KeyringError
from fhectl.io.keyring import Keyring


def _no_secrets(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the public bundle path read a secret")
    monkeypatch.setattr(Keyring, "read_secret", refuse)


def test_a_bundle_carries_every_public_file_and_the_parameters(ring, monkeypatch):
    _no_secrets(monkeypatch)
    bundle = keysets.public_bundle(ring, "default")
    assert sorted(bundle.files) == ["galois-keys", "public-key", "relin-key"]
    meta = bundle.container.meta
    assert meta["name"] == "default" and meta["profile"] == "tiny-insecure" and meta["parameters"]["log_n"] == 10
    assert all(m["kind"] != "secret-key" for m in meta["members"].values())
    only = keysets.public_bundle(ring, "default", files=["public-key"])
    assert only.files == ["public-key"] and only.container.meta["parameters"] == meta["parameters"]
    with pytest.raises(InputError, match=r"has no public files \['secret-key'\]"):
        keysets.public_bundle(ring, "default", files=["secret-key"])


@pytest.mark.parametrize("form", ["path", "mapped path", "bytes", "stream"])
def test_load_a_bundle_from_a_path_bytes_or_a_stream(ring, tmp_path, monkeypatch, form):
    _no_secrets(monkeypatch)
    bundle = keysets.public_bundle(ring, "default")
    bundle.write(tmp_path / "pub.fhe")
    data = (tmp_path / "pub.fhe").read_bytes()
    assert data == bundle.encode()
    source = {"bytes": data, "stream": io.BytesIO(data)}.get(form, tmp_path / "pub.fhe")
    keys = keysets.load_public_bundle(source, allow_insecure=True, name="upload", mmap=form == "mapped path")
    kv = ring.get("default")
    assert (keys.key_id, keys.version, keys.name, keys.params.params_id) == (kv.key_id, 1, "default", kv.params_id)
    ct = Encryptor(keys.ctx, keys.public_key()).encrypt(np.ones(4))  # usable for encryption as it is
    assert ct.key_id == kv.key_id
    with pytest.raises(KeyringError, match="public material only"):
        keys.secret_key(b"anything")


def test_a_bundle_over_the_size_limit_or_damaged_is_refused(ring):
    data = keysets.public_bundle(ring, "default").encode()
    with pytest.raises(FormatError):
        keysets.load_public_bundle(io.BytesIO(data), allow_insecure=True, max_bytes=len(data) - 1)
    with pytest.raises(FormatError):
        keysets.load_public_bundle(data[:-64], allow_insecure=True)
    keysets.load_public_bundle(io.BytesIO(data), allow_insecure=True, max_bytes=len(data))


def test_a_retired_version_is_not_exported(ring):
    keysets.rotate_key_set(ring, "default", passphrase=None, allow_insecure=True)
    ring.set_status("default", 1, "retired")
    with pytest.raises(KeyringError, match="retired"):
        keysets.public_bundle(ring, "default", 1)
    assert keysets.public_bundle(ring, "default").version.version == 2
