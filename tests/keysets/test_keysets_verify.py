"""fhectl.keysets.verify and the passphrase contract: bytes, or a callable asked only for a sealed secret."""

from fhectl import keysets


def test_verify_round_trips_rotation_and_conjugation_keys(ring):
    notes = keysets.verify_version(ring, "default", 1, passphrase=None, allow_insecure=True)
    assert notes == ["secret key matches the public key", "relin-key: relinearization checked",
                     "galois-keys: 3 key(s) checked (rotation by 1, rotation by -1, conjugation)"]


def test_a_passphrase_callable_is_asked_only_for_a_sealed_secret(ring):
    asked = []

    def passphrase():
        asked.append(1)
        return b"never needed"

    keys = keysets.KeySource.from_keyring(ring, "default", None, allow_insecure=True, device="cpu")
    assert keys.secret_key(passphrase).key_id == keys.key_id and not asked  # v1 is not sealed
    keysets.rotate_key_set(ring, "default", passphrase=b"a passphrase for v2", allow_insecure=True)
    sealed = keysets.KeySource.from_keyring(ring, "default", 2, allow_insecure=True, device="cpu")
    assert sealed.secret_key_if_available(lambda: None) is None  # sealed, and no passphrase comes
    assert keysets.verify_version(ring, "default", 2, passphrase=lambda: None, allow_insecure=True) == [
        "secret key not checked (sealed; pass --passphrase)"]
    notes = keysets.verify_version(ring, "default", 2, passphrase=lambda: b"a passphrase for v2",
                                   allow_insecure=True)
    assert notes[-1] == "rewrap-from-v1: key switching checked"
