"""Typed errors shared by every layer of fhectl.

Each error's message names the values that are wrong, so the CLI can print it
as one line and exit with the class's code. This module imports nothing from
fhectl, so the lowest layer (fhectl.ckks) can use it.
"""


class FhectlError(Exception):
    """Base of every error fhectl raises on purpose (bad input, misuse)."""

    exit_code = 1


class ParameterError(FhectlError):
    """A parameter set is invalid, insecure without opt-out, or inconsistent."""

    exit_code = 3


class InsecureParametersError(ParameterError):
    """The parameters are below the 128-bit security table and no opt-out was given."""


class ParameterMismatchError(FhectlError):
    """Objects made under different parameter sets (or keys) were combined."""

    exit_code = 4


class LevelError(FhectlError):
    """Ciphertext levels do not fit the operation, or the modulus chain is exhausted."""

    exit_code = 4


class ScaleMismatchError(FhectlError):
    """Operands carry scales that cannot be combined exactly enough."""

    exit_code = 4


class MissingKeyError(FhectlError):
    """An evaluation key (relinearization or a Galois key for a step) is absent."""

    exit_code = 4


class FormatError(FhectlError):
    """A file is not a valid fhectl container: bad magic, header, length or checksum."""

    exit_code = 5


class KeyMismatchError(FhectlError):
    """A file was made under another key, key version or parameter set than the one given."""

    exit_code = 6


class KeyringError(FhectlError):
    """The keyring is missing, locked, or a key set / version is not found or retired."""

    exit_code = 6


class InputError(FhectlError):
    """User input (a path, a number, a data file) is unusable."""

    exit_code = 2


class DomainError(FhectlError):
    """A value fell outside the domain an approximation polynomial was built for."""

    exit_code = 7


class RefusedError(FhectlError):
    """Refused for security: a signature missing or wrong, a share-safe decryption budget spent, or a
    decryption error larger than share-safe decryption can hide."""

    exit_code = 8


class OutputExistsError(InputError, FileExistsError):
    """An output file or key version already exists and overwriting it was not allowed.

    Also a FileExistsError, so code that catches the OS error still works.
    """
