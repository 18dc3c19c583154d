"""What the circuits of this package owe each other: approximations and refresh strategies.

``Approximation`` is what every nonlinear circuit offers (approximations.Exp, Inverse, InverseSqrt,
wide.WideInverseSqrt, wide.SaturatedProduct): a domain, the exact function, the float64 computation the
circuit performs, its homomorphic evaluation, its level cost and a measured error.

``Refresher`` is what a circuit calls when its ciphertexts run out of levels, and ``BlockRefresher`` what a
transformer block calls (with masks, fills, domains and a target level): the client round trip of
fhectl.circuits.refresh.ClientRefresh, the server's bootstrapping of fhectl.circuits.bootstrap_refresh
.BootstrapRefresh, and the level simulator's SimRefresh. ``SecretKeyRefresher`` decrypts and re-encrypts with
the secret key: a test stand-in, named for what it is (it is not bootstrapping).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from fhectl.errors import LevelError


@runtime_checkable
class Refresher(Protocol):
    def ensure_levels_all(self, cts: list, levels: int, stage: str) -> list:
        """``cts`` themselves if each has ``levels`` levels left, else fresh encryptions at the top level."""
        ...


@runtime_checkable
class BlockRefresher(Refresher, Protocol):
    """``Refresher`` plus the refresh a block asks for: ``cts`` fresh at ``level`` (default: the top), slots
    outside ``valid`` set to ``fill``, values checked against ``domain`` or per-ciphertext ``domains``."""

    def refresh(self, cts: list, stage: str, domain=None, valid=None, fill=None, level=None,
                domains=None) -> list: ...

    def begin_block(self, index: int) -> None:
        """The refreshes that follow belong to block ``index`` (the range indicator keeps blocks apart)."""
        ...


@runtime_checkable
class Approximation(Protocol):
    """A nonlinear function on a calibrated domain, as a circuit: see the module docstring.

    ``approximations.InterpolantApproximation`` implements everything but ``eval_plain`` and ``evaluate``
    for the circuits that are an interpolant plus a refinement (Exp, Inverse, InverseSqrt).
    """

    name: str  # names the circuit in plans, errors and refresh stages

    @property
    def max_error(self) -> float:
        """max |eval_plain(x) - reference(x)| measured on a dense grid of the domain (or a proven bound)."""
        ...

    @property
    def domain(self) -> tuple[float, float]: ...

    def reference(self, x):
        """The exact function, float64."""
        ...

    def eval_plain(self, x):
        """The float64 computation the circuit performs, operation for operation."""
        ...

    def evaluate(self, evaluator, ct, *args, **kwargs):
        """The circuit on a ciphertext, through ``evaluator`` (the real one or the level simulator)."""
        ...

    def depth(self) -> int:
        """Levels ``evaluate`` uses."""
        ...

    def check_domain(self, values) -> None:
        """DomainError when a plaintext value lies outside ``domain`` (calibration runs call it)."""
        ...


def ensure_levels(cts: list, levels: int, stage: str, refresh: Refresher | None, bounds: list | None = None,
                  labels: list | None = None) -> list:
    """``cts`` with at least ``levels`` levels each: through ``refresh`` if given, else LevelError. ``bounds``:
    an interval per ciphertext that its values stay in, for a refresh that needs them (bootstrapping scales by
    them and its range indicator checks them, each under "<stage> <label>" with ``labels``:
    ``ensure_levels_bounded``); others take no interval here."""
    have = min(c.level for c in cts)
    if have >= levels:
        return cts
    if refresh is None:
        raise LevelError(f"{stage} needs {levels} levels, the ciphertexts have {have}; "
                         "pass a refresh (client refresh or bootstrapping)")
    bounded = getattr(refresh, "ensure_levels_bounded", None)
    if bounds is not None and bounded is not None:
        return bounded(cts, levels, stage, bounds, labels)
    return refresh.ensure_levels_all(cts, levels, stage)


class SecretKeyRefresher:
    """Decrypts and re-encrypts at the top level with the secret key, counting calls per stage.

    Stands in for bootstrapping in tests and experiments; a server never holds a decryptor.
    """

    def __init__(self, encryptor, decryptor):
        self.encryptor = encryptor
        self.decryptor = decryptor
        self.calls: list[str] = []

    def ensure_levels_all(self, cts: list, levels: int, stage: str) -> list:
        if all(c.level >= levels for c in cts):
            return cts
        self.calls.append(stage)
        return [self.encryptor.encrypt(self.decryptor.decrypt(c).real) for c in cts]


__all__ = ["Approximation", "BlockRefresher", "Refresher", "SecretKeyRefresher", "ensure_levels"]
