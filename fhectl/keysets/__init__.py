"""Key sets: one keyring version, or an exported public bundle, as CKKS objects; below the CLI and the server.

Modules, one job each:

    files        the file names inside a version (public-key, relin-key, galois-keys, rewrap-from-vN, ...)
    parameters   the parameters literal a key set carries, checked against its params id
    contexts     one CKKS context per (parameters, device) per process
    source       KeySource: a version's public keys, and its secret key when in a keyring
    bundle       a version's public files as one file: built for `keys export`, loaded by a server
    locate       which version a file was made under, from its header
    generation   fresh key material; a new key set
    rotation     a new version with switching keys from the versions still in use
    checks       round trips against the secret: does each key do what it claims, on every limb?
    verify       `keys verify` for one version
    describe     what is reported about a version (never a secret value)
    rewrap       moving ciphertext files to a new version by key switching

This layer never prints and never reads a terminal: a passphrase arrives as bytes, or as a callable that
is asked only when a sealed secret is needed. Loading a public bundle touches no secret material.
"""

from fhectl.io.keyring import Keyring

from .bundle import PublicBundle, load_public_bundle, public_bundle
from .contexts import context_for
from .describe import describe_version, fingerprint
from .files import GALOIS_KEYS, PUBLIC_KEY, RELIN_KEY, SECRET_KEY, rewrap_file
from .generation import check_steps, create_key_set, generate_key_material, refuse_existing, rewrap_key_container
from .locate import key_sets_summary, locate_version
from .parameters import parameters_from, parameters_meta
from .rewrap import RewrapCheckError, RewrapReport, rewrap_files
from .rotation import Rotation, rotate_key_set, rotation_steps
from .source import KeySource, Passphrase
from .verify import verify_version


def open_keyring(path=None) -> Keyring:
    """The keyring at ``path``, else $FHECTL_KEYRING, else ~/.fhectl/keyring."""
    return Keyring(path)


__all__ = [
    "GALOIS_KEYS", "PUBLIC_KEY", "RELIN_KEY", "SECRET_KEY", "KeySource", "Keyring", "Passphrase", "PublicBundle",
    "RewrapCheckError", "RewrapReport", "Rotation", "check_steps", "context_for", "create_key_set",
    "describe_version", "fingerprint", "generate_key_material", "key_sets_summary", "load_public_bundle",
    "locate_version", "open_keyring", "parameters_from", "parameters_meta", "public_bundle", "refuse_existing",
    "rewrap_file",
    "rewrap_files", "rewrap_key_container", "rotate_key_set", "rotation_steps", "verify_version",
]
