"""Fresh key material: a new key set (version 1), and the containers of any new version.

Randomness: the OS CSPRNG (fhectl.ckks.sampling's default source, through KeyGenerator).
"""

from __future__ import annotations

from collections.abc import Callable

from fhectl.ckks.context import CKKSContext
from fhectl.ckks.keys import GaloisKeys, KeyGenerator, SecretKey
from fhectl.ckks.params import Parameters
from fhectl.errors import InputError, OutputExistsError
from fhectl.io.container import Container
from fhectl.io.keyring import Keyring, KeyVersion
from fhectl.io.objects import (galois_keys_to_container, public_key_to_container, secret_key_to_container,
                               switching_key_to_container)

from .contexts import context_for
from .files import GALOIS_KEYS, PUBLIC_KEY, RELIN_KEY, SECRET_KEY
from .parameters import parameters_meta

Tick = Callable[[str], None]


def check_steps(steps: list[int], slots: int) -> list[int]:
    """Rotation steps, distinct and sorted by size; each non-zero modulo the slot count and below it."""
    bad = [s for s in steps if s % slots == 0 or abs(s) >= slots]
    if bad:
        raise InputError(f"rotation steps {bad} are zero or not in -{slots - 1}..{slots - 1} ({slots} slots)")
    return sorted(set(steps), key=lambda s: (abs(s), s))


def generate_key_material(ctx: CKKSContext, steps: list[int], conjugation: bool, tick: Tick = lambda what: None
                          ) -> tuple[SecretKey, dict[str, Container], dict[str, Container]]:
    """A fresh secret key and the containers of a version: ({"secret-key"}, {public-key, relin-key, galois-keys}).

    ``tick(description)`` is called after each key (3 + len(steps) + conjugation times), for a progress bar.
    """
    kg = KeyGenerator(ctx)
    sk = kg.secret_key()
    tick("secret key")
    pk = kg.public_key(sk)
    tick("public key")
    rlk = kg.relin_key(sk)
    tick("relinearization key")
    galois = {}
    total = len(steps) + int(conjugation)
    for i, step in enumerate(steps, start=1):
        galois.update(kg.galois_keys(sk, [step]).keys)
        tick(f"Galois key {i}/{total}")
    if conjugation:
        galois.update(kg.galois_keys(sk, (), conjugation=True).keys)
        tick(f"Galois key {total}/{total}")
    public = {PUBLIC_KEY: public_key_to_container(ctx, pk, None),
              RELIN_KEY: switching_key_to_container(ctx, rlk, "relin-key", None)}
    public[PUBLIC_KEY].meta["parameters"] = parameters_meta(ctx.params)
    if galois:
        gks = GaloisKeys(keys=dict(sorted(galois.items())), params_id=ctx.params_id, key_id=sk.key_id)
        gc = galois_keys_to_container(ctx, gks, None)
        gc.meta.update({"steps": list(steps), "conjugation": bool(conjugation)})
        public[GALOIS_KEYS] = gc
    return sk, {SECRET_KEY: secret_key_to_container(sk, None)}, public


def rewrap_key_container(ctx: CKKSContext, old: SecretKey, old_version: int, new: SecretKey) -> Container:
    """The switching key old -> new as a public file of the new version (no secret can be derived from it)."""
    swk = KeyGenerator(ctx).rekey(old, new)
    return switching_key_to_container(ctx, swk, "switching-key", None,
                                      {"from_version": old_version, "from_key_id": old.key_id,
                                       "parameters": parameters_meta(ctx.params)})


def refuse_existing(keyring: Keyring, name: str) -> None:
    """OutputExistsError if ``name`` already has a version: a key set is created once, then rotated."""
    if name in keyring.list_key_sets():
        have = ", ".join(f"v{kv.version}" for kv in keyring.versions(name))
        raise OutputExistsError(f"key set {name!r} already exists in {keyring.root} ({have}); refusing to overwrite "
                                f"it: choose another --name, or make a new version with `fhectl rotate --name {name}`")


def create_key_set(keyring: Keyring, name: str, params: Parameters, profile: str, steps: list[int],
                   conjugation: bool, *, passphrase: bytes | None, device: str = "cpu",
                   tick: Tick = lambda what: None) -> KeyVersion:
    """A new key set, version 1 (primary); refuses to touch an existing one. Sealed when ``passphrase`` is given."""
    steps = check_steps(steps, params.slots)
    refuse_existing(keyring, name)
    ctx = context_for(params, device)
    sk, secret, public = generate_key_material(ctx, steps, conjugation, tick)
    tick("writing the key set")
    return keyring.create_key_set(name, 1, profile, params.params_id, sk.key_id, secret, public,
                                  passphrase=passphrase, status="primary")
